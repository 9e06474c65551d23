// The `fetch` handed to @huggingface/hub (its documented hook). It adds what the library lacks:
// - the Hub's `X-Error-Code` header (GatedRepo, RepoNotFound, RevisionNotFound, EntryNotFound),
//   which the library's HubApiError drops, kept by URL so errors can say what to do;
// - detection of a server that ignores a resume Range request (answers 200 with the whole file),
//   which would otherwise append the whole file to the partial one;
// - cancellation (one AbortSignal for every request) and fp8q's User-Agent.

import { fp8qVersion } from './version.js';

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

export function createHubFetch(opts: { signal?: AbortSignal; base?: typeof fetch } = {}): HubFetch {
  const codes = new Map<string, string>();
  const base = opts.base ?? globalThis.fetch;
  const userAgent = `fp8q/${fp8qVersion()}; node/${process.versions.node}`;
  const wrapped: typeof fetch = async (input, init) => {
    const url = requestUrl(input);
    const headers = new Headers(init?.headers);
    if (!headers.has('user-agent')) headers.set('user-agent', userAgent);
    let signal = init?.signal ?? undefined;
    if (opts.signal !== undefined) signal = signal ? AbortSignal.any([signal, opts.signal]) : opts.signal;
    const res = await base(input, { ...init, headers, ...(signal ? { signal } : {}) });
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
