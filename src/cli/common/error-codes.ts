// The stable, machine-readable error codes of a failed command: `--json` prints one as
// `error.code` (stdout), so a pipeline can branch on it without parsing messages. One table,
// exported for every consumer (README's table, reports); an error chooses its code by an
// `errorCode` property (typed errors of io/ and runtime/), its class, or the OS errno.
// A new command needs nothing here: main() (index.ts) prints the JSON error for any command
// given --json, and an error class with `errorCode = 'E_…'` from this table is reported as such.

import type { IoErrorCode } from '../../io/errors.js';
import type { GateName } from '../../runtime/verify/gates.js';

export interface ErrorCodeInfo {
  /** The exit code a command ends with when it fails with this code. */
  readonly exit: number;
  /** What happened and what a pipeline should do, one sentence. */
  readonly meaning: string;
}

export const ERROR_CODES = {
  E_USAGE: { exit: 2, meaning: 'bad command line: unknown flag, bad value, flags that exclude each other or need one another; fix the command' },
  E_INPUT_MISSING: { exit: 1, meaning: 'an input folder or file does not exist' },
  E_INPUT_MALFORMED: { exit: 1, meaning: 'a safetensors file, index or config of the input is corrupt or inconsistent (a tensor the index does not list, a truncated shard …)' },
  E_INPUT_UNSUPPORTED: { exit: 1, meaning: 'a well-formed input the command cannot process: nothing to quantize, not an FP8 checkpoint (dequant), a missing config field' },
  E_INPUT_NONFINITE: { exit: 1, meaning: 'NaN/Inf values, or NaN/Inf/zero/negative FP8 scales, that would poison the output; pass --allow-nonfinite to go on anyway' },
  E_ALREADY_QUANTIZED: { exit: 1, meaning: 'convert was given an FP8 checkpoint; skip it, or pass --requantize' },
  E_OUTPUT_EXISTS: { exit: 1, meaning: 'the output (or the --push-to repo, holding a model) exists or appeared during the run, and --force was not given' },
  E_OUTPUT_UNSAFE: {
    exit: 1,
    meaning: 'the output is refused even with --force: it is the input, holds or is inside it, is an ancestor of the working folder, or is not a checkpoint folder',
  },
  E_OUTPUT_BUSY: { exit: 1, meaning: 'another fp8q run is writing the same output; wait for it' },
  E_DISK_FULL: { exit: 1, meaning: 'no space (or quota) left while writing; nothing was left behind' },
  E_PERMISSION: { exit: 1, meaning: 'permission denied or read-only file system at the named path' },
  E_IO: { exit: 1, meaning: 'another operating-system error at the named path' },
  E_HUB_AUTH: { exit: 1, meaning: 'Hub: no token, a bad token, or no access (private, gated, no write access for --push-to)' },
  E_HUB_NOT_FOUND: { exit: 1, meaning: 'Hub: the repo, revision or file does not exist' },
  E_HUB_NETWORK: { exit: 1, meaning: 'Hub: the connection failed or was cut; a rerun resumes downloads' },
  E_HUB_TIMEOUT: { exit: 1, meaning: 'Hub: no answer within the connect or idle timeout (--hub-timeout); a rerun resumes' },
  E_HUB_INTEGRITY: { exit: 1, meaning: "Hub: downloaded bytes do not match the Hub's hash or size" },
  E_HUB_OFFLINE: { exit: 1, meaning: 'Hub: offline mode and the cache lacks what is needed' },
  E_HUB: { exit: 1, meaning: 'Hub: any other failure (an unexpected HTTP answer, an upload failure)' },
  E_DEVICE_UNAVAILABLE: { exit: 1, meaning: '--device cuda and CUDA cannot run here (the message says what is missing)' },
  E_GATE_KL: { exit: 3, meaning: 'verify: the mean KL gate (--max-kl) failed, or the logits were not finite' },
  E_GATE_TOP1: { exit: 3, meaning: 'verify: the top-1 agreement gate (--min-top1) failed' },
  E_GATE_LAYER: { exit: 3, meaning: 'verify: a quantized linear exceeded --max-layer-rel-error' },
  E_GATE_LAYER_RATIO: { exit: 3, meaning: "verify: a quantized linear's error exceeded --max-layer-error-ratio times its FP8 floor" },
  E_GATE_PPL: { exit: 3, meaning: 'verify: the perplexity increase on text exceeded --max-ppl-increase' },
  E_GATE_UNVERIFIED: { exit: 3, meaning: 'verify: some quantized tensors were not run (pass --allow-unverified to accept that)' },
  E_GATE_KEPT_MODULE: { exit: 3, meaning: 'verify: a module the original keeps unquantized (lm_head, an embedding, a router) is FP8 in the quantized checkpoint' },
  E_INTERRUPTED: { exit: 130, meaning: 'SIGINT (exit 130) or SIGTERM (exit 143); partial output was removed' },
  E_INTERNAL: { exit: 1, meaning: 'a bug in fp8q; the message carries the stack, please report it' },
} as const satisfies Readonly<Record<string, ErrorCodeInfo>>;

export type ErrorCode = keyof typeof ERROR_CODES;

// Every code the io layer can raise must be in the table (a compile-time check).
const IO_CODES_KNOWN: Readonly<Record<IoErrorCode, ErrorCodeInfo>> = ERROR_CODES;
void IO_CODES_KNOWN;

/** Each verify gate's code, so a pipeline (or a report) can tell which gate failed. */
export const GATE_ERROR_CODES: Readonly<Record<GateName, ErrorCode>> = {
  'max-kl': 'E_GATE_KL',
  'min-top1': 'E_GATE_TOP1',
  'max-layer-rel-error': 'E_GATE_LAYER',
  'max-layer-error-ratio': 'E_GATE_LAYER_RATIO',
  'max-ppl-increase': 'E_GATE_PPL',
  unverified: 'E_GATE_UNVERIFIED',
  'kept-module': 'E_GATE_KEPT_MODULE',
};

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

/** Hub errors' own codes (io/hub/errors.ts) → the table's. */
const HUB_CODES: Readonly<Record<string, ErrorCode>> = {
  HUB_AUTH: 'E_HUB_AUTH',
  HUB_BAD_TOKEN: 'E_HUB_AUTH',
  HUB_NOT_FOUND: 'E_HUB_NOT_FOUND',
  HUB_REVISION_NOT_FOUND: 'E_HUB_NOT_FOUND',
  HUB_FILE_NOT_FOUND: 'E_HUB_NOT_FOUND',
  HUB_BAD_SOURCE: 'E_INPUT_MISSING',
  HUB_NO_SAFETENSORS: 'E_INPUT_UNSUPPORTED',
  HUB_NETWORK: 'E_HUB_NETWORK',
  HUB_TIMEOUT: 'E_HUB_TIMEOUT',
  HUB_INTEGRITY: 'E_HUB_INTEGRITY',
  HUB_OFFLINE: 'E_HUB_OFFLINE',
  HUB_PUSH: 'E_HUB',
  HUB_REPO_NOT_EMPTY: 'E_OUTPUT_EXISTS',
  HUB_HTTP: 'E_HUB',
};

/** OS errno → code, for errors no layer translated. */
function errnoCode(errno: string): ErrorCode {
  if (errno === 'ENOSPC' || errno === 'EDQUOT' || errno === 'EFBIG') return 'E_DISK_FULL';
  if (errno === 'EACCES' || errno === 'EPERM' || errno === 'EROFS') return 'E_PERMISSION';
  if (errno === 'ENOENT') return 'E_INPUT_MISSING';
  return 'E_IO';
}

/**
 * The code of any thrown value. Errors name their code by a string `errorCode` property (so a
 * new command's errors need no entry here); Hub errors by their `code`; OS errors by errno.
 */
export function errorCodeOf(e: unknown): ErrorCode {
  if (!(e instanceof Error)) return 'E_INTERNAL';
  const own = (e as { errorCode?: unknown }).errorCode;
  if (isErrorCode(own)) return own;
  if (e.name === 'UsageError') return 'E_USAGE';
  // An ExitError that names no code: exit 2 is the command line by definition (README's exit codes).
  if (e.name === 'ExitError' && (e as { exitCode?: unknown }).exitCode === 2) return 'E_USAGE';
  if (e.name === 'AlreadyQuantizedError') return 'E_ALREADY_QUANTIZED';
  if (e.name === 'DeviceUnavailableError') return 'E_DEVICE_UNAVAILABLE';
  const code = (e as NodeJS.ErrnoException).code;
  if (e.name === 'HubError' && typeof code === 'string') return HUB_CODES[code] ?? 'E_HUB';
  if (typeof code === 'string' && typeof (e as NodeJS.ErrnoException).syscall === 'string') return errnoCode(code);
  return 'E_INTERNAL';
}
