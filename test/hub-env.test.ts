// The pure parts of the Hub layer: environment (token, cache, endpoint, offline), repo ids, file
// selection, model card text.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  HubError,
  hubCacheDir,
  hubEndpoint,
  isHubRepoId,
  isOffline,
  isValidRepoId,
  readToken,
  readTokenWithSource,
  renderModelCard,
  selectFiles,
  shardsFromIndex,
  type RepoFile,
} from '../src/io/hub/index.js';

test('readToken: HF_TOKEN, then HF_TOKEN_PATH, then $HF_HOME/token, then ~/.cache/huggingface/token', async () => {
  const tmp = await mkdtemp(join(tmpdir(), 'fp8q-token-'));
  try {
    await writeFile(join(tmp, 'custom'), '  hf_fromCustomPath  \n');
    await mkdir(join(tmp, 'hfhome'));
    await writeFile(join(tmp, 'hfhome', 'token'), 'hf_fromHfHome\n');
    await mkdir(join(tmp, 'home', '.cache', 'huggingface'), { recursive: true });
    await writeFile(join(tmp, 'home', '.cache', 'huggingface', 'token'), 'hf_fromDefault');

    assert.equal(readToken({ HF_TOKEN: ' hf_env ', HF_TOKEN_PATH: join(tmp, 'custom') }), 'hf_env');
    assert.equal(readToken({ HUGGING_FACE_HUB_TOKEN: 'hf_legacy' }), 'hf_legacy');
    assert.deepEqual(readTokenWithSource({ HF_TOKEN: '', HF_TOKEN_PATH: join(tmp, 'custom'), HF_HOME: join(tmp, 'hfhome') }), {
      token: 'hf_fromCustomPath',
      source: join(tmp, 'custom'),
    });
    assert.equal(readToken({ HF_HOME: join(tmp, 'hfhome') }), 'hf_fromHfHome');
    assert.equal(readToken({ HOME: join(tmp, 'home') }), 'hf_fromDefault');
    assert.equal(readToken({ HOME: join(tmp, 'nobody') }), undefined);
    await writeFile(join(tmp, 'empty'), '\n');
    assert.equal(readToken({ HF_TOKEN_PATH: join(tmp, 'empty') }), undefined);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});

test('hubCacheDir, hubEndpoint and isOffline read the variables Python reads', () => {
  assert.equal(hubCacheDir({ HF_HUB_CACHE: '/c', HF_HOME: '/h' }), '/c');
  assert.equal(hubCacheDir({ HUGGINGFACE_HUB_CACHE: '/legacy', HF_HOME: '/h' }), '/legacy');
  assert.equal(hubCacheDir({ HF_HOME: '/h' }), '/h/hub');
  assert.equal(hubCacheDir({ XDG_CACHE_HOME: '/x' }), '/x/huggingface/hub');
  assert.equal(hubCacheDir({ HOME: '/home/u' }), '/home/u/.cache/huggingface/hub');
  assert.equal(hubCacheDir({}), join(homedir(), '.cache', 'huggingface', 'hub'));

  assert.equal(hubEndpoint({}), 'https://huggingface.co');
  assert.equal(hubEndpoint({ HF_ENDPOINT: 'https://hf-mirror.com/' }), 'https://hf-mirror.com');
  assert.equal(hubEndpoint({ HF_ENDPOINT: 'https://hf-mirror.com' }, 'http://127.0.0.1:9'), 'http://127.0.0.1:9');
  assert.throws(() => hubEndpoint({}, 'ftp://x'), /must be http/);
  assert.throws(() => hubEndpoint({ HF_ENDPOINT: 'not a url' }), /not a URL/);

  assert.equal(isOffline({ HF_HUB_OFFLINE: '1' }), true);
  assert.equal(isOffline({ HF_HUB_OFFLINE: 'TRUE' }), true);
  assert.equal(isOffline({ HF_HUB_OFFLINE: '0' }), false);
  assert.equal(isOffline({}), false);
});

test('isHubRepoId: org/name by the Hub rules; an existing path wins', () => {
  for (const id of ['meta-llama/Llama-3.1-8B', 'Qwen/Qwen2.5-0.5B-Instruct', 'a/b', 'deepseek-ai/DeepSeek-V3', 'org_1/m.v2']) {
    assert.equal(isValidRepoId(id), true, id);
    assert.equal(
      isHubRepoId(id, () => false),
      true,
      id,
    );
  }
  for (const id of [
    'gpt2',
    './org/name',
    '/abs/path',
    'org/name/extra',
    'org//name',
    'org/na--me',
    'org/..',
    'org/name.git',
    '-org/name',
    'org/name-',
    'C:\\models\\x',
    '',
    `a/${'x'.repeat(97)}`,
  ]) {
    assert.equal(isValidRepoId(id), false, id);
  }
  assert.equal(
    isHubRepoId('org/name', (p) => p === 'org/name'),
    false,
  );
});

const f = (path: string, size = 10): RepoFile => ({ path, size, oid: '0'.repeat(40) });

test('selectFiles: safetensors and what travels with them; never other weight formats or subfolders', () => {
  const s = selectFiles([
    f('config.json'),
    f('generation_config.json'),
    f('tokenizer.json'),
    f('tokenizer_config.json'),
    f('special_tokens_map.json'),
    f('tokenizer.model'),
    f('vocab.json'),
    f('merges.txt'),
    f('chat_template.jinja'),
    f('README.md'),
    f('LICENSE'),
    f('USE_POLICY.md'),
    f('modeling_deepseek.py'),
    f('model.safetensors'),
    f('pytorch_model.bin'),
    f('pytorch_model.bin.index.json'),
    f('model.pth'),
    f('consolidated.pt'),
    f('flax_model.msgpack'),
    f('tf_model.h5'),
    f('model.onnx'),
    f('model.gguf'),
    f('.gitattributes'),
    f('original/consolidated.00.pth'),
    f('onnx/model.onnx'),
    f('..'),
    f('a\\b.json'),
  ]);
  assert.deepEqual(
    s.weights.map((x) => x.path),
    ['model.safetensors'],
  );
  assert.deepEqual(s.support.map((x) => x.path).sort(), [
    'LICENSE',
    'README.md',
    'USE_POLICY.md',
    'chat_template.jinja',
    'config.json',
    'generation_config.json',
    'merges.txt',
    'modeling_deepseek.py',
    'special_tokens_map.json',
    'tokenizer.json',
    'tokenizer.model',
    'tokenizer_config.json',
    'vocab.json',
  ]);
  const reasons = Object.fromEntries(s.skipped.map((x) => [x.path, x.reason]));
  for (const p of ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'model.pth', 'consolidated.pt', 'flax_model.msgpack', 'tf_model.h5', 'model.onnx', 'model.gguf']) {
    assert.equal(reasons[p], 'other-weight-format', p);
  }
  assert.equal(reasons['original/consolidated.00.pth'], 'subfolder');
  assert.equal(reasons['.gitattributes'], 'not-needed');
  assert.equal(reasons['..'], 'not-needed');
  assert.equal(reasons['a\\b.json'], 'not-needed');

  // Several single files without an index: all of them; with model.safetensors: only it.
  assert.deepEqual(
    selectFiles([f('a.safetensors'), f('b.safetensors')]).weights.map((x) => x.path),
    ['a.safetensors', 'b.safetensors'],
  );
  assert.deepEqual(
    selectFiles([f('model.safetensors'), f('consolidated.safetensors')]).weights.map((x) => x.path),
    ['model.safetensors'],
  );
  assert.throws(
    () => selectFiles([f('config.json'), f('pytorch_model.bin')]),
    (e: unknown) => e instanceof HubError && e.code === 'HUB_NO_SAFETENSORS' && /pytorch_model\.bin/.test(e.message),
  );
});

test('shardsFromIndex: the named shards, or an error naming the broken entry', () => {
  const entries = [f('model-1.safetensors'), f('model-2.safetensors'), f('consolidated.safetensors')];
  const index = (map: Record<string, unknown>): string => JSON.stringify({ metadata: {}, weight_map: map });
  assert.deepEqual(
    shardsFromIndex(index({ a: 'model-2.safetensors', b: 'model-1.safetensors', c: 'model-1.safetensors' }), entries).map((x) => x.path),
    ['model-1.safetensors', 'model-2.safetensors'],
  );
  assert.throws(() => shardsFromIndex(index({ a: 'model-3.safetensors' }), entries), /names shard "model-3\.safetensors"/);
  assert.throws(() => shardsFromIndex(index({ a: '../x.safetensors' }), entries), /not a top-level/);
  assert.throws(() => shardsFromIndex(index({ a: 3 }), entries), /non-string shard/);
  assert.throws(() => shardsFromIndex('{"weight_map": []}', entries), /no "weight_map" object/);
  assert.throws(() => shardsFromIndex('{', entries), /not valid JSON/);
  assert.throws(() => shardsFromIndex(index({}), entries), /names no shard/);
});

test('renderModelCard: front matter that cannot be broken, figures, long ignore lists', () => {
  const card = renderModelCard({
    repoId: 'me/m',
    source: 'org/evil"name',
    quantizationConfig: { quant_method: 'fp8', fmt: 'e5m2', modules_to_not_convert: Array.from({ length: 20 }, (_, i) => `model.layers.${i}.mlp.gate`) },
    fp8qVersion: '1.2.3',
    license: 'other\nmalicious: yes',
    tags: ['custom', 'fp8'],
    verify: { 'a|b': 1, none: null, ratio: 0.000123456789 },
  });
  const front = /^---\n([\s\S]*?)\n---\n/.exec(card)![1]!;
  // Every line is `key: value`, `tags:` or a list item: no injected key.
  for (const line of front.split('\n')) assert.match(line, /^(library_name: transformers|license: ".*"|tags:|  - ".*")$/, line);
  assert.ok(!front.includes('base_model'), 'an invalid id is not a base_model');
  assert.equal((front.match(/- "fp8"/g) ?? []).length, 1, 'tags deduplicated');
  assert.match(card, /E5M2/);
  assert.match(card, /and 8 more/);
  assert.match(card, /\| a\\\|b \| 1 \|/);
  assert.match(card, /\| none \| — \|/);
  assert.match(card, /\| ratio \| 0\.000123457 \|/);
});
