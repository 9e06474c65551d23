// Worker-thread entry of the early CUDA check (device.ts selectDeviceEarly): runs the probe session
// and answers with nothing or the error's message. It then stays (idle, unreferenced) until the
// process ends: onnxruntime unloads its execution provider's libraries when the last environment
// using them goes, and this thread's going first would make the process's first real session load
// them again.

import { parentPort } from 'node:worker_threads';
import { probeCudaSession } from './device.js';

try {
  await probeCudaSession();
  parentPort!.postMessage({});
} catch (e) {
  parentPort!.postMessage({ error: e instanceof Error ? e.message : String(e) });
}
// A listening port keeps this thread; a message ends it.
parentPort!.on('message', () => parentPort!.close());
