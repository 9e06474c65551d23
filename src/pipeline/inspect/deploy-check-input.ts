// The deployment check's input from a model folder: an FP8 checkpoint is judged as it is (its
// headers and quantization_config); a BF16/FP16 one as the default convert would write it (its
// plan). Reads headers and config.json only, never tensor data.

import type { BlockShape } from '../../fp8/block-quantize.js';
import { blockScaleQuantizePass, detectQuantizedInput } from '../../passes/block-scale-quantize.js';
import { inventoryFromCheckpoint, inventoryFromPlan, type DeployCheckInput } from '../../passes/deploy-check/index.js';
import { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import { CheckpointError } from '../../io/errors.js';
import { applyOutputFormat } from '../output-format.js';
import { detectQuantizedFormat } from '../../io/formats/quantized-format.js';

export interface DeployCheckSource {
  readonly input: DeployCheckInput;
  /** 'checkpoint': an FP8 checkpoint as stored; 'plan': what `fp8q convert` would write from this source. */
  readonly judged: 'checkpoint' | 'plan';
  readonly warnings: readonly string[];
}

export async function deployCheckSourceOf(dir: string, options: { readonly block?: BlockShape } = {}): Promise<DeployCheckSource> {
  const ckpt = await Checkpoint.open(dir);
  try {
    const infos = ckpt.tensorNames().map((n) => ckpt.info(n));
    const warnings = ckpt.configProblem ? [ckpt.configProblem] : [];
    if (detectQuantizedInput(ckpt.config, infos)) {
      const qf = detectQuantizedFormat(ckpt.config, ckpt.tensorNames());
      if (!qf) throw new CheckpointError(`${dir}: FP8 tensors without a quantization_config: restore the config.json the checkpoint was published with`);
      const input = inventoryFromCheckpoint(ckpt.config, infos, {
        layout: qf.format,
        block: { bn: qf.block.bn, bk: qf.block.bk },
        fmt: qf.fmt,
        activationScheme: qf.activationScheme === 'static' ? 'static' : 'dynamic',
      });
      return { input, judged: 'checkpoint', warnings };
    }
    const plan = blockScaleQuantizePass(ckpt.config, infos, {
      settings: { format: 'e4m3fn', block: options.block ?? { bn: 128, bk: 128 }, scaleFormat: 'float', activationScheme: 'dynamic' },
    });
    const formatted = applyOutputFormat(plan, 'hf');
    warnings.push(...plan.warnings);
    return { input: inventoryFromPlan(ckpt.config, formatted.plan, formatted.quantizationConfig as unknown as Record<string, unknown>), judged: 'plan', warnings };
  } finally {
    await ckpt.close();
  }
}
