// The only module that imports onnxruntime-node: create a session from model bytes on a device,
// run it with float32/float16/float64 host tensors (and uint8/uint16 bit patterns), release it.
// Everything else in fp8q talks in HostTensor/FeedTensor and Device, so the execution-provider
// mapping and onnxruntime's tensor types stay here.

import { keepCudaFloat32Exact } from './cuda-float32.js';
import { env, InferenceSession, Tensor } from 'onnxruntime-node';
import { SessionError } from '../runtime-errors.js';

// onnxruntime's process-wide logger (read once, at the first session) writes its errors and
// warnings to stderr in color: a failed CUDA probe under --device auto, or "some nodes were not
// assigned to the preferred execution provider" on CUDA. Every error that matters reaches fp8q as
// an exception and is reported once, in fp8q's words, so the logger keeps to fatal messages.
env.logLevel = 'fatal';

export type Device = 'cpu' | 'cuda';

/**
 * A tensor on the host. float16 data are IEEE half bit patterns: Node 20 has no Float16Array,
 * and onnxruntime-node takes and returns Uint16Array for float16.
 */
export type HostTensor =
  | { readonly type: 'float32'; readonly data: Float32Array; readonly dims: readonly number[] }
  | { readonly type: 'float16'; readonly data: Uint16Array; readonly dims: readonly number[] }
  | { readonly type: 'float64'; readonly data: Float64Array; readonly dims: readonly number[] };

/**
 * What a graph input can be fed: a HostTensor, or raw bit patterns the graph decodes itself —
 * FP8 codes (uint8) and BF16 words (uint16), types onnxruntime-node cannot feed as such.
 */
export type FeedTensor =
  | HostTensor
  | { readonly type: 'uint8'; readonly data: Uint8Array; readonly dims: readonly number[] }
  | { readonly type: 'uint16'; readonly data: Uint16Array; readonly dims: readonly number[] };

export interface SessionOptions {
  readonly device?: Device;
  /**
   * onnxruntime graph optimizations (default true). Off is useful to check that a result does not
   * depend on a fusion; constant folding of FP8 weights happens only when on.
   */
  readonly optimize?: boolean;
  readonly intraOpThreads?: number;
  /**
   * onnxruntime's CPU memory arena (default on). Off, a run's work memory is freed when the run
   * ends instead of staying with the session: for many cached sessions that each run once per
   * layer (a CPU verify's staged layers, models/runner.ts), the arenas would add up.
   */
  readonly cpuMemArena?: boolean;
}

export { SessionError };

/**
 * Execution providers per device. 'cuda' names only CUDA: onnxruntime itself places nodes CUDA
 * cannot run on CPU, but a machine without the CUDA provider must fail, not silently verify on CPU.
 */
export function executionProviders(device: Device): string[] {
  switch (device) {
    case 'cpu':
      return ['cpu'];
    case 'cuda':
      return ['cuda'];
  }
}

export class OnnxSession {
  private released = false;

  private constructor(
    private readonly session: InferenceSession,
    readonly device: Device,
  ) {}

  static async create(model: Uint8Array, options: SessionOptions = {}): Promise<OnnxSession> {
    const device = options.device ?? 'cpu';
    if (device === 'cuda') keepCudaFloat32Exact();
    const sessionOptions: InferenceSession.SessionOptions = {
      executionProviders: executionProviders(device),
      graphOptimizationLevel: options.optimize === false ? 'disabled' : 'all',
      // No memory pattern: it plans one block for a run's peak and keeps it per session; sessions
      // are reused across layers (session-cache.ts), and the arena's own reuse measured leaner and
      // faster (synthetic 0.3B verify, 512 tokens, CPU: 2.4 GB RSS / 12.8 s in runs vs 3.4 GB / 18.6 s).
      enableMemPattern: false,
      // Warnings only: onnxruntime's info lines about constant folding are noise on a CLI.
      logSeverityLevel: 3,
    };
    if (options.intraOpThreads !== undefined) sessionOptions.intraOpNumThreads = options.intraOpThreads;
    if (options.cpuMemArena === false) sessionOptions.enableCpuMemArena = false;
    try {
      return new OnnxSession(await InferenceSession.create(model, sessionOptions), device);
    } catch (error) {
      throw new SessionError(`onnxruntime could not load the model on ${device}: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /**
   * Runs the graph; returns every graph output (or those named in `fetch`). Outputs named in `into`
   * are written into those arrays, whose dims must be the output's, and returned as them: without
   * it each output is a new allocation per run, its pages faulted in as the results land and
   * garbage once read, so callers pass pooled buffers for the large outputs that recur run after
   * run (a layer's hidden states, an expert's rows, a head chunk's logits).
   */
  async run(feeds: Readonly<Record<string, FeedTensor>>, fetch?: readonly string[], into?: Readonly<Record<string, OutputBuffer>>): Promise<Record<string, HostTensor>> {
    if (this.released) throw new SessionError('session was released');
    const ortFeeds: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      ortFeeds[name] = new Tensor(t.type, t.data, t.dims);
    }
    let results: InferenceSession.OnnxValueMapType;
    try {
      results = await this.session.run(ortFeeds, fetches(this.session.outputNames, fetch, into));
    } catch (error) {
      throw new SessionError(`onnxruntime run failed on ${this.device}: ${errorMessage(error)}`, { cause: error });
    }
    const out: Record<string, HostTensor> = {};
    for (const [name, value] of Object.entries(results)) {
      const buffer = into?.[name];
      // The caller's own array, not onnxruntime's view of its memory.
      out[name] = buffer === undefined ? toHostTensor(name, value) : { type: 'float32', data: buffer.data, dims: [...buffer.dims] };
    }
    return out;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.session.release();
  }
}

/** A caller's float32 array for one graph output (OnnxSession.run's `into`). */
export interface OutputBuffer {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

/**
 * onnxruntime's fetches: the outputs asked for (all by default), each a tensor over its `into`
 * buffer or null (onnxruntime allocates it); with `into`, listed in the session's output order
 * (onnxruntime-node's binding names its results by that order).
 */
function fetches(outputNames: readonly string[], fetch: readonly string[] | undefined, into: Readonly<Record<string, OutputBuffer>> | undefined): InferenceSession.FetchesType {
  if (into === undefined || Object.keys(into).length === 0) return fetch === undefined ? [...outputNames] : [...fetch];
  const byName: Record<string, Tensor | null> = {};
  for (const name of outputNames) {
    const buffer = into[name];
    // Only those asked for, as without `into` (an output written into a buffer is asked for by it).
    if (fetch !== undefined && buffer === undefined && !fetch.includes(name)) continue;
    if (buffer !== undefined && buffer.data.length !== buffer.dims.reduce((a, b) => a * b, 1)) {
      throw new SessionError(`output "${name}": a buffer of ${buffer.data.length} values for dims [${buffer.dims.join(', ')}]`);
    }
    byName[name] = buffer === undefined ? null : new Tensor('float32', buffer.data, buffer.dims);
  }
  for (const name of [...Object.keys(into), ...(fetch ?? [])]) if (!outputNames.includes(name)) throw new SessionError(`no graph output "${name}"`);
  return byName;
}

function toHostTensor(name: string, value: InferenceSession.OnnxValueMapType[string]): HostTensor {
  if (!(value instanceof Tensor)) throw new SessionError(`output "${name}" is not a tensor`);
  const dims = [...value.dims];
  if (value.type === 'float32' && value.data instanceof Float32Array) {
    return { type: 'float32', data: value.data, dims };
  }
  if (value.type === 'float16' && value.data instanceof Uint16Array) {
    return { type: 'float16', data: value.data, dims };
  }
  // Verify's comparison sums (ops/comparison-sums.ts).
  if (value.type === 'float64' && value.data instanceof Float64Array) {
    return { type: 'float64', data: value.data, dims };
  }
  throw new SessionError(`output "${name}" has type ${value.type}; fp8q graphs return float32, float16 or float64`);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
