// The forward of the families without a transformers fixture, on tiny random checkpoints
// (helpers/synthetic-model.ts): Qwen2 (q/k/v bias, tied embeddings), Qwen3 (q/k norm),
// Qwen3-MoE (dense layer 0 by mlp_only_layers, top-k without renormalization), Qwen2-MoE
// (shared expert with a sigmoid gate), Mistral (sliding window), DeepSeek-V3 without q_lora,
// with yarn rope and group-limited routing. Graph against the TypeScript reference, original
// (< 2e-6) and converted to FP8 with 32×32 blocks (< 1e-5: the GEMM path quantizes activations,
// and the synthetic norm weights keep them off FP8 rounding ties). Plus the sliding window's
// effect itself: tokens outside every receptive field do not change a logit, bit for bit.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { referenceForward } from '../src/runtime/models/reference-forward.js';
import { ModelRunner } from '../src/runtime/models/runner.js';
import { relativeL2Error } from '../src/runtime/ops/compare.js';
import { SeededRandom } from '../src/runtime/ops/random.js';
import { testDevice } from './helpers/device.js';
import { writeSyntheticModel, type SyntheticFamily } from './helpers/synthetic-model.js';

const FAMILIES: readonly SyntheticFamily[] = ['qwen2', 'qwen3', 'qwen3_moe', 'qwen2_moe', 'mistral', 'deepseek_v3'];
const SHAPE = { batch: 2, seq: 10 };

let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'runtime-families-'));
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

function ids(seed: number, count: number): Int32Array {
  const rng = new SeededRandom(seed);
  return Int32Array.from({ length: count }, () => Math.floor(rng.next() * 128));
}

for (const family of FAMILIES) {
  test(`${family}: graph forward matches the reference, original and FP8`, async () => {
    const dir = join(work, family);
    await writeSyntheticModel(dir, family);
    const fp8Dir = join(work, `${family}-fp8`);
    await convertCheckpoint({ input: dir, output: fp8Dir, block: { bn: 32, bk: 32 } });
    const tokens = ids(7, SHAPE.batch * SHAPE.seq);
    for (const [what, path, limit] of [
      ['original', dir, 2e-6],
      ['fp8', fp8Dir, 1e-5],
    ] as const) {
      const runner = await ModelRunner.open(path, { device: testDevice() });
      try {
        const graph = await runner.forward(tokens, SHAPE);
        const reference = await referenceForward(runner, tokens, SHAPE);
        const err = relativeL2Error(graph, reference);
        assert.ok(err < limit, `${family} ${what}: graph vs reference ${err.toExponential(3)} ≥ ${limit}`);
      } finally {
        await runner.close();
      }
    }
  });
}

test('mistral: tokens outside the sliding window reach no logit (window 6, two layers)', async () => {
  const dir = join(work, 'mistral-window');
  await writeSyntheticModel(dir, 'mistral', 3);
  const runner = await ModelRunner.open(dir, { device: testDevice() });
  try {
    const shape = { batch: 1, seq: 14 };
    const a = ids(11, 14);
    const b = a.slice();
    b[0] = (b[0]! + 1) % 128;
    const la = await runner.forward(a, shape);
    const lb = await runner.forward(b, shape);
    const vocab = runner.spec.vocabSize;
    // Two layers of window 6 see back 10 positions: token 0 reaches positions ≤ 10 only.
    for (let t = 11; t < 14; t++) {
      assert.deepEqual(la.subarray(t * vocab, (t + 1) * vocab), lb.subarray(t * vocab, (t + 1) * vocab), `position ${t} depends on token 0`);
    }
    const changed = relativeL2Error(lb.subarray(10 * vocab, 11 * vocab), la.subarray(10 * vocab, 11 * vocab));
    assert.ok(changed > 0, 'position 10 is inside the receptive field of token 0 and must change');
  } finally {
    await runner.close();
  }
});
