// Numeric comparison of op outputs: relative L2 error for matmul results (float32 accumulation
// order differs between onnxruntime and the references, so equality is the wrong test) and
// first-mismatch reports for results that must be bit-exact, naming the index, not just "differs".

export interface Mismatch {
  readonly index: number;
  readonly expected: number;
  readonly actual: number;
}

/** ‖actual − expected‖₂ / ‖expected‖₂ (absolute when expected is all zero); NaN anywhere gives NaN. */
export function relativeL2Error(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new RangeError(`length mismatch: actual ${actual.length}, expected ${expected.length}`);
  }
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = actual[i]! - expected[i]!;
    diff += d * d;
    norm += expected[i]! * expected[i]!;
  }
  return norm === 0 ? Math.sqrt(diff) : Math.sqrt(diff / norm);
}

/** The first index where the values differ (Object.is: -0 ≠ +0, NaN = NaN), or null. */
export function firstMismatch(actual: ArrayLike<number>, expected: ArrayLike<number>): Mismatch | null {
  if (actual.length !== expected.length) {
    throw new RangeError(`length mismatch: actual ${actual.length}, expected ${expected.length}`);
  }
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) return { index: i, expected: expected[i]!, actual: actual[i]! };
  }
  return null;
}

/** Counts differing elements (Object.is semantics). */
export function countMismatches(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let count = 0;
  for (let i = 0; i < expected.length; i++) if (!Object.is(actual[i], expected[i])) count++;
  return count;
}
