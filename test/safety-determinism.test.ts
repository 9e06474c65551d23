// Determinism: the same input and options give byte-identical output folders on any thread count,
// and the SHA-256 that --json reports for each shard is the hash of the file on disk, so a
// pipeline can pin results.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { convertCheckpoint, type ConvertSummary } from '../src/pipeline/convert-checkpoint.js';
import { listFiles, sha256File, writeCheckpoint, type TensorData } from './helpers/checkpoint-files.js';
import { modelDir } from './helpers/fixtures.js';
import { runCli } from './helpers/safety.js';
import { makeTempDir, seededBytes, type TempDir } from './helpers/temp-dir.js';

let tmp: TempDir;
before(async () => {
  tmp = await makeTempDir('determinism');
});
after(async () => tmp.cleanup());

async function convertJson(args: readonly string[]): Promise<ConvertSummary> {
  const result = await runCli(['convert', ...args, '--json']);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as ConvertSummary;
}

for (const [model, extra] of [
  ['llama', ['--max-shard-size', '1MB']],
  ['mixtral', []],
  ['deepseek_v3', ['--max-shard-size', '2MB', '--scale-fmt', 'ue8m0']],
] as const) {
  test(`${model} ${extra.join(' ')}: two runs, byte-identical folders; --json hashes match the files`, async () => {
    const a = join(tmp.path, `${model}-a`);
    const b = join(tmp.path, `${model}-b`);
    const sa = await convertJson([modelDir(model), '-o', a, ...extra]);
    const sb = await convertJson([modelDir(model), '-o', b, ...extra]);
    const files = await listFiles(a);
    assert.deepEqual(await listFiles(b), files);
    for (const f of files) assert.ok((await readFile(join(a, f))).equals(await readFile(join(b, f))), `${f} differs between runs`);

    assert.deepEqual(sb.shards, sa.shards);
    assert.equal(sa.shards.length, files.filter((f) => f.endsWith('.safetensors')).length);
    if ((extra as readonly string[]).includes('--max-shard-size')) assert.ok(sa.shards.length > 1, 'expected a sharded output');
    for (const s of sa.shards) {
      assert.match(s.sha256 ?? '', /^[0-9a-f]{64}$/);
      assert.equal(s.sha256, await sha256File(join(a, s.file)), `${s.file}: reported hash is not the file's`);
      assert.equal(s.bytes, (await readFile(join(a, s.file))).byteLength);
    }
  });
}

test('the same bytes with 0 (main thread), 1 and 3 quantize threads', async () => {
  // Weights over 1 MiB go to the worker pool (smaller ones stay on the main thread), so the model
  // mixes both, with edge blocks (1000 x 1100 is not a multiple of 128).
  const input = join(tmp.path, 'threads-in');
  const tensors = new Map<string, TensorData>([
    ['model.layers.0.mlp.up_proj.weight', { dtype: 'BF16', shape: [1000, 1100], bytes: bf16Noise(1000 * 1100, 1) }],
    ['model.layers.0.mlp.down_proj.weight', { dtype: 'F32', shape: [640, 520], bytes: f32Noise(640 * 520, 2) }],
    ['model.layers.0.self_attn.q_proj.weight', { dtype: 'BF16', shape: [96, 200], bytes: bf16Noise(96 * 200, 3) }],
    ['model.norm.weight', { dtype: 'BF16', shape: [1100], bytes: bf16Noise(1100, 4) }],
  ]);
  await writeCheckpoint(input, tensors, { config: { architectures: ['LlamaForCausalLM'], model_type: 'llama' } });
  const runs: string[] = [];
  for (const threads of [0, 1, 3]) {
    const out = join(tmp.path, `threads-${threads}`);
    await convertCheckpoint({ input, output: out, threads, maxShardBytes: 1_000_000 });
    runs.push(out);
  }
  const files = await listFiles(runs[0]!);
  assert.ok(files.length > 3, files.join(', '));
  for (const other of runs.slice(1)) {
    assert.deepEqual(await listFiles(other), files);
    for (const f of files) assert.ok((await readFile(join(runs[0]!, f))).equals(await readFile(join(other, f))), `${f} differs in ${other}`);
  }
});

/** Finite BF16 values of magnitude < 2 (the top exponent bit cleared). */
function bf16Noise(count: number, seed: number): Uint8Array {
  const bytes = seededBytes(count * 2, seed);
  for (let i = 1; i < bytes.length; i += 2) bytes[i] = bytes[i]! & 0xbf;
  return bytes;
}

function f32Noise(count: number, seed: number): Uint8Array {
  const bytes = seededBytes(count * 4, seed);
  for (let i = 3; i < bytes.length; i += 4) bytes[i] = bytes[i]! & 0xbf;
  return bytes;
}
