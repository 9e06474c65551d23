// The output's lifecycle, the same for every command that writes: refuse dangerous destinations
// (the input, the working folder's ancestors, an occupied folder without --force, anything but a
// checkpoint with it), clear temporary outputs of killed runs, hold a lock so two runs cannot
// write one output, write into a temporary sibling, and make the result visible by one rename only
// when everything is on disk (a final check there: without --force, an output that appeared
// meanwhile is not replaced). A crash, an error or Ctrl-C leaves either the old state or the whole
// new output, never half of one. StagingFolder serves checkpoints, StagingFile single files (logits).

import { link, lstat, mkdir, open, readdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { CheckpointError } from '../io/errors.js';
import { formatBytes } from '../io/sizes.js';

/**
 * The absolute path with symbolic links resolved as far as the path exists (the output folder
 * usually does not yet), so that `-o link-to-input` is seen for what it is.
 */
export async function realPathOfPrefix(path: string): Promise<string> {
  const abs = resolve(path);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : join(await realPathOfPrefix(parent), basename(abs));
  }
}

/** What a destination check found that the user should hear about (stale temporary folders removed). */
export interface DestinationCheck {
  readonly warnings: readonly string[];
}

function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/** A folder --force may replace: a model checkpoint or fp8q's own output (config.json, an index, or safetensors at the top). */
function looksLikeCheckpoint(entries: readonly string[]): boolean {
  return entries.some((e) => e === 'config.json' || e.endsWith('.safetensors') || e.endsWith('.safetensors.index.json'));
}

/**
 * Refuses a dangerous or occupied destination before any long work: the input itself, a folder
 * inside or holding it, the working folder or one of its ancestors, a non-empty folder without
 * --force, and with --force anything but a checkpoint folder. Removes the temporary folders of
 * earlier runs on this output that were killed (their process is gone), and says so.
 */
export async function checkOutputDestination(input: string, output: string, force: boolean, opts: { dryRun?: boolean } = {}): Promise<DestinationCheck> {
  const inAbs = await realPathOfPrefix(input);
  const outAbs = await realPathOfPrefix(output);
  if (inAbs === outAbs) throw new CheckpointError(`output folder ${output} is the input folder: choose another -o folder (fp8q never modifies its input)`, 'E_OUTPUT_UNSAFE');
  if (isInside(inAbs, outAbs)) {
    throw new CheckpointError(`output folder ${output} is inside the input folder ${input}: choose a folder outside it`, 'E_OUTPUT_UNSAFE');
  }
  if (isInside(outAbs, inAbs)) {
    throw new CheckpointError(`output folder ${output} contains the input folder ${input}: --force there would delete the input`, 'E_OUTPUT_UNSAFE');
  }
  const cwd = await realPathOfPrefix(process.cwd());
  if (outAbs === cwd || isInside(outAbs, cwd)) {
    throw new CheckpointError(`output folder ${output} is the working folder or one of its ancestors (${cwd}): choose another -o folder`, 'E_OUTPUT_UNSAFE');
  }
  let entries: string[] | undefined;
  try {
    const s = await stat(outAbs);
    if (!s.isDirectory()) {
      throw new CheckpointError(`output ${output} exists and is not a folder: remove it or choose another -o folder`, force ? 'E_OUTPUT_UNSAFE' : 'E_OUTPUT_EXISTS');
    }
    entries = await readdir(outAbs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (entries !== undefined && entries.length > 0) {
    if (!force) throw new CheckpointError(`output folder ${output} is not empty: pass --force to replace it, or choose another -o folder`, 'E_OUTPUT_EXISTS');
    if (!looksLikeCheckpoint(entries)) {
      throw new CheckpointError(
        `output folder ${output} is not empty and holds no model checkpoint (no config.json or *.safetensors): --force replaces only a checkpoint folder; empty it yourself or choose another -o folder`,
        'E_OUTPUT_UNSAFE',
      );
    }
  }
  return { warnings: await removeStaleStaging(outAbs, opts.dryRun !== true) };
}

/**
 * The temporary sibling's name. The output's name is cut to MAX_STAGING_STEM bytes so the suffix
 * still fits a 255-byte file-name limit (an output name that itself fits must not fail because
 * of fp8q's suffix).
 */
const MAX_STAGING_STEM = 160;

function stagingStem(finalPath: string): string {
  const name = basename(finalPath);
  if (Buffer.byteLength(name) <= MAX_STAGING_STEM) return `.${name}.fp8q`;
  // Cut, plus a hash of the whole name: two long names sharing a prefix keep separate locks.
  let stem = name;
  while (Buffer.byteLength(stem) > MAX_STAGING_STEM - 9) stem = stem.slice(0, -1);
  return `.${stem}~${createHash('sha256').update(name).digest('hex').slice(0, 8)}.fp8q`;
}

/** `.<name>.fp8q-tmp-<pid>-<hex>` (a staging folder or file) and its `-old` backup. */
function stagingPattern(finalPath: string): RegExp {
  const stem = stagingStem(finalPath).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${stem}-tmp-(\\d+)-[0-9a-f]+(-old)?$`);
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function treeBytes(path: string): Promise<number> {
  const s = await lstat(path);
  if (!s.isDirectory()) return s.size;
  let total = 0;
  for (const e of await readdir(path)) total += await treeBytes(join(path, e)).catch(() => 0);
  return total;
}

/** Removes (or, in a dry run, names) temporary folders of earlier runs on `finalPath` whose process no longer runs on this machine. */
async function removeStaleStaging(finalPath: string, remove: boolean): Promise<string[]> {
  const pattern = stagingPattern(finalPath);
  const dir = dirname(finalPath);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const warnings: string[] = [];
  for (const name of names) {
    const m = pattern.exec(name);
    if (!m || processAlive(Number(m[1]))) continue;
    const path = join(dir, name);
    const bytes = await treeBytes(path).catch(() => 0);
    if (remove) await rm(path, { recursive: true, force: true });
    warnings.push(`${remove ? 'removed' : 'a run that writes would remove'} ${path} (${formatBytes(bytes)}), the temporary output of an earlier run (pid ${m[1]}) that was killed`);
  }
  return warnings;
}

/**
 * The lock beside an output: created exclusively (O_EXCL) by the run writing that output, so two
 * runs on one output cannot both write it; a lock whose process is gone is taken over.
 */
async function acquireLock(finalPath: string): Promise<string> {
  const path = join(dirname(finalPath), `${stagingStem(finalPath)}-lock`);
  for (let attempt = 0; ; attempt++) {
    try {
      const h = await open(path, 'wx');
      try {
        await h.writeFile(`${process.pid}\n`);
      } finally {
        await h.close();
      }
      return path;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw e;
    }
    const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (Number.isSafeInteger(pid) && pid > 0 && processAlive(pid)) {
      throw new CheckpointError(
        `another fp8q run (pid ${pid}) is writing ${finalPath}: wait for it to finish, or choose another -o (if no such run exists, remove ${path})`,
        'E_OUTPUT_BUSY',
      );
    }
    await rm(path, { force: true });
  }
}

export class StagingFolder {
  private committed = false;

  private constructor(
    readonly finalPath: string,
    readonly path: string,
    private readonly force: boolean,
    private lock: string | undefined,
  ) {}

  /**
   * A fresh temporary folder beside `finalPath` (same filesystem, so the final rename is atomic),
   * and the output's lock. Without `force`, the commit refuses an output that appeared meanwhile.
   */
  static async create(finalPath: string, opts: { force?: boolean } = {}): Promise<StagingFolder> {
    const abs = resolve(finalPath);
    await mkdir(dirname(abs), { recursive: true });
    const lock = await acquireLock(abs);
    const tmp = join(dirname(abs), `${stagingStem(abs)}-tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await mkdir(tmp);
    } catch (e) {
      await rm(lock, { force: true });
      throw e;
    }
    const staging = new StagingFolder(abs, tmp, opts.force === true, lock);
    activeStaging.add(staging);
    return staging;
  }

  /**
   * fsync every file and folder in it (data, index, config, copied files), then swap it into
   * place (replacing an existing output, as --force allows). Until the rename, the output path
   * holds the old state; after it, the whole new checkpoint is on disk. rename(2) replaces only
   * a missing or empty folder: without --force, an output another process wrote meanwhile makes
   * the commit fail instead of being replaced.
   */
  async commit(): Promise<void> {
    await fsyncTree(this.path);
    let backup: string | undefined;
    try {
      await rename(this.path, this.finalPath);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EISDIR' && code !== 'ENOTDIR') throw e;
      if (!this.force) {
        throw new CheckpointError(
          `output ${this.finalPath} appeared while this run was writing (another process wrote it): not replaced; pass --force to replace it, or choose another -o folder`,
          'E_OUTPUT_EXISTS',
        );
      }
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
    await this.unlock();
    await fsyncDir(dirname(this.finalPath));
    if (backup) await rm(backup, { recursive: true, force: true });
  }

  async discard(): Promise<void> {
    if (this.committed) return;
    activeStaging.delete(this);
    await rm(this.path, { recursive: true, force: true });
    await this.unlock();
  }

  private async unlock(): Promise<void> {
    const lock = this.lock;
    this.lock = undefined;
    if (lock) await rm(lock, { force: true });
  }

  /** Paths the signal handler removes: the temporary folder and the lock. */
  get cleanupPaths(): string[] {
    return this.lock ? [this.path, this.lock] : [this.path];
  }
}

/** A temporary output (folder or file) of this process, removed on SIGINT/SIGTERM by the CLI's handler. */
export interface Staged {
  readonly cleanupPaths: readonly string[];
}

/** Staging folders and files of this process, removed on SIGINT/SIGTERM by the CLI's handler. */
export const activeStaging = new Set<Staged>();

export function discardAllStagingSync(rmSync: (p: string, o: { recursive: boolean; force: boolean }) => void): void {
  for (const s of activeStaging) for (const p of s.cleanupPaths) rmSync(p, { recursive: true, force: true });
  activeStaging.clear();
}

/**
 * One output file (`logits -o`): refused when it is one of the inputs or inside an input folder
 * (even with --force), or when it exists without --force; written beside its place and made
 * visible by a rename (with --force) or a hard link, which fails if a file appeared meanwhile.
 */
export class StagingFile {
  private constructor(
    readonly finalPath: string,
    readonly path: string,
    private readonly force: boolean,
    /** Temporary files of killed earlier runs on this output, removed (for a warning). */
    readonly warnings: readonly string[],
  ) {}

  static async create(finalPath: string, opts: { force?: boolean; inputFiles?: readonly string[]; inputFolders?: readonly string[] }): Promise<StagingFile> {
    const abs = await realPathOfPrefix(finalPath);
    for (const f of opts.inputFiles ?? []) {
      if ((await realPathOfPrefix(f)) === abs) throw new CheckpointError(`output ${finalPath} is the input ${f}: choose another -o file`, 'E_OUTPUT_UNSAFE');
    }
    for (const d of opts.inputFolders ?? []) {
      const dAbs = await realPathOfPrefix(d);
      if (dAbs === abs || isInside(dAbs, abs)) {
        throw new CheckpointError(`output ${finalPath} is inside the model folder ${d}: choose a path outside it (fp8q never modifies its input)`, 'E_OUTPUT_UNSAFE');
      }
    }
    try {
      const s = await stat(abs);
      if (s.isDirectory()) throw new CheckpointError(`output ${finalPath} is a folder: give a file name (e.g. ${join(finalPath, 'logits.safetensors')})`, 'E_OUTPUT_UNSAFE');
      // --force replaces a file, never a device, pipe or socket (-o /dev/null as root would replace the device node).
      if (!s.isFile()) throw new CheckpointError(`output ${finalPath} exists and is not a regular file: choose another -o file`, 'E_OUTPUT_UNSAFE');
      if (opts.force !== true) throw new CheckpointError(`output ${finalPath} exists: pass --force to replace it, or choose another -o file`, 'E_OUTPUT_EXISTS');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    await mkdir(dirname(abs), { recursive: true });
    const stale = await removeStaleStaging(abs, true);
    const tmp = join(dirname(abs), `${stagingStem(abs)}-tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    const staged = new StagingFile(abs, tmp, opts.force === true, stale);
    activeStaging.add(staged);
    return staged;
  }

  get cleanupPaths(): string[] {
    return [this.path];
  }

  async commit(): Promise<void> {
    await fsyncDir(this.path);
    if (this.force) await rename(this.path, this.finalPath);
    else {
      try {
        await link(this.path, this.finalPath);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        throw new CheckpointError(`output ${this.finalPath} appeared while this run was writing: not replaced; pass --force to replace it`, 'E_OUTPUT_EXISTS');
      }
      await rm(this.path, { force: true });
    }
    activeStaging.delete(this);
    await fsyncDir(dirname(this.finalPath));
  }

  async discard(): Promise<void> {
    activeStaging.delete(this);
    await rm(this.path, { force: true });
  }
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
