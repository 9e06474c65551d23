// Which quantized tensors a verify run actually checked. Every FP8 tensor of the quantized
// checkpoint must be exercised by some compared linear; the ones that were not (an expert no
// token reached, a quantized lm_head, a tensor of a layout the forward does not read) are listed,
// so a pass means every quantized weight was run. Also: FP8 tensors of modules fp8q's rules keep
// in high precision (the final projection, embeddings, MoE routers), when the original keeps them
// too — quantizing those is a conversion mistake that a model-level metric hardly shows.

import { isFp8Dtype } from '../../fp8/dtypes.js';
import type { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import { isEmbedding, isFinalFc, isMoeRouter } from '../../passes/skip-rules.js';
import { fp8TensorNames } from './checkpoint-pair.js';

/** The module a tensor belongs to: `<module>.weight` → module; stacked / split tensors name themselves. */
function moduleOf(tensor: string): string {
  return tensor.endsWith('.weight') ? tensor.slice(0, -'.weight'.length) : tensor;
}

/**
 * FP8 tensors of `ckpt` no compared module covers. A 3-D tensor (stacked experts `[E, N, K]`,
 * MLA `w_uk`/`w_uv` `[H, …]`) is covered index by index: by `<tensor>.<i>` or by a module under
 * `<parent>.<i>.` (per-expert names of stacked experts); one not fully covered is listed with
 * the indices that were not.
 */
export function unverifiedTensors(ckpt: Checkpoint, compared: ReadonlySet<string>): string[] {
  const prefixes = [...compared];
  const out: string[] = [];
  for (const name of fp8TensorNames(ckpt)) {
    const module = moduleOf(name);
    const shape = ckpt.info(name).shape;
    if (shape.length === 3 && !name.endsWith('.weight')) {
      const parent = name.slice(0, name.lastIndexOf('.'));
      const missing: number[] = [];
      for (let i = 0; i < shape[0]!; i++) {
        if (!compared.has(`${name}.${i}`) && !prefixes.some((p) => p.startsWith(`${parent}.${i}.`))) missing.push(i);
      }
      if (missing.length > 0) {
        out.push(`${name} (${missing.length} of ${shape[0]} not run: ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', …' : ''})`);
      }
      continue;
    }
    if (!compared.has(module)) out.push(name);
  }
  return out;
}

/** FP8 tensors of `quantized` whose module fp8q keeps in the source dtype, and the original does too. */
export function quantizedKeptModules(original: Checkpoint, quantized: Checkpoint, modelIsMoe: boolean): string[] {
  const out: string[] = [];
  for (const name of fp8TensorNames(quantized)) {
    const module = moduleOf(name);
    const shape = quantized.info(name).shape;
    if (!(isFinalFc(module) || isEmbedding(module) || isMoeRouter(module, shape[0] ?? 0, modelIsMoe))) continue;
    if (original.has(name) && isFp8Dtype(original.info(name).dtype)) continue;
    out.push(module);
  }
  return out;
}
