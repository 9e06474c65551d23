// The Hugging Face cache layout, shared with Python's huggingface_hub (file_download.py):
//
//   <cache>/models--org--name/
//     refs/<revision>                    the commit the revision resolved to (no newline)
//     blobs/<etag>                       file content, named by its ETag: sha256 for LFS/Xet
//                                        files, git blob sha1 for the rest
//     blobs/<etag>.incomplete            a partial download, continued with a Range request
//     snapshots/<commit>/<path>          relative symlink -> ../../blobs/<etag>
//
// A file is present when its snapshot path resolves; a blob without a link (another revision
// shares it) only needs the link.

import { lstat, mkdir, readFile, rename, rm, stat, symlink, writeFile, copyFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { repoFolderName } from './repo-id.js';

export const COMMIT_HASH = /^[0-9a-f]{40}$/;

export class RepoCache {
  readonly storage: string;

  constructor(
    cacheDir: string,
    readonly repoId: string,
  ) {
    this.storage = join(cacheDir, repoFolderName(repoId));
  }

  snapshotDir(commit: string): string {
    return join(this.storage, 'snapshots', commit);
  }

  pointerPath(commit: string, path: string): string {
    return join(this.snapshotDir(commit), path);
  }

  blobPath(etag: string): string {
    return join(this.storage, 'blobs', etag);
  }

  refPath(revision: string): string {
    return join(this.storage, 'refs', revision);
  }

  /** The commit a revision resolved to last time, or undefined. */
  async readRef(revision: string): Promise<string | undefined> {
    if (COMMIT_HASH.test(revision)) return revision;
    try {
      const text = (await readFile(this.refPath(revision), 'utf8')).trim();
      return COMMIT_HASH.test(text) ? text : undefined;
    } catch {
      return undefined;
    }
  }

  /** Records `revision -> commit`, as Python does (not for a commit hash itself). */
  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const path = this.refPath(revision);
    await mkdir(dirname(path), { recursive: true });
    let current: string | undefined;
    try {
      current = await readFile(path, 'utf8');
    } catch {
      current = undefined;
    }
    if (current !== commit) {
      // Write then rename: a reader (Python or another fp8q) never sees a half-written ref.
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, commit);
      await rename(tmp, path);
    }
  }

  /** Size of the file behind a snapshot path (the link followed), or undefined when absent. */
  async presentSize(commit: string, path: string): Promise<number | undefined> {
    try {
      const s = await stat(this.pointerPath(commit, path));
      return s.isFile() ? s.size : undefined;
    } catch {
      return undefined;
    }
  }

  async blobSize(etag: string): Promise<number | undefined> {
    try {
      const s = await stat(this.blobPath(etag));
      return s.isFile() ? s.size : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Points `snapshots/<commit>/<path>` at `blobs/<etag>` with a relative link (the cache folder
   * can then be moved); copies where links are not allowed, as Python does.
   */
  async link(commit: string, path: string, etag: string): Promise<void> {
    const pointer = this.pointerPath(commit, path);
    const blob = this.blobPath(etag);
    await mkdir(dirname(pointer), { recursive: true });
    try {
      await lstat(pointer);
      await rm(pointer, { force: true });
    } catch {
      // nothing there
    }
    try {
      await symlink(relative(dirname(pointer), blob), pointer);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
      await copyFile(blob, pointer);
    }
  }
}
