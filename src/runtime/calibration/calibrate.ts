// Measuring static activation scales: the ORIGINAL model runs over the calibration tokens one
// decoder layer at a time (ModelRunner, the forward verify uses), every linear's input is
// captured (the runner's taps), and each quantized linear's running per-group amax becomes its
// `activation_scale`. Layer L runs for every calibration batch before layer L+1 starts, so the
// weights held are one decoder layer's and the memory that grows with the calibration set is the
// hidden states: calibration tokens × hidden_size × 4 bytes (128 × 512 tokens of a 7168-wide
// model: 1.9 GB), plus one batch's captures, and in an MoE layer a copy of the block's input per
// batch until the layer ends (the fallback below needs it).
//
// MoE experts: an expert's input is only the tokens routed to it, as at inference, so its scale
// fits what it actually sees. An expert no calibration token was routed to has no measurement; it
// falls back to the MoE block's whole input: gate/up take the amax of the block input over all
// tokens, and down the amax of act(gate(x)) * up(x) of THAT expert over all tokens (a small graph
// per batch). Each fallback is reported (event and result), never silent.

import { performance } from 'node:perf_hooks';
import { widenToFloat32 } from '../../fp8/dtypes.js';
import type { Fp8Format } from '../../fp8/formats.js';
import { CheckpointError } from '../../io/errors.js';
import type { BatchShape } from '../models/layer-graphs.js';
import { layerLinears, type LayerPlan, type MlpNames } from '../models/layer-plan.js';
import { ModelGraph } from '../models/model-graph.js';
import { ModelRunner, type LinearCapture } from '../models/runner.js';
import { OnnxSession, type Device } from '../onnx/session.js';
import { activationScales, ActivationRange, groupAmax, type ActivationScaleGranularity } from './activation-ranges.js';
import type { CalibrationSet } from '../text/calibration-input.js';

/** Most tokens in one layer graph: attention scores are [B, heads, T, T] floats. */
export const DEFAULT_CALIBRATION_BATCH_TOKENS = 4096;

export interface CalibrationTarget {
  readonly module: string;
  /** K, the linear's input features. */
  readonly inFeatures: number;
}

export interface CalibrateOptions {
  /** The original (unquantized) model folder. */
  readonly model: string;
  readonly set: CalibrationSet;
  readonly targets: readonly CalibrationTarget[];
  /** Input channels per scale: the weight block's bk. */
  readonly groupSize: number;
  readonly granularity: ActivationScaleGranularity;
  readonly format: Fp8Format;
  readonly device?: Device;
  readonly intraOpThreads?: number;
  readonly batchTokens?: number;
  readonly onEvent?: (event: CalibrationEvent) => void;
}

export type CalibrationEvent =
  | { readonly type: 'calibration-start'; readonly layers: number; readonly samples: number; readonly tokens: number; readonly batches: number }
  | { readonly type: 'calibration-layer'; readonly index: number; readonly count: number; readonly modules: number }
  /** An expert no calibration token was routed to: `modules` (its projections) fall back to the MoE block input. */
  | { readonly type: 'calibration-fallback'; readonly expert: string; readonly modules: readonly string[]; readonly layer: number };

export interface CalibratedModule {
  readonly module: string;
  readonly layer: number;
  /** Rows its scale was measured on (tokens, or tokens routed to an expert). */
  readonly rows: number;
  /** No token was routed to this expert: measured on the MoE block's whole input. */
  readonly fallback: boolean;
  /** max |x| over all groups. */
  readonly amax: number;
}

export interface CalibrationResult {
  /** Module → scales: `[ceil(K/groupSize)]` (group) or `[1]` (tensor). */
  readonly scales: Map<string, Float32Array>;
  readonly modules: readonly CalibratedModule[];
  readonly samples: number;
  readonly tokens: number;
  readonly seconds: number;
}

export class CalibrationError extends CheckpointError {
  constructor(message: string) {
    super(message);
    this.name = 'CalibrationError';
  }
}

interface Batch {
  readonly ids: Int32Array;
  readonly shape: BatchShape;
}

/** Sequences of equal length batched together (the layer graphs take [B, T]), in first-seen order. */
export function calibrationBatches(sequences: readonly Int32Array[], batchTokens: number): Batch[] {
  const byLength = new Map<number, Int32Array[]>();
  for (const s of sequences) {
    const list = byLength.get(s.length) ?? [];
    list.push(s);
    byLength.set(s.length, list);
  }
  const batches: Batch[] = [];
  for (const [seq, list] of byLength) {
    const per = Math.max(1, Math.floor(batchTokens / seq));
    for (let i = 0; i < list.length; i += per) {
      const part = list.slice(i, i + per);
      const ids = new Int32Array(part.length * seq);
      part.forEach((s, b) => ids.set(s, b * seq));
      batches.push({ ids, shape: { batch: part.length, seq } });
    }
  }
  return batches;
}

function isExpert(module: string): boolean {
  return /\.experts\.\d+\./.test(module);
}

/** transformers' RMSNorm on the host, for the MoE block input of the fallback. */
function rmsNorm(x: Float32Array, dim: number, weight: Float32Array, eps: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += x[r * dim + j]! ** 2;
    const rms = Math.fround(Math.sqrt(Math.fround(Math.fround(ss / dim) + eps)));
    for (let j = 0; j < dim; j++) out[r * dim + j] = Math.fround(weight[j]! * Math.fround(x[r * dim + j]! / rms));
  }
  return out;
}

export async function calibrateActivationScales(opts: CalibrateOptions): Promise<CalibrationResult> {
  const t0 = performance.now();
  const emit = opts.onEvent ?? (() => undefined);
  const runner = await ModelRunner.open(opts.model, {
    ...(opts.device === undefined ? {} : { device: opts.device }),
    ...(opts.intraOpThreads === undefined ? {} : { intraOpThreads: opts.intraOpThreads }),
  });
  try {
    const spec = runner.spec;
    const targets = new Map(opts.targets.map((t) => [t.module, t]));
    // Which layer runs each target; a target no layer runs (DeepSeek-V3's MTP layer past
    // num_hidden_layers, say) cannot be calibrated.
    const layerOf = new Map<string, number>();
    const plans: LayerPlan[] = [];
    for (let layer = 0; layer < spec.numLayers; layer++) {
      const plan = runner.plan(layer);
      plans.push(plan);
      for (const m of layerLinears(plan)) if (targets.has(m)) layerOf.set(m, layer);
    }
    const unreached = opts.targets.filter((t) => !layerOf.has(t.module)).map((t) => t.module);
    if (unreached.length > 0) {
      throw new CalibrationError(
        `no calibration activation can reach ${unreached.length} quantized linear(s) (${unreached.slice(0, 3).join(', ')}${unreached.length > 3 ? ', …' : ''}): ` +
          `the forward runs num_hidden_layers ${spec.numLayers} decoder layers and these are outside them; keep them unquantized with --exclude, or use --activation-scheme dynamic`,
      );
    }

    const batches = calibrationBatches(opts.set.sequences, opts.batchTokens ?? DEFAULT_CALIBRATION_BATCH_TOKENS);
    emit({ type: 'calibration-start', layers: spec.numLayers, samples: opts.set.sequences.length, tokens: opts.set.tokens, batches: batches.length });
    const hidden: Float32Array[] = [];
    for (const b of batches) hidden.push(await runner.embed(b.ids));

    const scales = new Map<string, Float32Array>();
    const modules: CalibratedModule[] = [];
    for (let layer = 0; layer < spec.numLayers; layer++) {
      const plan = plans[layer]!;
      const mine = layerLinears(plan).filter((m) => targets.has(m));
      emit({ type: 'calibration-layer', index: layer, count: spec.numLayers, modules: mine.length });
      const ranges = new Map(mine.map((m) => [m, new ActivationRange(m, targets.get(m)!.inFeatures, opts.groupSize)]));
      const moe = plan.mlp.kind === 'moe' ? plan.mlp : undefined;
      // The MoE block's input per batch, kept until the layer ends in case an expert got no token.
      const moeInputs: Float32Array[] = [];
      const moeInputRange = new ActivationRange(`${plan.prefix} MoE input`, spec.hiddenSize, opts.groupSize);
      for (let b = 0; b < batches.length; b++) {
        const { shape } = batches[b]!;
        const result = await runner.runLayer(layer, hidden[b]!, shape, { capture: true });
        // q/k/v (and gate/up) share one captured array: measure each array once.
        const measured = new Map<Float32Array, Float32Array>();
        for (const [module, range] of ranges) {
          const c: LinearCapture | undefined = result.captures.get(module);
          if (c === undefined || c.rows === 0) continue;
          let amax = measured.get(c.input);
          if (amax === undefined) {
            amax = groupAmax(c.input, c.rows, range.k, opts.groupSize, module);
            measured.set(c.input, amax);
          }
          range.merge(amax, c.rows);
        }
        if (moe) {
          const xn = await moeBlockInput(runner, plan, hidden[b]!, result.captures);
          moeInputs.push(xn);
          moeInputRange.add(xn, shape.batch * shape.seq);
        }
        hidden[b] = result.hidden;
      }

      const starved = mine.filter((m) => ranges.get(m)!.rows === 0);
      const notExpert = starved.filter((m) => !isExpert(m));
      if (notExpert.length > 0) throw new CalibrationError(`layer ${layer}: the forward captured no input for ${notExpert.join(', ')}`);
      if (moe && starved.length > 0) {
        for (const names of moe.experts) {
          const projections = [names.gate, names.up, names.down].filter((m) => starved.includes(m));
          if (projections.length === 0) continue;
          for (const m of projections) if (m !== names.down) ranges.get(m)!.merge(moeInputRange.amax, moeInputRange.rows);
          emit({ type: 'calibration-fallback', expert: names.gate.slice(0, names.gate.lastIndexOf('.')), modules: projections, layer });
        }
        const downs = moe.experts.filter((names) => starved.includes(names.down));
        if (downs.length > 0) await measureExpertDownInputs(runner, downs, moeInputs, batches, ranges, opts);
      }
      for (const m of mine) {
        const range = ranges.get(m)!;
        const fallback = starved.includes(m);
        scales.set(m, activationScales(range.amax, opts.granularity, opts.format));
        modules.push({ module: m, layer, rows: fallback ? 0 : range.rows, fallback, amax: range.amax.reduce((a, v) => (v > a ? v : a), 0) });
      }
    }
    return { scales, modules, samples: opts.set.sequences.length, tokens: opts.set.tokens, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await runner.close();
  }
}

/**
 * The MoE block's input, post_attention_layernorm(hidden + attention output), rebuilt on the host
 * from the layer input and o_proj's captured output (the layer graph does not export it).
 */
async function moeBlockInput(runner: ModelRunner, plan: LayerPlan, layerInput: Float32Array, captures: ReadonlyMap<string, LinearCapture>): Promise<Float32Array> {
  const attnOut = captures.get(plan.attention.o);
  if (attnOut === undefined) throw new CalibrationError(`${plan.prefix}: the forward captured no output for ${plan.attention.o}`);
  const h1 = layerInput.map((v, i) => Math.fround(v + attnOut.output[i]!));
  const scope = runner.weights.scope();
  try {
    const norm = await scope.tensor(plan.postAttentionNorm);
    return rmsNorm(h1, runner.spec.hiddenSize, widenToFloat32(norm.bytes, norm.dtype), runner.spec.rmsNormEps);
  } finally {
    scope.close();
  }
}

/** act(gate(x)) * up(x) of each expert in `experts` over every token of the MoE block's input: the down_proj fallback. */
async function measureExpertDownInputs(
  runner: ModelRunner,
  experts: readonly MlpNames[],
  moeInputs: readonly Float32Array[],
  batches: readonly Batch[],
  ranges: ReadonlyMap<string, ActivationRange>,
  opts: CalibrateOptions,
): Promise<void> {
  const h = runner.spec.hiddenSize;
  for (let b = 0; b < batches.length; b++) {
    const tokens = batches[b]!.shape.batch * batches[b]!.shape.seq;
    const scope = runner.weights.scope();
    try {
      const mg = new ModelGraph();
      const x = mg.input('xn', moeInputs[b]!, [tokens, h]);
      for (const [i, names] of experts.entries()) {
        const gate = await scope.linear(names.gate);
        const up = await scope.linear(names.up);
        mg.output(mg.mul(mg.act(mg.linear(gate, x), runner.spec.hiddenAct), mg.linear(up, x)), `down_in_${i}`);
      }
      const session = await OnnxSession.create(mg.toBytes(), {
        device: runner.device,
        ...(opts.intraOpThreads === undefined ? {} : { intraOpThreads: opts.intraOpThreads }),
      });
      try {
        const out = await session.run(mg.feeds);
        for (const [i, names] of experts.entries()) {
          const t = out[`down_in_${i}`]!;
          ranges.get(names.down)!.add(t.data as Float32Array, tokens);
        }
      } finally {
        await session.release();
      }
    } finally {
      scope.close();
    }
  }
}
