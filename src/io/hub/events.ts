// Progress as data. The library never writes to the terminal: it calls `onProgress` with these
// events and the CLI renders them (a bar on a TTY, lines otherwise, JSON under --json).

import type { FileSelection } from './select-files.js';

export interface PlannedFile {
  path: string;
  size: number;
  /** Already in the cache (snapshot link or blob): nothing to transfer. */
  cached: boolean;
}

export type DownloadEvent =
  /** The revision resolved to a commit (`fromCache`: offline, or the Hub was unreachable). */
  | { event: 'resolved'; repoId: string; revision: string; commit: string; fromCache: boolean }
  /**
   * Every file this conversion needs; sent once, before the weights are transferred. The
   * safetensors index, when the repo has one, is transferred first (it names the shards) and is
   * listed here as cached. fileStart / fileProgress / fileRetry / fileDone are sent for
   * transfers only: cached files appear in the plan alone.
   */
  | {
      event: 'plan';
      files: PlannedFile[];
      totalBytes: number;
      /** Bytes still to transfer (partial `.incomplete` blobs not subtracted). */
      downloadBytes: number;
      skipped: FileSelection['skipped'];
    }
  /** A transfer begins; `resumeFrom` > 0 when a partial blob is continued with a Range request. */
  | { event: 'fileStart'; path: string; size: number; resumeFrom: number }
  /** `bytes` counts the whole file, resumed part included. */
  | { event: 'fileProgress'; path: string; bytes: number; size: number }
  /** The transfer failed and is retried from `bytes` (what is on disk). */
  | { event: 'fileRetry'; path: string; attempt: number; bytes: number; reason: string }
  | { event: 'fileDone'; path: string; size: number }
  | { event: 'done'; dir: string; commit: string };

export type PushEvent =
  | { event: 'repo'; repoId: string; url: string; created: boolean }
  /** The upload phases of @huggingface/hub's commit. */
  | { event: 'phase'; phase: 'preuploading' | 'uploadingLargeFiles' | 'committing' }
  /** `progress` in [0, 1]; in Node, uploads report 0 then 1 per file (no XMLHttpRequest). */
  | { event: 'fileProgress'; path: string; progress: number; state: 'hashing' | 'uploading' | 'error' }
  | { event: 'committed'; commit: string; url: string };
