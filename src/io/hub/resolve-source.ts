// `fp8q convert <source>`: a local folder, or a Hub repo id fetched into the shared Hugging Face
// cache. Steps: resolve the revision to a commit (modelInfo) -> list the top level (listFiles) ->
// choose the files a conversion reads (select-files.ts; the index, when there is one, is fetched
// first because it names the shards) -> link what the cache already has (a Python download
// counts) -> download the rest, resumable and verified (download-blob.ts) -> return
// `snapshots/<commit>`.
//
// Offline (`HF_HUB_OFFLINE=1`), or when the Hub cannot be reached, a complete cached snapshot of
// the revision is used as is, as Python does.

import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { listFiles, modelInfo } from '@huggingface/hub';
import { COMMIT_HASH, RepoCache } from './cache-layout.js';
import { downloadBlob } from './download-blob.js';
import { chooseToken, type Env, hubCacheDir, hubEndpoint, isOffline } from './env.js';
import { HubError } from './errors.js';
import type { DownloadEvent, PlannedFile } from './events.js';
import { createHubFetch, type HubFetch } from './hub-fetch.js';
import { type ErrorContext, isRetryable, toHubError } from './map-error.js';
import { assertRepoId, isHubRepoId } from './repo-id.js';
import { type FileSelection, MAX_INDEX_BYTES, type RepoFile, SAFETENSORS_INDEX, selectFiles, shardsFromIndex } from './select-files.js';

/** Files downloaded at once: big shards saturate a link with a few streams (Python uses 8). */
export const DEFAULT_CONCURRENCY = 4;
/** Extra attempts per file after a cut connection, each resuming where the last one stopped. */
export const DEFAULT_RETRIES = 3;
export const DEFAULT_RETRY_DELAY_MS = 1000;

export interface ResolveOptions {
  /** Branch, tag or commit hash; default "main". */
  revision?: string;
  /** Endpoint; default `$HF_ENDPOINT`, then https://huggingface.co. */
  hubUrl?: string;
  /** Token; default `$HF_TOKEN` or the token file. `false`: send none. */
  token?: string | false;
  /** Hub cache; default `$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`. */
  cacheDir?: string;
  onProgress?: (e: DownloadEvent) => void;
  /** Use the cache only; default from `$HF_HUB_OFFLINE`. */
  offline?: boolean;
  /** The environment to read HF_* variables from; default `process.env`. */
  env?: Env;
  concurrency?: number;
  retries?: number;
  retryDelayMs?: number;
  signal?: AbortSignal;
  /** Connect/answer and idle timeout of each request, ms (hub-fetch.ts); default none. */
  timeoutMs?: number;
}

export interface ResolvedSource {
  /** The folder to convert: the source folder, or `snapshots/<commit>` in the cache. */
  dir: string;
  repoId?: string;
  revision?: string;
  commit?: string;
  /**
   * The files of `dir` that belong to this conversion (Hub sources only). The snapshot may hold
   * more: a Python download of the same commit may have added e.g. `pytorch_model.bin`.
   */
  files?: string[];
}

export async function resolveSource(source: string, opts: ResolveOptions = {}): Promise<ResolvedSource> {
  if (existsSync(source)) {
    const dir = resolve(source);
    if (!(await stat(dir)).isDirectory()) {
      throw new HubError('HUB_BAD_SOURCE', `${source} is a file: pass the model folder (with config.json and *.safetensors) or a Hub id org/name`);
    }
    return { dir };
  }
  if (!isHubRepoId(source)) {
    throw new HubError('HUB_BAD_SOURCE', `"${source}" is neither an existing folder nor a Hub model id (org/name, e.g. meta-llama/Llama-3.1-8B)`);
  }
  return downloadRepo(source, opts);
}

interface Ctx {
  repoId: string;
  revision: string;
  hubUrl: string;
  token: string | undefined;
  cache: RepoCache;
  hubFetch: HubFetch;
  errCtx: ErrorContext;
  emit: (e: DownloadEvent) => void;
  opts: ResolveOptions;
}

async function downloadRepo(repoId: string, opts: ResolveOptions): Promise<ResolvedSource> {
  assertRepoId(repoId);
  const env = opts.env ?? process.env;
  const revision = opts.revision ?? 'main';
  const hubUrl = hubEndpoint(env, opts.hubUrl);
  const { token, source: tokenSource } = chooseToken(opts.token, env);
  const cache = new RepoCache(opts.cacheDir ?? hubCacheDir(env), repoId);
  const emit = (e: DownloadEvent): void => opts.onProgress?.(e);
  const hubFetch = createHubFetch({ ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
  // `org/name` may have been meant as a folder: messages about a missing repo say there is none.
  const errCtx: ErrorContext = { repoId, hubUrl, token, tokenSource, revision, action: 'download', hubFetch, noLocalFolder: true };
  const ctx: Ctx = { repoId, revision, hubUrl, token, cache, hubFetch, errCtx, emit, opts };

  if (opts.offline ?? isOffline(env)) {
    return fromCache(ctx, 'offline mode, HF_HUB_OFFLINE');
  }

  let commit: string;
  let entries: RepoFile[];
  const dirs: string[] = [];
  try {
    commit = COMMIT_HASH.test(revision) ? revision : await resolveCommit(ctx);
    entries = [];
    for await (const e of listFiles({ repo: { type: 'model', name: repoId }, revision: commit, hubUrl, fetch: hubFetch.fetch, ...auth(token) })) {
      if (e.type === 'directory') {
        dirs.push(e.path);
      } else if (e.type === 'file') {
        entries.push({
          path: e.path,
          size: e.size,
          ...(e.oid !== undefined ? { oid: e.oid } : {}),
          ...(e.lfs !== undefined ? { lfsOid: e.lfs.oid } : {}),
        });
      }
    }
  } catch (e) {
    const err = toHubError(e, errCtx);
    if (err.code === 'HUB_NETWORK') {
      // The Hub is unreachable: a complete snapshot of this revision in the cache will do.
      const cached = await fromCache(ctx, err.message).catch(() => undefined);
      if (cached !== undefined) return cached;
    }
    throw err;
  }
  await cache.writeRef(revision, commit);
  emit({ event: 'resolved', repoId, revision, commit, fromCache: false });

  const selection = selectFiles(entries);
  const skipped: FileSelection['skipped'] = [...dirs.map((path) => ({ path: `${path}/`, reason: 'subfolder' as const })), ...selection.skipped];
  let weights = selection.weights;
  if (selection.index !== undefined) {
    await fetchFiles(ctx, commit, [selection.index]);
    const indexPath = cache.pointerPath(commit, SAFETENSORS_INDEX);
    if ((await stat(indexPath)).size > MAX_INDEX_BYTES) {
      throw new HubError('HUB_INTEGRITY', `${SAFETENSORS_INDEX} of ${repoId} is over ${MAX_INDEX_BYTES} bytes: not an index fp8q reads`);
    }
    weights = shardsFromIndex(await readFile(indexPath, 'utf8'), entries);
    const chosen = new Set(weights.map((w) => w.path));
    for (const e of entries) {
      if (e.path.endsWith('.safetensors') && !e.path.includes('/') && !chosen.has(e.path)) {
        skipped.push({ path: e.path, reason: 'not-needed' });
      }
    }
  }
  const files = [...selection.support, ...weights];
  await fetchFiles(ctx, commit, files, skipped);
  const dir = cache.snapshotDir(commit);
  emit({ event: 'done', dir, commit });
  return { dir, repoId, revision, commit, files: files.map((f) => f.path).sort() };
}

function auth(token: string | undefined): { accessToken?: string } {
  return token !== undefined ? { accessToken: token } : {};
}

async function resolveCommit(ctx: Ctx): Promise<string> {
  const info = await modelInfo({
    name: ctx.repoId,
    revision: ctx.revision,
    additionalFields: ['sha'],
    hubUrl: ctx.hubUrl,
    fetch: ctx.hubFetch.fetch,
    ...auth(ctx.token),
  });
  if (typeof info.sha !== 'string' || !COMMIT_HASH.test(info.sha)) {
    throw new HubError('HUB_HTTP', `the Hub returned no commit for revision "${ctx.revision}" of ${ctx.repoId}`);
  }
  return info.sha;
}

/** The cache name of a file: the Hub's ETag (sha256 for LFS/Xet, git blob id otherwise). */
function etagOf(file: RepoFile, repoId: string): string {
  const etag = file.lfsOid ?? file.oid;
  if (etag === undefined || !/^[0-9a-f]{40,64}$/.test(etag)) {
    throw new HubError('HUB_HTTP', `the Hub listing of ${repoId} gives no usable id for "${file.path}"`);
  }
  return etag;
}

/**
 * Links or downloads `files` into `snapshots/<commit>`. With `skipped` (the main call), sends
 * the plan first; without (the index ahead of the plan), only file events.
 */
async function fetchFiles(ctx: Ctx, commit: string, files: RepoFile[], skipped?: FileSelection['skipped']): Promise<void> {
  const { cache, repoId, emit } = ctx;
  const todo: RepoFile[] = [];
  const planned: PlannedFile[] = [];
  for (const file of files) {
    const etag = etagOf(file, repoId);
    let cached = (await cache.presentSize(commit, file.path)) === file.size;
    if (!cached && (await cache.blobSize(etag)) === file.size) {
      // The blob is there (another revision, or a Python download): only the link is missing.
      await cache.link(commit, file.path, etag);
      cached = true;
    }
    planned.push({ path: file.path, size: file.size, cached });
    if (!cached) todo.push(file);
  }
  if (skipped !== undefined) {
    const totalBytes = planned.reduce((a, f) => a + f.size, 0);
    const downloadBytes = planned.filter((f) => !f.cached).reduce((a, f) => a + f.size, 0);
    emit({ event: 'plan', files: planned, totalBytes, downloadBytes, skipped });
  }

  // Largest first: the long transfers start early and small files fill the gaps.
  todo.sort((a, b) => b.size - a.size);
  const controller = new AbortController();
  const signal = ctx.opts.signal ? AbortSignal.any([ctx.opts.signal, controller.signal]) : controller.signal;
  let next = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < todo.length) {
      const file = todo[next++]!;
      try {
        await fetchOne(ctx, commit, file, signal);
      } catch (e) {
        if (failure === undefined) failure = e;
        controller.abort(); // stop the other transfers; their partial blobs stay for a resume
      }
    }
  };
  const workers = Math.max(1, Math.min(ctx.opts.concurrency ?? DEFAULT_CONCURRENCY, todo.length));
  await Promise.all(Array.from({ length: workers }, worker));
  if (failure !== undefined) throw toHubError(failure, { ...ctx.errCtx });
}

async function fetchOne(ctx: Ctx, commit: string, file: RepoFile, signal: AbortSignal): Promise<void> {
  const { cache, repoId, emit } = ctx;
  const etag = etagOf(file, repoId);
  const blobPath = cache.blobPath(etag);
  const errCtx: ErrorContext = { ...ctx.errCtx, path: file.path };
  await mkdir(join(cache.storage, 'blobs'), { recursive: true });
  const hubFetch = createHubFetch({ signal, ...(ctx.opts.timeoutMs !== undefined ? { timeoutMs: ctx.opts.timeoutMs } : {}) });
  errCtx.hubFetch = hubFetch;
  await downloadBlob({
    repoId,
    commit,
    file,
    blobPath,
    hubUrl: ctx.hubUrl,
    accessToken: ctx.token,
    fetch: hubFetch.fetch,
    retries: ctx.opts.retries ?? DEFAULT_RETRIES,
    retryDelayMs: ctx.opts.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS,
    signal,
    onStart: (resumeFrom) => emit({ event: 'fileStart', path: file.path, size: file.size, resumeFrom }),
    onBytes: (bytes) => emit({ event: 'fileProgress', path: file.path, bytes, size: file.size }),
    onRetry: (attempt, bytes, reason) => emit({ event: 'fileRetry', path: file.path, attempt, bytes, reason }),
    mapError: (e) => toHubError(e, errCtx),
    isRetryable,
  });
  await cache.link(commit, file.path, etag);
  emit({ event: 'fileDone', path: file.path, size: file.size });
}

/** The cached snapshot of the revision, when it holds everything a conversion reads. */
async function fromCache(ctx: Ctx, why: string): Promise<ResolvedSource> {
  const { cache, repoId, revision } = ctx;
  const missing = (detail: string): HubError =>
    new HubError(
      'HUB_OFFLINE',
      `${repoId} (revision ${revision}) is not fully in the cache at ${cache.storage} (${detail}) and the Hub is not used (${why}): ` +
        `run once with network access (unset HF_HUB_OFFLINE) to download it`,
    );
  const commit = await cache.readRef(revision);
  if (commit === undefined) throw missing(`no refs/${revision}`);
  const dir = cache.snapshotDir(commit);
  const entries: RepoFile[] = [];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    throw missing(`no snapshots/${commit}`);
  }
  for (const name of names) {
    try {
      const s = await stat(join(dir, name));
      if (s.isFile()) entries.push({ path: name, size: s.size });
    } catch {
      // a dangling link: its blob is gone
    }
  }
  let files: RepoFile[];
  try {
    const selection = selectFiles(entries);
    files = [...selection.support, ...selection.weights];
    if (selection.index !== undefined) {
      files.push(...shardsFromIndex(await readFile(join(dir, SAFETENSORS_INDEX), 'utf8'), entries));
    }
  } catch (e) {
    throw missing(e instanceof Error ? e.message : String(e));
  }
  ctx.emit({ event: 'resolved', repoId, revision, commit, fromCache: true });
  ctx.emit({ event: 'done', dir, commit });
  return { dir, repoId, revision, commit, files: files.map((f) => f.path).sort() };
}
