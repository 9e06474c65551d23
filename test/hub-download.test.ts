// resolveSource against a mock Hub: the cache layout Python's huggingface_hub writes and reads,
// file selection, reuse of a cache (fp8q's or Python's), resume of cut downloads, integrity,
// errors that say what to do (and never hold the token), revisions, env, offline use.

import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { test } from 'node:test';
import { scanCacheDir } from '@huggingface/hub';
import { type DownloadEvent, HubError, resolveSource } from '../src/io/hub/index.js';
import { gitBlobOid, isLfsPath, type MockHub, safetensorsBytes, noiseBytes, sha256Hex, tinyModelFiles, withMockHub } from './helpers/mock-hub.js';

/** Every test talks to a local server: a hang is a bug, reported as a failure, not waited out. */
const TEST_TIMEOUT_MS = 30_000;

const REPO = 'acme/tiny';
const TOKEN = 'hf_mockSecretToken1234567890';
const EXPECTED = ['README.md', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];

function bytesOf(v: Uint8Array | string): Uint8Array {
  return typeof v === 'string' ? new TextEncoder().encode(v) : v;
}

function etagOf(path: string, content: Uint8Array): string {
  return isLfsPath(path, content.length) ? sha256Hex(content) : gitBlobOid(content);
}

function fileRequests(hub: MockHub, from = 0): string[] {
  return hub.requests
    .slice(from)
    .filter((r) => r.path.includes('/resolve/') || r.path.startsWith('/cdn/'))
    .map((r) => r.path);
}

/** The token must appear nowhere in what an error shows: message, stack, inspect, JSON. */
function assertNoToken(e: unknown, token = TOKEN): void {
  const texts = [String(e), (e as Error).stack ?? '', inspect(e, { depth: 8, showHidden: true }), JSON.stringify(e)];
  for (const t of texts) assert.ok(!t.includes(token), `token leaked into: ${t.slice(0, 300)}`);
}

async function rejectsHub(p: Promise<unknown>, code: HubError['code']): Promise<HubError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof HubError, `expected HubError, got ${inspect(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected a HubError ${code}`);
}

test('downloads the needed files into the Python huggingface_hub cache layout', { timeout: TEST_TIMEOUT_MS }, async () => {
  const files = tinyModelFiles();
  await withMockHub({ repos: [{ id: REPO, files }] }, async (hub, tmp) => {
    const cache = join(tmp, 'hub');
    const events: DownloadEvent[] = [];
    const r = await resolveSource(REPO, { hubUrl: hub.url, cacheDir: cache, token: false, env: {}, onProgress: (e) => events.push(e) });
    const commit = hub.repos.get(REPO)!.refs.get('main')!;
    const storage = join(cache, 'models--acme--tiny');
    assert.equal(r.commit, commit);
    assert.equal(r.revision, 'main');
    assert.equal(r.repoId, REPO);
    assert.equal(r.dir, join(storage, 'snapshots', commit));
    assert.deepEqual(r.files, EXPECTED);

    // refs/main holds the commit, without a newline (as Python writes it).
    assert.equal(await readFile(join(storage, 'refs', 'main'), 'utf8'), commit);
    assert.deepEqual((await readdir(storage)).sort(), ['blobs', 'refs', 'snapshots']);
    // snapshots/<commit>/<file> -> ../../blobs/<etag>; etag = sha256 (LFS) or git blob sha1.
    assert.deepEqual((await readdir(r.dir)).sort(), EXPECTED);
    const etags: string[] = [];
    for (const path of EXPECTED) {
      const content = bytesOf(files[path]!);
      const etag = etagOf(path, content);
      etags.push(etag);
      const link = join(r.dir, path);
      assert.ok((await lstat(link)).isSymbolicLink(), `${path} is a symlink`);
      assert.equal(await readlink(link), `../../blobs/${etag}`);
      assert.deepEqual(new Uint8Array(await readFile(link)), content, `${path} content`);
    }
    assert.equal(etagOf('model.safetensors', bytesOf(files['model.safetensors']!)).length, 64);
    // Nothing else in blobs: no .bin, no .pth, no .incomplete left behind.
    assert.deepEqual((await readdir(join(storage, 'blobs'))).sort(), etags.sort());
    // Never requested.
    assert.ok(!hub.requests.some((q) => q.path.includes('pytorch_model.bin') || q.path.includes('original')));

    // @huggingface/hub's cache scanner (a port of Python's scan_cache_dir) reads it back.
    const scan = await scanCacheDir(cache);
    assert.equal(scan.warnings.length, 0);
    assert.equal(scan.repos.length, 1);
    assert.equal(scan.repos[0]!.id.name, REPO);
    assert.equal(scan.repos[0]!.revisions[0]!.commitOid, commit);
    assert.deepEqual(scan.repos[0]!.revisions[0]!.refs, ['main']);
    assert.equal(scan.repos[0]!.filesCount, EXPECTED.length);

    // Events: resolved, plan, transfers, done; progress monotonic and complete per file.
    assert.equal(events[0]!.event, 'resolved');
    assert.equal(events.at(-1)!.event, 'done');
    const plan = events.find((e) => e.event === 'plan');
    assert.ok(plan && plan.event === 'plan');
    assert.deepEqual(plan.files.map((f) => f.path).sort(), EXPECTED);
    assert.equal(plan.downloadBytes, plan.totalBytes);
    assert.ok(plan.skipped.some((s) => s.path === 'pytorch_model.bin' && s.reason === 'other-weight-format'));
    assert.ok(plan.skipped.some((s) => s.path === 'original/' && s.reason === 'subfolder'));
    const last = new Map<string, number>();
    for (const e of events) {
      if (e.event !== 'fileProgress') continue;
      assert.ok(e.bytes > (last.get(e.path) ?? 0));
      last.set(e.path, e.bytes);
    }
    const st = bytesOf(files['model.safetensors']!).length;
    assert.equal(last.get('model.safetensors'), st);
    assert.deepEqual(
      events
        .filter((e) => e.event === 'fileDone')
        .map((e) => (e.event === 'fileDone' ? e.path : ''))
        .sort(),
      EXPECTED,
    );
  });
});

test('a second call transfers nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withMockHub({ repos: [{ id: REPO, files: tinyModelFiles() }] }, async (hub, tmp) => {
    const opts = { hubUrl: hub.url, cacheDir: tmp, token: false as const, env: {} };
    const first = await resolveSource(REPO, opts);
    const mark = hub.requests.length;
    const events: DownloadEvent[] = [];
    const second = await resolveSource(REPO, { ...opts, onProgress: (e) => events.push(e) });
    assert.equal(second.dir, first.dir);
    assert.deepEqual(fileRequests(hub, mark), []);
    const plan = events.find((e) => e.event === 'plan');
    assert.ok(plan?.event === 'plan' && plan.files.every((f) => f.cached) && plan.downloadBytes === 0);
  });
});

test('reuses a model downloaded by Python huggingface_hub, and blobs shared with a newer commit', { timeout: TEST_TIMEOUT_MS }, async () => {
  const files = tinyModelFiles();
  await withMockHub({ repos: [{ id: REPO, files }] }, async (hub, tmp) => {
    const oldCommit = hub.repos.get(REPO)!.refs.get('main')!;
    // The layout snapshot_download writes: blobs by etag, relative links, refs/main.
    const storage = join(tmp, 'models--acme--tiny');
    await mkdir(join(storage, 'blobs'), { recursive: true });
    await mkdir(join(storage, 'refs'), { recursive: true });
    await mkdir(join(storage, 'snapshots', oldCommit), { recursive: true });
    await writeFile(join(storage, 'refs', 'main'), oldCommit);
    for (const [path, v] of Object.entries(files)) {
      if (path.includes('/')) continue; // Python would also have pytorch_model.bin: keep it, it is harmless
      const content = bytesOf(v);
      const etag = etagOf(path, content);
      await writeFile(join(storage, 'blobs', etag), content);
      await symlink(`../../blobs/${etag}`, join(storage, 'snapshots', oldCommit, path));
    }
    const opts = { hubUrl: hub.url, cacheDir: tmp, token: false as const, env: {} };
    const r = await resolveSource(REPO, opts);
    assert.equal(r.dir, join(storage, 'snapshots', oldCommit));
    assert.deepEqual(fileRequests(hub), []);

    // A new commit changes README.md only: the other files link to the existing blobs.
    const newCommit = hub.commit(REPO, { 'README.md': '# tiny v2\n' });
    const mark = hub.requests.length;
    const r2 = await resolveSource(REPO, opts);
    assert.equal(r2.commit, newCommit);
    assert.equal(await readFile(join(storage, 'refs', 'main'), 'utf8'), newCommit);
    assert.deepEqual(
      fileRequests(hub, mark).filter((p) => !p.includes('README.md')),
      [],
    );
    assert.equal(await readFile(join(r2.dir, 'README.md'), 'utf8'), '# tiny v2\n');
    assert.equal(await readlink(join(r2.dir, 'model.safetensors')), `../../blobs/${sha256Hex(bytesOf(files['model.safetensors']!))}`);
  });
});

test('a connection cut mid-file fails with a resume hint; the next call resumes with a Range request', { timeout: TEST_TIMEOUT_MS }, async () => {
  const files = tinyModelFiles();
  const content = bytesOf(files['model.safetensors']!);
  const cutAt = 40_000;
  await withMockHub({ repos: [{ id: REPO, files }], cuts: [{ path: 'model.safetensors', afterBytes: cutAt }] }, async (hub, tmp) => {
    const opts = { hubUrl: hub.url, cacheDir: tmp, token: false as const, env: {}, retries: 0, concurrency: 1 };
    const err = await rejectsHub(resolveSource(REPO, opts), 'HUB_NETWORK');
    assert.match(err.message, /model\.safetensors/);
    assert.match(err.message, /run the same command again to resume/);
    const sha = sha256Hex(content);
    const blobs = join(tmp, 'models--acme--tiny', 'blobs');
    assert.equal((await stat(join(blobs, `${sha}.incomplete`))).size, cutAt);
    await assert.rejects(stat(join(blobs, sha)));

    const mark = hub.requests.length;
    const events: DownloadEvent[] = [];
    const r = await resolveSource(REPO, { ...opts, onProgress: (e) => events.push(e) });
    const resumed = hub.requests.slice(mark).filter((q) => q.path.startsWith(`/cdn/${sha}`) && q.range !== 'bytes=0-0');
    assert.deepEqual(
      resumed.map((q) => q.range),
      [`bytes=${cutAt}-${content.length - 1}`],
    );
    const start = events.find((e) => e.event === 'fileStart' && e.path === 'model.safetensors');
    assert.ok(start?.event === 'fileStart' && start.resumeFrom === cutAt);
    assert.deepEqual(new Uint8Array(await readFile(join(r.dir, 'model.safetensors'))), content);
    assert.ok(!(await readdir(blobs)).some((f) => f.endsWith('.incomplete')));
  });
});

test('retries resume within one call', { timeout: TEST_TIMEOUT_MS }, async () => {
  const files = tinyModelFiles();
  const content = bytesOf(files['model.safetensors']!);
  const cuts = [
    { path: 'model.safetensors', afterBytes: 30_000 },
    { path: 'model.safetensors', afterBytes: 50_000 },
  ];
  await withMockHub({ repos: [{ id: REPO, files }], cuts }, async (hub, tmp) => {
    const events: DownloadEvent[] = [];
    const r = await resolveSource(REPO, { hubUrl: hub.url, cacheDir: tmp, token: false, env: {}, retries: 3, retryDelayMs: 0, onProgress: (e) => events.push(e) });
    const retries = events.filter((e) => e.event === 'fileRetry');
    assert.deepEqual(
      retries.map((e) => (e.event === 'fileRetry' ? [e.attempt, e.bytes] : [])),
      [
        [1, 30_000],
        [2, 80_000],
      ],
    );
    const ranges = hub.requests.filter((q) => q.path.startsWith('/cdn/') && q.range !== 'bytes=0-0').map((q) => q.range);
    assert.deepEqual(ranges, [undefined, `bytes=30000-${content.length - 1}`, `bytes=80000-${content.length - 1}`]);
    assert.deepEqual(new Uint8Array(await readFile(join(r.dir, 'model.safetensors'))), content);
  });
});

test('a server that ignores the resume Range: the download restarts from zero, never appends the whole file', { timeout: TEST_TIMEOUT_MS }, async () => {
  const files = tinyModelFiles();
  const content = bytesOf(files['model.safetensors']!);
  await withMockHub({ repos: [{ id: REPO, files }], cuts: [{ path: 'model.safetensors', afterBytes: 20_000 }], ignoreResumeRange: true }, async (hub, tmp) => {
    const r = await resolveSource(REPO, { hubUrl: hub.url, cacheDir: tmp, token: false, env: {}, retries: 2, retryDelayMs: 0 });
    assert.deepEqual(new Uint8Array(await readFile(join(r.dir, 'model.safetensors'))), content);
    assert.equal(hub.transfers('model.safetensors'), 3); // cut, ignored range (cancelled), full
  });
});

test('bytes that do not match the Hub hash never become a blob', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withMockHub({ repos: [{ id: REPO, files: tinyModelFiles() }], corrupt: ['model.safetensors', 'config.json'] }, async (hub, tmp) => {
    const err = await rejectsHub(resolveSource(REPO, { hubUrl: hub.url, cacheDir: tmp, token: false, env: {}, retries: 0, concurrency: 1 }), 'HUB_INTEGRITY');
    assert.match(err.message, /does not match the Hub's (sha256|git-sha1)/);
    const blobs = await readdir(join(tmp, 'models--acme--tiny', 'blobs'));
    assert.ok(!blobs.some((b) => b.endsWith('.incomplete')));
    const files = tinyModelFiles();
    assert.ok(!blobs.includes(sha256Hex(bytesOf(files['model.safetensors']!))));
  });
});

test('sharded checkpoint: only the shards the index names, through a paginated listing', { timeout: TEST_TIMEOUT_MS }, async () => {
  const shard = (seed: number): Uint8Array => safetensorsBytes({ [`w${seed}`]: { dtype: 'BF16', shape: [64, 64], data: noiseBytes(64 * 64 * 2, seed) } });
  const files: Record<string, Uint8Array | string> = {
    'config.json': '{"architectures":["MistralForCausalLM"]}',
    'model-00001-of-00002.safetensors': shard(1),
    'model-00002-of-00002.safetensors': shard(2),
    'model.safetensors.index.json': JSON.stringify({ metadata: {}, weight_map: { w1: 'model-00001-of-00002.safetensors', w2: 'model-00002-of-00002.safetensors' } }),
    'consolidated.safetensors': shard(3), // Mistral's own format: the same weights again
    'pytorch_model.bin.index.json': '{}',
    'params.json': '{}',
  };
  await withMockHub({ repos: [{ id: 'acme/sharded', files }], treePageSize: 2 }, async (hub, tmp) => {
    const events: DownloadEvent[] = [];
    const r = await resolveSource('acme/sharded', { hubUrl: hub.url, cacheDir: tmp, token: false, env: {}, onProgress: (e) => events.push(e) });
    assert.deepEqual(r.files, ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'params.json']);
    assert.equal(hub.transfers('consolidated.safetensors'), 0);
    assert.ok(hub.requests.filter((q) => q.path.includes('/tree/')).length >= 4, 'listing followed the Link header');
    const plan = events.find((e) => e.event === 'plan');
    assert.ok(plan?.event === 'plan' && plan.files.find((f) => f.path === 'model.safetensors.index.json')?.cached === true);
    assert.ok(plan.skipped.some((s) => s.path === 'consolidated.safetensors'));
  });
});

test('a repo without safetensors is refused before any file is fetched', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withMockHub({ repos: [{ id: 'acme/old', files: { 'config.json': '{}', 'pytorch_model.bin': noiseBytes(100) } }] }, async (hub, tmp) => {
    const err = await rejectsHub(resolveSource('acme/old', { hubUrl: hub.url, cacheDir: tmp, token: false, env: {} }), 'HUB_NO_SAFETENSORS');
    assert.match(err.message, /pytorch_model\.bin/);
    assert.deepEqual(fileRequests(hub), []);
  });
});

test('gated, private, missing and bad-token errors say what to do and never show the token', { timeout: TEST_TIMEOUT_MS }, async () => {
  const repos = [
    { id: 'acme/gated', files: tinyModelFiles(), gated: true, readers: ['hf_allowedReader000000000000'] },
    { id: 'acme/private', files: tinyModelFiles(), private: true, readers: ['hf_allowedReader000000000000'] },
  ];
  await withMockHub({ repos, tokens: [TOKEN, 'hf_allowedReader000000000000'], echoAuthorization: true }, async (hub, tmp) => {
    const base = { hubUrl: hub.url, cacheDir: tmp, env: {}, retries: 0 };

    let e = await rejectsHub(resolveSource('acme/gated', { ...base, token: false }), 'HUB_AUTH');
    assert.equal(e.status, 401);
    assert.match(e.message, /gated/);
    assert.match(e.message, /hf auth login/);
    assert.match(e.message, /huggingface-cli login/);
    assert.match(e.message, /HF_TOKEN/);
    assert.ok(e.message.includes(`${hub.url}/acme/gated`));

    e = await rejectsHub(resolveSource('acme/gated', { ...base, token: TOKEN }), 'HUB_AUTH');
    assert.equal(e.status, 403);
    assert.match(e.message, /not been granted access/);
    assert.match(e.message, /request access/);
    assertNoToken(e);

    e = await rejectsHub(resolveSource('acme/private', { ...base, token: false }), 'HUB_AUTH');
    assert.equal(e.status, 401);
    assert.match(e.message, /does not exist \(no local folder "acme\/private" exists either\), or it is private or gated/);
    assert.match(e.message, /Check the id/);

    e = await rejectsHub(resolveSource('acme/nope', { ...base, token: TOKEN }), 'HUB_NOT_FOUND');
    assert.equal(e.status, 404);
    assert.match(e.message, /check the id/);
    assertNoToken(e);

    e = await rejectsHub(resolveSource(REPO.replace('tiny', 'gated'), { ...base, token: TOKEN, revision: 'v9' }), 'HUB_REVISION_NOT_FOUND');
    assert.match(e.message, /revision "v9"/);
    assertNoToken(e);

    const bad = 'hf_wrongTokenXXXXXXXXXXXXXXXX';
    e = await rejectsHub(resolveSource('acme/private', { ...base, token: bad }), 'HUB_AUTH');
    assert.match(e.message, /refused your token for "acme\/private"/);
    assertNoToken(e, bad);

    const notHf = 'abcdef-not-a-hub-token';
    e = await rejectsHub(resolveSource('acme/private', { ...base, env: { HF_TOKEN: notHf }, token: undefined }), 'HUB_BAD_TOKEN');
    assert.match(e.message, /from HF_TOKEN/);
    assertNoToken(e, notHf);

    // The allowed reader gets through.
    const ok = await resolveSource('acme/private', { ...base, token: 'hf_allowedReader000000000000' });
    assert.deepEqual(ok.files, EXPECTED);
  });
});

test('revisions: a commit hash is used as is (no ref written); a branch gets refs/<branch>', { timeout: TEST_TIMEOUT_MS }, async () => {
  const files = tinyModelFiles();
  await withMockHub({ repos: [{ id: REPO, files }] }, async (hub, tmp) => {
    const first = hub.repos.get(REPO)!.refs.get('main')!;
    const second = hub.commit(REPO, { 'README.md': '# second\n' });
    const opts = { hubUrl: hub.url, cacheDir: tmp, token: false as const, env: {} };
    const r = await resolveSource(REPO, { ...opts, revision: first });
    assert.equal(r.commit, first);
    assert.equal(await readFile(join(r.dir, 'README.md'), 'utf8'), files['README.md']);
    await assert.rejects(readdir(join(tmp, 'models--acme--tiny', 'refs')));
    assert.ok(!hub.requests.some((q) => q.path.includes('/revision/')), 'no commit lookup for a hash');

    hub.repos.get(REPO)!.refs.set('v2', second);
    const r2 = await resolveSource(REPO, { ...opts, revision: 'v2' });
    assert.equal(r2.commit, second);
    assert.equal(await readFile(join(tmp, 'models--acme--tiny', 'refs', 'v2'), 'utf8'), second);
  });
});

test('HF_HUB_CACHE / HF_HOME / HF_ENDPOINT / HF_TOKEN from the environment', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withMockHub({ repos: [{ id: REPO, files: tinyModelFiles(), private: true }], tokens: [TOKEN] }, async (hub, tmp) => {
    const r = await resolveSource(REPO, { env: { HF_HOME: join(tmp, 'home'), HF_ENDPOINT: `${hub.url}/`, HF_TOKEN: TOKEN } });
    assert.equal(r.dir.startsWith(join(tmp, 'home', 'hub', 'models--acme--tiny', 'snapshots')), true);
    assert.ok(hub.requests.every((q) => q.authorized || q.path.startsWith('/cdn/')));

    await writeFile(join(tmp, 'token'), `${TOKEN}\n`);
    const r2 = await resolveSource(REPO, { env: { HF_HUB_CACHE: join(tmp, 'c2'), HF_ENDPOINT: hub.url, HF_TOKEN_PATH: join(tmp, 'token') } });
    assert.equal(r2.dir.startsWith(join(tmp, 'c2', 'models--acme--tiny')), true);
  });
});

test('offline: HF_HUB_OFFLINE, or an unreachable Hub, uses a complete cached snapshot', { timeout: TEST_TIMEOUT_MS }, async () => {
  let url = '';
  let cache = '';
  let dir = '';
  await withMockHub({ repos: [{ id: REPO, files: tinyModelFiles() }] }, async (hub, tmp) => {
    url = hub.url;
    cache = join(tmp, 'cache');
    dir = (await resolveSource(REPO, { hubUrl: hub.url, cacheDir: cache, token: false, env: {} })).dir;
    const events: DownloadEvent[] = [];
    const off = await resolveSource(REPO, { hubUrl: hub.url, cacheDir: cache, token: false, env: { HF_HUB_OFFLINE: '1' }, onProgress: (e) => events.push(e) });
    assert.equal(off.dir, dir);
    assert.deepEqual(off.files, EXPECTED);
    assert.ok(events.some((e) => e.event === 'resolved' && e.fromCache));

    // The Hub is gone (connection refused): the cache still serves.
    await hub.close();
    const down = await resolveSource(REPO, { hubUrl: url, cacheDir: cache, token: false, env: {}, retries: 0 });
    assert.equal(down.dir, dir);

    const err = await rejectsHub(resolveSource('acme/other', { hubUrl: url, cacheDir: cache, token: false, env: { HF_HUB_OFFLINE: '1' } }), 'HUB_OFFLINE');
    assert.match(err.message, /unset HF_HUB_OFFLINE/);
    await rejectsHub(resolveSource('acme/other', { hubUrl: url, cacheDir: cache, token: false, env: {} }), 'HUB_NETWORK');
  });
});

test('a local folder wins over a repo id; nonsense is refused', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withMockHub({}, async (_hub, tmp) => {
    const local = join(tmp, 'org', 'name');
    await mkdir(local, { recursive: true });
    const cwd = process.cwd();
    process.chdir(tmp);
    try {
      const r = await resolveSource('org/name');
      assert.equal(r.dir, local);
      assert.equal(r.repoId, undefined);
    } finally {
      process.chdir(cwd);
    }
    await rejectsHub(resolveSource(join(tmp, 'missing', 'deep', 'path')), 'HUB_BAD_SOURCE');
  });
});

test('cancelling (AbortSignal) stops the transfers and keeps the partial blob for a resume', { timeout: TEST_TIMEOUT_MS }, async () => {
  const files = tinyModelFiles();
  const content = bytesOf(files['model.safetensors']!);
  await withMockHub({ repos: [{ id: REPO, files }] }, async (hub, tmp) => {
    const controller = new AbortController();
    const opts = { hubUrl: hub.url, cacheDir: tmp, token: false as const, env: {}, concurrency: 1, retryDelayMs: 0 };
    let seen = 0;
    const err = await rejectsHub(
      resolveSource(REPO, {
        ...opts,
        signal: controller.signal,
        onProgress: (e) => {
          if (e.event === 'fileProgress' && e.path === 'model.safetensors' && e.bytes < e.size) {
            seen = e.bytes;
            controller.abort();
          }
        },
      }),
      'HUB_NETWORK',
    );
    assert.match(err.message, /cancelled/);
    const incomplete = join(tmp, 'models--acme--tiny', 'blobs', `${sha256Hex(content)}.incomplete`);
    assert.ok(seen > 0 && (await stat(incomplete)).size >= seen);
    const r = await resolveSource(REPO, opts);
    assert.deepEqual(new Uint8Array(await readFile(join(r.dir, 'model.safetensors'))), content);
    assert.ok(
      hub.requests.some((q) => q.range !== undefined && !q.range.startsWith('bytes=0-')),
      'the second call resumed',
    );
  });
});
