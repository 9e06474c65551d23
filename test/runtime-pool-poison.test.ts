// Pooled host buffers (buffer-pool.ts) hold stale bytes, and go back to the pool once read: every
// buffer the pool hands out here is filled with NaN bytes (a new one is not zeroed, a reused one
// holds its last user's values), and every buffer given back is filled with NaN bytes at once (as
// its next user would overwrite it). A read of pooled memory its reader did not write first, or
// after the give, changes the result; none does:
//   - verify, paired (12 tokens, 1 token, a batch of 2; read-ahead and the metrics workers; codes
//     re-quantized in the graph) and separate (weights decoded on the host or in the graph, floor
//     codes in pooled buffers), a declined MoE layer between paired ones, and the MoE families;
//   - the forward, a cached decode with resident weights, and both heads in row chunks.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { CachedDecoder } from '../src/runtime/generate/decoder.js';

import { HostBufferPool } from '../src/runtime/models/buffer-pool.js';
import { ModelRunner } from '../src/runtime/models/runner.js';
import { verifyCheckpoints, type VerifyOptions, type VerifyReport } from '../src/runtime/verify/verify-checkpoints.js';
import { MODELS, modelDir } from './helpers/fixtures.js';
import { copyCheckpointWithEdits, scaleF32 } from './helpers/checkpoint-edit.js';
import { useConvertedFixtures } from './helpers/converted-fixtures.js';

const fixtures = useConvertedFixtures('pool-poison');

async function poisoned<T>(fn: () => Promise<T>): Promise<T> {
  const proto = HostBufferPool.prototype as unknown as {
    float32(n: number): Float32Array;
    bytes(n: number): Uint8Array;
    give(views: Iterable<ArrayBufferView>): void;
  };
  const { float32, bytes, give } = proto;
  proto.float32 = function (this: HostBufferPool, n: number) {
    const b = float32.call(this, n);
    new Uint8Array(b.buffer, b.byteOffset, b.byteLength).fill(0xff);
    return b;
  };
  proto.bytes = function (this: HostBufferPool, n: number) {
    const b = bytes.call(this, n);
    new Uint8Array(b.buffer).fill(0xff);
    return b;
  };
  proto.give = function (this: HostBufferPool, views: Iterable<ArrayBufferView>) {
    const list = [...views];
    const parents = (this as unknown as { parents: WeakMap<ArrayBufferView, ArrayBuffer> }).parents;
    const whole: ArrayBuffer[] = [];
    for (const v of list) {
      const parent = parents.get(v);
      const buffer = parent ?? v.buffer;
      if (buffer instanceof ArrayBuffer && (parent !== undefined || (v.byteOffset === 0 && v.byteLength === buffer.byteLength))) whole.push(buffer);
    }
    give.call(this, list);
    for (const b of whole) new Uint8Array(b).fill(0xff);
  };
  try {
    return await fn();
  } finally {
    Object.assign(proto, { float32, bytes, give });
  }
}

function strip(r: VerifyReport): unknown {
  const { seconds: _s, ...rest } = r;
  return rest;
}

// A chosen few of the verify paths (each case runs verify twice): the dense and MoE paired layers at
// 12 and 1 tokens and a batch of 2, read-ahead with a metrics worker, and the separate paths.
const cases: [string, 'llama' | 'mixtral' | 'deepseek_v3', Partial<VerifyOptions>][] = [
  ['llama paired 12', 'llama', { tokens: 12, pairedLayers: true, weightDecode: 'graph' }],
  ['llama separate host 12', 'llama', { tokens: 12, pairedLayers: false }],
  ['mixtral paired 1', 'mixtral', { tokens: 1, pairedLayers: true, weightDecode: 'graph' }],
  [
    'mixtral paired batch 2',
    'mixtral',
    { input: { ids: Int32Array.from({ length: 10 }, (_, i) => (i * 37 + 3) % 200), batch: 2, seq: 5 }, pairedLayers: true, weightDecode: 'graph' },
  ],
  ['deepseek_v3 paired readAhead metrics', 'deepseek_v3', { tokens: 12, pairedLayers: true, weightDecode: 'graph', readAhead: true, metricsThreads: 1 }],
  ['deepseek_v3 separate graph 12', 'deepseek_v3', { tokens: 12, pairedLayers: false, weightDecode: 'graph' }],
];

for (const [what, name, extra] of cases) {
  test(`poisoned pool: verify ${what} reports as with a clean pool`, async () => {
    const opts: VerifyOptions = { original: modelDir(name), quantized: fixtures.converted.get(name)!, seed: 5, floorCheckThreads: 1, intraOpThreads: 1, ...extra };
    const clean = await verifyCheckpoints(opts);
    const dirty = await poisoned(() => verifyCheckpoints(opts));
    assert.deepEqual(strip(dirty), strip(clean));
  });
}

for (const name of ['mixtral'] as const) {
  test(`poisoned pool: forward logits of ${name} as with a clean pool`, async () => {
    const ids = Int32Array.from({ length: 6 }, (_, i) => (i * 53 + 1) % 200);
    const run = async (): Promise<Float32Array> => {
      const r = await ModelRunner.open(modelDir(name), { intraOpThreads: 1, headChunkBytes: 4096 });
      try {
        return await r.forward(ids, { batch: 2, seq: 3 });
      } finally {
        await r.close();
      }
    };
    const clean = await run();
    const dirty = await poisoned(run);
    assert.deepEqual(Array.from(dirty), Array.from(clean));
  });
}

for (const name of ['deepseek_v3'] as const) {
  test(`poisoned pool: cached decode of ${name} (resident weights, one-token MoE steps) as with a clean pool`, async () => {
    const run = async (): Promise<number[]> => {
      const r = await ModelRunner.open(modelDir(name), { intraOpThreads: 1, headChunkBytes: 4096 });
      try {
        r.keepWeightsResident();
        const d = new CachedDecoder(r, 16);
        const out: number[] = [];
        out.push(...(await d.append([5, 17, 33, 2])));
        for (const id of [9, 41, 7]) out.push(...(await d.append([id])));
        return out;
      } finally {
        await r.close();
      }
    };
    const clean = await run();
    const dirty = await poisoned(run);
    assert.deepEqual(dirty, clean);
  });
}

for (const same of [undefined, true, false] as const) {
  test(`poisoned pool: heads of both models in row chunks (sameStoredBytes ${same}) as with a clean pool`, async () => {
    const run = async (): Promise<number[]> => {
      const pool = new HostBufferPool();
      const options = { intraOpThreads: 1, headChunkBytes: 4096, buffers: pool, weightDecode: 'graph' as const };
      const o = await ModelRunner.open(modelDir('llama'), options);
      const q = await ModelRunner.open(fixtures.converted.get('llama')!, options);
      try {
        const ids = Int32Array.from({ length: 6 }, (_, i) => (i * 53 + 1) % 200);
        const ho = await o.embed(ids);
        const hq = await q.embed(ids.map((x) => (x + 1) % 200));
        const [a, b] = await o.heads(ho, 6, { runner: q, hidden: hq, ...(same === undefined ? {} : { sameStoredBytes: same }) });
        return [...a, ...b];
      } finally {
        await o.close();
        await q.close();
      }
    };
    const clean = await run();
    const dirty = await poisoned(run);
    assert.deepEqual(dirty, clean);
  });
}

test('poisoned pool: verify with a declined MoE layer between paired ones as with a clean pool', async () => {
  const damaged = join(fixtures.workDir(), 'mixtral-expert');
  const original = modelDir('mixtral');
  const reference = await verifyCheckpoints({ original, quantized: fixtures.converted.get('mixtral')!, tokens: 12, seed: 5 });
  const target = reference.linears.map((l) => l.module).find((m) => /\.layers\.1\..*experts\.\d+\./.test(m))!;
  await copyCheckpointWithEdits(fixtures.converted.get('mixtral')!, damaged, (t) => scaleF32(t.get(`${target}.weight_scale_inv`)!, 4));
  const opts: VerifyOptions = { original, quantized: damaged, tokens: 12, seed: 5, floorCheckThreads: 1, intraOpThreads: 1, pairedLayers: true, weightDecode: 'graph' };
  const clean = await verifyCheckpoints(opts);
  const dirty = await poisoned(() => verifyCheckpoints(opts));
  assert.deepEqual(strip(dirty), strip(clean));
});

for (const name of ['deepseek_v2', 'gpt_oss'] as const) {
  test(`poisoned pool: verify ${name} (paired where it can) as with a clean pool`, async () => {
    const out = join(fixtures.workDir(), `${name}-fp8`);
    await convertCheckpoint({ input: join(MODELS, name), output: out });
    for (const tokens of [12, 1]) {
      const opts: VerifyOptions = {
        original: join(MODELS, name),
        quantized: out,
        tokens,
        seed: 5,
        floorCheckThreads: 1,
        intraOpThreads: 1,
        pairedLayers: true,
        weightDecode: 'graph',
      };
      const clean = await verifyCheckpoints(opts);
      const dirty = await poisoned(() => verifyCheckpoints(opts));
      assert.deepEqual(strip(dirty), strip(clean), `${tokens} tokens`);
    }
  });
}

for (const name of ['deepseek_v3'] as const) {
  test(`poisoned pool: verify ${name} without floor workers (floor codes in pooled buffers), and paired with codes re-quantized in the graph, as with a clean pool`, async () => {
    for (const extra of [
      { floorCheckThreads: 0, pairedLayers: false },
      { floorCheckThreads: 0, pairedLayers: false, weightDecode: 'graph' },
      { floorCheckThreads: 1, pairedLayers: true, weightDecode: 'graph', requantizeOnDevice: true },
    ] as const) {
      const opts: VerifyOptions = { original: modelDir(name), quantized: fixtures.converted.get(name)!, tokens: 12, seed: 5, intraOpThreads: 1, ...extra };
      const clean = await verifyCheckpoints(opts);
      const dirty = await poisoned(() => verifyCheckpoints(opts));
      assert.deepEqual(strip(dirty), strip(clean), JSON.stringify(extra));
    }
  });
}
