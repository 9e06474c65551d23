// Exit codes and the errors the CLI knows how to report: a known error prints its message alone
// (OS errors translated into the path and what to do); anything else is a bug in fp8q and prints
// its stack. Machine-readable codes for --json live in error-codes.ts.

import { CheckpointError, SafetensorsParseError } from '../../io/errors.js';
import { AlreadyQuantizedError } from '../../passes/block-scale-quantize.js';
import { DeviceUnavailableError } from '../../runtime/device/device-error.js';
import { ForwardGraphError, SessionError } from '../../runtime/runtime-errors.js';
import { HubError } from '../../io/hub/errors.js';
import { errorCodeOf, type ErrorCode } from './error-codes.js';

export const EXIT_OK = 0;
/** A conversion or verification could not be done (bad input, I/O error). */
export const EXIT_FAILURE = 1;
/** Bad command line. */
export const EXIT_USAGE = 2;
/** verify ran and an accuracy gate failed. */
export const EXIT_GATE_FAILED = 3;
/** Interrupted by SIGINT (128 + 2). */
export const EXIT_INTERRUPTED = 130;
/** Stopped by SIGTERM (128 + 15), the convention of shells and process managers. */
export const EXIT_TERMINATED = 143;

export class UsageError extends Error {
  override name = 'UsageError';
}

/** A failure with a message for the user and a chosen exit code. */
export class ExitError extends Error {
  override name = 'ExitError';
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
    /** The code `--json` reports (src/cli/common/error-codes.ts). */
    readonly errorCode?: ErrorCode,
    /** The command has already printed its JSON document (with the error in it) on stdout. */
    readonly jsonPrinted = false,
  ) {
    super(message);
  }
}

const KNOWN: readonly (abstract new (...args: never[]) => Error)[] = [
  UsageError,
  ExitError,
  CheckpointError,
  SafetensorsParseError,
  AlreadyQuantizedError,
  DeviceUnavailableError,
  HubError,
  SessionError,
  ForwardGraphError,
];

export function isKnownError(e: unknown): e is Error {
  if (!(e instanceof Error)) return false;
  if (KNOWN.some((k) => e instanceof k)) return true;
  // A typed error of any layer (or of a new command) that names its code is the user's to act on.
  if (errorCodeOf(e) !== 'E_INTERNAL') return true;
  // Operating-system errors (ENOENT, ENOSPC, EACCES …) are the user's to fix, not bugs.
  return typeof (e as NodeJS.ErrnoException).code === 'string' && typeof (e as NodeJS.ErrnoException).syscall === 'string';
}

export function exitCodeOf(e: Error): number {
  if (e instanceof UsageError) return EXIT_USAGE;
  if (e instanceof ExitError) return e.exitCode;
  return EXIT_FAILURE;
}

/**
 * Readable text for OS errors: the path, what went wrong in words, and what to do. A path in
 * fp8q's temporary folder (`.<out>.fp8q-tmp-…`) is named by the output it was for.
 */
export function describeError(e: Error): string {
  const err = e as NodeJS.ErrnoException;
  if (typeof err.code !== 'string' || typeof err.syscall !== 'string') return e.message;
  const path = err.path !== undefined ? outputOfStaging(err.path) : undefined;
  const at = path ?? 'the output';
  switch (err.code) {
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return `disk full while writing ${at} (${err.code}): free space or choose another -o folder (nothing was left behind)`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${err.code}) at ${path ?? err.message}: check the folder's permissions, or choose another path`;
    case 'EROFS':
      return `${at} is on a read-only file system (EROFS): choose an -o folder on a writable disk`;
    case 'ENOENT':
      return path ? `no such file or folder: ${path}` : e.message;
    case 'EISDIR':
      return `${at} is a folder where a file was expected (EISDIR): remove it or choose another path`;
    case 'ENOTDIR':
      return `a part of ${at} is a file where a folder was expected (ENOTDIR): check the path`;
    case 'ENAMETOOLONG':
      return `the path ${at} is too long for the file system (ENAMETOOLONG): choose a shorter name`;
    case 'EMFILE':
    case 'ENFILE':
      return `too many open files (${err.code}) at ${at}: raise the limit (ulimit -n) and run again`;
    case 'ELOOP':
      return `${at} is a loop of symbolic links (ELOOP): fix the link`;
    case 'EXDEV':
      return `cannot move ${at} across file systems (EXDEV): choose an -o folder on one file system`;
    case 'EBUSY':
      return `${at} is busy (EBUSY): close what holds it and run again`;
    case 'EIO':
      return `input/output error at ${at} (EIO): the disk may be failing; check it and run again`;
    default:
      return `${err.code} at ${at}: ${e.message}`;
  }
}

/** `/a/.out.fp8q-tmp-123-abcd/x` → `/a/out`: users know the output they asked for, not the temporary folder. */
function outputOfStaging(path: string): string {
  const m = /^(.*\/)?\.([^/]+?)\.fp8q-(?:tmp|lock)[^/]*(?:\/.*)?$/.exec(path);
  return m ? `${m[1] ?? ''}${m[2]}` : path;
}
