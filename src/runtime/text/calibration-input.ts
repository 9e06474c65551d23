// Calibration input for static activation scales: the token sequences the original model runs
// on, read from one of three kinds of file —
//   - text (any other extension): one sample per non-empty line, tokenized with the model's own
//     tokenizer.json;
//   - JSONL (`.jsonl`): one `{"text": "..."}` record per line, tokenized the same way;
//   - token ids (`.safetensors`): `input_ids` I64/I32 `[B, T]`, one sample per row (the layout of
//     `fp8q logits --input-ids` and the reference models' logits files).
// `split: 'sample'` keeps each line/record/row as one sequence cut to `seqLen` tokens; `'chunk'`
// concatenates them (a whole document) and cuts the stream into `seqLen`-token pieces. At most
// `samples` sequences are used, in file order, so a run is reproducible from its flags.

import { readFile, stat } from 'node:fs/promises';
import { CheckpointError, oneLine } from '../../io/errors.js';
import { MAX_SEQUENCE } from '../models/sequence-limit.js';
import { readInputIds } from '../models/token-ids.js';
import { loadModelTokenizer } from './model-tokenizer.js';

export const DEFAULT_CALIBRATION_SAMPLES = 128;
export const DEFAULT_CALIBRATION_SEQ_LEN = 512;

/** Largest text/JSONL file read: calibration sets are thousands of samples, not gigabytes. */
export const MAX_CALIBRATION_TEXT_BYTES = 512 * 1024 * 1024;

export type CalibrationSplit = 'sample' | 'chunk';
export type CalibrationFileKind = 'text' | 'jsonl' | 'token-ids';

export interface CalibrationInputOptions {
  readonly file: string;
  /** The model folder: its tokenizer.json tokenizes text and JSONL. */
  readonly modelDir: string;
  readonly samples?: number;
  readonly seqLen?: number;
  readonly split?: CalibrationSplit;
  /** Token ids must be below this (config.json's vocab_size). */
  readonly vocabSize?: number;
}

export interface CalibrationSet {
  readonly file: string;
  readonly kind: CalibrationFileKind;
  readonly split: CalibrationSplit;
  readonly seqLen: number;
  readonly sequences: readonly Int32Array[];
  readonly tokens: number;
  /** Sequences cut to seqLen (split 'sample'). */
  readonly truncated: number;
  /** Sequences of the file left out by the samples limit. */
  readonly unused: number;
}

export function calibrationFileKind(file: string): CalibrationFileKind {
  const lower = file.toLowerCase();
  if (lower.endsWith('.safetensors')) return 'token-ids';
  if (lower.endsWith('.jsonl')) return 'jsonl';
  return 'text';
}

function checkCount(what: string, n: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new CheckpointError(`${what} must be an integer from 1 to ${max}, got ${n}`);
}

/** A text file read whole, refused past MAX_CALIBRATION_TEXT_BYTES; `kind` says what it is for in messages. */
export async function readWholeText(file: string, kind: 'calibration' | 'text'): Promise<string> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CheckpointError(`cannot read ${kind} file ${file} (${code ?? (e as Error).message})`, code === 'ENOENT' ? 'E_INPUT_MISSING' : 'E_INPUT_MALFORMED');
  }
  // readFile's EISDIR carries no path, and would be reported as "the output is a folder".
  if (info.isDirectory()) throw new CheckpointError(`cannot read ${kind} file ${file}: it is a folder; give a file`, 'E_INPUT_MALFORMED');
  const size = info.size;
  if (size > MAX_CALIBRATION_TEXT_BYTES) {
    const what = kind === 'calibration' ? 'calibration text' : 'text';
    throw new CheckpointError(`${file} is ${size} bytes; ${what} is read whole, up to ${MAX_CALIBRATION_TEXT_BYTES} bytes${kind === 'calibration' ? ': pass fewer samples' : ''}`);
  }
  return readFile(file, 'utf8');
}

function lines(text: string): string[] {
  return text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

/** The texts of a JSONL file, one per `{"text": ...}` record; blank lines are skipped. */
export function jsonlTexts(file: string, content: string): string[] {
  const texts: string[] = [];
  lines(content).forEach((line, i) => {
    if (line.trim() === '') return;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (e) {
      throw new CheckpointError(`${file}:${i + 1}: not a JSON record (${(e as Error).message}); each line must be {"text": "..."}`);
    }
    const text = typeof record === 'object' && record !== null && !Array.isArray(record) ? (record as Record<string, unknown>)['text'] : undefined;
    if (typeof text !== 'string') {
      throw new CheckpointError(`${file}:${i + 1}: the record has no string "text" field (${oneLine(line.slice(0, 80))}); each line must be {"text": "..."}`);
    }
    texts.push(text);
  });
  return texts;
}

/** Rows of `[B, T]` ids, each as its own array. */
async function tokenIdRows(file: string): Promise<Int32Array[]> {
  const batch = await readInputIds(file);
  return Array.from({ length: batch.batch }, (_, b) => batch.ids.slice(b * batch.seq, (b + 1) * batch.seq));
}

export async function readCalibrationSet(opts: CalibrationInputOptions): Promise<CalibrationSet> {
  const samples = opts.samples ?? DEFAULT_CALIBRATION_SAMPLES;
  const seqLen = opts.seqLen ?? DEFAULT_CALIBRATION_SEQ_LEN;
  const split = opts.split ?? 'sample';
  checkCount('--calibration-samples', samples);
  checkCount('--calibration-seq-len', seqLen, MAX_SEQUENCE);
  const kind = calibrationFileKind(opts.file);

  // Sources in file order; text is tokenized lazily so a samples limit tokenizes only what it uses.
  let sources: (() => Int32Array)[];
  if (kind === 'token-ids') {
    sources = (await tokenIdRows(opts.file)).map((row) => () => row);
  } else {
    const content = await readWholeText(opts.file, 'calibration');
    const texts = kind === 'jsonl' ? jsonlTexts(opts.file, content) : lines(content).filter((l) => l.trim() !== '');
    const tokenizer = await loadModelTokenizer(opts.modelDir);
    sources = texts.map((t) => () => Int32Array.from(tokenizer.encode(t)));
  }

  const sequences: Int32Array[] = [];
  let truncated = 0;
  let used = 0;
  if (split === 'sample') {
    for (const source of sources) {
      if (sequences.length === samples) break;
      used++;
      const ids = source();
      if (ids.length === 0) continue;
      if (ids.length > seqLen) truncated++;
      sequences.push(ids.length > seqLen ? ids.slice(0, seqLen) : ids);
    }
  } else {
    // One stream, cut in seqLen pieces; a last piece shorter than seqLen is kept (it is real text).
    let pending: number[] = [];
    for (const source of sources) {
      if (sequences.length === samples) break;
      used++;
      for (const id of source()) {
        pending.push(id);
        if (pending.length === seqLen) {
          sequences.push(Int32Array.from(pending));
          pending = [];
          if (sequences.length === samples) break;
        }
      }
    }
    if (pending.length > 0 && sequences.length < samples) sequences.push(Int32Array.from(pending));
  }
  if (sequences.length === 0) throw new CheckpointError(`${opts.file} holds no calibration tokens (${kind}): it is empty or has only blank lines`);

  if (opts.vocabSize !== undefined) {
    sequences.forEach((seq, s) => {
      const bad = seq.findIndex((id) => id < 0 || id >= opts.vocabSize!);
      if (bad >= 0) {
        throw new CheckpointError(
          `${opts.file}: calibration sample ${s} has token id ${seq[bad]} at position ${bad}, outside the model's vocabulary (vocab_size ${opts.vocabSize}): ` +
            'was it tokenized for another model?',
        );
      }
    });
  }
  return {
    file: opts.file,
    kind,
    split,
    seqLen,
    sequences,
    tokens: sequences.reduce((n, s) => n + s.length, 0),
    truncated,
    unused: sources.length - used,
  };
}
