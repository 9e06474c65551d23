// Building and reading whole checkpoint folders in tests: re-shard a fixture with an index,
// write a synthetic checkpoint, read every tensor of a (sharded) folder, hash and list files.

import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Dtype } from '../../src/fp8/dtypes.js';
import { Checkpoint } from '../../src/io/checkpoint/checkpoint.js';
import { SafetensorsWriter } from '../../src/io/safetensors/safetensors-writer.js';

export interface TensorData {
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

/** Every tensor of a checkpoint folder (single file or sharded), by name. */
export async function readCheckpointTensors(dir: string): Promise<Map<string, TensorData>> {
  const ckpt = await Checkpoint.open(dir);
  try {
    const out = new Map<string, TensorData>();
    for (const name of ckpt.tensorNames()) {
      const info = ckpt.info(name);
      out.set(name, { dtype: info.dtype, shape: info.shape, bytes: await ckpt.readTensor(name) });
    }
    return out;
  } finally {
    await ckpt.close();
  }
}

/**
 * Write `tensors` as a checkpoint folder: one model.safetensors, or `shards` files named as
 * transformers names them plus model.safetensors.index.json. Tensors are dealt to shards in
 * round-robin order, so every shard mixes layers (as real shards do at their boundaries).
 */
export async function writeCheckpoint(
  dir: string,
  tensors: ReadonlyMap<string, TensorData>,
  opts: { config?: unknown; shards?: number; files?: Record<string, string> } = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const shardCount = opts.shards ?? 1;
  const names = [...tensors.keys()];
  const fileOf = (i: number): string => (shardCount === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(shardCount).padStart(5, '0')}.safetensors`);
  const weightMap: Record<string, string> = Object.create(null) as Record<string, string>; // "__proto__" is a tensor name too
  let total = 0;
  for (let s = 0; s < shardCount; s++) {
    const mine = names.filter((_, i) => i % shardCount === s);
    const planned = mine.map((name) => ({ name, dtype: tensors.get(name)!.dtype, shape: tensors.get(name)!.shape }));
    const w = await SafetensorsWriter.create(join(dir, fileOf(s)), planned, { format: 'pt' });
    for (const name of mine) {
      const bytes = tensors.get(name)!.bytes;
      await w.write(name, bytes, 0);
      weightMap[name] = fileOf(s);
      total += bytes.byteLength;
    }
    await w.finish();
  }
  if (shardCount > 1) {
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  }
  if (opts.config !== undefined) await writeFile(join(dir, 'config.json'), JSON.stringify(opts.config, null, 2));
  for (const [name, text] of Object.entries(opts.files ?? {})) await writeFile(join(dir, name), text);
}

/** A fixture model re-saved as `shards` shards with an index; its other files copied unchanged. */
export async function reshardFixture(srcDir: string, dstDir: string, shards: number): Promise<void> {
  await writeCheckpoint(dstDir, await readCheckpointTensors(srcDir), { shards });
  for (const f of await readdir(srcDir)) {
    if (!f.endsWith('.safetensors')) await copyFile(join(srcDir, f), join(dstDir, f));
  }
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

/** Relative paths of every file under `dir`, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

export async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
}
