// `fp8q dequant`: flags → DequantOptions, progress rendering, and the summary (one line or JSON).

import { dequantCheckpoint, type DequantDtype, type DequantSummary } from '../../pipeline/dequant-checkpoint.js';
import { formatBytes } from '../../io/sizes.js';
import { UsageError } from '../common/errors.js';
import { parseSize } from '../common/options.js';
import { ByteProgress, outputMode, printJson, warn } from '../common/output.js';
import type { DequantFlags } from './dequant-flags.js';

export type { DequantFlags } from './dequant-flags.js';

export function parseDequantDtype(text: string): DequantDtype {
  const t = text.trim().toLowerCase();
  if (t === 'bfloat16' || t === 'bf16') return 'bfloat16';
  if (t === 'float16' || t === 'fp16' || t === 'half') return 'float16';
  throw new UsageError(`invalid --dtype "${text}": expected bfloat16 or float16`);
}

export async function dequantCommand(source: string, flags: DequantFlags): Promise<DequantSummary> {
  if (!flags.output) throw new UsageError('missing -o <out-dir>: say where to write the dequantized checkpoint');
  const mode = outputMode(flags);
  const dtype = parseDequantDtype(flags.dtype ?? 'bfloat16');
  const maxShardBytes = parseSize('--max-shard-size', flags.maxShardSize ?? '5GB');
  const progress = new ByteProgress(mode, 'dequantizing');
  try {
    const summary = await dequantCheckpoint({
      input: source,
      output: flags.output,
      dtype,
      maxShardBytes,
      force: flags.force === true,
      allowNonFinite: flags.allowNonfinite === true,
      allowUnindexed: flags.allowUnindexed === true,
      onEvent: (e) => {
        if (e.type === 'warning') warn(mode, e.message);
        else if (e.type === 'tensor') progress.item(e.name);
        else progress.update(e.done, e.total);
      },
    });
    if (mode.json) printJson(summary);
    else {
      progress.succeed(
        `${summary.output}: ${summary.tensorsDequantized} FP8 weights → ${dtype} (${summary.source.layout}, blocks ${summary.source.block.join('x')}), ` +
          `${summary.tensorsCopied} copied, ${summary.tensorsDropped} dropped (scales, derived w_uk/w_uv), ${formatBytes(summary.bytesIn)} → ${formatBytes(summary.bytesOut)} in ${summary.seconds.toFixed(1)} s`,
      );
    }
    return summary;
  } catch (e) {
    progress.fail();
    throw e;
  }
}
