// `--mla-split` output under verify: `self_attn.w_uk` (H, kv_lora, nope) and `self_attn.w_uv`
// (H, v, kv_lora) are what MLC LLM's absorbed MLA path multiplies with (the query's nope part
// into the latent space, and the attention's latent output back to v), and the forward, which
// reads kv_b_proj, never touches them. So each head's w_uk and w_uv is run as a linear of its own
// in the quantized layer's attention graph, on the inputs it sees in the absorbed path, beside
// the original's exact counterpart cut from the original kv_b_proj (dense float32), and the two
// outputs are compared like any other linear:
//   - w_uk[h]: input the original's q_nope of head h (q_b_proj's or q_proj's output columns
//     [h·(nope+rope), h·(nope+rope)+nope)), reference weight kv_b_proj rows of head h's k part,
//     transposed (kv_lora × nope);
//   - w_uv[h]: input the latent kv_b_proj reads (its captured input), reference weight kv_b_proj
//     rows of head h's v part (v × kv_lora).
// Reported module names are `<attn>.w_uk.<h>` and `<attn>.w_uv.<h>`.

import { widenToFloat32 } from '../../fp8/dtypes.js';
import type { MlaAttentionSpec } from '../models/config.js';
import type { MlaPlan } from '../models/layer-plan.js';
import type { ExtraProbe, LayerCaptures } from '../models/runner.js';
import type { DenseLinear, Fp8Linear, LinearWeight, WeightScope } from '../models/weights.js';
import { floorLinear, FLOOR_SUFFIX, settingsOf } from './fp8-floor.js';

export const REFERENCE_SUFFIX = '#reference';

export interface MlaSplitProbes {
  readonly probes: ExtraProbe[];
  /** Module names of the compared heads (each has `${name}${REFERENCE_SUFFIX}` and `${name}${FLOOR_SUFFIX}` probes). */
  readonly modules: { readonly name: string; readonly rows: number }[];
}

/** The split tensors of a layer's attention, when the quantized checkpoint has them. */
export function mlaSplitTensors(has: (name: string) => boolean, plan: MlaPlan): { wUk: string; wUv: string } | undefined {
  const attn = plan.kvB.slice(0, -'.kv_b_proj'.length);
  const wUk = `${attn}.w_uk`;
  const wUv = `${attn}.w_uv`;
  return has(wUk) && has(wUv) ? { wUk, wUv } : undefined;
}

function denseF32(module: string, values: Float32Array, n: number, k: number): DenseLinear {
  return {
    kind: 'dense',
    module,
    weight: { name: module, dtype: 'F32', shape: [n, k], bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) },
    bias: undefined,
  };
}

function columns(data: Float32Array, rows: number, width: number, start: number, count: number): Float32Array {
  const out = new Float32Array(rows * count);
  for (let r = 0; r < rows; r++) out.set(data.subarray(r * width + start, r * width + start + count), r * count);
  return out;
}

/**
 * Probes for every head's w_uk and w_uv: quantized (from `quantizedScope`) and reference (from the
 * original's kv_b_proj in `originalScope`). Undefined when the captures lack q or kv_b_proj.
 */
export async function mlaSplitProbes(
  spec: MlaAttentionSpec,
  plan: MlaPlan,
  tensors: { wUk: string; wUv: string },
  captures: LayerCaptures,
  originalScope: WeightScope,
  quantizedScope: WeightScope,
): Promise<MlaSplitProbes | undefined> {
  const qModule = plan.qB ?? plan.q;
  const qCap = qModule === undefined ? undefined : captures.get(qModule);
  const kvCap = captures.get(plan.kvB);
  if (qCap === undefined || kvCap === undefined) return undefined;
  const { heads, kvLoraRank: lora, qkNopeHeadDim: nope, qkRopeHeadDim: rope, vHeadDim: v } = spec;
  const kvB = await originalScope.linear(plan.kvB);
  const kvBWeight = kvB.kind === 'dense' ? widenToFloat32(kvB.weight.bytes, kvB.weight.dtype) : undefined;
  if (kvBWeight === undefined) return undefined; // an FP8 original: its own split is what it is compared by
  const probes: ExtraProbe[] = [];
  const modules: { name: string; rows: number }[] = [];
  const rows = qCap.rows;
  for (let h = 0; h < heads; h++) {
    const base = h * (nope + v);
    // w_uk[h] = kv_b_proj[k rows of head h]ᵀ: (kv_lora × nope).
    const uk = new Float32Array(lora * nope);
    for (let i = 0; i < nope; i++) for (let j = 0; j < lora; j++) uk[j * nope + i] = kvBWeight[(base + i) * lora + j]!;
    const uv = kvBWeight.slice((base + nope) * lora, (base + nope + v) * lora);
    const qNope = columns(qCap.output, rows, heads * (nope + rope), h * (nope + rope), nope);
    const ukName = `${tensors.wUk}.${h}`;
    const uvName = `${tensors.wUv}.${h}`;
    const qUk = await quantizedScope.stackedExpert(tensors.wUk, h);
    const qUv = await quantizedScope.stackedExpert(tensors.wUv, h);
    const floor = (name: string, w: LinearWeight, values: Float32Array, n: number, k: number, input: Float32Array, r: number): ExtraProbe[] =>
      w.kind === 'fp8' ? [{ name: `${name}${FLOOR_SUFFIX}`, w: floorLinear(`${name}${FLOOR_SUFFIX}`, values, n, k, settingsOf(w as Fp8Linear)), input, rows: r }] : [];
    probes.push(
      { name: ukName, w: qUk, input: qNope, rows },
      { name: `${ukName}${REFERENCE_SUFFIX}`, w: denseF32(`${ukName}${REFERENCE_SUFFIX}`, uk, lora, nope), input: qNope, rows },
      ...floor(ukName, qUk, uk, lora, nope, qNope, rows),
      { name: uvName, w: qUv, input: kvCap.input, rows: kvCap.rows },
      { name: `${uvName}${REFERENCE_SUFFIX}`, w: denseF32(`${uvName}${REFERENCE_SUFFIX}`, uv, v, lora), input: kvCap.input, rows: kvCap.rows },
      ...floor(uvName, qUv, uv, v, lora, kvCap.input, kvCap.rows),
    );
    modules.push({ name: ukName, rows }, { name: uvName, rows: kvCap.rows });
  }
  return { probes, modules };
}
