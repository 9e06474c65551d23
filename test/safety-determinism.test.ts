// Determinism: the same input and options give byte-identical output folders on any thread count,
// and the SHA-256 that --json reports for each shard is the hash of the file on disk, so a
// pipeline can pin results.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { convertCheckpoint, type ConvertSummary } from '../src/io/convert-checkpoint.js';
import { listFiles, sha256File } from './helpers/checkpoint-files.js';
import { modelDir } from './helpers/fixtures.js';
import { runCli } from './helpers/safety.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

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
      assert.match(s.sha256, /^[0-9a-f]{64}$/);
      assert.equal(s.sha256, await sha256File(join(a, s.file)), `${s.file}: reported hash is not the file's`);
      assert.equal(s.bytes, (await readFile(join(a, s.file))).byteLength);
    }
  });
}

test('llama: the same bytes with 0 (main thread), 1 and 3 quantize threads', async () => {
  const runs: string[] = [];
  for (const threads of [0, 1, 3]) {
    const out = join(tmp.path, `llama-threads-${threads}`);
    await convertCheckpoint({ input: modelDir('llama'), output: out, threads, maxShardBytes: 1_000_000 });
    runs.push(out);
  }
  const files = await listFiles(runs[0]!);
  for (const other of runs.slice(1)) {
    assert.deepEqual(await listFiles(other), files);
    for (const f of files) assert.ok((await readFile(join(runs[0]!, f))).equals(await readFile(join(other, f))), `${f} differs in ${other}`);
  }
});
