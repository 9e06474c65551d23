// The error `--device cuda` raises when CUDA cannot run, and the problem it carries. Kept apart
// from device.ts (which loads onnxruntime-node) so the CLI's error table can know it without
// loading the native runtime on every command.

export type CudaProblemKind = 'unsupported-platform' | 'provider-missing' | 'libraries-missing' | 'no-driver' | 'no-gpu' | 'load-failed';

export interface CudaProblem {
  readonly kind: CudaProblemKind;
  /** Short, for `auto`'s reason: "CUDA provider not installed". */
  readonly summary: string;
  /** What to do, one or two sentences. */
  readonly remedy: string;
  /** Files or libraries that are missing. */
  readonly missing: readonly string[];
}

/** `--device cuda` and CUDA cannot run: the message names what is missing and how to get it. */
export class DeviceUnavailableError extends Error {
  constructor(readonly problem: CudaProblem) {
    super(`--device cuda: ${problem.summary}. ${problem.remedy}`);
    this.name = 'DeviceUnavailableError';
  }
}
