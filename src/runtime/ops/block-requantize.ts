// A stored block-scale weight's FP8 values, computed on the device from the original's weights and
// the stored scales: fp8(clamp(w / scale[n / bn, k / bk], ±FP8_MAX)), the conversion's own rule
// (docs/FORMAT.md §2) with the scale it stored. Verify runs it where the floor check has found the
// stored codes and scales to be exactly the original's re-quantization (every byte compared on the
// host, floor-check.ts), so that the quantized checkpoint's codes need not cross to the GPU: 8 of
// the 25 GB a Llama-8B verify sends (bench/NOTES.md). The values are the stored ones on a device
// whose float32 Div and saturating FP8 Cast round as the host does; requantizeSelfTest checks that
// once per process and device before verify relies on it.

import { decodeTableFor, roundToBf16, saturateEncode } from '../../fp8/index.js';
import { DataType } from '../onnx/data-type.js';
import { GraphBuilder, type Value } from '../onnx/graph-builder.js';
import type { Device } from '../onnx/session.js';
import { SeededRandom } from './random.js';
import { ceilDiv, checkBlock, emitBlockViews, emitCast, fp8DataType, fp8Max, type BlockShape, type DecodedFp8Value, type Fp8Format } from './types.js';

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
  const view = emitBlockViews(g, w, scale, block);
  const quotient = g.op('Div', [view.blocks, view.scales], { dtype: DataType.FLOAT, shape: view.blocks.shape, name: `${w.name}_over_scale` });
  const max = fp8Max(format);
  const clamped = g.op('Clip', [quotient, g.constFloat32([-max], []), g.constFloat32([max], [])], {
    dtype: DataType.FLOAT,
    shape: view.blocks.shape,
    name: `${w.name}_clamped`,
  });
  return { ...view.unblock(emitCast(g, emitCast(g, clamped, fp8DataType(format), true), DataType.FLOAT)), fp8Format: format };
}

const selfTests = new Map<string, Promise<boolean>>();

/**
 * Whether `device` computes emitRequantizedBlockWeight bit for bit as the host encoder does, on
 * values chosen to catch a different rounding (selfTestInputs): exact ties between FP8 neighbours
 * under power-of-two scales, saturation, FP8 subnormals, signed zeros; BF16 weights under their
 * amax / FP8_MAX scales; quotients on and beside FP8 ties under scales that make the division round
 * (a product with the reciprocal, or a division one ulp off there, differs); float32 subnormal
 * weights and scales. Once per process and device and format; false on any difference or error
 * (verify then sends the stored codes, as without it).
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

/** The self-test's weights `[n, k]` and their scales `[3, 3]`, block 128 × 128 (exported for a device diagnosis: which blocks differ). */
export function selfTestInputs(format: Fp8Format): { w: Float32Array; scale: Float32Array; n: number; k: number; block: BlockShape } {
  const block = { bn: 128, bk: 128 };
  const [n, k] = [384, 384];
  const max = fp8Max(format);
  const finite = Array.from(decodeTableFor(format)).filter((v) => Number.isFinite(v));
  const sorted = [...new Set(finite)].sort((a, b) => a - b);
  const midpoints = sorted.slice(1).map((v, i) => (sorted[i]! + v) / 2);
  const rng = new SeededRandom(2026);
  const w = new Float32Array(n * k);
  const at = (bi: number, bj: number, value: (t: number) => number): void => {
    for (let r = 0; r < block.bn; r++) {
      for (let c = 0; c < block.bk; c++) w[(bi * block.bn + r) * k + bj * block.bk + c] = Math.fround(value(r * block.bk + c));
    }
  };
  // Block row 0: power-of-two scales, so w / scale is exact and the FP8 rounding alone decides:
  // ties halfway between neighbours, the neighbours themselves, beyond the maximum, zeros, values
  // that round to a signed zero.
  const scale = new Float32Array(9);
  const extras = [max * 1.07, -max * 3, 0, -0, 1e-30, -1e-30, 2 ** -20, -(2 ** -20)];
  [1, 2 ** -7, 2 ** 5].forEach((s, bj) => {
    scale[bj] = s;
    at(0, bj, (t) => {
      const i = t % (midpoints.length + sorted.length + extras.length);
      const q = i < midpoints.length ? midpoints[i]! : i < midpoints.length + sorted.length ? sorted[i - midpoints.length]! : extras[i - midpoints.length - sorted.length]!;
      return q * s;
    });
  });
  // Block row 1: BF16 weights under the scale a conversion gives them (amax / FP8_MAX): the
  // quotients a verify meets, among them some that a reciprocal's product rounds otherwise.
  [0.02, 1.5e-3, 4].forEach((sigma, bj) => {
    at(1, bj, () => roundToBf16(rng.normal() * sigma));
    let amax = 0;
    for (let r = 0; r < block.bn; r++) for (let c = 0; c < block.bk; c++) amax = Math.max(amax, Math.abs(w[(block.bn + r) * k + bj * block.bk + c]!));
    scale[3 + bj] = Math.fround(amax / max);
  });
  // Block row 2: quotients on and a few float32 ulps beside FP8 ties under scales that make the
  // division round (a division one ulp off moves some of them across the tie); the last block's
  // scale and weights are float32 subnormals (a device that flushes them to zero differs).
  [Math.fround(0.0123), Math.fround(17.3), Math.fround(3 * 2 ** -140)].forEach((s, bj) => {
    scale[6 + bj] = s;
    at(2, bj, (t) => {
      const m = midpoints[Math.floor(t / 5) % midpoints.length]!;
      return nextFloat32(Math.fround(m * s), (t % 5) - 2);
    });
  });
  return { w, scale, n, k, block };
}

/** The float32 `steps` ulps above `x` (below when negative), stepping through zero. */
function nextFloat32(x: number, steps: number): number {
  const f = new Float32Array([x]);
  const i = new Int32Array(f.buffer);
  for (let s = 0; s < Math.abs(steps); s++) {
    const up = steps > 0;
    if (f[0] === 0) i[0] = up ? 1 : 0x80000001 | 0;
    else if (f[0]! > 0 === up) i[0] = i[0]! + 1;
    else i[0] = i[0]! - 1;
  }
  return f[0]!;
}

/** The self-test on `device`, with `emit` in place of emitRequantizedBlockWeight (its own test gives it a deliberately wrong one). */
export async function runSelfTest(device: Device, format: Fp8Format, emit = emitRequantizedBlockWeight): Promise<boolean> {
  const { w, scale, n, k, block } = selfTestInputs(format);
  const decode = decodeTableFor(format);
  const [nb, kb] = [n / block.bn, k / block.bk];
  const g = new GraphBuilder();
  const wv = g.input('w', DataType.FLOAT, [n, k]);
  const sv = g.input('scale', DataType.FLOAT, [nb, kb]);
  g.output(emit(g, wv, sv, block, format), 'y');
  const { OnnxSession } = await import('../onnx/session.js');
  const session = await OnnxSession.create(g.toBytes(), { device });
  try {
    const out = await session.run({ w: { type: 'float32', data: w, dims: [n, k] }, scale: { type: 'float32', data: scale, dims: [nb, kb] } });
    const y = out['y']?.data;
    if (!(y instanceof Float32Array) || y.length !== n * k) return false;
    const codes = requantizeBlockWeight(w, n, k, scale, block, format);
    for (let i = 0; i < y.length; i++) if (!Object.is(y[i], decode[codes[i]!])) return false;
    return true;
  } finally {
    await session.release();
  }
}
