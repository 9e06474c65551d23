// Errors of the model runtime that the CLI reports as one line (cli/common/errors.ts), in a module of
// their own so the CLI knows them without loading onnxruntime (session.ts loads it).

/** onnxruntime could not create or run a session (device out of memory, a provider failure …). */
export class SessionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SessionError';
  }
}

/** A checkpoint's tensors or config cannot make the forward graph (no lm_head, mismatched experts …). */
export class ForwardGraphError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForwardGraphError';
  }
}
