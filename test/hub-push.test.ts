// pushFolder against a mock Hub: repo creation (private, or existing), LFS and regular uploads
// through @huggingface/hub's commit (basic and multipart), the generated model card, errors
// (no token, read-only token, invalid token) without the token in them, and a round trip
// (push, then resolveSource downloads the same bytes).

import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { test } from 'node:test';
import { HubError, type PushEvent, pushFolder, resolveSource } from '../src/io/hub/index.js';
import { noiseBytes, safetensorsBytes, withMockHub } from './helpers/mock-hub.js';

/** Every test talks to a local server: a hang is a bug, reported as a failure, not waited out. */
const TEST_TIMEOUT_MS = 30_000;

const TOKEN = 'hf_pushSecretToken0123456789';
const READ_ONLY = 'hf_readOnlyToken000000000000';

const QUANT = { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [128, 128], modules_to_not_convert: ['lm_head'] };

/** A converted folder, as convert writes it (its README is the source's card). */
async function convertedFolder(dir: string, weightBytes = 64 * 1024): Promise<Record<string, Uint8Array>> {
  const files: Record<string, Uint8Array> = {
    'config.json': new TextEncoder().encode(JSON.stringify({ architectures: ['LlamaForCausalLM'], quantization_config: QUANT })),
    'model.safetensors': safetensorsBytes({
      'model.layers.0.mlp.down_proj.weight': { dtype: 'F8_E4M3', shape: [128, weightBytes / 128], data: noiseBytes(weightBytes, 11) },
      'model.layers.0.mlp.down_proj.weight_scale_inv': { dtype: 'F32', shape: [1, 1], data: noiseBytes(4, 12) },
    }),
    'tokenizer.json': new TextEncoder().encode('{"version":"1.0"}'),
    'README.md': new TextEncoder().encode('---\nlicense: llama3.1\nlicense_name: "llama3.1"\n---\n# source card\n'),
  };
  await mkdir(dir, { recursive: true });
  for (const [k, v] of Object.entries(files)) await writeFile(join(dir, k), v);
  await mkdir(join(dir, '.cache'), { recursive: true });
  await writeFile(join(dir, '.cache', 'junk'), 'x');
  return files;
}

function assertNoToken(e: unknown, token: string): void {
  for (const t of [String(e), (e as Error).stack ?? '', inspect(e, { depth: 8, showHidden: true })]) {
    assert.ok(!t.includes(token), `token leaked into: ${t.slice(0, 300)}`);
  }
}

test('pushes a converted folder: private repo, LFS weights, regular files, generated card; round trip', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withMockHub({ tokens: [TOKEN] }, async (hub, tmp) => {
    const dir = join(tmp, 'out');
    const files = await convertedFolder(dir);
    const events: PushEvent[] = [];
    const r = await pushFolder(dir, 'me/tiny-fp8', {
      private: true,
      hubUrl: hub.url,
      token: TOKEN,
      env: {},
      card: { source: 'acme/tiny', sourceRevision: 'a'.repeat(40), verify: { 'min SQNR (dB)': 31.234567, 'top-1 agreement': 0.998 }, fp8qVersion: '9.9.9' },
      onProgress: (e) => events.push(e),
    });
    assert.equal(r.created, true);
    assert.equal(r.url, `${hub.url}/me/tiny-fp8`);
    assert.deepEqual(r.files, ['README.md', 'config.json', 'model.safetensors', 'tokenizer.json']);
    const repo = hub.repos.get('me/tiny-fp8')!;
    assert.equal(repo.private, true);
    assert.deepEqual(repo.createdWith, { visibility: 'private' });
    assert.equal(r.commit, repo.refs.get('main'));

    const remote = hub.filesAt('me/tiny-fp8');
    assert.deepEqual(remote.get('model.safetensors'), files['model.safetensors']);
    assert.deepEqual(remote.get('config.json'), files['config.json']);
    assert.ok(!remote.has('.cache/junk'));
    const card = new TextDecoder().decode(remote.get('README.md'));
    assert.match(card, /^---\n/);
    assert.match(card, /\nbase_model: "acme\/tiny"\n/);
    assert.match(card, /\nbase_model_relation: quantized\n/);
    assert.match(card, /\nlicense: "llama3\.1"\n/);
    assert.match(card, /\n {2}- "fp8"\n/);
    assert.match(card, /fp8q 9\.9\.9/);
    assert.match(card, /"weight_block_size": \[\n\s+128,\n\s+128\n\s+\]/);
    assert.match(card, /\| min SQNR \(dB\) \| 31\.2346 \|/);
    assert.match(card, new RegExp(`at commit \`${'a'.repeat(40)}\``));

    // The weights went through the LFS protocol, the rest inline in the commit.
    assert.ok(hub.requests.some((q) => q.method === 'PUT' && q.path.startsWith('/lfs-upload/')));
    assert.deepEqual(
      events.filter((e) => e.event === 'phase').map((e) => (e.event === 'phase' ? e.phase : '')),
      ['preuploading', 'uploadingLargeFiles', 'committing'],
    );
    assert.equal(events[0]!.event, 'repo');
    assert.equal(events.at(-1)!.event, 'committed');

    // Round trip: download what was pushed.
    const back = await resolveSource('me/tiny-fp8', { hubUrl: hub.url, cacheDir: join(tmp, 'cache'), token: TOKEN, env: {} });
    assert.deepEqual(new Uint8Array(await readFile(join(back.dir, 'model.safetensors'))), files['model.safetensors']);
    assert.equal(await readFile(join(back.dir, 'README.md'), 'utf8'), card);
  });
});

test('an existing repo is reused (409), multipart uploads for large files', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withMockHub({ tokens: [TOKEN], multipartChunkSize: 16 * 1024 }, async (hub, tmp) => {
    const dir = join(tmp, 'out');
    const files = await convertedFolder(dir, 48 * 1024);
    const opts = { hubUrl: hub.url, token: TOKEN, env: {}, card: { source: join(tmp, 'local-src') } };
    const first = await pushFolder(dir, 'me/big', opts);
    assert.equal(first.created, true);
    assert.ok(
      hub.requests.some((q) => q.path.includes('/part/')),
      'multipart used',
    );
    // The repo now holds a model: pushing over it takes --force (replace).
    await assert.rejects(pushFolder(dir, 'me/big', opts), (e: unknown) => e instanceof HubError && e.code === 'HUB_REPO_NOT_EMPTY' && /pass --force/.test(e.message));
    const second = await pushFolder(dir, 'me/big', { ...opts, replace: true });
    assert.equal(second.created, false);
    assert.notEqual(second.commit, first.commit);
    assert.deepEqual(hub.filesAt('me/big').get('model.safetensors'), files['model.safetensors']);
    const card = new TextDecoder().decode(hub.filesAt('me/big').get('README.md'));
    assert.ok(!card.includes('base_model:'), 'a local source has no base_model');
    assert.match(card, /not checked with `fp8q verify`/);
  });
});

test('push errors: no token, read-only token, invalid token, not a converted folder; token never shown', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withMockHub({ tokens: [TOKEN], readOnlyTokens: [READ_ONLY], echoAuthorization: true }, async (hub, tmp) => {
    const dir = join(tmp, 'out');
    await convertedFolder(dir);
    const base = { hubUrl: hub.url, env: {}, card: { source: 'acme/tiny' } };
    const expectCode = async (p: Promise<unknown>, code: HubError['code']): Promise<HubError> => {
      try {
        await p;
      } catch (e) {
        assert.ok(e instanceof HubError, inspect(e));
        assert.equal(e.code, code, e.message);
        return e;
      }
      return assert.fail('expected an error');
    };

    let e = await expectCode(pushFolder(dir, 'me/x', { ...base, token: false }), 'HUB_AUTH');
    assert.match(e.message, /write access/);
    assert.match(e.message, /HF_TOKEN/);
    assert.equal(hub.requests.length, 0, 'nothing sent without a token');

    e = await expectCode(pushFolder(dir, 'me/x', { ...base, token: READ_ONLY }), 'HUB_AUTH');
    assert.equal(e.status, 403);
    assert.match(e.message, /may not write to "me\/x"/);
    assertNoToken(e, READ_ONLY);

    const bad = 'hf_invalidPushToken999999999';
    e = await expectCode(pushFolder(dir, 'me/x', { ...base, token: bad }), 'HUB_AUTH');
    assert.equal(e.status, 401);
    assertNoToken(e, bad);

    await writeFile(join(dir, 'config.json'), '{"architectures":[]}');
    e = await expectCode(pushFolder(dir, 'me/x', { ...base, token: TOKEN }), 'HUB_PUSH');
    assert.match(e.message, /no quantization_config/);

    await assert.rejects(pushFolder(dir, 'not a repo', { ...base, token: TOKEN }), /is not a Hub repo id/);
  });
});
