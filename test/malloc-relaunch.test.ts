// The runtime commands relaunch in a child with glibc's malloc tunables (src/cli/malloc-relaunch.ts):
// which command lines do, through the real `bin/fp8q.js` (the build `npm ci` makes), that the
// child and not the parent runs the command, that GLIBC_TUNABLES set by the user (also empty)
// runs in-process, that a SIGTERM sent to the parent ends the child too, and that a Ctrl-C (SIGINT
// to the whole process group: the parent passes it on as well) stops a generate cleanly, once.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { childNodeFlags, MALLOC_TUNABLES, relaunchTunables, runRelaunched } from '../src/cli/malloc-relaunch.js';
import { MODELS, ROOT } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

const BIN = join(ROOT, 'bin/fp8q.js');

test('verify, logits, generate and a calibrating convert relaunch on Linux unless GLIBC_TUNABLES is set', () => {
  const linux = (args: string[], env: Record<string, string | undefined> = {}) => relaunchTunables(args, env, 'linux');
  assert.equal(linux(['verify', 'a', 'b']), MALLOC_TUNABLES);
  assert.equal(linux(['logits', 'a', '--device', 'cuda']), MALLOC_TUNABLES);
  assert.equal(linux(['generate', 'a', '--device', 'auto']), MALLOC_TUNABLES);
  // On the CPU too: onnxruntime's work memory and the outputs are fresh pages every run there as well.
  assert.equal(linux(['verify', 'a', 'b', '--device', 'cpu']), MALLOC_TUNABLES);
  assert.equal(linux(['verify', 'a', 'b', '--device=cpu']), MALLOC_TUNABLES);
  assert.equal(linux(['convert', 'a', '-o', 'b']), undefined, 'a plain convert runs no model');
  assert.equal(linux(['convert', 'a', '-o', 'b', '--activation-scheme', 'static', '--calibration', 'c.txt']), MALLOC_TUNABLES);
  assert.equal(linux(['convert', 'a', '-o', 'b', '--activation-scheme=static']), MALLOC_TUNABLES);
  assert.equal(linux(['convert', 'a', '-o', 'b', '--activation-scheme', 'dynamic']), undefined);
  assert.equal(linux(['convert', 'a', '-o', 'b', '--activation-scheme', 'static', '--activation-scheme=dynamic']), undefined, 'the last one counts');
  assert.equal(linux(['dequant', 'a', '-o', 'b']), undefined);
  assert.equal(linux(['inspect', 'verify']), undefined, 'the command is the first word, not any word');
  assert.equal(linux(['--help']), undefined);
  assert.equal(linux([]), undefined);
  assert.equal(linux(['verify', 'a', 'b'], { GLIBC_TUNABLES: '' }), undefined, 'an empty GLIBC_TUNABLES opts out');
  assert.equal(linux(['verify', 'a', 'b'], { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }), undefined);
  assert.equal(relaunchTunables(['verify', 'a', 'b'], {}, 'linux', true), undefined, 'under the inspector: in-process');
  assert.equal(relaunchTunables(['verify', 'a', 'b'], {}, 'darwin'), undefined);
  assert.equal(relaunchTunables(['verify', 'a', 'b'], {}, 'win32'), undefined);
});

test("the child gets the parent's node flags but the inspector's, with their values", () => {
  assert.deepEqual(childNodeFlags(['--cpu-prof', '--cpu-prof-dir', 'p', '--max-old-space-size=200']), ['--cpu-prof', '--cpu-prof-dir', 'p', '--max-old-space-size=200']);
  assert.deepEqual(childNodeFlags(['--inspect', '--inspect-brk=0', '--inspect-wait', '--inspect=127.0.0.1:0', '--cpu-prof']), ['--cpu-prof']);
  assert.deepEqual(childNodeFlags(['--inspect-port', '9333', '--cpu-prof', '--debug-port', '9334', '--inspect-port=9335']), ['--cpu-prof']);
  assert.deepEqual(childNodeFlags(['--inspect-publish-uid=http']), ['--inspect-publish-uid=http'], 'opens no port');
});

describe('bin/fp8q.js relaunch', { skip: process.platform !== 'linux' ? 'glibc tunables: Linux only' : false }, () => {
  let tmp: TempDir;
  let log: string;
  let hook: string;
  let hang: string;
  let linger: string;
  before(async () => {
    tmp = await makeTempDir('relaunch');
    log = join(tmp.path, 'processes.log');
    // Loaded into every node process of the run (NODE_OPTIONS): each says who it is.
    const who = `import { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(log)}, process.pid + ' ' + (process.env.GLIBC_TUNABLES ?? '-') + '\\n');\n`;
    hook = join(tmp.path, 'who.mjs');
    await writeFile(hook, who);
    // As above, then the relaunched child waits for a signal before the CLI starts.
    hang = join(tmp.path, 'hang.mjs');
    await writeFile(hang, `${who}if (process.env.GLIBC_TUNABLES) await new Promise(() => setInterval(() => undefined, 1000));\n`);
    // As above, then the relaunched child stays up after the CLI is done, until something stops it.
    linger = join(tmp.path, 'linger.mjs');
    await writeFile(linger, `${who}if (process.env.GLIBC_TUNABLES) setInterval(() => undefined, 1000);\n`);
  });
  after(() => tmp.cleanup());

  async function processes(): Promise<{ pid: number; tunables: string }[]> {
    const text = await readFile(log, 'utf8').catch(() => '');
    return text
      .trim()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => {
        const [pid, tunables] = l.split(' ');
        return { pid: Number(pid), tunables: tunables! };
      });
  }

  /** The pid of the relaunched child once its node has started (the log says so), within 10 s. */
  async function relaunchedChild(): Promise<number> {
    for (let i = 0; i < 200; i++) {
      const child = (await processes()).find((p) => p.tunables === MALLOC_TUNABLES)?.pid;
      if (child !== undefined) return child;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail('the child did not start within 10 s');
  }

  function withoutTunables(): NodeJS.ProcessEnv {
    const env = { ...process.env };
    delete env['GLIBC_TUNABLES'];
    return env;
  }

  function run(args: string[], env: Record<string, string> = {}) {
    return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...withoutTunables(), NODE_OPTIONS: `--import ${pathToFileURL(hook).href}`, ...env } });
  }

  test('verify runs in a child with the tunables; convert and a set GLIBC_TUNABLES run in-process', async () => {
    await writeFile(log, '');
    const r = run(['verify', '--help']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage: fp8q verify/);
    assert.equal(r.stdout.match(/Usage: fp8q verify/g)?.length, 1, 'the help is printed once, by the child');
    const both = await processes();
    assert.deepEqual(
      both.map((p) => p.tunables),
      ['-', MALLOC_TUNABLES],
    );

    for (const [args, env] of [
      [['convert', '--help'], {}],
      [['verify', '--help'], { GLIBC_TUNABLES: '' }],
    ] as const) {
      await writeFile(log, '');
      const one = run([...args], env);
      assert.equal(one.status, 0, one.stderr);
      assert.equal((await processes()).length, 1, `${args.join(' ')} ${JSON.stringify(env)}: one process`);
    }
  });

  test('a child that cannot start rejects, and leaves no signal forwarder behind', async () => {
    const listeners = () => ['SIGINT', 'SIGTERM', 'SIGHUP'].map((s) => process.listenerCount(s));
    const before = listeners();
    const execPath = process.execPath;
    process.execPath = join(tmp.path, 'no-node');
    try {
      await assert.rejects(runRelaunched(BIN, ['verify', '--help'], MALLOC_TUNABLES), { code: 'ENOENT' });
    } finally {
      process.execPath = execPath;
    }
    assert.deepEqual(listeners(), before);
  });

  test('the child reads stdin (--text -) and writes the output', async () => {
    await writeFile(log, '');
    const out = join(tmp.path, 'logits.safetensors');
    const r = spawnSync(process.execPath, [BIN, 'logits', join(MODELS, 'stories260K'), '--text', '-', '-o', out, '--device', 'auto', '--quiet'], {
      encoding: 'utf8',
      input: 'Once upon a time, there was a little girl named Lily. She liked to play outside.',
      env: { ...withoutTunables(), NODE_OPTIONS: `--import ${pathToFileURL(hook).href}` },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(
      (await processes()).map((p) => p.tunables),
      ['-', MALLOC_TUNABLES],
    );
    assert.ok((await stat(out)).size > 0);
  });

  test("the child's exit code is the parent's", async () => {
    await writeFile(log, '');
    const r = run(['verify', join(tmp.path, 'missing'), join(tmp.path, 'missing-too')]);
    assert.notEqual(r.status, 0);
    assert.equal(r.stderr.match(/fp8q:/g)?.length, 1, r.stderr);
    const inProcess = run(['verify', join(tmp.path, 'missing'), join(tmp.path, 'missing-too')], { GLIBC_TUNABLES: '' });
    assert.equal(r.status, inProcess.status);
    assert.equal(r.stderr, inProcess.stderr);
  });

  test('SIGTERM to the parent ends the child, and the parent ends by SIGTERM', async () => {
    await writeFile(log, '');
    const parent = spawn(process.execPath, [BIN, 'verify', 'a', 'b'], { stdio: 'ignore', env: { ...withoutTunables(), NODE_OPTIONS: `--import ${pathToFileURL(hang).href}` } });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => parent.once('exit', (code, signal) => resolve({ code, signal })));
    const child = await relaunchedChild();
    parent.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const end = await Promise.race([exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), 10_000)))]);
    clearTimeout(timer);
    if (end === undefined) {
      // Neither ended: take both down so the run goes on, and fail.
      process.kill(child, 'SIGKILL');
      parent.kill('SIGKILL');
      assert.fail('the parent did not end within 10 s of SIGTERM');
    }
    const alive = (() => {
      try {
        // kill 0 only asks whether the process exists.
        process.kill(child, 0);
        return true;
      } catch {
        return false;
      }
    })();
    // A child left behind waits forever (hang.mjs): take it down before failing.
    if (alive) process.kill(child, 'SIGKILL');
    assert.equal(end.signal, 'SIGTERM');
    assert.equal(alive, false, 'the child is gone');
  });

  test('the child stops when the parent is killed by SIGKILL, which cannot be passed on', async () => {
    await writeFile(log, '');
    const parent = spawn(process.execPath, [BIN, 'verify', '--help'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...withoutTunables(), NODE_OPTIONS: `--import ${pathToFileURL(linger).href}` },
    });
    // The child writes to the same stderr: the pipe closes once the child is gone too.
    parent.stderr.resume();
    const closed = new Promise<true>((resolve) => parent.stderr.once('close', () => resolve(true)));
    const child = await relaunchedChild();
    parent.kill('SIGKILL');
    let timer: NodeJS.Timeout | undefined;
    const gone = await Promise.race([closed, new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 10_000)))]);
    clearTimeout(timer);
    if (!gone) {
      process.kill(child, 'SIGKILL');
      assert.fail('the child still ran 10 s after its parent was killed');
    }
  });

  test('SIGINT to the process group (a terminal Ctrl-C) while generating: exit 130, one message', async () => {
    // Its own process group, so the test can signal parent and child at once as a terminal does.
    const parent = spawn(process.execPath, [BIN, 'generate', join(MODELS, 'stories260K'), '--prompt', 'Once', '--max-new-tokens', '400'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: withoutTunables(),
      detached: true,
    });
    let stderr = '';
    parent.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    parent.stdout.once('data', () => process.kill(-parent.pid!, 'SIGINT'));
    const code = await new Promise<number | null>((resolve) => parent.on('exit', (c) => resolve(c)));
    assert.equal(code, 130, stderr);
    assert.equal(stderr.match(/interrupted by SIGINT/g)?.length, 1, stderr);
  });
});
