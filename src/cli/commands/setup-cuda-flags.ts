// The options of `fp8q setup-cuda`, declared once: src/cli/index.ts registers them from this table.

import type { FlagTable, FlagValues } from '../common/flags.js';

export const SETUP_CUDA_FLAGS = {
  check: { spec: '--check', description: 'install nothing; say which provider is there and what --device auto would pick', kind: 'boolean' },
  json: { spec: '--json', description: 'print one JSON report on stdout and nothing else', kind: 'boolean' },
} as const satisfies FlagTable;

export type SetupCudaFlags = FlagValues<typeof SETUP_CUDA_FLAGS>;
