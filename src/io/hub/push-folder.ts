// `--push-to org/name`: uploads a converted folder as one commit, with a generated model card as
// its README.md (the folder's README is the source model's card, copied by convert; the card
// keeps its license). Built on @huggingface/hub: `createRepo` (a 409 means the repo exists,
// which is fine, as Python's `exist_ok=True`) and `commitIter` (preupload, LFS batch + PUT or
// multipart, or Xet when the Hub offers it, then the commit), whose progress events are passed on.

import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { commitIter, createRepo, HubApiError, listFiles, type CommitOperation } from '@huggingface/hub';
import { chooseToken, type Env, hubEndpoint } from './env.js';
import { HubError } from './errors.js';
import type { PushEvent } from './events.js';
import { createHubFetch } from './hub-fetch.js';
import { type ErrorContext, LOGIN_HINT, toHubError } from './map-error.js';
import { type ModelCardInput, readModelCardData, renderModelCard } from './model-card.js';
import { assertRepoId } from './repo-id.js';
import { fp8qVersion } from './version.js';

/** How deep a converted folder may nest (it is flat; a guard against uploading a tree by mistake). */
const MAX_FOLDER_DEPTH = 4;

export interface PushOptions {
  card: ModelCardInput;
  /** Create the repo private (an existing repo keeps its visibility). */
  private?: boolean;
  hubUrl?: string;
  /** Default `$HF_TOKEN` or the token file; a token with write access is required. */
  token?: string | false;
  /** Branch to commit to; default "main". */
  branch?: string;
  commitTitle?: string;
  onProgress?: (e: PushEvent) => void;
  env?: Env;
  signal?: AbortSignal;
  /** Connect/answer and idle timeout of each request, ms (hub-fetch.ts); default none. */
  timeoutMs?: number;
  /** Push over a repo that already holds a model (--force); without it such a repo is refused. */
  replace?: boolean;
}

export interface PushResult {
  repoId: string;
  url: string;
  commit: string;
  created: boolean;
  /** Paths uploaded, README.md (the card) included. */
  files: string[];
}

/** Regular files under `dir`, relative with `/`; dot-files and dot-folders (`.cache/`) left out. */
async function listFolder(dir: string, prefix = '', depth = 0): Promise<string[]> {
  if (depth > MAX_FOLDER_DEPTH) {
    throw new HubError('HUB_PUSH', `${dir} nests folders deeper than ${MAX_FOLDER_DEPTH}: push the converted model folder itself`);
  }
  const out: string[] = [];
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    const s = await stat(join(dir, rel));
    if (s.isDirectory()) out.push(...(await listFolder(dir, rel, depth + 1)));
    else if (s.isFile()) out.push(rel);
  }
  return out.sort();
}

/** A repo's files that make it "a model" a push would replace. */
function modelFiles(paths: readonly string[]): string[] {
  return paths.filter((p) => p === 'config.json' || p.endsWith('.safetensors') || p.endsWith('.safetensors.index.json'));
}

/**
 * Refuses (HUB_REPO_NOT_EMPTY) a repo that already holds a model, unless `replace`: a push is a
 * new commit (the Hub keeps history), but landing on someone's model by a typo in the id should
 * take --force, as replacing an output folder does. A repo that does not exist or cannot be
 * listed passes: creating it, or the push itself, says what is wrong.
 */
export async function checkPushTarget(repoId: string, opts: Pick<PushOptions, 'hubUrl' | 'token' | 'env' | 'timeoutMs' | 'replace' | 'branch'>): Promise<void> {
  if (opts.replace === true) return;
  const env = opts.env ?? process.env;
  const hubUrl = hubEndpoint(env, opts.hubUrl);
  const { token } = chooseToken(opts.token, env);
  const hubFetch = createHubFetch(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {});
  const paths: string[] = [];
  try {
    for await (const e of listFiles({
      repo: { type: 'model', name: repoId },
      revision: opts.branch ?? 'main',
      hubUrl,
      fetch: hubFetch.fetch,
      ...(token !== undefined ? { accessToken: token } : {}),
    })) {
      if (e.type === 'file') paths.push(e.path);
    }
  } catch (e) {
    if (e instanceof HubApiError && (e.statusCode === 404 || e.statusCode === 401 || e.statusCode === 403)) return;
    throw toHubError(e, { repoId, hubUrl, token, tokenSource: undefined, action: 'push', hubFetch });
  }
  const found = modelFiles(paths);
  if (found.length > 0) {
    throw new HubError(
      'HUB_REPO_NOT_EMPTY',
      `${repoId} on ${hubUrl} already holds a model (${found.slice(0, 3).join(', ')}${found.length > 3 ? ' …' : ''}): pass --force to push a new commit over it (the Hub keeps the old one in its history), or choose another --push-to repo`,
    );
  }
}

export async function pushFolder(dir: string, repoId: string, opts: PushOptions): Promise<PushResult> {
  assertRepoId(repoId, '--push-to');
  const env = opts.env ?? process.env;
  const hubUrl = hubEndpoint(env, opts.hubUrl);
  const { token, source: tokenSource } = chooseToken(opts.token, env);
  const emit = (e: PushEvent): void => opts.onProgress?.(e);
  if (token === undefined) {
    throw new HubError('HUB_AUTH', `pushing to "${repoId}" needs a token with write access: ${LOGIN_HINT}`);
  }
  const hubFetch = createHubFetch({ ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
  const errCtx: ErrorContext = { repoId, hubUrl, token, tokenSource, action: 'push', hubFetch };

  const files = (await listFolder(dir)).filter((f) => f !== 'README.md');
  if (!files.includes('config.json')) {
    throw new HubError('HUB_PUSH', `${dir} has no config.json: push the folder written by fp8q convert`);
  }
  const card = renderModelCard(await readModelCardData(dir, repoId, opts.card, hubUrl));

  let created = true;
  try {
    await createRepo({
      repo: { type: 'model', name: repoId },
      accessToken: token,
      hubUrl,
      fetch: hubFetch.fetch,
      ...(opts.private === true ? { visibility: 'private' as const } : {}),
    });
  } catch (e) {
    if (!(e instanceof HubApiError && e.statusCode === 409)) throw toHubError(e, errCtx);
    created = false;
    // It exists: the final check (it may have been created, or filled, since the check before converting).
    await checkPushTarget(repoId, { ...opts, token });
  }
  const url = `${hubUrl}/${repoId}`;
  emit({ event: 'repo', repoId, url, created });

  const operations: CommitOperation[] = [
    ...files.map((path): CommitOperation => ({ operation: 'addOrUpdate', path, content: pathToFileURL(join(dir, path)) })),
    { operation: 'addOrUpdate', path: 'README.md', content: new Blob([card], { type: 'text/markdown' }) },
  ];
  const title = opts.commitTitle ?? `Upload FP8 checkpoint of ${opts.card.source} (fp8q ${opts.card.fp8qVersion ?? fp8qVersion()})`;
  let commit: string;
  try {
    const it = commitIter({
      repo: { type: 'model', name: repoId },
      accessToken: token,
      hubUrl,
      fetch: hubFetch.fetch,
      title,
      operations,
      ...(opts.branch !== undefined ? { branch: opts.branch } : {}),
      ...(opts.signal !== undefined ? { abortSignal: opts.signal } : {}),
    });
    for (;;) {
      const r = await it.next();
      if (r.done) {
        if (r.value === undefined) throw new HubError('HUB_PUSH', `the Hub returned no commit for ${repoId}`);
        commit = r.value.commit.oid;
        break;
      }
      emit(r.value);
    }
  } catch (e) {
    throw toHubError(e, errCtx);
  }
  emit({ event: 'committed', commit, url });
  return { repoId, url, commit, created, files: [...files, 'README.md'].sort() };
}
