// Typed errors of the I/O layer. Each message names the file (and tensor) and says what to do;
// the CLI prints the message alone, without a stack.

export class SafetensorsParseError extends Error {
  constructor(
    readonly file: string,
    detail: string,
    readonly tensor?: string,
  ) {
    super(`${file}: ${tensor !== undefined ? `tensor "${tensor}": ` : ''}${detail}`);
    this.name = 'SafetensorsParseError';
  }
}

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}
