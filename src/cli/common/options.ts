// How option values are read (blocks, dtypes, sizes, numbers in a range, devices), with messages
// that name the flag and show a valid example. Each is a FlagParser a flag table row names as its
// `parse` (flags.ts); they import only what is light, since every table loads before any command runs.

import type { BlockShape } from '../../fp8/block-quantize.js';
import type { Fp8Format } from '../../fp8/formats.js';
import { CHECKPOINT_FORMATS, type CheckpointFormat } from '../../io/formats/quantized-format.js';
import { parseByteSize } from '../../io/sizes.js';
import { compileExcludePattern } from '../../passes/skip-rules.js';
import { DEVICE_REQUESTS, type DeviceRequest } from '../../runtime/device/device-request.js';
import { availableParallelism } from 'node:os';
import { UsageError } from './errors.js';
import { warn, type OutputMode } from './output.js';

export function parseBlock(text: string, flag = '--block'): BlockShape {
  const m = /^(\d+)x(\d+)$/i.exec(text.trim());
  const bn = m ? Number(m[1]) : NaN;
  const bk = m ? Number(m[2]) : NaN;
  if (!m || !(bn >= 1 && bn <= 65536) || !(bk >= 1 && bk <= 65536)) {
    throw new UsageError(`invalid ${flag} "${text}": expected NxK with positive integers, e.g. 128x128`);
  }
  return { bn, bk };
}

export function parseWeightDtype(text: string, flag = '--weight-dtype'): Fp8Format {
  const t = text.trim().toLowerCase();
  if (t === 'float8_e4m3fn' || t === 'e4m3fn' || t === 'e4m3') return 'e4m3fn';
  if (t === 'float8_e5m2' || t === 'e5m2') return 'e5m2';
  throw new UsageError(`invalid ${flag} "${text}": expected float8_e4m3fn or float8_e5m2`);
}

export function parseOutputFormat(text: string, flag = '--format'): CheckpointFormat {
  const t = text.trim().toLowerCase();
  const found = CHECKPOINT_FORMATS.find((f) => f === t);
  if (!found) throw new UsageError(`invalid ${flag} "${text}": expected ${CHECKPOINT_FORMATS.join(' or ')}`);
  return found;
}

export function parseSize(text: string, flag: string): number {
  try {
    return parseByteSize(text);
  } catch (e) {
    throw new UsageError(`${flag}: ${(e as Error).message}`);
  }
}

export function parsePositiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`invalid ${flag} "${text}": expected a positive integer`);
  return n;
}

/** A number `ok` accepts, or a UsageError saying what was `expected`. */
export function numberWhere(ok: (x: number) => boolean, expected: string): (text: string, flag: string) => number {
  return (text, flag) => {
    const x = Number(text);
    if (text.trim() === '' || !Number.isFinite(x) || !ok(x)) throw new UsageError(`invalid ${flag} "${text}": expected ${expected}`);
    return x;
  };
}

/** A number in [min, max]. */
export function numberIn(min: number, max: number): (text: string, flag: string) => number {
  return numberWhere((x) => x >= min && x <= max, `a number in [${min}, ${max === Infinity ? '∞' : max}]`);
}

/** A positive integer no larger than `max`: `what` says why (e.g. "tokens"). */
export function positiveIntUpTo(max: number, what: string): (text: string, flag: string) => number {
  return (text, flag) => {
    const n = parsePositiveInt(text, flag);
    if (n > max) throw new UsageError(`invalid ${flag} ${n}: at most ${max} ${what}`);
    return n;
  };
}

export function parseDevice(text: string, flag: string): DeviceRequest {
  const found = DEVICE_REQUESTS.find((d) => d === text);
  if (found === undefined) throw new UsageError(`invalid ${flag} "${text}": expected ${DEVICE_REQUESTS.join(', ').replace(/, (?=[^,]*$)/, ' or ')}`);
  return found;
}

/** A parser that throws a plain Error with a message for the user (passes/), its refusal as a UsageError. */
export function usageErrors<V>(parse: (text: string) => V): (text: string) => V {
  return (text) => {
    try {
      return parse(text);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  };
}

/** An --exclude / --include pattern, checked before any reading: a bad `re:` pattern is a command-line error. */
export function parseModulePattern(text: string, flag: string): string {
  if (text.trim() === '' || text === 're:')
    throw new UsageError(`invalid ${flag} "${text}": an empty pattern matches nothing; give a module path suffix (mlp.down_proj) or re:<regex>`);
  usageErrors((t: string) => compileExcludePattern(t, flag))(text);
  return text;
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
