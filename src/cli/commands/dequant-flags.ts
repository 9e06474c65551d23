// The options of `fp8q dequant`, declared once: src/cli/index.ts registers them from this table and
// commands/dequant.ts receives DequantFlags, derived from it, and reads them with readFlags into
// DequantOptions fields.

import type { DequantDtype } from '../../pipeline/dequant-checkpoint.js';
import type { FlagTable, FlagValues } from '../common/flags.js';
import { UsageError } from '../common/errors.js';
import { parseSize } from '../common/options.js';

export function parseDequantDtype(text: string, flag = '--dtype'): DequantDtype {
  const t = text.trim().toLowerCase();
  if (t === 'bfloat16' || t === 'bf16') return 'bfloat16';
  if (t === 'float16' || t === 'fp16' || t === 'half') return 'float16';
  throw new UsageError(`invalid ${flag} "${text}": expected bfloat16 or float16`);
}

export const DEQUANT_FLAGS = {
  output: { spec: '-o, --output <dir>', description: 'output folder (written atomically)', kind: 'string' },
  dtype: { spec: '--dtype <dtype>', description: 'bfloat16 or float16', kind: 'string', default: 'bfloat16', parse: parseDequantDtype },
  maxShardSize: { spec: '--max-shard-size <size>', description: 'largest output shard', kind: 'string', default: '5GB', parse: parseSize, to: 'maxShardBytes' },
  force: { spec: '--force', description: 'replace a non-empty output folder that holds a checkpoint', kind: 'boolean' },
  allowNonfinite: {
    spec: '--allow-nonfinite',
    description: 'write even when scales are NaN/Inf/≤ 0 or values come out NaN/Inf (counted in the summary)',
    kind: 'boolean',
    to: 'allowNonFinite',
  },
  allowUnindexed: { spec: '--allow-unindexed', description: 'a tensor a shard holds but the index does not list: leave it out with a warning instead of failing', kind: 'boolean' },
  json: { spec: '--json', description: 'print one JSON summary on stdout and nothing else', kind: 'boolean' },
  quiet: { spec: '-q, --quiet', description: 'no progress output', kind: 'boolean' },
} as const satisfies FlagTable;

export type DequantFlags = FlagValues<typeof DEQUANT_FLAGS>;
