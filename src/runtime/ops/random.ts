// Seeded pseudo-random data (mulberry32): op tests and synthetic verification inputs must be
// reproducible from a seed printed in a failure message, which Math.random cannot give.

import type { Fp8Format } from './types.js';

export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  normalArray(length: number, std = 1): Float32Array {
    return Float32Array.from({ length }, () => this.normal() * std);
  }

  /** Uniformly chosen finite FP8 codes (no NaN, and no Inf for E5M2). */
  fp8Codes(length: number, format: Fp8Format): Uint8Array {
    const codes = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      let c: number;
      do c = Math.floor(this.next() * 256);
      while (format === 'e4m3fn' ? (c & 0x7f) === 0x7f : (c & 0x7c) === 0x7c);
      codes[i] = c;
    }
    return codes;
  }
}
