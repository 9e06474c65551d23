// Text in, token ids out, for the commands that run a model (`verify`, `logits`, `generate`):
// plain text (a file or stdin), a JSONL dataset (`{"text": ...}` per line) or the English sample
// bundled with the package (`data/verify-sample.txt`), tokenized with the model's own
// tokenizer.json (BOS as its post-processor adds it) and cut into a rectangular `[B, T]` batch.
//
// Each document (the text, or one dataset record) is tokenized on its own, so each starts with
// the model's BOS as it would at inference; the documents' ids are then concatenated and cut into
// rows of `seqLen` tokens. A tail shorter than `seqLen` is dropped, unless the text is too short
// for even one row: then the one row is all of it. Limits (`maxSamples` rows, `maxTokens` tokens)
// keep the first rows, so a run is reproducible from its flags.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointError } from '../../io/errors.js';
import { jsonlTexts, MAX_CALIBRATION_TEXT_BYTES, readWholeText } from './calibration-input.js';
import { loadModelTokenizer, TOKENIZER_FILE } from './model-tokenizer.js';
import { MAX_SEQUENCE } from '../models/sequence-limit.js';
import type { TokenBatch } from '../models/token-ids.js';

/** The English sample shipped in the package (`files` in package.json lists `data`). */
export const BUNDLED_TEXT_FILE = fileURLToPath(new URL('../../../data/verify-sample.txt', import.meta.url));

export const DEFAULT_TEXT_SEQ_LEN = 512;
export const DEFAULT_TEXT_MAX_TOKENS = 1024;

export type TextSource =
  | { readonly kind: 'text' /** A path, or `-` for stdin. */; readonly file: string }
  | { readonly kind: 'dataset'; readonly file: string }
  | { readonly kind: 'bundled' };

export interface TextInputOptions {
  readonly source: TextSource;
  /** The model folder whose tokenizer.json tokenizes the text. */
  readonly modelDir: string;
  /** Tokens per row; default min(DEFAULT_TEXT_SEQ_LEN, contextLength). */
  readonly seqLen?: number;
  /** Most rows used. */
  readonly maxSamples?: number;
  /** Most tokens used (rows × seqLen); default DEFAULT_TEXT_MAX_TOKENS. */
  readonly maxTokens?: number;
  /** The model's context (max_position_embeddings): the default seqLen stays within it. */
  readonly contextLength?: number;
  /** Ids must be below this (config.json's vocab_size). */
  readonly vocabSize?: number;
  /** stdin, for `-` (tests pass their own). */
  readonly stdin?: () => Promise<string>;
  /** Whether the command takes random ids (`--tokens N`, verify) to suggest instead; default true. */
  readonly offerRandomIds?: boolean;
}

/** What a run's token ids are, for reports. */
export interface TextInputDescription {
  readonly kind: TextSource['kind'];
  /** The file read (`-` for stdin; the bundled sample's path). */
  readonly file: string;
  readonly tokenizer: string;
  /** Documents tokenized (1 for text; records for a dataset). */
  readonly documents: number;
  /** Tokens the text gave, and how many of them the batch holds. */
  readonly tokensAvailable: number;
  readonly tokensUsed: number;
}

export interface TextInput {
  readonly batch: TokenBatch;
  readonly description: TextInputDescription;
}

function checkCount(flag: string, n: number | undefined, max = Number.MAX_SAFE_INTEGER): void {
  if (n !== undefined && (!Number.isSafeInteger(n) || n < 1 || n > max)) throw new CheckpointError(`${flag} must be an integer from 1 to ${max}, got ${n}`);
}

/** Standard input as UTF-8 text, up to the same size limit as a text file. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of process.stdin) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    bytes += b.length;
    if (bytes > MAX_CALIBRATION_TEXT_BYTES) throw new CheckpointError(`stdin holds over ${MAX_CALIBRATION_TEXT_BYTES} bytes of text: pass a shorter text`);
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function documents(opts: TextInputOptions): Promise<{ file: string; texts: string[] }> {
  const s = opts.source;
  if (s.kind === 'bundled') return { file: BUNDLED_TEXT_FILE, texts: [await readWholeText(BUNDLED_TEXT_FILE, 'text')] };
  // `-` is standard input for --dataset as for --text.
  const text = s.file === '-' ? await (opts.stdin ?? readStdin)() : await readWholeText(s.file, 'text');
  if (s.kind === 'text') return { file: s.file, texts: [text] };
  return { file: s.file, texts: jsonlTexts(s.file, text) };
}

/** max_position_embeddings and vocab_size from `<modelDir>/config.json`, where it says them. */
export async function modelTextLimits(modelDir: string): Promise<{ contextLength?: number; vocabSize?: number }> {
  let config: unknown;
  try {
    config = JSON.parse(await readFile(join(modelDir, 'config.json'), 'utf8'));
  } catch {
    return {};
  }
  const at = (o: unknown, key: string): unknown => (typeof o === 'object' && o !== null ? (o as Record<string, unknown>)[key] : undefined);
  // A VLM (Qwen2.5-VL, Gemma 3, Mistral 3 …) says its language model's limits in text_config.
  const num = (key: string): number | undefined => {
    for (const v of [at(config, key), at(at(config, 'text_config'), key)]) if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return v;
    return undefined;
  };
  const contextLength = num('max_position_embeddings');
  const vocabSize = num('vocab_size');
  return { ...(contextLength === undefined ? {} : { contextLength }), ...(vocabSize === undefined ? {} : { vocabSize }) };
}

/** Says what a model without tokenizer.json can be given instead. */
export async function loadTokenizerFor(modelDir: string, flag: string, offerRandomIds = true): ReturnType<typeof loadModelTokenizer> {
  try {
    return await loadModelTokenizer(modelDir);
  } catch (e) {
    if (e instanceof CheckpointError && e.message.includes(`no ${TOKENIZER_FILE}`)) {
      throw new CheckpointError(
        `${modelDir} has no ${TOKENIZER_FILE}, so ${flag} cannot be tokenized with the model's own tokenizer: copy the model's ${TOKENIZER_FILE} ` +
          `into the folder, or pass token ids instead (--input-ids ids.safetensors holding input_ids I64 [B, T]${offerRandomIds ? ', or --tokens N for random ids' : ''})`,
      );
    }
    throw e;
  }
}

export async function readTextInput(opts: TextInputOptions): Promise<TextInput> {
  const context = opts.contextLength !== undefined && opts.contextLength > 0 ? opts.contextLength : MAX_SEQUENCE;
  const seqLen = opts.seqLen ?? Math.min(DEFAULT_TEXT_SEQ_LEN, context);
  const maxTokens = opts.maxTokens ?? DEFAULT_TEXT_MAX_TOKENS;
  checkCount('--seq-len', seqLen, MAX_SEQUENCE);
  checkCount('--max-samples', opts.maxSamples);
  checkCount('--max-tokens', maxTokens);
  const flag = opts.source.kind === 'bundled' ? 'the bundled English sample' : opts.source.kind === 'text' ? '--text' : '--dataset';
  const tokenizer = await loadTokenizerFor(opts.modelDir, flag, opts.offerRandomIds !== false);
  const { file, texts } = await documents(opts);

  const stream: number[] = [];
  for (const t of texts) if (t.trim() !== '') for (const id of tokenizer.encode(t)) stream.push(id);
  if (stream.length < 2) throw new CheckpointError(`${file} gives ${stream.length} token(s) with ${tokenizer.file}: a text needs at least 2 tokens to predict one`);
  if (opts.vocabSize !== undefined) {
    const bad = stream.find((id) => id < 0 || id >= opts.vocabSize!);
    if (bad !== undefined) throw new CheckpointError(`${tokenizer.file} gives token id ${bad}, outside the model's vocab_size ${opts.vocabSize}: is it the model's own tokenizer?`);
  }

  // Rows of seqLen within both limits; at least one row (the whole text when shorter than seqLen).
  const seq = Math.min(seqLen, stream.length, maxTokens);
  let rows = Math.max(1, Math.floor(Math.min(stream.length, maxTokens) / seq));
  if (opts.maxSamples !== undefined) rows = Math.min(rows, opts.maxSamples);
  const ids = Int32Array.from(stream.slice(0, rows * seq));
  return {
    batch: { ids, batch: rows, seq },
    description: { kind: opts.source.kind, file, tokenizer: tokenizer.file, documents: texts.length, tokensAvailable: stream.length, tokensUsed: ids.length },
  };
}
