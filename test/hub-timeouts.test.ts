// Never hang on the network: a Hub endpoint that accepts the connection and never answers, or
// answers and then stops sending, fails after --hub-timeout (FP8Q_HUB_TIMEOUT) with E_HUB_TIMEOUT
// and a message naming the setting, instead of waiting forever.

import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createHubFetch } from '../src/io/hub/hub-fetch.js';
import { HubError } from '../src/io/hub/errors.js';
import { assertJsonError } from './helpers/hostile.js';
import { runCli } from './helpers/safety.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

let tmp: TempDir;
let server: Server;
let base: string;
const sockets = new Set<Socket>();
const held: ServerResponse[] = [];

before(async () => {
  tmp = await makeTempDir('hub-timeout');
  server = createServer((req, res) => {
    held.push(res);
    // /stall/…: headers and the start of a body, then nothing. Anything else: no answer at all.
    if (req.url?.startsWith('/stall')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"id":');
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await tmp.cleanup();
});

describe('Hub requests time out', () => {
  test('a request with no answer fails after the timeout, naming it', async () => {
    const { fetch } = createHubFetch({ timeoutMs: 200 });
    const t0 = Date.now();
    await assert.rejects(fetch(`${base}/api/models/org/m`), (e: unknown) => e instanceof HubError && e.code === 'HUB_TIMEOUT' && /within 0\.2 s \(--hub-timeout/.test(e.message));
    assert.ok(Date.now() - t0 < 5000);
  });

  test('a body that stops arriving fails after the idle timeout', async () => {
    const { fetch } = createHubFetch({ timeoutMs: 200 });
    const res = await fetch(`${base}/stall/x`);
    await assert.rejects(res.text(), (e: unknown) => e instanceof HubError && e.code === 'HUB_TIMEOUT' && /no data for 0\.2 s/.test(e.message));
  });

  test('a body that keeps arriving is not cut by the idle timeout', async () => {
    const slow = createServer((_req, res) => {
      res.writeHead(200);
      let i = 0;
      const timer = setInterval(() => {
        res.write('x');
        if (++i === 8) {
          clearInterval(timer);
          res.end();
        }
      }, 200);
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    try {
      const { fetch } = createHubFetch({ timeoutMs: 800 });
      const res = await fetch(`http://127.0.0.1:${(slow.address() as AddressInfo).port}/`);
      assert.equal(await res.text(), 'xxxxxxxx'); // 1.6 s in all, never 0.8 s without data
    } finally {
      slow.close();
    }
  });

  test('convert org/m against a server that never answers: exit 1, E_HUB_TIMEOUT, nothing written', async () => {
    const saved = { ...process.env };
    process.env['HF_HOME'] = join(tmp.path, 'hf');
    delete process.env['HF_HUB_OFFLINE'];
    delete process.env['HF_TOKEN'];
    try {
      const t0 = Date.now();
      const r = await runCli(['convert', 'org/m', '-o', join(tmp.path, 'out'), '--hub-url', base, '--hub-timeout', '0.3', '--json']);
      const err = assertJsonError(r, 'E_HUB_TIMEOUT', 1);
      assert.match(err.message, /--hub-timeout/);
      assert.ok(Date.now() - t0 < 10_000, `${Date.now() - t0} ms`);
      process.env['FP8Q_HUB_TIMEOUT'] = '0.2';
      assertJsonError(await runCli(['convert', 'org/m', '-o', join(tmp.path, 'out'), '--hub-url', base, '--json']), 'E_HUB_TIMEOUT', 1);
    } finally {
      process.env = saved;
    }
  });
});
