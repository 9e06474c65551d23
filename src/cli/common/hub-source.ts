// The CLI side of Hub sources and --push-to: turns a repo id into a local snapshot folder (rendering
// download progress) and publishes a finished conversion. The Hub library is imported lazily, so
// local conversions never load it.

import { existsSync } from 'node:fs';
import { UsageError } from './errors.js';
import { ByteProgress, info, type OutputMode } from './output.js';

export interface HubFlags {
  revision?: string;
  hubUrl?: string;
  hubTimeout?: string;
  pushTo?: string;
  private?: boolean;
  /** --force: also push over a repo that already holds a model. */
  force?: boolean;
}

/** Default seconds to wait for a Hub connection and answer, and between two pieces of a download. */
export const DEFAULT_HUB_TIMEOUT_S = 60;

/** --hub-timeout (or FP8Q_HUB_TIMEOUT) in milliseconds. */
export function parseHubTimeout(flags: HubFlags, env: NodeJS.ProcessEnv = process.env): number {
  const text = flags.hubTimeout ?? env['FP8Q_HUB_TIMEOUT'];
  if (text === undefined || text.trim() === '') return DEFAULT_HUB_TIMEOUT_S * 1000;
  const s = Number(text);
  if (!Number.isFinite(s) || s <= 0) {
    throw new UsageError(`invalid ${flags.hubTimeout !== undefined ? '--hub-timeout' : 'FP8Q_HUB_TIMEOUT'} "${text}": expected seconds > 0`);
  }
  return Math.round(s * 1000);
}

/**
 * The Hub flags checked before anything is read or converted: a malformed --push-to id or
 * --hub-url, --private without --push-to (exit 2), and no token for --push-to (exit 1, found
 * now rather than after the conversion). Returns warnings for flags that will have no effect.
 */
export async function checkHubFlags(source: string, flags: HubFlags, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const { isValidRepoId, isHubRepoId } = await import('../../io/hub/repo-id.js');
  const { chooseToken, hubEndpoint } = await import('../../io/hub/env.js');
  if (flags.private === true && flags.pushTo === undefined) throw new UsageError('--private applies to --push-to only: add --push-to <org/name>, or drop --private');
  if (flags.pushTo !== undefined && !isValidRepoId(flags.pushTo)) {
    throw new UsageError(`--push-to "${flags.pushTo}" is not a Hub repo id: expected org/name (letters, digits, "_", "-", "."; no "--" or "..")`);
  }
  try {
    hubEndpoint(env, flags.hubUrl);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  parseHubTimeout(flags, env);
  if (flags.pushTo !== undefined && chooseToken(undefined, env).token === undefined) {
    const { HubError } = await import('../../io/hub/errors.js');
    const { LOGIN_HINT } = await import('../../io/hub/map-error.js');
    throw new HubError('HUB_AUTH', `--push-to ${flags.pushTo} needs a token with write access, and none is set: ${LOGIN_HINT} (checked before converting)`);
  }
  const warnings: string[] = [];
  if (!isHubRepoId(source)) {
    for (const [flag, value] of [
      ['--revision', flags.revision],
      ['--hub-url', flags.hubUrl],
      ['--hub-timeout', flags.hubTimeout],
    ] as const) {
      if (value !== undefined) warnings.push(`${flag} has no effect: ${source} is a local folder, not a Hub repo id`);
    }
  }
  return warnings;
}

/** A local folder as given, or the snapshot folder of a Hub repo id after downloading what a conversion needs. */
export async function resolveModelSource(source: string, flags: HubFlags, mode: OutputMode): Promise<{ dir: string; commit?: string }> {
  if (existsSync(source)) return { dir: source };
  const hub = await import('../../io/hub/index.js');
  if (!hub.isHubRepoId(source)) return { dir: source }; // let the checkpoint reader say the folder is missing
  const progress = new ByteProgress(mode, `downloading ${source}`);
  let total = 0;
  const done = new Map<string, number>();
  try {
    const resolved = await hub.resolveSource(source, {
      ...(flags.revision !== undefined ? { revision: flags.revision } : {}),
      ...(flags.hubUrl !== undefined ? { hubUrl: flags.hubUrl } : {}),
      timeoutMs: parseHubTimeout(flags),
      onProgress: (e) => {
        if (e.event === 'plan') {
          total = e.downloadBytes;
          if (e.downloadBytes === 0) info(mode, `${source}: every file already in the Hugging Face cache`);
        } else if (e.event === 'fileProgress') {
          done.set(e.path, e.bytes);
          progress.item(e.path);
          progress.update(
            [...done.values()].reduce((a, b) => a + b, 0),
            total,
          );
        } else if (e.event === 'fileRetry') {
          info(mode, `retrying ${e.path} from byte ${e.bytes} (${e.reason})`);
        }
      },
    });
    progress.succeed(`${source}${resolved.commit ? `@${resolved.commit.slice(0, 10)}` : ''} → ${resolved.dir}`);
    return resolved.commit !== undefined ? { dir: resolved.dir, commit: resolved.commit } : { dir: resolved.dir };
  } catch (e) {
    progress.fail();
    throw e;
  }
}

/** Before converting: a --push-to repo that already holds a model needs --force (push-folder.ts). */
export async function checkPushTarget(flags: HubFlags): Promise<void> {
  if (flags.pushTo === undefined || flags.force === true) return;
  const hub = await import('../../io/hub/index.js');
  await hub.checkPushTarget(flags.pushTo, { ...(flags.hubUrl !== undefined ? { hubUrl: flags.hubUrl } : {}), timeoutMs: parseHubTimeout(flags) });
}

/** Uploads a converted folder with a generated model card; returns the repo URL. */
export async function pushConversion(outDir: string, repoId: string, source: string, sourceCommit: string | undefined, flags: HubFlags, mode: OutputMode): Promise<string> {
  const hub = await import('../../io/hub/index.js');
  const result = await hub.pushFolder(outDir, repoId, {
    private: flags.private === true,
    replace: flags.force === true,
    ...(flags.hubUrl !== undefined ? { hubUrl: flags.hubUrl } : {}),
    timeoutMs: parseHubTimeout(flags),
    card: { source, ...(sourceCommit !== undefined ? { sourceRevision: sourceCommit } : {}) },
    onProgress: (e) => {
      if (e.event === 'repo') info(mode, `${e.created ? 'created' : 'using'} ${e.url}`);
      else if (e.event === 'phase') info(mode, `push: ${e.phase}`);
    },
  });
  info(mode, `pushed ${outDir} to ${result.url} (commit ${result.commit})`);
  return result.url;
}
