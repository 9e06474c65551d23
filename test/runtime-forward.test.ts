// The graph forward (ModelRunner, one decoder layer per onnxruntime session) on the transformers
// fixtures: against transformers' float32 logits, against the plain TypeScript reference
// forward, the layer-at-a-time memory bound, and a sharded copy of a fixture.
//
// Tolerances. Against transformers: < 1e-4 relative L2 (the acceptance bar); measured 4.7e-5
// (llama), 7.5e-5 (mixtral), 1.8e-5 (deepseek_v3). Nearly all of it is rotary frequencies: the
// fixtures' logits_f32 came from a BF16-built model upcast with .float(), whose inv_freq buffer
// had been rounded to BF16 on the way (rope.ts). With the same rounding (bf16RopeFrequencies)
// the forward matches to ~7e-7, so that is also checked, at 2e-6: a tolerance that catches a
// wrong eps, a missing bias or a misplaced rotary pair, which 1e-4 would not. Against the
// reference forward: < 2e-6 (float32 accumulation order; measured ~6e-7).

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { ModelRunner } from '../src/runtime/models/runner.js';
import { referenceForward } from '../src/runtime/models/reference-forward.js';
import { readInputIds } from '../src/runtime/models/token-ids.js';
import { relativeL2Error } from '../src/runtime/ops/compare.js';
import { testDevice } from './helpers/device.js';
import { reshardFixture } from './helpers/checkpoint-files.js';
import { f32, FIXTURE_MODELS, MODELS, modelDir, readAll } from './helpers/fixtures.js';

const TRANSFORMERS_TOLERANCE = 1e-4;
const TIGHT_TOLERANCE = 2e-6;

async function fixtureLogits(name: string): Promise<{ ids: Int32Array; logits: Float32Array }> {
  const path = join(MODELS, `${name}.logits.safetensors`);
  const { tensors } = await readAll(path);
  return { ids: (await readInputIds(path)).ids, logits: f32(tensors.get('logits_f32')!.bytes) };
}

/** Position of the worst token, to say where a mismatch is (rotary errors grow with position). */
function worstToken(actual: Float32Array, expected: Float32Array, vocab: number): string {
  let worst = 0;
  let worstErr = -1;
  for (let t = 0; t < actual.length / vocab; t++) {
    const e = relativeL2Error(actual.subarray(t * vocab, (t + 1) * vocab), expected.subarray(t * vocab, (t + 1) * vocab));
    if (e > worstErr) {
      worstErr = e;
      worst = t;
    }
  }
  return `worst token ${worst} (${worstErr.toExponential(2)})`;
}

for (const name of FIXTURE_MODELS) {
  test(`${name}: graph forward matches transformers' float32 logits`, async () => {
    const { ids, logits: expected } = await fixtureLogits(name);
    const shape = { batch: 2, seq: 24 };
    for (const bf16RopeFrequencies of [false, true]) {
      const runner = await ModelRunner.open(modelDir(name), { device: testDevice(), bf16RopeFrequencies });
      try {
        const logits = await runner.forward(ids, shape);
        assert.equal(logits.length, expected.length);
        const err = relativeL2Error(logits, expected);
        const limit = bf16RopeFrequencies ? TIGHT_TOLERANCE : TRANSFORMERS_TOLERANCE;
        assert.ok(
          err < limit,
          `${name} (bf16 rope frequencies: ${bf16RopeFrequencies}): relative L2 error ${err.toExponential(3)} ≥ ${limit}; ${worstToken(logits, expected, runner.spec.vocabSize)}`,
        );
      } finally {
        await runner.close();
      }
    }
  });

  test(`${name}: graph forward matches the TypeScript reference forward`, async () => {
    const { ids } = await fixtureLogits(name);
    const shape = { batch: 2, seq: 24 };
    const runner = await ModelRunner.open(modelDir(name), { device: testDevice() });
    try {
      const graph = await runner.forward(ids, shape);
      const reference = await referenceForward(runner, ids, shape);
      const err = relativeL2Error(graph, reference);
      assert.ok(err < TIGHT_TOLERANCE, `${name}: graph vs reference ${err.toExponential(3)}; ${worstToken(graph, reference, runner.spec.vocabSize)}`);
    } finally {
      await runner.close();
    }
  });
}

test('the forward holds one decoder layer of weights at a time, never the whole model', async () => {
  for (const name of FIXTURE_MODELS) {
    const runner = await ModelRunner.open(modelDir(name), { device: testDevice() });
    try {
      const ckpt = runner.checkpoint;
      let total = 0;
      const perLayer = new Map<string, number>();
      for (const t of ckpt.tensorNames()) {
        const bytes = ckpt.info(t).byteLength;
        total += bytes;
        const layer = /^model\.layers\.(\d+)\./.exec(t)?.[1];
        if (layer !== undefined) perLayer.set(layer, (perLayer.get(layer) ?? 0) + bytes);
      }
      const largestLayer = Math.max(...perLayer.values());
      const headBytes = ckpt.info('lm_head.weight').byteLength + ckpt.info('model.norm.weight').byteLength;
      const { ids } = await fixtureLogits(name);
      await runner.forward(ids, { batch: 2, seq: 24 });
      const peak = runner.weights.accounting.peak;
      assert.equal(runner.weights.accounting.held, 0, `${name}: every weight scope was closed`);
      assert.ok(peak <= Math.max(largestLayer, headBytes), `${name}: peak ${peak} B exceeds the largest layer (${largestLayer} B) / head (${headBytes} B)`);
      assert.ok(peak < total, `${name}: peak ${peak} B is the whole checkpoint (${total} B)`);
    } finally {
      await runner.close();
    }
  }
});

test('a sharded checkpoint (index + 3 shards) gives the same logits, bit for bit', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'runtime-sharded-'));
  try {
    await reshardFixture(modelDir('llama'), dir, 3);
    const { ids } = await fixtureLogits('llama');
    const shape = { batch: 2, seq: 24 };
    const logits = async (path: string): Promise<Float32Array> => {
      const runner = await ModelRunner.open(path, { device: testDevice() });
      try {
        return await runner.forward(ids, shape);
      } finally {
        await runner.close();
      }
    };
    assert.deepEqual(await logits(dir), await logits(modelDir('llama')));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
