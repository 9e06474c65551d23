// Resolves `--device auto|cpu|cuda` to the device fp8q's graphs run on. CUDA needs three things
// that the plain install does not bring: the CUDA execution provider's libraries next to
// onnxruntime-node's core (`fp8q setup-cuda` puts its CUDA 13 build there; onnxruntime-node's own
// install, when it may download, puts its CUDA 12 build there), the CUDA runtime libraries that
// provider links against (found through LD_LIBRARY_PATH or the ldconfig cache), and a GPU.
// Which build is there is read from the provider's ELF NEEDED entries (libcudart.so.12 or .13).
// `auto` checks them in that order and falls back to CPU with the reason; `cuda` fails with the
// missing piece named and the command that supplies it. A tiny CUDA session is the last check:
// only onnxruntime knows whether the provider really loads and finds a device.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { DeviceUnavailableError, type CudaProblem } from './device-error.js';
import { readElfDynamicInfo } from './elf.js';
import { startModuleWorker } from '../../io/module-worker.js';
import { keepCudaFloat32Exact } from '../onnx/cuda-float32.js';
// The probe alone needs the graph builder (protobufjs) and session.js (onnxruntime-node): it
// imports them itself, so a command that only parses --device (convert) loads neither.
import type { Device } from '../onnx/session.js';
import { findLibrary, systemLibrarySearch, type LibraryLookup, type LibrarySearch } from './shared-libraries.js';

import type { DeviceRequest } from './device-request.js';

export type ExecutionProviderName = 'CPUExecutionProvider' | 'CUDAExecutionProvider';

/** What `--json` reports: plain data, serializable as is. */
export interface DeviceSelection {
  readonly requested: DeviceRequest;
  readonly device: Device;
  readonly provider: ExecutionProviderName;
  /** One line: why this device; for an `auto` that fell back, why not CUDA. */
  readonly reason: string;
}

export { DeviceUnavailableError, type CudaProblem, type CudaProblemKind } from './device-error.js';

/** The files `fp8q setup-cuda` places next to libonnxruntime.so.1. */
export const CUDA_PROVIDER_FILES = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'] as const;
export const SETUP_CUDA_COMMAND = 'fp8q setup-cuda';
const RUN_SETUP_CUDA = `Run \`${SETUP_CUDA_COMMAND}\` (\`npx fp8q setup-cuda\` in a clone)`;

/** Which CUDA execution provider build sits next to onnxruntime's core. */
export interface CudaProviderBuild {
  /** CUDA major version the provider links against (libcudart.so.N), null when unreadable. */
  readonly cudaMajor: number | null;
  /** Where that build comes from, in words. */
  readonly origin: string;
}

/** Reads the installed provider's CUDA version from its NEEDED entries; null when no provider is there. */
export function cudaProviderBuild(dir: string = onnxruntimeBinaryDir()): CudaProviderBuild | null {
  const file = join(dir, 'libonnxruntime_providers_cuda.so');
  if (!existsSync(file)) return null;
  let needed: readonly string[];
  try {
    needed = readElfDynamicInfo(file).needed;
  } catch {
    return { cudaMajor: null, origin: 'unknown build (its ELF header could not be read)' };
  }
  const major = needed.map((n) => /^lib(?:cudart|cublas|cublasLt)\.so\.(\d+)$/.exec(n)?.[1]).find((m) => m !== undefined);
  const cudaMajor = major === undefined ? null : Number(major);
  const origin =
    cudaMajor === 13
      ? `ONNX Runtime's CUDA 13 build, installed by ${SETUP_CUDA_COMMAND}`
      : cudaMajor === 12
        ? "onnxruntime-node's own CUDA 12 build, downloaded by its install script"
        : `a build for CUDA ${cudaMajor ?? 'unknown'}`;
  return { cudaMajor, origin };
}

export interface CudaCheckOptions {
  /** The folder of libonnxruntime.so.1 (default: the installed onnxruntime-node's). */
  readonly providerDir?: string;
  readonly librarySearch?: LibrarySearch;
  /** Creates and runs a tiny CUDA session; rejects with onnxruntime's error (default: the real one). */
  readonly probe?: () => Promise<void>;
  readonly platform?: string;
  readonly arch?: string;
}

/** The folder onnxruntime-node loads its core and execution providers from. */
export function onnxruntimeBinaryDir(platform: string = process.platform, arch: string = process.arch): string {
  const require = createRequire(import.meta.url);
  const packageRoot = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(packageRoot, 'bin', 'napi-v6', platform, arch);
}

/**
 * The checks that need no GPU: platform, provider files, the CUDA libraries the provider links
 * against. Null when all pass (the probe session decides the rest).
 */
export function checkCudaInstall(options: CudaCheckOptions = {}): CudaProblem | null {
  const platform = options.platform ?? process.platform;
  const arch = options.arch ?? process.arch;
  if (platform !== 'linux' || arch !== 'x64') {
    return {
      kind: 'unsupported-platform',
      summary: `the CUDA execution provider fp8q sets up is built for linux-x64, not ${platform}-${arch}`,
      remedy: 'Use --device cpu.',
      missing: [],
    };
  }
  const dir = options.providerDir ?? onnxruntimeBinaryDir(platform, arch);
  const absent = CUDA_PROVIDER_FILES.filter((f) => !existsSync(join(dir, f)));
  if (absent.length > 0) {
    return {
      kind: 'provider-missing',
      summary: `the CUDA execution provider is not installed (${absent.join(' and ')} missing in ${dir})`,
      remedy: `${RUN_SETUP_CUDA}: it fetches the provider pinned to onnxruntime-node's version. Or use --device cpu.`,
      missing: absent,
    };
  }
  let needed: readonly string[];
  try {
    needed = readElfDynamicInfo(join(dir, 'libonnxruntime_providers_cuda.so')).needed;
  } catch {
    // Unreadable here does not mean unloadable: leave the verdict to the probe session.
    return null;
  }
  const search = options.librarySearch ?? systemLibrarySearch();
  const cudaLibs = needed.filter((name) => /^lib(cuda|cudart|cublas|cublasLt|curand|cudnn|cufft|nvrtc|nvJitLink)\b/.test(name));
  const lookups = cudaLibs.map((name) => findLibrary(name, search));
  const notFound = lookups.filter((l) => l.path === null);
  if (notFound.length === 0) return null;
  if (notFound.every((l) => l.name === 'libcuda.so.1')) {
    return {
      kind: 'no-driver',
      summary: 'no NVIDIA driver: libcuda.so.1 was not found',
      remedy: 'Install the NVIDIA driver (CUDA 13 needs driver 580 or newer), or use --device cpu.',
      missing: ['libcuda.so.1'],
    };
  }
  return librariesMissing(
    notFound.filter((l) => l.name !== 'libcuda.so.1'),
    cudaProviderBuild(dir)?.cudaMajor ?? 13,
  );
}

function librariesMissing(notFound: readonly LibraryLookup[], cudaMajor: number): CudaProblem {
  const names = notFound.map((l) => l.name);
  const dirs = [...new Set(notFound.map((l) => l.candidate).filter((d): d is string => d !== null))];
  const allLocated = notFound.every((l) => l.candidate !== null);
  const remedy = allLocated
    ? `${dirs.length === 1 ? 'It is' : 'They are'} in ${dirs.join(' and ')}: start fp8q with ` +
      `LD_LIBRARY_PATH=${dirs.join(':')}:$LD_LIBRARY_PATH (the loader reads it at startup only).`
    : cudaMajor === 12
      ? "This is onnxruntime-node's own CUDA 12 provider: install the CUDA 12 runtime libraries and cuDNN 9 and add their folder to LD_LIBRARY_PATH, " +
        `or ${RUN_SETUP_CUDA.charAt(0).toLowerCase()}${RUN_SETUP_CUDA.slice(1)} to replace it with the CUDA 13 build` +
        (dirs.length > 0 ? `; found so far in ${dirs.join(', ')}.` : '.')
      : 'Install the CUDA 13 runtime libraries (the CUDA Toolkit 13, or `pip install nvidia-cuda-runtime nvidia-cublas nvidia-curand` ' +
        'for CUDA 13, which puts them in site-packages/nvidia/cu13/lib) and add their folder to LD_LIBRARY_PATH' +
        (dirs.length > 0 ? `; found so far in ${dirs.join(', ')}.` : '.');
  return {
    kind: 'libraries-missing',
    summary: `the CUDA execution provider needs ${names.join(', ')}, which the dynamic loader cannot find`,
    remedy,
    missing: names,
  };
}

/** Turns onnxruntime's error from the probe session into a problem with a remedy. */
export function classifyCudaLoadError(message: string): CudaProblem {
  const lib = /([\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(message)?.[1];
  if (lib !== undefined && /providers_(cuda|shared)/.test(lib)) {
    return {
      kind: 'provider-missing',
      summary: `the CUDA execution provider did not load (${lib} missing)`,
      remedy: `${RUN_SETUP_CUDA}, or use --device cpu.`,
      missing: [lib],
    };
  }
  if (lib === 'libcuda.so.1') {
    return {
      kind: 'no-driver',
      summary: 'no NVIDIA driver: libcuda.so.1 was not found',
      remedy: 'Install the NVIDIA driver (CUDA 13 needs driver 580 or newer), or use --device cpu.',
      missing: [lib],
    };
  }
  if (lib !== undefined) return librariesMissing([{ name: lib, path: null, candidate: null }], /\.so\.12$/.test(lib) ? 12 : 13);
  if (/no CUDA-capable device|cudaErrorNoDevice|CUDA failure 100\b|CUDA error 100\b/i.test(message)) {
    return { kind: 'no-gpu', summary: 'no CUDA-capable GPU is visible', remedy: 'Check nvidia-smi and CUDA_VISIBLE_DEVICES, or use --device cpu.', missing: [] };
  }
  if (/driver version is insufficient|CUDA failure 35\b|cudaErrorInsufficientDriver/i.test(message)) {
    return {
      kind: 'no-driver',
      summary: 'the NVIDIA driver is too old for CUDA 13',
      remedy: 'Update the NVIDIA driver to 580 or newer, or use --device cpu.',
      missing: [],
    };
  }
  return {
    kind: 'load-failed',
    summary: `the CUDA execution provider did not start (${firstLine(message)})`,
    remedy: `Re-run \`${SETUP_CUDA_COMMAND}\`, check that LD_LIBRARY_PATH holds the CUDA libraries the provider needs, or use --device cpu.`,
    missing: [],
  };
}

/** Creates a two-element CUDA session and runs it once. */
export async function probeCudaSession(): Promise<void> {
  const { GraphBuilder } = await import('../onnx/graph-builder.js');
  const { DataType } = await import('../onnx/data-type.js');
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, [2]);
  g.output(g.op('Mul', [x, x], { dtype: DataType.FLOAT, shape: [2] }), 'y');
  const { OnnxSession } = await import('../onnx/session.js');
  const session = await OnnxSession.create(g.toBytes(), { device: 'cuda' });
  try {
    const out = await session.run({ x: { type: 'float32', data: new Float32Array([1, 2]), dims: [2] } });
    const y = out['y']!.data;
    if (y[0] !== 1 || y[1] !== 4) throw new Error(`CUDA probe computed [${Array.from(y).join(', ')}], expected [1, 4]`);
  } finally {
    await session.release();
  }
}

let defaultCheck: Promise<CudaProblem | null> | null = null;

/** All checks, the probe session last. The default check runs once per process. */
export function checkCuda(options: CudaCheckOptions = {}): Promise<CudaProblem | null> {
  const isDefault = Object.keys(options).length === 0;
  if (isDefault && defaultCheck !== null) return defaultCheck;
  const run = async (): Promise<CudaProblem | null> => {
    const installProblem = checkCudaInstall(options);
    if (installProblem !== null) return installProblem;
    try {
      await (options.probe ?? probeCudaSession)();
      return null;
    } catch (error) {
      return classifyCudaLoadError(error instanceof Error ? error.message : String(error));
    }
  };
  const result = run();
  if (isDefault) defaultCheck = result;
  return result;
}

/**
 * Resolves a `--device` request. `cpu` never touches CUDA; `auto` takes CUDA when every check
 * passes, else CPU with the reason; `cuda` throws DeviceUnavailableError when CUDA cannot run.
 */
export async function selectDevice(request: DeviceRequest, options: CudaCheckOptions = {}): Promise<DeviceSelection> {
  if (request === 'cpu') return cpuRequested();
  const problem = await checkCuda(options);
  if (problem === null) return cudaSelection(request, options);
  if (request === 'cuda') throw new DeviceUnavailableError(problem);
  return cpuInstead(request, problem);
}

/**
 * A device chosen before its last check has answered: `selection` is what the checks that need no
 * GPU allow, and `ready` settles once the CUDA probe session has run (in a worker thread), rejecting
 * with DeviceUnavailableError when it failed. The probe loads the CUDA libraries and creates the
 * CUDA context, ~0.5 s on an H200 host (bench/NOTES.md); those are the process's, so the caller
 * prepares meanwhile (verify opens both checkpoints and starts its floor checks and first reads)
 * and awaits `ready` before its first session. `auto` whose probe fails is the caller's to run again on the CPU
 * (cpuInstead).
 */
export interface EarlyDeviceSelection {
  readonly selection: DeviceSelection;
  readonly ready: Promise<void>;
}

export function selectDeviceEarly(request: DeviceRequest, options: CudaCheckOptions = {}): EarlyDeviceSelection {
  if (request === 'cpu') return { selection: cpuRequested(), ready: Promise.resolve() };
  const installProblem = checkCudaInstall(options);
  if (installProblem !== null) {
    if (request === 'cuda') throw new DeviceUnavailableError(installProblem);
    return { selection: cpuInstead(request, installProblem), ready: Promise.resolve() };
  }
  // Before the probe's thread starts, from this one (cuda-float32.ts says why).
  keepCudaFloat32Exact();
  const ready = (options.probe ?? probeCudaSessionOnce)().catch((error: unknown) => {
    throw new DeviceUnavailableError(classifyCudaLoadError(error instanceof Error ? error.message : String(error)));
  });
  // Awaited by the caller, which may fail first: never an unhandled rejection.
  ready.catch(() => undefined);
  return { selection: cudaSelection(request, options), ready };
}

/** The selection of `auto` when CUDA cannot run. */
export function cpuInstead(request: DeviceRequest, problem: CudaProblem): DeviceSelection {
  return { requested: request, device: 'cpu', provider: 'CPUExecutionProvider', reason: `CUDA not used: ${problem.summary}` };
}

function cpuRequested(): DeviceSelection {
  return { requested: 'cpu', device: 'cpu', provider: 'CPUExecutionProvider', reason: 'requested with --device cpu' };
}

function cudaSelection(request: DeviceRequest, options: CudaCheckOptions): DeviceSelection {
  const gpu = gpuName();
  const build = cudaProviderBuild(options.providerDir ?? onnxruntimeBinaryDir());
  const cuda = build?.cudaMajor != null ? `CUDA ${build.cudaMajor}, ${build.origin}` : build?.origin;
  const detail = [cuda, gpu].filter((d): d is string => d != null).join('; ');
  return {
    requested: request,
    device: 'cuda',
    provider: 'CUDAExecutionProvider',
    reason: `CUDA execution provider loaded${detail !== '' ? ` (${detail})` : ''}`,
  };
}

let workerProbe: Promise<void> | undefined;

/**
 * The probe's worker once per process, as checkCuda's default check: its thread stays for the
 * process's life (cuda-probe-worker.ts), so a process that verifies more than once (tests, a
 * library caller) would otherwise add one, and run the probe again, per call.
 */
function probeCudaSessionOnce(): Promise<void> {
  workerProbe ??= probeCudaSessionInWorker();
  return workerProbe;
}

/** probeCudaSession in a worker thread (cuda-probe-worker.ts); rejects with its error's message. */
function probeCudaSessionInWorker(): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const worker = startModuleWorker(import.meta.url, 'cuda-probe-worker');
    worker.once('message', (reply: { readonly error?: string }) => {
      // Kept (cuda-probe-worker.ts says why), but never what keeps the process running.
      worker.unref();
      if (reply.error === undefined) resolve();
      else reject(new Error(reply.error));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the CUDA probe's worker thread exited (code ${code})`)));
  });
}
/** The first GPU's model name from the NVIDIA driver's /proc entry, when there is one. */
function gpuName(): string | null {
  const root = '/proc/driver/nvidia/gpus';
  try {
    const first = readdirSync(root).sort()[0];
    if (first === undefined) return null;
    const model = /^Model:\s*(.+)$/m.exec(readFileSync(join(root, first, 'information'), 'utf8'));
    return model?.[1]?.trim() ?? null;
  } catch {
    return null;
  }
}

function firstLine(text: string): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}
