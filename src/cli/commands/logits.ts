// `fp8q logits`: runs a checkpoint's forward (original or FP8) on token ids from a safetensors
// file, or on text tokenized by the model's tokenizer, and writes `logits` F32 [B, T, vocab]
// atomically (temporary file, then rename), under the write rules of every fp8q output.

import { performance } from 'node:perf_hooks';
import { selectDevice, type DeviceSelection } from '../../runtime/device/device.js';
import { ModelRunner } from '../../runtime/models/runner.js';
import { readInputIds, writeLogits, type TokenBatch } from '../../runtime/models/token-ids.js';
import { modelTextLimits, readTextInput, type TextInput, type TextInputDescription, type TextSource } from '../../runtime/text/text-input.js';
import { hasModelTokenizer } from '../../runtime/text/model-tokenizer.js';
import { UsageError } from '../common/errors.js';
import { StagingFile } from '../../pipeline/output-folder.js';
import { readFlags } from '../common/flags.js';
import { capThreads } from '../common/options.js';
import { info, outputMode, printJson, warn } from '../common/output.js';
import { LOGITS_FLAGS, type LogitsFlags } from './logits-flags.js';

/** Text input options shared by `logits` and `verify` (common/model-run-flags.ts), values already read. */
export interface TextInputFlags {
  readonly text?: string;
  readonly dataset?: string;
  readonly seqLen?: number;
  readonly maxSamples?: number;
  readonly maxTokens?: number;
}

export function textInputFlagsGiven(flags: TextInputFlags): boolean {
  return flags.seqLen !== undefined || flags.maxSamples !== undefined || flags.maxTokens !== undefined;
}

/**
 * Token ids from --text / --dataset, tokenized with `modelDir`'s tokenizer.json. Without either
 * flag: with `fallbackToRandom`, the bundled English sample when the model has a tokenizer and
 * undefined when it has none; otherwise undefined.
 */
export async function readModelInput(modelDir: string, flags: TextInputFlags, opts: { fallbackToRandom?: boolean } = {}): Promise<TextInput | undefined> {
  if (flags.text !== undefined && flags.dataset !== undefined) throw new UsageError('--text and --dataset exclude each other: give one text input');
  let source: TextSource | undefined;
  if (flags.text !== undefined) source = { kind: 'text', file: flags.text };
  else if (flags.dataset !== undefined) source = { kind: 'dataset', file: flags.dataset };
  else if (opts.fallbackToRandom === true && (await hasModelTokenizer(modelDir))) source = { kind: 'bundled' };
  if (source === undefined) {
    if (textInputFlagsGiven(flags)) {
      throw new UsageError(
        opts.fallbackToRandom === true
          ? `--seq-len, --max-samples and --max-tokens apply to text input, and ${modelDir} has no tokenizer.json to tokenize the bundled sample: use --tokens N (random ids) or --input-ids`
          : '--seq-len, --max-samples and --max-tokens need --text or --dataset',
      );
    }
    return undefined;
  }
  const { seqLen, maxSamples, maxTokens } = flags;
  const { contextLength, vocabSize } = await modelTextLimits(modelDir);
  if (seqLen !== undefined && contextLength !== undefined && seqLen > contextLength) {
    throw new UsageError(`--seq-len ${seqLen} is longer than ${modelDir}'s context (max_position_embeddings ${contextLength}): pass --seq-len ${contextLength} or less`);
  }
  return readTextInput({
    source,
    modelDir,
    // Only verify takes --tokens N (random ids) instead of text.
    offerRandomIds: opts.fallbackToRandom === true,
    ...(seqLen === undefined ? {} : { seqLen }),
    ...(maxSamples === undefined ? {} : { maxSamples }),
    ...(maxTokens === undefined ? {} : { maxTokens }),
    ...(contextLength === undefined ? {} : { contextLength }),
    ...(vocabSize === undefined ? {} : { vocabSize }),
  });
}

export interface LogitsSummary {
  readonly model: string;
  readonly output: string;
  readonly architecture: string;
  /** The device the forward ran on; `deviceSelection` says why (the same shape as verify's report). */
  readonly device: DeviceSelection['device'];
  readonly deviceSelection: DeviceSelection;
  readonly batch: number;
  readonly seq: number;
  readonly vocab: number;
  /** `input-ids`, or the text input (runtime/text/text-input.ts) the ids came from. */
  readonly input: { readonly kind: 'input-ids'; readonly file: string } | { readonly kind: 'text'; readonly text: TextInputDescription };
  readonly seconds: number;
}

export async function logitsCommand(model: string, flags: LogitsFlags): Promise<LogitsSummary> {
  const options = readFlags(LOGITS_FLAGS, flags);
  const given = [flags.inputIds !== undefined && '--input-ids', flags.text !== undefined && '--text', flags.dataset !== undefined && '--dataset'].filter(
    (f): f is string => f !== false,
  );
  if (given.length === 0) throw new UsageError('missing input: --input-ids <ids.safetensors> (input_ids I64 [B, T]), --text <file|-> or --dataset <file.jsonl>');
  if (given.length > 1) throw new UsageError(`${given.join(' and ')} exclude each other: give one input`);
  if (flags.inputIds !== undefined && textInputFlagsGiven(options))
    throw new UsageError('--seq-len, --max-samples and --max-tokens apply to --text and --dataset, not to --input-ids');
  if (!flags.output) throw new UsageError('missing -o <out.safetensors>: say where to write the logits');
  const mode = outputMode(flags);
  const t0 = performance.now();
  const threads = options.threads === undefined ? undefined : capThreads(options.threads, mode);
  const inputFiles = [flags.inputIds, flags.text, flags.dataset].filter((f): f is string => f !== undefined && f !== '-');
  // The destination is checked before the forward: a refused -o costs nothing.
  const staged = await StagingFile.create(flags.output, { force: options.force, inputFiles, inputFolders: [model] });
  for (const w of staged.warnings) warn(mode, w);
  try {
    const device = await selectDevice(options.device);
    const text = flags.inputIds === undefined ? await readModelInput(model, options) : undefined;
    const batch: TokenBatch = text?.batch ?? (await readInputIds(flags.inputIds!));
    const runner = await ModelRunner.open(model, { device: device.device, ...(threads === undefined ? {} : { intraOpThreads: threads }) });
    try {
      info(mode, `${model}: ${runner.spec.label}, ${batch.batch}×${batch.seq} tokens on ${device.device} (${device.reason})`);
      const logits = await runner.forward(batch.ids, batch, (layer) => info(mode, `  layer ${layer + 1}/${runner.spec.numLayers}`));
      const vocab = logits.length / (batch.batch * batch.seq);
      // Text input: the ids go into the file too, so the logits can be scored against them.
      await writeLogits(staged.path, logits, batch, vocab, undefined, text === undefined ? undefined : batch);
      await staged.commit();
      const summary: LogitsSummary = {
        model,
        output: flags.output,
        architecture: runner.spec.label,
        device: device.device,
        deviceSelection: device,
        batch: batch.batch,
        seq: batch.seq,
        vocab,
        input: text === undefined ? { kind: 'input-ids', file: flags.inputIds! } : { kind: 'text', text: text.description },
        seconds: (performance.now() - t0) / 1000,
      };
      if (mode.json) printJson(summary);
      else info(mode, `${flags.output}: logits F32 [${batch.batch}, ${batch.seq}, ${vocab}] in ${summary.seconds.toFixed(1)} s`);
      return summary;
    } finally {
      await runner.close();
    }
  } catch (e) {
    await staged.discard();
    throw e;
  }
}
