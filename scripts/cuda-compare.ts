// CPU against CUDA on the same graphs, for scripts/gpu-check.sh: the block-scale GEMM and GEMV
// graphs verify runs (float32), and a plain MatMul cast to float16 and bfloat16 (what a
// half-precision forward would run on the GPU). Prints one JSON object: relative L2 error of each
// CUDA result against the CPU float32 result, and the median time of a run on each device.
//
//   node --import tsx scripts/cuda-compare.ts [--m 64] [--k 4096] [--n 4096] [--repeats 10]
//
// Needs a GPU with the CUDA provider installed (fp8q setup-cuda). NVIDIA_TF32_OVERRIDE is left
// as the caller set it, so running this twice (0 and 1) shows what TF32 costs in accuracy.

import { parseArgs } from 'node:util';

import { DataType } from '../src/runtime/onnx/data-type.js';
import { GraphBuilder, littleEndianBytes, type Value } from '../src/runtime/onnx/graph-builder.js';
import { emitBlockScaleGemm } from '../src/runtime/ops/block-scale-gemm.js';
import { relativeL2Error } from '../src/runtime/ops/compare.js';
import { emitDequantizeFp8GroupwiseScaledGemv } from '../src/runtime/ops/groupwise-scaled-gemv.js';
import { SeededRandom } from '../src/runtime/ops/random.js';
import { emitCast } from '../src/runtime/ops/types.js';
import { OnnxSession, type Device } from '../src/runtime/onnx/session.js';

const { values } = parseArgs({
  options: {
    m: { type: 'string', default: '64' },
    k: { type: 'string', default: '4096' },
    n: { type: 'string', default: '4096' },
    repeats: { type: 'string', default: '10' },
  },
});
const M = Number(values.m);
const K = Number(values.k);
const N = Number(values.n);
const REPEATS = Number(values.repeats);
const BLOCK = { bn: 128, bk: 128 };
/** As the caller set it: the first CUDA session defaults it to 0 (see session.ts). */
const TF32_OVERRIDE = process.env['NVIDIA_TF32_OVERRIDE'] ?? null;

const rng = new SeededRandom(7);
const codes = rng.fp8Codes(N * K, 'e4m3fn');
const scales = Float32Array.from({ length: Math.ceil(N / BLOCK.bn) * Math.ceil(K / BLOCK.bk) }, () => (0.5 + rng.next()) * 1e-3);
const denseW = rng.normalArray(K * N, 1 / Math.sqrt(K));
const x = rng.normalArray(M * K);

type Build = (g: GraphBuilder, x: Value) => Value;

function fp8Weight(g: GraphBuilder): { w: Value; s: Value } {
  return {
    w: g.initializer('weight', DataType.FLOAT8E4M3FN, [N, K], codes),
    s: g.initializer('weight_scale_inv', DataType.FLOAT, [Math.ceil(N / BLOCK.bn), Math.ceil(K / BLOCK.bk)], littleEndianBytes(scales)),
  };
}

/** x · W in `dtype`: both operands cast in the graph, the product cast back to float32. */
function matmulIn(dtype: DataType): Build {
  return (g, xv) => {
    const w = g.initializer('w', DataType.FLOAT, [K, N], littleEndianBytes(denseW));
    const a = emitCast(g, xv, dtype);
    const b = emitCast(g, w, dtype);
    const y = g.op('MatMul', [a, b], { dtype, shape: [M, N], name: 'mm' });
    return emitCast(g, y, DataType.FLOAT);
  };
}

const GRAPHS: Record<string, Build> = {
  'block-scale GEMM (W8A8, fp32)': (g, xv) => {
    const { w, s } = fp8Weight(g);
    return emitBlockScaleGemm(g, xv, w, s, BLOCK);
  },
  'dequantize GEMV (W8A16, fp32)': (g, xv) => {
    const { w, s } = fp8Weight(g);
    return emitDequantizeFp8GroupwiseScaledGemv(g, xv, w, s, BLOCK);
  },
  'MatMul fp32': matmulIn(DataType.FLOAT),
  'MatMul fp16': matmulIn(DataType.FLOAT16),
  'MatMul bf16': matmulIn(DataType.BFLOAT16),
};

interface DeviceRun {
  readonly y: Float32Array | null;
  readonly medianMs: number | null;
  readonly error?: string;
}

async function runOn(device: Device, bytes: Uint8Array): Promise<DeviceRun> {
  let session: OnnxSession;
  try {
    session = await OnnxSession.create(bytes, { device });
  } catch (error) {
    return { y: null, medianMs: null, error: error instanceof Error ? error.message.split('\n')[0]! : String(error) };
  }
  try {
    const feeds = { x: { type: 'float32' as const, data: x, dims: [M, K] } };
    let y = (await session.run(feeds))['y']!.data as Float32Array; // warm-up: kernels, allocations
    const times: number[] = [];
    for (let i = 0; i < REPEATS; i++) {
      const t0 = performance.now();
      y = (await session.run(feeds))['y']!.data as Float32Array;
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return { y, medianMs: times[Math.floor(times.length / 2)]! };
  } catch (error) {
    return { y: null, medianMs: null, error: error instanceof Error ? error.message.split('\n')[0]! : String(error) };
  } finally {
    await session.release();
  }
}

const results: Record<string, unknown>[] = [];
const cpuFloat32 = new Map<string, Float32Array>();
for (const [name, build] of Object.entries(GRAPHS)) {
  const g = new GraphBuilder();
  const xv = g.input('x', DataType.FLOAT, [M, K]);
  g.output(build(g, xv), 'y');
  const bytes = g.toBytes();
  const cpu = await runOn('cpu', bytes);
  const cuda = await runOn('cuda', bytes);
  // Every MatMul variant is compared with the CPU float32 product: what the precision costs.
  const reference = name.startsWith('MatMul') ? (cpuFloat32.get('MatMul') ?? cpu.y) : cpu.y;
  if (name === 'MatMul fp32' && cpu.y !== null) cpuFloat32.set('MatMul', cpu.y);
  results.push({
    graph: name,
    cpuMs: cpu.medianMs,
    cudaMs: cuda.medianMs,
    cudaVsCpuRelL2: cuda.y !== null && reference !== null ? relativeL2Error(cuda.y, reference) : null,
    cpuVsCpuFp32RelL2: name.startsWith('MatMul') && cpu.y !== null && reference !== null ? relativeL2Error(cpu.y, reference) : null,
    ...(cpu.error !== undefined ? { cpuError: cpu.error } : {}),
    ...(cuda.error !== undefined ? { cudaError: cuda.error } : {}),
  });
}
process.stdout.write(`${JSON.stringify({ m: M, k: K, n: N, repeats: REPEATS, tf32Override: TF32_OVERRIDE, results }, null, 1)}\n`);
