// Typed errors of the I/O layer. Each message names the file (and tensor) and says what to do;
// the CLI prints the message alone, without a stack.

/** Longest tensor name quoted in a message: a hostile header can hold a megabyte-long name. */
const MAX_QUOTED_NAME = 200;

/**
 * A name from an untrusted file, quoted for a one-line message: control characters escaped
 * (JSON.stringify), cut at MAX_QUOTED_NAME characters.
 */
export function quoteName(name: string): string {
  return name.length > MAX_QUOTED_NAME ? `${JSON.stringify(name.slice(0, MAX_QUOTED_NAME)).slice(0, -1)}…"` : JSON.stringify(name);
}

/** Escapes line breaks and other control characters, so text from a file stays on one line. */
export function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export class SafetensorsParseError extends Error {
  readonly errorCode: IoErrorCode = 'E_INPUT_MALFORMED';
  constructor(
    readonly file: string,
    detail: string,
    readonly tensor?: string,
  ) {
    super(oneLine(`${file}: ${tensor !== undefined ? `tensor ${quoteName(tensor)}: ` : ''}${detail}`));
    this.name = 'SafetensorsParseError';
  }
}

/**
 * The machine-readable kind of an I/O-layer failure: `--json` prints it as `error.code`, so a
 * pipeline can branch on it. The CLI's table (src/cli/common/error-codes.ts) documents every code.
 */
export type IoErrorCode =
  | 'E_INPUT_MISSING' // the input folder or file does not exist
  | 'E_INPUT_MALFORMED' // a file of the input is corrupt, inconsistent or not what it claims
  | 'E_INPUT_UNSUPPORTED' // a well-formed input this command cannot process (nothing to quantize, not FP8 …)
  | 'E_INPUT_NONFINITE' // NaN/Inf values or unusable scales that would poison the output
  | 'E_OUTPUT_EXISTS' // the output exists and --force was not given
  | 'E_OUTPUT_UNSAFE' // the output is refused even with --force (the input, an ancestor, not a checkpoint …)
  | 'E_OUTPUT_BUSY' // another run is writing the same output
  | 'E_DISK_FULL'; // no space (or quota) left while writing

export class CheckpointError extends Error {
  constructor(
    message: string,
    readonly errorCode: IoErrorCode = 'E_INPUT_MALFORMED',
  ) {
    super(message);
    this.name = 'CheckpointError';
  }
}
