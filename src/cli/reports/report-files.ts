// Writing report files (verify --junit/--markdown, convert --report) by the rules every fp8q output
// follows: checked before the work starts (an existing file is replaced only with --force, never
// a folder, never inside a model folder: fp8q does not modify its input, and a checkpoint folder
// holds the checkpoint alone), then written atomically (a temporary file beside it, fsynced,
// renamed into place), so a reader sees the old file or the whole new one. The GitHub job summary
// is the exception by its own protocol: fp8q appends to the file the runner names. Like everything
// the CLI prints, report text passes through the secret redaction (a path or message could hold a
// Hub token).

import { appendFile, lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { ExitError, UsageError } from '../common/errors.js';
import { redactSecrets } from '../common/redact.js';
import { realPathOfPrefix } from '../../pipeline/output-folder.js';

/** A report file fp8q will not write (exists without --force, is a folder). */
export class ReportFileError extends ExitError {
  override name = 'ReportFileError';
  constructor(message: string, errorCode: 'E_OUTPUT_EXISTS' | 'E_OUTPUT_UNSAFE') {
    super(message, undefined, errorCode);
  }
}

export interface ReportTarget {
  /** The flag that named the file, for messages (`--junit`). */
  readonly flag: string;
  readonly path: string;
}

const EXAMPLE_FILE: Readonly<Record<string, string>> = { '--junit': 'verify.xml', '--markdown': 'verify.md', '--report': 'convert.md' };

function isInside(folder: string, path: string): boolean {
  const rel = relative(folder, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** The first of `folders` that holds `path` (after links), or undefined. */
export async function folderHolding<F extends { readonly path: string }>(path: string, folders: readonly F[]): Promise<F | undefined> {
  const abs = await realPathOfPrefix(path);
  for (const f of folders) if (isInside(await realPathOfPrefix(f.path), abs)) return f;
  return undefined;
}

/**
 * Refuse, before any work, report paths that cannot or must not be written: two flags naming one
 * file, a path inside one of `folders` (the models), an existing folder, an existing file without
 * --force. The parent folder need not exist (it is created at write time).
 */
export async function checkReportTargets(
  targets: readonly ReportTarget[],
  opts: {
    readonly force: boolean;
    readonly folders: readonly { readonly role: string; readonly path: string }[];
    /** Input files the command reads (--text, --dataset, --input-ids): never a report's file, even with --force. */
    readonly inputs?: readonly { readonly flag: string; readonly path: string }[];
  },
): Promise<void> {
  const seen = new Map<string, string>();
  for (const t of targets) {
    // An empty path would resolve to the working folder, and a trailing slash names a folder to be:
    // either would be found out only when the report is written, after the whole run.
    if (t.path.trim() === '') throw new UsageError(`${t.flag} needs a file name, e.g. ${t.flag} reports/${EXAMPLE_FILE[t.flag] ?? 'report.md'}`);
    if (/[\\/]$/.test(t.path)) throw new UsageError(`${t.flag} ${t.path} names a folder: give a file name, e.g. ${join(t.path, 'report')}`);
    const abs = await realPathOfPrefix(t.path);
    const other = seen.get(abs);
    if (other !== undefined) throw new UsageError(`${other} and ${t.flag} name the same file ${t.path}: give each report its own file`);
    seen.set(abs, t.flag);
    for (const i of opts.inputs ?? []) {
      if (i.path !== '-' && (await realPathOfPrefix(i.path)) === abs) throw new UsageError(`${t.flag} ${t.path} is the ${i.flag} input: give the report its own file`);
    }
    for (const f of opts.folders) {
      if (isInside(await realPathOfPrefix(f.path), abs)) {
        throw new UsageError(`${t.flag} ${t.path} is inside the ${f.role} folder ${f.path}: write reports outside model folders`);
      }
    }
    let isDirectory: boolean;
    try {
      isDirectory = (await lstat(t.path)).isDirectory();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    if (isDirectory) throw new ReportFileError(`${t.flag} ${t.path} is a folder: give a file name, e.g. ${join(t.path, 'report')}`, 'E_OUTPUT_UNSAFE');
    if (!opts.force) throw new ReportFileError(`${t.flag} ${t.path} exists: pass --force to replace it, or choose another file`, 'E_OUTPUT_EXISTS');
  }
}

/** Write `text` to `path` atomically (temporary sibling, fsync, rename), creating its folder. */
export async function writeReportFile(path: string, text: string): Promise<void> {
  const abs = resolve(path);
  await mkdir(dirname(abs), { recursive: true });
  const tmp = join(dirname(abs), `.${basename(abs)}.fp8q-tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const handle = await open(tmp, 'wx', 0o644);
    try {
      await handle.writeFile(redactSecrets(text), 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, abs);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  try {
    const dir = await open(dirname(abs), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // Some filesystems refuse to fsync a folder; the file itself is synced.
  }
}

/** Append to the GitHub job summary file (`$GITHUB_STEP_SUMMARY`), separated from what is there. */
export async function appendJobSummary(path: string, markdown: string): Promise<void> {
  await appendFile(path, redactSecrets(`\n${markdown}`), 'utf8');
}
