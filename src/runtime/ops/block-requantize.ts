// A stored block-scale weight's FP8 values, computed on the device from the original's weights and
// the stored scales: fp8(clamp(w / scale[n / bn, k / bk], ±FP8_MAX)), the conversion's own rule
// (docs/FORMAT.md §2) with the scale it stored. Verify runs it where the floor check has found the
// stored codes and scales to be exactly the original's re-quantization (every byte compared on the
// host, floor-check.ts), so that the quantized checkpoint's codes need not cross to the GPU: 8 of
// the 25 GB a Llama-8B verify sends (bench/NOTES.md). The values are the stored ones on a device
// whose float32 Div and saturating FP8 Cast round as the host does; requantizeSelfTest checks that
// once per process and device before verify relies on it.

import { decodeTableFor, saturateEncode } from '../../fp8/index.js';
import { DataType } from '../onnx/data-type.js';
import { GraphBuilder, type Value } from '../onnx/graph-builder.js';
import type { Device } from '../onnx/session.js';
import { SeededRandom } from './random.js';
import { ceilDiv, checkBlock, emitCast, emitReshape, emitSliceAxis, fp8DataType, fp8Max, staticDims, type BlockShape, type DecodedFp8Value, type Fp8Format } from './types.js';

/** Reference: the FP8 codes of float32 `w` `[n, k]` under the block scales `scale` `[nb, kb]`. */
export function requantizeBlockWeight(w: Float32Array, n: number, k: number, scale: Float32Array, block: BlockShape, format: Fp8Format): Uint8Array {
  const kb = ceilDiv(k, block.bk);
  const codes = new Uint8Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      const s = scale[Math.floor(i / block.bn) * kb + Math.floor(j / block.bk)]!;
      codes[i * k + j] = saturateEncode(Math.fround(w[i * k + j]! / s), format);
    }
  }
  return codes;
}

/**
 * Emits the FP8 values (as float32, `[N, K]`, what the table decode of the stored codes gives) of
 * float32 `w` `[N, K]` under `scale` `[ceil(N/bn), ceil(K/bk)]`. Edge blocks are padded with zeros,
 * which quantize to zero and are cut off again.
 */
export function emitRequantizedBlockWeight(g: GraphBuilder, w: Value, scale: Value, block: BlockShape, format: Fp8Format): DecodedFp8Value {
  checkBlock(block);
  const [n, k] = staticDims(w, 'requantized weight') as [number, number];
  const nb = ceilDiv(n, block.bn);
  const kb = ceilDiv(k, block.bk);
  const [rows, cols] = [nb * block.bn, kb * block.bk];
  const w32 = emitCast(g, w, DataType.FLOAT);
  const padded =
    rows === n && cols === k ? w32 : g.op('Pad', [w32, g.constInt64([0, 0, rows - n, cols - k])], { dtype: DataType.FLOAT, shape: [rows, cols], name: `${w.name}_pad_blocks` });
  const blocks = emitReshape(g, padded, [nb, block.bn, kb, block.bk], [nb, block.bn, kb, block.bk]);
  const s = emitReshape(g, emitCast(g, scale, DataType.FLOAT), [nb, 1, kb, 1], [nb, 1, kb, 1]);
  const quotient = g.op('Div', [blocks, s], { dtype: DataType.FLOAT, shape: blocks.shape, name: `${w.name}_over_scale` });
  const max = fp8Max(format);
  const clamped = g.op('Clip', [quotient, g.constFloat32([-max], []), g.constFloat32([max], [])], {
    dtype: DataType.FLOAT,
    shape: blocks.shape,
    name: `${w.name}_clamped`,
  });
  const values = emitCast(g, emitCast(g, clamped, fp8DataType(format), true), DataType.FLOAT);
  const flat = emitReshape(g, values, [rows, cols], [rows, cols]);
  return { ...emitSliceAxis(g, emitSliceAxis(g, flat, 0, n), 1, k), fp8Format: format };
}

const selfTests = new Map<string, Promise<boolean>>();

/**
 * Whether `device` computes emitRequantizedBlockWeight bit for bit as the host encoder does, on
 * values chosen to catch a different rounding: exact ties between FP8 neighbours under
 * power-of-two scales, saturation, subnormals, signed zeros, and random values under scales that
 * make the division round. Once per process and device and format; false on any difference or
 * error (verify then sends the stored codes, as without it).
 */
export function requantizeSelfTest(device: Device, format: Fp8Format = 'e4m3fn'): Promise<boolean> {
  const key = `${device}:${format}`;
  let result = selfTests.get(key);
  if (result === undefined) {
    result = runSelfTest(device, format).catch(() => false);
    selfTests.set(key, result);
  }
  return result;
}

async function runSelfTest(device: Device, format: Fp8Format): Promise<boolean> {
  const block = { bn: 128, bk: 128 };
  const [n, k] = [256, 384];
  const decode = decodeTableFor(format);
  const finite = Array.from(decode).filter((v) => Number.isFinite(v));
  const rng = new SeededRandom(2026);
  // Block row 0: power-of-two scales, so w / scale is exact and the FP8 rounding alone decides:
  // ties halfway between neighbours, the neighbours themselves, beyond the maximum. Row 1: scales
  // that make the division round, random values at the block's range.
  const scale = Float32Array.of(1, 2 ** -7, 2 ** 5, Math.fround(0.0123), Math.fround(3.7e-4), Math.fround(17.3));
  const sorted = [...new Set(finite)].sort((a, b) => a - b);
  const w = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      const s = scale[Math.floor(i / block.bn) * 3 + Math.floor(j / block.bk)]!;
      let q: number;
      if (i < block.bn) {
        const t = (i * k + j) % (2 * sorted.length + 8);
        if (t < sorted.length - 1) q = (sorted[t]! + sorted[t + 1]!) / 2;
        else if (t < 2 * sorted.length - 1) q = sorted[t - sorted.length + 1]!;
        else q = [fp8Max(format) * 1.07, -fp8Max(format) * 3, 0, -0, 1e-30, -1e-30, 2 ** -20, -(2 ** -20)][t - 2 * sorted.length + 1] ?? 0;
      } else q = rng.normal() * fp8Max(format) * 0.4;
      w[i * k + j] = Math.fround(q * s);
    }
  }
  const g = new GraphBuilder();
  const wv = g.input('w', DataType.FLOAT, [n, k]);
  const sv = g.input('scale', DataType.FLOAT, [2, 3]);
  g.output(emitRequantizedBlockWeight(g, wv, sv, block, format), 'y');
  const { OnnxSession } = await import('../onnx/session.js');
  const session = await OnnxSession.create(g.toBytes(), { device });
  try {
    const out = await session.run({ w: { type: 'float32', data: w, dims: [n, k] }, scale: { type: 'float32', data: scale, dims: [2, 3] } });
    const y = out['y']?.data;
    if (!(y instanceof Float32Array) || y.length !== n * k) return false;
    const codes = requantizeBlockWeight(w, n, k, scale, block, format);
    for (let i = 0; i < y.length; i++) if (!Object.is(y[i], decode[codes[i]!])) return false;
    return true;
  } finally {
    await session.release();
  }
}
