// Sharding: the shard assignment and index builder, sharded output of a real fixture (index
// weight_map and total_size), and sharded INPUT, tested differentially: a fixture re-saved as
// shards with an index must convert to exactly the bytes the single-file fixture converts to.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Checkpoint } from '../src/io/checkpoint/checkpoint.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import { SafetensorsReader } from '../src/io/safetensors/safetensors-reader.js';
import { assignShards, buildIndex } from '../src/pipeline/shards.js';
import { plannedOutput, type PlannedOutput } from '../src/passes/plan.js';
import { listFiles, readCheckpointTensors, readJson, reshardFixture, sha256File, writeCheckpoint } from './helpers/checkpoint-files.js';
import { modelDir } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

let tmp: TempDir;
before(async () => {
  tmp = await makeTempDir('shards');
});
after(async () => {
  await tmp.cleanup();
});

const u8 = (name: string, n: number): PlannedOutput => plannedOutput(name, 'U8', [n]);

describe('assignShards and buildIndex', () => {
  test('greedy in order, groups never split, an oversized group alone, transformers file names', () => {
    const groups = [[u8('a', 40)], [u8('b.weight', 50), u8('b.weight_scale_inv', 10)], [u8('c', 150)], [u8('d', 30)], [u8('e', 70)]];
    const shards = assignShards(groups, 100);
    assert.deepEqual(
      shards.map((s) => ({ file: s.file, names: s.tensors.map((t) => t.name), bytes: s.bytes })),
      [
        // 40 + 60 is exactly the limit: still one shard.
        { file: 'model-00001-of-00003.safetensors', names: ['a', 'b.weight', 'b.weight_scale_inv'], bytes: 100 },
        { file: 'model-00002-of-00003.safetensors', names: ['c'], bytes: 150 },
        { file: 'model-00003-of-00003.safetensors', names: ['d', 'e'], bytes: 100 },
      ],
    );
    const index = buildIndex(shards);
    assert.equal(index.metadata.total_size, 350);
    assert.deepEqual(Object.keys(index.weight_map), ['a', 'b.weight', 'b.weight_scale_inv', 'c', 'd', 'e']);
    assert.equal(index.weight_map['e'], 'model-00003-of-00003.safetensors');
    assert.equal(index.weight_map['b.weight_scale_inv'], 'model-00001-of-00003.safetensors');
  });

  test('everything under the limit is one model.safetensors; no tensors still gives one file', () => {
    assert.deepEqual(
      assignShards([[u8('a', 1)], [u8('b', 2)]], 100).map((s) => s.file),
      ['model.safetensors'],
    );
    assert.deepEqual(
      assignShards([], 100).map((s) => [s.file, s.tensors.length]),
      [['model.safetensors', 0]],
    );
  });
});

describe('sharded output', () => {
  test('a small --max-shard-size gives several shards and an index covering every tensor exactly once', async () => {
    const out = join(tmp.path, 'llama-sharded');
    const maxShardBytes = 400_000;
    const summary = await convertCheckpoint({ input: modelDir('llama'), output: out, maxShardBytes, hashShards: true });
    const files = await listFiles(out);
    const shardFiles = files.filter((f) => f.endsWith('.safetensors'));
    assert.ok(shardFiles.length >= 4, `shards: ${shardFiles.join(', ')}`);
    shardFiles.forEach((f, i) => assert.equal(f, `model-${String(i + 1).padStart(5, '0')}-of-${String(shardFiles.length).padStart(5, '0')}.safetensors`));
    assert.ok(files.includes('model.safetensors.index.json'));

    const index = (await readJson(join(out, 'model.safetensors.index.json'))) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    const seen = new Map<string, string>();
    let total = 0;
    for (const f of shardFiles) {
      const r = await SafetensorsReader.open(join(out, f));
      try {
        let shardBytes = 0;
        for (const name of r.tensorNames()) {
          assert.ok(!seen.has(name), `${name} is in ${seen.get(name)} and ${f}`);
          seen.set(name, f);
          shardBytes += r.info(name).byteLength;
        }
        total += shardBytes;
        // Over the limit only when one entry (a weight and its scale) alone is larger.
        if (shardBytes > maxShardBytes) assert.ok(r.tensorNames().length <= 2, `${f}: ${shardBytes} bytes in ${r.tensorNames().length} tensors`);
        for (const name of r.tensorNames()) {
          if (name.endsWith('.weight_scale_inv')) assert.ok(r.has(name.replace(/_scale_inv$/, '')), `${name} is beside its weight`);
        }
      } finally {
        await r.close();
      }
    }
    assert.deepEqual(Object.keys(index.weight_map).sort(), [...seen.keys()].sort(), 'weight_map names exactly the tensors in the shards');
    for (const [name, f] of seen) assert.equal(index.weight_map[name], f, name);
    assert.equal(index.metadata.total_size, total, 'total_size = sum of tensor bytes');
    assert.equal(index.metadata.total_size, summary.bytesOut);

    // The summary lists the shards in order with their sizes and SHA-256.
    assert.deepEqual(
      summary.shards.map((s) => s.file),
      shardFiles,
    );
    for (const s of summary.shards) {
      assert.equal(s.bytes, (await stat(join(out, s.file))).size, s.file);
      assert.equal(s.sha256, await sha256File(join(out, s.file)), s.file);
    }

    // The sharded output holds exactly the tensors of an unsharded convert.
    const single = join(tmp.path, 'llama-single');
    await convertCheckpoint({ input: modelDir('llama'), output: single });
    assert.deepEqual(await readCheckpointTensors(out), await readCheckpointTensors(single));
    assert.deepEqual(await readJson(join(out, 'config.json')), await readJson(join(single, 'config.json')));
  });
});

describe('sharded input', () => {
  for (const model of ['llama', 'deepseek_v3'] as const) {
    test(`${model} re-saved as 3 shards with an index converts to the same bytes as the single file`, async () => {
      const shardedIn = join(tmp.path, `${model}-in-3`);
      await reshardFixture(modelDir(model), shardedIn, 3);
      const ckpt = await Checkpoint.open(shardedIn);
      try {
        assert.equal(ckpt.shardNames.length, 3);
        assert.deepEqual(ckpt.otherFiles, ['config.json', 'generation_config.json']);
      } finally {
        await ckpt.close();
      }
      const fromSingle = join(tmp.path, `${model}-from-single`);
      const fromSharded = join(tmp.path, `${model}-from-sharded`);
      const a = await convertCheckpoint({ input: modelDir(model), output: fromSingle });
      const b = await convertCheckpoint({ input: shardedIn, output: fromSharded });
      // The input index is not copied: a single-file output has none.
      assert.deepEqual(await listFiles(fromSharded), ['config.json', 'generation_config.json', 'model.safetensors']);
      assert.deepEqual(await listFiles(fromSharded), await listFiles(fromSingle));
      for (const f of await listFiles(fromSingle)) {
        assert.deepEqual(await readFile(join(fromSharded, f)), await readFile(join(fromSingle, f)), `${f} differs`);
      }
      assert.deepEqual(b.shards, a.shards);
      assert.equal(b.bytesIn, a.bytesIn);
    });
  }

  test('sharded in → sharded out gives the same index and tensors as single in → sharded out', async () => {
    const shardedIn = join(tmp.path, 'mixtral-in-4');
    await reshardFixture(modelDir('mixtral'), shardedIn, 4);
    const a = join(tmp.path, 'mixtral-single-sharded');
    const b = join(tmp.path, 'mixtral-sharded-sharded');
    await convertCheckpoint({ input: modelDir('mixtral'), output: a, maxShardBytes: 1_000_000 });
    await convertCheckpoint({ input: shardedIn, output: b, maxShardBytes: 1_000_000 });
    assert.deepEqual(await readJson(join(b, 'model.safetensors.index.json')), await readJson(join(a, 'model.safetensors.index.json')));
    assert.deepEqual(await listFiles(b), await listFiles(a));
    for (const f of await listFiles(a)) assert.deepEqual(await readFile(join(b, f)), await readFile(join(a, f)), f);
  });

  test('a stray *.safetensors the index does not name (e.g. consolidated.safetensors) is neither read nor copied', async () => {
    const dir = join(tmp.path, 'llama-with-consolidated');
    await reshardFixture(modelDir('llama'), dir, 2);
    await copyFile(join(modelDir('llama'), 'model.safetensors'), join(dir, 'consolidated.safetensors'));
    const out = join(tmp.path, 'llama-with-consolidated-out');
    const summary = await convertCheckpoint({ input: dir, output: out });
    assert.deepEqual(await listFiles(out), ['config.json', 'generation_config.json', 'model.safetensors']);
    assert.ok(
      summary.warnings.some((w) => w.includes('consolidated.safetensors')),
      summary.warnings.join('\n'),
    );
  });

  test("without an index, Mistral's consolidated.safetensors beside model.safetensors is not read as a shard", async () => {
    const dir = join(tmp.path, 'llama-single-with-consolidated');
    await reshardFixture(modelDir('llama'), dir, 1);
    // Different tensor names (mistral-inference style): read as a shard, it would be converted too.
    const renamed = new Map([...(await readCheckpointTensors(modelDir('llama')))].map(([n, t]) => [n.replace(/^model\./, ''), t]));
    await writeCheckpoint(join(dir, 'consolidated-tmp'), renamed);
    await copyFile(join(dir, 'consolidated-tmp', 'model.safetensors'), join(dir, 'consolidated.safetensors'));
    await rm(join(dir, 'consolidated-tmp'), { recursive: true });
    const out = join(tmp.path, 'llama-single-with-consolidated-out');
    const summary = await convertCheckpoint({ input: dir, output: out });
    assert.deepEqual(await listFiles(out), ['config.json', 'generation_config.json', 'model.safetensors']);
    const srcNames = [...(await readCheckpointTensors(modelDir('llama'))).keys()];
    const outNames = [...(await readCheckpointTensors(out)).keys()];
    assert.deepEqual(outNames.filter((n) => !n.endsWith('_scale_inv')).sort(), srcNames.sort(), 'only the transformers tensors were converted');
    assert.ok(
      summary.warnings.some((w) => w.startsWith("consolidated.safetensors is not one of the checkpoint's shards")),
      summary.warnings.join('\n'),
    );
  });

  describe('a broken index is refused with a message naming the problem', () => {
    async function brokenCopy(label: string, edit: (index: { weight_map: Record<string, string> }) => void): Promise<string> {
      const dir = join(tmp.path, `broken-${label}`);
      await reshardFixture(modelDir('llama'), dir, 2);
      const path = join(dir, 'model.safetensors.index.json');
      const index = JSON.parse(await readFile(path, 'utf8')) as { weight_map: Record<string, string> };
      edit(index);
      await writeFile(path, JSON.stringify(index));
      return dir;
    }
    const refused = (re: RegExp) => (e: unknown) => e instanceof CheckpointError && re.test(e.message);

    test('a shard the index names is missing', async () => {
      const dir = await brokenCopy('missing', (i) => {
        i.weight_map['lm_head.weight'] = 'model-00009-of-00009.safetensors';
      });
      await assert.rejects(Checkpoint.open(dir), refused(/names shard "model-00009-of-00009.safetensors", which is not in the folder/));
    });

    test('the index maps a tensor to a shard that does not hold it', async () => {
      const dir = await brokenCopy('wrong-shard', (i) => {
        i.weight_map['model.layers.9.mlp.up_proj.weight'] = 'model-00001-of-00002.safetensors';
      });
      await assert.rejects(Checkpoint.open(dir), refused(/maps tensor "model.layers.9.mlp.up_proj.weight" to model-00001-of-00002.safetensors, but that shard has no such tensor/));
    });

    test('a shard path outside the model folder', async () => {
      const dir = await brokenCopy('escape', (i) => {
        i.weight_map['lm_head.weight'] = '../elsewhere/model.safetensors';
      });
      await assert.rejects(Checkpoint.open(dir), refused(/points outside the model folder; refusing to read it/));
    });

    test('no weight_map', async () => {
      const dir = join(tmp.path, 'broken-nomap');
      await reshardFixture(modelDir('llama'), dir, 2);
      await writeFile(join(dir, 'model.safetensors.index.json'), '{"metadata": {}}');
      await assert.rejects(Checkpoint.open(dir), refused(/has no "weight_map" object/));
    });
  });
});
