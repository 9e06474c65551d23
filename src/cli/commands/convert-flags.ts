// The options of `fp8q convert`, declared once: src/cli/index.ts registers them from this table,
// commands/convert.ts receives ConvertFlags and reads them with readFlags into each row's field
// (most are ConvertOptions fields), each value parsed and checked by its row (the Hub flags and
// --report by the rules they share with other commands: common/hub-source.ts, reports/). Kept free of heavy
// imports, since the CLI loads it before any command runs.

import { DEVICE_REQUESTS } from '../../runtime/device/device-request.js';
import { MAX_SEQUENCE } from '../../runtime/models/sequence-limit.js';
import { parseTargets } from '../../passes/deploy-check/target-lists.js';
import type { FlagTable, FlagValues } from '../common/flags.js';
import { parseBlock, parseModulePattern, parseOutputFormat, parsePositiveInt, parseSize, parseWeightDtype, positiveIntUpTo, usageErrors } from '../common/options.js';

export const CONVERT_FLAGS = {
  output: { spec: '-o, --output <dir>', description: 'output folder (written atomically)', kind: 'string' },
  block: { spec: '--block <NxK>', description: 'block size (rows x columns of each scale block)', kind: 'string', default: '128x128', parse: parseBlock },
  weightDtype: { spec: '--weight-dtype <dtype>', description: 'float8_e4m3fn or float8_e5m2', kind: 'string', default: 'float8_e4m3fn', parse: parseWeightDtype, to: 'format' },
  scaleFmt: { spec: '--scale-fmt <fmt>', description: 'block scale format', kind: 'string', choices: ['float', 'ue8m0'], default: 'float', to: 'scaleFormat' },
  format: {
    spec: '--format <layout>',
    description: 'checkpoint layout: hf (weight_scale_inv, quant_method fp8) or compressed-tensors (llm-compressor FP8_BLOCK)',
    kind: 'string',
    choices: ['hf', 'compressed-tensors'],
    default: 'hf',
    parse: parseOutputFormat,
    to: 'outputFormat',
  },
  exclude: {
    spec: '--exclude <pattern>',
    description: 'keep matching modules unquantized (module suffix, or re:<regex>); repeatable',
    kind: 'list',
    parse: parseModulePattern,
  },
  include: {
    spec: '--include <pattern>',
    description: 'quantize matching modules the architecture would keep (vision towers, projectors; same syntax); repeatable',
    kind: 'list',
    parse: parseModulePattern,
  },
  maxShardSize: { spec: '--max-shard-size <size>', description: 'largest output shard', kind: 'string', default: '5GB', parse: parseSize, to: 'maxShardBytes' },
  dryRun: { spec: '--dry-run', description: 'print the plan, write nothing', kind: 'boolean' },
  force: { spec: '--force', description: 'replace a non-empty output folder that holds a checkpoint', kind: 'boolean' },
  allowNonfinite: {
    spec: '--allow-nonfinite',
    description: 'saturate ±Inf to ±FP8 max and NaN to 0 (and keep non-finite unquantized tensors) instead of failing',
    kind: 'boolean',
    to: 'allowNonFinite',
  },
  allowUnindexed: { spec: '--allow-unindexed', description: 'a tensor a shard holds but the index does not list: leave it out with a warning instead of failing', kind: 'boolean' },
  mlaSplit: { spec: '--mla-split', description: 'MLA models (kv_lora_rank): also write self_attn.w_uk / w_uv in FP8 (MLC LLM layout)', kind: 'boolean' },
  stackExperts: { spec: '--stack-experts', description: 'write per-expert MoE weights as stacked [E, N, K] experts.gate_up_proj / down_proj', kind: 'boolean' },
  requantize: { spec: '--requantize', description: 'accept an FP8 input: dequantize it to float32 on the fly and quantize it again', kind: 'boolean' },
  threads: { spec: '--threads <n>', description: 'worker threads quantizing (default: available cores)', kind: 'string', parse: parsePositiveInt },
  activationScheme: {
    spec: '--activation-scheme <scheme>',
    description: 'dynamic, or static: activation scales measured on --calibration data',
    kind: 'string',
    choices: ['dynamic', 'static'],
  },
  calibration: {
    spec: '--calibration <file>',
    description: 'static: calibration text (one sample per line), JSONL of {"text": ...}, or input_ids .safetensors',
    kind: 'string',
    to: 'calibrationFile',
  },
  calibrationSamples: { spec: '--calibration-samples <n>', description: 'static: samples used (default 128)', kind: 'string', parse: parsePositiveInt },
  calibrationSeqLen: { spec: '--calibration-seq-len <n>', description: 'static: tokens per sample (default 512)', kind: 'string', parse: positiveIntUpTo(MAX_SEQUENCE, 'tokens') },
  calibrationSplit: {
    spec: '--calibration-split <mode>',
    description: 'static: sample (each line/record/row, cut to seq-len) or chunk (all text cut in seq-len pieces)',
    kind: 'string',
    choices: ['sample', 'chunk'],
  },
  calibrationDevice: {
    spec: '--calibration-device <device>',
    description: 'static: where the calibration forward runs (default auto)',
    kind: 'string',
    choices: DEVICE_REQUESTS,
  },
  activationScaleGranularity: {
    spec: '--activation-scale-granularity <g>',
    description: 'static: group (one scale per bk input channels, MLC LLM) or tensor (one scalar, transformers)',
    kind: 'string',
    choices: ['group', 'tensor'],
  },
  revision: { spec: '--revision <rev>', description: 'Hub source: branch, tag or commit (default main)', kind: 'string' },
  hubUrl: { spec: '--hub-url <url>', description: 'Hub endpoint (default $HF_ENDPOINT or https://huggingface.co)', kind: 'string' },
  target: {
    spec: '--target <list>',
    description: 'engines the output must load in, e.g. vllm:tp8,mlc: checked before anything is written (exit 2 if one would refuse it)',
    kind: 'string',
    parse: usageErrors(parseTargets),
    to: 'deployTargets',
  },
  forceTarget: { spec: '--force-target', description: 'with --target: convert even when a target would refuse the output', kind: 'boolean' },
  hubTimeout: {
    spec: '--hub-timeout <seconds>',
    description: 'Hub: give up on a request with no answer, or a download with no data, for this long (default $FP8Q_HUB_TIMEOUT or 60)',
    kind: 'string',
  },
  pushTo: { spec: '--push-to <org/name>', description: 'upload the converted folder to this Hub repo, with a generated model card', kind: 'string' },
  private: { spec: '--private', description: 'with --push-to: create the repo private', kind: 'boolean' },
  report: { spec: '--report <file.md>', description: 'also write a Markdown report (plan, sizes, shard hashes) fit for a model card; --force replaces it', kind: 'string' },
  json: { spec: '--json', description: 'print one JSON summary on stdout and nothing else', kind: 'boolean' },
  quiet: { spec: '-q, --quiet', description: 'no progress output', kind: 'boolean' },
} as const satisfies FlagTable;

export type ConvertFlags = FlagValues<typeof CONVERT_FLAGS>;
