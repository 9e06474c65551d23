// The options of `fp8q inspect`, declared once: src/cli/index.ts registers them from this table.

import type { FlagTable, FlagValues } from '../common/flags.js';

export const INSPECT_FLAGS = {
  json: { spec: '--json', description: 'print JSON', kind: 'boolean' },
} as const satisfies FlagTable;

export type InspectFlags = FlagValues<typeof INSPECT_FLAGS>;
