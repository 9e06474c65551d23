// The `fetch` handed to @huggingface/hub (its documented hook). It adds what the library lacks:
// - the Hub's `X-Error-Code` header (GatedRepo, RepoNotFound, RevisionNotFound, EntryNotFound),
//   which the library's HubApiError drops, kept by URL so errors can say what to do;
// - detection of a server that ignores a resume Range request (answers 200 with the whole file),
//   which would otherwise append the whole file to the partial one;
// - cancellation (one AbortSignal for every request) and fp8q's User-Agent;
// - timeouts: a request whose answer (headers) does not come within `timeoutMs`, or whose body
//   sends nothing for `timeoutMs`, is aborted with a HubError('HUB_TIMEOUT') naming the setting,
//   so a server that accepts and never answers cannot hang a run.

import { HubError } from './errors.js';
import { fp8qVersion } from './version.js';

/** Text every timeout message holds: errors the library turned into text are still recognised. */
export const TIMEOUT_MARK = '(--hub-timeout / FP8Q_HUB_TIMEOUT)';

export function isTimeoutText(text: string): boolean {
  return text.includes(TIMEOUT_MARK);
}

/** The message of the error raised when a resume Range request got a 200; matched as text too,
 * because the library's blob streams turn errors into their message. */
export const RANGE_IGNORED = 'the server ignored the Range request of a resumed download';

export class RangeIgnoredError extends Error {
  constructor() {
    super(RANGE_IGNORED);
    this.name = 'RangeIgnoredError';
  }
}

export interface HubFetch {
  fetch: typeof fetch;
  /** `X-Error-Code` of the last failed response for this URL (request or final URL). */
  errorCode(url: string): string | undefined;
}

function requestUrl(input: Parameters<typeof fetch>[0]): string {
  if (typeof input === 'string') return input;
  if (input instanceof URL) return input.href;
  return input.url;
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/**
 * `res` with a body that aborts `controller` when no chunk arrives for `ms`. The stream is
 * rebuilt around the original (status, headers and url kept) so the library sees a normal response.
 */
function withIdleTimeout(res: Response, ms: number, controller: AbortController, url: string): Response {
  if (res.body === null) return res;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      controller.abort(new HubError('HUB_TIMEOUT', `the download from ${hostOf(url)} stalled: no data for ${ms / 1000} s ${TIMEOUT_MARK}; run the same command again to resume`));
    }, ms);
    timer.unref();
  };
  arm();
  const source = res.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      try {
        const { done, value } = await source.read();
        if (done) {
          clearTimeout(timer);
          c.close();
          return;
        }
        arm();
        c.enqueue(value);
      } catch (e) {
        clearTimeout(timer);
        c.error(controller.signal.aborted ? controller.signal.reason : e);
      }
    },
    cancel(reason) {
      clearTimeout(timer);
      return source.cancel(reason);
    },
  });
  const out = new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  Object.defineProperty(out, 'url', { value: res.url });
  Object.defineProperty(out, 'redirected', { value: res.redirected });
  return out;
}

export function createHubFetch(opts: { signal?: AbortSignal; base?: typeof fetch; timeoutMs?: number } = {}): HubFetch {
  const codes = new Map<string, string>();
  const base = opts.base ?? globalThis.fetch;
  const userAgent = `fp8q/${fp8qVersion()}; node/${process.versions.node}`;
  const wrapped: typeof fetch = async (input, init) => {
    const url = requestUrl(input);
    const headers = new Headers(init?.headers);
    if (!headers.has('user-agent')) headers.set('user-agent', userAgent);
    let signal = init?.signal ?? undefined;
    if (opts.signal !== undefined) signal = signal ? AbortSignal.any([signal, opts.signal]) : opts.signal;
    const timeoutMs = opts.timeoutMs;
    const timeout = timeoutMs !== undefined ? new AbortController() : undefined;
    if (timeout) signal = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal;
    // An upload's answer comes only after its body has gone up, which may take long: its wait is not
    // bounded here (the body's own transfer is), small JSON requests are.
    const uploading = init?.body !== undefined && init.body !== null && typeof init.body !== 'string';
    const answerTimer =
      timeout && timeoutMs !== undefined && !uploading
        ? setTimeout(() => {
            timeout.abort(
              new HubError(
                'HUB_TIMEOUT',
                `no answer from ${hostOf(url)} within ${timeoutMs / 1000} s ${TIMEOUT_MARK}: the server did not respond; check --hub-url / HF_ENDPOINT and the network, or raise the timeout`,
              ),
            );
          }, timeoutMs)
        : undefined;
    let res: Response;
    try {
      res = await base(input, { ...init, headers, ...(signal ? { signal } : {}) });
    } catch (e) {
      throw timeout?.signal.aborted ? timeout.signal.reason : e;
    } finally {
      clearTimeout(answerTimer);
    }
    if (timeout && timeoutMs !== undefined) res = withIdleTimeout(res, timeoutMs, timeout, url);
    if (!res.ok) {
      const code = res.headers.get('x-error-code');
      if (code !== null) {
        codes.set(url, code);
        if (res.url) codes.set(res.url, code);
      }
    }
    const range = /^bytes=(\d+)-/.exec(headers.get('range') ?? '');
    if (range !== null && Number(range[1]) > 0 && res.status === 200) {
      await res.body?.cancel();
      throw new RangeIgnoredError();
    }
    return res;
  };
  return { fetch: wrapped, errorCode: (url) => codes.get(url) };
}
