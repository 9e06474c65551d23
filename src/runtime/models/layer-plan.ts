// The modules of one decoder layer, by name, for the spec's family: which linears its attention
// and MLP have, and whether its MLP is dense or MoE. MoE-ness and q/k norms are read from the
// tensors present (a layer is MoE when its router weight exists), which covers DeepSeek's
// first_k_dense_replace and Qwen3-MoE's mlp_only_layers without re-deriving them.

import { ModelConfigError, type ModelSpec } from './config.js';
import type { ModelWeights } from './weights.js';

export interface GqaPlan {
  readonly kind: 'gqa';
  readonly q: string;
  readonly k: string;
  readonly v: string;
  readonly o: string;
  /** Qwen3's per-head RMSNorm weights on q and k. */
  readonly qNorm: string | undefined;
  readonly kNorm: string | undefined;
  /** gpt-oss's per-head attention sink logits. */
  readonly sinks: string | undefined;
}

export interface MlaPlan {
  readonly kind: 'mla';
  /** Without q_lora_rank: one q_proj. */
  readonly q: string | undefined;
  readonly qA: string | undefined;
  readonly qANorm: string | undefined;
  readonly qB: string | undefined;
  readonly kvA: string;
  readonly kvANorm: string;
  readonly kvB: string;
  readonly o: string;
}

export interface MlpNames {
  readonly gate: string;
  readonly up: string;
  readonly down: string;
}

/** Stacked expert tensors `[E, N, K]`: gate rows then up rows per expert, and down. */
export interface StackedExperts {
  readonly gateUp: string;
  readonly down: string;
  /** gpt-oss: stored in × out `[E, K, N]`, gate and up interleaved, with `<tensor>_bias` `[E, N]`. */
  readonly inOut: boolean;
}

export interface MoePlan {
  readonly kind: 'moe';
  readonly router: string;
  readonly scoreBias: string | undefined;
  /**
   * Per-expert module names, also when the checkpoint stores the experts stacked: verify reports
   * and compares experts by these names (the original's), whatever the layout.
   */
  readonly experts: readonly MlpNames[];
  readonly stacked: StackedExperts | undefined;
  readonly shared: MlpNames | undefined;
  readonly sharedGate: string | undefined;
}

export interface DenseMlpPlan extends MlpNames {
  readonly kind: 'dense';
}

export interface LayerPlan {
  readonly index: number;
  readonly prefix: string;
  readonly inputNorm: string;
  readonly postAttentionNorm: string;
  /**
   * Gemma 3's sandwich norms: when present, post_attention_layernorm norms the attention output
   * before its residual add, these norm the MLP's input and output.
   */
  readonly feedforwardNorms: { readonly pre: string; readonly post: string } | undefined;
  readonly attention: GqaPlan | MlaPlan;
  readonly mlp: DenseMlpPlan | MoePlan;
}

function mlpNames(prefix: string, gate: string, up: string, down: string): MlpNames {
  return { gate: `${prefix}.${gate}`, up: `${prefix}.${up}`, down: `${prefix}.${down}` };
}

export function layerPlan(spec: ModelSpec, weights: ModelWeights, index: number): LayerPlan {
  const prefix = `${spec.names.decoder}.layers.${index}`;
  const attn = `${prefix}.self_attn`;
  let attention: GqaPlan | MlaPlan;
  if (spec.attention.kind === 'gqa') {
    const qNorm = `${attn}.q_norm.weight`;
    const kNorm = `${attn}.k_norm.weight`;
    attention = {
      kind: 'gqa',
      q: `${attn}.q_proj`,
      k: `${attn}.k_proj`,
      v: `${attn}.v_proj`,
      o: `${attn}.o_proj`,
      qNorm: weights.has(qNorm) ? qNorm : undefined,
      kNorm: weights.has(kNorm) ? kNorm : undefined,
      sinks: weights.has(`${attn}.sinks`) ? `${attn}.sinks` : undefined,
    };
  } else {
    const lora = spec.attention.qLoraRank !== undefined;
    if (weights.has(`${attn}.w_uk.weight`) && !weights.hasLinear(`${attn}.kv_b_proj`)) {
      throw new ModelConfigError(
        `${weights.checkpoint.dir}: ${attn} stores kv_b_proj split into w_uk/w_uv (--mla-split); the forward reads kv_b_proj only — ` +
          'verify a conversion made without --mla-split',
      );
    }
    attention = {
      kind: 'mla',
      q: lora ? undefined : `${attn}.q_proj`,
      qA: lora ? `${attn}.q_a_proj` : undefined,
      qANorm: lora ? `${attn}.q_a_layernorm.weight` : undefined,
      qB: lora ? `${attn}.q_b_proj` : undefined,
      kvA: `${attn}.kv_a_proj_with_mqa`,
      kvANorm: `${attn}.kv_a_layernorm.weight`,
      kvB: `${attn}.kv_b_proj`,
      o: `${attn}.o_proj`,
    };
  }

  const names = spec.moeNames;
  const block = `${prefix}.${names.block}`;
  const router = `${block}.${names.router}`;
  let mlp: DenseMlpPlan | MoePlan;
  if (spec.routing !== undefined && weights.has(`${router}.weight`)) {
    const experts: MlpNames[] = [];
    const stackedGateUp = `${block}.experts.gate_up_proj`;
    const inOut = spec.gptOssExperts !== undefined;
    const stacked: StackedExperts | undefined = weights.has(stackedGateUp) ? { gateUp: stackedGateUp, down: `${block}.experts.down_proj`, inOut } : undefined;
    const count = stacked ? weights.checkpoint.info(stacked.gateUp).shape[0]! : undefined;
    while (count === undefined ? weights.hasLinear(`${block}.experts.${experts.length}.${names.gate}`) : experts.length < count) {
      experts.push(mlpNames(`${block}.experts.${experts.length}`, names.gate, names.up, names.down));
    }
    if (experts.length === 0) {
      throw new ModelConfigError(
        `${weights.checkpoint.dir}: ${block} has a router but no expert weights (neither ${block}.experts.0.${names.gate}.weight ` + `nor ${stackedGateUp})`,
      );
    }
    if (stacked && !weights.has(stacked.down)) throw new ModelConfigError(`${weights.checkpoint.dir}: ${stacked.gateUp} has no ${stacked.down} beside it`);
    if (stacked) {
      // The forward reads stacked experts as [E, out, in]; down_proj [E, hidden, I] says so even when gate_up_proj is square.
      const down = weights.checkpoint.info(stacked.down).shape;
      if (down[inOut ? 2 : 1] !== spec.hiddenSize) {
        throw new ModelConfigError(
          `${weights.checkpoint.dir}: ${stacked.down} [${down.join(', ')}] is not stored ${inOut ? '[E, I, hidden] (in × out)' : '[E, hidden, I] (out × in)'}, as the forward reads ${spec.family}'s stacked experts`,
        );
      }
    }
    const shared = names.shared !== undefined && weights.hasLinear(`${block}.${names.shared}.gate_proj`) ? names.shared : undefined;
    const sharedGate = names.sharedGate !== undefined && weights.hasLinear(`${block}.${names.sharedGate}`) ? names.sharedGate : undefined;
    // DeepSeek-V3 / GLM-4.5 keep the bias on the router; MiniMax-M2 on the MoE block.
    const bias = [`${router}.e_score_correction_bias`, `${block}.e_score_correction_bias`].find((n) => weights.has(n)) ?? `${router}.e_score_correction_bias`;
    mlp = {
      kind: 'moe',
      router,
      scoreBias: weights.has(bias) ? bias : undefined,
      experts,
      stacked,
      shared: shared === undefined ? undefined : mlpNames(`${block}.${shared}`, 'gate_proj', 'up_proj', 'down_proj'),
      sharedGate: sharedGate === undefined ? undefined : `${block}.${sharedGate}`,
    };
    if (spec.routing.kind === 'sigmoid_grouped' && mlp.scoreBias === undefined) {
      throw new ModelConfigError(`${weights.checkpoint.dir}: ${router}.e_score_correction_bias is missing`);
    }
  } else {
    mlp = { kind: 'dense', ...mlpNames(`${prefix}.mlp`, 'gate_proj', 'up_proj', 'down_proj') };
  }
  return {
    index,
    prefix,
    inputNorm: `${prefix}.input_layernorm.weight`,
    postAttentionNorm: `${prefix}.post_attention_layernorm.weight`,
    feedforwardNorms: weights.has(`${prefix}.pre_feedforward_layernorm.weight`)
      ? { pre: `${prefix}.pre_feedforward_layernorm.weight`, post: `${prefix}.post_feedforward_layernorm.weight` }
      : undefined,
    attention,
    mlp,
  };
}

/** Every linear module of a layer (what verify compares when it is quantized). */
export function layerLinears(plan: LayerPlan): string[] {
  const a = plan.attention;
  const out: string[] = a.kind === 'gqa' ? [a.q, a.k, a.v, a.o] : [...[a.q, a.qA, a.qB].filter((n): n is string => n !== undefined), a.kvA, a.kvB, a.o];
  const m = plan.mlp;
  if (m.kind === 'dense') out.push(m.gate, m.up, m.down);
  else {
    for (const e of m.experts) out.push(e.gate, e.up, e.down);
    if (m.shared) out.push(m.shared.gate, m.shared.up, m.shared.down);
  }
  // gpt-oss names its gate and up as one gate_up linear.
  return [...new Set(out)];
}
