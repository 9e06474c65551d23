// Turns what @huggingface/hub (or the network) throws into a HubError whose message says what to
// do. The Hub answers a missing repo with 401 when no token is sent (so as not to reveal private
// repos) and with 404 otherwise; a gated repo with 401 (no token) or 403 (token without access),
// tagged `X-Error-Code: GatedRepo`. The messages cover each case.

import { HubApiError } from '@huggingface/hub';
import { errorText, HubError, redact } from './errors.js';
import { isTimeoutText, type HubFetch } from './hub-fetch.js';

export const LOGIN_HINT = 'run `hf auth login` (or `huggingface-cli login`) or set HF_TOKEN';

export interface ErrorContext {
  repoId: string;
  hubUrl: string;
  /** The token sent, only to redact it. */
  token: string | undefined;
  /** Where the token came from (`HF_TOKEN`, a file path, `--token`), for messages. */
  tokenSource: string | undefined;
  revision?: string;
  /** The file being transferred, if any. */
  path?: string;
  /** Downloading (read access) or pushing (write access). */
  action: 'download' | 'push';
  hubFetch?: HubFetch;
  /** The id could have been a folder path: say that no such folder exists either. */
  noLocalFolder?: boolean;
}

/** Network failures worth a retry: anything but an HTTP answer in 4xx (except 408 and 429). */
export function isRetryable(e: unknown): boolean {
  if (e instanceof HubError) return e.code === 'HUB_NETWORK';
  if (e instanceof HubApiError) return e.statusCode >= 500 || e.statusCode === 408 || e.statusCode === 429;
  if (e instanceof Error && e.name === 'AbortError') return false;
  return true;
}

export function toHubError(e: unknown, ctx: ErrorContext): HubError {
  if (e instanceof HubError) {
    // Built here already; redact again in case a message quoted a server's answer.
    return e.message.includes(ctx.token ?? '\0') ? new HubError(e.code, redact(e.message, ctx.token), e.status) : e;
  }
  const repo = `"${ctx.repoId}"`;
  const page = `${ctx.hubUrl}/${ctx.repoId}`;
  const withToken = ctx.token !== undefined;
  const tokenFrom = ctx.tokenSource !== undefined ? ` (from ${ctx.tokenSource})` : '';
  const make = (code: HubError['code'], message: string, status?: number): HubError => new HubError(code, redact(message, ctx.token), status);
  const noFolder = ctx.noLocalFolder ? ` (no local folder "${ctx.repoId}" exists either)` : '';

  if (e instanceof HubApiError) {
    const status = e.statusCode;
    const xcode = ctx.hubFetch?.errorCode(e.url);
    const detail = `HTTP ${status}${xcode !== undefined ? ` ${xcode}` : ''}: ${errorText(e, ctx.token)}`;
    if (xcode === 'GatedRepo') {
      return make(
        'HUB_AUTH',
        withToken
          ? `${repo} is a gated model and your token${tokenFrom} has not been granted access: request access at ${page} with the account of that token, wait for approval, then run again (${detail})`
          : `${repo} is a gated model: accept its conditions at ${page}, then ${LOGIN_HINT} with a token of that account (${detail})`,
        status,
      );
    }
    if (status === 401) {
      if (!withToken) {
        return make(
          'HUB_AUTH',
          ctx.action === 'push'
            ? `pushing to ${repo} needs a token with write access: ${LOGIN_HINT} (${detail})`
            : `cannot access ${repo} on ${ctx.hubUrl}: it does not exist${noFolder}, or it is private or gated and no token was sent. Check the id (org/name); if the model is private or gated, ${LOGIN_HINT} (${detail})`,
          status,
        );
      }
      return make(
        'HUB_AUTH',
        `the Hub refused your token${tokenFrom} for ${repo}: it is invalid or expired, or it does not grant access to this repo. Check the id; create a token at ${ctx.hubUrl}/settings/tokens, then ${LOGIN_HINT} (${detail})`,
        status,
      );
    }
    if (status === 403) {
      return make(
        'HUB_AUTH',
        ctx.action === 'push'
          ? `your token${tokenFrom} may not write to ${repo}: use a token with write access to that namespace (a fine-grained token needs "write" on the repo or organization), then ${LOGIN_HINT} (${detail})`
          : `your token${tokenFrom} may not read ${repo}: if it is a fine-grained token, give it read access to this repo; if the model is gated, request access at ${page} (${detail})`,
        status,
      );
    }
    if (status === 404) {
      if (xcode === 'RevisionNotFound') {
        return make(
          'HUB_REVISION_NOT_FOUND',
          `revision "${ctx.revision ?? 'main'}" does not exist in ${repo}: check --revision (a branch, tag or commit hash) (${detail})`,
          status,
        );
      }
      if (xcode === 'EntryNotFound' && ctx.path !== undefined) {
        return make('HUB_FILE_NOT_FOUND', `${repo} lists "${ctx.path}" but the Hub cannot serve it: run again; if it persists, report it to the repo owner (${detail})`, status);
      }
      return make(
        'HUB_NOT_FOUND',
        `model ${repo} was not found on ${ctx.hubUrl}${noFolder}: check the id (org/name, as in the URL of the model page)${withToken ? '' : `; if it is private, ${LOGIN_HINT}`} (${detail})`,
        status,
      );
    }
    if (isRetryable(e)) {
      return make('HUB_NETWORK', `the Hub answered ${detail} for ${repo}: try again later`, status);
    }
    return make(ctx.action === 'push' ? 'HUB_PUSH' : 'HUB_HTTP', `${ctx.action} of ${repo} failed: ${detail}`, status);
  }
  const text = errorText(e, ctx.token);
  if (e instanceof TypeError && /access token must start with/i.test(text)) {
    return make('HUB_BAD_TOKEN', `the token${tokenFrom} is not a Hugging Face token (they start with "hf_"): create one at ${ctx.hubUrl}/settings/tokens, then ${LOGIN_HINT}`);
  }
  if (isTimeoutText(text)) return make('HUB_TIMEOUT', text);
  if (e instanceof Error && e.name === 'AbortError') return make('HUB_NETWORK', `${ctx.action} of ${repo} was cancelled`);
  return make('HUB_NETWORK', `cannot reach ${ctx.hubUrl} for ${repo}: ${text}. Check the connection (or --hub-url / HF_ENDPOINT)`);
}
