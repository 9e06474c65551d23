// How far a CUDA run is from the CPU run of the same command, for scripts/gpu-verify.sh:
//
//   node --import tsx scripts/compare-runs.ts logits <cpu.safetensors> <cuda.safetensors>
//     relative L2 error and largest absolute difference of the "logits" tensors, and the share
//     of tokens whose arg-max agrees;
//   node --import tsx scripts/compare-runs.ts reports <cpu.json> <cuda.json>
//     `fp8q verify --json` reports: the model metrics side by side, the largest difference of a
//     linear's relative error, and both run times.
//
// Prints one JSON object.

import { readFile } from 'node:fs/promises';

import { SafetensorsReader } from '../src/io/safetensors/safetensors-reader.js';
import { relativeL2Error } from '../src/runtime/ops/compare.js';

async function readLogits(path: string): Promise<{ data: Float32Array; vocab: number }> {
  const reader = await SafetensorsReader.open(path);
  try {
    const info = reader.info('logits');
    if (info.dtype !== 'F32') throw new Error(`${path}: logits are ${info.dtype}, expected F32`);
    const bytes = await reader.readTensor('logits');
    return { data: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4).slice(), vocab: info.shape[info.shape.length - 1]! };
  } finally {
    await reader.close();
  }
}

function argmaxRows(data: Float32Array, vocab: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < data.length / vocab; r++) {
    let best = 0;
    for (let j = 1; j < vocab; j++) if (data[r * vocab + j]! > data[r * vocab + best]!) best = j;
    out.push(best);
  }
  return out;
}

interface LinearEntry {
  readonly module: string;
  readonly relativeError: number;
}
interface Report {
  readonly device: string;
  readonly seconds: number;
  readonly passed: boolean;
  readonly model: Record<string, number>;
  readonly linears: readonly LinearEntry[];
}

const [mode, a, b] = process.argv.slice(2);
if (a === undefined || b === undefined) throw new Error('usage: compare-runs.ts logits|reports <cpu> <cuda>');
if (mode === 'logits') {
  const cpu = await readLogits(a);
  const cuda = await readLogits(b);
  let maxAbs = 0;
  for (let i = 0; i < cpu.data.length; i++) maxAbs = Math.max(maxAbs, Math.abs(cpu.data[i]! - cuda.data[i]!));
  const ta = argmaxRows(cpu.data, cpu.vocab);
  const tb = argmaxRows(cuda.data, cuda.vocab);
  const agree = ta.filter((t, i) => t === tb[i]).length / ta.length;
  process.stdout.write(`${JSON.stringify({ cpu: a, cuda: b, relL2: relativeL2Error(cuda.data, cpu.data), maxAbsDiff: maxAbs, top1Agreement: agree })}\n`);
} else if (mode === 'reports') {
  const cpu = JSON.parse(await readFile(a, 'utf8')) as Report;
  const cuda = JSON.parse(await readFile(b, 'utf8')) as Report;
  const byModule = new Map(cpu.linears.map((l) => [l.module, l.relativeError]));
  let maxLinearDiff = 0;
  for (const l of cuda.linears) maxLinearDiff = Math.max(maxLinearDiff, Math.abs(l.relativeError - (byModule.get(l.module) ?? NaN)));
  process.stdout.write(
    `${JSON.stringify({
      devices: [cpu.device, cuda.device],
      seconds: [cpu.seconds, cuda.seconds],
      speedup: cpu.seconds / cuda.seconds,
      passed: [cpu.passed, cuda.passed],
      meanKl: [cpu.model['meanKl'], cuda.model['meanKl']],
      top1Agreement: [cpu.model['top1Agreement'], cuda.model['top1Agreement']],
      relativeError: [cpu.model['relativeError'], cuda.model['relativeError']],
      linears: [cpu.linears.length, cuda.linears.length],
      maxLinearRelErrorDiff: maxLinearDiff,
    })}\n`,
  );
} else {
  throw new Error(`unknown mode ${mode}: logits or reports`);
}
