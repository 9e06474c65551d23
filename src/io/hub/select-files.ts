// Which files of a Hub repo a conversion needs. A Llama-3.1-8B repo holds 16 GB of safetensors
// and, beside them, `original/consolidated.00.pth` (another 16 GB); many older repos carry
// `pytorch_model*.bin`, `tf_model.h5`, `flax_model.msgpack` or ONNX exports of the same weights.
// Downloading only what the converter reads halves or better the transfer.
//
// Rules (top level of the repo only: subfolders hold other formats or other models):
// - weights: the shards named by `model.safetensors.index.json` when it exists (a repo may also
//   carry e.g. Mistral's `consolidated.safetensors`, a second copy of the same weights), else
//   `model.safetensors` when it exists, else every `*.safetensors`;
// - everything else a model needs: JSON files (config, generation config, tokenizer, processor,
//   chat template; not the index of another weight format), chat templates (`*.jinja`), tokenizer
//   files (`*.txt`, `*.model`, `*.tiktoken`, `*.vocab`), README and other markdown, license files,
//   and `*.py` (remote code that `config.json`'s `auto_map` names);
// - never: other weight formats (`*.bin`, `*.pth`, `*.pt`, `*.ckpt`, `*.msgpack`, `*.h5`,
//   `*.onnx`, `*.gguf`, ...). A repo without safetensors is an error, not a silent fallback:
//   fp8q reads safetensors only.

import { HubError } from './errors.js';

export const SAFETENSORS_INDEX = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';

/** Largest index we parse: an MoE index with ~500k entries is ~60 MB. */
export const MAX_INDEX_BYTES = 256 * 1024 * 1024;

/** A file of the repo as the tree API lists it. */
export interface RepoFile {
  path: string;
  size: number;
  /** Git blob id (sha1 of `blob <size>\0<bytes>`), the ETag of a non-LFS file. */
  oid?: string;
  /** sha256 of the content, for LFS (and Xet) files: their ETag. */
  lfsOid?: string;
}

export interface FileSelection {
  /** Non-weight files, the safetensors index included (fetched first: the index names the shards). */
  support: RepoFile[];
  /** Weight shards, when known without the index; empty when `index` is set. */
  weights: RepoFile[];
  /** The index to read for the shard list. */
  index?: RepoFile;
  /** Paths not downloaded, with why (for a report). */
  skipped: Array<{ path: string; reason: 'other-weight-format' | 'subfolder' | 'not-needed' }>;
}

const OTHER_WEIGHT_FORMAT = /\.(bin|pth|pt|ckpt|msgpack|h5|onnx|onnx_data|gguf|ggml|tflite|ot|mlmodel|mlpackage|npz|pkl|pickle|nemo|keras|pb)$/i;
const SUPPORT_FILE = /\.(json|jinja|txt|model|tiktoken|vocab|md|py)$/i;
const LICENSE_FILE = /^(LICENSE|LICENCE|NOTICE|COPYING)([._-][\w.-]*)?$/i;

/** A path the cache can hold: no `.`/`..` part, no backslash or NUL (the listing comes from a server). */
function isSafeName(path: string): boolean {
  return path !== '' && !/[\\\0]/.test(path) && !path.split('/').some((part) => part === '' || part === '.' || part === '..');
}

function isOtherIndex(path: string): boolean {
  return path.endsWith('.index.json') && !path.endsWith('.safetensors.index.json');
}

/** Splits a repo listing into what to download and what to skip. Throws when there are no safetensors. */
export function selectFiles(entries: readonly RepoFile[]): FileSelection {
  const support: RepoFile[] = [];
  const safetensors: RepoFile[] = [];
  const skipped: FileSelection['skipped'] = [];
  let index: RepoFile | undefined;
  for (const e of entries) {
    if (!isSafeName(e.path)) {
      skipped.push({ path: e.path, reason: 'not-needed' });
    } else if (e.path.includes('/')) {
      skipped.push({ path: e.path, reason: 'subfolder' });
    } else if (e.path.endsWith('.safetensors')) {
      safetensors.push(e);
    } else if (e.path === SAFETENSORS_INDEX) {
      index = e;
    } else if (OTHER_WEIGHT_FORMAT.test(e.path) || isOtherIndex(e.path)) {
      skipped.push({ path: e.path, reason: 'other-weight-format' });
    } else if (SUPPORT_FILE.test(e.path) || LICENSE_FILE.test(e.path)) {
      support.push(e);
    } else {
      skipped.push({ path: e.path, reason: 'not-needed' });
    }
  }
  if (index !== undefined) {
    // The shards are known once the index is read; until then every safetensors file is pending.
    return { support: [...support, index], weights: [], index, skipped };
  }
  if (safetensors.length === 0) {
    const others = skipped.filter((s) => s.reason === 'other-weight-format').map((s) => s.path);
    throw new HubError(
      'HUB_NO_SAFETENSORS',
      `the repo has no *.safetensors weights at its top level${others.length > 0 ? ` (it has ${others.slice(0, 3).join(', ')}${others.length > 3 ? ', ...' : ''})` : ''}: ` +
        `fp8q converts safetensors checkpoints only; load the model with transformers and save_pretrained(..., safe_serialization=True) first, or pick a repo with safetensors`,
    );
  }
  const single = safetensors.find((f) => f.path === SINGLE_FILE);
  const weights = single ? [single] : safetensors;
  for (const f of safetensors) if (!weights.includes(f)) skipped.push({ path: f.path, reason: 'not-needed' });
  return { support, weights, skipped };
}

/**
 * The shards named by the index text, as listed files. Throws when the index is malformed or
 * names a shard the repo does not have (a broken repo: better said now than after a download).
 */
export function shardsFromIndex(indexText: string, entries: readonly RepoFile[]): RepoFile[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(indexText);
  } catch (e) {
    throw new HubError('HUB_INTEGRITY', `${SAFETENSORS_INDEX} in the repo is not valid JSON (${(e as Error).message})`);
  }
  const weightMap = typeof parsed === 'object' && parsed !== null ? (parsed as { weight_map?: unknown }).weight_map : undefined;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new HubError('HUB_INTEGRITY', `${SAFETENSORS_INDEX} in the repo has no "weight_map" object`);
  }
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const names = new Set<string>();
  for (const [tensor, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shard !== 'string') {
      throw new HubError('HUB_INTEGRITY', `${SAFETENSORS_INDEX}: tensor "${tensor}" maps to a non-string shard`);
    }
    names.add(shard);
  }
  const shards: RepoFile[] = [];
  for (const name of [...names].sort()) {
    const entry = byPath.get(name);
    if (entry === undefined || name.includes('/') || !name.endsWith('.safetensors')) {
      throw new HubError('HUB_INTEGRITY', `${SAFETENSORS_INDEX} names shard "${name}", which is not a top-level *.safetensors file of the repo: the repo is incomplete`);
    }
    shards.push(entry);
  }
  if (shards.length === 0) {
    throw new HubError('HUB_INTEGRITY', `${SAFETENSORS_INDEX} in the repo names no shard: the repo is incomplete`);
  }
  return shards;
}
