// `fp8q inspect` as data: what a checkpoint holds (dtypes, parameters, bytes), its quantization
// config, and — for a source checkpoint — which tensors a convert would quantize.

import { blockScaleQuantizePass, detectQuantizedInput } from '../passes/block-scale-quantize.js';
import { detectArchitecture } from '../passes/architectures.js';
import { Checkpoint } from './checkpoint.js';
import { elementCount } from './safetensors-reader.js';

export interface DtypeGroup {
  readonly dtype: string;
  readonly tensors: number;
  readonly parameters: number;
  readonly bytes: number;
}

export interface InspectReport {
  readonly dir: string;
  readonly architecture: string;
  readonly family: string | null;
  readonly shards: readonly string[];
  readonly tensors: number;
  readonly parameters: number;
  readonly bytes: number;
  readonly byDtype: readonly DtypeGroup[];
  readonly quantizationConfig: unknown;
  /** Set when the checkpoint is already quantized. */
  readonly quantizedBy: string | null;
  /** For a source checkpoint: the modules a convert with default settings would quantize. */
  readonly wouldQuantize: readonly string[];
  readonly wouldKeep: readonly { module: string; reason: string }[];
  readonly warnings: readonly string[];
}

export async function inspectCheckpoint(dir: string): Promise<InspectReport> {
  const ckpt = await Checkpoint.open(dir);
  try {
    const infos = ckpt.tensorNames().map((n) => ckpt.info(n));
    const groups = new Map<string, { tensors: number; parameters: number; bytes: number }>();
    let parameters = 0;
    let bytes = 0;
    for (const t of infos) {
      const g = groups.get(t.dtype) ?? { tensors: 0, parameters: 0, bytes: 0 };
      const n = elementCount(t.shape);
      g.tensors++;
      g.parameters += n;
      g.bytes += t.byteLength;
      groups.set(t.dtype, g);
      parameters += n;
      bytes += t.byteLength;
    }
    const arch = detectArchitecture(ckpt.config);
    const quantizedBy = detectQuantizedInput(ckpt.config, infos) ?? null;
    const warnings: string[] = ckpt.configProblem ? [ckpt.configProblem] : [];
    let wouldQuantize: string[] = [];
    let wouldKeep: { module: string; reason: string }[] = [];
    if (!quantizedBy) {
      const plan = blockScaleQuantizePass(ckpt.config, infos, {
        settings: { format: 'e4m3fn', block: { bn: 128, bk: 128 }, scaleFormat: 'float', activationScheme: 'dynamic' },
      });
      wouldQuantize = plan.modules.filter((m) => m.decision !== 'keep').map((m) => m.module);
      wouldKeep = plan.modules.filter((m) => m.decision === 'keep').map((m) => ({ module: m.module, reason: m.reason }));
      warnings.push(...plan.warnings);
    }
    return {
      dir,
      architecture: arch.label,
      family: arch.family ?? null,
      shards: ckpt.shardNames,
      tensors: infos.length,
      parameters,
      bytes,
      byDtype: [...groups.entries()].map(([dtype, g]) => ({ dtype, ...g })).sort((a, b) => b.bytes - a.bytes),
      quantizationConfig: ckpt.config?.['quantization_config'] ?? null,
      quantizedBy,
      wouldQuantize,
      wouldKeep,
      warnings,
    };
  } finally {
    await ckpt.close();
  }
}
