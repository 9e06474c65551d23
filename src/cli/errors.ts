// Exit codes and the errors the CLI knows how to report: a known error prints its message alone;
// anything else is a bug in fp8q and prints its stack.

import { CheckpointError, SafetensorsParseError } from '../io/errors.js';
import { AlreadyQuantizedError } from '../passes/block-scale-quantize.js';
import { DeviceUnavailableError } from '../runtime/device-error.js';
import { ForwardGraphError, SessionError } from '../runtime/runtime-errors.js';
import { HubError } from '../io/hub/errors.js';

export const EXIT_OK = 0;
/** A conversion or verification could not be done (bad input, I/O error). */
export const EXIT_FAILURE = 1;
/** Bad command line. */
export const EXIT_USAGE = 2;
/** verify ran and an accuracy gate failed. */
export const EXIT_GATE_FAILED = 3;
/** Interrupted by SIGINT/SIGTERM. */
export const EXIT_INTERRUPTED = 130;

export class UsageError extends Error {
  override name = 'UsageError';
}

/** A failure with a message for the user and a chosen exit code. */
export class ExitError extends Error {
  override name = 'ExitError';
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
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
  // Operating-system errors (ENOENT, ENOSPC, EACCES …) are the user's to fix, not bugs.
  return typeof (e as NodeJS.ErrnoException).code === 'string' && typeof (e as NodeJS.ErrnoException).syscall === 'string';
}

export function exitCodeOf(e: Error): number {
  if (e instanceof UsageError) return EXIT_USAGE;
  if (e instanceof ExitError) return e.exitCode;
  return EXIT_FAILURE;
}

/** Readable text for OS errors, with what to do for the ones users meet. */
export function describeError(e: Error): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ENOSPC') return `disk full while writing ${err.path ?? 'output'}: free space or choose another -o folder (nothing was left behind)`;
  if (err.code === 'EACCES' || err.code === 'EPERM') return `permission denied: ${err.path ?? err.message}`;
  if (err.code === 'ENOENT' && err.path) return `no such file or folder: ${err.path}`;
  return e.message;
}
