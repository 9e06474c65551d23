// Keeping Hugging Face tokens out of everything the CLI prints. Every line for the terminal (errors,
// warnings, progress, --json) passes through `redactSecrets`, which removes the token the Hub code
// would send (HF_TOKEN, HUGGING_FACE_HUB_TOKEN or the token file, read as huggingface_hub does)
// plus anything shaped like a token, since an error may quote one the user typed or a proxy
// echoed back. The Hub layer redacts its own errors too; this is the last line of defence.

import { readTokenWithSource, type Env } from '../../io/hub/env.js';

export const REDACTED = '<redacted>';

/**
 * Hugging Face user access tokens: `hf_` and 34 letters today. Requiring ≥ 30 characters keeps
 * ordinary names (`hf_cache`, `hf_hub_download`) intact.
 */
const TOKEN_SHAPED = /\bhf_[A-Za-z0-9]{30,}/g;

/** Literal secrets shorter than this are not redacted: replacing every "abc" would garble output. */
const MIN_SECRET_LENGTH = 8;

const extraSecrets = new Set<string>();

/** A secret from elsewhere (a `--token` flag) to redact for the rest of the process. */
export function addSecret(secret: string | undefined): void {
  if (secret !== undefined && secret.trim().length >= MIN_SECRET_LENGTH) extraSecrets.add(secret.trim());
}

/** Token file contents by the env settings that locate the file: progress lines must not re-read it. */
const tokenFileCache = new Map<string, string | undefined>();

function tokenFromFile(env: Env): string | undefined {
  const key = JSON.stringify([env['HF_TOKEN_PATH'], env['HF_HOME'], env['XDG_CACHE_HOME'], env['HOME']]);
  if (!tokenFileCache.has(key)) {
    // Without the env tokens, readTokenWithSource reads the file: both are secrets when both exist.
    tokenFileCache.set(key, readTokenWithSource({ ...env, HF_TOKEN: undefined, HUGGING_FACE_HUB_TOKEN: undefined })?.token);
  }
  return tokenFileCache.get(key);
}

/** The literal secrets known in `env`: the env tokens, the token file's, and any from addSecret. */
export function knownSecrets(env: Env = process.env): string[] {
  const secrets = new Set(extraSecrets);
  for (const v of [env['HF_TOKEN'], env['HUGGING_FACE_HUB_TOKEN'], tokenFromFile(env)]) {
    const t = v?.trim();
    if (t && t.length >= MIN_SECRET_LENGTH) secrets.add(t);
  }
  return [...secrets];
}

/** `text` with every known secret and every token-shaped string replaced by `<redacted>`. */
export function redactSecrets(text: string, secrets: readonly string[] = knownSecrets()): string {
  let out = text;
  // Longest first, so a secret that contains another is removed whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(s).join(REDACTED);
  return out.replace(TOKEN_SHAPED, REDACTED);
}
