// `fp8q generate` as a user runs it (through main() in one child process, helpers/cli-batch.ts) on
// the trained stories260K: the streamed text, the JSON document, --compare with an FP8 conversion
// (divergence marked, per-step log-probabilities, the identical-prefix summary over several prompts),
// --chat with and without a chat template, seeded sampling, --no-cache, and bad flags; and the
// comparison layout on wide and narrow terminals.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import type { CompareReport, GenerateReport } from '../src/cli/commands/generate.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { layoutColumns, markedText, MIN_COLUMN, wrap } from '../src/runtime/generate/compare.js';
import { MODELS, ROOT } from './helpers/fixtures.js';
import { fp8qBatch } from './helpers/fp8q-batch.js';
import type { CliResult } from './helpers/safety.js';

const STORIES = join(MODELS, 'stories260K');
const DOCUMENTED =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. ' +
  'She wanted to play with it, but it was too high.';
const CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

let work: string;
let r: CliResult[];
let fp8: string;
let chatModel: string;
let promptsFile: string;
let foreignTokenizer: string;
let noBos: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'generate-cli-'));
  fp8 = join(work, 'stories-fp8');
  await convertCheckpoint({ input: STORIES, output: fp8 });
  chatModel = join(work, 'stories-chat');
  await mkdir(chatModel);
  for (const f of await readdir(STORIES)) await copyFile(join(STORIES, f), join(chatModel, f));
  const tc = JSON.parse(await readFile(join(STORIES, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(join(chatModel, 'tokenizer_config.json'), JSON.stringify({ ...tc, chat_template: CHAT_TEMPLATE }));
  // A 256-token model given stories260K's 512-token tokenizer.
  foreignTokenizer = join(work, 'gemma3-foreign-tokenizer');
  await mkdir(foreignTokenizer);
  for (const f of await readdir(join(MODELS, 'gemma3_text'))) await copyFile(join(MODELS, 'gemma3_text', f), join(foreignTokenizer, f));
  await copyFile(join(STORIES, 'tokenizer.json'), join(foreignTokenizer, 'tokenizer.json'));
  // A tokenizer that adds no BOS token: an empty prompt gives no token at all.
  noBos = join(work, 'stories-no-bos');
  await mkdir(noBos);
  for (const f of await readdir(STORIES)) await copyFile(join(STORIES, f), join(noBos, f));
  const tokenizer = JSON.parse(await readFile(join(STORIES, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(join(noBos, 'tokenizer.json'), JSON.stringify({ ...tokenizer, post_processor: null }));
  await writeFile(join(noBos, 'tokenizer_config.json'), JSON.stringify({ ...tc, add_bos_token: false }));
  promptsFile = join(work, 'prompts.txt');
  await writeFile(promptsFile, 'Once upon a time\n\nThe dog\n');
  const cpu = ['--device', 'cpu'];
  r = await fp8qBatch([
    /* 0 */ ['generate', STORIES, '--prompt', 'Once upon a time', '--max-new-tokens', '57', ...cpu],
    /* 1 */ ['generate', STORIES, '--prompt', 'Once upon a time', '--max-new-tokens', '12', '--json', ...cpu],
    /* 2 */ ['generate', STORIES, '--prompt', 'Once upon a time', '--compare', fp8, '--prompts', promptsFile, '--max-new-tokens', '24', '--json', ...cpu],
    /* 3 */ ['generate', STORIES, '--prompt', 'Once upon a time', '--compare', fp8, '--max-new-tokens', '24', '--quiet', ...cpu],
    /* 4 */ ['generate', STORIES, '--prompt', 'Hi', '--chat', ...cpu],
    /* 5 */ ['generate', chatModel, '--prompt', 'Tell a story', '--chat', '--max-new-tokens', '4', '--json', ...cpu],
    /* 6 */ ['generate', STORIES, '--prompt', 'The cat', '--max-new-tokens', '10', '--temperature', '0.9', '--top-p', '0.9', '--seed', '3', '--json', ...cpu],
    /* 7 */ [
      'generate',
      STORIES,
      '--prompt',
      'The cat',
      '--max-new-tokens',
      '10',
      '--temperature',
      '0.9',
      '--top-p',
      '0.9',
      '--seed',
      '3',
      '--json',
      '--weights',
      'streamed',
      ...cpu,
    ],
    /* 8 */ ['generate', STORIES, '--prompt', 'Once upon a time', '--max-new-tokens', '12', '--json', '--no-cache', ...cpu],
    /* 9 */ ['generate', STORIES, '--prompt', 'x', '--temperature', '0', '--seed', '3'],
    /* 10 */ ['generate', STORIES],
    /* 11 */ ['generate', STORIES, '--prompt', 'x', '--top-p', '1.5'],
    /* 12 */ ['generate', STORIES, '--prompt', 'x', '--max-new-tokens', '0'],
    /* 13 */ ['generate', join(MODELS, 'llama'), '--prompt', 'x', ...cpu],
    /* 14 */ ['generate', STORIES, '--prompt', 'x', '--compare', join(work, 'missing'), ...cpu],
    /* 15 */ ['generate', STORIES, '--prompt', 'x', '--compare', STORIES, '--json', ...cpu],
    /* 16 */ ['generate', STORIES, '--prompt', 'x', '--compare', join(MODELS, 'llama'), ...cpu],
    /* 17 */ ['generate', foreignTokenizer, '--prompt', 'Once upon a time', '--json', ...cpu],
    /* 18 */ ['generate', STORIES, '--prompts', work, '--json', ...cpu],
    /* 19 */ ['generate', STORIES, '--prompts', join(work, 'absent.txt'), '--json', ...cpu],
    /* 20 */ ['generate', STORIES, '--prompt', 'x', '--max-new-tokens', '1', '--threads', '100000', ...cpu],
    /* 21 */ ['generate', STORIES, '--prompt', '', '--max-new-tokens', '6', '--json', ...cpu],
    /* 22 */ ['generate', noBos, '--prompt', 'Once', '--prompt', '', ...cpu],
  ]);
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

test('streams the documented continuation of the trained model, and says which mode ran', () => {
  assert.equal(r[0]!.code, 0, r[0]!.stderr);
  assert.equal(r[0]!.stdout, `${DOCUMENTED}\n`);
  assert.match(r[0]!.stderr, /KV cache .*weights resident/);
  assert.match(r[0]!.stderr, /57 tokens in .* stopped by max-new-tokens/);
});

test('--json: ids, text and per-token log-probabilities, and nothing else on stdout', () => {
  assert.equal(r[1]!.code, 0, r[1]!.stderr);
  const report = JSON.parse(r[1]!.stdout) as GenerateReport;
  const out = report.results[0]!.output;
  assert.equal(out.ids.length, 12);
  assert.equal(out.logprobs.length, 12);
  assert.ok(out.logprobs.every((lp) => lp <= 0));
  assert.equal(out.text, DOCUMENTED.slice('Once upon a time'.length, 'Once upon a time, there was a little girl named Lily. She'.length));
  assert.deepEqual(report.results[0]!.promptIds, [1, 403, 407, 261, 378]);
  assert.equal(report.model.kvCache, true);
  assert.equal(report.model.weights.mode, 'resident');
  assert.equal(r[1]!.stderr, '');
  // Recomputation without the cache: the same tokens.
  assert.equal(r[8]!.code, 0, r[8]!.stderr);
  const recomputed = JSON.parse(r[8]!.stdout) as GenerateReport;
  assert.equal(recomputed.model.kvCache, false);
  assert.deepEqual(recomputed.results[0]!.output.ids, out.ids);
});

test('--compare --json: divergence, the quantized log p of the original tokens, prefix summary over prompts', () => {
  assert.equal(r[2]!.code, 0, r[2]!.stderr);
  const report = JSON.parse(r[2]!.stdout) as CompareReport;
  assert.deepEqual(
    report.results.map((x) => x.prompt),
    ['Once upon a time', 'Once upon a time', 'The dog'],
  );
  const first = report.results[0]!;
  assert.equal(first.identicalPrefix, 16);
  assert.equal(first.firstDivergence, 16);
  assert.deepEqual(first.original.ids.slice(0, 16), first.quantized.ids.slice(0, 16));
  assert.notEqual(first.original.ids[16], first.quantized.ids[16]);
  // While the texts agree, the quantized model's log p of the original's token is its own.
  assert.deepEqual(first.quantizedLogprobsOfOriginal.slice(0, 16), first.quantized.logprobs.slice(0, 16));
  assert.equal(first.quantizedLogprobsOfOriginal.length, first.original.ids.length);
  assert.ok(first.quantizedLogprobsOfOriginal[16]! < first.quantized.logprobs[16]!);
  const prefixes = report.results.map((x) => x.identicalPrefix);
  assert.equal(report.summary.prompts, 3);
  assert.equal(report.summary.min, Math.min(...prefixes));
  assert.ok(Math.abs(report.summary.mean - prefixes.reduce((a, b) => a + b) / 3) < 1e-12);
});

test('--compare on a pipe: one model after the other, the divergent token marked, a per-step table', () => {
  assert.equal(r[3]!.code, 0, r[3]!.stderr);
  const out = r[3]!.stdout;
  assert.match(out, /original {2}.*stories260K:\nOnce upon a time, there was a little girl named Lily\. She loved to play\[\[ \]\]out/);
  assert.match(out, /quantized {2}.*stories-fp8:\nOnce upon a time, there was a little girl named Lily\. She loved to play\[\[ with\]\] her/);
  assert.match(out, /identical prefix: 16 of 24 tokens; first divergence at token 17/);
  assert.match(out, /step +original +log p orig +log p quant +quantized/);
  assert.match(out, /\n +17 +" " +-0\.\d+ +-\d\.\d+ +" with"/);
  assert.equal(r[3]!.stderr, '');
});

test('--chat: a clear error without a chat template; the template rendered when there is one', () => {
  assert.equal(r[4]!.code, 1);
  assert.match(r[4]!.stderr, /has no chat template .*drop --chat/);
  assert.equal(r[5]!.code, 0, r[5]!.stderr);
  const report = JSON.parse(r[5]!.stdout) as GenerateReport;
  const ids = report.results[0]!.promptIds;
  // "<s>user: Tell a story\nassistant:": BOS from the template, once.
  assert.equal(ids[0], 1);
  assert.equal(ids.filter((id) => id === 1).length, 1);
  assert.ok(ids.length > 8);
  assert.equal(report.chat, true);
});

test('seeded sampling is reproducible across runs and weight modes', () => {
  assert.equal(r[6]!.code, 0, r[6]!.stderr);
  const a = JSON.parse(r[6]!.stdout) as GenerateReport;
  const b = JSON.parse(r[7]!.stdout) as GenerateReport;
  assert.deepEqual(a.sampling, { temperature: 0.9, topP: 0.9, seed: 3 });
  assert.equal(b.model.weights.mode, 'streamed');
  assert.deepEqual(a.results[0]!.output.ids, b.results[0]!.output.ids);
});

test('bad flags exit 2 with the flag named', () => {
  assert.equal(r[9]!.code, 2);
  assert.match(r[9]!.stderr, /--temperature 0 is greedy/);
  assert.equal(r[10]!.code, 2);
  assert.match(r[10]!.stderr, /missing --prompt/);
  assert.equal(r[11]!.code, 2);
  assert.match(r[11]!.stderr, /--top-p "1\.5"/);
  assert.equal(r[12]!.code, 2);
  assert.match(r[12]!.stderr, /--max-new-tokens "0"/);
});

test('a model without tokenizer.json, and a missing --compare folder: exit 1 before anything runs', () => {
  assert.equal(r[13]!.code, 1);
  assert.match(r[13]!.stderr, /llama has no tokenizer\.json, needed to tokenize the prompt and decode the output: copy the model's tokenizer\.json into it\n$/);
  assert.equal(r[14]!.code, 1);
  assert.match(r[14]!.stderr, /missing/);
  assert.doesNotMatch(r[14]!.stderr, /tokens in/);
  assert.equal(r[14]!.stdout, '');
});

test('--compare with the model itself or with another model: exit 2 before anything runs', () => {
  assert.equal(r[15]!.code, 2, r[15]!.stderr);
  const err = (JSON.parse(r[15]!.stdout) as { error: { code: string; message: string } }).error;
  assert.equal(err.code, 'E_USAGE');
  assert.match(err.message, /stories260K is the model itself: give its FP8 conversion/);
  assert.equal(r[16]!.code, 2, r[16]!.stderr);
  assert.match(r[16]!.stderr, /^fp8q: --compare: .*llama is not a conversion of .*stories260K: num_hidden_layers 5 vs 2, .*vocab_size 512 vs 1024/);
  for (const x of [r[15]!, r[16]!]) assert.doesNotMatch(x.stderr, /tokens in|internal error/);
});

test("a tokenizer whose ids pass the model's vocabulary: one line naming it, before any layer runs", () => {
  assert.equal(r[17]!.code, 1, r[17]!.stderr);
  const err = (JSON.parse(r[17]!.stdout) as { error: { code: string; message: string } }).error;
  assert.equal(err.code, 'E_INPUT_MALFORMED');
  assert.match(err.message, /tokenizer\.json gives token id \d+ for prompt 1, outside the model's vocab_size 256: is it the model's own tokenizer\?$/);
  assert.doesNotMatch(r[17]!.stderr, /tokens in|embed_tokens/);
});

test('--prompts: a folder or a missing file is named as the input it is; - reads standard input', async () => {
  const err = (x: CliResult): { code: string; message: string } => (JSON.parse(x.stdout) as { error: { code: string; message: string } }).error;
  assert.equal(r[18]!.code, 1);
  assert.deepEqual(err(r[18]!), { code: 'E_INPUT_MALFORMED', exitCode: 1, message: `--prompts ${work} is a folder: give a text file with one prompt per line` });
  assert.equal(r[19]!.code, 1);
  assert.equal(err(r[19]!).code, 'E_INPUT_MISSING');
  const piped = await new Promise<CliResult>((resolve) => {
    const args = ['generate', STORIES, '--prompts', '-', '--max-new-tokens', '3', '--json', '--device', 'cpu'];
    const child = execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'test/helpers/run-cli.ts'), ...args], { cwd: ROOT }, (e, stdout, stderr) =>
      resolve({ code: e ? Number(e.code) : 0, stdout, stderr }),
    );
    child.stdin!.end('Once upon a time\n');
  });
  assert.equal(piped.code, 0, piped.stderr);
  assert.deepEqual((JSON.parse(piped.stdout) as GenerateReport).results[0]!.promptIds, [1, 403, 407, 261, 378]);
});

test('--prompt "": continues from the BOS token with a warning; refused (exit 2) when the tokenizer adds no BOS', () => {
  const empty = r[21]!;
  assert.equal(empty.code, 0, empty.stderr);
  assert.match(empty.stderr, /^warning: prompt 1 is empty: the model continues from the BOS token alone$/m);
  const report = JSON.parse(empty.stdout) as GenerateReport;
  assert.deepEqual(report.results[0]!.promptIds, [1]);
  assert.equal(report.results[0]!.output.ids.length, 6);
  const none = r[22]!;
  assert.equal(none.code, 2, none.stderr);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /^fp8q: prompt 2 is empty and .*stories-no-bos's tokenizer adds no BOS token: there is nothing to continue from; give the prompt some text\n$/);
});

test('--threads above the cores is capped with a note, as in verify and logits', () => {
  assert.equal(r[20]!.code, 0, r[20]!.stderr);
  assert.match(r[20]!.stderr, /^warning: --threads 100000 is more than the \d+ cores here: using \d+$/m);
});

test('SIGINT while generating: exit 130, and no "partial output removed" from a command that writes nothing', async () => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'test/helpers/run-cli.ts'), 'generate', STORIES, '--prompt', 'Once', '--max-new-tokens', '400', '--device', 'cpu'],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdout.once('data', () => child.kill('SIGINT'));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /fp8q: interrupted by SIGINT\n$/);
});

test('comparison layout: side by side when wide, one after the other when narrow or not a terminal', () => {
  const left = { title: 'original', text: 'Once upon a time, there was a little girl named Lily.' };
  const right = { title: 'quantized', text: 'Once upon a time, there was a little dog.\nThe end.' };
  const wide = layoutColumns(left, right, 80);
  assert.equal(wide[0], `${'original'.padEnd(38)} │ quantized`);
  assert.ok(wide.every((l) => [...l].length <= 80));
  assert.ok(wide.some((l) => l.includes('The end.')));
  const narrow = layoutColumns(left, right, 2 * MIN_COLUMN + 2);
  assert.equal(narrow[0], 'original:');
  assert.ok(narrow.every((l) => [...l].length <= 2 * MIN_COLUMN + 2));
  const pipe = layoutColumns(left, right, 0);
  assert.deepEqual(pipe, ['original:', left.text, '', 'quantized:', 'Once upon a time, there was a little dog.', 'The end.']);
  assert.deepEqual(wrap('aaa bbb ccccccc', 5), ['aaa', 'bbb', 'ccccc', 'cc']);
  assert.equal(markedText(['a', ' b', ' c'], 1), 'a[[ b]] c');
  assert.equal(markedText(['a', ' b'], undefined), 'a b');
});
