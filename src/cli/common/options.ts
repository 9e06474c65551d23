// Parsing of option values shared by commands (--block, --weight-dtype, sizes), with messages
// that name the flag and show a valid example.

import type { BlockShape } from '../../fp8/block-quantize.js';
import type { Fp8Format } from '../../fp8/formats.js';
import { CHECKPOINT_FORMATS, type CheckpointFormat } from '../../io/formats/quantized-format.js';
import { parseByteSize } from '../../io/sizes.js';
import { availableParallelism } from 'node:os';
import { UsageError } from './errors.js';
import { warn, type OutputMode } from './output.js';

export function parseBlock(text: string): BlockShape {
  const m = /^(\d+)x(\d+)$/i.exec(text.trim());
  const bn = m ? Number(m[1]) : NaN;
  const bk = m ? Number(m[2]) : NaN;
  if (!m || !(bn >= 1 && bn <= 65536) || !(bk >= 1 && bk <= 65536)) {
    throw new UsageError(`invalid --block "${text}": expected NxK with positive integers, e.g. 128x128`);
  }
  return { bn, bk };
}

export function parseWeightDtype(text: string): Fp8Format {
  const t = text.trim().toLowerCase();
  if (t === 'float8_e4m3fn' || t === 'e4m3fn' || t === 'e4m3') return 'e4m3fn';
  if (t === 'float8_e5m2' || t === 'e5m2') return 'e5m2';
  throw new UsageError(`invalid --weight-dtype "${text}": expected float8_e4m3fn or float8_e5m2`);
}

export function parseOutputFormat(text: string): CheckpointFormat {
  const t = text.trim().toLowerCase();
  const found = CHECKPOINT_FORMATS.find((f) => f === t);
  if (!found) throw new UsageError(`invalid --format "${text}": expected ${CHECKPOINT_FORMATS.join(' or ')}`);
  return found;
}

export function parseSize(flag: string, text: string): number {
  try {
    return parseByteSize(text);
  } catch (e) {
    throw new UsageError(`${flag}: ${(e as Error).message}`);
  }
}

export function parsePositiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`invalid ${flag} "${text}": expected a positive integer`);
  return n;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * A thread count capped to the cores this machine has: threads beyond them only add memory (each
 * holds its own buffers) and contention. The cap is said, not silent.
 */
export function capThreads(requested: number, mode?: OutputMode, cores: number = availableParallelism()): number {
  if (requested <= cores) return requested;
  if (mode) warn(mode, `--threads ${requested} is more than the ${cores} cores here: using ${cores}`);
  return cores;
}
