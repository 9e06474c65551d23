// What a deployment check looks at, whatever it came from: the quantized linears (weight and
// scale names, shapes, dtypes), the linears kept in the source dtype, every tensor name, and the
// quantization_config an engine will read. Built from a ConvertPlan (before a convert writes
// anything) or from an FP8 checkpoint's headers; no tensor bytes are read either way.

import { ceilDiv } from '../../fp8/block-quantize.js';
import { isFp8Dtype, type Dtype } from '../../fp8/dtypes.js';
import type { ModelConfig } from '../../io/checkpoint/checkpoint.js';
import { detectArchitecture } from '../architectures.js';
import type { SourceTensor } from '../plan.js';
import type { ConvertPlan } from '../plan.js';
import { fusedExpertLayout, fusedProjectionOfTensor } from '../fused-experts.js';
import { isEmbedding, isFinalFc, isMoeRouter } from '../skip-rules.js';

export interface ScaleTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: string;
}

/** One FP8 weight: a 2-D linear, or a stacked expert tensor (experts > 1). */
export interface QuantizedLinear {
  readonly module: string;
  readonly weight: string;
  /** N and K of one expert (out × in), whatever the stored orientation. */
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly experts: number;
  readonly weightDtype: string;
  /** undefined: no scale tensor beside the weight. */
  readonly scale: ScaleTensor | undefined;
  /** The scale shape the engines allocate for this weight: [(E,) ceil(N/bn), ceil(K/bk)]. */
  readonly expectedScaleShape: readonly number[];
}

export interface KeptLinear {
  readonly module: string;
  readonly shape: readonly number[];
}

export interface DeployCheckInput {
  readonly config: ModelConfig | undefined;
  /** Family fp8q knows (architectures.ts), or undefined. */
  readonly family: string | undefined;
  readonly label: string;
  readonly isMoe: boolean;
  readonly layout: 'hf' | 'compressed-tensors';
  /** config.json's quantization_config as written (or as it will be written). */
  readonly quantizationConfig: Readonly<Record<string, unknown>>;
  readonly block: { readonly bn: number; readonly bk: number };
  readonly fmt: 'e4m3' | 'e5m2';
  readonly activationScheme: 'dynamic' | 'static';
  readonly linears: readonly QuantizedLinear[];
  /** 2-D linears left in the source dtype that an engine builds as a Linear (not lm_head, embeddings or routers). */
  readonly kept: readonly KeptLinear[];
  readonly tensorNames: readonly string[];
}

function expectedScale(experts: number, n: number, k: number, bn: number, bk: number, stacked: boolean): number[] {
  const grid = [ceilDiv(n, bn), ceilDiv(k, bk)];
  return stacked ? [experts, ...grid] : grid;
}

/** A kept 2-D weight that every engine still builds as a Linear layer (lm_head, embeddings and routers are not). */
export function isEngineLinear(module: string, outFeatures: number, modelIsMoe: boolean): boolean {
  return !isFinalFc(module) && !isEmbedding(module) && !isMoeRouter(module, outFeatures, modelIsMoe);
}

/** The check's view of a conversion that has not run yet: its plan (already in the output layout) and the config it will write. */
export function inventoryFromPlan(config: ModelConfig | undefined, plan: ConvertPlan, quantizationConfig: Readonly<Record<string, unknown>>): DeployCheckInput {
  const arch = detectArchitecture(config);
  const { bn, bk } = plan.settings.block;
  const linears: QuantizedLinear[] = [];
  const tensorNames: string[] = [];
  const kept: KeptLinear[] = [];
  for (const e of plan.entries) {
    for (const o of e.outputs) tensorNames.push(o.name);
    if (e.op === 'quantize' || e.op === 'quantize-in-out' || e.op === 'requantize' || e.op === 'stack-experts') {
      const [w, s] = e.outputs;
      if (!w) continue;
      const stacked = w.shape.length === 3;
      const experts = stacked ? w.shape[0]! : 1;
      const [rows, cols] = stacked ? [w.shape[1]!, w.shape[2]!] : [w.shape[0]!, w.shape[1]!];
      const [n, k] = e.op === 'quantize-in-out' ? [cols, rows] : [rows, cols];
      linears.push({
        module: e.module,
        weight: w.name,
        outFeatures: n,
        inFeatures: k,
        experts,
        weightDtype: w.dtype,
        scale: s ? { name: s.name, shape: s.shape, dtype: s.dtype } : undefined,
        expectedScaleShape: expectedScale(experts, n, k, bn, bk, stacked),
      });
    } else if (e.op === 'copy' && e.outputs.length === 1) {
      const o = e.outputs[0]!;
      if (o.shape.length === 2 && o.name.endsWith('.weight')) {
        const module = o.name.slice(0, -'.weight'.length);
        if (isEngineLinear(module, o.shape[0]!, arch.isMoe)) kept.push({ module, shape: o.shape });
      }
    }
  }
  return {
    config,
    family: arch.family,
    label: arch.label,
    isMoe: arch.isMoe,
    layout: quantizationConfig['quant_method'] === 'compressed-tensors' ? 'compressed-tensors' : 'hf',
    quantizationConfig,
    block: { bn, bk },
    fmt: plan.settings.format === 'e5m2' ? 'e5m2' : 'e4m3',
    activationScheme: plan.settings.activationScheme,
    linears,
    kept,
    tensorNames,
  };
}

const SCALE_SUFFIXES = ['.weight_scale_inv', '.weight_scale'];

/**
 * The check's view of an FP8 checkpoint on disk, from its headers and config.json. `block`, `fmt`
 * and the activation scheme are what the config declares (what an engine reads), given by the
 * caller from the checkpoint's parsed quantization config.
 */
export function inventoryFromCheckpoint(
  config: ModelConfig | undefined,
  tensors: readonly SourceTensor[],
  declared: {
    readonly layout: 'hf' | 'compressed-tensors';
    readonly block: { bn: number; bk: number };
    readonly fmt: 'e4m3' | 'e5m2';
    readonly activationScheme: 'dynamic' | 'static';
  },
): DeployCheckInput {
  const arch = detectArchitecture(config);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const { bn, bk } = declared.block;
  const linears: QuantizedLinear[] = [];
  const kept: KeptLinear[] = [];
  for (const t of tensors) {
    if (isFp8Dtype(t.dtype as Dtype) && (t.shape.length === 2 || t.shape.length === 3)) {
      const module = t.name.endsWith('.weight') ? t.name.slice(0, -'.weight'.length) : t.name;
      const candidates = t.name.endsWith('.weight') ? SCALE_SUFFIXES.map((s) => `${module}${s}`) : [`${t.name}_scale_inv`, `${t.name}_scale`];
      const scaleName = candidates.find((c) => byName.has(c));
      const scale = scaleName ? byName.get(scaleName)! : undefined;
      const stacked = t.shape.length === 3;
      const experts = stacked ? t.shape[0]! : 1;
      // gpt-oss / Llama-4 store fused experts in × out ([E, K, N]); fused-experts.ts tells which.
      const projection = stacked ? fusedProjectionOfTensor(t.name) : undefined;
      const inOut = projection !== undefined && fusedExpertLayout(config, t.name, projection, t.shape).layout === 'in_out';
      const [rows, cols] = stacked ? [t.shape[1]!, t.shape[2]!] : [t.shape[0]!, t.shape[1]!];
      const [n, k] = inOut ? [cols, rows] : [rows, cols];
      linears.push({
        module,
        weight: t.name,
        outFeatures: n,
        inFeatures: k,
        experts,
        weightDtype: t.dtype,
        scale: scale ? { name: scale.name, shape: scale.shape, dtype: scale.dtype } : undefined,
        expectedScaleShape: expectedScale(experts, n, k, bn, bk, stacked),
      });
    } else if (t.shape.length === 2 && t.name.endsWith('.weight') && !isFp8Dtype(t.dtype as Dtype)) {
      const module = t.name.slice(0, -'.weight'.length);
      if (isEngineLinear(module, t.shape[0]!, arch.isMoe)) kept.push({ module, shape: t.shape });
    }
  }
  const qc = config?.['quantization_config'];
  return {
    config,
    family: arch.family,
    label: arch.label,
    isMoe: arch.isMoe,
    layout: declared.layout,
    quantizationConfig: typeof qc === 'object' && qc !== null ? (qc as Record<string, unknown>) : {},
    block: declared.block,
    fmt: declared.fmt,
    activationScheme: declared.activationScheme,
    linears,
    kept,
    tensorNames: tensors.map((t) => t.name),
  };
}
