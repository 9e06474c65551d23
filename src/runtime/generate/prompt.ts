// From a prompt to the token ids a model sees, and the ids that end its generation, as the model's
// own files say: the tokenizer (tokenizer.json; BOS as its post-processor adds it, or as
// tokenizer_config.json's add_bos_token asks with config.json's bos_token_id), the chat template
// for `--chat` (tokenizer_config.json's chat_template, or chat_template.jinja / chat_template.json
// beside it, rendered with @huggingface/jinja, the Jinja subset HF chat templates use), and the
// end-of-sequence ids of generation_config.json and config.json.

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import type { ModelConfig } from '../../io/checkpoint/checkpoint.js';
import { CheckpointError } from '../../io/errors.js';
import type { ModelTokenizer } from '../text/model-tokenizer.js';

export const GENERATION_CONFIG_FILE = 'generation_config.json';
const CHAT_TEMPLATE_FILES = ['chat_template.jinja', 'chat_template.json'] as const;
/** Largest small JSON / template file read here. */
const MAX_SMALL_FILE_BYTES = 16 * 1024 * 1024;

async function readSmallFile(path: string): Promise<string | undefined> {
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) return undefined;
    size = s.size;
  } catch {
    return undefined;
  }
  if (size > MAX_SMALL_FILE_BYTES) throw new CheckpointError(`${path} is ${size} bytes, over the ${MAX_SMALL_FILE_BYTES}-byte limit`);
  return readFile(path, 'utf8');
}

function parseJson(path: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${path} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CheckpointError(`${path} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** `id` or `[id, …]` from a config field; [] when absent or malformed. */
function tokenIds(value: unknown): number[] {
  const list = Array.isArray(value) ? value : [value];
  return list.filter((v): v is number => Number.isSafeInteger(v) && (v as number) >= 0);
}

/** A special token's text from tokenizer_config.json (a string, or an AddedToken object with `content`). */
function specialTokenText(config: Readonly<Record<string, unknown>>, key: string): string | undefined {
  const v = config[key];
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>)['content'] === 'string') return (v as Record<string, string>)['content'];
  return undefined;
}

export interface ChatTemplate {
  readonly source: string;
  readonly template: string;
}

/** The model's chat template, or undefined when it has none. */
export async function findChatTemplate(modelDir: string, tokenizerConfig: Readonly<Record<string, unknown>>): Promise<ChatTemplate | undefined> {
  const inConfig = tokenizerConfig['chat_template'];
  if (typeof inConfig === 'string') return { source: 'tokenizer_config.json', template: inConfig };
  if (Array.isArray(inConfig)) {
    // Named templates: [{name, template}, …]; the one named "default" is the chat template.
    const named = inConfig.filter((t): t is { name: string; template: string } => typeof t?.name === 'string' && typeof t?.template === 'string');
    const chosen = named.find((t) => t.name === 'default') ?? named[0];
    if (chosen) return { source: `tokenizer_config.json (template "${chosen.name}")`, template: chosen.template };
  }
  for (const file of CHAT_TEMPLATE_FILES) {
    const path = join(modelDir, file);
    const text = await readSmallFile(path);
    if (text === undefined) continue;
    if (file.endsWith('.jinja')) return { source: file, template: text };
    const t = parseJson(path, text)['chat_template'];
    if (typeof t === 'string') return { source: file, template: t };
  }
  return undefined;
}

/** The user's message rendered with the chat template, ending with the assistant's turn. */
export function renderChat(template: ChatTemplate, prompt: string, tokenizerConfig: Readonly<Record<string, unknown>>): string {
  const special: Record<string, string> = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    const t = specialTokenText(tokenizerConfig, key);
    if (t !== undefined) special[key] = t;
  }
  try {
    return new Template(template.template).render({ messages: [{ role: 'user', content: prompt }], add_generation_prompt: true, ...special });
  } catch (e) {
    throw new CheckpointError(`the chat template in ${template.source} cannot be rendered: ${(e as Error).message}`);
  }
}

export interface PromptSettings {
  /** Ids that end a generation (generation_config.json, then config.json). */
  readonly stopIds: ReadonlySet<number>;
  readonly bosId: number | undefined;
  /** tokenizer_config.json's add_bos_token: true (prepend when the tokenizer did not), false, or unset. */
  readonly addBos: boolean | undefined;
  readonly chatTemplate: ChatTemplate | undefined;
}

export async function promptSettings(modelDir: string, config: ModelConfig | undefined, tokenizer: ModelTokenizer): Promise<PromptSettings> {
  const path = join(modelDir, GENERATION_CONFIG_FILE);
  const text = await readSmallFile(path);
  const generation = text === undefined ? {} : parseJson(path, text);
  const stopIds = new Set([...tokenIds(generation['eos_token_id']), ...tokenIds(config?.['eos_token_id'])]);
  const bosId = tokenIds(generation['bos_token_id'])[0] ?? tokenIds(config?.['bos_token_id'])[0];
  const addBos = tokenizer.config['add_bos_token'];
  return {
    stopIds,
    bosId,
    addBos: typeof addBos === 'boolean' ? addBos : undefined,
    chatTemplate: await findChatTemplate(modelDir, tokenizer.config),
  };
}

export class NoChatTemplateError extends CheckpointError {}

/** The prompt's token ids: plain text through the tokenizer, or with `chat`, the rendered template. */
export function promptIds(tokenizer: ModelTokenizer, settings: PromptSettings, prompt: string, chat: boolean, modelDir: string): number[] {
  if (chat) {
    if (settings.chatTemplate === undefined) {
      throw new NoChatTemplateError(
        `${modelDir} has no chat template (no "chat_template" in tokenizer_config.json, no chat_template.jinja or chat_template.json): ` +
          'drop --chat, or write the prompt in the format the model was trained on',
        'E_INPUT_UNSUPPORTED',
      );
    }
    // The template writes the special tokens itself (BOS included), as transformers' apply_chat_template.
    return tokenizer.encodeWithoutSpecialTokens(renderChat(settings.chatTemplate, prompt, tokenizer.config));
  }
  const ids = tokenizer.encode(prompt);
  if (settings.addBos === true && settings.bosId !== undefined && ids[0] !== settings.bosId) ids.unshift(settings.bosId);
  return ids;
}
