// The CLI side of Hub sources and --push-to: turns a repo id into a local snapshot folder (rendering
// download progress) and publishes a finished conversion. The Hub library is imported lazily, so
// local conversions never load it.

import { existsSync } from 'node:fs';
import { ByteProgress, info, type OutputMode } from './output.js';

export interface HubFlags {
  revision?: string;
  hubUrl?: string;
  pushTo?: string;
  private?: boolean;
}

/** A local folder as given, or the snapshot folder of a Hub repo id after downloading what a conversion needs. */
export async function resolveModelSource(source: string, flags: HubFlags, mode: OutputMode): Promise<{ dir: string; commit?: string }> {
  if (existsSync(source)) return { dir: source };
  const hub = await import('../io/hub/index.js');
  if (!hub.isHubRepoId(source)) return { dir: source }; // let the checkpoint reader say the folder is missing
  const progress = new ByteProgress(mode, `downloading ${source}`);
  let total = 0;
  const done = new Map<string, number>();
  try {
    const resolved = await hub.resolveSource(source, {
      ...(flags.revision !== undefined ? { revision: flags.revision } : {}),
      ...(flags.hubUrl !== undefined ? { hubUrl: flags.hubUrl } : {}),
      onProgress: (e) => {
        if (e.event === 'plan') {
          total = e.downloadBytes;
          if (e.downloadBytes === 0) info(mode, `${source}: every file already in the Hugging Face cache`);
        } else if (e.event === 'fileProgress') {
          done.set(e.path, e.bytes);
          progress.item(e.path);
          progress.update([...done.values()].reduce((a, b) => a + b, 0), total);
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

/** Uploads a converted folder with a generated model card; returns the repo URL. */
export async function pushConversion(
  outDir: string,
  repoId: string,
  source: string,
  sourceCommit: string | undefined,
  flags: HubFlags,
  mode: OutputMode,
): Promise<string> {
  const hub = await import('../io/hub/index.js');
  const result = await hub.pushFolder(outDir, repoId, {
    private: flags.private === true,
    ...(flags.hubUrl !== undefined ? { hubUrl: flags.hubUrl } : {}),
    card: { source, ...(sourceCommit !== undefined ? { sourceRevision: sourceCommit } : {}) },
    onProgress: (e) => {
      if (e.event === 'repo') info(mode, `${e.created ? 'created' : 'using'} ${e.url}`);
      else if (e.event === 'phase') info(mode, `push: ${e.phase}`);
    },
  });
  info(mode, `pushed ${outDir} to ${result.url} (commit ${result.commit})`);
  return result.url;
}
