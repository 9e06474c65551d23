// The output folder's lifecycle: refuse dangerous destinations, write into a temporary sibling,
// and make the result visible by one rename only when everything is on disk. A crash, an error or
// Ctrl-C leaves either the old state or the whole new checkpoint, never half of one.

import { mkdir, open, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CheckpointError } from './errors.js';
import { formatBytes } from './sizes.js';

/**
 * The absolute path with symbolic links resolved as far as the path exists (the output folder
 * usually does not yet), so that `-o link-to-input` is seen for what it is.
 */
async function realPathOfPrefix(path: string): Promise<string> {
  const abs = resolve(path);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : join(await realPathOfPrefix(parent), basename(abs));
  }
}

export async function checkOutputDestination(input: string, output: string, force: boolean): Promise<void> {
  const inAbs = await realPathOfPrefix(input);
  const outAbs = await realPathOfPrefix(output);
  if (inAbs === outAbs) throw new CheckpointError(`output folder ${output} is the input folder: choose another -o folder (fp8q never modifies its input)`);
  const rel = relative(inAbs, outAbs);
  if (rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)) {
    throw new CheckpointError(`output folder ${output} is inside the input folder ${input}: choose a folder outside it`);
  }
  const relBack = relative(outAbs, inAbs);
  if (!relBack.startsWith('..') && !isAbsolute(relBack)) {
    throw new CheckpointError(`output folder ${output} contains the input folder ${input}: --force there would delete the input`);
  }
  let entries: string[];
  try {
    const s = await stat(outAbs);
    if (!s.isDirectory()) throw new CheckpointError(`output ${output} exists and is not a folder`);
    entries = await readdir(outAbs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (entries.length > 0 && !force) {
    throw new CheckpointError(`output folder ${output} is not empty: pass --force to replace it, or choose another -o folder`);
  }
}

export class StagingFolder {
  private committed = false;

  private constructor(
    readonly finalPath: string,
    readonly path: string,
  ) {}

  /** A fresh temporary folder beside `finalPath` (same filesystem, so the final rename is atomic). */
  static async create(finalPath: string): Promise<StagingFolder> {
    const abs = resolve(finalPath);
    await mkdir(dirname(abs), { recursive: true });
    const tmp = join(dirname(abs), `.${basename(abs)}.fp8q-tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    await mkdir(tmp);
    const staging = new StagingFolder(abs, tmp);
    activeStaging.add(staging);
    return staging;
  }

  /**
   * fsync every file and folder in it (data, index, config, copied files), then swap it into
   * place (replacing an existing output, as --force allows). Until the rename, the output path
   * holds the old state; after it, the whole new checkpoint is on disk.
   */
  async commit(): Promise<void> {
    await fsyncTree(this.path);
    let backup: string | undefined;
    try {
      await rename(this.path, this.finalPath);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EISDIR' && code !== 'ENOTDIR') throw e;
      backup = `${this.path}-old`;
      await rename(this.finalPath, backup);
      try {
        await rename(this.path, this.finalPath);
      } catch (e2) {
        await rename(backup, this.finalPath); // put the old output back rather than lose both
        throw e2;
      }
    }
    this.committed = true;
    activeStaging.delete(this);
    await fsyncDir(dirname(this.finalPath));
    if (backup) await rm(backup, { recursive: true, force: true });
  }

  async discard(): Promise<void> {
    if (this.committed) return;
    activeStaging.delete(this);
    await rm(this.path, { recursive: true, force: true });
  }
}

/** Staging folders of this process, removed on SIGINT/SIGTERM by the CLI's handler. */
export const activeStaging = new Set<StagingFolder>();

export function discardAllStagingSync(rmSync: (p: string, o: { recursive: boolean; force: boolean }) => void): void {
  for (const s of activeStaging) rmSync(s.path, { recursive: true, force: true });
  activeStaging.clear();
}

/** fsync every file under `dir`, then every folder (children before parents, so names are durable). */
export async function fsyncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await fsyncTree(path);
    else if (entry.isFile()) await fsyncDir(path);
  }
  await fsyncDir(dir);
}

/** Disk-full errors as the OS reports them: no space, quota exceeded, file too large. */
const DISK_FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/**
 * An error raised while writing `output`, in words for the user. Disk-full becomes one line that
 * says where, how much the output needs and that the partial output is gone (the caller has
 * discarded the staging folder before rethrowing); anything else passes through unchanged.
 */
export function explainWriteFailure(e: unknown, output: string, bytesNeeded: number): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !DISK_FULL_CODES.has(code)) return e;
  return new CheckpointError(
    `disk full while writing ${output} (${code}): the converted checkpoint needs about ${formatBytes(bytesNeeded)} there; ` +
      'free space or choose another -o folder (the partial output was removed)',
  );
}

export async function fsyncDir(path: string): Promise<void> {
  const h = await open(path, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}
