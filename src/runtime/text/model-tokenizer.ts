// The model's own tokenizer, read offline from its folder: `tokenizer.json` (the Rust tokenizers
// format every HF model ships) and, when present, `tokenizer_config.json` (special-token
// metadata). Tokenization is @huggingface/tokenizers (pure JavaScript, no dependencies, no
// network): calibration text must become exactly the ids the model sees at inference, which only
// the model's own vocabulary, merges, normalizer and post-processor (BOS) give.

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
// The tokenizers package is loaded when a tokenizer is (a plain convert never needs it).
import type { Tokenizer } from '@huggingface/tokenizers';
import { CheckpointError } from '../../io/errors.js';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/** Largest tokenizer.json we parse: real ones are 2–35 MB (a 256k-token vocabulary with merges). */
export const MAX_TOKENIZER_BYTES = 128 * 1024 * 1024;

export interface ModelTokenizer {
  /** Token ids of `text`, with the special tokens the model's post-processor adds (BOS …). */
  encode(text: string): number[];
  /** Token ids of `text` alone, no special tokens added (text that already holds them: a rendered chat template). */
  encodeWithoutSpecialTokens(text: string): number[];
  /** Text of `ids` through the tokenizer's decoder; special tokens left out unless `keepSpecialTokens`. */
  decode(ids: readonly number[], options?: { keepSpecialTokens?: boolean }): string;
  /** `tokenizer_config.json` (chat template, special-token names), or {} without one. */
  readonly config: Readonly<Record<string, unknown>>;
  readonly file: string;
}

async function readJsonObject(path: string, what: string): Promise<Record<string, unknown>> {
  const size = (await stat(path)).size;
  if (size > MAX_TOKENIZER_BYTES) throw new CheckpointError(`${path}: ${what} is ${size} bytes, over the ${MAX_TOKENIZER_BYTES}-byte limit`);
  let value: unknown;
  try {
    value = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${path}: ${what} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CheckpointError(`${path}: ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Whether `<modelDir>` has a tokenizer.json (verify then defaults to text input). */
export async function hasModelTokenizer(modelDir: string): Promise<boolean> {
  return exists(join(modelDir, TOKENIZER_FILE));
}

const CALIBRATION_ALTERNATIVE = 'or pass token ids instead (--calibration ids.safetensors holding input_ids I64 [B, T])';

/**
 * Loads `<modelDir>/tokenizer.json`; a folder without one is an error that says what it was needed
 * for and what to do (`alternative`: the calibration's token-id route by default).
 */
export async function loadModelTokenizer(
  modelDir: string,
  neededFor = 'to tokenize the calibration text',
  /** What else the user can do; '' for nothing. */
  alternative: string = CALIBRATION_ALTERNATIVE,
): Promise<ModelTokenizer> {
  const file = join(modelDir, TOKENIZER_FILE);
  if (!(await exists(file))) {
    throw new CheckpointError(
      `${modelDir} has no ${TOKENIZER_FILE}, needed ${neededFor}: copy the model's ${TOKENIZER_FILE} into it` + (alternative === '' ? '' : `, ${alternative}`),
    );
  }
  const json = await readJsonObject(file, TOKENIZER_FILE);
  const configFile = join(modelDir, TOKENIZER_CONFIG_FILE);
  const config = (await exists(configFile)) ? await readJsonObject(configFile, TOKENIZER_CONFIG_FILE) : {};
  const { Tokenizer: TokenizerClass } = await import('@huggingface/tokenizers');
  let tokenizer: Tokenizer;
  try {
    tokenizer = new TokenizerClass(json, config);
  } catch (e) {
    throw new CheckpointError(`${file}: cannot build the tokenizer (${(e as Error).message})`);
  }
  return {
    file,
    config,
    encode: (text) => tokenizer.encode(text, { add_special_tokens: true }).ids,
    encodeWithoutSpecialTokens: (text) => tokenizer.encode(text, { add_special_tokens: false }).ids,
    decode: (ids, options) => tokenizer.decode([...ids], { skip_special_tokens: options?.keepSpecialTokens !== true }),
  };
}
