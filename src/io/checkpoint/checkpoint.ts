// A model folder as one set of tensors: config.json, the safetensors shards (one file, or an index
// `model.safetensors.index.json` naming several), and every other file that travels with a model.

import { readdir, readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { CheckpointError, oneLine, quoteName } from '../errors.js';
import { findDuplicateKey } from '../safetensors/json-duplicate-keys.js';
import { SafetensorsReader, type TensorInfo } from '../safetensors/safetensors-reader.js';

export const INDEX_FILE = 'model.safetensors.index.json';
export const CONFIG_FILE = 'config.json';

/** Largest index we parse: an MoE index with ~500k entries is ~60 MB. */
export const MAX_INDEX_BYTES = 256 * 1024 * 1024;

export type ModelConfig = Record<string, unknown>;

/** transformers' shard names: `model-00001-of-00004.safetensors`. */
const SHARD_NAME = /^model-\d+-of-\d+\.safetensors$/;

export interface CheckpointTensor extends TensorInfo {
  /** Shard file name, relative to the model folder. */
  readonly shard: string;
}

export class Checkpoint {
  private constructor(
    readonly dir: string,
    readonly config: ModelConfig | undefined,
    /** Why config is undefined (missing or invalid), for a warning. */
    readonly configProblem: string | undefined,
    readonly tensors: ReadonlyMap<string, CheckpointTensor>,
    private readonly readers: ReadonlyMap<string, SafetensorsReader>,
    /** Files other than weight shards and their index (tokenizer, generation config, …). */
    readonly otherFiles: readonly string[],
    readonly indexMetadata: Readonly<Record<string, unknown>> | undefined,
    /** Things the reader accepted but a user should hear about (tensors the index leaves out, with allowUnindexed). */
    readonly problems: readonly string[] = [],
  ) {}

  /**
   * Every tensor of every shard is accounted for: one the index does not list is an error (the
   * index is damaged, or the tensor would silently vanish from any output); with
   * `allowUnindexed` it is left out with a warning in `problems`, as transformers leaves it out.
   */
  static async open(dir: string, opts: { allowUnindexed?: boolean } = {}): Promise<Checkpoint> {
    let entries: string[];
    const linkedFolders: string[] = [];
    const unindexedShards: string[] = [];
    try {
      const s = await stat(dir);
      if (!s.isDirectory()) throw new CheckpointError(`${dir} is not a folder: pass the model folder that holds config.json and *.safetensors`);
      entries = await listTree(dir, linkedFolders);
    } catch (e) {
      if (e instanceof CheckpointError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      throw new CheckpointError(`cannot read model folder ${dir} (${code ?? (e as Error).message})`, code === 'ENOENT' ? 'E_INPUT_MISSING' : 'E_INPUT_MALFORMED');
    }
    const files = [];
    const unreadable: string[] = [];
    for (const e of entries) {
      try {
        if ((await stat(join(dir, e))).isFile()) files.push(e);
      } catch (err) {
        // A broken or looping symbolic link is not part of the checkpoint; say so rather than fail or hide it.
        unreadable.push(`${join(dir, e)} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): ignored`);
      }
    }
    files.sort();

    const { config, problem } = await readConfig(dir, files);
    let shards: string[];
    let weightMap: Map<string, string> | undefined;
    let indexMetadata: Record<string, unknown> | undefined;
    if (files.includes(INDEX_FILE)) {
      const index = await readIndex(dir);
      weightMap = index.weightMap;
      indexMetadata = index.metadata;
      shards = [...new Set(weightMap.values())].sort();
      for (const shard of shards) {
        if (!files.includes(shard)) {
          throw new CheckpointError(`${join(dir, INDEX_FILE)} names shard ${quoteName(shard)}, which is not in the folder: the download is incomplete`);
        }
      }
      // A file named like one of this index's shards that the index never names: its tensors would
      // vanish from any output. (Other safetensors files, e.g. Mistral's consolidated.safetensors,
      // are separate copies and stay a warning of the writers.)
      for (const f of files) {
        if (!SHARD_NAME.test(f) || shards.includes(f)) continue;
        const what = `${join(dir, f)} is named like a shard of this checkpoint, but ${INDEX_FILE} lists none of its tensors`;
        if (!opts.allowUnindexed) {
          throw new CheckpointError(`${what}: the index is incomplete, and converting would drop them; fix the index, or pass --allow-unindexed to leave them out`);
        }
        unindexedShards.push(`${what}: left out (--allow-unindexed)`);
      }
    } else {
      shards = files.filter((f) => f.endsWith('.safetensors') && !f.includes('/'));
      if (shards.length === 0) {
        throw new CheckpointError(`no *.safetensors files in ${dir}: fp8q reads safetensors checkpoints only (convert .bin files with transformers' save_pretrained first)`);
      }
      // Mistral repos ship consolidated.safetensors (mistral-inference names, a second full copy)
      // beside the transformers files: when those are there, it is not a shard of this checkpoint.
      const hfShards = shards.filter((f) => !/^consolidated(\.\d+)?\.safetensors$/.test(f));
      if (hfShards.length > 0) shards = hfShards;
    }

    const readers = new Map<string, SafetensorsReader>();
    const tensors = new Map<string, CheckpointTensor>();
    const problems: string[] = [
      ...unreadable,
      ...unindexedShards,
      ...linkedFolders.map((f) => `${join(dir, f)} is a symbolic link to a folder: not followed (its files are not part of the checkpoint)`),
    ];
    try {
      for (const shard of shards) {
        const reader = await SafetensorsReader.open(join(dir, shard));
        readers.set(shard, reader);
        for (const name of reader.tensorNames()) {
          // With an index, the index decides which shard's copy is the tensor (as transformers does).
          if (weightMap && weightMap.get(name) !== shard) {
            if (weightMap.has(name)) continue; // a second copy; the index names the one that counts
            const what = `${join(dir, shard)} holds tensor ${quoteName(name)}, which ${INDEX_FILE} does not list`;
            if (!opts.allowUnindexed) {
              throw new CheckpointError(`${what}: the index is incomplete, and converting would drop the tensor; fix the index, or pass --allow-unindexed to leave it out`);
            }
            problems.push(`${what}: left out (--allow-unindexed)`);
            continue;
          }
          const prev = tensors.get(name);
          if (prev) throw new CheckpointError(`tensor ${quoteName(name)} is in both ${prev.shard} and ${shard} of ${dir}`);
          tensors.set(name, { ...reader.info(name), shard });
        }
      }
      if (weightMap) {
        for (const [name, shard] of weightMap) {
          if (!tensors.has(name)) {
            throw new CheckpointError(
              `${join(dir, INDEX_FILE)} maps tensor ${quoteName(name)} to ${shard}, but that shard has no such tensor: the index and the shards do not match`,
            );
          }
        }
      }
    } catch (e) {
      await Promise.all([...readers.values()].map((r) => r.close()));
      throw e;
    }
    const weightFiles = new Set([...shards, INDEX_FILE]);
    const otherFiles = files.filter((f) => !weightFiles.has(f));
    return new Checkpoint(dir, config, problem, tensors, readers, otherFiles, indexMetadata, problems);
  }

  tensorNames(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): CheckpointTensor {
    const t = this.tensors.get(name);
    if (!t) throw new CheckpointError(`tensor "${name}" is not in ${this.dir}`);
    return t;
  }

  reader(name: string): SafetensorsReader {
    return this.readers.get(this.info(name).shard)!;
  }

  readTensor(name: string, into?: Uint8Array): Promise<Uint8Array> {
    return this.reader(name).readTensor(name, into);
  }

  readRows(name: string, rowStart: number, rowCount: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.reader(name).readRows(name, rowStart, rowCount, into);
  }

  get shardNames(): string[] {
    return [...this.readers.keys()];
  }

  async close(): Promise<void> {
    await Promise.all([...this.readers.values()].map((r) => r.close()));
  }
}

/**
 * Every entry under `dir`, relative with `/`, descending only into real folders: a symbolic link
 * to a folder (`weights -> /`) is listed in `linkedFolders`, never walked (Node's recursive
 * readdir follows such links, which walks the whole disk and reaches files outside the model).
 */
async function listTree(dir: string, linkedFolders: string[], prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(prefix === '' ? dir : join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) {
      out.push(rel, ...(await listTree(dir, linkedFolders, rel)));
    } else if (entry.isSymbolicLink()) {
      const target = await stat(join(dir, rel)).catch(() => undefined);
      if (target?.isDirectory()) linkedFolders.push(rel);
      else out.push(rel);
    } else out.push(rel);
  }
  return out;
}

async function readConfig(dir: string, files: string[]): Promise<{ config: ModelConfig | undefined; problem: string | undefined }> {
  if (!files.includes(CONFIG_FILE)) return { config: undefined, problem: `no ${CONFIG_FILE} in ${dir}` };
  try {
    const parsed: unknown = JSON.parse(await readFile(join(dir, CONFIG_FILE), 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      return { config: undefined, problem: `${join(dir, CONFIG_FILE)} is not a JSON object` };
    }
    return { config: parsed as ModelConfig, problem: undefined };
  } catch (e) {
    return { config: undefined, problem: oneLine(`${join(dir, CONFIG_FILE)} is not valid JSON (${(e as Error).message})`) };
  }
}

async function readIndex(dir: string): Promise<{ weightMap: Map<string, string>; metadata: Record<string, unknown> | undefined }> {
  const path = join(dir, INDEX_FILE);
  const s = await stat(path);
  if (s.size > MAX_INDEX_BYTES) throw new CheckpointError(`${path} is ${s.size} bytes, over the ${MAX_INDEX_BYTES}-byte limit`);
  let parsed: unknown;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
    parsed = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(oneLine(`${path} is not valid JSON (${(e as Error).message})`));
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new CheckpointError(`${path} is not a JSON object`);
  const { weight_map: wm, metadata } = parsed as { weight_map?: unknown; metadata?: unknown };
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) throw new CheckpointError(`${path} has no "weight_map" object`);
  // JSON.parse keeps the last of two equal keys: a tensor mapped twice must not pass unnoticed.
  const duplicate = findDuplicateKey(text, ['weight_map']);
  if (duplicate !== undefined) throw new CheckpointError(`${path}: weight_map lists tensor ${quoteName(duplicate)} more than once`);
  const weightMap = new Map<string, string>();
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard.length === 0) throw new CheckpointError(`${path}: weight_map[${quoteName(name)}] is not a file name`);
    const norm = normalize(shard);
    if (isAbsolute(shard) || norm === '..' || norm.startsWith(`..${sep}`) || shard.includes('\\')) {
      throw new CheckpointError(`${path}: weight_map[${quoteName(name)}] = ${quoteName(shard)} points outside the model folder; refusing to read it`);
    }
    weightMap.set(name, norm.split(sep).join('/'));
  }
  const meta = typeof metadata === 'object' && metadata !== null && !Array.isArray(metadata) ? (metadata as Record<string, unknown>) : undefined;
  return { weightMap, metadata: meta };
}
