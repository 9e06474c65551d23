// SessionCache: onnxruntime sessions kept by the model bytes they were created from, so a graph
// that recurs — every decoder layer of a model has the same graph once its weights are inputs
// (models/model-graph.ts) — pays session creation (parsing, graph optimization, kernel setup,
// on CUDA the provider's allocations) once, not once per layer. The least recently used session
// is released beyond `capacity`: a model's layers alternate few distinct graphs (a dense layer's,
// or an MoE layer's attention, expert and combine graphs), and each cached session holds its own
// memory arena.

import { createHash } from 'node:crypto';

import { OnnxSession, type FeedTensor, type HostTensor, type OutputBuffer, type SessionOptions } from './session.js';

export interface SessionCacheStats {
  /** Sessions created (cache misses). */
  created: number;
  /** Runs that found their session in the cache. */
  reused: number;
}

export class SessionCache {
  /** Key → session, in least-recently-used-first order (a Map keeps insertion order). */
  private readonly sessions = new Map<string, OnnxSession>();
  readonly stats: SessionCacheStats = { created: 0, reused: 0 };

  constructor(
    private readonly options: SessionOptions = {},
    readonly capacity = 2,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`session cache capacity must be ≥ 1, got ${capacity}`);
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Runs `model` on `feeds` in the cached session for those bytes, creating it when absent; `into` as OnnxSession.run takes it. */
  async run(model: Uint8Array, feeds: Readonly<Record<string, FeedTensor>>, into?: Readonly<Record<string, OutputBuffer>>): Promise<Record<string, HostTensor>> {
    const key = createHash('sha256').update(model).digest('hex');
    let session = this.sessions.get(key);
    if (session !== undefined) {
      this.sessions.delete(key);
      this.stats.reused++;
    } else {
      // Release before creating: the new session's memory should not add to the evicted one's.
      while (this.sessions.size >= this.capacity) await this.evictOldest();
      session = await OnnxSession.create(model, this.options);
      this.stats.created++;
    }
    this.sessions.set(key, session);
    return session.run(feeds, undefined, into);
  }

  private async evictOldest(): Promise<void> {
    const [key, session] = this.sessions.entries().next().value as [string, OnnxSession];
    this.sessions.delete(key);
    await session.release();
  }

  /** Releases every cached session. The cache stays usable. */
  async clear(): Promise<void> {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of sessions) await s.release();
  }
}
