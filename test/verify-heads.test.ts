// Both lm_heads compared off the main thread (verify/same-stored-bytes.ts): the head phase shares
// one widening of lm_head where both checkpoints store the same bytes, and verify asks a worker
// thread whether they do while the last layers run (with a metrics pool, as on CUDA).
//   - the worker answers true for equal ranges, false for a differing byte or length, undefined for
//     a file it cannot read;
//   - the metrics pool's shared memory for the logits (its workers touch its pages first) is zero and whole;
//   - verify's report with the worker's answer is the report of the main thread's comparison, for
//     an unchanged lm_head and for one changed byte (which the worker must not call equal: the
//     quantized model's logits would be the original's), and for tied embeddings on one side only;
//   - a quantized lm_head the forward refuses (a static input_scale) is refused with the worker too.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import { MetricsPool } from '../src/runtime/verify/metrics-pool.js';
import { sameStoredBytes } from '../src/runtime/verify/same-stored-bytes.js';
import { verifyCheckpoints, type VerifyReport } from '../src/runtime/verify/verify-checkpoints.js';
import { copyCheckpointWithEdits } from './helpers/checkpoint-edit.js';
import { useConvertedFixtures } from './helpers/converted-fixtures.js';
import { modelDir } from './helpers/fixtures.js';

const fixtures = useConvertedFixtures('verify-heads');

test('same stored bytes in a worker: equal ranges, a changed byte, another length, a missing file', async () => {
  const dir = fixtures.workDir();
  const bytes = new Uint8Array(40 * 1024 * 1024 + 123).map((_, i) => (i * 31) & 0xff);
  const changed = bytes.slice();
  changed[33 * 1024 * 1024 + 7] = changed[33 * 1024 * 1024 + 7]! ^ 1;
  await writeFile(join(dir, 'a.bin'), bytes);
  await writeFile(join(dir, 'b.bin'), Buffer.concat([Buffer.alloc(100), bytes]));
  await writeFile(join(dir, 'c.bin'), changed);
  const a = { file: join(dir, 'a.bin'), offset: 0, length: bytes.length };
  const b = { file: join(dir, 'b.bin'), offset: 100, length: bytes.length };
  const c = { file: join(dir, 'c.bin'), offset: 0, length: bytes.length };
  assert.equal(await sameStoredBytes([[a, b]]), true);
  assert.equal(
    await sameStoredBytes([
      [a, b],
      [a, c],
    ]),
    false,
  );
  assert.equal(await sameStoredBytes([[a, { ...b, length: bytes.length - 1 }]]), false);
  assert.equal(await sameStoredBytes([[a, { ...b, file: join(dir, 'missing.bin') }]]), undefined);
  assert.equal(await sameStoredBytes([]), true);
  // Stopped (a verify that failed): undefined, before or while the worker reads.
  const stopped = new AbortController();
  stopped.abort();
  assert.equal(await sameStoredBytes([[a, b]], stopped.signal), undefined);
  const stopping = new AbortController();
  const answer = sameStoredBytes([[a, b]], stopping.signal);
  stopping.abort();
  assert.equal(await answer, undefined);
});

test("the metrics pool's shared memory for the logits: touched by its workers, zero, whole", async () => {
  const pool = new MetricsPool(3);
  try {
    const { values, ready } = pool.sharedZeroed(1_000_003);
    await ready;
    assert.ok(values.buffer instanceof SharedArrayBuffer);
    assert.equal(values.length, 1_000_003);
    assert.ok(values.every((v) => Object.is(v, 0)));
  } finally {
    await pool.close();
  }
});

function withoutTimes(r: VerifyReport): Omit<VerifyReport, 'seconds' | 'peakWeightBytes'> {
  const { seconds: _s, peakWeightBytes: _p, ...rest } = r;
  return rest;
}

test("verify with both heads compared in a worker gives the main thread's report: lm_head kept, and one lm_head byte changed", async () => {
  const changed = join(fixtures.workDir(), 'llama-head');
  await copyCheckpointWithEdits(fixtures.converted.get('llama')!, changed, (t) => {
    const head = t.get('lm_head.weight')!;
    head.bytes[1001] = head.bytes[1001]! ^ 0x40;
  });
  const reports: VerifyReport[] = [];
  for (const quantized of [fixtures.converted.get('llama')!, changed]) {
    const common = { original: modelDir('llama'), quantized, tokens: 12, seed: 5 };
    const inWorker = await verifyCheckpoints({ ...common, metricsThreads: 2 });
    const onMain = await verifyCheckpoints({ ...common, metricsThreads: 0 });
    assert.deepEqual(withoutTimes(inWorker), withoutTimes(onMain), quantized);
    reports.push(inWorker);
  }
  assert.ok(reports[1]!.model.relativeError > reports[0]!.model.relativeError, 'the changed lm_head shows in the logits');
});

test('a quantized lm_head the forward refuses (a static input_scale beside the same BF16 bytes) is refused with the worker too: its head is read, not taken for the original', async () => {
  const withScale = join(fixtures.workDir(), 'llama-head-input-scale');
  await copyCheckpointWithEdits(fixtures.converted.get('llama')!, withScale, (t) => {
    t.set('lm_head.input_scale', { dtype: 'F32', shape: [], bytes: new Uint8Array(new Float32Array([1]).buffer) });
  });
  const common = { original: modelDir('llama'), quantized: withScale, tokens: 12, seed: 5 };
  for (const metricsThreads of [0, 2]) {
    await assert.rejects(verifyCheckpoints({ ...common, metricsThreads }), /lm_head has a compressed-tensors static input_scale/, `metricsThreads ${metricsThreads}`);
  }
});

test("tied embeddings on the quantized side only, its embed_tokens the original's lm_head bytes: the worker compares the tensors each head reads, and the report is the main thread's", async () => {
  const tied = join(fixtures.workDir(), 'llama-tied');
  await copyCheckpointWithEdits(fixtures.converted.get('llama')!, tied, (t) => {
    t.set('model.embed_tokens.weight', t.get('lm_head.weight')!);
    t.delete('lm_head.weight');
  });
  const config = JSON.parse(await readFile(join(tied, 'config.json'), 'utf8'));
  await writeFile(join(tied, 'config.json'), JSON.stringify({ ...config, tie_word_embeddings: true }));
  const common = { original: modelDir('llama'), quantized: tied, tokens: 12, seed: 5 };
  const inWorker = await verifyCheckpoints({ ...common, metricsThreads: 2 });
  const onMain = await verifyCheckpoints({ ...common, metricsThreads: 0 });
  assert.deepEqual(withoutTimes(inWorker), withoutTimes(onMain));
});
