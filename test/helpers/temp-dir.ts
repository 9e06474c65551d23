// Temporary folders for tests that write checkpoints: one fresh folder per call, removed by the
// returned cleanup (call it in `after`/`finally`), so nothing is left in the OS temp dir.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TempDir {
  readonly path: string;
  cleanup(): Promise<void>;
}

export async function makeTempDir(label: string): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), `fp8q-${label}-`));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Deterministic pseudo-random bytes (xorshift32): test data that is the same on every run. */
export function seededBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
