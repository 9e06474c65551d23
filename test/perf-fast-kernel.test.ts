// The fast quantize paths against the oracle (fp8/block-quantize.ts): the TypeScript fast kernel,
// the WebAssembly SIMD kernel and the chunk runner must give the same codes, scales and errors on
// every BF16 pattern, rounding ties, subnormals, zero and edge blocks, Inf/NaN, both FP8 formats
// and both scale formats; direct (O_DIRECT) reads and shard writes must give the bytes of plain
// ones, in and out of order; a convert must write the same bytes with 0 (reference executors), 1
// and 2 worker threads; the embedded wasm must be what its source compiles to; and a process that
// converted with workers must exit on its own.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { blockQuantize, NonFiniteValueError, type BlockQuantizeOptions, type BlockShape, type ScaleFormat } from '../src/fp8/block-quantize.js';
import { float32ToBf16Bits, narrowFromFloat32, widenToFloat32 } from '../src/fp8/dtypes.js';
import { FastQuantizeScratch, quantizeBf16StripeFast, quantizeF32StripeFast } from '../src/fp8/fast-quantize.js';
import { decodeTableFor, type Fp8Format } from '../src/fp8/formats.js';
import { WasmBf16Kernel } from '../src/fp8/wasm-kernel.js';
import { WasmRequantizeKernel } from '../src/fp8/wasm-requantize.js';
import { WasmDequantKernel } from '../src/fp8/wasm-dequant.js';
import { countNonFinite } from '../src/io/checkpoint/nonfinite-count.js';
import { requantizeCodes } from '../src/fp8/requantize-codes.js';
import type { Fp8Dtype, ScaleGridSlice } from '../src/fp8/scaled-decode.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import { ChunkScratch, quantizeChunk, referenceChunk, runChunk, type ChunkInput, type ChunkSettings } from '../src/pipeline/quantize-chunk.js';
import { workerExecArgv } from '../src/io/module-worker.js';
import { DirectReads } from '../src/io/safetensors/direct-reads.js';
import { createShardWriter, DIRECT_MIN_BYTES, WriteSlots } from '../src/pipeline/direct-shard-writer.js';
import { SafetensorsWriter } from '../src/io/safetensors/safetensors-writer.js';
import { HashThread } from '../src/pipeline/hash-thread.js';
import { listFiles, sha256File, writeCheckpoint, type TensorData } from './helpers/checkpoint-files.js';
import { ROOT } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

type Outcome = { codes: Uint8Array; scales: Float32Array } | { error: NonFiniteValueError };

const FORMATS: readonly Fp8Format[] = ['e4m3fn', 'e5m2'];
const SCALE_FORMATS: readonly ScaleFormat[] = ['float', 'ue8m0'];

function oracle(values: Float32Array, rows: number, cols: number, opts: BlockQuantizeOptions): Outcome {
  try {
    const q = blockQuantize(values, rows, cols, opts);
    return { codes: q.codes, scales: q.scaleInv };
  } catch (e) {
    if (e instanceof NonFiniteValueError) return { error: e };
    throw e;
  }
}

/** Runs a stripe kernel over every bn-row stripe, as the executors do. */
function byStripes(rows: number, cols: number, block: BlockShape, stripe: (r0: number, n: number, codes: Uint8Array, scales: Float32Array) => void): Outcome {
  const colBlocks = Math.ceil(cols / block.bk);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(Math.ceil(rows / block.bn) * colBlocks);
  try {
    for (let r0 = 0, rb = 0; r0 < rows; r0 += block.bn, rb++) {
      const n = Math.min(block.bn, rows - r0);
      stripe(r0, n, codes.subarray(r0 * cols, (r0 + n) * cols), scales.subarray(rb * colBlocks, (rb + 1) * colBlocks));
    }
  } catch (e) {
    if (e instanceof NonFiniteValueError) return { error: e };
    throw e;
  }
  return { codes, scales };
}

function fastBf16(words: Uint16Array, rows: number, cols: number, opts: BlockQuantizeOptions): Outcome {
  const scratch = new FastQuantizeScratch();
  return byStripes(rows, cols, opts.block, (r0, n, codes, scales) => quantizeBf16StripeFast(words.subarray(r0 * cols, (r0 + n) * cols), n, cols, opts, codes, scales, r0, scratch));
}

function fastF32(values: Float32Array, rows: number, cols: number, opts: BlockQuantizeOptions): Outcome {
  const scratch = new FastQuantizeScratch();
  return byStripes(rows, cols, opts.block, (r0, n, codes, scales) => quantizeF32StripeFast(values.subarray(r0 * cols, (r0 + n) * cols), n, cols, opts, codes, scales, r0, scratch));
}

/** The wasm kernel, or 'declined' if it refused a stripe (it must refuse exactly the non-finite ones). */
function wasmBf16(kernel: WasmBf16Kernel, words: Uint16Array, rows: number, cols: number, opts: BlockQuantizeOptions): Outcome | 'declined' {
  let declined = false;
  const out = byStripes(rows, cols, opts.block, (r0, n, codes, scales) => {
    if (!kernel.quantizeStripe(words.subarray(r0 * cols, (r0 + n) * cols), n, cols, opts, codes, scales)) declined = true;
  });
  return declined ? 'declined' : out;
}

/** quantizeChunk over the whole matrix in chunks of `stripesPerChunk` stripes. */
function chunked(words: Uint16Array, rows: number, cols: number, opts: BlockQuantizeOptions, useWasm: boolean, stripesPerChunk: number): Outcome {
  const scratch = new ChunkScratch(useWasm);
  const colBlocks = Math.ceil(cols / opts.block.bk);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(Math.ceil(rows / opts.block.bn) * colBlocks);
  const settings = { format: opts.format, block: opts.block, scaleFormat: opts.scaleFormat ?? 'float', nonFinite: opts.nonFinite ?? 'error' } as const;
  const chunkRows = stripesPerChunk * opts.block.bn;
  try {
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const n = Math.min(chunkRows, rows - r0);
      const source = words.slice(r0 * cols, (r0 + n) * cols).buffer;
      const out = new ArrayBuffer(n * cols);
      const s = quantizeChunk({ dtype: 'BF16', rows: n, cols, firstRow: r0, settings, source, codes: out }, scratch);
      codes.set(new Uint8Array(out), r0 * cols);
      scales.set(s, (r0 / opts.block.bn) * colBlocks);
    }
  } catch (e) {
    if (e instanceof NonFiniteValueError) return { error: e };
    throw e;
  }
  return { codes, scales };
}

function assertSameOutcome(actual: Outcome, expected: Outcome, what: string): void {
  if ('error' in expected) {
    assert.ok('error' in actual, `${what}: the oracle threw ${expected.error.message}, the fast path did not`);
    assert.equal(actual.error.row, expected.error.row, `${what}: error row`);
    assert.equal(actual.error.col, expected.error.col, `${what}: error column`);
    assert.ok(Object.is(actual.error.value, expected.error.value), `${what}: error value ${actual.error.value} vs ${expected.error.value}`);
    assert.equal(actual.error.message, expected.error.message, what);
    return;
  }
  assert.ok(!('error' in actual), `${what}: unexpected ${'error' in actual ? actual.error.message : ''}`);
  const firstCode = actual.codes.findIndex((c, i) => c !== expected.codes[i]);
  assert.equal(firstCode, -1, `${what}: code ${firstCode} is ${actual.codes[firstCode]}, the oracle's is ${expected.codes[firstCode]}`);
  assert.equal(actual.codes.length, expected.codes.length, `${what}: code count`);
  const firstScale = actual.scales.findIndex((s, i) => !Object.is(s, expected.scales[i]));
  assert.equal(firstScale, -1, `${what}: scale ${firstScale} is ${actual.scales[firstScale]}, the oracle's is ${expected.scales[firstScale]}`);
}

function bf16Values(words: Uint16Array): Float32Array {
  return widenToFloat32(new Uint8Array(words.buffer, words.byteOffset, words.byteLength), 'BF16');
}

/** Checks every fast path on one BF16 matrix under every format, scale format and policy. */
function checkAllPaths(words: Uint16Array, rows: number, cols: number, block: BlockShape, label: string, kernel: WasmBf16Kernel | undefined): void {
  const values = bf16Values(words);
  for (const format of FORMATS) {
    for (const scaleFormat of SCALE_FORMATS) {
      for (const nonFinite of ['error', 'saturate'] as const) {
        const opts: BlockQuantizeOptions = { format, block, scaleFormat, nonFinite };
        const what = `${label} ${format} ${scaleFormat} ${nonFinite} ${block.bn}x${block.bk}`;
        const expected = oracle(values, rows, cols, opts);
        assertSameOutcome(fastBf16(words, rows, cols, opts), expected, `TS BF16 kernel, ${what}`);
        assertSameOutcome(fastF32(values, rows, cols, opts), expected, `TS F32 kernel, ${what}`);
        assertSameOutcome(chunked(words, rows, cols, opts, true, 2), expected, `chunks (wasm where it applies), ${what}`);
        if (kernel && WasmBf16Kernel.supports(cols, block.bk)) {
          const w = wasmBf16(kernel, words, rows, cols, opts);
          const finite = !words.some((x) => (x & 0x7fff) >= 0x7f80);
          if (finite) assert.notEqual(w, 'declined', `wasm kernel declined finite data, ${what}`);
          else assert.equal(w, 'declined', `wasm kernel must decline Inf/NaN, ${what}`);
          if (w !== 'declined') assertSameOutcome(w, expected, `wasm kernel, ${what}`);
        }
      }
    }
  }
}

/** xorshift32 words: reproducible "random" test data. */
function randomWords(count: number, seed: number): Uint32Array {
  const out = new Uint32Array(count);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x;
  }
  return out;
}

const isNonFiniteBf16 = (w: number): boolean => (w & 0x7fff) >= 0x7f80;

describe('fast quantize kernels match the oracle', () => {
  const kernel = WasmBf16Kernel.create();

  it('has WebAssembly SIMD on this Node (else the TypeScript kernel carries everything)', () => {
    assert.ok(kernel, 'WebAssembly SIMD is part of every supported Node (>= 20)');
  });

  it('every one of the 65,536 BF16 patterns, in order and shuffled, with and without Inf/NaN', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const finite = all.map((w) => (isNonFiniteBf16(w) ? 0 : w));
    const order = randomWords(65536, 7);
    const shuffled = finite.slice();
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = order[i]! % (i + 1);
      [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
    }
    for (const block of [
      { bn: 128, bk: 128 },
      { bn: 16, bk: 16 },
      { bn: 7, bk: 48 },
    ]) {
      checkAllPaths(finite, 256, 256, block, 'all finite patterns', kernel);
      checkAllPaths(shuffled, 256, 256, block, 'shuffled finite patterns', kernel);
    }
    checkAllPaths(all, 256, 256, { bn: 128, bk: 128 }, 'all patterns incl. Inf/NaN', kernel);
    checkAllPaths(all, 256, 256, { bn: 32, bk: 64 }, 'all patterns incl. Inf/NaN', kernel);
  });

  it('the WebAssembly kernel rounds every magnitude under 97 block maxima like the oracle (grid add, subnormals, clamp)', () => {
    assert.ok(kernel);
    // Each block holds every finite BF16 magnitude up to its maximum (sampled evenly when there are
    // more than fit), half of them negative: all rounding cases of one scale, incl. the subnormal
    // grid and the values that round past ±max.
    const block = { bn: 128, bk: 128 };
    const maxima = Array.from({ length: 97 }, (_, i) => 1 + Math.round((i / 96) * (0x7f7f - 1)));
    const cols = maxima.length * 128;
    const words = new Uint16Array(128 * cols);
    maxima.forEach((amax, b) => {
      for (let i = 0; i < 128 * 128; i++) {
        const magnitude = i === 0 ? amax : Math.floor(((i - 1) * (amax + 1)) / (128 * 128 - 1));
        words[(i >> 7) * cols + b * 128 + (i & 127)] = magnitude | (i & 1 ? 0x8000 : 0);
      }
    });
    const values = bf16Values(words);
    for (const format of FORMATS) {
      for (const scaleFormat of SCALE_FORMATS) {
        const opts: BlockQuantizeOptions = { format, block, scaleFormat };
        const w = wasmBf16(kernel, words, 128, cols, opts);
        assert.notEqual(w, 'declined');
        if (w !== 'declined') assertSameOutcome(w, oracle(values, 128, cols, opts), `${format}, ${scaleFormat} scales`);
      }
    }
  });

  it('rounding ties: every midpoint between adjacent FP8 values, at scale 1 and ±1 ulp around it', () => {
    for (const format of FORMATS) {
      const decode = decodeTableFor(format);
      const max = format === 'e4m3fn' ? 448 : 57344;
      const words: number[] = [];
      for (let c = 0; c < 0x7f; c++) {
        const lo = decode[c]!;
        const hi = decode[c + 1]!;
        if (!Number.isFinite(hi) || hi > max) continue;
        const mid = float32ToBf16Bits((lo + hi) / 2);
        words.push(mid, mid - 1, mid + 1, mid | 0x8000);
      }
      // One ±max per 16-column block row keeps every block's scale exactly 1 (ue8m0: also 1).
      const cols = 64;
      const rows = Math.ceil(words.length / (cols - 4));
      const matrix = new Uint16Array(rows * cols);
      let k = 0;
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) matrix[r * cols + c] = c % 16 === 0 ? float32ToBf16Bits(c % 32 === 0 ? max : -max) : (words[k++ % words.length] ?? 0);
      }
      checkAllPaths(matrix, rows, cols, { bn: 1, bk: 16 }, `${format} ties`, kernel);
    }
  });

  it('subnormal sources, signed zeros, all-zero blocks and tiny blocks', () => {
    const cols = 64;
    const rows = 40;
    const m = new Uint16Array(rows * cols);
    const rnd = randomWords(m.length, 11);
    for (let i = 0; i < m.length; i++) {
      const r = Math.floor(i / cols);
      if (r < 8)
        m[i] = rnd[i]! & 0x807f; // BF16 subnormals (exponent 0), both signs
      else if (r < 16)
        m[i] = i % 2 ? 0x8000 : 0; // ±0 only: scale 1, codes 0x00 / 0x80
      else if (r < 24)
        m[i] = (rnd[i]! & 0x80ff) | 0x0080; // smallest normals
      else m[i] = rnd[i]! & 0xbfff; // anything finite below 2
    }
    for (const block of [
      { bn: 8, bk: 16 },
      { bn: 128, bk: 128 },
      { bn: 3, bk: 32 },
    ])
      checkAllPaths(m, rows, cols, block, 'subnormal/zero', kernel);
  });

  it('edge blocks: rows and columns that are not multiples of the block', () => {
    const rnd = randomWords(130 * 50, 3);
    const words = Uint16Array.from(rnd, (x) => float32ToBf16Bits((((x >>> 8) / 2 ** 24) * 2 - 1) * 2 ** ((x & 15) - 8)));
    checkAllPaths(words, 130, 50, { bn: 128, bk: 16 }, 'edge [130, 50]', kernel); // 50 columns: TS kernel
    checkAllPaths(words.subarray(0, 130 * 48), 130, 48, { bn: 128, bk: 32 }, 'edge [130, 48]', kernel); // last block 16 wide: wasm
    checkAllPaths(words.subarray(0, 5 * 3), 5, 3, { bn: 2, bk: 2 }, 'edge [5, 3]', kernel);
  });

  it('Inf and NaN: the same first offender (block order, not row order), or the same saturated bytes', () => {
    const rows = 10;
    const cols = 256;
    const base = Uint16Array.from(randomWords(rows * cols, 5), (x) => x & 0x3fff);
    const cases: Array<[string, Array<[number, number, number]>]> = [
      [
        'Inf in block 0 after NaN in block 1',
        [
          [3, 200, 0x7fc0],
          [5, 100, 0x7f80],
        ],
      ],
      [
        '-Inf and NaN in one block',
        [
          [9, 17, 0xff80],
          [2, 40, 0xffc1],
        ],
      ],
      ['NaN only in the last column', [[0, 255, 0x7fff]]],
    ];
    for (const [label, hits] of cases) {
      const m = base.slice();
      for (const [r, c, w] of hits) m[r * cols + c] = w;
      checkAllPaths(m, rows, cols, { bn: 128, bk: 128 }, label, kernel);
      checkAllPaths(m, rows, cols, { bn: 4, bk: 64 }, label, kernel);
    }
  });

  it('random float32 sources (F16/F32/F64 path): wide exponents, subnormals, ties at scale 1', () => {
    const rows = 96;
    const cols = 80;
    const bits = randomWords(rows * cols, 13).map((x) => {
      const e = (x >>> 23) & 0xff;
      return e === 0xff ? x & 0x807fffff : x; // keep finite; f32 subnormals stay
    });
    const values = new Float32Array(bits.buffer);
    for (const format of FORMATS) {
      for (const scaleFormat of SCALE_FORMATS) {
        for (const block of [
          { bn: 128, bk: 128 },
          { bn: 16, bk: 32 },
          { bn: 5, bk: 7 },
        ]) {
          const opts: BlockQuantizeOptions = { format, block, scaleFormat, nonFinite: 'error' };
          assertSameOutcome(fastF32(values, rows, cols, opts), oracle(values, rows, cols, opts), `F32 ${format} ${scaleFormat} ${block.bn}x${block.bk}`);
        }
      }
    }
  });

  it('the embedded wasm module is what wasm/fp8-kernel.ts compiles to (npm run build:wasm)', async () => {
    // Plain node, not tsx: see scripts/build-wasm.mjs.
    const child = spawn(process.execPath, [join(ROOT, 'scripts', 'build-wasm.mjs'), '--check'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((res) => child.on('close', res));
    assert.equal(code, 0, out);
  });
});

describe('direct I/O', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir('perf-direct');
  });
  after(() => tmp.cleanup());

  const planned = [
    { name: 'a', dtype: 'U8' as const, shape: [5000] },
    { name: 'b', dtype: 'U8' as const, shape: [12345] },
    { name: 'c', dtype: 'U8' as const, shape: [3] },
    { name: 'd', dtype: 'U8' as const, shape: [20000] },
  ];
  const data = new Map(planned.map((t, i) => [t.name, Uint8Array.from(randomWords(t.shape[0]!, 20 + i), (x) => x & 0xff)]));

  /** Writes `pieces` ([tensor, start, end]) with `slots` (undefined: plain writer), returns the file. */
  async function writeWith(file: string, slots: WriteSlots | undefined, pieces: Array<[string, number, number]>): Promise<Buffer> {
    const w = await createShardWriter(join(tmp.path, file), planned, { format: 'pt' }, slots, undefined, 0);
    if (slots) assert.ok(!(w instanceof SafetensorsWriter), 'the temp dir takes O_DIRECT, so the direct writer is used');
    for (const [name, a, b] of pieces) await w.write(name, data.get(name)!.subarray(a, b), a);
    await w.finish();
    return readFile(join(tmp.path, file));
  }

  const inOrder: Array<[string, number, number]> = [
    ['a', 0, 5000],
    ['b', 0, 7000],
    ['b', 7000, 12345],
    ['c', 0, 3],
    ['d', 0, 9999],
    ['d', 9999, 20000],
  ];

  it('writes the same file as SafetensorsWriter, across slot boundaries, in order and out of order', async () => {
    const expected = await writeWith('plain.safetensors', undefined, inOrder);
    // Small slots: every slot boundary and the padded, truncated tail are crossed many times.
    const slots = WriteSlots.create(3, 8192);
    assert.ok(slots);
    assert.deepEqual(await writeWith('direct.safetensors', slots, inOrder), expected);
    const shuffled: Array<[string, number, number]> = [
      ['a', 0, 5000],
      ['b', 0, 7000],
      ['d', 9999, 20000],
      ['c', 0, 3],
      ['b', 7000, 12345],
      ['d', 0, 9999],
    ];
    assert.deepEqual(await writeWith('mixed.safetensors', slots, shuffled), expected, 'writes out of order land at their offsets');
  });

  it('writes the same file whatever the order, with writes at once and more streams than slots', async () => {
    const expected = await readFile(join(tmp.path, 'plain.safetensors'));
    // Every tensor cut in pieces of random sizes; each tensor's pieces in order (one stream each),
    // the tensors' pieces interleaved at random and written concurrently, as the lanes do.
    for (const [seed, slotCount] of [
      [1, 2],
      [2, 3],
      [3, 5],
      [4, 2],
    ] as const) {
      const rand = randomWords(400, 90 + seed);
      let r = 0;
      const next = (n: number): number => rand[r++ % rand.length]! % n;
      const cuts = planned.map((t) => {
        const pieces: Array<[number, number]> = [];
        for (let a = 0; a < t.shape[0]!; ) {
          const b = Math.min(t.shape[0]!, a + 1 + next(6000));
          pieces.push([a, b]);
          a = b;
        }
        return { name: t.name, pieces };
      });
      const file = `lanes-${seed}.safetensors`;
      const w = await createShardWriter(join(tmp.path, file), planned, { format: 'pt' }, WriteSlots.create(slotCount, 8192), undefined, 0);
      assert.ok(w.endStream, 'the direct writer ends streams on request');
      await Promise.all(
        cuts.map(async ({ name, pieces }, i) => {
          // Seed 4 starts every writer at once: more writes under way than slots from the first byte.
          if (seed !== 4) await new Promise((res) => setTimeout(res, next(3)));
          for (const [a, b] of pieces) await w.write(name, data.get(name)!.subarray(a, b), a);
          // Half the tensors end their stream, the rest are left to finish().
          if (i % 2 === seed % 2) {
            const at = w.layout.offsets.get(name)!;
            w.endStream?.(at.fileOffset + at.byteLength);
          }
        }),
      );
      await w.finish();
      assert.deepEqual(await readFile(join(tmp.path, file)), expected, `seed ${seed}, ${slotCount} slots`);
    }
  });

  it('hashes what it writes on the hash thread, in order or not', async () => {
    const hashing = new HashThread();
    try {
      for (const [file, pieces] of [
        ['h1.safetensors', inOrder],
        ['h2.safetensors', [...inOrder].reverse()],
      ] as const) {
        const w = await createShardWriter(join(tmp.path, file), planned, { format: 'pt' }, WriteSlots.create(3, 8192), hashing, 0);
        assert.ok(w.digest, 'a direct writer with shared slots hashes the file itself');
        for (const [name, a, b] of pieces) await w.write(name, data.get(name)!.subarray(a, b), a);
        await w.finish();
        assert.equal(await w.digest(), await sha256File(join(tmp.path, file)), file);
      }
    } finally {
      await hashing.close();
    }
  });

  it('reports a missing tensor as SafetensorsWriter does', async () => {
    const slots = WriteSlots.create(2, 4096)!;
    const w = await createShardWriter(join(tmp.path, 'short.safetensors'), planned, undefined, slots, undefined, 0);
    await w.write('a', data.get('a')!, 0);
    await assert.rejects(w.finish(), /tensor "b" got 0 of 12345 bytes/);
  });

  it('reads any byte range as a plain read does, unaligned and longer than one slot', async () => {
    const file = join(tmp.path, 'plain.safetensors');
    const whole = await readFile(file);
    const direct = DirectReads.create(2, 4096);
    assert.ok(direct);
    try {
      for (const [at, n] of [
        [0, 10],
        [1, 4095],
        [4095, 2],
        [100, 9000],
        [whole.byteLength - 7, 7],
        [8, whole.byteLength - 8],
      ] as const) {
        const into = new Uint8Array(n);
        assert.equal(await direct.readInto(file, at, into), true);
        assert.deepEqual(Buffer.from(into), whole.subarray(at, at + n), `range [${at}, ${at + n})`);
      }
      await assert.rejects(direct.readInto(file, whole.byteLength - 4, new Uint8Array(8)), /truncated/);
    } finally {
      await direct.close();
    }
  });
});

describe('convert with worker threads', () => {
  let tmp: TempDir;
  let source: string;
  let model: Map<string, TensorData>;

  /** A Llama-shaped checkpoint whose weights take every path: multi-chunk, F32, odd widths, tiny. */
  function tensors(): Map<string, TensorData> {
    const out = new Map<string, TensorData>();
    let seed = 1;
    const add = (name: string, shape: number[], dtype: 'BF16' | 'F32' = 'BF16'): void => {
      const count = shape.reduce((a, b) => a * b, 1);
      const f = Float32Array.from(randomWords(count, seed++), (x) => (((x >>> 8) / 2 ** 24) * 2 - 1) * 0.05);
      out.set(name, { dtype, shape, bytes: narrowFromFloat32(f, dtype) });
    };
    add('model.embed_tokens.weight', [256, 1024]);
    add('model.norm.weight', [1024]);
    add('lm_head.weight', [256, 1024]);
    const p = 'model.layers.0';
    add(`${p}.input_layernorm.weight`, [1024]);
    add(`${p}.post_attention_layernorm.weight`, [1024]);
    add(`${p}.self_attn.q_proj.weight`, [1024, 1024]); // 2 MiB: one chunk, in a worker
    add(`${p}.self_attn.k_proj.weight`, [256, 1024], 'F32'); // 1 MiB F32: worker, TypeScript kernel
    add(`${p}.self_attn.v_proj.weight`, [256, 1024]); // 512 KiB: main thread
    add(`${p}.self_attn.o_proj.weight`, [1000, 1000]); // width not a multiple of 16; edge blocks
    add(`${p}.mlp.gate_proj.weight`, [2816, 1024]); // 5.5 MiB: two chunks
    add(`${p}.mlp.up_proj.weight`, [2816, 1024]);
    add(`${p}.mlp.down_proj.weight`, [1024, 2816]);
    return out;
  }

  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: 1024,
    intermediate_size: 2816,
    num_attention_heads: 8,
    num_key_value_heads: 2,
    head_dim: 128,
    num_hidden_layers: 1,
    vocab_size: 256,
    tie_word_embeddings: false,
  };

  before(async () => {
    tmp = await makeTempDir('perf-threads');
    source = join(tmp.path, 'source');
    model = tensors();
    await writeCheckpoint(source, model, { config, shards: 2 });
  });
  after(() => tmp.cleanup());

  it('--threads 0 (reference executors), 1 and 2 write byte-identical files, with correct SHA-256s, in file order or in lanes', async () => {
    const outputs = new Map<string, Map<string, string>>();
    // With hashShards, entries write in file order (hashed as written); without, copies and
    // quantized entries run in two lanes and write at their offsets out of order.
    for (const [threads, hashShards] of [
      [0, true],
      [1, true],
      [2, true],
      [2, false],
    ] as const) {
      const key = `${threads}${hashShards ? '' : ' lanes'}`;
      const output = join(tmp.path, `out-${threads}-${hashShards}`);
      // One shard over DIRECT_MIN_BYTES (direct writes, hashed on the hash thread), one under.
      const summary = await convertCheckpoint({ input: source, output, threads, maxShardBytes: 10e6, hashShards });
      assert.ok(summary.shards.some((s) => s.bytes >= DIRECT_MIN_BYTES) && summary.shards.some((s) => s.bytes < DIRECT_MIN_BYTES), 'shards on both writers');
      const hashes = new Map<string, string>();
      for (const f of await listFiles(output)) hashes.set(f, await sha256File(join(output, f)));
      for (const s of summary.shards) assert.equal(s.sha256, hashShards ? hashes.get(s.file) : undefined, `summary SHA-256 of ${s.file} (${key})`);
      outputs.set(key, hashes);
    }
    assert.deepEqual(outputs.get('1'), outputs.get('0'), '--threads 1 vs reference executors');
    assert.deepEqual(outputs.get('2'), outputs.get('0'), '--threads 2 vs reference executors');
    assert.deepEqual(outputs.get('2 lanes'), outputs.get('0'), '--threads 2 in lanes vs reference executors');
  });

  /** The model with a BF16 NaN in gate_proj (`[*, 1024]`) at [row, col], written to tmp/`name`. */
  async function withNanInGate(name: string, row: number, col: number): Promise<string> {
    const dir = join(tmp.path, name);
    const gate = model.get('model.layers.0.mlp.gate_proj.weight')!;
    const nanGate = gate.bytes.slice();
    new Uint16Array(nanGate.buffer)[row * 1024 + col] = 0x7fc0;
    await writeCheckpoint(dir, new Map([...model, ['model.layers.0.mlp.gate_proj.weight', { ...gate, bytes: nanGate }]]), { config });
    return dir;
  }

  it('a NaN in a pooled weight fails with the reference message and leaves no output', async () => {
    const bad = await withNanInGate('bad', 2500, 77);
    const messages: string[] = [];
    for (const threads of [0, 2]) {
      const output = join(tmp.path, `bad-out-${threads}`);
      const err = await convertCheckpoint({ input: bad, output, threads }).then(
        () => assert.fail('convert of a NaN weight must fail'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof CheckpointError, `threads ${threads}: ${String(err)}`);
      messages.push(err.message);
      await assert.rejects(readFile(join(output, 'config.json')), 'no output folder after a failed convert');
    }
    assert.match(messages[0]!, /model\.layers\.0\.mlp\.gate_proj\.weight.*non-finite value \(NaN\) at \[2500, 77\], in block \[19, 0\]/);
    assert.equal(messages[1], messages[0]);
  });

  it('with hashing (entries in file order), a NaN found reading ahead is the error reported, not the stopped writer', async () => {
    // An early row: gate_proj fails while down_proj, before it in file order, is still writing.
    const bad = await withNanInGate('bad-early', 2, 77);
    const err = await convertCheckpoint({ input: bad, output: join(tmp.path, 'bad-early-out'), threads: 2, hashShards: true }).then(
      () => assert.fail('convert of a NaN weight must fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof CheckpointError, String(err));
    assert.match(err.message, /model\.layers\.0\.mlp\.gate_proj\.weight.*non-finite value \(NaN\) at \[2, 77\]/);
  });

  it('a process that converted with workers exits on its own (an inline -e script, as the bench runs it)', async () => {
    const output = join(tmp.path, 'child-out');
    const script =
      `const { convertCheckpoint } = await import(${JSON.stringify(join(ROOT, 'src/pipeline/convert-checkpoint.ts'))});\n` +
      `await convertCheckpoint({ input: ${JSON.stringify(source)}, output: ${JSON.stringify(output)}, threads: 2 });\n` +
      `process.stdout.write('converted\\n');\n`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((res) => child.on('close', res));
    clearTimeout(timer);
    assert.equal(code, 0, `child exited with ${code} (killed if null: workers kept it alive)\n${out}`);
    assert.match(out, /converted/);
  });

  it('workers get the loader flags but not the inline script', () => {
    assert.deepEqual(workerExecArgv(['--import', 'tsx', '--input-type=module', '-e', 'code()', '--max-old-space-size=512']), ['--import', 'tsx', '--max-old-space-size=512']);
    assert.deepEqual(workerExecArgv(['--eval=x', '--inspect=9229', '--test', '--enable-source-maps']), ['--enable-source-maps']);
  });
});

describe('requantizing FP8 codes: the WebAssembly and TypeScript codes kernels give the oracle bytes', () => {
  const wasm = WasmRequantizeKernel.create();
  const NAN_CODE = { F8_E4M3: 0x7f, F8_E5M2: 0x7e } as const;

  /** Random codes of `dtype` without NaN/Inf; some target-sized regions all zero or all small (subnormal results). */
  function fp8Codes(rows: number, cols: number, dtype: Fp8Dtype, seed: number): Uint8Array {
    const words = randomWords(rows * cols, seed);
    const codes = new Uint8Array(rows * cols);
    const top = dtype === 'F8_E4M3' ? 0x7e : 0x7b;
    for (let i = 0; i < codes.length; i++) {
      const w = words[i]!;
      const r = Math.floor(i / cols);
      const c = i % cols;
      let m = w % (top + 1);
      if ((r >> 4) % 5 === 1 && (c >> 5) % 3 === 0)
        m = 0; // zero regions
      else if ((r >> 3) % 7 === 2) m &= 0x07; // small magnitudes only
      codes[i] = m | ((w >>> 8) & 0x80);
    }
    return codes;
  }

  /** Source scales of the slice: ordinary, negative, tiny (subnormal products) and powers of two. */
  function gridScales(count: number, seed: number, kind: 'mixed' | 'huge'): Float32Array {
    const words = randomWords(count, seed);
    const s = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const w = words[i]!;
      const pick = w % 8;
      const mant = 1 + (w >>> 8) / 2 ** 24;
      if (kind === 'huge') s[i] = mant * 2 ** 120;
      else if (pick === 0) s[i] = -mant * 1e-3;
      else if (pick === 1) s[i] = mant * 2 ** -140;
      else if (pick === 2) s[i] = 2 ** (((w >>> 4) % 20) - 10);
      else s[i] = mant * 2 ** (((w >>> 4) % 30) - 20);
    }
    return s;
  }

  interface Case {
    readonly rows: number;
    readonly cols: number;
    readonly firstRow: number;
    readonly src: { readonly rowBlock: number; readonly colBlock: number };
    readonly block: BlockShape;
  }

  const CASES: readonly Case[] = [
    { rows: 128, cols: 2048, firstRow: 0, src: { rowBlock: 128, colBlock: 128 }, block: { bn: 64, bk: 64 } },
    { rows: 192, cols: 2100, firstRow: 64, src: { rowBlock: 128, colBlock: 128 }, block: { bn: 64, bk: 32 } },
    { rows: 256, cols: 400, firstRow: 0, src: { rowBlock: 128, colBlock: 128 }, block: { bn: 256, bk: 192 } },
    { rows: 96, cols: 130, firstRow: 48, src: { rowBlock: 128, colBlock: 128 }, block: { bn: 48, bk: 80 } },
    { rows: 128, cols: 2050, firstRow: 64, src: { rowBlock: 32, colBlock: 16 }, block: { bn: 64, bk: 64 } },
    { rows: 40, cols: 37, firstRow: 20, src: { rowBlock: 7, colBlock: 5 }, block: { bn: 10, bk: 9 } },
    { rows: 64, cols: 512, firstRow: 0, src: { rowBlock: 1, colBlock: 512 }, block: { bn: 16, bk: 16 } },
    { rows: 100, cols: 300, firstRow: 0, src: { rowBlock: 128, colBlock: 128 }, block: { bn: 128, bk: 128 } },
  ];

  function sliceOf(c: Case, scales: Float32Array): ScaleGridSlice {
    return { scales, gridCols: Math.ceil(c.cols / c.src.colBlock), rowBlock: c.src.rowBlock, colBlock: c.src.colBlock, firstRow: c.firstRow };
  }

  function sliceScaleCount(c: Case): number {
    const first = Math.floor(c.firstRow / c.src.rowBlock);
    const last = Math.floor((c.firstRow + c.rows - 1) / c.src.rowBlock);
    return (last - first + 1) * Math.ceil(c.cols / c.src.colBlock);
  }

  function settingsOf(block: BlockShape, format: Fp8Format, scaleFormat: ScaleFormat): ChunkSettings {
    return { format, block, scaleFormat, nonFinite: 'error' };
  }

  function viaOracle(codes: Uint8Array, c: Case, dtype: Fp8Dtype, grid: ScaleGridSlice, settings: ChunkSettings): { codes: Uint8Array; scales: Float32Array } {
    const out = new ArrayBuffer(c.rows * c.cols);
    const scales = referenceChunk({
      dtype: 'F32',
      segments: [{ rows: c.rows, byteOffset: 0, dtype, grid }],
      rows: c.rows,
      cols: c.cols,
      firstRow: c.firstRow,
      settings,
      source: codes.slice().buffer,
      codes: out,
    });
    return { codes: new Uint8Array(out), scales };
  }

  function viaKernel(
    which: 'wasm' | 'ts',
    codes: Uint8Array,
    c: Case,
    dtype: Fp8Dtype,
    grid: ScaleGridSlice,
    settings: ChunkSettings,
  ): { codes: Uint8Array; scales: Float32Array } | 'declined' {
    const out = new Uint8Array(c.rows * c.cols);
    const scales = new Float32Array(Math.ceil(c.rows / c.block.bn) * Math.ceil(c.cols / c.block.bk));
    const ok =
      which === 'wasm' ? wasm!.requantize(codes, c.rows, c.cols, dtype, grid, settings, out, scales) : requantizeCodes(codes, c.rows, c.cols, dtype, grid, settings, out, scales);
    return ok ? { codes: out, scales } : 'declined';
  }

  function assertSame(actual: { codes: Uint8Array; scales: Float32Array } | 'declined', expected: { codes: Uint8Array; scales: Float32Array }, what: string): void {
    assert.notEqual(actual, 'declined', `${what}: declined finite input`);
    if (actual === 'declined') return;
    const i = actual.codes.findIndex((x, k) => x !== expected.codes[k]);
    assert.equal(i, -1, `${what}: code ${i} is ${actual.codes[i]}, the oracle's is ${expected.codes[i]}`);
    const j = actual.scales.findIndex((x, k) => !Object.is(x, expected.scales[k]));
    assert.equal(j, -1, `${what}: scale ${j} is ${actual.scales[j]}, the oracle's is ${expected.scales[j]}`);
  }

  it('is available where WebAssembly SIMD is (Node 20 has it)', () => {
    assert.ok(wasm, 'WasmRequantizeKernel.create() returned undefined');
  });

  it('every geometry, both FP8 inputs and outputs, both scale formats: same codes and scales', () => {
    let seed = 1;
    for (const c of CASES) {
      for (const dtype of ['F8_E4M3', 'F8_E5M2'] as const) {
        const codes = fp8Codes(c.rows, c.cols, dtype, seed++);
        const grid = sliceOf(c, gridScales(sliceScaleCount(c), seed++, 'mixed'));
        for (const format of FORMATS) {
          for (const scaleFormat of SCALE_FORMATS) {
            const settings = settingsOf(c.block, format, scaleFormat);
            const what = `${c.rows}x${c.cols} from row ${c.firstRow}, ${c.src.rowBlock}x${c.src.colBlock} ${dtype} → ${c.block.bn}x${c.block.bk} ${format} ${scaleFormat}`;
            const expected = viaOracle(codes, c, dtype, grid, settings);
            assertSame(viaKernel('wasm', codes, c, dtype, grid, settings), expected, `wasm, ${what}`);
            assertSame(viaKernel('ts', codes, c, dtype, grid, settings), expected, `TypeScript, ${what}`);
            for (const useWasm of [true, false]) {
              const out = new ArrayBuffer(c.rows * c.cols);
              const segments = [{ rows: c.rows, byteOffset: 0, dtype, grid }];
              const scales = quantizeChunk(
                { dtype: 'F32', segments, rows: c.rows, cols: c.cols, firstRow: c.firstRow, settings, source: codes.slice().buffer, codes: out },
                new ChunkScratch(useWasm),
              );
              assertSame({ codes: new Uint8Array(out), scales }, expected, `quantizeChunk (wasm ${useWasm}), ${what}`);
            }
          }
        }
      }
    }
  });

  it('declines where the TypeScript kernel declines: NaN/Inf codes, non-finite scales, overflowing products', () => {
    const c = CASES[1]!;
    const settings = settingsOf(c.block, 'e4m3fn', 'float');
    for (const dtype of ['F8_E4M3', 'F8_E5M2'] as const) {
      const clean = fp8Codes(c.rows, c.cols, dtype, 99);
      const scales = gridScales(sliceScaleCount(c), 98, 'mixed');
      const variants: [string, Uint8Array, Float32Array][] = [];
      for (const at of [0, 17, c.cols * 70 + 2099, c.rows * c.cols - 1]) {
        const bad = clean.slice();
        bad[at] = NAN_CODE[dtype] | (at & 1 ? 0x80 : 0);
        variants.push([`NaN/Inf code at ${at}`, bad, scales]);
      }
      if (dtype === 'F8_E5M2') {
        const inf = clean.slice();
        inf[5] = 0x7c;
        variants.push(['Inf code', inf, scales]);
      }
      for (const v of [NaN, Infinity, -Infinity]) {
        const s = scales.slice();
        s[3] = v;
        variants.push([`scale ${v}`, clean, s]);
      }
      variants.push(['products beyond float32', clean, gridScales(sliceScaleCount(c), 97, 'huge')]);
      for (const [what, codes, s] of variants) {
        const grid = sliceOf(c, s);
        assert.equal(viaKernel('ts', codes, c, dtype, grid, settings), 'declined', `TypeScript, ${dtype}, ${what}`);
        assert.equal(viaKernel('wasm', codes, c, dtype, grid, settings), 'declined', `wasm, ${dtype}, ${what}`);
      }
    }
  });
});

describe('dequantizing FP8: the WebAssembly kernel gives the oracle bytes and NaN/Inf count', () => {
  const wasm = WasmDequantKernel.create();

  interface DequantCase {
    readonly rows: number;
    readonly cols: number;
    readonly firstRow: number;
    readonly rowBlock: number;
    readonly colBlock: number;
  }

  const CASES: readonly DequantCase[] = [
    { rows: 128, cols: 2048, firstRow: 0, rowBlock: 128, colBlock: 128 },
    { rows: 192, cols: 2100, firstRow: 64, rowBlock: 128, colBlock: 128 },
    { rows: 96, cols: 130, firstRow: 48, rowBlock: 128, colBlock: 128 },
    { rows: 128, cols: 2050, firstRow: 64, rowBlock: 32, colBlock: 16 },
    { rows: 40, cols: 37, firstRow: 20, rowBlock: 7, colBlock: 5 },
    { rows: 64, cols: 512, firstRow: 0, rowBlock: 1, colBlock: 512 },
    { rows: 33, cols: 100, firstRow: 0, rowBlock: 64, colBlock: 24 },
    { rows: 3, cols: 5, firstRow: 1, rowBlock: 128, colBlock: 128 },
  ];

  /** Every code (NaN and Inf codes included) at random, and the 256 codes in order at the start. */
  function allCodes(n: number, seed: number): Uint8Array {
    const words = randomWords(n, seed);
    const codes = new Uint8Array(n);
    for (let i = 0; i < n; i++) codes[i] = i < 256 ? i : words[i]! & 0xff;
    return codes;
  }

  /** Ordinary, negative, tiny (subnormal and zero outputs), huge (Inf outputs), ue8m0 powers of two, zeros, non-finite. */
  function scalesOf(count: number, seed: number): Float32Array {
    const words = randomWords(count, seed);
    const s = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const w = words[i]!;
      const mant = 1 + (w >>> 8) / 2 ** 24;
      const pick = w % 16;
      if (pick === 0) s[i] = -mant * 1e-3;
      else if (pick === 1) s[i] = mant * 2 ** -130;
      else if (pick === 2) s[i] = 2 ** (((w >>> 4) % 40) - 30);
      else if (pick === 3) s[i] = mant * 2 ** 120;
      else if (pick === 4) s[i] = mant * 2 ** 8;
      else if (pick === 5) s[i] = [0, -0, NaN, Infinity, -Infinity][(w >>> 4) % 5]!;
      else s[i] = mant * 2 ** (((w >>> 4) % 24) - 20);
    }
    return s;
  }

  function input(c: DequantCase, codes: Uint8Array, dtype: Fp8Dtype, grid: ScaleGridSlice, to: 'BF16' | 'F16' | 'F32'): ChunkInput {
    const size = to === 'F32' ? 4 : 2;
    const segments = [{ rows: c.rows, byteOffset: 0, dtype, grid }];
    return {
      dtype: 'F32',
      segments,
      dequantizeTo: to,
      rows: c.rows,
      cols: c.cols,
      firstRow: c.firstRow,
      source: codes.slice().buffer,
      codes: new ArrayBuffer(c.rows * c.cols * size),
    };
  }

  it('is available where WebAssembly SIMD is (Node 20 has it)', () => {
    assert.ok(wasm, 'WasmDequantKernel.create() returned undefined');
  });

  // The scales make the kernel take each of its three per-block modes (a 256-entry lookup for NaN/Inf
  // scales, 128 entries for subnormal outputs, base plus exponent for ordinary scales) in every case.
  it('every geometry and code, both FP8 inputs, BF16/F16/F32 out, every kind of scale: same bytes, same count', () => {
    let seed = 500;
    for (const c of CASES) {
      for (const dtype of ['F8_E4M3', 'F8_E5M2'] as const) {
        const codes = allCodes(c.rows * c.cols, seed++);
        const first = Math.floor(c.firstRow / c.rowBlock);
        const last = Math.floor((c.firstRow + c.rows - 1) / c.rowBlock);
        const gridCols = Math.ceil(c.cols / c.colBlock);
        const grid = { scales: scalesOf((last - first + 1) * gridCols, seed++), gridCols, rowBlock: c.rowBlock, colBlock: c.colBlock, firstRow: c.firstRow };
        for (const to of ['BF16', 'F16', 'F32'] as const) {
          const what = `${c.rows}x${c.cols} from row ${c.firstRow}, ${c.rowBlock}x${c.colBlock} ${dtype} → ${to}`;
          const ref = input(c, codes, dtype, grid, to);
          const expected = runChunk(ref, new ChunkScratch(false), true);
          const expectedBytes = new Uint8Array(ref.codes);
          // Every code appears in cases of 256 elements or more, NaN codes included.
          if (c.rows * c.cols >= 256) assert.ok(expected.nonFinite! > 0, `${what}: the case has NaN/Inf outputs`);
          assert.equal(expected.nonFinite, countNonFinite(expectedBytes, to), `${what}: the oracle's count`);
          if (to !== 'F32') {
            const out = new Uint8Array(c.rows * c.cols * 2);
            const n = wasm!.dequantize(codes, c.rows, c.cols, dtype, grid, to, out);
            const i = out.findIndex((x, k) => x !== expectedBytes[k]);
            assert.equal(i, -1, `wasm, ${what}: byte ${i} is ${out[i]}, the oracle's is ${expectedBytes[i]}`);
            assert.equal(n, expected.nonFinite, `wasm, ${what}: NaN/Inf count`);
          }
          for (const useWasm of [true, false]) {
            const fast = input(c, codes, dtype, grid, to);
            const got = runChunk(fast, new ChunkScratch(useWasm));
            const bytes = new Uint8Array(fast.codes);
            const i = bytes.findIndex((x, k) => x !== expectedBytes[k]);
            assert.equal(i, -1, `runChunk (wasm ${useWasm}), ${what}: byte ${i} is ${bytes[i]}, the oracle's is ${expectedBytes[i]}`);
            assert.equal(got.nonFinite, expected.nonFinite, `runChunk (wasm ${useWasm}), ${what}: NaN/Inf count`);
          }
        }
      }
    }
  });

  it('finite codes and scales: no NaN/Inf counted, and a single NaN code anywhere is counted once', () => {
    const c = CASES[1]!;
    for (const dtype of ['F8_E4M3', 'F8_E5M2'] as const) {
      const codes = allCodes(c.rows * c.cols, 77).map((x) => ((x & 0x7f) >= (dtype === 'F8_E4M3' ? 0x7f : 0x7c) ? x & 0x83 : x));
      const gridCols = Math.ceil(c.cols / c.colBlock);
      const scales = new Float32Array(2 * gridCols).map((_, i) => (1 + i / 7) * 1e-3 * (i % 3 === 0 ? -1 : 1));
      const grid = { scales, gridCols, rowBlock: c.rowBlock, colBlock: c.colBlock, firstRow: c.firstRow };
      const out = new Uint8Array(c.rows * c.cols * 2);
      assert.equal(wasm!.dequantize(codes, c.rows, c.cols, dtype, grid, 'BF16', out), 0, `${dtype}: finite`);
      for (const at of [0, 15, 16, 2099, c.cols * 70 + 2098, c.rows * c.cols - 1]) {
        const bad = codes.slice();
        bad[at] = 0xff;
        assert.equal(wasm!.dequantize(bad, c.rows, c.cols, dtype, grid, 'BF16', out), 1, `${dtype}: NaN code at ${at}`);
        const expected = new Uint8Array(c.rows * c.cols * 2);
        referenceChunk(Object.assign(input(c, bad, dtype, grid, 'BF16'), { codes: expected.buffer }));
        assert.deepEqual(out, expected, `${dtype}: NaN code at ${at}, bytes`);
      }
    }
  });
});
