// The forward reads an FP8 checkpoint's layout with the reader every other command uses
// (io/quantized-format.ts): a config without weight_block_size is refused with the reader's
// message instead of being read as 128x128, and compressed-tensors scale names come from the
// detected layout.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Checkpoint } from '../src/io/checkpoint.js';
import { convertCheckpoint } from '../src/io/convert-checkpoint.js';
import { QuantizationConfigError } from '../src/io/quantized-format.js';
import { ModelWeights } from '../src/runtime/models/weights.js';
import { modelDir } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

describe('the forward reads FP8 layouts with io/quantized-format', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir('fp8-layout');
  });
  after(() => tmp.cleanup());

  test('weight_block_size missing: refused, not assumed 128x128', async () => {
    const out = join(tmp.path, 'hf');
    await convertCheckpoint({ input: modelDir('llama'), output: out, block: { bn: 64, bk: 64 } });
    const configPath = join(out, 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { quantization_config: Record<string, unknown> };
    const ckpt = await Checkpoint.open(out);
    try {
      const weights = new ModelWeights(ckpt);
      assert.deepEqual(weights.block, { bn: 64, bk: 64 });
      const scope = weights.scope();
      const q = await scope.linear('model.layers.0.self_attn.q_proj');
      assert.equal(q.kind, 'fp8');
      scope.close();
    } finally {
      await ckpt.close();
    }
    delete config.quantization_config['weight_block_size'];
    await writeFile(configPath, JSON.stringify(config));
    const broken = await Checkpoint.open(out);
    try {
      assert.throws(() => new ModelWeights(broken), (e: unknown) => e instanceof QuantizationConfigError && /weight_block_size/.test(e.message));
    } finally {
      await broken.close();
    }
  });

  test('compressed-tensors: weight_scale found through the detected layout', async () => {
    const out = join(tmp.path, 'ct');
    await convertCheckpoint({ input: modelDir('llama'), output: out, outputFormat: 'compressed-tensors' });
    const ckpt = await Checkpoint.open(out);
    try {
      const weights = new ModelWeights(ckpt);
      assert.equal(weights.format?.format, 'compressed-tensors');
      assert.equal(weights.scaleOf('model.layers.0.mlp.down_proj.weight'), 'model.layers.0.mlp.down_proj.weight_scale');
      const scope = weights.scope();
      const w = await scope.linear('model.layers.0.mlp.down_proj');
      assert.equal(w.kind, 'fp8');
      scope.close();
    } finally {
      await ckpt.close();
    }
  });
});
