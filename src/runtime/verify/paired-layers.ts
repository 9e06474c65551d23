// Which layers verify runs as a pair, and what each of their linears is compared with.
//
// A paired layer holds both models' layer in one graph (runner.ts runLayerPair): the quantized
// linears run on the original's activations and are compared with its outputs in the graph, so
// only the hidden states and the comparison sums come back to the host. The report is the one the
// separate runs give (the same metrics, summed in another order). A dense layer is paired where
// both models run it as one graph (CUDA: weights decoded in the graph) and each of its FP8 linears
// needs nothing beyond its own output on the original's input:
//   - no static activation scale (its clipping is counted on the captured input, on the host);
//   - no MLA w_uk/w_uv split (those probes are built from the captured kv_b_proj input);
//   - a floor that is the stored linear itself (the floor check found the same codes and scales),
//     or no floor at all; a floor probe of other codes runs in the separate graphs.
// An MoE layer of per-expert linears is paired the same way, expert by expert (runner.ts
// runMoeLayerPair). Its experts' floor checks are asked for only once the original has routed its
// tokens, for the experts it routed to (the others are not compared); where one of those is not
// the stored linear, the layer runs again as before.
// Any other layer (stacked experts, or a linear that needs more) runs as before: original, then quantized.

import type { LayerPlan } from '../models/layer-plan.js';
import { layerLinears } from '../models/layer-plan.js';
import type { ModelRunner } from '../models/runner.js';
import { ACTIVATION_SCALE_SUFFIX } from './activation-clipping.js';
import { storedSettings } from './fp8-floor.js';
import { mlaSplitTensors } from './mla-split-probes.js';

/** How one FP8 linear of a paired layer is compared. */
export interface PairedComparison {
  /** Output columns per group of the comparison sums: the floor ratio's row block, or all N. */
  readonly columns: number;
  /** 'output': the stored linear is its own floor; undefined: no floor (stacked or missing original weight). */
  readonly floor: 'output' | undefined;
  /** The groups are the floor ratio's row blocks (N larger than one block). */
  readonly perBlock: boolean;
}

/**
 * Whether layer `layer` can run as a pair as far as its tensors say, before any floor check: both
 * models run it as one graph (or as MoE of per-expert linears), and no MLA split or static
 * activation scale needs the separate graphs. Verify queues routed experts' floor checks up front
 * only where this holds: elsewhere the workers would read every expert, routed or not, for nothing.
 */
export function mayPairLayer(original: ModelRunner, quantized: ModelRunner, layer: number, plan: LayerPlan): boolean {
  if (!original.canPairLayer(layer) || !quantized.canPairLayer(layer)) return false;
  if (plan.attention.kind === 'mla' && mlaSplitTensors((n) => quantized.checkpoint.has(n), plan.attention) !== undefined) return false;
  return !layerLinears(plan).some((m) => quantized.isFp8Linear(m) && quantized.checkpoint.has(`${m}.${ACTIVATION_SCALE_SUFFIX}`));
}

/**
 * The comparisons of layer `layer`'s FP8 linears when it can run as a pair, in layerLinears order;
 * undefined when it cannot. `checked` answers the floor check (floor-check.ts); without it no
 * layer is paired (the main thread's own floor comparison runs in the separate graphs).
 */
export async function pairedComparisons(
  original: ModelRunner,
  quantized: ModelRunner,
  layer: number,
  plan: LayerPlan,
  checked: ((module: string) => Promise<boolean | undefined>) | undefined,
): Promise<Map<string, PairedComparison> | undefined> {
  if (checked === undefined || !mayPairLayer(original, quantized, layer, plan)) return undefined;
  const comparisons = new Map<string, PairedComparison>();
  const experts = new Set(plan.mlp.kind === 'moe' ? plan.mlp.experts.flatMap((e) => [e.gate, e.up, e.down]) : []);
  for (const module of layerLinears(plan)) {
    if (!quantized.isFp8Linear(module)) continue;
    const name = `${module}.weight`;
    if (!quantized.checkpoint.has(name)) return undefined;
    const n = quantized.checkpoint.info(name).shape[0]!;
    const settings = original.checkpoint.has(name) ? await storedSettings(quantized.checkpoint, module, (m, rows, k, s) => quantized.weights.blockFor(m, rows, k, s)) : undefined;
    if (settings === undefined) {
      comparisons.set(module, { columns: n, floor: undefined, perBlock: false });
      continue;
    }
    // A routed expert's check is awaited after routing (runLayerPair's expertsChecked).
    if (!experts.has(module) && (await checked(module)) !== true) return undefined;
    const perBlock = n > settings.block.bn;
    comparisons.set(module, { columns: perBlock ? settings.block.bn : n, floor: 'output', perBlock });
  }
  return comparisons;
}
