// The options of `fp8q logits`, declared once: src/cli/index.ts registers them from this table and
// commands/logits.ts reads them with readFlags.

import type { FlagTable, FlagValues } from '../common/flags.js';
import { DEVICE_FLAGS, TEXT_INPUT_FLAGS } from '../common/model-run-flags.js';

export const LOGITS_FLAGS = {
  inputIds: { spec: '--input-ids <file>', description: 'safetensors file with "input_ids" I64 [B, T]', kind: 'string' },
  ...TEXT_INPUT_FLAGS,
  output: {
    spec: '-o, --output <file>',
    description: 'where to write "logits" F32 [B, T, vocab] (safetensors; with text input also its "input_ids")',
    kind: 'string',
  },
  ...DEVICE_FLAGS,
  force: { spec: '--force', description: 'replace an existing output file', kind: 'boolean' },
  json: { spec: '--json', description: 'print one JSON summary on stdout and nothing else', kind: 'boolean' },
  quiet: { spec: '-q, --quiet', description: 'no progress output', kind: 'boolean' },
} as const satisfies FlagTable;

export type LogitsFlags = FlagValues<typeof LOGITS_FLAGS>;
