// verify on the really trained stories260K with real text: text input tokenized by the model's
// tokenizer, perplexity checked against a direct computation from `fp8q logits`, the default
// gates on sound and damaged conversions (in-domain and out-of-domain text), refusals of folders
// that are not an original and its conversion, coverage (unrun and wrongly quantized tensors),
// and --mla-split's w_uk/w_uv run and compared.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { logitsCommand } from '../src/cli/commands/logits.js';
import { blockQuantize } from '../src/fp8/block-quantize.js';
import { narrowFromFloat32, widenToFloat32 } from '../src/fp8/dtypes.js';
import { convertCheckpoint, type ConvertOptions } from '../src/pipeline/convert-checkpoint.js';
import { dequantCheckpoint } from '../src/pipeline/dequant-checkpoint.js';
import { readInputIds } from '../src/runtime/models/token-ids.js';
import { BUNDLED_TEXT_FILE, modelTextLimits, readTextInput, type TextSource } from '../src/runtime/text/text-input.js';
import { VerifyArgumentsError } from '../src/runtime/verify/checkpoint-pair.js';
import { bf16FloorLinear, floorLinear, originalValues } from '../src/runtime/verify/fp8-floor.js';
import { verifyCheckpoints, type VerifyReport } from '../src/runtime/verify/verify-checkpoints.js';
import { copyCheckpointWithEdits, scaleF32 } from './helpers/checkpoint-edit.js';
import { testDevice } from './helpers/device.js';
import { FIXTURES, MODELS, modelDir, readAll } from './helpers/fixtures.js';
import { assertJsonError } from './helpers/hostile.js';
import { assertOneLineFailure, runCli } from './helpers/safety.js';

const STORIES = join(MODELS, 'stories260K');
const IN_DOMAIN = join(FIXTURES, 'text', 'stories-in-domain.txt');
const OUT_OF_DOMAIN = join(FIXTURES, 'text', 'english-out-of-domain.txt');

let work: string;
let sound: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'verify-text-'));
  sound = join(work, 'default');
  await convertCheckpoint({ input: STORIES, output: sound });
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function textInput(source: TextSource, extra: { seqLen?: number; maxTokens?: number; maxSamples?: number } = {}) {
  return readTextInput({ source, modelDir: STORIES, contextLength: 512, vocabSize: 512, ...extra });
}

async function verifyText(quantized: string, file: string, original = STORIES): Promise<VerifyReport> {
  const t = await textInput({ kind: 'text', file });
  return verifyCheckpoints({ original, quantized, input: t.batch, inputSource: { kind: 'text', text: t.description }, device: testDevice() });
}

test("text input: the model's tokenizer with BOS per document, rows of --seq-len within the limits", async () => {
  const t = await textInput({ kind: 'text', file: IN_DOMAIN });
  assert.equal(t.description.tokensAvailable, 2156);
  assert.deepEqual([t.batch.batch, t.batch.seq], [2, 512], 'default 1024 tokens in rows of 512');
  assert.equal(t.batch.ids[0], 1, 'BOS <s> = 1 first');
  assert.ok(t.batch.ids.every((id) => id >= 0 && id < 512));
  const limited = await textInput({ kind: 'text', file: IN_DOMAIN }, { seqLen: 64, maxTokens: 1000, maxSamples: 3 });
  assert.deepEqual([limited.batch.batch, limited.batch.seq], [3, 64]);
  assert.deepEqual(Array.from(limited.batch.ids), Array.from(t.batch.ids.slice(0, 192)), 'the same stream, cut differently');
  // A text shorter than one row is one row of all of it.
  const short = join(work, 'short.txt');
  await writeFile(short, 'Once upon a time, there was a cat.');
  const s = await textInput({ kind: 'text', file: short });
  assert.equal(s.batch.batch, 1);
  assert.equal(s.batch.seq, s.description.tokensAvailable);
  // stdin, and a dataset: each record its own document, so each starts with BOS.
  const viaStdin = await readTextInput({ source: { kind: 'text', file: '-' }, modelDir: STORIES, stdin: async () => 'Once upon a time, there was a cat.' });
  assert.deepEqual(Array.from(viaStdin.batch.ids), Array.from(s.batch.ids));
  const jsonl = join(work, 'd.jsonl');
  await writeFile(jsonl, `${JSON.stringify({ text: 'Tim had a red ball.' })}\n\n${JSON.stringify({ text: 'Lily liked to draw.' })}\n`);
  const d = await textInput({ kind: 'dataset', file: jsonl });
  assert.equal(d.description.documents, 2);
  assert.equal(Array.from(d.batch.ids).filter((id) => id === 1).length, 2);
  // --dataset - reads standard input as --text - does.
  const dViaStdin = await readTextInput({
    source: { kind: 'dataset', file: '-' },
    modelDir: STORIES,
    contextLength: 512,
    vocabSize: 512,
    stdin: async () => readFile(jsonl, 'utf8'),
  });
  assert.deepEqual(Array.from(dViaStdin.batch.ids), Array.from(d.batch.ids));
  const bundled = await textInput({ kind: 'bundled' });
  assert.equal(bundled.description.file, BUNDLED_TEXT_FILE);
  assert.ok(bundled.description.tokensAvailable > 2000, `bundled sample: ${bundled.description.tokensAvailable} tokens`);
});

test("a VLM's text limits come from text_config, so a foreign tokenizer is named before the embedding fails", async () => {
  assert.deepEqual(await modelTextLimits(join(MODELS, 'gemma3')), { contextLength: 256, vocabSize: 256 });
  assert.deepEqual(await modelTextLimits(modelDir('llama')), { contextLength: 256, vocabSize: 1024 });
});

test('a model without tokenizer.json: a clear error naming the alternatives', async () => {
  await assert.rejects(readTextInput({ source: { kind: 'bundled' }, modelDir: modelDir('llama') }), (e: Error) => {
    assert.match(e.message, /has no tokenizer\.json, so the bundled English sample cannot be tokenized .*--input-ids .*--tokens N/);
    return true;
  });
  // logits has no --tokens: its message offers --input-ids alone.
  const r = await runCli(['logits', modelDir('llama'), '--text', IN_DOMAIN, '-o', join(work, 'never.safetensors')]);
  assertOneLineFailure(r, /has no tokenizer\.json, so --text cannot be tokenized .*--input-ids ids\.safetensors holding input_ids I64 \[B, T\]\)$/);
});

test('perplexity in the report matches a direct computation from fp8q logits', async () => {
  const r = await verifyText(sound, IN_DOMAIN);
  const p = r.perplexity!;
  assert.equal(r.input.source, 'text');
  assert.equal(p.predictions, 2 * 511);
  for (const [model, reported] of [
    [STORIES, p.original],
    [sound, p.quantized],
  ] as const) {
    const out = join(work, `logits-${reported}.safetensors`);
    await logitsCommand(model, { text: IN_DOMAIN, output: out, device: testDevice(), quiet: true });
    const { tensors } = await readAll(out);
    const logits = new Float32Array(tensors.get('logits')!.bytes.slice().buffer);
    const ids = (await readInputIds(out)).ids;
    // Direct: softmax per position in float64, the next id's probability.
    let nll = 0;
    let n = 0;
    for (let b = 0; b < 2; b++) {
      for (let t = 0; t < 511; t++) {
        const row = Array.from(logits.subarray((b * 512 + t) * 512, (b * 512 + t + 1) * 512));
        const z = row.reduce((acc, v) => acc + Math.exp(v), 0);
        nll -= Math.log(Math.exp(row[ids[b * 512 + t + 1]!]!) / z);
        n++;
      }
    }
    const direct = Math.exp(nll / n);
    assert.ok(Math.abs(direct - reported) / direct < 1e-6, `${model}: perplexity ${reported} vs direct ${direct}`);
  }
  assert.ok(Math.abs(p.increasePercent - (p.quantized / p.original - 1) * 100) < 1e-9);
  assert.ok(p.increasePercent > 0.5 && p.increasePercent < 3, `FP8 costs a little perplexity: ${p.increasePercent}%`);
});

test('sound conversions of the trained model pass the default gates on in-domain and out-of-domain text', async () => {
  const variants: [string, Partial<ConvertOptions>][] = [
    ['e4m3 128x128', {}],
    ['ue8m0', { scaleFormat: 'ue8m0' }],
    ['64x64', { block: { bn: 64, bk: 64 } }],
    ['compressed-tensors', { outputFormat: 'compressed-tensors' }],
    ['static activations', { activationScheme: 'static', calibration: { file: BUNDLED_TEXT_FILE } }],
  ];
  for (const [what, options] of variants) {
    const out = what === 'e4m3 128x128' ? sound : join(work, what.replace(/\W+/g, '-'));
    if (out !== sound) await convertCheckpoint({ input: STORIES, output: out, ...options });
    for (const file of [IN_DOMAIN, OUT_OF_DOMAIN]) {
      const r = await verifyText(out, file);
      assert.equal(r.passed, true, `${what} on ${file}: ${r.failures.map((f) => f.message).join('; ')}`);
      assert.equal(r.summary.linearsCompared, 35);
      assert.deepEqual(r.unverified, []);
      assert.ok(r.model.meanKl > 0.005 && r.model.meanKl < 0.05, `${what}: KL ${r.model.meanKl}`);
      // On the FP8 floor: exactly for dynamic activations (the same codes), close for static ones.
      for (const l of r.linears) {
        const limit = options.activationScheme === 'static' ? 1.5 : 1 + 1e-9;
        assert.ok(l.errorRatio! >= (options.activationScheme === 'static' ? 0.9 : 1 - 1e-9) && l.errorRatio! <= limit, `${what} ${l.module}: ratio ${l.errorRatio}`);
      }
    }
  }
});

test('damaged conversions of the trained model fail, naming the damaged tensor', async () => {
  const cases: [string, string, (t: Parameters<Parameters<typeof copyCheckpointWithEdits>[2]>[0]) => void][] = [
    ['scale x4', 'model.layers.2.mlp.down_proj', (t) => scaleF32(t.get('model.layers.2.mlp.down_proj.weight_scale_inv')!, 4)],
    [
      'transposed block',
      'model.layers.1.self_attn.q_proj',
      (t) => {
        const w = t.get('model.layers.1.self_attn.q_proj.weight')!; // 64×64: one block
        const b = w.bytes.slice();
        for (let i = 0; i < 64; i++) for (let j = 0; j < 64; j++) w.bytes[i * 64 + j] = b[j * 64 + i]!;
      },
    ],
    ['zeroed block', 'model.layers.3.mlp.up_proj', (t) => t.get('model.layers.3.mlp.up_proj.weight')!.bytes.fill(0)],
  ];
  for (const [what, module, edit] of cases) {
    const damaged = join(work, `damaged-${what.replace(/\W+/g, '-')}`);
    await copyCheckpointWithEdits(sound, damaged, edit);
    for (const file of [IN_DOMAIN, OUT_OF_DOMAIN]) {
      const r = await verifyText(damaged, file);
      assert.equal(r.passed, false, what);
      assert.deepEqual(
        r.failures.filter((f) => f.gate === 'max-layer-error-ratio').map((f) => f.subject),
        [module],
        what,
      );
      assert.ok(r.perplexity!.increasePercent > 40, `${what}: perplexity +${r.perplexity!.increasePercent}%`);
    }
  }
});

test('an lm_head quantized where it should be kept fails, naming lm_head', async () => {
  const damaged = join(work, 'lm-head-fp8');
  await copyCheckpointWithEdits(sound, damaged, (t) => {
    const e = t.get('model.embed_tokens.weight')!;
    const q = blockQuantize(widenToFloat32(e.bytes, 'BF16'), 512, 64, { block: { bn: 128, bk: 128 }, format: 'e4m3fn' });
    t.set('lm_head.weight', { dtype: 'F8_E4M3', shape: [512, 64], bytes: q.codes });
    t.set('lm_head.weight_scale_inv', { dtype: 'F32', shape: [4, 1], bytes: new Uint8Array(q.scaleInv.buffer) });
  });
  const config = JSON.parse(await readFile(join(damaged, 'config.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(join(damaged, 'config.json'), JSON.stringify({ ...config, tie_word_embeddings: false }));
  const r = await verifyText(damaged, IN_DOMAIN);
  assert.equal(r.passed, false);
  assert.deepEqual(r.keptModules, ['lm_head']);
  assert.deepEqual(r.unverified, ['lm_head.weight']);
  assert.equal(r.failures[0]!.gate, 'kept-module');
  assert.match(r.failures[0]!.message, /^lm_head: stored in FP8, but the original keeps it in high precision/);
  // Model-level metrics alone would not have caught it.
  assert.ok(r.model.meanKl < 0.05 && r.perplexity!.increasePercent < 5);
});

test('refusals: swapped arguments, the same folder twice, no FP8 in the second, a different model', async () => {
  const refused = async (original: string, quantized: string, message: RegExp): Promise<void> => {
    await assert.rejects(verifyCheckpoints({ original, quantized, tokens: 4, device: testDevice() }), (e: Error) => {
      assert.ok(e instanceof VerifyArgumentsError, `${e.name}: ${e.message}`);
      assert.match(e.message, message);
      return true;
    });
  };
  await refused(sound, STORIES, /the arguments look swapped: .* holds 35 FP8 tensor\(s\) that .* stores in BF16 .*verify takes the original first/);
  await refused(STORIES, STORIES, /both arguments are/);
  await refused(sound, sound, /both arguments are/);
  const dequantized = join(work, 'dequantized');
  await dequantCheckpoint({ input: sound, output: dequantized });
  await refused(STORIES, dequantized, /holds no FP8 tensors, so there is nothing to verify/);
  await refused(modelDir('llama'), sound, /is not a conversion of .*num_hidden_layers 2 vs 5, hidden_size 256 vs 64, vocab_size 1024 vs 512/);
  // Through the CLI: exit 2 and the refusal is the only line (no "verifying …" banner before it).
  const cli = await runCli(['verify', sound, STORIES, '--device', 'cpu']);
  assert.equal(cli.code, 2);
  assert.equal(cli.stdout, '');
  assertOneLineFailure(cli, /the arguments look swapped/);
});

test('rows of one token are refused on text (no next token to predict, the perplexity gate would judge NaN)', async () => {
  for (const flags of [
    ['--seq-len', '1'],
    ['--max-tokens', '1'],
    ['--text', IN_DOMAIN, '--seq-len', '1'],
  ]) {
    const r = await runCli(['verify', STORIES, sound, ...flags, '--device', 'cpu', '--json']);
    assert.match(assertJsonError(r, 'E_USAGE', 2).message, new RegExp(`^invalid ${flags.at(-2)} "1": verify on text needs rows of at least 2 tokens`));
    assert.doesNotMatch(r.stderr, /layer 1\//, 'refused before any layer ran');
  }
  // Random ids have no perplexity: one token stays a valid (if small) run.
  assert.equal((await runCli(['verify', STORIES, sound, '--tokens', '1', '--device', 'cpu', '--quiet'])).code, 0);
  // A perplexity limit given with random ids is said to be unused, not silently passed.
  const noText = await runCli(['verify', STORIES, sound, '--tokens', '4', '--max-ppl-increase', '1', '--device', 'cpu', '--quiet']);
  assert.equal(noText.code, 0, noText.stderr);
  assert.equal(noText.stderr, 'warning: --max-ppl-increase applies to text input; random ids have no perplexity to compare, so the gate is not applied\n');
});

test('--seq-len longer than the model context is a command-line error, before any layer runs', async () => {
  const r = await runCli(['verify', STORIES, sound, '--text', IN_DOMAIN, '--seq-len', '513', '--device', 'cpu', '--json']);
  assert.match(assertJsonError(r, 'E_USAGE', 2).message, /--seq-len 513 is longer than .*context \(max_position_embeddings 512\)/);
  assert.doesNotMatch(r.stderr, /layer 1\//);
});

test('an FP8 original against its re-quantized conversion stays a valid comparison', async () => {
  const requantized = join(work, 'requantized');
  await convertCheckpoint({ input: sound, output: requantized, requantize: true, block: { bn: 64, bk: 64 } });
  const r = await verifyText(requantized, IN_DOMAIN, sound);
  assert.equal(r.passed, true, r.failures.map((f) => f.message).join('; '));
  assert.equal(r.summary.linearsCompared, 35);
});

test('experts no token reached are listed as unverified and fail unless allowed', async () => {
  const mixtral = join(work, 'mixtral');
  await convertCheckpoint({ input: modelDir('mixtral'), output: mixtral });
  const one = await verifyCheckpoints({ original: modelDir('mixtral'), quantized: mixtral, tokens: 1, device: testDevice() });
  assert.equal(one.passed, false);
  // One token, top-2 of 4 experts, 2 layers: 2 experts × 3 projections per layer not run.
  assert.equal(one.unverified.length, 12);
  assert.ok(
    one.unverified.every((t) => /^model\.layers\.[01]\.block_sparse_moe\.experts\.\d\.w[123]\.weight$/.test(t)),
    one.unverified.join(', '),
  );
  assert.deepEqual(
    one.failures.map((f) => f.gate),
    ['unverified'],
  );
  const allowed = await verifyCheckpoints({ original: modelDir('mixtral'), quantized: mixtral, tokens: 1, device: testDevice(), allowUnverified: true });
  assert.equal(allowed.passed, true, allowed.failures.map((f) => f.message).join('; '));
  assert.equal(allowed.unverified.length, 12);
});

test('--mla-split: w_uk/w_uv of every head are run and compared; a ×4 scale on either is named', async () => {
  const split = join(work, 'ds-split');
  await convertCheckpoint({ input: modelDir('deepseek_v3'), output: split, mlaSplit: true });
  const input = await readInputIds(join(MODELS, 'deepseek_v3.logits.safetensors'));
  const r = await verifyCheckpoints({ original: modelDir('deepseek_v3'), quantized: split, input, device: testDevice() });
  assert.equal(r.passed, true, r.failures.map((f) => f.message).join('; '));
  const heads = r.linears.filter((l) => /\.w_u[kv]\.\d$/.test(l.module));
  assert.equal(heads.length, 2 * 2 * 4, '2 layers × (w_uk, w_uv) × 4 heads');
  for (const l of heads) {
    assert.ok(l.relativeError > 0.02 && l.relativeError < 0.06, `${l.module}: ${l.relativeError}`);
    assert.ok(Math.abs(l.errorRatio! - 1) < 1e-6, `${l.module}: quantized as its floor is, ratio ${l.errorRatio}`);
  }
  assert.deepEqual(r.unverified, []);
  for (const t of ['w_uk', 'w_uv']) {
    const damaged = join(work, `ds-split-${t}`);
    await copyCheckpointWithEdits(split, damaged, (m) => scaleF32(m.get(`model.layers.1.self_attn.${t}_scale_inv`)!, 4));
    const bad = await verifyCheckpoints({ original: modelDir('deepseek_v3'), quantized: damaged, input, device: testDevice() });
    assert.deepEqual(
      bad.failures.filter((f) => f.gate === 'max-layer-error-ratio').map((f) => f.subject),
      [0, 1, 2, 3].map((h) => `model.layers.1.self_attn.${t}.${h}`),
    );
  }
});

test('a zeroed block of a large weight is found by its row block, where the whole output hides it', async () => {
  const fine = join(work, 'llama-16');
  await convertCheckpoint({ input: modelDir('llama'), output: fine, block: { bn: 16, bk: 16 } });
  const damaged = join(work, 'llama-16-zero');
  const module = 'model.layers.1.mlp.down_proj'; // [256, 512]: 16 × 32 blocks of 16×16
  await copyCheckpointWithEdits(fine, damaged, (t) => {
    const w = t.get(`${module}.weight`)!;
    for (let r = 0; r < 16; r++) w.bytes.fill(0, r * 512 + 32, r * 512 + 48);
  });
  const input = await readInputIds(join(MODELS, 'llama.logits.safetensors'));
  const r = await verifyCheckpoints({ original: modelDir('llama'), quantized: damaged, input, device: testDevice() });
  const hit = r.linears.find((l) => l.module === module)!;
  assert.ok(hit.relativeError / hit.floorError! < 2, `whole output: ${hit.relativeError} vs floor ${hit.floorError}`);
  assert.ok(hit.errorRatio! > 3, `row block: ratio ${hit.errorRatio}`);
  assert.deepEqual(
    r.failures.filter((f) => f.gate === 'max-layer-error-ratio').map((f) => f.subject),
    [module],
  );
});

test('the FP8 floor of a BF16 weight: the WebAssembly kernel and the float32 path give the same codes and scales', () => {
  const n = 40;
  const k = 96;
  const values = Float32Array.from({ length: n * k }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)) * 0.01);
  const bytes = narrowFromFloat32(values, 'BF16');
  const w = { kind: 'dense' as const, module: 'm', weight: { name: 'm.weight', dtype: 'BF16' as const, shape: [n, k], bytes }, bias: undefined };
  for (const settings of [
    { block: { bn: 16, bk: 32 }, format: 'e4m3fn' as const, scaleFormat: 'float' as const },
    { block: { bn: 128, bk: 128 }, format: 'e5m2' as const, scaleFormat: 'ue8m0' as const },
  ]) {
    const wasm = bf16FloorLinear('m', w, settings);
    assert.ok(wasm !== undefined, 'the kernel covers this width');
    const ref = floorLinear('m', originalValues(w), n, k, settings);
    assert.deepEqual(wasm.weight.codes, ref.weight.codes);
    assert.deepEqual(wasm.scaleInv.data, ref.scaleInv.data);
  }
});
