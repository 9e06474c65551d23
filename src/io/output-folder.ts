// The output folder's lifecycle: refuse dangerous destinations, write into a temporary sibling,
// and make the result visible by one rename only when everything is on disk. A crash, an error or
// Ctrl-C leaves either the old state or the whole new checkpoint, never half of one.

import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CheckpointError } from './errors.js';

export async function checkOutputDestination(input: string, output: string, force: boolean): Promise<void> {
  const inAbs = resolve(input);
  const outAbs = resolve(output);
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

  /** fsync the folder, then swap it into place (replacing an existing output, as --force allows). */
  async commit(): Promise<void> {
    await fsyncDir(this.path);
    let backup: string | undefined;
    try {
      await rename(this.path, this.finalPath);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EISDIR') throw e;
      backup = `${this.path}-old`;
      await rename(this.finalPath, backup);
      await rename(this.path, this.finalPath);
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

export async function fsyncDir(path: string): Promise<void> {
  const h = await open(path, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}
