// Comparing two models' continuations of one prompt: where they stop agreeing, and how likely the
// quantized model finds each token the original chose. Also the text layout of a comparison for the
// terminal: two columns side by side when the terminal is wide enough, else one after the other,
// with the first token where they differ marked in both.

import type { StopReason } from './generate-tokens.js';

export interface Continuation {
  readonly ids: readonly number[];
  /** Text per generated token (TextStream.pieces). */
  readonly pieces: readonly string[];
  readonly logprobs: readonly number[];
  readonly stop: StopReason;
}

/** Length of the common prefix of two id sequences. */
export function identicalPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** Index of the first generated token that differs; undefined when both are the same sequence. */
export function firstDivergence(a: readonly number[], b: readonly number[]): number | undefined {
  const p = identicalPrefix(a, b);
  return p === a.length && p === b.length ? undefined : p;
}

export interface PrefixSummary {
  readonly prompts: number;
  readonly mean: number;
  readonly min: number;
}

export function summarizePrefixes(prefixes: readonly number[]): PrefixSummary {
  if (prefixes.length === 0) return { prompts: 0, mean: 0, min: 0 };
  return { prompts: prefixes.length, mean: prefixes.reduce((a, b) => a + b, 0) / prefixes.length, min: Math.min(...prefixes) };
}

export const DIVERGENCE_OPEN = '[[';
export const DIVERGENCE_CLOSE = ']]';
/** Narrowest column of the side-by-side layout. */
export const MIN_COLUMN = 24;
const SEPARATOR = ' │ ';

/** The continuation's text with the token at `at` wrapped in the divergence marks. */
export function markedText(pieces: readonly string[], at: number | undefined): string {
  if (at === undefined || at >= pieces.length) return pieces.join('');
  return pieces.slice(0, at).join('') + DIVERGENCE_OPEN + pieces[at] + DIVERGENCE_CLOSE + pieces.slice(at + 1).join('');
}

/** Lines of at most `width` characters (code points), broken at spaces where possible; width 0: unwrapped. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const paragraph of text.split('\n')) {
    let rest = [...paragraph];
    if (width <= 0) {
      lines.push(paragraph);
      continue;
    }
    while (rest.length > width) {
      let cut = rest.lastIndexOf(' ', width);
      if (cut <= 0) cut = width;
      lines.push(rest.slice(0, cut).join('').trimEnd());
      rest = rest.slice(rest[cut] === ' ' ? cut + 1 : cut);
    }
    lines.push(rest.join(''));
  }
  return lines;
}

function pad(text: string, width: number): string {
  const n = [...text].length;
  return n >= width ? text : text + ' '.repeat(width - n);
}

/** Whether a terminal `width` columns wide shows two columns (0: not a terminal). */
export function sideBySide(width: number): boolean {
  return width >= 2 * MIN_COLUMN + SEPARATOR.length;
}

/** Two titled texts side by side, or one after the other on a narrow terminal (or none: width 0). */
export function layoutColumns(left: { title: string; text: string }, right: { title: string; text: string }, width: number): string[] {
  if (!sideBySide(width)) {
    return [`${left.title}:`, ...wrap(left.text, width), '', `${right.title}:`, ...wrap(right.text, width)];
  }
  const column = Math.floor((width - SEPARATOR.length) / 2);
  const l = [left.title, '─'.repeat(Math.min(column, [...left.title].length)), ...wrap(left.text, column)];
  const r = [right.title, '─'.repeat(Math.min(column, [...right.title].length)), ...wrap(right.text, column)];
  const rows = Math.max(l.length, r.length);
  return Array.from({ length: rows }, (_, i) => (pad(l[i] ?? '', column) + SEPARATOR + (r[i] ?? '')).trimEnd());
}

/** A token's text for a table cell: JSON-quoted, so spaces and newlines show. */
export function tokenCell(piece: string | undefined): string {
  return piece === undefined ? '' : JSON.stringify(piece);
}

export interface StepRow {
  readonly step: number;
  readonly original: string;
  readonly originalLogprob: number;
  readonly quantizedLogprobOfOriginal: number;
  readonly quantized: string;
  readonly same: boolean;
}

/** Per-step table: the original's token, its log p under both models, and the quantized model's own token. */
export function stepTable(rows: readonly StepRow[]): string[] {
  const header = ['step', 'original', 'log p orig', 'log p quant', 'quantized'];
  const cells = rows.map((r) => [String(r.step), r.original, r.originalLogprob.toFixed(3), r.quantizedLogprobOfOriginal.toFixed(3), r.same ? '=' : r.quantized]);
  const widths = header.map((h, i) => Math.max([...h].length, ...cells.map((c) => [...c[i]!].length)));
  const line = (c: readonly string[]): string =>
    c
      .map((x, i) => (i === 0 || i === 2 || i === 3 ? ' '.repeat(widths[i]! - [...x].length) + x : pad(x, widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...cells.map(line)];
}
