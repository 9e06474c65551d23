// Where the Hub is, where its cache lives and which token to send, read the way Python's
// huggingface_hub reads them (huggingface_hub/constants.py), so that both tools share one cache
// and one login. Every function takes the environment as an argument: tests pass their own.

import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export type Env = Readonly<Record<string, string | undefined>>;

export const DEFAULT_HUB_URL = 'https://huggingface.co';

/** The largest token file we read: a token is ~40 bytes; anything bigger is not a token file. */
const MAX_TOKEN_FILE_BYTES = 64 * 1024;

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value.trim() !== '' ? value : undefined;
}

function home(env: Env): string {
  return nonEmpty(env['HOME']) ?? homedir();
}

/** `$HF_HOME`, default `$XDG_CACHE_HOME/huggingface`, default `~/.cache/huggingface`. */
export function hfHome(env: Env): string {
  return nonEmpty(env['HF_HOME']) ?? join(nonEmpty(env['XDG_CACHE_HOME']) ?? join(home(env), '.cache'), 'huggingface');
}

/** `$HF_HUB_CACHE`, then the legacy `$HUGGINGFACE_HUB_CACHE`, default `$HF_HOME/hub`. */
export function hubCacheDir(env: Env): string {
  return nonEmpty(env['HF_HUB_CACHE']) ?? nonEmpty(env['HUGGINGFACE_HUB_CACHE']) ?? join(hfHome(env), 'hub');
}

/** The endpoint: an explicit `--hub-url`, then `$HF_ENDPOINT`, then huggingface.co; no trailing slash. */
export function hubEndpoint(env: Env, override?: string): string {
  const url = nonEmpty(override) ?? nonEmpty(env['HF_ENDPOINT']) ?? DEFAULT_HUB_URL;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`Hub endpoint "${url}" is not a URL: pass --hub-url https://host or set HF_ENDPOINT to one`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new TypeError(`Hub endpoint "${url}" must be http(s)`);
  }
  return url.replace(/\/+$/, '');
}

/** True when `$HF_HUB_OFFLINE` is set to a true value, as Python reads it. */
export function isOffline(env: Env): boolean {
  const v = env['HF_HUB_OFFLINE']?.trim().toLowerCase();
  return v === '1' || v === 'true' || v === 'yes' || v === 'on';
}

export interface TokenWithSource {
  token: string;
  /** `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN` or the token file's path: for messages, never the token. */
  source: string;
}

/**
 * The token, from `$HF_TOKEN` (then the legacy `$HUGGING_FACE_HUB_TOKEN`), else the file that
 * `huggingface-cli login` / `hf auth login` writes: `$HF_TOKEN_PATH`, default `$HF_HOME/token`.
 * Whitespace around it is dropped; an empty value counts as none.
 */
export function readTokenWithSource(env: Env): TokenWithSource | undefined {
  for (const name of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN']) {
    const v = env[name]?.trim();
    if (v) return { token: v, source: name };
  }
  const path = nonEmpty(env['HF_TOKEN_PATH']) ?? join(hfHome(env), 'token');
  let text: string;
  try {
    const buf = readFileSync(path);
    if (buf.length > MAX_TOKEN_FILE_BYTES) return undefined;
    text = buf.toString('utf8');
  } catch {
    return undefined;
  }
  const token = text.trim();
  return token ? { token, source: path } : undefined;
}

export function readToken(env: Env): string | undefined {
  return readTokenWithSource(env)?.token;
}

export interface TokenChoice {
  token: string | undefined;
  /** `HF_TOKEN`, the token file's path, or undefined for a token passed explicitly. */
  source: string | undefined;
}

/** The token to send: explicit, `false` for none, else from the environment / token file. */
export function chooseToken(token: string | false | undefined, env: Env): TokenChoice {
  if (token === false) return { token: undefined, source: undefined };
  if (token !== undefined && token.trim() !== '') return { token: token.trim(), source: undefined };
  const found = readTokenWithSource(env);
  return { token: found?.token, source: found?.source };
}
