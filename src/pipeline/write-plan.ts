// The one write pipeline of every command that writes a checkpoint (convert, convert --requantize,
// dequant): plan entries in output order → shards (sharding, index) in a staging folder, each
// entry through executeEntry (the stripe driver, on a worker pool or with --threads 0 on the
// reference kernel), then config.json and the companion files, every file synced, and one
// rename. The output folder's rules (lock, --force, stale temporary folders) are output-folder.ts's,
// the companion-file rule is companion-files.ts's, and config.json is written as an edit of the
// source text (config-json.ts). On any failure the staging folder is removed and the error
// explained. Progress is
// counted one way for every plan: each source tensor's bytes once, when the entry that reads it
// first is done with it, so the count ends at exactly the plan's input bytes.

import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PlanEntry, QuantizationSettings } from '../passes/plan.js';
import { Checkpoint, CONFIG_FILE, INDEX_FILE } from '../io/checkpoint/checkpoint.js';
import { copyCompanionFiles } from '../io/checkpoint/companion-files.js';
import { writeEditedConfig, type ConfigChanges } from '../io/checkpoint/config-json.js';
import { createShardWriter, sha256OfFile } from './direct-shard-writer.js';
import type { OutputSink } from './entry-executors.js';
import { explainWriteFailure, StagingFolder } from './output-folder.js';
import { executeEntry } from './plan-executors.js';
import { defaultThreads, QuantizePool } from './quantize-pool.js';
import { assignShards, buildIndex, type ShardPlan } from './shards.js';

export const DEFAULT_MAX_SHARD_BYTES = 5e9;

/** Entries under way at once on the worker pool: the one writing, and the next one reading ahead. */
const ENTRIES_IN_FLIGHT = 2;

export interface WrittenShard {
  readonly file: string;
  readonly bytes: number;
  /** With `hashShards`: the file's SHA-256 (hex). */
  readonly sha256?: string;
}

export type WriteEvent =
  | { readonly type: 'tensor'; readonly name: string; readonly index: number; readonly count: number }
  | { readonly type: 'bytes'; readonly done: number; readonly total: number }
  | { readonly type: 'finalizing' };

export interface WritePlanOptions {
  readonly output: string;
  readonly entries: readonly PlanEntry[];
  /** The plan's quantization settings; absent for a plan that quantizes nothing (dequant). */
  readonly settings?: QuantizationSettings;
  /** Replace an existing output folder that holds a checkpoint (output-folder.ts's rules). */
  readonly force?: boolean;
  /** config.json of the output as edits of the input's (config-json.ts); undefined writes none. */
  readonly config: { readonly sourceIsValid: boolean; readonly changes: ConfigChanges } | undefined;
  /** The input's companion files to copy, as companion-files.ts selected them. */
  readonly companions: readonly string[];
  /** A kept or dequantized tensor that holds NaN/Inf values written as they are (--allow-nonfinite). */
  readonly onNonFiniteKept?: (tensor: string, values: number) => void;
  readonly maxShardBytes?: number;
  /** Worker threads (default: available cores); 0 runs the reference kernel on this thread. */
  readonly threads?: number;
  readonly allowNonFinite?: boolean;
  /** Calibrated static activation scales by module, for `activation-scale` entries. */
  readonly activationScales?: ReadonlyMap<string, Float32Array>;
  /**
   * Compute each shard's SHA-256 while it is written (convert's --json and --report show them).
   * Off unless asked: hashing runs at about disk speed on one core, a core a convert on a small
   * machine otherwise spends quantizing.
   */
  readonly hashShards?: boolean;
  readonly emit: (event: WriteEvent) => void;
}

/** Entries in output order: sorted by first output name, each entry's outputs kept together. */
export function orderEntries(entries: readonly PlanEntry[]): PlanEntry[] {
  return [...entries].sort((a, b) => {
    const x = a.outputs[0]!.name;
    const y = b.outputs[0]!.name;
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

/** Input bytes of a plan: every source tensor once. */
export function planInputBytes(ckpt: Checkpoint, entries: readonly PlanEntry[]): number {
  let total = 0;
  for (const s of new Set(entries.flatMap((e) => e.sources))) total += ckpt.info(s).byteLength;
  return total;
}

/** Output bytes of a plan. */
export function planOutputBytes(entries: readonly PlanEntry[]): number {
  return entries.reduce((sum, e) => sum + e.outputs.reduce((s, o) => s + o.byteLength, 0), 0);
}

/**
 * Progress in source bytes, counted once per source tensor: an entry may report up to the bytes of
 * the sources no earlier entry read (a second reader of kv_b_proj reports nothing), and is topped
 * up to that share when it ends (executors report in their own units: rows, elements, bytes).
 */
class ProgressLedger {
  private readonly counted = new Set<string>();
  private done = 0;

  constructor(
    private readonly ckpt: Checkpoint,
    readonly total: number,
    private readonly emit: (event: WriteEvent) => void,
  ) {}

  /** Runs `fn` with an onBytes callback for `entry`'s share of the progress. */
  async entry(entry: PlanEntry, fn: (onBytes: (n: number) => void) => Promise<void>): Promise<void> {
    let share = 0;
    for (const s of entry.sources) {
      if (this.counted.has(s)) continue;
      this.counted.add(s);
      share += this.ckpt.info(s).byteLength;
    }
    let reported = 0;
    const report = (n: number): void => {
      const step = Math.min(n, share - reported);
      if (step <= 0) return;
      reported += step;
      this.done += step;
      this.emit({ type: 'bytes', done: this.done, total: this.total });
    };
    await fn(report);
    report(share - reported);
  }
}

export async function writePlan(ckpt: Checkpoint, opts: WritePlanOptions): Promise<WrittenShard[]> {
  const entries = orderEntries(opts.entries);
  const shards = assignShards(
    entries.map((e) => e.outputs),
    opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES,
  );
  let staging: StagingFolder | undefined;
  try {
    staging = await StagingFolder.create(opts.output, { force: opts.force ?? false });
    const pool = opts.threads === 0 ? undefined : QuantizePool.start(opts.threads ?? defaultThreads());
    const progress = new ProgressLedger(ckpt, planInputBytes(ckpt, entries), opts.emit);
    const written = await writeShards(ckpt, entries, shards, staging.path, opts, progress, pool).finally(() => pool?.close());
    opts.emit({ type: 'finalizing' });
    if (shards.length > 1) await writeJson(join(staging.path, INDEX_FILE), buildIndex(shards));
    if (opts.config) await writeEditedConfig(ckpt.dir, opts.config.sourceIsValid, join(staging.path, CONFIG_FILE), opts.config.changes);
    await copyCompanionFiles(ckpt.dir, staging.path, opts.companions);
    await staging.commit();
    return written;
  } catch (e) {
    await staging?.discard();
    throw explainWriteFailure(e, opts.output, planOutputBytes(entries));
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Writes every shard, one after another. Without hashing, a shard's entries run in two lanes at
 * once, each lane in file order: copies (disk-bound: the workers idle) and everything else
 * (worker-bound), every write at its final offset (the direct writer takes any order). With
 * `hashShards`, entries write in file order, so each shard is hashed on the way (no second read
 * for the SHA-256).
 */
async function writeShards(
  ckpt: Checkpoint,
  entries: readonly PlanEntry[],
  shards: readonly ShardPlan[],
  dir: string,
  opts: WritePlanOptions,
  progress: ProgressLedger,
  pool: QuantizePool | undefined,
): Promise<WrittenShard[]> {
  const shardOf = new Map<string, number>();
  shards.forEach((s, i) => s.tensors.forEach((t) => shardOf.set(t.name, i)));
  const entriesOf = shards.map(() => [] as PlanEntry[]);
  for (const entry of entries) entriesOf[shardOf.get(entry.outputs[0]!.name)!]!.push(entry);
  const written: WrittenShard[] = [];
  let started = 0;
  const execOpts = {
    ...(opts.settings ? { settings: opts.settings } : {}),
    nonFinite: opts.allowNonFinite ? ('saturate' as const) : ('error' as const),
    ...(pool ? { pool } : {}),
    ...(opts.activationScales ? { activationScales: opts.activationScales } : {}),
    ...(opts.onNonFiniteKept ? { onNonFiniteKept: opts.onNonFiniteKept } : {}),
  };
  for (let si = 0; si < shards.length; si++) {
    const shard = shards[si]!;
    const hash = opts.hashShards === true;
    const writer = await createShardWriter(join(dir, shard.file), shard.tensors, { format: 'pt' }, pool?.writeSlots, hash ? pool?.hashing : undefined);
    // A direct writer hashes the file itself, on another thread (direct-shard-writer.ts).
    const hashing = !hash || writer.digest ? undefined : new SequentialHasher(writer.layout.headerBytes);
    // Once an entry fails, the others' next writes fail too, so they stop instead of running to their end.
    const failure = new FirstFailure();
    const sink: OutputSink = {
      write: async (name, bytes, byteOffset) => {
        if (failure.happened) throw new Error(`${shard.file}: stopped after another tensor failed`);
        // Hash while the bytes go to the file: both are on the critical path of a disk-bound write.
        const writing = writer.write(name, bytes, byteOffset);
        hashing?.add(writer.layout.offsets.get(name)!.fileOffset + byteOffset, bytes);
        await writing;
      },
    };
    const run = (entry: PlanEntry, into: OutputSink): Promise<void> => {
      opts.emit({ type: 'tensor', name: entry.outputs[0]!.name, index: started++, count: entries.length });
      return progress.entry(entry, (onBytes) => executeEntry(entry, ckpt, into, { ...execOpts, onBytes }));
    };
    try {
      if (pool && !hash) {
        await runInLanes(entriesOf[si]!, failure, async (entry) => {
          await run(entry, sink);
          // Its stream's last, partial slot goes out now rather than holding a slot to the end.
          const last = entry.outputs[entry.outputs.length - 1]!;
          const at = writer.layout.offsets.get(last.name)!;
          writer.endStream?.(at.fileOffset + at.byteLength);
        });
      } else {
        await runInOrder(entriesOf[si]!, pool ? ENTRIES_IN_FLIGHT : 1, failure, run, sink);
      }
      await writer.finish();
    } catch (e) {
      await writer.abort();
      throw e;
    }
    const sha256 = hashing ? await hashing.digest(join(dir, shard.file)) : await writer.digest?.();
    written.push({ file: shard.file, bytes: writer.layout.fileSize, ...(sha256 === undefined ? {} : { sha256 }) });
  }
  return written;
}

/**
 * Runs `entries` with up to `inFlight` at once, the next one reading and quantizing while the one
 * before finishes; its writes wait until every earlier entry's are done (`before`), so the file is
 * written in order.
 */
async function runInOrder(
  entries: readonly PlanEntry[],
  inFlight: number,
  failure: FirstFailure,
  run: (entry: PlanEntry, into: OutputSink) => Promise<void>,
  sink: OutputSink,
): Promise<void> {
  const running: Promise<void>[] = [];
  let previous: Promise<void> = Promise.resolve();
  for (const entry of entries) {
    if (failure.happened) break;
    const before = previous;
    const inOrder: OutputSink = inFlight > 1 ? { write: (name, bytes, byteOffset) => before.then(() => sink.write(name, bytes, byteOffset)) } : sink;
    previous = Promise.all([before, run(entry, inOrder)]).then(() => undefined);
    // A failure stops the starting of entries; it is thrown once the running ones end. A later
    // entry reading ahead can fail while an earlier one still writes, which then stops with the
    // sink's secondary error: the first in time is the one recorded.
    previous.catch((error: unknown) => failure.record(error));
    running.push(previous);
    if (running.length >= inFlight) await running.shift()!.catch(() => undefined);
  }
  // Every entry has ended (a failed one's neighbours stop at their next write) before the writer is aborted.
  await Promise.allSettled(running);
  failure.rethrow();
}

/** Entries under way at once in each lane: a copy streams by itself; quantizing overlaps two. */
const LANE_LIMITS = { copy: 1, compute: ENTRIES_IN_FLIGHT } as const;

/**
 * Runs `entries` in two lanes, each in order and at most its LANE_LIMITS at once: copies and the
 * rest. The first failure stops the starting of entries (and, through the sink, the running ones
 * at their next write) and is thrown once the running ones end.
 */
async function runInLanes(entries: readonly PlanEntry[], failure: FirstFailure, run: (entry: PlanEntry) => Promise<void>): Promise<void> {
  const lanes = [
    { queue: entries.filter((e) => e.op === 'copy'), limit: LANE_LIMITS.copy, running: 0 },
    { queue: entries.filter((e) => e.op !== 'copy'), limit: LANE_LIMITS.compute, running: 0 },
  ];
  const running = new Set<Promise<void>>();
  for (;;) {
    for (const lane of lanes) {
      while (!failure.happened && lane.running < lane.limit && lane.queue.length > 0) {
        lane.running++;
        const done: Promise<void> = run(lane.queue.shift()!)
          .catch((error: unknown) => failure.record(error))
          .finally(() => {
            lane.running--;
            running.delete(done);
          });
        running.add(done);
      }
    }
    if (running.size === 0) break;
    await Promise.race(running);
  }
  failure.rethrow();
}

/** The first error of a shard's entries: the one reported; the others are its consequences. */
class FirstFailure {
  private first: { readonly error: unknown } | undefined;

  get happened(): boolean {
    return this.first !== undefined;
  }

  record(error: unknown): void {
    this.first ??= { error };
  }

  rethrow(): void {
    if (this.first) throw this.first.error;
  }
}

/**
 * SHA-256 of a file whose bytes are written in order; if a write ever lands out of order, the
 * hash is computed by reading the finished file instead.
 */
class SequentialHasher {
  private readonly hash = createHash('sha256');
  private cursor: number;
  private inOrder = true;

  constructor(header: Uint8Array) {
    this.hash.update(header);
    this.cursor = header.byteLength;
  }

  add(position: number, bytes: Uint8Array): void {
    if (!this.inOrder) return;
    if (position !== this.cursor) {
      this.inOrder = false;
      return;
    }
    this.hash.update(bytes);
    this.cursor += bytes.byteLength;
  }

  async digest(path: string): Promise<string> {
    return this.inOrder ? this.hash.digest('hex') : sha256OfFile(path);
  }
}
