// Faults during a conversion: the output appears by one rename only after every file is written
// and fsynced; an error, a full disk, SIGINT or SIGTERM leaves neither the output nor its staging
// folder and exits non-zero; dangerous destinations are refused; and the input is never changed
// (every fixture file's SHA-256 is the same after this file's tests as before).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, before, describe, mock, test } from 'node:test';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, open, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { narrowFromFloat32 } from '../src/fp8/dtypes.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import { SafetensorsWriter } from '../src/io/safetensors/safetensors-writer.js';
import { writeCheckpoint, type TensorData } from './helpers/checkpoint-files.js';
import { FIXTURES, modelDir, ROOT } from './helpers/fixtures.js';
import { assertNoOutputLeft, assertOneLineFailure, folderChecksums, runCli } from './helpers/safety.js';
import { makeTempDir, seededBytes, type TempDir } from './helpers/temp-dir.js';

const LLAMA = modelDir('llama');
let tmp: TempDir;
let fixturesBefore: Map<string, string>;
let caseNo = 0;
const fresh = (label: string): string => join(tmp.path, `${label}-${caseNo++}`);

before(async () => {
  tmp = await makeTempDir('faults');
  fixturesBefore = await folderChecksums(FIXTURES);
});
after(async () => {
  await tmp.cleanup();
  // The input is never changed: every fixture converted above hashes as it did before.
  assert.deepEqual(await folderChecksums(FIXTURES), fixturesBefore);
});

describe('destinations that are refused before anything is written', () => {
  test('output equal to the input', async () => {
    const result = await runCli(['convert', LLAMA, '-o', LLAMA, '--force', '--quiet']);
    assertOneLineFailure(result, `output folder ${LLAMA} is the input folder`);
  });

  test('output inside the input', async () => {
    const out = join(LLAMA, 'fp8');
    const result = await runCli(['convert', LLAMA, '-o', out, '--quiet']);
    assertOneLineFailure(result, `output folder ${out} is inside the input folder ${LLAMA}`);
    await assertNoOutputLeft(out);
  });

  test('output containing the input (--force would delete it)', async () => {
    const input = fresh('outer');
    await cp(LLAMA, join(input, 'model'), { recursive: true });
    const result = await runCli(['convert', join(input, 'model'), '-o', input, '--force', '--quiet']);
    assertOneLineFailure(result, `output folder ${input} contains the input folder`);
  });

  test('output a symbolic link to the input', async () => {
    const input = fresh('in');
    await cp(LLAMA, input, { recursive: true });
    const before = await folderChecksums(input);
    const link = fresh('link');
    await symlink(input, link);
    const result = await runCli(['convert', input, '-o', link, '--force', '--quiet']);
    assertOneLineFailure(result, `output folder ${link} is the input folder`);
    assert.deepEqual(await folderChecksums(input), before);
  });

  test('a non-empty output without --force (left as it was)', async () => {
    const out = fresh('busy');
    await mkdir(out);
    await writeFile(join(out, 'keep.txt'), 'mine');
    const result = await runCli(['convert', LLAMA, '-o', out, '--quiet']);
    assertOneLineFailure(result, `output folder ${out} is not empty: pass --force`);
    assert.deepEqual(await readdir(out), ['keep.txt']);
  });

  test('an output path that is a file', async () => {
    const out = fresh('file');
    await writeFile(out, 'x');
    const result = await runCli(['convert', LLAMA, '-o', out, '--quiet']);
    assertOneLineFailure(result, `output ${out} exists and is not a folder`);
    assert.equal(await readFile(out, 'utf8'), 'x');
  });
});

describe('atomic output', () => {
  test('nothing at the output path until every file is written and fsynced; then no staging left', async () => {
    const out = fresh('atomic');
    const probe = await open(join(LLAMA, 'config.json'), 'r');
    const fileHandleProto = Object.getPrototypeOf(probe) as { sync(): Promise<void> };
    await probe.close();
    const sync = mock.method(fileHandleProto, 'sync');
    let syncsAtFinalizing = -1;
    let stagingFiles: string[] = [];
    try {
      await convertCheckpoint({
        input: LLAMA,
        output: out,
        maxShardBytes: 1_000_000,
        onEvent: (e) => {
          if (e.type === 'tensor' || e.type === 'finalizing') assert.ok(!existsSync(out), `output visible at ${e.type}`);
          if (e.type === 'finalizing') syncsAtFinalizing = sync.mock.callCount();
        },
      });
      stagingFiles = await readdir(out, { recursive: true });
    } finally {
      sync.mock.restore();
    }
    // Files written after the shards (index, config.json, generation_config.json) and the folder
    // itself are fsynced before the rename, not only the shards.
    const afterShards = stagingFiles.filter((f) => !/^model-\d+-of-\d+\.safetensors$/.test(f));
    assert.ok(afterShards.length >= 3, afterShards.join(', '));
    assert.ok(sync.mock.callCount() - syncsAtFinalizing >= afterShards.length + 1, `only ${sync.mock.callCount() - syncsAtFinalizing} fsyncs after the shards`);
    await rm(out, { recursive: true });
    await assertNoOutputLeft(out);
  });

  test('--force replaces an existing output whole', async () => {
    const out = fresh('replace');
    await mkdir(out);
    await writeFile(join(out, 'stale.safetensors'), 'old');
    await convertCheckpoint({ input: LLAMA, output: out, force: true });
    const files = await readdir(out);
    assert.ok(!files.includes('stale.safetensors'), `old output survived: ${files.join(', ')}`);
    assert.ok(files.includes('model.safetensors'), `no new output: ${files.join(', ')}`);
    const siblings = await readdir(tmp.path);
    assert.deepEqual(
      siblings.filter((s) => s.includes('fp8q-tmp')),
      [],
    );
  });

  test('an error after some shards are written removes the staging folder', async () => {
    // Tensors are written in name order; the NaN is in the last one, after other shards are done.
    const dir = fresh('late-nan');
    const n = 64;
    const weight = (bad: boolean): Uint8Array => {
      const v = new Float32Array(n * n).map((_, i) => Math.cos(i));
      if (bad) v[n * n - 1] = NaN;
      return narrowFromFloat32(v, 'BF16');
    };
    const tensors = new Map<string, TensorData>();
    for (let l = 0; l < 4; l++) tensors.set(`model.layers.${l}.mlp.up_proj.weight`, { dtype: 'BF16', shape: [n, n], bytes: weight(l === 3) });
    await writeCheckpoint(dir, tensors, { config: { architectures: ['LlamaForCausalLM'], model_type: 'llama' } });
    const out = fresh('late-nan-out');
    let shardsStarted = 0;
    await assert.rejects(
      convertCheckpoint({ input: dir, output: out, maxShardBytes: 5000, onEvent: (e) => void (e.type === 'tensor' && shardsStarted++) }),
      (e: unknown) => e instanceof CheckpointError && e.message.includes('model.layers.3.mlp.up_proj.weight'),
    );
    assert.equal(shardsStarted, 4);
    await assertNoOutputLeft(out);
  });
});

describe('a full disk', () => {
  const diskFull =
    /disk full while writing .* \((ENOSPC|EFBIG|EDQUOT)\): the converted checkpoint needs about [\d.]+ [KM]iB there; free space or choose another -o folder \(the partial output was removed\)/;

  test('ENOSPC from a write (simulated): one clear line, nothing left', async () => {
    let writes = 0;
    const realWrite = SafetensorsWriter.prototype.write;
    const write = mock.method(SafetensorsWriter.prototype, 'write', async function (this: SafetensorsWriter, name: string, bytes: Uint8Array, offset?: number) {
      if (++writes > 5) throw Object.assign(new Error(`ENOSPC: no space left on device, write`), { code: 'ENOSPC', errno: -28, syscall: 'write' });
      return realWrite.call(this, name, bytes, offset);
    });
    const out = fresh('enospc');
    try {
      await assert.rejects(convertCheckpoint({ input: LLAMA, output: out }), (e: unknown) => e instanceof CheckpointError && diskFull.test(e.message));
      await assertNoOutputLeft(out);
      writes = 0;
      const result = await runCli(['convert', LLAMA, '-o', out, '--quiet']);
      assert.equal(result.code, 1);
      assertOneLineFailure(result, diskFull);
      await assertNoOutputLeft(out);
    } finally {
      write.mock.restore();
    }
  });

  test('a real 1 MiB tmpfs (needs root and mount; skipped otherwise)', async (t) => {
    const mnt = fresh('tmpfs');
    await mkdir(mnt);
    const mounted = process.getuid?.() === 0 && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]).status === 0;
    if (!mounted) {
      t.skip('cannot mount a tmpfs here; the simulated ENOSPC test covers the message');
      return;
    }
    try {
      const out = join(mnt, 'llama-fp8'); // ~2.2 MB of output into 1 MiB
      const result = await runCli(['convert', LLAMA, '-o', out, '--quiet']);
      assert.equal(result.code, 1);
      assertOneLineFailure(result, diskFull, out);
      assert.deepEqual(await readdir(mnt), [], 'the staging folder was not removed');
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});

describe('signals', () => {
  let bigInput: string;
  before(async () => {
    // 16 MB of BF16 weights: a conversion of about a second, long enough to interrupt at 10-20 %.
    // Each weight is under 1 MiB, so it is quantized on the main thread (the signal handler's
    // thread) whether or not the worker pool runs here.
    bigInput = fresh('big');
    const tensors = new Map<string, TensorData>();
    for (let l = 0; l < 16; l++) {
      tensors.set(`model.layers.${l}.mlp.up_proj.weight`, { dtype: 'BF16', shape: [500, 1000], bytes: bf16Noise(500 * 1000, l + 1) });
    }
    await writeCheckpoint(bigInput, tensors, { config: { architectures: ['LlamaForCausalLM'], model_type: 'llama' } });
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    test(`${signal} mid-conversion: staging removed, exit 130 (SIGINT) or 143 (SIGTERM), input unchanged`, async () => {
      const before = await folderChecksums(bigInput);
      const out = fresh(`sig-${signal}`);
      const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/helpers/run-cli.ts'), 'convert', bigInput, '-o', out], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, CI: '1' },
      });
      let stderr = '';
      let signalled = false;
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        stderr += chunk;
        // Signal once real work is under way (plain progress lines come every 10%).
        if (!signalled && /converting [1-9]\d?\.\d%/.test(stderr)) {
          signalled = true;
          child.kill(signal);
        }
      });
      const code = await exited;
      assert.ok(signalled, `the conversion finished before it could be signalled:\n${stderr}`);
      assert.equal(code, signal === 'SIGTERM' ? 143 : 130, stderr);
      assert.match(stderr, new RegExp(`interrupted by ${signal}; partial output removed`));
      await assertNoOutputLeft(out);
      assert.deepEqual(await folderChecksums(bigInput), before);
    });
  }
});

describe('the input is opened read-only', () => {
  test('a read-only copy of the input converts, and is unchanged', async () => {
    const input = fresh('readonly');
    await cp(LLAMA, input, { recursive: true });
    const before = await folderChecksums(input);
    for (const f of await readdir(input)) await chmod(join(input, f), 0o444);
    await chmod(input, 0o555);
    const out = fresh('readonly-out');
    try {
      const result = await runCli(['convert', input, '-o', out, '--quiet']);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(await folderChecksums(input), before);
      assert.deepEqual((await readdir(input)).sort(), [...before.keys()].sort());
    } finally {
      await chmod(input, 0o755);
    }
  });
});

function bf16Noise(count: number, seed: number): Uint8Array {
  const bytes = seededBytes(count * 2, seed);
  // Clear the top exponent bit of each BF16 value: finite values of modest magnitude.
  for (let i = 1; i < bytes.length; i += 2) bytes[i] = bytes[i]! & 0xbf;
  return bytes;
}
