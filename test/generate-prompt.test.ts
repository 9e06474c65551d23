// Prompts and text for `generate`, on copies of stories260K's tokenizer files: BOS added as
// tokenizer_config.json's add_bos_token asks when the tokenizer's post-processor does not add it
// (and never twice); end-of-sequence ids from generation_config.json and config.json; the chat
// template found in each place transformers keeps it; and streamed text pieces that join to the
// decoded text, byte-fallback characters included.

import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { loadModelTokenizer } from '../src/runtime/text/model-tokenizer.js';
import { findChatTemplate, promptIds, promptSettings, renderChat } from '../src/runtime/generate/prompt.js';
import { TextStream } from '../src/runtime/generate/text-stream.js';
import { MODELS } from './helpers/fixtures.js';

const STORIES = join(MODELS, 'stories260K');
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'generate-prompt-'));
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function folder(
  name: string,
  edit: { tokenizer?: (t: Record<string, unknown>) => void; tokenizerConfig?: (c: Record<string, unknown>) => void; files?: Record<string, string> } = {},
): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir);
  const tokenizer = JSON.parse(await readFile(join(STORIES, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  edit.tokenizer?.(tokenizer);
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  const config = JSON.parse(await readFile(join(STORIES, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  edit.tokenizerConfig?.(config);
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  await copyFile(join(STORIES, 'generation_config.json'), join(dir, 'generation_config.json'));
  for (const [file, text] of Object.entries(edit.files ?? {})) await writeFile(join(dir, file), text);
  return dir;
}

test('BOS: from the post-processor, else from add_bos_token, never twice', async () => {
  const modelConfig = { bos_token_id: 1, eos_token_id: 2 };
  const plain = await loadModelTokenizer(STORIES);
  const s1 = await promptSettings(STORIES, modelConfig, plain);
  assert.deepEqual(promptIds(plain, s1, 'Once upon a time', false, STORIES), [1, 403, 407, 261, 378]);

  const dir = await folder('no-post-processor', { tokenizer: (t) => void (t['post_processor'] = null) });
  const bare = await loadModelTokenizer(dir);
  assert.deepEqual(bare.encode('Once upon a time'), [403, 407, 261, 378]);
  const s2 = await promptSettings(dir, modelConfig, bare);
  assert.equal(s2.addBos, true);
  assert.deepEqual(promptIds(bare, s2, 'Once upon a time', false, dir), [1, 403, 407, 261, 378]);
  assert.deepEqual([...s2.stopIds], [2]);

  const off = await folder('add-bos-false', { tokenizer: (t) => void (t['post_processor'] = null), tokenizerConfig: (c) => void (c['add_bos_token'] = false) });
  const offTok = await loadModelTokenizer(off);
  assert.deepEqual(promptIds(offTok, await promptSettings(off, modelConfig, offTok), 'Once upon a time', false, off), [403, 407, 261, 378]);
});

test('end-of-sequence ids: generation_config.json and config.json, lists included', async () => {
  const dir = await folder('eos-list', { files: { 'generation_config.json': JSON.stringify({ eos_token_id: [2, 7] }) } });
  const tok = await loadModelTokenizer(dir);
  const s = await promptSettings(dir, { eos_token_id: 9 }, tok);
  assert.deepEqual(
    [...s.stopIds].sort((a, b) => a - b),
    [2, 7, 9],
  );
});

test('chat template: tokenizer_config.json (string or named list), chat_template.jinja, chat_template.json; rendered with the special tokens', async () => {
  const template = '{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}{% if add_generation_prompt %} [assistant]{% endif %}';
  const config = JSON.parse(await readFile(join(STORIES, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(await findChatTemplate(STORIES, config), undefined);
  assert.equal((await findChatTemplate(STORIES, { chat_template: template }))?.source, 'tokenizer_config.json');
  const named = await findChatTemplate(STORIES, {
    chat_template: [
      { name: 'tool_use', template: 'x' },
      { name: 'default', template },
    ],
  });
  assert.equal(named?.template, template);
  const jinja = await folder('jinja', { files: { 'chat_template.jinja': template } });
  assert.equal((await findChatTemplate(jinja, config))?.source, 'chat_template.jinja');
  const json = await folder('json', { files: { 'chat_template.json': JSON.stringify({ chat_template: template }) } });
  const found = await findChatTemplate(json, config);
  assert.equal(found?.source, 'chat_template.json');
  assert.equal(renderChat(found!, 'Hi', config), '<s>[user] Hi [assistant]');
  const tok = await loadModelTokenizer(json);
  const ids = promptIds(tok, await promptSettings(json, undefined, tok), 'Hi', true, json);
  assert.equal(ids[0], 1);
  assert.equal(ids.filter((id) => id === 1).length, 1);
  assert.throws(() => promptIds(tok, { stopIds: new Set(), bosId: 1, addBos: true, chatTemplate: undefined }, 'Hi', true, 'the-model'), /the-model has no chat template/);
});

test('streamed pieces join to the decoded text, byte-fallback characters included', async () => {
  const tok = await loadModelTokenizer(STORIES);
  for (const text of ['Once upon a time, there was a dog.', 'héllo 日本 and more', 'a\nb  c']) {
    const ids = tok.encode(text);
    const prompt = ids.slice(0, 2);
    const stream = new TextStream(tok, prompt);
    const pieces = ids.slice(2).map((id) => stream.push(id));
    stream.flush();
    const whole = tok.decode(ids);
    assert.equal(tok.decode(prompt) + stream.text, whole, text);
    assert.ok(
      pieces.every((p) => !p.includes('\uFFFD')),
      `no partial character streamed for ${JSON.stringify(text)}`,
    );
  }
});
