// One file from the Hub into `blobs/<etag>`, resumable. @huggingface/hub's
// `downloadFileToCacheDir` writes the same layout but restarts from zero (it truncates
// `<blob>.incomplete`), logs with console.debug (on stdout, which would corrupt `--json`) and
// reports no progress, so this file does that step itself, still with the library's pieces:
// `downloadFile` resolves the file (the `resolve` URL, its redirect, size, Xet or plain) and
// returns a Blob whose `slice(offset)` reads the rest with a Range request, which is how a
// partial `.incomplete` blob is continued, as Python does.
//
// The bytes are checked against the Hub's own hash before the blob gets its final name: sha256
// for LFS/Xet files (their ETag), git's blob sha1 for the rest. A resumed file is hashed from
// its first byte (the partial part is read back), so a bad resume can never become a blob.

import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { downloadFile } from '@huggingface/hub';
import { errorText, HubError } from './errors.js';
import { isTimeoutText, RANGE_IGNORED, RangeIgnoredError } from './hub-fetch.js';
import type { RepoFile } from './select-files.js';

export interface BlobDownload {
  repoId: string;
  commit: string;
  file: RepoFile;
  blobPath: string;
  hubUrl: string;
  accessToken: string | undefined;
  fetch: typeof fetch;
  /** Extra attempts after a failed transfer, each resuming from what is on disk. */
  retries: number;
  retryDelayMs: number;
  signal?: AbortSignal;
  onStart: (resumeFrom: number) => void;
  onBytes: (bytes: number) => void;
  onRetry: (attempt: number, bytes: number, reason: string) => void;
  /** Maps a library error to a HubError (auth, not found, ...). */
  mapError: (e: unknown) => HubError;
  isRetryable: (e: unknown) => boolean;
}

interface Verifier {
  hash: Hash;
  expected: string;
  algo: 'sha256' | 'git-sha1';
}

function verifier(file: RepoFile): Verifier | undefined {
  if (file.lfsOid !== undefined) return { hash: createHash('sha256'), expected: file.lfsOid, algo: 'sha256' };
  if (file.oid !== undefined) {
    const hash = createHash('sha1');
    hash.update(`blob ${file.size}\0`);
    return { hash, expected: file.oid, algo: 'git-sha1' };
  }
  return undefined;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function hashPrefix(path: string, bytes: number, hash: Hash): Promise<void> {
  if (bytes === 0) return;
  const stream = createReadStream(path, { start: 0, end: bytes - 1 });
  for await (const chunk of stream) hash.update(chunk as Buffer);
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function isRangeIgnored(e: unknown): boolean {
  return e instanceof RangeIgnoredError || e === RANGE_IGNORED || (e instanceof Error && e.message === RANGE_IGNORED);
}

/** Streams the file from `have` to its end, appending to `incomplete`. Returns the bytes on disk. */
async function transfer(p: BlobDownload, incomplete: string, have: number, v: Verifier | undefined): Promise<number> {
  const blob = await downloadFile({
    repo: { type: 'model', name: p.repoId },
    path: p.file.path,
    revision: p.commit,
    hubUrl: p.hubUrl,
    fetch: p.fetch,
    ...(p.accessToken !== undefined ? { accessToken: p.accessToken } : {}),
  });
  if (blob === null) {
    throw new HubError('HUB_FILE_NOT_FOUND', `"${p.file.path}" is listed in ${p.repoId} at ${p.commit} but the Hub has no such file: run again`, 404);
  }
  if (blob.size !== p.file.size) {
    throw new HubError('HUB_INTEGRITY', `the Hub serves ${blob.size} bytes for "${p.file.path}" of ${p.repoId} but lists ${p.file.size}: run again later`);
  }
  p.onStart(have);
  const fh = await open(incomplete, 'a');
  try {
    const reader = blob.slice(have).stream().getReader();
    // An abort does not always reach a pending read through the library's stream (it pipes the
    // response body into a TransformStream): cancel the reader ourselves, then report the abort.
    const onAbort = (): void => void reader.cancel(p.signal?.reason).catch(() => undefined);
    p.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        const { done, value } = await reader.read();
        p.signal?.throwIfAborted();
        if (done) break;
        if (have + value.byteLength > p.file.size) {
          throw new HubError('HUB_INTEGRITY', `the Hub sent more than the ${p.file.size} bytes of "${p.file.path}"`);
        }
        await fh.write(value);
        v?.hash.update(value);
        have += value.byteLength;
        p.onBytes(have);
      }
    } finally {
      p.signal?.removeEventListener('abort', onAbort);
      reader.releaseLock();
    }
  } finally {
    await fh.close();
  }
  if (have !== p.file.size) {
    throw new HubError('HUB_NETWORK', `the transfer of "${p.file.path}" ended after ${have} of ${p.file.size} bytes`);
  }
  return have;
}

/** Downloads `p.file` into `p.blobPath` (via `.incomplete`), resuming and verifying. */
export async function downloadBlob(p: BlobDownload): Promise<void> {
  const incomplete = `${p.blobPath}.incomplete`;
  let have = await sizeOf(incomplete);
  if (have > p.file.size) {
    await rm(incomplete, { force: true });
    have = 0;
  }
  let v = verifier(p.file);
  if (v !== undefined) await hashPrefix(incomplete, have, v.hash);

  for (let attempt = 0; ; attempt++) {
    try {
      if (have < p.file.size || p.file.size === 0) {
        if (p.file.size === 0) {
          await (await open(incomplete, 'a')).close();
          p.onStart(0);
        } else {
          have = await transfer(p, incomplete, have, v);
        }
      }
      break;
    } catch (e) {
      have = await sizeOf(incomplete);
      const rangeIgnored = isRangeIgnored(e);
      if (rangeIgnored) {
        // Cannot resume against this server: start over (counts as an attempt).
        await rm(incomplete, { force: true });
        have = 0;
      } else if (!p.isRetryable(e)) {
        throw e instanceof HubError ? e : p.mapError(e);
      }
      const reason = rangeIgnored ? RANGE_IGNORED : errorText(e, p.accessToken);
      if (attempt >= p.retries || p.signal?.aborted) {
        throw new HubError(
          isTimeoutText(reason) ? 'HUB_TIMEOUT' : 'HUB_NETWORK',
          `download of "${p.file.path}" from ${p.repoId} stopped after ${have} of ${p.file.size} bytes (${reason}): ` + `run the same command again to resume from ${incomplete}`,
        );
      }
      p.onRetry(attempt + 1, have, reason);
      await delay(p.retryDelayMs * (attempt + 1), p.signal);
      // Rebuild the hash from the bytes on disk: a failed write may have left bytes never hashed.
      v = verifier(p.file);
      if (v !== undefined) await hashPrefix(incomplete, have, v.hash);
    }
  }

  if (v !== undefined) {
    const actual = v.hash.digest('hex');
    if (actual !== v.expected) {
      await rm(incomplete, { force: true });
      throw new HubError(
        'HUB_INTEGRITY',
        `"${p.file.path}" from ${p.repoId} does not match the Hub's ${v.algo} (${v.expected}, got ${actual}); ` + `the partial file was deleted: run again to download it afresh`,
      );
    }
  }
  await rename(incomplete, p.blobPath);
}
