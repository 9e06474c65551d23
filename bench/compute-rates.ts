// Compute-only rates of the quantize kernels: one 128-row BF16 stripe of a 14336-column weight,
// already in memory, quantized repeatedly on this thread. Elements per second per core, so the
// I/O-free ceiling of a convert is (rate × threads).

import { performance } from 'node:perf_hooks';
import { quantizeStripe } from '../src/fp8/block-quantize.js';
import { float32ToBf16Bits, widenToFloat32 } from '../src/fp8/dtypes.js';
import { FastQuantizeScratch, quantizeBf16StripeFast } from '../src/fp8/fast-quantize.js';
import { WasmBf16Kernel } from '../src/fp8/wasm-kernel.js';

export interface KernelRate {
  readonly name: string;
  readonly elementsPerSecond: number;
}

export interface ComputeRates {
  readonly stripe: readonly [number, number];
  readonly kernels: readonly KernelRate[];
}

const ROWS = 128;
const COLS = 14336;
const MIN_SECONDS = 1;

function stripe(): Uint16Array {
  const out = new Uint16Array(ROWS * COLS);
  let s = 12345;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = float32ToBf16Bits(((s / 4294967296) * 2 - 1) * 0.05);
  }
  return out;
}

function rate(run: () => void): number {
  run(); // warm up the JIT
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < MIN_SECONDS * 1000) {
    run();
    n++;
    t = performance.now();
  }
  return (n * ROWS * COLS) / ((t - t0) / 1000);
}

export function computeRates(): ComputeRates {
  const bf16 = stripe();
  const bytes = new Uint8Array(bf16.buffer);
  const values = new Float32Array(ROWS * COLS);
  const codes = new Uint8Array(ROWS * COLS);
  const scales = new Float32Array(COLS / 128);
  const opts = { format: 'e4m3fn', block: { bn: 128, bk: 128 }, scaleFormat: 'float', nonFinite: 'error' } as const;
  const kernels: KernelRate[] = [];
  kernels.push({
    name: 'reference (widenToFloat32 + quantizeStripe)',
    elementsPerSecond: rate(() => quantizeStripe(widenToFloat32(bytes, 'BF16', values), ROWS, COLS, opts, codes, scales)),
  });
  const scratch = new FastQuantizeScratch();
  const fastCodes = new Uint8Array(ROWS * COLS);
  const fastScales = new Float32Array(COLS / 128);
  kernels.push({
    name: 'TypeScript fast kernel (quantizeBf16StripeFast)',
    elementsPerSecond: rate(() => quantizeBf16StripeFast(bf16, ROWS, COLS, opts, fastCodes, fastScales, 0, scratch)),
  });
  // A bench that measured a kernel producing other bytes would be measuring the wrong thing.
  const check = (name: string): void => {
    if (fastCodes.some((c, i) => c !== codes[i]) || fastScales.some((s, i) => s !== scales[i])) throw new Error(`bench: ${name} bytes differ from the reference`);
  };
  check('TypeScript fast kernel');
  const wasm = WasmBf16Kernel.create();
  if (wasm) {
    fastCodes.fill(0);
    kernels.push({
      name: 'WebAssembly SIMD kernel (incl. copy in/out)',
      elementsPerSecond: rate(() => void wasm.quantizeStripe(bf16, ROWS, COLS, opts, fastCodes, fastScales)),
    });
    check('WebAssembly kernel');
  }
  return { stripe: [ROWS, COLS], kernels };
}

/**
 * onnxruntime's float32 GEMM rate on this machine (CPU, all cores): `[m, k] × [k, n]` MatMul with
 * the weight fed as an input (as verify feeds weights), median of a few runs after a warm-up.
 * The CPU verify's compute bound is its FLOPs at this rate.
 */
export async function gemmRate(m = 32, k = 4096, n = 14336): Promise<{ readonly shape: readonly [number, number, number]; readonly flopsPerSecond: number }> {
  const { GraphBuilder } = await import('../src/runtime/onnx/graph-builder.js');
  const { DataType } = await import('../src/runtime/onnx/data-type.js');
  const { OnnxSession } = await import('../src/runtime/onnx/session.js');
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, [m, k]);
  const w = g.input('w', DataType.FLOAT, [k, n]);
  g.output(g.op('MatMul', [x, w], { dtype: DataType.FLOAT, shape: [m, n] }), 'y');
  const session = await OnnxSession.create(g.toBytes(), { device: 'cpu' });
  const xs = new Float32Array(m * k).map((_, i) => ((i % 97) - 48) / 97);
  const ws = new Float32Array(k * n).map((_, i) => ((i % 89) - 44) / 890);
  const feeds = { x: { type: 'float32' as const, data: xs, dims: [m, k] }, w: { type: 'float32' as const, data: ws, dims: [k, n] } };
  try {
    await session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await session.run(feeds);
      times.push((performance.now() - t0) / 1000);
    }
    times.sort((a, b) => a - b);
    return { shape: [m, k, n], flopsPerSecond: (2 * m * k * n) / times[2]! };
  } finally {
    await session.release();
  }
}
