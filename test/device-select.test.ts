// --device auto|cpu|cuda without a GPU: the checks run against temporary provider folders, fake
// ELF libraries and injected probe results, so each failure path is exercised on any machine.
// What needs a GPU (the probe succeeding, CUDA results) is checked by scripts/gpu-check.sh.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { EXIT_FAILURE, exitCodeOf, isKnownError } from '../src/cli/common/errors.js';
import { parseDevice } from '../src/cli/common/options.js';
import {
  classifyCudaLoadError,
  cpuInstead,
  cudaProviderBuild,
  DeviceUnavailableError,
  onnxruntimeBinaryDir,
  selectDevice,
  selectDeviceEarly,
  type CudaCheckOptions,
} from '../src/runtime/device/device.js';
import { ElfParseError, parseElfDynamicInfo, readElfDynamicInfo } from '../src/runtime/device/elf.js';
import { findLibrary, parseLdconfigCache, type LibrarySearch } from '../src/runtime/device/shared-libraries.js';

const root = mkdtempSync(join(tmpdir(), 'fp8q-device-'));
after(() => rmSync(root, { recursive: true, force: true }));

let folders = 0;
function folder(files: Record<string, Uint8Array | string> = {}): string {
  const dir = join(root, `d${folders++}`);
  mkdirSync(dir);
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
  return dir;
}

/** A minimal ELF64 little-endian shared library: one PT_LOAD over the file, one PT_DYNAMIC. */
function fakeElf(needed: readonly string[], runpath?: string): Uint8Array {
  const strings = ['', ...needed, ...(runpath === undefined ? [] : [runpath])];
  const strOffsets: number[] = [];
  let strtabSize = 0;
  for (const s of strings) {
    strOffsets.push(strtabSize);
    strtabSize += Buffer.byteLength(s) + 1;
  }
  const entries: [bigint, bigint][] = needed.map((_, i) => [1n, BigInt(strOffsets[i + 1]!)]);
  const dynOffset = 64 + 2 * 56;
  const strtabOffset = dynOffset + (entries.length + 3) * 16;
  entries.push([5n, BigInt(strtabOffset)]);
  if (runpath !== undefined) entries.push([29n, BigInt(strOffsets[strings.length - 1]!)]);
  entries.push([0n, 0n]);
  const size = strtabOffset + strtabSize;
  const bytes = new Uint8Array(size);
  const v = new DataView(bytes.buffer);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  v.setBigUint64(0x20, 64n, true);
  v.setUint16(0x36, 56, true);
  v.setUint16(0x38, 2, true);
  const phdr = (at: number, type: number, offset: number, length: number): void => {
    v.setUint32(at, type, true);
    v.setBigUint64(at + 8, BigInt(offset), true);
    v.setBigUint64(at + 16, BigInt(offset), true);
    v.setBigUint64(at + 32, BigInt(length), true);
  };
  phdr(64, 1, 0, size);
  phdr(64 + 56, 2, dynOffset, entries.length * 16);
  entries.forEach(([tag, val], i) => {
    v.setBigInt64(dynOffset + i * 16, tag, true);
    v.setBigUint64(dynOffset + i * 16 + 8, val, true);
  });
  strings.forEach((s, i) => bytes.set(Buffer.from(s), strtabOffset + strOffsets[i]!));
  return bytes;
}

const CUDA_NEEDED = ['libcublasLt.so.13', 'libcublas.so.13', 'libcurand.so.10', 'libcudart.so.13', 'libcuda.so.1', 'libstdc++.so.6'];

function providerFolder(needed: readonly string[] = CUDA_NEEDED): string {
  return folder({ 'libonnxruntime_providers_shared.so': fakeElf(['libc.so.6']), 'libonnxruntime_providers_cuda.so': fakeElf(needed) });
}

function search(dirs: string[], candidates: string[] = []): LibrarySearch {
  return { dirs, cache: new Map(), candidates };
}

const neverProbe = async (): Promise<void> => {
  throw new Error('the probe session must not run when a static check already failed');
};

function options(o: CudaCheckOptions): CudaCheckOptions {
  return { platform: 'linux', arch: 'x64', ...o };
}

test('device requests are auto, cpu and cuda', () => {
  assert.ok(parseDevice('auto', '--device') === 'auto' && parseDevice('cpu', '--device') === 'cpu' && parseDevice('cuda', '--device') === 'cuda');
  for (const bad of ['gpu', 'CUDA', '']) assert.throws(() => parseDevice(bad, '--device'), /invalid --device .*: expected auto, cpu or cuda/);
});

test('ELF dynamic info: NEEDED in order and RUNPATH from a built library; bad files are ElfParseErrors', () => {
  const bytes = fakeElf(['libcublasLt.so.13', 'libcudart.so.13'], '$ORIGIN');
  const readAt = (offset: number, length: number): Uint8Array => bytes.subarray(offset, offset + length);
  assert.deepEqual(parseElfDynamicInfo(readAt), { needed: ['libcublasLt.so.13', 'libcudart.so.13'], runpath: '$ORIGIN' });
  const noElf = new Uint8Array(64);
  assert.throws(
    () => parseElfDynamicInfo((o, l) => noElf.subarray(o, o + l), 'x.so'),
    (e: unknown) => e instanceof ElfParseError && /x\.so: .*no ELF magic/.test(e.message),
  );
  const elf32 = Uint8Array.from(bytes);
  elf32[4] = 1;
  assert.throws(() => parseElfDynamicInfo((o, l) => elf32.subarray(o, o + l)), /not 64-bit little-endian/);
  const truncated = bytes.subarray(0, 100);
  assert.throws(() => parseElfDynamicInfo((o, l) => truncated.subarray(o, o + l)), /truncated program header table/);
});

test('ELF dynamic info of the installed libonnxruntime.so.1', { skip: process.platform !== 'linux' || process.arch !== 'x64' }, () => {
  const info = readElfDynamicInfo(join(onnxruntimeBinaryDir(), 'libonnxruntime.so.1'));
  assert.ok(info.needed.includes('libstdc++.so.6'), `needed: ${info.needed.join(', ')}`);
  // onnxruntime finds its providers through its own folder: the reason setup:cuda copies them there.
  assert.equal(info.runpath, '$ORIGIN');
});

test('ldconfig cache lines parse to 64-bit name → path', () => {
  const cache = parseLdconfigCache(
    "3 libs found in cache `/etc/ld.so.cache'\n" +
      '\tlibcudart.so.13 (libc6,x86-64) => /usr/local/cuda-13.0/lib/libcudart.so.13\n' +
      '\tlibfoo.so.1 (libc6) => /usr/lib32/libfoo.so.1\n' +
      '\tlibz.so.1 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libz.so.1\n',
  );
  assert.deepEqual(
    [...cache],
    [
      ['libcudart.so.13', '/usr/local/cuda-13.0/lib/libcudart.so.13'],
      ['libz.so.1', '/lib/x86_64-linux-gnu/libz.so.1'],
    ],
  );
});

test('findLibrary: search folders first, then the cache, then candidate folders the loader does not search', () => {
  const onPath = folder({ 'liba.so.1': '' });
  const candidate = folder({ 'libb.so.2': '' });
  const s: LibrarySearch = { dirs: [onPath], cache: new Map([['libc.so.3', '/cached/libc.so.3']]), candidates: [candidate] };
  assert.deepEqual(findLibrary('liba.so.1', s), { name: 'liba.so.1', path: join(onPath, 'liba.so.1'), candidate: null });
  assert.deepEqual(findLibrary('libc.so.3', s), { name: 'libc.so.3', path: '/cached/libc.so.3', candidate: null });
  assert.deepEqual(findLibrary('libb.so.2', s), { name: 'libb.so.2', path: null, candidate });
  assert.deepEqual(findLibrary('libd.so.4', s), { name: 'libd.so.4', path: null, candidate: null });
});

test('cpu never looks at CUDA', async () => {
  const selection = await selectDevice('cpu', options({ providerDir: folder(), probe: neverProbe }));
  assert.deepEqual(selection, { requested: 'cpu', device: 'cpu', provider: 'CPUExecutionProvider', reason: 'requested with --device cpu' });
});

test('without the provider files: auto falls back to cpu with the reason, cuda names the files and fp8q setup-cuda', async () => {
  const dir = folder({ 'libonnxruntime_providers_shared.so': fakeElf([]) });
  const auto = await selectDevice('auto', options({ providerDir: dir, probe: neverProbe }));
  assert.equal(auto.device, 'cpu');
  assert.equal(auto.provider, 'CPUExecutionProvider');
  assert.match(auto.reason, /^CUDA not used: the CUDA execution provider is not installed \(libonnxruntime_providers_cuda\.so missing in /);
  await assert.rejects(selectDevice('cuda', options({ providerDir: dir, probe: neverProbe })), (e: unknown) => {
    assert.ok(e instanceof DeviceUnavailableError);
    assert.match(e.message, /^--device cuda: the CUDA execution provider is not installed/);
    assert.match(e.message, /Run `fp8q setup-cuda` \(`npx fp8q setup-cuda` in a clone\)/);
    assert.deepEqual(e.problem.missing, ['libonnxruntime_providers_cuda.so']);
    // The CLI prints it as one line, exit code 1, no stack.
    assert.ok(isKnownError(e));
    assert.equal(exitCodeOf(e), EXIT_FAILURE);
    return true;
  });
});

test('CUDA libraries the loader cannot find are named, with the folder that holds them', async () => {
  const onPath = folder({ 'libcudart.so.13': '', 'libcuda.so.1': '', 'libcublas.so.13': '', 'libcurand.so.10': '' });
  const toolkit = folder({ 'libcublasLt.so.13': '' });
  const o = options({ providerDir: providerFolder(), librarySearch: search([onPath], [toolkit]), probe: neverProbe });
  const auto = await selectDevice('auto', o);
  assert.equal(auto.device, 'cpu');
  assert.equal(auto.reason, 'CUDA not used: the CUDA execution provider needs libcublasLt.so.13, which the dynamic loader cannot find');
  await assert.rejects(selectDevice('cuda', o), (e: unknown) => {
    assert.ok(e instanceof DeviceUnavailableError);
    assert.equal(e.problem.kind, 'libraries-missing');
    assert.deepEqual(e.problem.missing, ['libcublasLt.so.13']);
    assert.ok(e.message.includes(`It is in ${toolkit}: start fp8q with LD_LIBRARY_PATH=${toolkit}:$LD_LIBRARY_PATH`), e.message);
    return true;
  });
});

test('CUDA libraries found nowhere: say how to install the CUDA 13 runtime', async () => {
  const o = options({ providerDir: providerFolder(), librarySearch: search([folder({ 'libcuda.so.1': '' })]), probe: neverProbe });
  await assert.rejects(selectDevice('cuda', o), (e: unknown) => {
    assert.ok(e instanceof DeviceUnavailableError);
    assert.deepEqual(e.problem.missing, ['libcublasLt.so.13', 'libcublas.so.13', 'libcurand.so.10', 'libcudart.so.13']);
    assert.match(e.message, /Install the CUDA 13 runtime libraries .*pip install nvidia-cuda-runtime nvidia-cublas nvidia-curand.*LD_LIBRARY_PATH/);
    return true;
  });
});

test('only libcuda.so.1 missing means no NVIDIA driver', async () => {
  const libs = folder({ 'libcudart.so.13': '', 'libcublasLt.so.13': '', 'libcublas.so.13': '', 'libcurand.so.10': '' });
  const auto = await selectDevice('auto', options({ providerDir: providerFolder(), librarySearch: search([libs]), probe: neverProbe }));
  assert.equal(auto.reason, 'CUDA not used: no NVIDIA driver: libcuda.so.1 was not found');
});

test('the probe session decides last: its errors are classified, its success selects CUDA', async () => {
  const libs = folder(Object.fromEntries(CUDA_NEEDED.map((n) => [n, ''])));
  const withProbe = (probe: () => Promise<void>): CudaCheckOptions => options({ providerDir: providerFolder(), librarySearch: search([libs]), probe });
  const noGpu = withProbe(async () => {
    throw new Error('onnxruntime could not load the model on cuda: CUDA failure 100: no CUDA-capable device is detected ; GPU=0');
  });
  assert.equal((await selectDevice('auto', noGpu)).reason, 'CUDA not used: no CUDA-capable GPU is visible');
  await assert.rejects(selectDevice('cuda', noGpu), /^DeviceUnavailableError: --device cuda: no CUDA-capable GPU is visible\. Check nvidia-smi/);

  let probes = 0;
  const ok = await selectDevice(
    'auto',
    withProbe(async () => void probes++),
  );
  assert.equal(probes, 1);
  assert.deepEqual(
    { ...ok, reason: ok.reason.replace(/ \(.*\)$/, '') },
    {
      requested: 'auto',
      device: 'cuda',
      provider: 'CUDAExecutionProvider',
      reason: 'CUDA execution provider loaded',
    },
  );
  assert.match(ok.reason, /^CUDA execution provider loaded \(CUDA 13, ONNX Runtime's CUDA 13 build, installed by fp8q setup-cuda/);
});

test('selectDeviceEarly: the checks without a GPU decide at once, the probe later through ready, as selectDevice would', async () => {
  const libs = folder(Object.fromEntries(CUDA_NEEDED.map((n) => [n, ''])));
  const withProbe = (probe: () => Promise<void>): CudaCheckOptions => options({ providerDir: providerFolder(), librarySearch: search([libs]), probe });
  const cpu = selectDeviceEarly('cpu', options({ providerDir: folder(), probe: neverProbe }));
  assert.equal(cpu.selection.device, 'cpu');
  await cpu.ready;
  // No provider files: cuda throws at once, auto is the CPU with selectDevice's reason, no probe.
  const missing = options({ providerDir: folder(), probe: neverProbe });
  assert.throws(() => selectDeviceEarly('cuda', missing), DeviceUnavailableError);
  assert.deepEqual(selectDeviceEarly('auto', missing).selection, await selectDevice('auto', missing));

  // Everything installed: CUDA is selected before the probe has answered.
  let answer: (() => void) | undefined;
  const early = selectDeviceEarly(
    'auto',
    withProbe(() => new Promise<void>((resolve) => (answer = resolve))),
  );
  assert.equal(early.selection.device, 'cuda');
  let settled = false;
  void early.ready.then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false, 'ready waits for the probe');
  answer!();
  await early.ready;
  assert.deepEqual(
    early.selection,
    await selectDevice(
      'auto',
      withProbe(async () => undefined),
    ),
  );

  // The probe fails: ready rejects with the problem selectDevice classifies, and cpuInstead gives
  // auto's CPU selection with its reason.
  const noGpu = withProbe(async () => {
    throw new Error('onnxruntime could not load the model on cuda: CUDA failure 100: no CUDA-capable device is detected ; GPU=0');
  });
  const failing = selectDeviceEarly('auto', noGpu);
  await assert.rejects(failing.ready, (e: unknown) => {
    assert.ok(e instanceof DeviceUnavailableError);
    assert.deepEqual(cpuInstead('auto', e.problem), {
      requested: 'auto',
      device: 'cpu',
      provider: 'CPUExecutionProvider',
      reason: 'CUDA not used: no CUDA-capable GPU is visible',
    });
    return true;
  });
});

test('selectDeviceEarly turns TF32 off in the process environment before the probe starts (a worker thread cannot)', async () => {
  const libs = folder(Object.fromEntries(CUDA_NEEDED.map((n) => [n, ''])));
  const saved = process.env['NVIDIA_TF32_OVERRIDE'];
  delete process.env['NVIDIA_TF32_OVERRIDE'];
  try {
    let seen: string | undefined;
    const early = selectDeviceEarly(
      'cuda',
      options({
        providerDir: providerFolder(),
        librarySearch: search([libs]),
        probe: async () => void (seen = process.env['NVIDIA_TF32_OVERRIDE']),
      }),
    );
    await early.ready;
    assert.equal(seen, '0');
  } finally {
    if (saved === undefined) delete process.env['NVIDIA_TF32_OVERRIDE'];
    else process.env['NVIDIA_TF32_OVERRIDE'] = saved;
  }
});

test('selectDeviceEarly runs the real probe in one worker per process: later calls answer from it and start no thread', { skip: process.platform !== 'linux' }, async () => {
  // Provider files whose ELF cannot be read leave the verdict to the probe session, here the real
  // one in its worker thread (it fails without a GPU, passes with one). Each worker stays for the
  // process's life (cuda-probe-worker.ts), so one started per call would add up.
  const unreadable = options({ providerDir: folder({ 'libonnxruntime_providers_shared.so': '', 'libonnxruntime_providers_cuda.so': '' }) });
  const threads = (): number => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
  const settled = (early: ReturnType<typeof selectDeviceEarly>): Promise<string> =>
    early.ready.then(
      () => 'ready',
      (e: unknown) => (e instanceof DeviceUnavailableError ? e.problem.summary : Promise.reject(e)),
    );
  const saved = process.env['NVIDIA_TF32_OVERRIDE'];
  try {
    const first = await settled(selectDeviceEarly('auto', unreadable));
    // libuv's thread pool starts at the first asynchronous file operation: started before counting.
    await stat(root);
    const before = threads();
    assert.deepEqual([await settled(selectDeviceEarly('auto', unreadable)), await settled(selectDeviceEarly('cuda', unreadable))], [first, first]);
    assert.equal(threads(), before, 'no new thread for a later call');
  } finally {
    if (saved === undefined) delete process.env['NVIDIA_TF32_OVERRIDE'];
    else process.env['NVIDIA_TF32_OVERRIDE'] = saved;
  }
});

const CUDA12_NEEDED = ['libcublasLt.so.12', 'libcublas.so.12', 'libcurand.so.10', 'libcufft.so.11', 'libcudart.so.12', 'libcudnn.so.9', 'libcuda.so.1', 'libstdc++.so.6'];

test("onnxruntime-node's own CUDA 12 provider: auto uses it when its libraries resolve and says which build loaded", async () => {
  const dir = providerFolder(CUDA12_NEEDED);
  assert.deepEqual(cudaProviderBuild(dir), { cudaMajor: 12, origin: "onnxruntime-node's own CUDA 12 build, downloaded by its install script" });
  assert.equal(cudaProviderBuild(folder()), null);
  const libs = folder(Object.fromEntries(CUDA12_NEEDED.map((n) => [n, ''])));
  let probes = 0;
  const ok = await selectDevice('auto', options({ providerDir: dir, librarySearch: search([libs]), probe: async () => void probes++ }));
  assert.equal(probes, 1);
  assert.equal(ok.device, 'cuda');
  assert.match(ok.reason, /^CUDA execution provider loaded \(CUDA 12, onnxruntime-node's own CUDA 12 build/);

  // Its CUDA 12 libraries absent: CPU, and the remedy names both ways out.
  const noLibs = await selectDevice('auto', options({ providerDir: dir, librarySearch: search([folder()]), probe: neverProbe }));
  assert.equal(noLibs.device, 'cpu');
  assert.match(noLibs.reason, /needs libcublasLt\.so\.12, libcublas\.so\.12, libcurand\.so\.10, libcufft\.so\.11, libcudart\.so\.12, libcudnn\.so\.9/);
  await assert.rejects(selectDevice('cuda', options({ providerDir: dir, librarySearch: search([folder()]), probe: neverProbe })), (e: unknown) => {
    assert.ok(e instanceof DeviceUnavailableError);
    assert.match(e.problem.remedy, /onnxruntime-node's own CUDA 12 provider: install the CUDA 12 runtime libraries and cuDNN 9/);
    assert.match(e.problem.remedy, /fp8q setup-cuda/);
    return true;
  });
});

test('onnxruntime load errors map to the missing piece', () => {
  // As onnxruntime-node 1.29 reports a provider whose CUDA libraries are missing (seen here).
  const real =
    'onnxruntime could not load the model on cuda: OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library\u001b[1;31m2026-11-26 ' +
    '[E:onnxruntime:onnxruntime-node, provider_bridge_ort.cc:2146 Create] [ONNXRuntimeError] : 1 : FAIL : Failed to load library ' +
    '/x/libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: No such file or directory\n\u001b[m';
  const missingLib = classifyCudaLoadError(real);
  assert.equal(missingLib.kind, 'libraries-missing');
  assert.deepEqual(missingLib.missing, ['libcublasLt.so.13']);
  const noShared = classifyCudaLoadError(
    'Failed to load library libonnxruntime_providers_shared.so with error: libonnxruntime_providers_shared.so: cannot open shared object file: No such file or directory',
  );
  assert.equal(noShared.kind, 'provider-missing');
  assert.match(noShared.remedy, /fp8q setup-cuda/);
  assert.equal(classifyCudaLoadError('libcuda.so.1: cannot open shared object file').kind, 'no-driver');
  assert.equal(classifyCudaLoadError('CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version').kind, 'no-driver');
  const other = classifyCudaLoadError('something else\nsecond line');
  assert.equal(other.kind, 'load-failed');
  assert.equal(other.summary, 'the CUDA execution provider did not start (something else)');
});

test('on this machine, auto and cuda agree: both CUDA, or cpu with the reason cuda fails with', async () => {
  const auto = await selectDevice('auto');
  if (auto.device === 'cuda') {
    assert.equal((await selectDevice('cuda')).device, 'cuda');
    return;
  }
  await assert.rejects(selectDevice('cuda'), (e: unknown) => {
    assert.ok(e instanceof DeviceUnavailableError, String(e));
    assert.equal(auto.reason, `CUDA not used: ${e.problem.summary}`);
    return true;
  });
});
