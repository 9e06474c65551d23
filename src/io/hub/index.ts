// Hugging Face Hub in and out: `fp8q convert <org/name>` downloads into the shared HF cache,
// `--push-to` uploads the result with a model card. See resolve-source.ts and push-folder.ts.

export { isHubRepoId, isValidRepoId, repoFolderName } from './repo-id.js';
export {
  resolveSource,
  DEFAULT_CONCURRENCY,
  DEFAULT_RETRIES,
  type ResolveOptions,
  type ResolvedSource,
} from './resolve-source.js';
export { checkPushTarget, pushFolder, type PushOptions, type PushResult } from './push-folder.js';
export {
  renderModelCard,
  readModelCardData,
  FP8Q_TAGS,
  type ModelCardInput,
  type ModelCardData,
  type VerifyFigures,
} from './model-card.js';
export { readToken, readTokenWithSource, chooseToken, hubCacheDir, hubEndpoint, hfHome, isOffline, DEFAULT_HUB_URL, type Env } from './env.js';
export { selectFiles, shardsFromIndex, type RepoFile, type FileSelection } from './select-files.js';
export { HubError, type HubErrorCode } from './errors.js';
export type { DownloadEvent, PushEvent, PlannedFile } from './events.js';
export { fp8qVersion } from './version.js';
