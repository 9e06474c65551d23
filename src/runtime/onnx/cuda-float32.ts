// The one process-wide setting CUDA sessions need before cuBLAS starts, kept apart from session.ts
// so that device.ts can apply it without loading onnxruntime.

/**
 * onnxruntime's CUDA provider runs float32 MatMul through cuBLAS in TF32 (10-bit mantissa inputs)
 * and onnxruntime-node cannot pass its `use_tf32` option; that error (~1e-3 relative) would blur
 * the FP8-against-BF16 comparison verify makes and the CPU/CUDA agreement. NVIDIA_TF32_OVERRIDE=0
 * turns TF32 off in cuBLAS; cuBLAS reads it from the process environment when it creates its
 * handle, at the first CUDA session. A value the user set wins (NVIDIA_TF32_OVERRIDE=1 to trade
 * exactness for speed).
 *
 * Only the main thread's process.env is the process environment: a worker thread's is its own
 * copy, taken when it starts. So this must run on the main thread before any thread creates a CUDA
 * session (device.ts runs it before the probe's worker starts).
 */
export function keepCudaFloat32Exact(): void {
  process.env['NVIDIA_TF32_OVERRIDE'] ??= '0';
}
