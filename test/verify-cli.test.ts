// `fp8q logits` and `fp8q verify` as a user runs them (through main() in one child process, see
// helpers/cli-batch.ts): logits of a fixture written as F32 [B, T, vocab] that match transformers;
// verify's table, its single JSON document, exit code 3 naming the damaged layer on a failed
// gate, and exit code 2 on bad flags.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { relativeL2Error } from '../src/runtime/ops/compare.js';
import { copyCheckpointWithEdits, scaleF32 } from './helpers/checkpoint-edit.js';
import { f32, FIXTURES, MODELS, modelDir, readAll } from './helpers/fixtures.js';
import { fp8qBatch } from './helpers/fp8q-batch.js';
import type { CliResult } from './helpers/safety.js';

let work: string;
let results: CliResult[];
const ids = join(MODELS, 'llama.logits.safetensors');
const STORIES = join(MODELS, 'stories260K');
const IN_DOMAIN = join(FIXTURES, 'text', 'stories-in-domain.txt');
let storiesFp8: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'verify-cli-'));
  const fp8 = join(work, 'llama-fp8');
  await convertCheckpoint({ input: modelDir('llama'), output: fp8 });
  storiesFp8 = join(work, 'stories-fp8');
  await convertCheckpoint({ input: STORIES, output: storiesFp8 });
  await copyCheckpointWithEdits(fp8, join(work, 'llama-bad'), (t) => scaleF32(t.get('model.layers.0.self_attn.v_proj.weight_scale_inv')!, 4));
  results = await fp8qBatch([
    ['logits', modelDir('llama'), '--input-ids', ids, '-o', join(work, 'logits.safetensors'), '--device', 'cpu', '--quiet'],
    ['verify', modelDir('llama'), fp8, '--input-ids', ids, '--device', 'cpu', '--quiet'],
    ['verify', modelDir('llama'), fp8, '--tokens', '8', '--seed', '5', '--device', 'cpu', '--json'],
    ['verify', modelDir('llama'), join(work, 'llama-bad'), '--input-ids', ids, '--device', 'cpu', '--quiet'],
    ['verify', modelDir('llama'), join(work, 'llama-bad'), '--input-ids', ids, '--device', 'cpu', '--json'],
    ['verify', modelDir('llama'), fp8, '--input-ids', ids, '--tokens', '8'],
    ['verify', modelDir('llama'), fp8, '--min-top1', '1.5'],
    ['logits', modelDir('llama'), '--input-ids', ids],
    ['verify', modelDir('llama'), fp8, '--device', 'tpu'],
    // 9–13: text input and refusals on the trained stories260K.
    ['verify', STORIES, storiesFp8, '--text', IN_DOMAIN, '--device', 'cpu', '--quiet'],
    ['verify', storiesFp8, STORIES, '--device', 'cpu', '--quiet'],
    ['verify', STORIES, STORIES, '--device', 'cpu', '--quiet'],
    ['logits', STORIES, '--text', IN_DOMAIN, '--max-tokens', '300', '--seq-len', '100', '-o', join(work, 'stories-logits.safetensors'), '--device', 'cpu', '--quiet'],
    ['verify', STORIES, storiesFp8, '--text', IN_DOMAIN, '--input-ids', ids],
    // 14–15: no input flag: the bundled sample with a tokenizer, random ids without one.
    ['verify', STORIES, storiesFp8, '--max-tokens', '256', '--device', 'cpu', '--json'],
    ['verify', modelDir('llama'), fp8, '--device', 'cpu', '--json'],
  ]);
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

test('logits writes F32 [B, T, vocab] that match transformers, and leaves no temporary file', async () => {
  const r = results[0]!;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '');
  const { tensors } = await readAll(join(work, 'logits.safetensors'));
  const logits = tensors.get('logits')!;
  assert.equal(logits.dtype, 'F32');
  assert.deepEqual(logits.shape, [2, 24, 1024]);
  const expected = f32((await readAll(ids)).tensors.get('logits_f32')!.bytes);
  const err = relativeL2Error(f32(logits.bytes), expected);
  assert.ok(err < 1e-4, `relative L2 error ${err}`);
  assert.deepEqual(
    (await readdir(work)).filter((f) => f.includes('partial')),
    [],
  );
});

test('verify prints a table and passes a sound conversion with exit code 0', () => {
  const r = results[1]!;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /mean KL .* top-1 agreement/);
  assert.match(r.stdout, /^\s+0\s+self_attn\.q_proj\s+48\s+0\.0\d+\s+1\.00\s+0\.99\d+\s+2\d\.\d$/m);
  assert.match(r.stdout, /^PASS: 14 quantized linears compared/m);
});

test('verify --json prints exactly one JSON document', () => {
  const r = results[2]!;
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { passed: boolean; input: unknown; linears: unknown[]; model: { tokens: number }; deviceSelection: { device: string } };
  assert.equal(doc.passed, true);
  assert.deepEqual(doc.input, { source: 'generated', batch: 1, seq: 8, seed: 5, description: 'random ids, 1×8 tokens, seed 5' });
  assert.equal(doc.linears.length, 14);
  assert.equal(doc.model.tokens, 8);
  assert.equal(doc.deviceSelection.device, 'cpu');
});

test('a failed gate exits with code 3 and names the damaged layer, in the table and on stderr', () => {
  const r = results[3]!;
  assert.equal(r.code, 3);
  assert.match(r.stdout, /^\s+0\s+self_attn\.v_proj\s+48\s+2\.9\d+ .*FAIL$/m);
  assert.match(r.stderr, /^fp8q: verify failed: model\.layers\.0\.self_attn\.v_proj: relative error 2\.9\d+ is \d+\.\d+× its FP8 floor 0\.0\d+ .*over --max-layer-error-ratio 2/m);
  const json = results[4]!;
  assert.equal(json.code, 3);
  const doc = JSON.parse(json.stdout) as { passed: boolean; failures: { gate: string; subject: string }[] };
  assert.equal(doc.passed, false);
  assert.ok(doc.failures.some((f) => f.gate === 'max-layer-error-ratio' && f.subject === 'model.layers.0.self_attn.v_proj'));
});

test('bad flags exit with code 2 and one line saying what is wrong', () => {
  const cases: [number, RegExp][] = [
    [5, /--input-ids and --tokens exclude each other/],
    [6, /invalid --min-top1 "1\.5": expected a number in \[0, 1\]/],
    [7, /missing -o <out\.safetensors>/],
    [8, /invalid --device "tpu": expected auto, cpu or cuda/],
    [
      10,
      /the arguments look swapped: .*stories-fp8 \(given as the original\) holds 35 FP8 tensor\(s\) that .*stories260K stores in BF16 .*fp8q verify .*stories260K .*stories-fp8$/m,
    ],
    [11, /both arguments are .*stories260K: verify compares an original with its FP8 conversion/],
    [13, /--input-ids and --text exclude each other/],
  ];
  for (const [i, message] of cases) {
    const r = results[i]!;
    assert.equal(r.code, 2, `case ${i}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, `case ${i}: one line, got ${r.stderr}`);
  }
});

test('verify --text on the trained model: input and perplexity in the report, exit 0', () => {
  const r = results[9]!;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /input: text .*stories-in-domain\.txt, 2×512 tokens of its 2156/);
  assert.match(r.stdout, /^\s+perplexity 3\.9\d+ → 3\.9\d+ \(\+1\.\d\d%\) over 1022 next-token predictions$/m);
  assert.match(r.stdout, /max-ppl-increase 10%: pass/);
  assert.match(r.stdout, /^PASS: 35 quantized linears compared/m);
});

test('logits --text writes the ids it tokenized beside the logits', async () => {
  const r = results[12]!;
  assert.equal(r.code, 0, r.stderr);
  const { tensors } = await readAll(join(work, 'stories-logits.safetensors'));
  assert.deepEqual(tensors.get('input_ids')!.shape, [3, 100]);
  assert.deepEqual(tensors.get('logits')!.shape, [3, 100, 512]);
  assert.equal(new BigInt64Array(tensors.get('input_ids')!.bytes.slice().buffer)[0], 1n, 'BOS first, as the tokenizer config says');
});

test('verify without an input flag: the bundled English sample when the model has a tokenizer, random ids when not', () => {
  const text = JSON.parse(results[14]!.stdout) as {
    input: { source: string; batch: number; seq: number; description: string };
    perplexity: { original: number; quantized: number };
  };
  assert.equal(results[14]!.code, 0, results[14]!.stderr);
  assert.equal(text.input.source, 'bundled');
  assert.deepEqual([text.input.batch, text.input.seq], [1, 256]);
  assert.match(text.input.description, /^bundled English sample, 1×256 tokens of its 4110$/);
  assert.ok(text.perplexity.original > 1 && text.perplexity.quantized > 1);
  const ids = JSON.parse(results[15]!.stdout) as { input: { source: string }; perplexity?: unknown; unverified: string[] };
  assert.equal(results[15]!.code, 0, results[15]!.stderr);
  assert.equal(ids.input.source, 'generated');
  assert.equal(ids.perplexity, undefined);
  assert.deepEqual(ids.unverified, []);
});
