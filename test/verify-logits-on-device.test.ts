// Both models' logits compared inside the graph (ops/logit-comparison.ts), chunk of vocabulary
// columns by chunk, and merged on the host (metrics.ts mergeLogitChunks), against the host's
// comparison of the whole logits (compareTokens, perplexity). Tolerance: 1e-12 relative on KL,
// the comparison sums and NLL (the same float64 terms, summed in another order); argmax agreement,
// NaN and infinities exactly. Cases: ties between chunks, ±0 maxima, NaN on either side, −∞
// where p = 0 (and whole −∞ chunks, and where p is 0 only against the row's max, not its chunk's),
// +∞ on either side, a row of −∞; chunks of all columns, of 128 and of 7.
// Then the runner (compareHeads in row chunks of lm_head, against heads) and verify itself.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { DataType } from '../src/runtime/onnx/data-type.js';
import { GraphBuilder } from '../src/runtime/onnx/graph-builder.js';
import { OnnxSession } from '../src/runtime/onnx/session.js';
import { emitLogitComparison, type LogitChunkStats } from '../src/runtime/ops/logit-comparison.js';
import { ModelRunner } from '../src/runtime/models/runner.js';
import { compareTokens, mergeLogitChunks, nextTokenTargets, perplexity, perplexityFromNll, type TokenComparison } from '../src/runtime/verify/metrics.js';
import { verifyCheckpoints, type VerifyReport } from '../src/runtime/verify/verify-checkpoints.js';
import { copyCheckpointWithEdits } from './helpers/checkpoint-edit.js';
import { useConvertedFixtures } from './helpers/converted-fixtures.js';
import { modelDir } from './helpers/fixtures.js';

const fixtures = useConvertedFixtures('verify-logits-on-device');

function random(n: number, seed: number, scale = 4): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * scale;
  });
}

function close(actual: number, expected: number, what: string): void {
  if (Number.isNaN(expected) || !Number.isFinite(expected)) {
    assert.ok(Object.is(actual, expected), `${what}: ${actual}, expected ${expected}`);
    return;
  }
  assert.ok(Math.abs(actual - expected) <= 1e-12 * Math.max(1, Math.abs(expected)), `${what}: ${actual}, expected ${expected}`);
}

function assertSameComparison(actual: TokenComparison, expected: TokenComparison, what: string): void {
  assert.equal(actual.kl.length, expected.kl.length);
  for (let t = 0; t < expected.kl.length; t++) {
    close(actual.kl[t]!, expected.kl[t]!, `${what}: token ${t} KL`);
    assert.equal(actual.agree[t], expected.agree[t], `${what}: token ${t} top-1`);
    for (let k = 0; k < 4; k++) close(actual.terms[4 * t + k]!, expected.terms[4 * t + k]!, `${what}: token ${t} sum ${k}`);
  }
}

/** Each chunk of `chunk` columns through the comparison graph on the CPU provider. */
async function graphChunks(o: Float32Array, q: Float32Array, tokens: number, vocab: number, chunk: number, targets?: Int32Array): Promise<LogitChunkStats[]> {
  const out: LogitChunkStats[] = [];
  for (let start = 0; start < vocab; start += chunk) {
    const count = Math.min(chunk, vocab - start);
    const g = new GraphBuilder();
    const ov = g.input('o', DataType.FLOAT, [tokens, count]);
    const qv = g.input('q', DataType.FLOAT, [tokens, count]);
    const tv = targets && g.input('target', DataType.FLOAT, [tokens, 1]);
    const { stats, terms } = emitLogitComparison(g, ov, qv, tv);
    g.output(stats, 'stats');
    g.output(terms, 'terms');
    const cols = (x: Float32Array): Float32Array => Float32Array.from({ length: tokens * count }, (_, i) => x[Math.floor(i / count) * vocab + start + (i % count)]!);
    const feeds = {
      o: { type: 'float32' as const, data: cols(o), dims: [tokens, count] },
      q: { type: 'float32' as const, data: cols(q), dims: [tokens, count] },
      ...(targets && { target: { type: 'float32' as const, data: Float32Array.from(targets, (id) => (id >= start && id < start + count ? id - start : 0)), dims: [tokens, 1] } }),
    };
    const session = await OnnxSession.create(g.toBytes(), { device: 'cpu' });
    try {
      const r = await session.run(feeds);
      out.push({ start, count, stats: r.stats!.data as Float64Array, terms: r.terms!.data as Float64Array });
    } finally {
      await session.release();
    }
  }
  return out;
}

/** Rows that exercise every rule of metrics.ts's token comparison; row 0 and the last are plain. */
function hostileLogits(vocab: number): { o: Float32Array; q: Float32Array; tokens: number } {
  const rows: [Float32Array, Float32Array][] = [];
  const plain = (seed: number): [Float32Array, Float32Array] => {
    const o = random(vocab, seed);
    return [o, o.map((v, i) => v + (i % 5 === 0 ? 0.03 : -0.01))];
  };
  rows.push(plain(1));
  // Ties between chunks: the first column holding the max wins on both sides (agree).
  let [o, q] = plain(2);
  o[5] = 9;
  o[200] = 9;
  q[5] = 8;
  q[200] = 8;
  rows.push([o, q]);
  // A tie on one side only, at another column first (disagree).
  [o, q] = plain(3);
  o[250] = 9;
  q[3] = 9;
  q[250] = 9;
  rows.push([o, q]);
  // ±0 maxima: −0 first, +0 later, everything else negative: the first of the two.
  o = random(vocab, 4).map((v) => -Math.abs(v) - 1);
  q = o.slice();
  o[3] = -0;
  o[150] = 0;
  q[3] = 0;
  q[150] = -0;
  rows.push([o, q]);
  // NaN on one side or the other: KL NaN, no agreement.
  [o, q] = plain(5);
  o[77] = NaN;
  rows.push([o, q]);
  [o, q] = plain(6);
  q[260] = NaN;
  rows.push([o, q]);
  // −∞ where p = 0 on both sides, a whole chunk of it (columns 128–255).
  [o, q] = plain(7);
  for (let i = 128; i < 256 && i < vocab; i++) o[i] = q[i] = -Infinity;
  rows.push([o, q]);
  // −∞ only in the quantized logits where p > 0: KL +∞.
  [o, q] = plain(8);
  q[10] = -Infinity;
  rows.push([o, q]);
  // +∞ in the original: NaN (∞ − ∞), and a row of −∞ on both sides.
  [o, q] = plain(9);
  o[40] = Infinity;
  rows.push([o, q]);
  rows.push([new Float32Array(vocab).fill(-Infinity), new Float32Array(vocab).fill(-Infinity)]);
  // Very different scales (exponentials far below the row's max in some chunks).
  [o, q] = plain(10);
  for (let i = 0; i < vocab; i++) o[i] = o[i]! * (i < 128 ? 1 : 300);
  rows.push([o, q]);
  // −∞ in the quantized logits where p underflows to 0 against the row's max but not against its
  // chunk's: nothing on the host. A chunk whose values are all far below the max (its scale is 0)…
  o = random(vocab, 12);
  for (let i = 128; i < 256 && i < vocab; i++) o[i] = -1000;
  q = o.slice();
  q[200] = -Infinity;
  rows.push([o, q]);
  // …and one whose scale is not 0, but its product with the element's exponential is.
  o = random(vocab, 13);
  for (let i = 128; i < 256 && i < vocab; i++) o[i] = -400;
  o[130] = -800;
  q = o.slice();
  q[130] = -Infinity;
  rows.push([o, q]);
  // +∞ in the quantized logits: NaN KL (∞ − ∞), both argmaxes still compared (at its column: agree).
  [o, q] = plain(14);
  o[260] = 9;
  q[260] = Infinity;
  rows.push([o, q]);
  rows.push(plain(11));
  const tokens = rows.length;
  const flat = (k: 0 | 1): Float32Array => {
    const out = new Float32Array(tokens * vocab);
    rows.forEach((r, t) => out.set(r[k], t * vocab));
    return out;
  };
  return { o: flat(0), q: flat(1), tokens };
}

for (const chunk of [300, 128, 7]) {
  test(`logits compared in the graph in chunks of ${chunk} of 300 columns: the host's figures, NaN, ties, ±0 and infinities by its rules`, async () => {
    const vocab = 300;
    const { o, q, tokens } = hostileLogits(vocab);
    const expected = compareTokens(o, q, vocab);
    // Sanity of the cases themselves: what each row is there for.
    assert.deepEqual(
      [1, 2, 3, 4, 5, 9].map((t) => expected.agree[t]),
      [1, 0, 1, 0, 0, 1],
    );
    assert.ok(Number.isNaN(expected.kl[4]!) && Number.isNaN(expected.kl[5]!) && Number.isNaN(expected.kl[8]!) && Number.isNaN(expected.kl[9]!));
    assert.equal(expected.kl[7], Infinity);
    assert.ok(Number.isFinite(expected.kl[6]!));
    assert.ok(Number.isFinite(expected.kl[11]!) && Number.isFinite(expected.kl[12]!));
    assert.ok(Number.isNaN(expected.kl[13]!) && expected.agree[13] === 1);
    const targets = Int32Array.from({ length: tokens }, (_, t) => (t === tokens - 1 ? -1 : (t * 37 + 11) % vocab));
    const merged = mergeLogitChunks(await graphChunks(o, q, tokens, vocab, chunk, targets), tokens, targets);
    assertSameComparison(merged.comparison, expected, `chunks of ${chunk}`);
    // Each token's NLL: the host's lse − logit at the target, from the rows with finite logits.
    for (let t = 0; t < tokens; t++) {
      const id = targets[t]!;
      for (const [side, x] of [
        ['original', o],
        ['quantized', q],
      ] as const) {
        const row = x.subarray(t * vocab, (t + 1) * vocab);
        if (id < 0) {
          assert.ok(Number.isNaN(merged.nll![side][t]!));
          continue;
        }
        if (!row.every(Number.isFinite)) continue;
        const max = Math.max(...row);
        let sum = 0;
        for (const v of row) sum += Math.exp(v - max);
        close(merged.nll![side][t]!, max + Math.log(sum) - row[id]!, `chunks of ${chunk}: token ${t} ${side} NLL`);
      }
    }
    // Without targets, the same comparison.
    assertSameComparison(mergeLogitChunks(await graphChunks(o, q, tokens, vocab, chunk), tokens).comparison, expected, `chunks of ${chunk}, no targets`);
  });
}

test("the runner's heads compared on the device in row chunks of lm_head: compareTokens and perplexity of its logits; undefined where the heads are not known to be the same", async () => {
  const original = await ModelRunner.open(modelDir('llama'), { intraOpThreads: 1, headChunkBytes: 256 * 4 * 100 });
  const quantized = await ModelRunner.open(fixtures.converted.get('llama')!, { intraOpThreads: 1, headChunkBytes: 256 * 4 * 100 });
  try {
    const [batch, seq] = [2, 7];
    const tokens = batch * seq;
    const hidden = random(tokens * 256, 21, 2);
    const hiddenQ = hidden.map((v, i) => v * (1 + (i % 3) * 0.01));
    const other = { runner: quantized, hidden: hiddenQ, sameStoredBytes: true };
    const [lo, lq] = await original.heads(hidden, tokens, other);
    const vocab = lo.length / tokens;
    const ids = Int32Array.from({ length: tokens }, (_, i) => (i * 53 + 7) % vocab);
    const targets = nextTokenTargets(ids, batch, seq);
    const chunks = await original.compareHeads(hidden, tokens, other, targets);
    assert.ok(chunks !== undefined);
    assert.equal(chunks.length, Math.ceil(vocab / 100));
    const merged = mergeLogitChunks(chunks, tokens, targets);
    assertSameComparison(merged.comparison, compareTokens(lo, lq, vocab), 'runner');
    for (const [side, logits] of [
      ['original', lo],
      ['quantized', lq],
    ] as const) {
      const host = perplexity(logits, ids, batch, seq, vocab);
      const device = perplexityFromNll(merged.nll![side], batch, seq);
      assert.equal(device.predictions, host.predictions);
      close(device.meanNll, host.meanNll, `${side} mean NLL`);
    }
    assert.equal(await original.compareHeads(hidden, tokens, { ...other, sameStoredBytes: undefined }), undefined);
    assert.equal(await original.compareHeads(hidden, tokens, { ...other, sameStoredBytes: false }), undefined);
  } finally {
    await original.close();
    await quantized.close();
  }
});

function modelFigures(r: VerifyReport): VerifyReport['model'] & { ppl: VerifyReport['perplexity'] } {
  return { ...r.model, ppl: r.perplexity };
}

test("verify with the logits compared on the device: the host comparison's report up to the sums' order, perplexity included; a changed lm_head byte falls back to the host's", async () => {
  const changed = join(fixtures.workDir(), 'llama-head');
  await copyCheckpointWithEdits(fixtures.converted.get('llama')!, changed, (t) => {
    const head = t.get('lm_head.weight')!;
    head.bytes[1001] = head.bytes[1001]! ^ 0x40;
  });
  for (const quantized of [fixtures.converted.get('llama')!, changed]) {
    const common = {
      original: modelDir('llama'),
      quantized,
      input: { ids: Int32Array.from({ length: 24 }, (_, i) => (i * 97 + 3) % 1024), batch: 2, seq: 12 },
      // Perplexity is reported for text input; the description is only echoed in the report.
      inputSource: { kind: 'text' as const, text: { kind: 'text' as const, file: 'ids', tokenizer: 'none', documents: 1, tokensAvailable: 24, tokensUsed: 24 } },
      metricsThreads: 2,
    };
    const device = await verifyCheckpoints({ ...common, logitsOnDevice: true });
    const host = await verifyCheckpoints({ ...common, logitsOnDevice: false });
    assert.deepEqual(device.linears, host.linears);
    assert.ok(device.perplexity !== undefined);
    const a = modelFigures(device);
    const b = modelFigures(host);
    for (const k of ['meanKl', 'maxKl', 'relativeError'] as const) close(a[k], b[k], `${quantized} ${k}`);
    assert.equal(a.maxKlToken, b.maxKlToken);
    assert.equal(a.top1Agreement, b.top1Agreement);
    close(a.ppl!.original, b.ppl!.original, 'perplexity original');
    close(a.ppl!.quantized, b.ppl!.quantized, 'perplexity quantized');
    assert.equal(a.ppl!.predictions, b.ppl!.predictions);
  }
});
