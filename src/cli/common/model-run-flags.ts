// Flag rows that several commands running a model share: text input (logits, verify) and where the
// forward runs (logits, verify, generate). Spread into each command's table, so a description or a
// check changes in one place.

import type { FlagTable } from './flags.js';
import { parseDevice, parsePositiveInt } from './options.js';

export const TEXT_INPUT_FLAGS = {
  text: { spec: '--text <file|->', description: "plain text (a file, or - for stdin), tokenized with the model's tokenizer.json", kind: 'string' },
  dataset: {
    spec: '--dataset <file.jsonl|->',
    description: 'JSONL, one {"text": ...} record per line, tokenized the same way (- reads standard input)',
    kind: 'string',
  },
  seqLen: { spec: '--seq-len <n>', description: 'tokens per row of text input (default 512, at most the model context)', kind: 'string', parse: parsePositiveInt },
  maxSamples: { spec: '--max-samples <n>', description: 'most rows of text input', kind: 'string', parse: parsePositiveInt },
  maxTokens: { spec: '--max-tokens <n>', description: 'most tokens of text input (default 1024)', kind: 'string', parse: parsePositiveInt },
} as const satisfies FlagTable;

export const DEVICE_FLAGS = {
  device: { spec: '--device <device>', description: 'auto, cpu or cuda', kind: 'string', default: 'auto', parse: parseDevice },
  threads: { spec: '--threads <n>', description: 'onnxruntime intra-op threads (default: all cores)', kind: 'string', parse: parsePositiveInt },
} as const satisfies FlagTable;
