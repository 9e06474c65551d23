// Telling a Hub repo id (`org/name`) from a local folder. The rules are Python huggingface_hub's
// `validate_repo_id`: word characters, `-` and `.`, at most 96 per part, no `--` or `..`, starting
// and ending with a word character, no `.git` suffix. Only the two-part form is accepted: a bare
// name (`gpt2`) reads as a folder, which is what a user typing one in a shell most likely means.

import { existsSync } from 'node:fs';

const PART = '[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?';
const REPO_ID = new RegExp(`^${PART}/${PART}$`);

/** True when `id` is a well-formed `org/name` repo id (whether or not it exists). */
export function isValidRepoId(id: string): boolean {
  return REPO_ID.test(id) && !id.includes('--') && !id.includes('..') && !id.endsWith('.git');
}

/**
 * True when `source` should be fetched from the Hub: it is a well-formed `org/name` and no file or
 * folder of that name exists (a local path that exists always wins, as in transformers).
 */
export function isHubRepoId(source: string, exists: (path: string) => boolean = existsSync): boolean {
  return isValidRepoId(source) && !exists(source);
}

/** Throws a TypeError naming the rule when `id` is not a valid `org/name`. */
export function assertRepoId(id: string, what = 'repo id'): void {
  if (!isValidRepoId(id)) {
    throw new TypeError(`${what} "${id}" is not a Hub repo id: expected org/name (letters, digits, "_", "-", "."; no "--" or "..")`);
  }
}

/** The cache folder name of a model repo: `models--org--name`, as Python names it. */
export function repoFolderName(repoId: string): string {
  return `models--${repoId.split('/').join('--')}`;
}
