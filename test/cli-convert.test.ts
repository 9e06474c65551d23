// The CLI as a user meets it: bad arguments give one `fp8q:` line on stderr and a non-zero exit
// with nothing left behind; --json prints exactly one JSON document; plain progress on a pipe is a
// few sane lines; --quiet prints nothing on success; inspect --json describes a fixture.
// Child processes run the sources via tsx: test/helpers/run-cli.ts where the process itself
// matters (exit status, pipes), and test/helpers/cli-batch.ts for the table of argument cases
// (one process runs them all through `main`, since each tsx start costs ~1 s of CPU).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT, modelDir } from './helpers/fixtures.js';
import { sha256File } from './helpers/checkpoint-files.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';
import { fp8qBatch } from './helpers/fp8q-batch.js';
import type { CliResult } from './helpers/safety.js';

/** fp8q with `args`, stdout and stderr as pipes (not a TTY), from the sources via tsx. */
function fp8q(...args: string[]): Promise<CliResult> {
  const env = { ...process.env };
  delete env['CI'];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'test/helpers/run-cli.ts'), ...args], { cwd: ROOT, env, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') reject(err);
      else resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
  });
}

/** Each argv of `commands` through main() in one child process (see helpers/cli-batch.ts). */

let tmp: TempDir;
/** Results of the in-batch commands, by label. */
const batch = new Map<string, CliResult>();
const inBatch: { label: string; args: string[] }[] = [];
const batched = (label: string): CliResult => {
  const r = batch.get(label);
  assert.ok(r, `no batch result for ${label}`);
  return r;
};
/** Commands that get a process of their own, all started at once in `before` (tsx start-up dominates). */
const ownProcess: { label: string; args: string[] }[] = [];
const ownResults = new Map<string, Promise<CliResult>>();
const ownRun = (label: string): Promise<CliResult> => {
  const r = ownResults.get(label);
  assert.ok(r, `no process started for ${label}`);
  return r;
};
before(async () => {
  tmp = await makeTempDir('cli');
  const subst = (args: readonly string[]): string[] => args.map((a) => a.replaceAll('$TMP', tmp.path));
  for (const c of ownProcess) {
    const run = fp8q(...subst(c.args));
    run.catch(() => undefined); // awaited (and reported) by its test
    ownResults.set(c.label, run);
  }
  const results = await fp8qBatch(
    inBatch.map((c) => subst(c.args)),
    { timeoutMs: 60_000 },
  );
  inBatch.forEach((c, i) => batch.set(c.label, results[i]!));
});
after(async () => {
  await tmp.cleanup();
});

const lines = (text: string): string[] => text.split('\n').filter((l) => l.length > 0);

describe('bad arguments', () => {
  const cases: { label: string; args: (out: string) => string[]; exit: number; message: RegExp; subprocess?: true }[] = [
    {
      label: '--block 12',
      subprocess: true,
      args: (out) => ['convert', modelDir('llama'), '-o', out, '--block', '12'],
      exit: 2,
      message: /^fp8q: invalid --block "12": expected NxK with positive integers, e\.g\. 128x128$/,
    },
    { label: '--block 0x128', args: (out) => ['convert', modelDir('llama'), '-o', out, '--block', '0x128'], exit: 2, message: /^fp8q: invalid --block "0x128"/ },
    {
      label: '--weight-dtype int4',
      args: (out) => ['convert', modelDir('llama'), '-o', out, '--weight-dtype', 'int4'],
      exit: 2,
      message: /^fp8q: invalid --weight-dtype "int4": expected float8_e4m3fn or float8_e5m2$/,
    },
    { label: 'missing -o', args: () => ['convert', modelDir('llama')], exit: 2, message: /^fp8q: missing -o <out-dir>/ },
    { label: 'unknown option', args: (out) => ['convert', modelDir('llama'), '-o', out, '--frobnicate'], exit: 2, message: /^fp8q: unknown option '--frobnicate'/ },
    { label: 'unknown command', args: () => ['frobnicate'], exit: 2, message: /^fp8q: unknown command 'frobnicate'/ },
    { label: 'missing source', args: () => ['convert'], exit: 2, message: /^fp8q: missing required argument 'source'/ },
    {
      label: 'invalid --exclude regex',
      args: (out) => ['convert', modelDir('llama'), '-o', out, '--exclude', 're:(x'],
      exit: 2,
      message: /^fp8q: invalid --exclude regular expression "re:\(x"/,
    },
    {
      label: '--max-shard-size 5XB',
      args: (out) => ['convert', modelDir('llama'), '-o', out, '--max-shard-size', '5XB'],
      exit: 2,
      message: /^fp8q: --max-shard-size: invalid size "5XB"/,
    },
    {
      label: '--scale-fmt bogus',
      args: (out) => ['convert', modelDir('llama'), '-o', out, '--scale-fmt', 'bogus'],
      exit: 2,
      message: /^fp8q: option '--scale-fmt <fmt>' argument 'bogus' is invalid/,
    },
    {
      label: 'nonexistent input folder',
      subprocess: true,
      args: (out) => ['convert', `${out}-no-such-model`, '-o', out],
      exit: 1,
      message: /^fp8q: cannot read model folder .*no-such-model \(ENOENT\)$/,
    },
    { label: 'input is a file', args: (out) => ['convert', join(modelDir('llama'), 'config.json'), '-o', out], exit: 1, message: /^fp8q: .*config\.json is not a folder/ },
    { label: 'inspect of a nonexistent folder', args: (out) => ['inspect', join(out, 'nothing-here')], exit: 1, message: /^fp8q: cannot read model folder/ },
  ];
  const parentOf = (label: string): string => `bad-${label.replace(/\W+/g, '-')}`;
  for (const c of cases) {
    (c.subprocess ? ownProcess : inBatch).push({ label: c.label, args: c.args(`$TMP/${parentOf(c.label)}/out`) });
    test(`${c.label}: one fp8q: line on stderr, exit ${c.exit}, no stack, nothing written${c.subprocess ? ' (own process)' : ''}`, async () => {
      const parent = join(tmp.path, parentOf(c.label));
      const r = c.subprocess ? await ownRun(c.label) : batched(c.label);
      assert.equal(r.code, c.exit, r.stderr);
      assert.equal(lines(r.stderr).length, 1, `stderr:\n${r.stderr}`);
      assert.match(r.stderr.trimEnd(), c.message);
      assert.doesNotMatch(r.stderr, /\bat .*\.(ts|js):\d+|internal error/);
      assert.equal(r.stdout, '');
      await assert.rejects(readdir(parent), { code: 'ENOENT' }, 'no output folder (nor its parent) is created');
    });
  }

  inBatch.push({ label: 'no command', args: [] });
  test('no command at all: the help on stderr and exit 2, without commander\'s "(outputHelp)" marker', () => {
    const r = batched('no command');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^Usage: fp8q /);
    assert.doesNotMatch(r.stderr, /outputHelp/);
  });
});

describe('output modes (own processes)', () => {
  ownProcess.push({ label: 'json', args: ['convert', modelDir('deepseek_v3'), '-o', '$TMP/json-out', '--json'] });
  ownProcess.push({ label: 'plain', args: ['convert', modelDir('mixtral'), '-o', '$TMP/plain-out'] });
  test('--json prints exactly one JSON document on stdout and nothing on stderr', async () => {
    const out = join(tmp.path, 'json-out');
    const r = await ownRun('json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const summary = JSON.parse(r.stdout) as Record<string, unknown>; // throws on a second document or stray text
    assert.equal(typeof summary, 'object');
    assert.equal(summary['tensorsQuantized'], 28);
    assert.equal(summary['tensorsKept'], 13);
    assert.equal(summary['dryRun'], false);
    assert.ok((summary['bytesIn'] as number) > (summary['bytesOut'] as number));
    assert.equal(typeof summary['seconds'], 'number');
    const shards = summary['shards'] as { file: string; sha256: string }[];
    assert.deepEqual(
      shards.map((s) => s.file),
      ['model.safetensors'],
    );
    assert.equal(shards[0]!.sha256, await sha256File(join(out, 'model.safetensors')));
  });

  test('plain progress on a pipe: a few increasing percentage lines ending at 100%, then one summary line', async () => {
    const r = await ownRun('plain');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '', 'human output goes to stderr; stdout stays clean');
    assert.doesNotMatch(r.stderr, /\x1b\[/, 'no terminal escape codes on a pipe');
    const all = lines(r.stderr);
    const progress = all.slice(0, -1);
    const progressLine = /^converting (\d+\.\d)% [\d.]+ [KMG]?i?B\/[\d.]+ [KMG]?i?B [\d.]+ [KMG]?i?B\/s ETA \d+s \S+$/;
    const percents = progress.map((l) => {
      const m = progressLine.exec(l);
      assert.ok(m, `not a progress line: ${l}`);
      return Number(m[1]);
    });
    assert.ok(percents.length >= 3 && percents.length <= 11, `${percents.length} progress lines`);
    for (let i = 1; i < percents.length; i++) assert.ok(percents[i]! > percents[i - 1]!, `percentages increase: ${percents.join(', ')}`);
    assert.equal(percents.at(-1), 100);
    assert.match(all.at(-1)!, /plain-out: 32 tensors quantized, 9 kept, 4\.\d MiB → 2\.\d MiB in [\d.]+ s$/);
  });
});

describe('output modes (batched)', () => {
  inBatch.push({ label: 'quiet', args: ['convert', modelDir('llama'), '-o', '$TMP/quiet-out', '--quiet'] });
  inBatch.push({ label: 'inspect json of output', args: ['inspect', '$TMP/quiet-out', '--json'] });
  test('--quiet prints nothing at all on success', async () => {
    const r = batched('quiet');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, '');
    assert.ok((await readdir(join(tmp.path, 'quiet-out'))).includes('model.safetensors'));
  });

  test('inspect --json on a converted output reports it quantized, with its dtypes', () => {
    const r = batched('inspect json of output');
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.match(String(report['quantizedBy']), /quantization_config/);
    assert.deepEqual((report['quantizationConfig'] as Record<string, unknown>)['fmt'], 'e4m3');
    assert.deepEqual((report['byDtype'] as { dtype: string; tensors: number }[]).map((g) => [g.dtype, g.tensors]).sort(), [
      ['BF16', 7],
      ['F32', 14],
      ['F8_E4M3', 14],
    ]);
  });

  inBatch.push({ label: 'dry-run json', args: ['convert', modelDir('mixtral'), '-o', '$TMP/json-dry', '--dry-run', '--json'] });
  inBatch.push({ label: 'inspect json', args: ['inspect', modelDir('deepseek_v3'), '--json'] });
  inBatch.push({ label: 'dry-run quiet', args: ['convert', modelDir('llama'), '-o', '$TMP/dry-quiet', '--dry-run', '--quiet'] });

  test('--dry-run --json: one JSON document with the plan, and no output folder', async () => {
    const out = join(tmp.path, 'json-dry');
    const r = batched('dry-run json');
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { dryRun: boolean; plan: { entries: { op: string }[] } };
    assert.equal(doc.dryRun, true);
    assert.equal(doc.plan.entries.filter((e) => e.op === 'quantize').length, 32);
    await assert.rejects(readdir(out), { code: 'ENOENT' });
  });

  test('inspect --json on a source fixture: dtypes, parameters and what a convert would quantize', async () => {
    const r = batched('inspect json');
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as {
      architecture: string;
      family: string;
      tensors: number;
      parameters: number;
      bytes: number;
      byDtype: { dtype: string; tensors: number; parameters: number; bytes: number }[];
      quantizedBy: null;
      wouldQuantize: string[];
      wouldKeep: { module: string; reason: string }[];
    };
    assert.equal(report.architecture, 'DeepseekV3ForCausalLM');
    assert.equal(report.family, 'deepseek_v3');
    assert.equal(report.tensors, 41);
    assert.equal(report.bytes, 2 * report.parameters);
    assert.deepEqual(report.byDtype, [{ dtype: 'BF16', tensors: 41, parameters: report.parameters, bytes: report.bytes }]);
    assert.equal(report.quantizedBy, null);
    assert.equal(report.wouldQuantize.length, 28);
    assert.ok(report.wouldQuantize.includes('model.layers.0.self_attn.kv_a_proj_with_mqa'));
    assert.deepEqual(report.wouldKeep.map((k) => k.module).sort(), ['lm_head', 'model.embed_tokens', 'model.layers.1.mlp.gate']);
  });

  test('--dry-run prints the plan on stdout; with --quiet, nothing on stderr', async () => {
    const out = join(tmp.path, 'dry-quiet');
    const r = batched('dry-run quiet');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /^plan for .*llama \(LlamaForCausalLM\), nothing written:/);
    assert.match(r.stdout, /14 to quantize, 7 to keep/);
    await assert.rejects(readdir(out), { code: 'ENOENT' });
  });
});
