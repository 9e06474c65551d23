// Plans for FP8 input:
// - requantizePass (convert --requantize): the FP8 checkpoint is presented to the
//   BlockScaleQuantize pass as the float checkpoint it stands for (each FP8 weight as an F32
//   tensor of its shape; scales, activation scales and the derived MLA w_uk/w_uv left out), and
//   every entry that reads an FP8 tensor learns where its scale is — a plain quantize becomes a
//   RequantizeEntry, a kept FP8 weight a DequantizeEntry (written in the model's float dtype).
// - planDequantize (fp8q dequant): every FP8 weight → `fp8 × scale_inv` in the output dtype,
//   scales and activation scales dropped, everything else copied.

import type { FloatSourceDtype } from '../fp8/dtypes.js';
import type { ModelConfig } from '../io/checkpoint/checkpoint.js';
import { CheckpointError } from '../io/errors.js';
import { blockScaleQuantizePass, type PassOptions } from './block-scale-quantize.js';
import { describeFp8Input, type Fp8Input } from './fp8-input.js';
import { plannedOutput, type ConvertPlan, type DequantizeEntry, type Fp8Sources, type PlanEntry, type SourceTensor } from './plan.js';

/** config.json without quantization_config; its ignore list survives as modules_to_not_convert. */
export function configWithoutQuantization(config: ModelConfig | undefined, ignore: readonly string[]): ModelConfig | undefined {
  if (!config) return undefined;
  const { quantization_config: _dropped, ...rest } = config;
  return ignore.length > 0 ? { ...rest, modules_to_not_convert: [...ignore] } : rest;
}

/** The float dtype the unquantized model is in, from config.json (BF16 when it does not say). */
export function modelFloatDtype(config: ModelConfig | undefined): 'BF16' | 'F16' | 'F32' {
  const d = config?.['torch_dtype'] ?? config?.['dtype'];
  return d === 'float16' ? 'F16' : d === 'float32' ? 'F32' : 'BF16';
}

function moduleOf(tensor: string): string {
  return tensor.endsWith('.weight') ? tensor.slice(0, -'.weight'.length) : tensor;
}

function dequantizeEntry(name: string, shape: readonly number[], dtype: FloatSourceDtype, input: Fp8Input, reason: string): DequantizeEntry {
  const ref = input.weights.get(name)!;
  return { op: 'dequantize', module: moduleOf(name), reason, sources: [name, ref.scale], outputs: [plannedOutput(name, dtype, shape)], fp8: { [name]: ref } };
}

function fp8SourcesOf(sources: readonly string[], input: Fp8Input): Fp8Sources | undefined {
  const refs = sources.filter((s) => input.weights.has(s)).map((s) => [s, input.weights.get(s)!] as const);
  return refs.length > 0 ? Object.fromEntries(refs) : undefined;
}

function withFp8Sources(e: PlanEntry, input: Fp8Input, keptDtype: FloatSourceDtype): PlanEntry {
  const fp8 = fp8SourcesOf(e.sources, input);
  if (!fp8) return e;
  const sources = [...e.sources, ...Object.values(fp8).map((r) => r.scale)];
  switch (e.op) {
    case 'copy':
      return dequantizeEntry(e.sources[0]!, e.outputs[0]!.shape, keptDtype, input, `${e.reason}; FP8 in the input, written as ${keptDtype}`);
    case 'quantize':
      return { op: 'requantize', module: e.module, kind: e.kind, sources, outputs: e.outputs, fp8 };
    case 'quantize-in-out':
    case 'mla-split':
    case 'stack-experts':
      return { ...e, sources, fp8 };
    case 'requantize':
    case 'dequantize':
    case 'activation-scale':
      return e;
  }
}

export function requantizePass(config: ModelConfig | undefined, tensors: readonly SourceTensor[], options: PassOptions): ConvertPlan {
  const input = describeFp8Input(config, tensors);
  if (!input) {
    const plan = blockScaleQuantizePass(config, tensors, options);
    return { ...plan, warnings: ['--requantize: the input is not quantized; converting it as usual', ...plan.warnings] };
  }
  const derived = tensors.filter((t) => isDerivedMlaTensor(t.name, input));
  const left = new Set([...input.scaleTensors, ...input.activationScales, ...derived.map((t) => t.name), ...derived.map((t) => input.weights.get(t.name)!.scale)]);
  const virtual = tensors.filter((t) => !left.has(t.name)).map((t) => (input.weights.has(t.name) ? { ...t, dtype: 'F32' as const } : t));
  const plan = blockScaleQuantizePass(configWithoutQuantization(config, input.format.ignore), virtual, options);
  const keptDtype = modelFloatDtype(config);
  const { block } = input.format;
  const warnings = [
    `--requantize: ${input.weights.size} FP8 weights (${input.layoutLabel}, blocks ${block.bn}x${block.bk}) are dequantized to float32 and quantized again ` +
      `with ${options.settings.block.bn}x${options.settings.block.bk} blocks; the result carries the input's quantization error plus the new one`,
    ...plan.warnings,
  ];
  const sameFormat = options.settings.format === (input.format.fmt === 'e5m2' ? 'e5m2' : 'e4m3fn');
  if (sameFormat && block.bn === options.settings.block.bn && block.bk === options.settings.block.bk) {
    warnings.push('--requantize: the input already has this block size and dtype; re-quantizing its dequantized values can only move scales by rounding');
  }
  if (derived.length > 0) {
    warnings.push(`--requantize: ${derived.length} MLA w_uk/w_uv tensors of the input are derived from kv_b_proj and are not carried over (pass --mla-split to write them again)`);
  }
  return { ...plan, entries: plan.entries.map((e) => withFp8Sources(e, input, keptDtype)), warnings };
}

export interface DequantizePlan {
  readonly input: Fp8Input;
  readonly entries: readonly PlanEntry[];
  readonly dtype: 'BF16' | 'F16';
  readonly warnings: readonly string[];
}

/** MLA's w_uk / w_uv (fp8q convert --mla-split): derived from kv_b_proj, no float checkpoint has them. */
function isDerivedMlaTensor(name: string, input: Fp8Input): boolean {
  return input.weights.has(name) && /\.self_attn\.w_u[kv]$/.test(name);
}

export function planDequantize(config: ModelConfig | undefined, tensors: readonly SourceTensor[], dtype: 'BF16' | 'F16'): DequantizePlan {
  const input = describeFp8Input(config, tensors);
  if (!input) throw new CheckpointError('the input is not an FP8 checkpoint (no quantization_config, no FP8 tensors): there is nothing to dequantize', 'E_INPUT_UNSUPPORTED');
  const entries: PlanEntry[] = [];
  const derived = tensors.filter((t) => isDerivedMlaTensor(t.name, input)).length;
  const warnings = derived > 0 ? [`${derived} MLA w_uk/w_uv tensors are derived from kv_b_proj and are left out (fp8q convert --mla-split writes them again)`] : [];
  for (const t of tensors) {
    if (input.scaleTensors.has(t.name) || input.activationScales.has(t.name) || isDerivedMlaTensor(t.name, input)) continue;
    if (input.weights.has(t.name)) entries.push(dequantizeEntry(t.name, t.shape, dtype, input, `fp8 × ${input.weights.get(t.name)!.scale.split('.').pop()}`));
    else entries.push({ op: 'copy', reason: 'not quantized', sources: [t.name], outputs: [plannedOutput(t.name, t.dtype, t.shape)] });
  }
  return { input, entries, dtype, warnings };
}
