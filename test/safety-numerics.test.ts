// Non-finite weights and out-of-range values. A NaN/Inf is an error naming the tensor, element
// and block (and nothing is written) unless --allow-nonfinite, which does what README.md says:
// ±Inf → ±FP8_MAX, NaN → 0, both kept out of the block's amax. Values of any magnitude saturate;
// no code is ever NaN or Inf, and no sign ever flips (no wrap-around).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { join } from 'node:path';
import { quantizeStripe, type ScaleFormat } from '../src/fp8/block-quantize.js';
import { narrowFromFloat32, type FloatSourceDtype } from '../src/fp8/dtypes.js';
import { decodeTableFor, fp8FormatInfo, type Fp8Format } from '../src/fp8/formats.js';
import { countNonFinite } from '../src/io/checkpoint/nonfinite-count.js';
import { WasmNonFiniteScan } from '../src/fp8/nonfinite-scan.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import { readCheckpointTensors, writeCheckpoint, type TensorData } from './helpers/checkpoint-files.js';
import { assertNoOutputLeft, assertOneLineFailure, runCli } from './helpers/safety.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

const CONFIG = { architectures: ['LlamaForCausalLM'], model_type: 'llama' };
const UP = 'model.layers.0.mlp.up_proj';

let tmp: TempDir;
let caseNo = 0;
before(async () => {
  tmp = await makeTempDir('numerics');
});
after(async () => tmp.cleanup());

/** Smooth finite values in (-1, 1), with `special` written at [row, col] positions. */
function matrix(rows: number, cols: number, special: readonly [number, number, number][] = []): Float32Array {
  const v = new Float32Array(rows * cols);
  for (let i = 0; i < v.length; i++) v[i] = Math.sin(i * 0.37) * 0.9;
  for (const [r, c, x] of special) v[r * cols + c] = x;
  return v;
}

async function checkpointWith(weight: Float32Array, shape: [number, number], dtype: FloatSourceDtype): Promise<string> {
  const dir = join(tmp.path, `in-${caseNo++}`);
  const tensors = new Map<string, TensorData>([
    [`${UP}.weight`, { dtype, shape, bytes: narrowFromFloat32(weight, dtype) }],
    ['model.norm.weight', { dtype: 'F32', shape: [4], bytes: new Uint8Array(16) }],
  ]);
  await writeCheckpoint(dir, tensors, { config: CONFIG });
  return dir;
}

describe('NaN and Inf in a weight', () => {
  const cases: readonly [string, FloatSourceDtype, [number, number], [number, number, number], string][] = [
    ['NaN in BF16', 'BF16', [256, 256], [130, 200, NaN], 'non-finite value (NaN) at [130, 200], in block [1, 1]'],
    ['+Inf in F32', 'F32', [64, 300], [5, 260, Infinity], 'non-finite value (Infinity) at [5, 260], in block [0, 2]'],
    ['-Inf in F16', 'F16', [200, 130], [199, 129, -Infinity], 'non-finite value (-Infinity) at [199, 129], in block [1, 1]'],
    // 2 MiB: quantized by the worker pool, which must report the same place.
    ['NaN in BF16, in a weight the worker pool quantizes', 'BF16', [1024, 1024], [1000, 1023, NaN], 'non-finite value (NaN) at [1000, 1023], in block [7, 7]'],
  ];
  for (const [label, dtype, shape, special, says] of cases) {
    test(`${label}: an error naming tensor, element and block; nothing written`, async () => {
      const dir = await checkpointWith(matrix(shape[0], shape[1], [special]), shape, dtype);
      const out = join(tmp.path, `out-${caseNo++}`);
      await assert.rejects(convertCheckpoint({ input: dir, output: out }), (e: unknown) => {
        assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${String(e)}`);
        assert.ok(e.message.includes(`tensor "${UP}.weight" (${dtype}[${shape.join(',')}]) has a ${says}`), e.message);
        assert.match(e.message, /pass --allow-nonfinite/);
        return true;
      });
      await assertNoOutputLeft(out);
      const result = await runCli(['convert', dir, '-o', out, '--quiet']);
      assert.equal(result.code, 1);
      assertOneLineFailure(result, `${UP}.weight`, says);
      await assertNoOutputLeft(out);
    });
  }

  for (const format of ['e4m3fn', 'e5m2'] as const) {
    test(`--allow-nonfinite (${format}): ±Inf → ±FP8_MAX, NaN → 0, kept out of amax`, async () => {
      const shape: [number, number] = [4, 8];
      const finite = matrix(4, 8);
      const w = matrix(4, 8, [
        [0, 1, Infinity],
        [2, 3, -Infinity],
        [3, 7, NaN],
      ]);
      const dir = await checkpointWith(w, shape, 'F32');
      const out = join(tmp.path, `out-${caseNo++}`);
      const result = await runCli([
        'convert',
        dir,
        '-o',
        out,
        '--quiet',
        '--allow-nonfinite',
        '--block',
        '4x8',
        '--weight-dtype',
        format === 'e4m3fn' ? 'float8_e4m3fn' : 'float8_e5m2',
      ]);
      assert.equal(result.code, 0, result.stderr);
      const t = await readCheckpointTensors(out);
      const codes = t.get(`${UP}.weight`)!.bytes;
      const scale = new Float32Array(t.get(`${UP}.weight_scale_inv`)!.bytes.slice().buffer)[0]!;
      const { max } = fp8FormatInfo(format);
      const decode = decodeTableFor(format);
      let amax = 0;
      for (let i = 0; i < finite.length; i++) if (![1, 19, 31].includes(i)) amax = Math.max(amax, Math.abs(finite[i]!));
      assert.equal(scale, Math.fround(amax / max), 'scale comes from the finite values only');
      assert.equal(decode[codes[1]!], max);
      assert.equal(decode[codes[2 * 8 + 3]!], -max);
      assert.equal(codes[3 * 8 + 7], 0);
    });
  }
});

/**
 * Codes must be finite, within ±max, of the value's sign; each block's largest value maps to ±max
 * (float scales) or above max/2 (ue8m0 scales round up to a power of two, by less than 2x).
 */
function assertSaturated(values: Float32Array, rows: number, cols: number, format: Fp8Format, codes: Uint8Array, bk: number, scaleFormat: ScaleFormat = 'float'): void {
  const { max } = fp8FormatInfo(format);
  const decode = decodeTableFor(format);
  for (let i = 0; i < codes.length; i++) {
    const q = decode[codes[i]!]!;
    assert.ok(Number.isFinite(q), `${format} [${i}]: code 0x${codes[i]!.toString(16)} is not finite (value ${values[i]})`);
    assert.ok(Math.abs(q) <= max, `${format} [${i}]: |${q}| > ${max}`);
    if (q !== 0) assert.equal(Math.sign(q), Math.sign(values[i]!), `${format} [${i}]: sign flipped for ${values[i]}`);
  }
  for (let c0 = 0; c0 < cols; c0 += bk) {
    let best = 0;
    let at = -1;
    for (let r = 0; r < rows; r++) {
      for (let c = c0; c < Math.min(cols, c0 + bk); c++) {
        const a = Math.abs(values[r * cols + c]!);
        if (a > best) [best, at] = [a, r * cols + c];
      }
    }
    // (A block whose amax / max underflows float32 gets scale 1 and all-zero codes, by design.)
    if (at >= 0 && Math.fround(best / max) > 0) {
      const q = Math.abs(decode[codes[at]!]!);
      if (scaleFormat === 'float') assert.equal(q, max, `${format}: block at column ${c0}: its amax element is not ±${max}`);
      else assert.ok(q > max / 2 && q <= max, `${format} ue8m0: block at column ${c0}: amax element → ${q}`);
    }
  }
}

describe('values beyond the FP8 range saturate, never wrap', () => {
  // float32 extremes: the largest finite, subnormals, values just past 448 and 57344, mixed signs.
  const extremes = [3.4028234663852886e38, -3.4028234663852886e38, 1e-45, -1e-40, 449, -465, 480, 57344, -61440, 65504, 1e30, -1e-30, 0, -0, 1, -1];
  for (const format of ['e4m3fn', 'e5m2'] as const) {
    for (const scaleFormat of ['float', 'ue8m0'] as const) {
      test(`${format}, ${scaleFormat} scales: blocks of extreme magnitudes`, () => {
        const rows = 4;
        const cols = 16;
        const values = new Float32Array(rows * cols);
        for (let i = 0; i < values.length; i++) values[i] = extremes[(i * 7) % extremes.length]! * (i % 3 === 0 ? 1 : 0.5);
        // A block of only tiny values: amax / max underflows float32.
        for (let r = 0; r < rows; r++) for (let c = 12; c < 16; c++) values[r * cols + c] = (r + c) % 2 ? 1e-45 : -1e-45;
        const codes = new Uint8Array(rows * cols);
        const scales = new Float32Array(4);
        quantizeStripe(values, rows, cols, { format, block: { bn: 4, bk: 4 }, scaleFormat }, codes, scales);
        for (const s of scales) assert.ok(Number.isFinite(s) && s > 0, `scale ${s}`);
        assertSaturated(values, rows, cols, format, codes, 4, scaleFormat);
        assert.equal(scales[3], 1, 'an underflowing block gets scale 1');
      });
    }
  }

  test('through convert: an F32 weight holding ±FLT_MAX and subnormals', async () => {
    const rows = 8;
    const cols = 32;
    const w = new Float32Array(rows * cols);
    for (let i = 0; i < w.length; i++) w[i] = extremes[(i * 5) % extremes.length]!;
    const dir = await checkpointWith(w, [rows, cols], 'F32');
    const out = join(tmp.path, `out-${caseNo++}`);
    await convertCheckpoint({ input: dir, output: out, block: { bn: 8, bk: 8 } });
    const t = await readCheckpointTensors(out);
    assertSaturated(w, rows, cols, 'e4m3fn', t.get(`${UP}.weight`)!.bytes, 8);
  });
});

describe('counting NaN/Inf in copied bytes', () => {
  /** One element at a time from its exponent bits: the definition the word scan must agree with. */
  function countByElement(bytes: Uint8Array, dtype: 'BF16' | 'F16' | 'F32' | 'F64'): number {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const layouts: Record<typeof dtype, readonly [number, number, number]> = { BF16: [2, 0, 0x7f80], F16: [2, 0, 0x7c00], F32: [4, 0, 0x7f800000], F64: [8, 4, 0x7ff00000] };
    const [size, hiAt, mask] = layouts[dtype];
    let n = 0;
    for (let i = 0; i + size <= bytes.byteLength; i += size) {
      const hi = size === 2 ? view.getUint16(i + hiAt, true) : view.getUint32(i + hiAt, true);
      if ((hi & mask) === mask) n++;
    }
    return n;
  }

  // Bytes in a WebAssembly.Memory the SIMD scan was made for (as the direct-read slots are) are
  // scanned there: every case runs both ways.
  const { Memory } = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { readonly buffer: ArrayBuffer } } }).WebAssembly;
  const memory = new Memory({ initial: 1, maximum: 1 });
  WasmNonFiniteScan.register(memory);
  const inMemory = (bytes: Uint8Array, at: number): Uint8Array => {
    const view = new Uint8Array(memory.buffer, at, bytes.byteLength);
    view.set(bytes);
    return view;
  };
  const countBoth = (bytes: Uint8Array, dtype: 'BF16' | 'F16' | 'F32' | 'F64', what: string): number => {
    const n = countNonFinite(bytes, dtype);
    assert.equal(countNonFinite(inMemory(bytes, 4096 + (bytes.byteOffset % 16)), dtype), n, `${what}: the same count scanned in wasm memory`);
    return n;
  };

  test('every dtype, aligned or not, odd lengths, values at the edge of the exponent range', () => {
    assert.ok(WasmNonFiniteScan.of(memory.buffer), 'the SIMD scan is available (Node 20 has WebAssembly SIMD)');
    const sizes = { BF16: 2, F16: 2, F32: 4, F64: 8 } as const;
    // Exponent all ones (Inf/NaN, both signs) and the largest finite exponents just below, which
    // a carry-based scan must not mistake for them.
    const specials = {
      BF16: [0x7f80, 0xff80, 0x7fc1, 0x7f7f, 0xff7f, 0x7f00],
      F16: [0x7c00, 0xfc00, 0x7e01, 0x7bff, 0xfbff],
      F32: [0x7f800000, 0xff800000, 0x7fc00001, 0x7f7fffff, 0xff7fffff],
      F64: [0x7ff00000, 0xfff00000, 0x7ff80001, 0x7fefffff, 0xffefffff],
    } as const;
    let seed = 12345;
    const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / 2 ** 24;
    for (const dtype of ['BF16', 'F16', 'F32', 'F64'] as const) {
      const size = sizes[dtype];
      for (const [elements, offset, inject] of [
        [1000, 0, 0],
        [1000, 0, 3],
        [1001, 0, 1],
        [1000, 2, 2],
        [1000, 1, 1],
        [7, 4, 1],
        [0, 0, 0],
      ] as const) {
        const raw = new Uint8Array(offset + elements * size + 3);
        const bytes = raw.subarray(offset, offset + elements * size);
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (let i = 0; i < bytes.length; i++) bytes[i] = (rand() * 256) | 0;
        // Random bytes hold non-finite values by chance; clear their exponents' top bit first.
        const hiAt = size === 8 ? 4 : 0;
        for (let i = 0; i < elements; i++) {
          const at = i * size + hiAt + (size === 2 ? 1 : 3);
          bytes[at] = bytes[at]! & 0xbf;
        }
        // Largest finite values everywhere they fit, then `inject` non-finite ones.
        for (let i = 0; i < elements; i += 5) {
          const s = specials[dtype][3 + (i % (specials[dtype].length - 3))]!;
          if (size === 2) view.setUint16(i * size, s, true);
          else view.setUint32(i * size + hiAt, s, true);
        }
        for (let k = 0; k < inject; k++) {
          const i = Math.min(elements - 1, Math.floor(rand() * elements));
          const s = specials[dtype][k % 3]!;
          if (size === 2) view.setUint16(i * size, s, true);
          else view.setUint32(i * size + hiAt, s, true);
        }
        const want = countByElement(bytes, dtype);
        assert.equal(countBoth(bytes, dtype, `${dtype}, ${elements} elements at offset ${offset}`), want, `${dtype}, ${elements} elements at offset ${offset}`);
        if (inject > 0) assert.ok(want > 0, `${dtype}: the case holds a non-finite value`);
        // One that is all finite goes through the word scan alone.
        if (inject === 0) assert.equal(countNonFinite(bytes, dtype), 0, `${dtype}: all finite`);
      }
      // A single non-finite value in an aligned run of the largest finite values, at each position
      // within a word and each of its patterns: the case a word scan could miss.
      const elements = 64;
      const bytes = new Uint8Array(elements * size);
      const view = new DataView(bytes.buffer);
      const hiAt = size === 8 ? 4 : 0;
      const put = (i: number, s: number): void => (size === 2 ? view.setUint16(i * size, s, true) : view.setUint32(i * size + hiAt, s, true));
      for (const at of [0, 1, 2, 3, 9, 17, 30, 63]) {
        for (let k = 0; k < 3; k++) {
          for (let i = 0; i < elements; i++) put(i, specials[dtype][3 + (i % (specials[dtype].length - 3))]!);
          put(at, specials[dtype][k]!);
          assert.equal(countBoth(bytes, dtype, `${dtype}, element ${at}`), 1, `${dtype}: one non-finite value at element ${at}, pattern ${k}`);
        }
      }
    }
  });
});
