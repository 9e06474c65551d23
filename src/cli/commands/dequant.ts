// `fp8q dequant`: flags → DequantOptions (read by dequant-flags.ts's table), progress rendering, and the summary (one line or JSON).

import { dequantCheckpoint, type DequantSummary } from '../../pipeline/dequant-checkpoint.js';
import { formatBytes } from '../../io/sizes.js';
import { UsageError } from '../common/errors.js';
import { readFlags } from '../common/flags.js';
import { ByteProgress, outputMode, printJson, warn } from '../common/output.js';
import { DEQUANT_FLAGS, type DequantFlags } from './dequant-flags.js';

export async function dequantCommand(source: string, flags: DequantFlags): Promise<DequantSummary> {
  if (!flags.output) throw new UsageError('missing -o <out-dir>: say where to write the dequantized checkpoint');
  const mode = outputMode(flags);
  // Every value read by its row of DEQUANT_FLAGS, into DequantOptions' fields (json and quiet are the CLI's).
  const options = readFlags(DEQUANT_FLAGS, flags);
  const progress = new ByteProgress(mode, 'dequantizing');
  try {
    const summary = await dequantCheckpoint({
      ...options,
      input: source,
      output: flags.output,
      onEvent: (e) => {
        if (e.type === 'warning') warn(mode, e.message);
        else if (e.type === 'tensor') progress.item(e.name);
        else progress.update(e.done, e.total);
      },
    });
    if (mode.json) printJson(summary);
    else {
      progress.succeed(
        `${summary.output}: ${summary.tensorsDequantized} FP8 weights → ${options.dtype} (${summary.source.layout}, blocks ${summary.source.block.join('x')}), ` +
          `${summary.tensorsCopied} copied, ${summary.tensorsDropped} dropped (scales, derived w_uk/w_uv), ${formatBytes(summary.bytesIn)} → ${formatBytes(summary.bytesOut)} in ${summary.seconds.toFixed(1)} s`,
      );
    }
    return summary;
  } catch (e) {
    progress.fail();
    throw e;
  }
}
