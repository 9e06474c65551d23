// Typed errors of the Hub layer. Each message says what to do next (log in, check the id, run again
// to resume); the CLI prints the message alone. No message, field or cause ever holds the token:
// every error built here goes through `redact`, and library errors are not attached as `cause`
// (their text is copied in, redacted) so that printing the stack or inspecting the error is safe.

export type HubErrorCode =
  | 'HUB_AUTH' // 401/403: private, gated, or a bad token
  | 'HUB_NOT_FOUND' // 404 on the repo
  | 'HUB_REVISION_NOT_FOUND' // 404 on the revision
  | 'HUB_FILE_NOT_FOUND' // 404 on one file
  | 'HUB_BAD_TOKEN' // a token the Hub client refuses before any request
  | 'HUB_BAD_SOURCE' // neither a folder nor a repo id
  | 'HUB_NO_SAFETENSORS' // the repo holds no safetensors weights
  | 'HUB_NETWORK' // connection failed or was cut (a rerun resumes)
  | 'HUB_TIMEOUT' // no answer within the connect or idle timeout
  | 'HUB_INTEGRITY' // downloaded bytes do not match the Hub's hash or size
  | 'HUB_OFFLINE' // offline mode and the cache lacks what is needed
  | 'HUB_PUSH' // upload-side failure other than auth
  | 'HUB_REPO_NOT_EMPTY' // --push-to a repo that already holds a model, without --force
  | 'HUB_HTTP'; // any other HTTP failure

export class HubError extends Error {
  constructor(
    readonly code: HubErrorCode,
    message: string,
    /** HTTP status when the failure was an HTTP answer. */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'HubError';
  }
}

/** Replaces every occurrence of the token (and of its `Bearer` form) in `text`. */
export function redact(text: string, token: string | undefined): string {
  if (token === undefined || token.length === 0) return text;
  return text.split(token).join('<redacted>');
}

/** A message for any thrown value, with the token removed. */
export function errorText(e: unknown, token: string | undefined): string {
  let text: string;
  if (e instanceof Error) {
    text = e.message;
    // undici reports network failures as `TypeError: fetch failed` with the reason in `cause`.
    const cause: unknown = (e as { cause?: unknown }).cause;
    if (cause instanceof Error && cause.message && !text.includes(cause.message)) {
      const code = (cause as NodeJS.ErrnoException).code;
      text = `${text}: ${cause.message}${code !== undefined && !cause.message.includes(code) ? ` (${code})` : ''}`;
    }
  } else {
    text = String(e);
  }
  return redact(text, token);
}
