// Splitting planned outputs into shards of at most --max-shard-size bytes and writing
// model.safetensors.index.json, in transformers' naming (model-00001-of-00003.safetensors).

import type { PlannedOutput } from '../passes/plan.js';

export interface ShardPlan {
  readonly file: string;
  readonly tensors: readonly PlannedOutput[];
  readonly bytes: number;
}

/**
 * Greedy in the given order; a tensor larger than the limit gets a shard of its own (as
 * transformers does). Groups (an entry's outputs) are never split across shards, so a weight and
 * its scale stay in one file.
 */
export function assignShards(groups: readonly (readonly PlannedOutput[])[], maxShardBytes: number): ShardPlan[] {
  const buckets: PlannedOutput[][] = [];
  let current: PlannedOutput[] = [];
  let currentBytes = 0;
  for (const group of groups) {
    const bytes = group.reduce((s, t) => s + t.byteLength, 0);
    if (current.length > 0 && currentBytes + bytes > maxShardBytes) {
      buckets.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(...group);
    currentBytes += bytes;
  }
  if (current.length > 0 || buckets.length === 0) buckets.push(current);
  const total = buckets.length;
  return buckets.map((tensors, i) => ({
    file: total === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(total).padStart(5, '0')}.safetensors`,
    tensors,
    bytes: tensors.reduce((s, t) => s + t.byteLength, 0),
  }));
}

export interface SafetensorsIndex {
  metadata: { total_size: number };
  weight_map: Record<string, string>;
}

export function buildIndex(shards: readonly ShardPlan[]): SafetensorsIndex {
  // No prototype: a tensor named "__proto__" must become a key, not replace the prototype.
  const weightMap: Record<string, string> = Object.create(null) as Record<string, string>;
  let total = 0;
  const entries: [string, string][] = [];
  for (const s of shards) {
    for (const t of s.tensors) {
      entries.push([t.name, s.file]);
      total += t.byteLength;
    }
  }
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [n, f] of entries) weightMap[n] = f;
  return { metadata: { total_size: total }, weight_map: weightMap };
}
