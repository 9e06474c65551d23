// Whether two folders are an original and its FP8 conversion, checked before verify runs
// anything: the same folder twice, a second folder without FP8 linears (an original, or a
// dequantized copy), the arguments in the wrong order, or two different models would otherwise
// "pass" with nothing compared. An FP8 original (DeepSeek-V3's release) against its re-quantized
// conversion stays valid: both hold the same FP8 linears.

import { realpath } from 'node:fs/promises';
import { isFp8Dtype } from '../../fp8/dtypes.js';
import type { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import { CheckpointError } from '../../io/errors.js';
import type { ModelSpec } from '../models/config.js';

/** The two folders cannot be compared; the command line is wrong (the CLI exits 2). */
export class VerifyArgumentsError extends CheckpointError {
  override name = 'VerifyArgumentsError';
}

/** FP8 tensors of a checkpoint (weights, stacked experts, MLA w_uk/w_uv). */
export function fp8TensorNames(ckpt: Checkpoint): string[] {
  return ckpt.tensorNames().filter((n) => isFp8Dtype(ckpt.info(n).dtype));
}

function list(names: readonly string[], max = 3): string {
  return names.length <= max ? names.join(', ') : `${names.slice(0, max).join(', ')} and ${names.length - max} more`;
}

async function samePath(a: string, b: string): Promise<boolean> {
  try {
    return (await realpath(a)) === (await realpath(b));
  } catch {
    return false;
  }
}

interface PairSide {
  readonly checkpoint: Checkpoint;
  readonly spec: ModelSpec;
}

/**
 * The two folders hold the same model (one may be a conversion of the other): not the same
 * folder twice (`sameFolder` says why that is wrong for the command), and the same architecture,
 * sizes and weight shapes. `generate --compare` needs no more: its second model may be any copy.
 */
export async function checkSameModel(o: PairSide, q: PairSide, sameFolder: string): Promise<void> {
  const od = o.checkpoint.dir;
  const qd = q.checkpoint.dir;
  if (await samePath(od, qd)) throw new VerifyArgumentsError(sameFolder);
  const a = o.spec;
  const b = q.spec;
  const diffs: string[] = [];
  if (a.family !== b.family) diffs.push(`architecture ${a.label} vs ${b.label}`);
  if (a.numLayers !== b.numLayers) diffs.push(`num_hidden_layers ${a.numLayers} vs ${b.numLayers}`);
  if (a.hiddenSize !== b.hiddenSize) diffs.push(`hidden_size ${a.hiddenSize} vs ${b.hiddenSize}`);
  if (a.vocabSize !== b.vocabSize) diffs.push(`vocab_size ${a.vocabSize} vs ${b.vocabSize}`);
  for (const name of o.checkpoint.tensorNames()) {
    // Weights and biases keep their shapes through a conversion; scales follow the block size.
    if (!(name.endsWith('.weight') || name.endsWith('.bias')) || !q.checkpoint.has(name)) continue;
    const so = o.checkpoint.info(name).shape;
    const sq = q.checkpoint.info(name).shape;
    if (so.length !== sq.length || so.some((d, i) => d !== sq[i])) diffs.push(`${name} [${so.join(', ')}] vs [${sq.join(', ')}]`);
    if (diffs.length >= 4) break;
  }
  if (diffs.length > 0) throw new VerifyArgumentsError(`${qd} is not a conversion of ${od}: ${diffs.join(', ')}`);
}

export async function checkCheckpointPair(o: PairSide, q: PairSide): Promise<void> {
  const od = o.checkpoint.dir;
  const qd = q.checkpoint.dir;
  await checkSameModel(o, q, `both arguments are ${od}: verify compares an original with its FP8 conversion, e.g. fp8q verify <original> <converted>`);

  const qFp8 = fp8TensorNames(q.checkpoint);
  const oFp8 = fp8TensorNames(o.checkpoint);
  // FP8 in the first folder, high precision under the same name in the second.
  const keptInQ = oFp8.filter((n) => q.checkpoint.has(n) && !isFp8Dtype(q.checkpoint.info(n).dtype));
  if (keptInQ.length > 0) {
    throw new VerifyArgumentsError(
      `the arguments look swapped: ${od} (given as the original) holds ${keptInQ.length} FP8 tensor(s) that ${qd} stores in ` +
        `${q.checkpoint.info(keptInQ[0]!).dtype} (${list(keptInQ)}); verify takes the original first: fp8q verify ${qd} ${od}`,
    );
  }
  if (qFp8.length === 0) {
    throw new VerifyArgumentsError(
      `${qd} holds no FP8 tensors, so there is nothing to verify: give an FP8 conversion as the second argument (fp8q convert writes one); ` +
        'an original or a dequantized copy is not one',
    );
  }
}
