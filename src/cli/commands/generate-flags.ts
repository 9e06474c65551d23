// The options of `fp8q generate`, declared once: src/cli/index.ts registers them from this table
// and commands/generate.ts reads them with readFlags.

import { WEIGHT_MODE_REQUESTS } from '../../runtime/generate/weight-residency.js';
import type { FlagTable, FlagValues } from '../common/flags.js';
import { DEVICE_FLAGS } from '../common/model-run-flags.js';
import { numberWhere, parsePositiveInt } from '../common/options.js';

export const GENERATE_FLAGS = {
  prompt: { spec: '--prompt <text>', description: 'prompt text; repeatable', kind: 'list' },
  prompts: { spec: '--prompts <file|->', description: 'more prompts, one per non-empty line (- reads standard input)', kind: 'string' },
  maxNewTokens: { spec: '--max-new-tokens <n>', description: 'most tokens generated per prompt (default 64)', kind: 'string', parse: parsePositiveInt },
  temperature: {
    spec: '--temperature <x>',
    description: 'sampling temperature (default 0: greedy)',
    kind: 'string',
    parse: numberWhere((x) => x >= 0, 'a number ≥ 0 (0: greedy)'),
  },
  topP: {
    spec: '--top-p <x>',
    description: 'sampling: keep the most likely tokens up to this probability (default 1)',
    kind: 'string',
    parse: numberWhere((x) => x > 0 && x <= 1, 'a number in (0, 1]'),
  },
  seed: {
    spec: '--seed <n>',
    description: 'sampling: seed of the random generator (default 0)',
    kind: 'string',
    parse: numberWhere((x) => Number.isSafeInteger(x) && x >= 0 && x <= 0xffffffff, 'an integer from 0 to 4294967295'),
  },
  chat: { spec: '--chat', description: "apply the tokenizer config's chat template to the prompt", kind: 'boolean' },
  compare: { spec: '--compare <quantized-dir>', description: 'also run this (FP8) checkpoint on the same prompts and compare', kind: 'string' },
  cache: { spec: '--no-cache', description: 'recompute the whole sequence at every step instead of using the KV cache', kind: 'boolean' },
  weights: {
    spec: '--weights <mode>',
    description: 'keep weights in memory across steps, or stream them layer by layer',
    kind: 'string',
    choices: WEIGHT_MODE_REQUESTS,
    default: 'auto',
  },
  ...DEVICE_FLAGS,
  json: {
    spec: '--json',
    description: 'print one JSON document (ids, text, per-token log-probabilities) on stdout and nothing else',
    kind: 'boolean',
  },
  quiet: { spec: '-q, --quiet', description: 'no progress output', kind: 'boolean' },
} as const satisfies FlagTable;

export type GenerateFlags = FlagValues<typeof GENERATE_FLAGS>;
