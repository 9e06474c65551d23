// The guarantees every command that writes keeps, each from a case a hostile user found: no
// overwrite without --force, --force only on a checkpoint folder and never on an ancestor of the
// working folder, one winner when two runs share an output, companion files only from inside
// the model folder, every tensor of a shard accounted for, stale temporary folders reported and
// removed, flags checked before the long work (exit 2), and one JSON error object with --json.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Checkpoint } from '../src/io/checkpoint/checkpoint.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import { readJson } from './helpers/checkpoint-files.js';
import { ROOT } from './helpers/fixtures.js';
import { assertJsonError, tinyLlamaTensors, writeTinyLlama } from './helpers/hostile.js';
import { tinyModelFiles, withMockHub } from './helpers/mock-hub.js';
import { assertNoOutputLeft, runCli } from './helpers/safety.js';
import { bf16Tensor } from './helpers/synthetic-moe.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

let tmp: TempDir;
let model: string;
let n = 0;
const fresh = (label: string): string => join(tmp.path, `${label}-${n++}`);

before(async () => {
  tmp = await makeTempDir('guarantees');
  model = join(tmp.path, 'model');
  await writeTinyLlama(model);
});
after(async () => tmp.cleanup());

describe('never lose: output folders', () => {
  test('--force never replaces an ancestor of the working folder (cd out/a/b && -o ../..)', async () => {
    const out = fresh('ancestor');
    await mkdir(join(out, 'a', 'b'), { recursive: true });
    await writeFile(join(out, 'config.json'), '{}'); // looks like a checkpoint, still refused
    await writeFile(join(out, 'unrelated.txt'), 'keep me');
    const cwd = process.cwd();
    process.chdir(join(out, 'a', 'b'));
    try {
      const r = await runCli(['convert', model, '-o', '../..', '--force', '--json']);
      assertJsonError(r, 'E_OUTPUT_UNSAFE', 1);
      assert.match(r.stderr, /working folder or one of its ancestors/);
    } finally {
      process.chdir(cwd);
    }
    assert.equal(await readFile(join(out, 'unrelated.txt'), 'utf8'), 'keep me');
  });

  test('--force replaces only a checkpoint folder; without --force a non-empty folder is refused', async () => {
    const notCkpt = fresh('photos');
    await mkdir(notCkpt);
    await writeFile(join(notCkpt, 'holiday.jpg'), 'x');
    assertJsonError(await runCli(['convert', model, '-o', notCkpt, '--json']), 'E_OUTPUT_EXISTS', 1);
    assertJsonError(await runCli(['convert', model, '-o', notCkpt, '--force', '--json']), 'E_OUTPUT_UNSAFE', 1);
    assert.deepEqual(await readdir(notCkpt), ['holiday.jpg']);
    // An earlier output is a checkpoint: --force replaces it.
    const out = fresh('replace');
    assert.equal((await runCli(['convert', model, '-o', out, '-q'])).code, 0);
    assert.equal((await runCli(['convert', model, '-o', out, '-q', '--force'])).code, 0);
  });

  test('two runs on one output at once: exactly one succeeds, the other is refused', async () => {
    const out = fresh('race');
    const runs = await Promise.allSettled([0, 1].map(() => convertCheckpoint({ input: model, output: out, threads: 0 })));
    const ok = runs.filter((r) => r.status === 'fulfilled');
    const failed = runs.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(ok.length, 1, JSON.stringify(runs.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok'))));
    assert.ok(failed[0]!.reason instanceof CheckpointError);
    assert.match((failed[0]!.reason as CheckpointError).errorCode, /^E_OUTPUT_(BUSY|EXISTS)$/);
    const siblings = (await readdir(tmp.path)).filter((s) => s.startsWith(`.race-`));
    assert.deepEqual(siblings, [], 'no staging folder or lock left');
  });

  test('an output that appears while converting is not replaced without --force (final check at rename)', async () => {
    const out = fresh('appeared');
    await assert.rejects(
      convertCheckpoint({
        input: model,
        output: out,
        threads: 0,
        onEvent: (e) => {
          if (e.type === 'finalizing') {
            // Another process writes the output meanwhile.
            void mkdir(out, { recursive: true }).then(() => writeFile(join(out, 'config.json'), '{"theirs":true}'));
          }
        },
      }),
      (e: unknown) => e instanceof CheckpointError && e.errorCode === 'E_OUTPUT_EXISTS' && /appeared while this run was writing/.test(e.message),
    );
    assert.deepEqual(await readJson(join(out, 'config.json')), { theirs: true });
  });

  test("a temporary folder of a killed run is reported and removed; a live run's is left alone", async () => {
    const out = fresh('stale');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const stale = join(tmp.path, `.${out.split('/').pop()}.fp8q-tmp-${dead.stdout}-deadbeef`);
    const live = join(tmp.path, `.${out.split('/').pop()}.fp8q-tmp-${process.pid}-cafe0000`);
    await mkdir(stale);
    await writeFile(join(stale, 'model.safetensors'), new Uint8Array(4096));
    await mkdir(live);
    // The killed run's lock too: its process is gone, so the lock is taken over.
    await writeFile(join(tmp.path, `.${out.split('/').pop()}.fp8q-lock`), `${dead.stdout}\n`);
    const dry = await runCli(['convert', model, '-o', out, '--json', '--dry-run']);
    assert.match(dry.stderr, /warning: a run that writes would remove .*deadbeef/);
    assert.equal(existsSync(stale), true, 'a dry run writes (and removes) nothing');
    const r = await runCli(['convert', model, '-o', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: removed .*fp8q-tmp-\d+-deadbeef \(4\.0 KiB|warning: removed .*fp8q-tmp-\d+-deadbeef \(4/);
    assert.ok((JSON.parse(r.stdout) as { warnings: string[] }).warnings.some((w) => w.includes('deadbeef')));
    assert.equal(existsSync(stale), false);
    assert.equal(existsSync(live), true);
    assert.equal(existsSync(join(tmp.path, `.${out.split('/').pop()}.fp8q-lock`)), false);
    // A lock held by a live process refuses the run.
    const busy = fresh('busy');
    await writeFile(join(tmp.path, `.${busy.split('/').pop()}.fp8q-lock`), `${process.ppid}\n`);
    assertJsonError(await runCli(['convert', model, '-o', busy, '--json']), 'E_OUTPUT_BUSY', 1);
  });

  test('an output name that fits the file system is not refused because of the temporary suffix', async () => {
    const out = join(tmp.path, 'x'.repeat(240));
    const r = await runCli(['convert', model, '-o', out, '-q']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await stat(join(out, 'model.safetensors'))).isFile());
  });
});

describe('never leak: companion files', () => {
  test('a symlink leading out of the model folder is skipped with a warning, never followed', async () => {
    const dir = fresh('symlinks');
    await writeTinyLlama(dir);
    const secret = join(tmp.path, 'token-file');
    await writeFile(secret, 'hf_abcdefghijklmnopqrstuvwxyz0123456789\n');
    await symlink(secret, join(dir, 'tokenizer_config.json'));
    await symlink('/etc/passwd', join(dir, 'README.md'));
    await writeFile(join(dir, 'real-tokenizer.json'), '{"ok":true}');
    await symlink('real-tokenizer.json', join(dir, 'tokenizer.json')); // inside: fine
    const out = fresh('symlinks-out');
    const r = await runCli(['convert', dir, '-o', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const files = await readdir(out);
    assert.ok(!files.includes('tokenizer_config.json') && !files.includes('README.md'), files.join(', '));
    assert.ok(files.includes('tokenizer.json'));
    const warnings = (JSON.parse(r.stdout) as { warnings: string[] }).warnings;
    assert.equal(warnings.filter((w) => /leads outside the model folder/.test(w)).length, 2, warnings.join('\n'));
    for (const f of files) assert.ok(!(await readFile(join(out, f))).includes('hf_abcdefghij'), f);
  });

  test('a symlink to a folder (even to /) is not walked; broken and looping links are ignored, with warnings', async () => {
    const dir = fresh('dirlinks');
    await writeTinyLlama(dir);
    await symlink('/', join(dir, 'rootfs'));
    await symlink('loop-b', join(dir, 'loop-a'));
    await symlink('loop-a', join(dir, 'loop-b'));
    await symlink(join(tmp.path, 'nowhere'), join(dir, 'special_tokens_map.json'));
    const out = fresh('dirlinks-out');
    const t0 = Date.now();
    const r = await runCli(['convert', dir, '-o', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - t0 < 20_000, 'the whole disk was walked');
    assert.deepEqual((await readdir(out)).sort(), ['config.json', 'model.safetensors']);
    const warnings = (JSON.parse(r.stdout) as { warnings: string[] }).warnings.join('\n');
    assert.match(warnings, /rootfs is a symbolic link to a folder: not followed/);
    assert.match(warnings, /loop-a cannot be read \(ELOOP\)/);
    assert.match(warnings, /special_tokens_map\.json cannot be read \(ENOENT\)/);
  });
});

describe('never drop: tensors', () => {
  test('a tensor the index does not list is an error; --allow-unindexed leaves it out with a warning', async () => {
    const dir = fresh('unindexed');
    await writeTinyLlama(dir, { shards: 2 });
    const indexPath = join(dir, 'model.safetensors.index.json');
    const index = (await readJson(indexPath)) as { weight_map: Record<string, string> };
    delete index.weight_map['lm_head.weight'];
    await writeFile(indexPath, JSON.stringify(index));
    const out = fresh('unindexed-out');
    const r = await runCli(['convert', dir, '-o', out, '--json']);
    const err = assertJsonError(r, 'E_INPUT_MALFORMED', 1);
    assert.match(err.message, /holds tensor "lm_head\.weight", which model\.safetensors\.index\.json does not list/);
    await assertNoOutputLeft(out);
    const r2 = await runCli(['convert', dir, '-o', out, '--json', '--allow-unindexed']);
    assert.equal(r2.code, 0, r2.stderr);
    assert.ok((JSON.parse(r2.stdout) as { warnings: string[] }).warnings.some((w) => /lm_head\.weight.*left out/.test(w)));
  });

  test('a shard the index never names (its only tensor, lm_head, left out of the index) is an error too', async () => {
    const dir = fresh('unindexed-shard');
    const tensors = new Map([...tinyLlamaTensors()].filter(([name]) => name !== 'lm_head.weight'));
    await writeTinyLlama(dir, { tensors, shards: 2 });
    // A third shard holding only lm_head, which the index does not know.
    const third = fresh('third');
    await writeTinyLlama(third, { tensors: new Map([['lm_head.weight', tinyLlamaTensors().get('lm_head.weight')!]]) });
    await cp(join(third, 'model.safetensors'), join(dir, 'model-00003-of-00003.safetensors'));
    const out = fresh('unindexed-shard-out');
    assert.match(assertJsonError(await runCli(['convert', dir, '-o', out, '--json']), 'E_INPUT_MALFORMED', 1).message, /model-00003-of-00003\.safetensors is named like a shard/);
    await assertNoOutputLeft(out);
    const r = await runCli(['convert', dir, '-o', out, '--json', '--allow-unindexed']);
    assert.equal(r.code, 0, r.stderr);
  });

  test('a tensor named __proto__ is written like any other (single file and index)', async () => {
    const dir = fresh('proto');
    const tensors = tinyLlamaTensors();
    tensors.set('__proto__', bf16Tensor([8], 5));
    await writeTinyLlama(dir, { tensors });
    for (const extra of [[], ['--max-shard-size', '20KB']]) {
      const out = fresh('proto-out');
      const r = await runCli(['convert', dir, '-o', out, '-q', ...extra]);
      assert.equal(r.code, 0, r.stderr);
      const ckpt = await Checkpoint.open(out);
      try {
        assert.ok(ckpt.has('__proto__'), `${extra.join(' ')}: ${ckpt.tensorNames().join(', ')}`);
        assert.equal(ckpt.shardNames.length > 1, extra.length > 0);
      } finally {
        await ckpt.close();
      }
    }
  });

  test('a checkpoint with nothing to quantize (empty header, only integer tensors) is refused, not written as "FP8"', async () => {
    const empty = fresh('empty');
    await mkdir(empty);
    const header = new TextEncoder().encode('{}      ');
    const bytes = new Uint8Array(8 + header.byteLength);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(header.byteLength), true);
    bytes.set(header, 8);
    await writeFile(join(empty, 'model.safetensors'), bytes);
    await writeFile(join(empty, 'config.json'), '{}');
    assertJsonError(await runCli(['convert', empty, '-o', fresh('empty-out'), '--json']), 'E_INPUT_UNSUPPORTED', 1);
    const ints = fresh('ints');
    await writeTinyLlama(ints, { tensors: new Map([['position_ids', { dtype: 'I64', shape: [4, 4], bytes: new Uint8Array(128) }]]) });
    const out = fresh('ints-out');
    const r = await runCli(['convert', ints, '-o', out, '--json']);
    assert.match(assertJsonError(r, 'E_INPUT_UNSUPPORTED', 1).message, /nothing to convert/);
    await assertNoOutputLeft(out);
  });
});

describe('check before the long work; say what had no effect', () => {
  test('--push-to with a malformed id is a command-line error before any conversion', async () => {
    const out = fresh('badid');
    const r = await runCli(['convert', model, '-o', out, '--push-to', 'bad id', '--json']);
    assert.match(assertJsonError(r, 'E_USAGE', 2).message, /is not a Hub repo id/);
    assert.doesNotMatch(r.stderr, /internal error/);
    await assertNoOutputLeft(out);
  });

  test('--push-to without a token fails before converting', async () => {
    const saved = { ...process.env };
    delete process.env['HF_TOKEN'];
    delete process.env['HUGGING_FACE_HUB_TOKEN'];
    process.env['HF_HOME'] = fresh('hf-home');
    process.env['HF_TOKEN_PATH'] = join(tmp.path, 'no-token-here');
    try {
      const out = fresh('notoken');
      const r = await runCli(['convert', model, '-o', out, '--push-to', 'me/model', '--json']);
      assert.match(assertJsonError(r, 'E_HUB_AUTH', 1).message, /checked before converting/);
      await assertNoOutputLeft(out);
    } finally {
      process.env = saved;
    }
  });

  test('flag combinations that cannot work exit 2; flags with no effect are warned about', async () => {
    const out = fresh('flags');
    assertJsonError(await runCli(['convert', model, '-o', out, '--private', '--json']), 'E_USAGE', 2);
    assertJsonError(await runCli(['convert', model, '-o', out, '--mla-split', '--format', 'compressed-tensors', '--json']), 'E_USAGE', 2);
    assertJsonError(await runCli(['convert', model, '-o', out, '--calibration', 'x.txt', '--json']), 'E_USAGE', 2);
    assertJsonError(await runCli(['convert', model, '-o', out, '--hub-timeout', '0', '--json']), 'E_USAGE', 2);
    assertJsonError(await runCli(['convert', model, '-o', out, '--exclude', '', '--json']), 'E_USAGE', 2);
    await assertNoOutputLeft(out);
    const r = await runCli([
      'convert',
      model,
      '-o',
      out,
      '--json',
      '--revision',
      'v1',
      '--stack-experts',
      '--exclude',
      'proj',
      '--exclude',
      'down_proj.weight',
      '--threads',
      '999',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const warnings = (JSON.parse(r.stdout) as { warnings: string[] }).warnings;
    const all = `${warnings.join('\n')}\n${r.stderr}`;
    assert.match(all, /--revision has no effect: .* is a local folder/);
    assert.match(all, /--stack-experts had no effect/);
    assert.match(all, /--exclude "proj" matched no module/);
    assert.match(all, /--exclude "down_proj\.weight" matched no module.*drop "\.weight"/);
    assert.match(r.stderr, /--threads 999 is more than the \d+ cores here: using \d+/);
  });
});

describe('one error shape', () => {
  test('--json failures print one JSON error object on stdout with a stable code', async () => {
    assertJsonError(await runCli(['convert', join(tmp.path, 'no-such-model'), '-o', fresh('x'), '--json']), 'E_INPUT_MISSING', 1);
    assertJsonError(await runCli(['convert', model, '--no-such-flag', '--json']), 'E_USAGE', 2);
    assertJsonError(await runCli(['inspect', join(tmp.path, 'no-such-model'), '--json']), 'E_INPUT_MISSING', 1);
    // Without --json, stdout stays empty on failure.
    const plain = await runCli(['convert', join(tmp.path, 'no-such-model'), '-o', fresh('x')]);
    assert.equal(plain.stdout, '');
  });
});

describe('never hang: terminals of width 0', () => {
  test('convert under a pseudo-terminal of 0 columns finishes, with plain progress lines', { skip: !existsSync('/usr/bin/script') }, () => {
    const out = fresh('width0');
    const env = { ...process.env };
    delete env['CI'];
    const cmd = `stty cols 0 rows 0; ${process.execPath} --import tsx ${join(ROOT, 'test/helpers/run-cli.ts')} convert ${model} -o ${out}`;
    const r = spawnSync('/usr/bin/script', ['-qec', cmd, '/dev/null'], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000, maxBuffer: 4 * 2 ** 20 });
    assert.equal(r.error, undefined, 'the run hung');
    assert.equal(r.status, 0, r.stdout);
    assert.ok(r.stdout.length < 100_000, `${r.stdout.length} bytes of terminal output`);
    assert.match(r.stdout, /converting 100/);
  });
});

describe('never lose: --push-to a repo that already holds a model', () => {
  test('is refused before converting unless --force', async () => {
    const TOKEN = 'hf_guaranteesTokenForTheMockHub0001';
    await withMockHub({ tokens: [TOKEN], repos: [{ id: 'someone/their-model', files: tinyModelFiles() }] }, async (hub, hubTmp) => {
      const saved = { ...process.env };
      process.env['HF_TOKEN'] = TOKEN;
      process.env['HF_HOME'] = join(hubTmp, 'hf');
      try {
        const out = fresh('push-existing');
        const r = await runCli(['convert', model, '-o', out, '--push-to', 'someone/their-model', '--hub-url', hub.url, '--json']);
        assert.match(assertJsonError(r, 'E_OUTPUT_EXISTS', 1).message, /already holds a model .*pass --force/);
        await assertNoOutputLeft(out);
        const forced = await runCli(['convert', model, '-o', out, '--push-to', 'someone/their-model', '--hub-url', hub.url, '--json', '--force']);
        assert.equal(forced.code, 0, forced.stderr);
        assert.ok(hub.filesAt('someone/their-model').has('model.safetensors'));
      } finally {
        process.env = saved;
      }
    });
  });
});
