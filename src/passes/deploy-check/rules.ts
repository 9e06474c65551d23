// The rules, engine by engine, as conditions on shapes and config keys: each returns findings
// naming the tensor (pattern, example, count), the rule and the engine's source. Pure functions of
// a DeployCheckInput and a tensor-parallel size.

import { numberField } from '../architectures.js';
import { ruleSource, type EngineId, type RuleId } from './engines.js';
import type { DeployCheckInput, KeptLinear, QuantizedLinear } from './inventory.js';
import { attentionShape, expertIntermediate, expertSetOf, isRoutedExpert, leafOf, mergedGroups, mergePartners, parallelRole, patternOf, type MergedGroup } from './topology.js';

export interface TensorRef {
  /** Layer/expert indices replaced by `*`. */
  readonly pattern: string;
  /** One concrete tensor (or module) name. */
  readonly example: string;
  readonly count: number;
}

export interface Finding {
  readonly engine: EngineId;
  readonly tp: number;
  readonly rule: RuleId;
  readonly severity: 'fail' | 'warn';
  readonly message: string;
  /** The engine's file and function raising it. */
  readonly source: string;
  readonly tensors: TensorRef | null;
}

type Emit = (rule: RuleId, message: string, tensors?: readonly string[], severity?: 'fail' | 'warn') => void;

function refOf(names: readonly string[]): TensorRef | null {
  if (names.length === 0) return null;
  return { pattern: patternOf(names[0]!), example: names[0]!, count: names.length };
}

/** Linears grouped by pattern and shape, so 94 layers × 128 experts are judged (and reported) once. */
function groupBy<T>(items: readonly T[], key: (t: T) => string): T[][] {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    const list = m.get(k);
    if (list) list.push(it);
    else m.set(k, [it]);
  }
  return [...m.values()];
}

const shapeKey = (l: QuantizedLinear): string => `${patternOf(l.module)}|${l.outFeatures}|${l.inFeatures}|${l.experts}`;

/** What every engine × TP evaluation groups the same way, computed once per input. */
interface Derived {
  readonly scaleGroups: QuantizedLinear[][];
  readonly mergedByShape: MergedGroup[][];
  readonly singleByShape: QuantizedLinear[][];
  readonly plainByShape: QuantizedLinear[][];
  readonly expertSets: QuantizedLinear[][];
}

const derivedCache = new WeakMap<DeployCheckInput, Derived>();

function derived(input: DeployCheckInput): Derived {
  let d = derivedCache.get(input);
  if (!d) {
    const { groups, single } = mergedGroups(input.linears);
    d = {
      scaleGroups: groupBy(input.linears, (l) => `${shapeKey(l)}|${l.scale?.dtype}|${l.scale?.shape.join('x')}`),
      mergedByShape: groupBy(groups, (g) => `${g.kind}|${g.parts.map(shapeKey).join('|')}`),
      singleByShape: groupBy(single, shapeKey),
      plainByShape: groupBy(
        input.linears.filter((l) => !isRoutedExpert(l.module)),
        shapeKey,
      ),
      expertSets: groupBy(
        input.linears.filter((l) => isRoutedExpert(l.module)),
        (l) => patternOf(expertSetOf(l.module)),
      ),
    };
    derivedCache.set(input, d);
  }
  return d;
}

const FLOAT_SCALE_DTYPES: readonly string[] = ['F32', 'BF16', 'F16'];

/** Rules every engine shares: scales present, shaped [(E,) ceil(N/bn), ceil(K/bk)], in a dtype the engine takes. */
function scaleRules(input: DeployCheckInput, emit: Emit): void {
  for (const g of derived(input).scaleGroups) {
    const l = g[0]!;
    if (!l.scale) {
      emit(
        'scale-missing',
        `FP8 weight without a scale tensor (the engine allocates weight_scale_inv ${JSON.stringify(l.expectedScaleShape)} and finds nothing to load into it)`,
        g.map((x) => x.weight),
      );
      continue;
    }
    if (l.scale.shape.join(',') !== l.expectedScaleShape.join(',')) {
      emit(
        'scale-shape',
        `scale ${l.scale.name} is [${l.scale.shape.join(', ')}], the engine allocates [${l.expectedScaleShape.join(', ')}] for weight [${l.outFeatures}, ${l.inFeatures}] at block ${input.block.bn}x${input.block.bk}`,
        g.map((x) => x.scale!.name),
      );
    }
    // Every engine allocates a float32 scale and converts floating-point values into it on load
    // (copy_ / astype); packed or integer scales are not read.
    if (!FLOAT_SCALE_DTYPES.includes(l.scale.dtype)) {
      emit(
        'scale-dtype',
        `scale dtype ${l.scale.dtype}; the engine's scale parameter is float32, filled from F32/BF16/F16 values`,
        g.map((x) => x.scale!.name),
      );
    }
  }
}

function weightDtypeRule(input: DeployCheckInput, emit: Emit): void {
  const e5 = input.linears.filter((l) => l.weightDtype === 'F8_E5M2');
  if (e5.length > 0 || input.fmt === 'e5m2') {
    emit(
      'weight-dtype',
      `E5M2 weights: the engine builds FP8 weights as float8_e4m3fn (convert with --weight-dtype float8_e4m3fn)`,
      e5.map((l) => l.weight),
    );
  }
}

function qcString(input: DeployCheckInput, key: string): string | undefined {
  const v = input.quantizationConfig[key];
  return typeof v === 'string' ? v : undefined;
}

function qcList(input: DeployCheckInput, key: string): string[] | undefined {
  const v = input.quantizationConfig[key];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined;
}

/** vLLM/SGLang skip a layer whose full prefix is listed (is_layer_skipped, exact match); SGLang also tries with/without "model.". */
function listedExactly(module: string, list: readonly string[], normalizeModelPrefix: boolean): boolean {
  if (list.includes(module)) return true;
  if (!normalizeModelPrefix) return false;
  const base = module.startsWith('model.') ? module.slice('model.'.length) : module;
  return list.includes(base) || list.includes(`model.${base}`);
}

/** compressed-tensors `ignore`: exact names or `re:` patterns. */
function listedInIgnore(module: string, list: readonly string[]): boolean {
  return list.some((p) => (p.startsWith('re:') ? safeRegex(p.slice(3))?.test(module) === true : p === module));
}

function safeRegex(source: string): RegExp | undefined {
  try {
    return new RegExp(source);
  } catch {
    return undefined;
  }
}

function keptRules(engine: EngineId, input: DeployCheckInput, emit: Emit): void {
  if (input.kept.length === 0) return;
  const kept = input.kept;
  let skipped: (m: string) => boolean;
  let what: string;
  if (engine === 'vllm' || engine === 'sglang') {
    if (input.layout === 'compressed-tensors') {
      const ignore = qcList(input, 'ignore') ?? [];
      skipped = (m) => listedInIgnore(m, ignore);
      what = 'not in quantization_config.ignore';
    } else if (engine === 'vllm') {
      const ignored = qcList(input, 'ignored_layers') ?? [];
      skipped = (m) => listedExactly(m, ignored, false);
      what =
        qcList(input, 'modules_to_not_convert') !== undefined
          ? 'not in quantization_config.ignored_layers (vLLM releases whose Fp8Config.from_config reads ignored_layers only ignore modules_to_not_convert; later ones fall back to it only when ignored_layers is empty)'
          : 'not in quantization_config.ignored_layers';
    } else {
      const list = qcList(input, 'ignored_layers') ?? qcList(input, 'modules_to_not_convert') ?? [];
      skipped = (m) => listedExactly(m, list, true);
      what = 'not in quantization_config.ignored_layers / modules_to_not_convert';
    }
  } else if (engine === 'transformers') {
    const list = qcList(input, 'modules_to_not_convert') ?? qcList(input, 'ignored_layers') ?? [];
    skipped = (m) => list.some((p) => m.includes(p));
    what = 'not in quantization_config.modules_to_not_convert (FP8Linear receives an unquantized weight: "Expect quantized weights but got an unquantized weight")';
  } else if (engine === 'mlc') {
    const readsList = input.family === undefined && /ministral3|mistral3/i.test(input.label);
    const list = readsList ? (qcList(input, 'modules_to_not_convert') ?? []) : [];
    skipped = (m) => list.some((p) => m.includes(p));
    what = 'MLC LLM quantizes every nn.Linear but the final FC and MoE gates, whatever modules_to_not_convert says: no weight_scale_inv to load';
  } else {
    skipped = () => false;
    what = "DeepSeek's Linear is FP8 with a scale for every layer but the head: load_model(strict) misses its scale";
  }
  const unlisted = kept.filter((k) => !skipped(k.module));
  for (const g of groupBy(unlisted, (k: KeptLinear) => `${patternOf(k.module)}|${k.shape.join('x')}`)) {
    emit(
      'kept-linear',
      `linear kept in the source dtype would be created as FP8: ${what}`,
      g.map((k) => `${k.module}.weight`),
    );
  }
  if (engine === 'vllm' || engine === 'sglang') {
    const keptSet = new Set(kept.map((k) => k.module));
    const quantized = new Set(input.linears.map((l) => l.module));
    const partial: string[] = [];
    const seen = new Set<string>();
    for (const k of kept) {
      const p = mergePartners(k.module);
      if (!p || seen.has(p.merged)) continue;
      seen.add(p.merged);
      if (p.members.some((m) => quantized.has(m)) && p.members.some((m) => keptSet.has(m))) partial.push(p.merged);
    }
    if (partial.length > 0) {
      emit(
        'fused-partially-kept',
        `some but not all parts of a merged layer are kept ("Detected some but not all shards of … are quantized"): keep or quantize q/k/v (gate/up) together`,
        partial,
      );
    }
  }
}

/** vLLM's QKVParallelLinear per-rank parts: kv heads are replicated when tp exceeds them. */
function qkvPartsPerRank(input: DeployCheckInput, g: MergedGroup, tp: number): { parts: number[]; tpSplit: boolean; evenSplit: string | undefined } {
  const [q, k, v] = g.parts as [QuantizedLinear, QuantizedLinear, QuantizedLinear];
  const shape = attentionShape(input.config, q.module, q.outFeatures);
  if (!shape || q.outFeatures % shape.headDim !== 0 || k.outFeatures % shape.headDim !== 0) {
    const parts = [q.outFeatures / tp, k.outFeatures / tp, v.outFeatures / tp];
    const uneven = g.parts.find((p) => p.outFeatures % tp !== 0);
    return { parts, tpSplit: tp > 1, evenSplit: uneven ? `${uneven.outFeatures} rows of ${leafOf(uneven.module)} over ${tp} ranks` : undefined };
  }
  const qHeads = q.outFeatures / shape.headDim;
  const kvHeads = k.outFeatures / shape.headDim;
  const vDim = v.outFeatures / kvHeads;
  if (qHeads % tp !== 0) return { parts: [], tpSplit: tp > 1, evenSplit: `${qHeads} attention heads over ${tp} ranks` };
  if (kvHeads >= tp && kvHeads % tp !== 0) return { parts: [], tpSplit: tp > 1, evenSplit: `${kvHeads} key/value heads over ${tp} ranks` };
  if (kvHeads < tp && tp % kvHeads !== 0) return { parts: [], tpSplit: tp > 1, evenSplit: `${tp} ranks not a multiple of ${kvHeads} key/value heads` };
  const kvPerRank = Math.max(1, kvHeads / tp);
  const parts = [(qHeads / tp) * shape.headDim, kvPerRank * shape.headDim, kvPerRank * vDim];
  const total = q.outFeatures + k.outFeatures + v.outFeatures;
  const sum = parts[0]! + parts[1]! + parts[2]!;
  return { parts, tpSplit: tp > 1 && Math.floor(total / sum) === tp, evenSplit: undefined };
}

/** vLLM / SGLang: validate_fp8_block_shape on every (merged) linear, and Fp8MoEMethod on every expert set. */
function shardedRules(engine: EngineId, input: DeployCheckInput, tp: number, emit: Emit): void {
  const { bn, bk } = input.block;
  for (const gg of derived(input).mergedByShape) {
    const g = gg[0]!;
    const names = gg.flatMap((x) => x.parts.map((p) => p.weight));
    let parts: number[];
    let tpSplit: boolean;
    if (g.kind === 'qkv') {
      const r = qkvPartsPerRank(input, g, tp);
      if (r.evenSplit) {
        emit('tp-even-split', `cannot split ${r.evenSplit} (${patternOf(g.merged)})`, names);
        continue;
      }
      parts = r.parts;
      tpSplit = r.tpSplit;
    } else if (g.kind === 'gate_up') {
      const uneven = g.parts.find((p) => p.outFeatures % tp !== 0);
      if (uneven) {
        emit('tp-even-split', `cannot split ${uneven.outFeatures} rows of ${leafOf(uneven.module)} over ${tp} ranks`, names);
        continue;
      }
      parts = g.parts.map((p) => p.outFeatures / tp);
      tpSplit = tp > 1;
    } else {
      parts = g.parts.map((p) => p.outFeatures);
      tpSplit = false;
    }
    const checked = tpSplit ? parts : parts.slice(0, -1);
    const bad = checked.findIndex((p) => p % bn !== 0);
    if (bad >= 0) {
      const part = g.parts[bad]!;
      const perRank = tpSplit && tp > 1 ? ` (${part.outFeatures} rows / ${tp} ranks)` : '';
      emit(
        'merged-part',
        `merged ${leafOf(g.merged)}: part ${leafOf(part.module)} has ${parts[bad]} output rows per rank${perRank}, not a multiple of block_n ${bn} ("Weight output_partition_size = ${parts[bad]} is not divisible by weight quantization block_n = ${bn}")`,
        gg.map((x) => x.parts[bad]!.weight),
      );
    }
  }
  for (const g of derived(input).singleByShape) {
    const l = g[0]!;
    const role = parallelRole(l.module);
    const names = g.map((x) => x.weight);
    if (role === 'column' && tp > 1) {
      if (l.outFeatures % tp !== 0) emit('tp-even-split', `cannot split ${l.outFeatures} output rows over ${tp} ranks`, names);
      else if ((l.outFeatures / tp) % bn !== 0) {
        emit(
          'column-slice',
          `column-parallel: ${l.outFeatures} rows / ${tp} ranks = ${l.outFeatures / tp} per rank, not a multiple of block_n ${bn} ("Weight output_partition_size = ${l.outFeatures / tp} is not divisible by weight quantization block_n = ${bn}")`,
          names,
        );
      }
    } else if (role === 'row' && tp > 1) {
      if (l.inFeatures % tp !== 0) emit('tp-even-split', `cannot split ${l.inFeatures} input columns over ${tp} ranks`, names);
      else if ((l.inFeatures / tp) % bk !== 0) {
        emit(
          'row-slice',
          `row-parallel: ${l.inFeatures} columns / ${tp} ranks = ${l.inFeatures / tp} per rank, not a multiple of block_k ${bk} ("Weight input_size_per_partition = ${l.inFeatures / tp} is not divisible by weight quantization block_k = ${bk}")`,
          names,
        );
      }
    }
  }
  expertRules(engine, input, tp, emit, true);
}

/** Fused MoE: the per-rank intermediate of gate/up (block_n) and of down's input (block_k). */
function expertRules(engine: EngineId, input: DeployCheckInput, tp: number, emit: Emit, atTp1: boolean): void {
  const { bn, bk } = input.block;
  for (const set of derived(input).expertSets) {
    const gateUp = set.filter((l) => expertIntermediate(l).side === 'gate_up');
    const first = gateUp[0] ?? set[0]!;
    const intermediate = expertIntermediate(first).intermediate;
    const names = (gateUp.length > 0 ? gateUp : set).map((l) => l.weight);
    if (intermediate % tp !== 0) {
      emit('tp-even-split', `MoE intermediate ${intermediate} cannot be split over ${tp} ranks`, names);
      continue;
    }
    const perRank = intermediate / tp;
    const split = tp > 1 ? `${intermediate}/${tp} = ${perRank}` : `${perRank}`;
    if ((atTp1 || tp > 1) && perRank % bn !== 0) {
      const sharded = engine === 'vllm' || engine === 'sglang';
      emit(
        'moe-intermediate',
        `MoE intermediate per rank ${split} is not a multiple of block_n ${bn}` +
          (sharded
            ? ` ("The output_size of gate's and up's weight = ${perRank} is not divisible by weight quantization block_n = ${bn}"); expert parallelism keeps each expert whole`
            : ': the gate/up scale shard (segs // block) does not line up'),
        names,
      );
    } else if (tp > 1 && perRank % bk !== 0) {
      const down = set.filter((l) => expertIntermediate(l).side === 'down').map((l) => l.weight);
      const quote = engine === 'vllm' || engine === 'sglang' ? ` ("The input_size of down's weight = ${perRank} is not divisible by weight quantization block_k = ${bk}")` : '';
      emit('moe-intermediate', `MoE intermediate per rank ${split} is not a multiple of block_k ${bk} (down_proj's input)${quote}`, down.length > 0 ? down : names);
    }
  }
}

const MLC_FAMILIES = new Set(['deepseek_v2', 'deepseek_v3', 'qwen3', 'qwen3_moe']);

function mlcRules(input: DeployCheckInput, tp: number, emit: Emit): void {
  const { bn, bk } = input.block;
  const isMinistral = /ministral3|mistral3/i.test(input.label);
  if (!(input.family !== undefined && MLC_FAMILIES.has(input.family)) && !isMinistral) {
    emit('family', `${input.label}: MLC LLM reads weight_block_size only in its deepseek_v2/v3, qwen3, qwen3_moe and ministral3 models; others cannot load a block-FP8 checkpoint`);
  }
  if (input.layout !== 'hf' || qcString(input, 'quant_method') !== 'fp8') {
    emit(
      'layout',
      `quantization_config.quant_method must be "fp8" (got ${JSON.stringify(input.quantizationConfig['quant_method'])}): MLC reads the hf layout (weight_scale_inv) only`,
    );
  }
  if (qcString(input, 'fmt') !== 'e4m3') {
    emit('config-keys', `quantization_config.fmt must be "e4m3" (got ${JSON.stringify(input.quantizationConfig['fmt'] ?? null)}): "unrecognized quantization config"`);
  }
  if (!Array.isArray(input.quantizationConfig['weight_block_size'])) emit('config-keys', 'quantization_config.weight_block_size is missing');
  // ministral3's config reads static block FP8 (BlockScaleQuantizeLinearStaticActivation); the others ask for dynamic.
  if (qcString(input, 'activation_scheme') !== 'dynamic' && !(isMinistral && qcString(input, 'activation_scheme') === 'static')) {
    emit(
      'activation-scheme',
      `quantization_config.activation_scheme must be "dynamic" (got ${JSON.stringify(input.quantizationConfig['activation_scheme'] ?? null)}): the model config rejects it`,
    );
  }
  const mla = mlaDimsOf(input);
  if (mla && (mla.nope % bn !== 0 || mla.v % bk !== 0)) {
    emit(
      'mla-alignment',
      `"Invalid DeepSeek model config": qk_nope_head_dim ${mla.nope} must be a multiple of weight_block_size[0] ${bn} and v_head_dim ${mla.v} of weight_block_size[1] ${bk}`,
    );
  }
  // The loaders concatenate q/k/v (gate/up, and each expert's gate/up) and their per-part scales
  // into one parameter: every part but the last must end on a block boundary, at any TP.
  for (const gg of derived(input).mergedByShape) {
    const g = gg[0]!;
    if (g.kind === 'qkv_a') continue;
    const bad = g.parts.slice(0, -1).findIndex((p) => p.outFeatures % bn !== 0);
    if (bad >= 0) {
      const part = g.parts[bad]!;
      emit(
        'merged-part',
        `the loader concatenates ${g.parts.map((p) => leafOf(p.module)).join('/')} and their scales: ${leafOf(part.module)}'s ${part.outFeatures} rows are not a multiple of block ${bn}, so the concatenated scales do not line up`,
        gg.map((x) => x.parts[bad]!.weight),
      );
    }
  }
  for (const all of derived(input).expertSets) {
    const set = all.filter((l) => expertIntermediate(l).side === 'gate_up');
    if (set.length === 0) continue;
    const i = expertIntermediate(set[0]!).intermediate;
    if (i % bn !== 0)
      emit(
        'moe-intermediate',
        `each expert's gate and up (${i} rows) are concatenated with their scales: ${i} is not a multiple of block ${bn}`,
        set.map((l) => l.weight),
      );
  }
  if (tp > 1) {
    const text = textConfig(input);
    const checks: [string, number | undefined][] = [
      ['num_attention_heads', numberField(text, 'num_attention_heads')],
      ['num_key_value_heads', mla ? undefined : numberField(text, 'num_key_value_heads')],
      ['intermediate_size', numberField(text, 'intermediate_size')],
      ['moe_intermediate_size', numberField(text, 'moe_intermediate_size')],
    ];
    for (const [key, v] of checks) {
      if (v !== undefined && v % tp !== 0) emit('tp-even-split', `${key} ${v} cannot be split evenly over ${tp} GPUs ("Cannot split … evenly to ${tp} GPUs")`);
    }
    for (const gg of derived(input).mergedByShape) {
      const g = gg[0]!;
      if (g.kind === 'qkv_a') continue;
      const bad = g.parts.findIndex((p) => p.outFeatures % tp === 0 && (p.outFeatures / tp) % bn !== 0);
      if (bad >= 0) {
        const part = g.parts[bad]!;
        emit(
          'merged-part',
          `sharded ${leafOf(g.merged)}: segment ${leafOf(part.module)} has ${part.outFeatures}/${tp} = ${part.outFeatures / tp} rows per shard, not a multiple of block ${bn} (segs // block)`,
          gg.map((x) => x.parts[bad]!.weight),
        );
      }
    }
    for (const g of derived(input).singleByShape) {
      const l = g[0]!;
      const role = parallelRole(l.module);
      if (role === 'column' && l.outFeatures % tp === 0 && (l.outFeatures / tp) % bn !== 0) {
        emit(
          'column-slice',
          `column shard ${l.outFeatures}/${tp} = ${l.outFeatures / tp} rows, not a multiple of block ${bn}: the scale shard does not line up`,
          g.map((x) => x.weight),
        );
      } else if (role === 'row' && l.inFeatures % tp === 0 && (l.inFeatures / tp) % bk !== 0) {
        emit(
          'row-slice',
          `row shard ${l.inFeatures}/${tp} = ${l.inFeatures / tp} columns, not a multiple of block ${bk}: the scale shard does not line up`,
          g.map((x) => x.weight),
        );
      }
    }
    expertRules('mlc', input, tp, emit, false);
  }
}

function transformersRules(input: DeployCheckInput, tp: number, emit: Emit): void {
  const { bn, bk } = input.block;
  if (input.layout === 'compressed-tensors') {
    emit('layout', 'compressed-tensors layout: transformers reads it through the compressed-tensors package, which needs version ≥ 0.11 for the keys fp8q writes', [], 'warn');
  } else {
    const scheme = qcString(input, 'activation_scheme') ?? 'dynamic';
    if (scheme !== 'dynamic' && scheme !== 'static') emit('activation-scheme', `activation_scheme ${JSON.stringify(scheme)} not supported`);
    const sf = input.quantizationConfig['scale_fmt'];
    if (sf !== undefined && sf !== 'float' && sf !== 'ue8m0') emit('config-keys', `scale_fmt must be "float" or "ue8m0"; got ${JSON.stringify(sf)}`);
  }
  // Fused FP8 experts with biases (gpt-oss): transformers 5.17's FP8Experts asserts there are none.
  const expertBiases = input.tensorNames.filter((n) => /\.experts\.(gate_up_proj|down_proj|gate_proj|up_proj)_bias$/.test(n));
  const fusedFp8Experts = input.linears.some((l) => l.experts > 0 && /\.experts(\.|$)/.test(l.module) && !/\.experts\.\d+\./.test(l.module));
  if (expertBiases.length > 0 && fusedFp8Experts) {
    emit('expert-bias', `fused FP8 experts with biases (${expertBiases.length} bias tensors): FP8Experts refuses them at load ("does not support bias for now")`, expertBiases);
  }
  for (const g of derived(input).plainByShape) {
    const l = g[0]!;
    const names = g.map((x) => x.weight);
    if (l.inFeatures % bk !== 0) {
      emit(
        'activation-groups',
        `in_features ${l.inFeatures} is not a multiple of block_k ${bk}: FP8Linear.forward's act_quant asserts x.shape[-1] % ${bk} == 0 (loads, fails at the first forward)`,
        names,
      );
    }
    if (l.outFeatures % bn !== 0) {
      emit('dequantize-rows', `out_features ${l.outFeatures} is not a multiple of block_n ${bn}: loading with dequantize=True misreads the last block row`, names, 'warn');
    }
    if (tp > 1) {
      const role = parallelRole(l.module);
      if (role === 'column' && (l.outFeatures % tp !== 0 || (l.outFeatures / tp) % bn !== 0)) {
        emit(
          'column-slice',
          `local_colwise shard ${l.outFeatures}/${tp} rows is not a whole number of ${bn}-row blocks: weight_scale_inv is split like the weight and no longer lines up`,
          names,
        );
      } else if (role === 'row' && (l.inFeatures % tp !== 0 || (l.inFeatures / tp) % bk !== 0)) {
        emit('row-slice', `local_rowwise shard ${l.inFeatures}/${tp} columns is not a whole number of ${bk}-column blocks: weight_scale_inv no longer lines up`, names);
      }
    }
  }
}

/** DeepSeek's inference/convert.py mapping: the second-to-last name component must be one of these. */
const DEEPSEEK_KEYS = new Set([
  'embed_tokens',
  'input_layernorm',
  'post_attention_layernorm',
  'q_proj',
  'q_a_proj',
  'q_a_layernorm',
  'q_b_proj',
  'kv_a_proj_with_mqa',
  'kv_a_layernorm',
  'kv_b_proj',
  'o_proj',
  'gate',
  'gate_proj',
  'down_proj',
  'up_proj',
  'norm',
  'lm_head',
  'scale',
]);
const DEEPSEEK_COLUMN = new Set(['q_proj', 'q_b_proj', 'kv_b_proj', 'gate_proj', 'up_proj']);
const DEEPSEEK_ROW = new Set(['o_proj', 'down_proj']);

const unmappedCache = new WeakMap<DeployCheckInput, string[]>();

/** Tensor names inference/convert.py has no mapping for (layer 61, the MTP layer, it skips). */
function deepseekUnmapped(input: DeployCheckInput): string[] {
  let bad = unmappedCache.get(input);
  if (!bad) {
    bad = [];
    for (const name of input.tensorNames) {
      if (/(^|\.)layers\.61\./.test(name)) continue;
      const renamed = name
        .replace(/^model\./, '')
        .replace('weight_scale_inv', 'scale')
        .replace('e_score_correction_bias', 'bias');
      const parts = renamed.split('.');
      const key = parts[parts.length - 2];
      if (key === undefined || !DEEPSEEK_KEYS.has(key)) bad.push(name);
    }
    unmappedCache.set(input, bad);
  }
  return bad;
}

function deepseekRules(input: DeployCheckInput, tp: number, emit: Emit): void {
  if (input.family !== 'deepseek_v3') {
    emit('family', `${input.label}: DeepSeek's inference/ code builds DeepSeek-V3 only`);
    return;
  }
  if (input.block.bn !== 128 || input.block.bk !== 128) emit('block-size', `block ${input.block.bn}x${input.block.bk}: the code fixes block_size = 128 (weights and activations)`);
  if (input.layout !== 'hf') emit('layout', 'compressed-tensors layout: convert.py reads <module>.weight_scale_inv (renamed to .scale)');
  if (input.activationScheme === 'static') emit('activation-scheme', 'static activation scales: the model has no activation_scale parameters and load_model is strict');
  const bad = deepseekUnmapped(input);
  if (bad.length > 0) {
    const patterns = [...new Set(bad.map(patternOf))];
    const listed = patterns.slice(0, 4).join(', ') + (patterns.length > 4 ? ` and ${patterns.length - 4} more` : '');
    emit(
      'tensor-names',
      `convert.py has no mapping for ${listed} ("Key … not found in mapping"); it reads per-expert weights, kv_b_proj (not w_uk/w_uv) and no activation scales`,
      bad,
    );
  }
  const experts = numberField(input.config, 'n_routed_experts');
  if (tp > 1 && experts !== undefined && experts % tp !== 0)
    emit('expert-parallel', `n_routed_experts ${experts} is not divisible by model parallelism ${tp} (experts are split across ranks, not sliced)`);
  const vocab = numberField(input.config, 'vocab_size');
  if (tp > 1 && vocab !== undefined && vocab % tp !== 0) emit('tp-even-split', `vocab_size ${vocab} is not divisible by world size ${tp}`);
  if (tp === 1) return;
  for (const g of derived(input).plainByShape) {
    const l = g[0]!;
    const leaf = leafOf(l.module);
    const names = g.map((x) => x.weight);
    if (DEEPSEEK_COLUMN.has(leaf)) {
      const rows = Math.ceil(l.outFeatures / 128);
      if (l.outFeatures % tp !== 0 || rows % tp !== 0)
        emit('tp-even-split', `column shard: ${l.outFeatures} rows and ${rows} scale rows must both divide by ${tp} ("Dimension 0 must be divisible by ${tp}")`, names);
      else if ((l.outFeatures / tp) % 128 !== 0)
        emit(
          'column-slice',
          `column shard ${l.outFeatures}/${tp} = ${l.outFeatures / tp} rows is not a whole number of 128-row blocks: the scale rows sharded beside it do not line up`,
          names,
        );
    } else if (DEEPSEEK_ROW.has(leaf)) {
      const cols = Math.ceil(l.inFeatures / 128);
      if (l.inFeatures % tp !== 0 || cols % tp !== 0)
        emit('tp-even-split', `row shard: ${l.inFeatures} columns and ${cols} scale columns must both divide by ${tp} ("Dimension 1 must be divisible by ${tp}")`, names);
      else if ((l.inFeatures / tp) % 128 !== 0)
        emit('row-slice', `row shard ${l.inFeatures}/${tp} = ${l.inFeatures / tp} columns: act_quant asserts the input's last dimension % 128 == 0`, names);
    }
  }
}

function textConfig(input: DeployCheckInput): Record<string, unknown> | undefined {
  const t = input.config?.['text_config'];
  return typeof t === 'object' && t !== null ? (t as Record<string, unknown>) : input.config;
}

function mlaDimsOf(input: DeployCheckInput): { nope: number; v: number } | undefined {
  const c = textConfig(input);
  if (numberField(c, 'kv_lora_rank') === undefined) return undefined;
  const nope = numberField(c, 'qk_nope_head_dim');
  const v = numberField(c, 'v_head_dim');
  return nope !== undefined && v !== undefined ? { nope, v } : undefined;
}

function fp8ConfigRules(engine: EngineId, input: DeployCheckInput, emit: Emit): void {
  if (input.layout === 'compressed-tensors') {
    if (engine === 'sglang')
      emit('layout', 'compressed-tensors layout: checked against SGLang\'s "fp8" method only; its compressed-tensors loader is not covered by these rules', [], 'warn');
    else
      emit(
        'layout',
        'compressed-tensors layout: read through the compressed-tensors package, which needs version ≥ 0.11 for the keys fp8q writes (block strategy, block_structure, transform_config)',
        [],
        'warn',
      );
    return;
  }
  const qm = qcString(input, 'quant_method');
  if (qm === undefined || !qm.includes('fp8')) emit('config-keys', `quantization_config.quant_method ${JSON.stringify(qm ?? null)} does not name fp8`);
  if (qcString(input, 'activation_scheme') === undefined) emit('config-keys', 'quantization_config.activation_scheme is missing ("Cannot find any of [\'activation_scheme\']")');
  const wbs = input.quantizationConfig['weight_block_size'];
  if (!Array.isArray(wbs) || wbs.length !== 2) emit('config-keys', `quantization_config.weight_block_size ${JSON.stringify(wbs ?? null)}: block-wise loading needs two integers`);
  if (input.activationScheme === 'static' || qcString(input, 'activation_scheme') === 'static') {
    emit(
      'activation-scheme',
      '"The block-wise quantization only supports dynamic activation scheme for now, but got static activation scheme.": convert with --activation-scheme dynamic for this engine',
    );
  }
}

/** All findings of one engine at one tensor-parallel size. */
export function evaluateEngine(engine: EngineId, input: DeployCheckInput, tp: number): Finding[] {
  const findings: Finding[] = [];
  const emit: Emit = (rule, message, tensors = [], severity = 'fail') => {
    findings.push({ engine, tp, rule, severity, message, source: ruleSource(engine, rule), tensors: refOf(tensors) });
  };
  if (engine === 'vllm' || engine === 'sglang') {
    fp8ConfigRules(engine, input, emit);
    weightDtypeRule(input, emit);
    shardedRules(engine, input, tp, emit);
  } else if (engine === 'mlc') {
    mlcRules(input, tp, emit);
  } else if (engine === 'transformers') {
    weightDtypeRule(input, emit);
    transformersRules(input, tp, emit);
  } else {
    weightDtypeRule(input, emit);
    deepseekRules(input, tp, emit);
  }
  if (!(engine === 'deepseek' && input.family !== 'deepseek_v3')) {
    scaleRules(input, emit);
    keptRules(engine, input, emit);
  }
  return findings;
}
