// Copies a small checkpoint folder with some tensors changed: how the verify tests make a
// deliberately damaged conversion (a scale multiplied, two experts swapped). Every shard is read
// whole, so this is for test-sized checkpoints only.

import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SafetensorsWriter } from '../../src/io/safetensors/safetensors-writer.js';
import type { Dtype } from '../../src/fp8/dtypes.js';
import { readAll } from './fixtures.js';

export interface EditableTensor {
  dtype: string;
  shape: readonly number[];
  bytes: Uint8Array;
}

/**
 * Copies `src` to `dst`; `edit` may change tensors (across all shards) in place, delete them, or
 * add new ones (written into the first shard; a sharded index is not updated, so add only to
 * single-file checkpoints).
 */
export async function copyCheckpointWithEdits(src: string, dst: string, edit: (tensors: Map<string, EditableTensor>) => void): Promise<void> {
  await mkdir(dst, { recursive: true });
  const files = await readdir(src);
  const shards = files.filter((f) => f.endsWith('.safetensors'));
  const all = new Map<string, EditableTensor>();
  const byShard = new Map<string, { names: string[]; metadata: Record<string, string> }>();
  for (const shard of shards) {
    const { tensors, metadata } = await readAll(join(src, shard));
    byShard.set(shard, { names: [...tensors.keys()], metadata });
    for (const [name, t] of tensors) all.set(name, { dtype: t.dtype, shape: t.shape, bytes: t.bytes.slice() });
  }
  const before = new Set(all.keys());
  edit(all);
  const added = [...all.keys()].filter((n) => !before.has(n));
  let first = true;
  for (const [shard, { names: stored, metadata }] of byShard) {
    const names = [...stored.filter((n) => all.has(n)), ...(first ? added : [])];
    first = false;
    const planned = names.map((name) => ({ name, dtype: all.get(name)!.dtype as Dtype, shape: all.get(name)!.shape }));
    const writer = await SafetensorsWriter.create(join(dst, shard), planned, metadata);
    for (const name of names) await writer.write(name, all.get(name)!.bytes);
    await writer.finish();
  }
  for (const f of files) if (!f.endsWith('.safetensors')) await copyFile(join(src, f), join(dst, f));
}

/** Multiplies an F32 tensor by `factor`. */
export function scaleF32(t: EditableTensor, factor: number): void {
  const v = new Float32Array(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength / 4);
  for (let i = 0; i < v.length; i++) v[i] = v[i]! * factor;
}

/** Swaps the bytes of every tensor under prefix `a` with its counterpart under prefix `b`. */
export function swapPrefixes(tensors: Map<string, EditableTensor>, a: string, b: string): void {
  for (const [name, t] of tensors) {
    if (!name.startsWith(`${a}.`)) continue;
    const other = tensors.get(`${b}.${name.slice(a.length + 1)}`);
    if (!other) throw new Error(`no counterpart of ${name} under ${b}`);
    const tmp = t.bytes;
    t.bytes = other.bytes;
    other.bytes = tmp;
  }
}
