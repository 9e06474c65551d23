// config.json written as an edit of the source file's text: only the keys fp8q owns change
// (quantization_config on convert; quantization_config and the dtype fields on dequant); every
// other value keeps its literal, so `0.0` stays `0.0` and `10000.0` stays `10000.0`. A
// parse/serialise round trip turns those into `0` and `10000`, and transformers' typed configs
// (Mixtral's router_jitter_noise: float) refuse the int. Key order, indentation and line ends stay
// as the source has them, so a diff of the two files shows only fp8q's keys. The edits are made
// with jsonc-parser (the JSON editing library of VS Code), not a parser of our own.

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { applyEdits, modify, type FormattingOptions } from 'jsonc-parser';
import { CONFIG_FILE } from './checkpoint.js';

/** Top-level keys to set (added at the end when absent, replaced in place when present) or remove. */
export interface ConfigChanges {
  readonly set?: Readonly<Record<string, unknown>>;
  readonly remove?: readonly string[];
}

/** Indentation and line end of the source, so inserted keys look like the rest of the file. */
function formattingOf(text: string): FormattingOptions {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const indent = /\n([ \t]+)\S/.exec(text)?.[1];
  if (indent?.startsWith('\t')) return { insertSpaces: false, tabSize: 1, eol };
  return { insertSpaces: true, tabSize: indent?.length ?? 2, eol };
}

/** `source` (a JSON object's text) with `changes` applied; every other byte is kept. */
export function editConfigText(source: string, changes: ConfigChanges): string {
  const formattingOptions = formattingOf(source);
  let text = source;
  for (const key of changes.remove ?? []) text = applyEdits(text, modify(text, [key], undefined, { formattingOptions }));
  for (const [key, value] of Object.entries(changes.set ?? {})) text = applyEdits(text, modify(text, [key], value, { formattingOptions }));
  return text;
}

/**
 * Writes `dest` as the source folder's config.json edited by `changes`. Without a readable source
 * (none, or not a JSON object: the caller has already warned) it writes the set keys alone.
 */
export async function writeEditedConfig(sourceDir: string, sourceIsValid: boolean, dest: string, changes: ConfigChanges): Promise<void> {
  const source = sourceIsValid ? await readFile(join(sourceDir, CONFIG_FILE), 'utf8') : undefined;
  const text = source !== undefined ? editConfigText(source, changes) : `${JSON.stringify(changes.set ?? {}, null, 2)}\n`;
  await writeFile(dest, text);
}
