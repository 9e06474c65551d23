// The options of `fp8q check`, declared once: src/cli/index.ts registers them from this table and
// commands/check.ts reads them with readFlags.

import { parseEngines } from '../../passes/deploy-check/engines.js';
import { parseTpSizes } from '../../passes/deploy-check/target-lists.js';
import type { FlagTable, FlagValues } from '../common/flags.js';
import { parseBlock, usageErrors } from '../common/options.js';

export const CHECK_FLAGS = {
  engine: {
    spec: '--engine <list>',
    description: 'engines: vllm,sglang,mlc,transformers,deepseek (default all)',
    kind: 'string',
    parse: usageErrors(parseEngines),
    to: 'engines',
  },
  tp: { spec: '--tp <list>', description: 'tensor-parallel sizes (default 1,2,4,8)', kind: 'string', parse: usageErrors(parseTpSizes), to: 'tpSizes' },
  block: { spec: '--block <NxK>', description: 'BF16/FP16 input: the block a convert would use (default 128x128)', kind: 'string', parse: parseBlock },
  json: { spec: '--json', description: 'print JSON', kind: 'boolean' },
} as const satisfies FlagTable;

export type CheckFlags = FlagValues<typeof CHECK_FLAGS>;
