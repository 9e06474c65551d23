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
  constructor(
    readonly file: string,
    detail: string,
    readonly tensor?: string,
  ) {
    super(oneLine(`${file}: ${tensor !== undefined ? `tensor ${quoteName(tensor)}: ` : ''}${detail}`));
    this.name = 'SafetensorsParseError';
  }
}

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}
