// What `--device` and `--calibration-device` accept, apart from the device module: the CLI's flag
// tables read this list before any command runs, and the device module loads the ONNX schema.

export type DeviceRequest = 'auto' | 'cpu' | 'cuda';
export const DEVICE_REQUESTS = ['auto', 'cpu', 'cuda'] as const satisfies readonly DeviceRequest[];
