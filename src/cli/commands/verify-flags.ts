// The options of `fp8q verify`, declared once: src/cli/index.ts registers them from this table and
// commands/verify.ts reads them with readFlags (the gate limits into Gates fields).

import type { FlagTable, FlagValues } from '../common/flags.js';
import { DEVICE_FLAGS, TEXT_INPUT_FLAGS } from '../common/model-run-flags.js';
import { numberIn, numberWhere, parsePositiveInt } from '../common/options.js';

export const VERIFY_FLAGS = {
  inputIds: { spec: '--input-ids <file>', description: 'token ids: safetensors file with "input_ids" I64 [B, T]', kind: 'string' },
  ...TEXT_INPUT_FLAGS,
  tokens: {
    spec: '--tokens <n>',
    description: 'random token ids, this many (the default input only for a model without tokenizer.json: 32)',
    kind: 'string',
    parse: parsePositiveInt,
  },
  seed: {
    spec: '--seed <n>',
    description: 'seed of the random token ids (default 0)',
    kind: 'string',
    parse: numberWhere((x) => Number.isSafeInteger(x) && x >= 0, 'a non-negative integer'),
  },
  ...DEVICE_FLAGS,
  maxKl: { spec: '--max-kl <x>', description: 'largest mean KL(original ‖ quantized) per token (default 0.15)', kind: 'string', parse: numberIn(0, Infinity) },
  minTop1: { spec: '--min-top1 <x>', description: 'smallest top-1 agreement (default 0.5)', kind: 'string', parse: numberIn(0, 1) },
  maxLayerRelError: {
    spec: '--max-layer-rel-error <x>',
    description: 'largest relative error of any quantized linear (default 0.3)',
    kind: 'string',
    parse: numberIn(0, Infinity),
  },
  maxLayerErrorRatio: {
    spec: '--max-layer-error-ratio <x>',
    description: "largest ratio of a linear's error to its FP8 floor, the original weights re-quantized the same way (default 2)",
    kind: 'string',
    parse: numberIn(1, Infinity),
  },
  maxPplIncrease: {
    spec: '--max-ppl-increase <percent>',
    description: 'largest perplexity increase on text input, percent (default 10)',
    kind: 'string',
    parse: numberIn(0, Infinity),
  },
  allowUnverified: { spec: '--allow-unverified', description: 'pass even when some quantized tensors were not run (experts no token reached)', kind: 'boolean' },
  junit: { spec: '--junit <file>', description: 'also write the report as JUnit XML (one test case per gate and per quantized linear)', kind: 'string' },
  markdown: { spec: '--markdown <file>', description: 'also write the report as Markdown', kind: 'string' },
  summary: { spec: '--no-summary', description: 'do not append the Markdown report to $GITHUB_STEP_SUMMARY', kind: 'boolean' },
  force: { spec: '--force', description: 'replace existing --junit/--markdown files', kind: 'boolean' },
  json: { spec: '--json', description: 'print one JSON report on stdout and nothing else', kind: 'boolean' },
  quiet: { spec: '-q, --quiet', description: 'no progress output', kind: 'boolean' },
} as const satisfies FlagTable;

export type VerifyFlags = FlagValues<typeof VERIFY_FLAGS>;
