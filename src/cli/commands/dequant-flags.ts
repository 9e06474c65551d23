// The options of `fp8q dequant`, declared once: src/cli/index.ts registers them from this table and
// commands/dequant.ts receives DequantFlags, derived from it.

import type { FlagTable, FlagValues } from '../common/flags.js';

export const DEQUANT_FLAGS = {
  output: { spec: '-o, --output <dir>', description: 'output folder (written atomically)', kind: 'string' },
  dtype: { spec: '--dtype <dtype>', description: 'bfloat16 or float16', kind: 'string', default: 'bfloat16' },
  maxShardSize: { spec: '--max-shard-size <size>', description: 'largest output shard', kind: 'string', default: '5GB' },
  force: { spec: '--force', description: 'replace a non-empty output folder that holds a checkpoint', kind: 'boolean' },
  allowNonfinite: { spec: '--allow-nonfinite', description: 'write even when scales are NaN/Inf/≤ 0 or values come out NaN/Inf (counted in the summary)', kind: 'boolean' },
  allowUnindexed: { spec: '--allow-unindexed', description: 'a tensor a shard holds but the index does not list: leave it out with a warning instead of failing', kind: 'boolean' },
  json: { spec: '--json', description: 'print one JSON summary on stdout and nothing else', kind: 'boolean' },
  quiet: { spec: '-q, --quiet', description: 'no progress output', kind: 'boolean' },
} as const satisfies FlagTable;

export type DequantFlags = FlagValues<typeof DEQUANT_FLAGS>;
