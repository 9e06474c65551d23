// The FP8 floor of each quantized linear: what re-quantizing that linear's own original weights
// (same block, same FP8 format, same scale format) costs on the same input. A sound conversion
// sits on its floor (fp8q's own conversions exactly: the codes are the same); a damaged one (a
// wrong scale, swapped, transposed or zeroed weights, clipping static activation scales) lies far
// above it, whatever the model, the text or the size of the weights' outliers. So the per-linear
// gate compares error / floor, not error against one fixed number tuned on one model.
//
// The floor linear is built on the host from the original weights (quantized with the kernel
// `convert` uses) and run as an extra probe in the quantized layer's graph, on the original's
// captured input, through the same block-scale GEMM with dynamic per-token activations.

import { ceilDiv, type BlockShape, type ScaleFormat } from '../../fp8/block-quantize.js';
import { dtypeSize, isFloatSourceDtype, widenToFloat32, type Dtype } from '../../fp8/dtypes.js';
import { FastQuantizeScratch, quantizeF32StripeFast } from '../../fp8/fast-quantize.js';
import { decodeTableFor, type Fp8Format } from '../../fp8/formats.js';
import { scaleFormatOfValues } from '../../fp8/scale-format.js';
import { WasmBf16Kernel } from '../../fp8/wasm-kernel.js';
import type { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import type { ExtraProbe, LayerCaptures } from '../models/runner.js';
import type { Fp8Linear, LinearWeight, WeightScope } from '../models/weights.js';
import type { HostBufferPool } from '../models/buffer-pool.js';

export const FLOOR_SUFFIX = '#fp8-floor';

/** How a quantized linear was quantized: what its floor re-quantization must copy. */
export interface FloorSettings {
  readonly block: BlockShape;
  readonly format: Fp8Format;
  readonly scaleFormat: ScaleFormat;
}

const FORMATS: Partial<Record<Dtype, Fp8Format>> = { F8_E4M3: 'e4m3fn', F8_E5M2: 'e5m2' };

/** Settings of an Fp8Linear already loaded (MLA w_uk/w_uv heads). */
export function settingsOf(w: Fp8Linear): FloorSettings {
  return { block: w.block, format: w.weight.format, scaleFormat: scaleFormatOfValues(w.scaleInv.data) };
}

/**
 * Settings of `<module>.weight` in the quantized checkpoint, from its dtype and scale tensor
 * (the scales only: the codes are not read). Undefined when the module has no tensor of its own
 * (stacked experts) or is not FP8.
 */
export async function storedSettings(
  ckpt: Checkpoint,
  module: string,
  blockFor: (module: string, n: number, k: number, scaleShape: readonly number[]) => BlockShape,
): Promise<FloorSettings | undefined> {
  const name = `${module}.weight`;
  if (!ckpt.has(name)) return undefined;
  const info = ckpt.info(name);
  const format = FORMATS[info.dtype];
  if (format === undefined || info.shape.length !== 2) return undefined;
  const scaleName = [`${module}.weight_scale_inv`, `${module}.weight_scale`].find((n) => ckpt.has(n));
  if (scaleName === undefined) return undefined;
  const scaleInfo = ckpt.info(scaleName);
  if (!isFloatSourceDtype(scaleInfo.dtype)) return undefined;
  const bytes = await ckpt.readTensor(scaleName);
  const scales = widenToFloat32(bytes, scaleInfo.dtype, new Float32Array(bytes.byteLength / dtypeSize(scaleInfo.dtype)));
  return { block: blockFor(module, info.shape[0]!, info.shape[1]!, scaleInfo.shape), format, scaleFormat: scaleFormatOfValues(scales) };
}

/** The original weight `[N, K]` in float32 (an FP8 original dequantized). */
export function originalValues(w: LinearWeight): Float32Array {
  if (w.kind === 'dense') return widenToFloat32(w.weight.bytes, w.weight.dtype);
  const [n, k] = w.weight.shape as [number, number];
  const table = decodeTableFor(w.weight.format);
  const kb = ceilDiv(k, w.block.bk);
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    const srow = Math.floor(r / w.block.bn) * kb;
    for (let c = 0; c < k; c++) out[r * k + c] = Math.fround(table[w.weight.codes[r * k + c]!]! * w.scaleInv.data[srow + Math.floor(c / w.block.bk)]!);
  }
  return out;
}

/** `values` `[n, k]` quantized with `settings`, as a linear with dynamic activations. */
export function floorLinear(module: string, values: Float32Array, n: number, k: number, settings: FloorSettings): Fp8Linear {
  const { bn, bk } = settings.block;
  const opts = { format: settings.format, block: settings.block, scaleFormat: settings.scaleFormat, nonFinite: 'saturate' as const };
  const codes = new Uint8Array(n * k);
  const kb = ceilDiv(k, bk);
  const scaleInv = new Float32Array(ceilDiv(n, bn) * kb);
  const scratch = new FastQuantizeScratch();
  for (let r0 = 0, rb = 0; r0 < n; r0 += bn, rb++) {
    const rows = Math.min(bn, n - r0);
    quantizeF32StripeFast(values.subarray(r0 * k, (r0 + rows) * k), rows, k, opts, codes.subarray(r0 * k, (r0 + rows) * k), scaleInv.subarray(rb * kb, (rb + 1) * kb), r0, scratch);
  }
  return asFp8Linear(module, codes, scaleInv, n, k, settings);
}

/** The floor as the FP8 linear it stands for: `[n, k]` codes and their block scales, no bias. */
function asFp8Linear(module: string, codes: Uint8Array, scaleInv: Float32Array, n: number, k: number, settings: FloorSettings): Fp8Linear {
  const { bn, bk } = settings.block;
  return {
    kind: 'fp8',
    module,
    weight: { codes, shape: [n, k], format: settings.format },
    scaleInv: { data: scaleInv, shape: [ceilDiv(n, bn), ceilDiv(k, bk)] },
    block: settings.block,
    bias: undefined,
  };
}

let wasmKernel: WasmBf16Kernel | undefined | null = null;

/**
 * The floor of a BF16 weight through the WebAssembly kernel `convert` uses (bit-identical to the
 * TypeScript one, several times faster); undefined where it does not apply (another dtype, a
 * width the kernel does not cover, Inf/NaN), and the float32 path is taken instead.
 */
export function bf16FloorLinear(module: string, w: LinearWeight, settings: FloorSettings, codesOut?: Uint8Array): Fp8Linear | undefined {
  if (w.kind !== 'dense' || w.weight.dtype !== 'BF16') return undefined;
  const [n, k] = w.weight.shape as [number, number];
  const { bn, bk } = settings.block;
  if (!WasmBf16Kernel.supports(k, bk)) return undefined;
  if (wasmKernel === null) wasmKernel = WasmBf16Kernel.create();
  if (wasmKernel === undefined) return undefined;
  const words = new Uint16Array(w.weight.bytes.buffer, w.weight.bytes.byteOffset, n * k);
  const opts = { format: settings.format, block: settings.block, scaleFormat: settings.scaleFormat };
  const codes = codesOut?.byteLength === n * k ? codesOut : new Uint8Array(n * k);
  const kb = ceilDiv(k, bk);
  const scaleInv = new Float32Array(ceilDiv(n, bn) * kb);
  for (let r0 = 0, rb = 0; r0 < n; r0 += bn, rb++) {
    const rows = Math.min(bn, n - r0);
    const ok = wasmKernel.quantizeStripe(
      words.subarray(r0 * k, (r0 + rows) * k),
      rows,
      k,
      opts,
      codes.subarray(r0 * k, (r0 + rows) * k),
      scaleInv.subarray(rb * kb, (rb + 1) * kb),
    );
    if (!ok) return undefined;
  }
  return asFp8Linear(module, codes, scaleInv, n, k, settings);
}

/**
 * Floor probes for the layer's compared linears that have their own weight tensor in both
 * checkpoints (attention, dense MLPs, per-expert experts, shared experts). Stacked or fused
 * 3-D experts get none: their per-linear error is still gated by the absolute limit.
 */
export async function floorProbes(
  modules: readonly string[],
  captures: LayerCaptures,
  /** `scope()` opens a scope of the original's weights; one per module, closed before the next is read. */
  original: { readonly checkpoint: Checkpoint; scope(): WeightScope },
  quantized: { readonly checkpoint: Checkpoint; blockFor(module: string, n: number, k: number, scaleShape: readonly number[]): BlockShape },
  /** Filled with the modules (and their block rows) whose floor is the stored linear itself: no probe is run for them. */
  sameAsStored?: Map<string, number>,
  /** Buffers for the floor's codes and the stored codes compared with them, given back when they match. */
  pool?: HostBufferPool,
  /** A check already made elsewhere (floor-check.ts): true when the floor is the stored linear, undefined when unknown. */
  checked?: (module: string) => Promise<boolean | undefined>,
): Promise<ExtraProbe[]> {
  const probes: ExtraProbe[] = [];
  for (const module of modules) {
    const capture = captures.get(module);
    if (capture === undefined || !original.checkpoint.has(`${module}.weight`)) continue;
    const settings = await storedSettings(quantized.checkpoint, module, (m, n, k, s) => quantized.blockFor(m, n, k, s));
    if (settings === undefined) continue;
    const answer = sameAsStored === undefined ? undefined : await checked?.(module);
    if (answer === true) {
      sameAsStored!.set(module, settings.block.bn);
      continue;
    }
    // A scope per module: its read buffer is reused by the next module of the same size, so the
    // floors of a layer hold one original weight at a time, not the whole layer's bytes.
    const scope = original.scope();
    try {
      const w = await scope.linear(module);
      const [n, k] = w.weight.shape as [number, number];
      // Its own module name: graphs cache weight values by module.
      const name = `${module}${FLOOR_SUFFIX}`;
      const codesBuffer = pool?.bytes(n * k);
      const floor = bf16FloorLinear(name, w, settings, codesBuffer) ?? floorLinear(name, originalValues(w), n, k, settings);
      // Declined by the WebAssembly kernel: the float32 path made its own codes.
      if (codesBuffer !== undefined && floor.weight.codes !== codesBuffer) pool?.give([codesBuffer]);
      // A floor with the stored codes and scales is the stored linear, and its probe would compute
      // the module's own output bit for bit (same input, same GEMM): not run, it does not hold a
      // second float32 copy of the layer's weights on the CPU (bench/NOTES.md, "Verify").
      // A worker's `false` already answered this comparison: the stored bytes are not read again.
      if (sameAsStored !== undefined && answer === undefined && w.bias === undefined && (await storedEquals(quantized.checkpoint, module, floor, pool))) {
        sameAsStored.set(module, floor.block.bn);
        if (floor.weight.codes === codesBuffer) pool?.give([codesBuffer]);
        continue;
      }
      // The bias is copied: the scope's buffers go back to the pool when it closes, before the probe runs.
      const bias = w.bias === undefined ? undefined : { ...w.bias, bytes: w.bias.bytes.slice() };
      probes.push({ name: `${module}${FLOOR_SUFFIX}`, w: { ...floor, bias }, input: capture.input, rows: capture.rows });
    } finally {
      scope.close();
    }
  }
  return probes;
}

/**
 * Whether what the forward computes with `module`'s stored FP8 linear is said by its codes and its
 * `weight_scale_inv` alone: no bias, no static activation scale, and no compressed-tensors
 * `weight_scale` beside it (the forward may read that one instead). Only then does comparing those
 * bytes with a re-quantization of the original tell whether the floor is the linear itself; the
 * workers' check (floor-check.ts) and storedEquals both ask this, so they cannot drift apart.
 */
export function storedBytesDecideFloor(ckpt: Checkpoint, module: string): boolean {
  return ckpt.has(`${module}.weight_scale_inv`) && !['weight_scale', 'bias', 'input_scale'].some((suffix) => ckpt.has(`${module}.${suffix}`));
}

/** Whether `module`'s stored FP8 linear (storedBytesDecideFloor) has exactly `floor`'s codes and float32 scales. */
async function storedEquals(ckpt: Checkpoint, module: string, floor: Fp8Linear, pool?: HostBufferPool): Promise<boolean> {
  const scaleName = `${module}.weight_scale_inv`;
  if (!storedBytesDecideFloor(ckpt, module)) return false;
  const scaleInfo = ckpt.info(scaleName);
  if (scaleInfo.dtype !== 'F32' || scaleInfo.byteLength !== floor.scaleInv.data.byteLength) return false;
  const scales = await ckpt.readTensor(scaleName);
  if (
    !Buffer.from(scales.buffer, scales.byteOffset, scales.byteLength).equals(
      Buffer.from(floor.scaleInv.data.buffer, floor.scaleInv.data.byteOffset, floor.scaleInv.data.byteLength),
    )
  )
    return false;
  const codes = floor.weight.codes;
  if (ckpt.info(`${module}.weight`).byteLength !== codes.byteLength) return false;
  const buffer = pool?.bytes(codes.byteLength);
  try {
    const stored = await ckpt.readTensor(`${module}.weight`, buffer);
    return Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength).equals(Buffer.from(codes.buffer, codes.byteOffset, codes.byteLength));
  } finally {
    if (buffer !== undefined) pool?.give([buffer]);
  }
}
