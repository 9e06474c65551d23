// `fp8q generate`: a model's continuation of a prompt, streamed to the terminal as it is produced
// (or one JSON document with ids, text and per-token log-probabilities), and with `--compare`, an
// FP8 checkpoint's continuation beside the original's: the first token where they differ marked,
// the quantized model's log-probability of each token the original chose, and over several prompts
// the identical-prefix lengths. Writes nothing to disk.

import { readFile } from 'node:fs/promises';
import { loadModelTokenizer, type ModelTokenizer } from '../../runtime/text/model-tokenizer.js';
import { selectDevice, type DeviceSelection } from '../../runtime/device/device.js';
import { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import { CheckpointError } from '../../io/errors.js';
import {
  firstDivergence,
  identicalPrefix,
  layoutColumns,
  markedText,
  stepTable,
  summarizePrefixes,
  tokenCell,
  DIVERGENCE_CLOSE,
  DIVERGENCE_OPEN,
  type PrefixSummary,
} from '../../runtime/generate/compare.js';
import { runGeneration, type GenerationRun, type GenerationRunOptions, type ModelRunInfo, type TimedGeneration } from '../../runtime/generate/generate-run.js';
import type { StopReason } from '../../runtime/generate/generate-tokens.js';
import { readStdin } from '../../runtime/text/text-input.js';
import { promptIds, promptSettings, type PromptSettings } from '../../runtime/generate/prompt.js';
import { GREEDY, type SamplingOptions } from '../../runtime/generate/sampling.js';
import { TextStream } from '../../runtime/generate/text-stream.js';
import type { WeightModeChoice } from '../../runtime/generate/weight-residency.js';
import { modelSpecOf } from '../../runtime/models/config.js';
import { checkSameModel, VerifyArgumentsError } from '../../runtime/verify/checkpoint-pair.js';
import { UsageError } from '../common/errors.js';
import { readFlags, type FlagOptions } from '../common/flags.js';
import { capThreads } from '../common/options.js';
import { info, outputMode, printJson, warn, type OutputMode } from '../common/output.js';
import { redactSecrets } from '../common/redact.js';
import { GENERATE_FLAGS, type GenerateFlags } from './generate-flags.js';

type GenerateOptions = FlagOptions<typeof GENERATE_FLAGS>;

export const DEFAULT_MAX_NEW_TOKENS = 64;

export interface GeneratedText {
  readonly ids: number[];
  readonly text: string;
  /** log p of each generated token under the model (temperature 1). */
  readonly logprobs: number[];
  readonly stop: StopReason;
  readonly seconds: number;
}

export interface ModelDescription {
  readonly model: string;
  readonly architecture: string;
  readonly kvCache: boolean;
  readonly weights: WeightModeChoice;
}

export interface GenerateReport {
  readonly model: ModelDescription;
  readonly device: DeviceSelection;
  readonly sampling: SamplingOptions;
  readonly maxNewTokens: number;
  readonly chat: boolean;
  readonly results: { prompt: string; promptIds: number[]; output: GeneratedText }[];
}

export interface ComparedPrompt {
  readonly prompt: string;
  readonly promptIds: number[];
  readonly original: GeneratedText;
  readonly quantized: GeneratedText;
  /** Generated tokens the two continuations share from the start. */
  readonly identicalPrefix: number;
  /** First generated token that differs; null when the continuations are identical. */
  readonly firstDivergence: number | null;
  /** log p, under the quantized model, of each token the original generated. */
  readonly quantizedLogprobsOfOriginal: number[];
}

export interface CompareReport {
  readonly original: ModelDescription;
  readonly quantized: ModelDescription;
  readonly device: DeviceSelection;
  readonly sampling: SamplingOptions;
  readonly maxNewTokens: number;
  readonly chat: boolean;
  readonly results: ComparedPrompt[];
  readonly summary: PrefixSummary;
}

/** Greedy unless --temperature > 0, or --top-p / --seed without --temperature (then temperature 1). */
export function parseSampling(options: Pick<GenerateOptions, 'temperature' | 'topP' | 'seed'>): SamplingOptions {
  const { topP, seed } = options;
  const temperature = options.temperature ?? (topP !== undefined || seed !== undefined ? 1 : 0);
  if (temperature === 0 && (topP !== undefined || seed !== undefined)) {
    throw new UsageError('--top-p and --seed apply to sampling, and --temperature 0 is greedy: give a temperature above 0, or drop them');
  }
  return temperature === 0 ? GREEDY : { temperature, topP: topP ?? 1, seed: seed ?? 0 };
}

/** `--prompts <file|->`: the file (or standard input, as `--text -` reads it), errors naming it as an input. */
async function readPromptsFile(file: string): Promise<string> {
  if (file === '-') return readStdin();
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CheckpointError(`--prompts ${file}: no such file`, 'E_INPUT_MISSING');
    if (code === 'EISDIR') throw new CheckpointError(`--prompts ${file} is a folder: give a text file with one prompt per line`, 'E_INPUT_MALFORMED');
    throw e;
  }
}

/** --prompt (repeatable) then the non-empty lines of --prompts. */
async function collectPrompts(flags: GenerateOptions): Promise<string[]> {
  const prompts = [...flags.prompt];
  if (flags.prompts !== undefined) {
    const lines = (await readPromptsFile(flags.prompts)).split(/\r?\n/).filter((l) => l.trim() !== '');
    if (lines.length === 0) throw new UsageError(`${flags.prompts === '-' ? 'standard input' : flags.prompts} has no prompts: write one per line`);
    prompts.push(...lines);
  }
  if (prompts.length === 0) throw new UsageError('missing --prompt <text> (or --prompts <file>, one prompt per line)');
  return prompts;
}

function describeModel(model: string, run: ModelRunInfo): ModelDescription {
  return { model, architecture: run.architecture, kvCache: run.cache, weights: run.weights };
}

function modeLine(model: string, run: ModelRunInfo, device: DeviceSelection): string {
  const cache = run.cache ? 'KV cache (one pass over the weights per token)' : 'no KV cache (the whole sequence again per token)';
  return `${model}: ${run.architecture} on ${device.device}; ${cache}; weights ${run.weights.mode} (${run.weights.reason})`;
}

function textOf(stream: TextStream, generated: TimedGeneration): GeneratedText {
  return { ids: generated.ids, text: stream.text, logprobs: generated.logprobs, stop: generated.stop, seconds: generated.seconds };
}

function rateLine(g: TimedGeneration): string {
  const rate = g.seconds > 0 ? g.ids.length / g.seconds : 0;
  return `${g.ids.length} tokens in ${g.seconds.toFixed(2)} s (${rate.toFixed(1)} tokens/s), stopped by ${g.stop}`;
}

/** Thrown by out() once stdout's reader has gone (`| head`): generation stops, quietly. */
class OutputClosed extends Error {}

let stdoutClosed = false;

/** stdout, redacted. */
function out(text: string): void {
  if (stdoutClosed) throw new OutputClosed('stdout closed');
  if (text !== '') process.stdout.write(redactSecrets(text));
}

/** Runs `body` with a closed stdout pipe ending it quietly rather than as an unhandled EPIPE. */
async function untilStdoutCloses<T>(body: () => Promise<T>): Promise<T | undefined> {
  stdoutClosed = false;
  // EPIPE, or any other write error: nothing more can be shown, so stop generating.
  const onError = (): void => {
    stdoutClosed = true;
  };
  process.stdout.on('error', onError);
  try {
    return await body();
  } catch (e) {
    if (e instanceof OutputClosed) return undefined;
    throw e;
  } finally {
    process.stdout.off('error', onError);
  }
}

interface Prepared {
  readonly tokenizer: ModelTokenizer;
  readonly settings: PromptSettings;
  readonly prompts: string[];
  readonly ids: number[][];
}

async function prepare(model: string, flags: GenerateOptions, mode: OutputMode): Promise<Prepared> {
  const prompts = await collectPrompts(flags);
  const tokenizer = await loadModelTokenizer(model, 'to tokenize the prompt and decode the output', '');
  const checkpoint = await Checkpoint.open(model);
  let settings: PromptSettings;
  let vocabSize: number;
  try {
    settings = await promptSettings(model, checkpoint.config, tokenizer);
    vocabSize = modelSpecOf(checkpoint.config, model, (n) => checkpoint.has(n)).vocabSize;
  } finally {
    await checkpoint.close();
  }
  const ids = prompts.map((p) => promptIds(tokenizer, settings, p, flags.chat, model));
  for (const [p, row] of ids.entries()) {
    const prompt = prompts[p]!;
    // `--prompt ""` (often an unset shell variable) continues from the BOS token, as transformers
    // would; said aloud, and refused where the tokenizer gives no token at all to continue from.
    if (row.length === 0) {
      throw new UsageError(
        `prompt ${p + 1} ${prompt === '' ? 'is empty' : `${JSON.stringify(prompt)} gives no token`} and ${model}'s tokenizer adds no BOS token: there is nothing to continue from; give the prompt some text`,
      );
    }
    if (prompt === '') warn(mode, `prompt ${p + 1} is empty: the model continues from ${flags.chat ? 'the chat template around an empty message' : 'the BOS token alone'}`);
  }
  // A tokenizer.json from another model gives ids past the embedding: say so before any layer runs.
  for (const [p, row] of ids.entries()) {
    const bad = row.find((id) => id < 0 || id >= vocabSize);
    if (bad !== undefined) {
      throw new CheckpointError(
        `${model}/tokenizer.json gives token id ${bad} for prompt ${p + 1}, outside the model's vocab_size ${vocabSize}: is it the model's own tokenizer?`,
        'E_INPUT_MALFORMED',
      );
    }
  }
  if (settings.stopIds.size === 0) warn(mode, `${model}: no eos_token_id in generation_config.json or config.json; generation stops only at --max-new-tokens`);
  return { tokenizer, settings, prompts, ids };
}

/** The report, or undefined when stdout was closed before the end. */
export async function generateCommand(model: string, flags: GenerateFlags): Promise<GenerateReport | CompareReport | undefined> {
  const mode = outputMode(flags);
  const options = readFlags(GENERATE_FLAGS, flags);
  const maxNewTokens = options.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  const sampling = parseSampling(options);
  const threads = options.threads === undefined ? undefined : capThreads(options.threads, mode);
  const device = await selectDevice(options.device);
  const prepared = await prepare(model, options, mode);
  // A bad --compare folder is reported before the original model has run.
  if (options.compare !== undefined) await checkComparedModel(model, options.compare);
  const base = {
    device: device.device,
    ...(threads === undefined ? {} : { intraOpThreads: threads }),
    weights: options.weights,
    cache: options.cache,
    sampling,
    maxNewTokens,
    stopIds: prepared.settings.stopIds,
  } satisfies GenerationRunOptions;
  if (sampling.temperature > 0) info(mode, `sampling: temperature ${sampling.temperature}, top-p ${sampling.topP}, seed ${sampling.seed}`);
  const compare = options.compare;
  return untilStdoutCloses<GenerateReport | CompareReport>(() =>
    compare === undefined ? generateOne(model, prepared, base, device, options, mode) : compareTwo(model, compare, prepared, base, device, options, mode),
  );
}

async function generateOne(
  model: string,
  prepared: Prepared,
  options: GenerationRunOptions,
  device: DeviceSelection,
  flags: GenerateOptions,
  mode: OutputMode,
): Promise<GenerateReport> {
  const streams = prepared.ids.map((ids) => new TextStream(prepared.tokenizer, ids));
  const stream = !mode.json;
  const run = await runGeneration(model, prepared.ids, {
    ...options,
    onOpen: (r) => info(mode, modeLine(model, r, device)),
    onToken: (p, id) => {
      // The prompt is printed before its continuation (a chat template's rendering is not).
      if (stream && streams[p]!.pieces.length === 0) out(`${p > 0 ? '\n' : ''}${flags.chat ? '' : prepared.prompts[p]!}`);
      const piece = streams[p]!.push(id);
      if (stream) out(piece);
    },
    onPromptDone: (p, g) => {
      const rest = streams[p]!.flush();
      if (stream) out(`${rest}\n`);
      info(mode, `[${rateLine(g)}]`);
    },
  });
  const report: GenerateReport = {
    model: describeModel(model, run),
    device,
    sampling: options.sampling,
    maxNewTokens: options.maxNewTokens,
    chat: flags.chat,
    results: prepared.prompts.map((prompt, p) => ({ prompt, promptIds: prepared.ids[p]!, output: textOf(streams[p]!, run.results[p]!) })),
  };
  if (mode.json) printJson(report);
  return report;
}

/**
 * `--compare` must name another copy of the same model: the same folder again compares nothing,
 * and a different model (another vocabulary, other sizes) would be decoded with the original's
 * tokenizer and teacher-forced on ids it does not share. Exit 2, before any model runs.
 */
async function checkComparedModel(original: string, compared: string): Promise<void> {
  const o = await Checkpoint.open(original);
  try {
    const q = await Checkpoint.open(compared);
    try {
      const side = (c: Checkpoint) => ({ checkpoint: c, spec: modelSpecOf(c.config, c.dir, (n) => c.has(n)) });
      await checkSameModel(side(o), side(q), `${compared} is the model itself: give its FP8 conversion, e.g. fp8q generate ${original} --compare <converted>`);
    } catch (e) {
      if (e instanceof VerifyArgumentsError) throw new UsageError(`--compare: ${e.message}`);
      throw e;
    } finally {
      await q.close();
    }
  } finally {
    await o.close();
  }
}

async function compareTwo(
  original: string,
  quantized: string,
  prepared: Prepared,
  options: GenerationRunOptions,
  device: DeviceSelection,
  flags: GenerateOptions,
  mode: OutputMode,
): Promise<CompareReport> {
  const progress = (label: string): Partial<GenerationRunOptions> => ({
    onOpen: (r) => info(mode, modeLine(label, r, device)),
    onPromptDone: (p, g) => info(mode, `  prompt ${p + 1}/${prepared.ids.length}: ${rateLine(g)}`),
  });
  const a: GenerationRun = await runGeneration(original, prepared.ids, { ...options, ...progress(original) });
  const b: GenerationRun = await runGeneration(
    quantized,
    prepared.ids,
    { ...options, ...progress(quantized) },
    a.results.map((r) => r.ids),
  );
  const streamsOf = (run: GenerationRun): TextStream[] =>
    run.results.map((g, p) => {
      const s = new TextStream(prepared.tokenizer, prepared.ids[p]!);
      for (const id of g.ids) s.push(id);
      s.flush();
      return s;
    });
  const aStreams = streamsOf(a);
  const bStreams = streamsOf(b);
  const results: ComparedPrompt[] = prepared.prompts.map((prompt, p) => {
    const x = a.results[p]!.ids;
    const y = b.results[p]!.ids;
    const at = firstDivergence(x, y);
    return {
      prompt,
      promptIds: prepared.ids[p]!,
      original: textOf(aStreams[p]!, a.results[p]!),
      quantized: textOf(bStreams[p]!, b.results[p]!),
      identicalPrefix: identicalPrefix(x, y),
      firstDivergence: at ?? null,
      quantizedLogprobsOfOriginal: b.scores[p]!,
    };
  });
  const report: CompareReport = {
    original: describeModel(original, a),
    quantized: describeModel(quantized, b),
    device,
    sampling: options.sampling,
    maxNewTokens: options.maxNewTokens,
    chat: flags.chat,
    results,
    summary: summarizePrefixes(results.map((r) => r.identicalPrefix)),
  };
  if (mode.json) {
    printJson(report);
    return report;
  }
  const width = process.stdout.isTTY === true ? (process.stdout.columns ?? 0) : 0;
  const lines: string[] = [];
  results.forEach((r, p) => {
    const aPieces = aStreams[p]!.pieces;
    const bPieces = bStreams[p]!.pieces;
    const at = r.firstDivergence ?? undefined;
    const head = flags.chat ? '' : r.prompt;
    if (p > 0) lines.push('');
    lines.push(`prompt ${p + 1}: ${JSON.stringify(r.prompt)}`, '');
    lines.push(
      ...layoutColumns({ title: `original  ${original}`, text: head + markedText(aPieces, at) }, { title: `quantized  ${quantized}`, text: head + markedText(bPieces, at) }, width),
    );
    lines.push('');
    const generated = r.original.ids.length;
    lines.push(
      at === undefined
        ? `identical: all ${generated} generated tokens are the same`
        : `identical prefix: ${r.identicalPrefix} of ${generated} tokens; first divergence at token ${at + 1}, marked ${DIVERGENCE_OPEN}…${DIVERGENCE_CLOSE}: ` +
            `original ${tokenCell(aPieces[at])}, quantized ${tokenCell(bPieces[at])}`,
    );
    lines.push('');
    lines.push(
      ...stepTable(
        r.original.ids.map((id, i) => ({
          step: i + 1,
          original: tokenCell(aPieces[i]),
          originalLogprob: r.original.logprobs[i]!,
          quantizedLogprobOfOriginal: r.quantizedLogprobsOfOriginal[i]!,
          quantized: tokenCell(bPieces[i]),
          same: r.quantized.ids[i] === id,
        })),
      ),
    );
  });
  if (results.length > 1) {
    lines.push('', 'identical prefix (generated tokens the quantized model shares with the original):');
    results.forEach((r, p) => lines.push(`  ${p + 1}. ${r.identicalPrefix}/${r.original.ids.length}  ${JSON.stringify(r.prompt)}`));
    lines.push(`  mean ${report.summary.mean.toFixed(1)}, min ${report.summary.min} over ${report.summary.prompts} prompts`);
  }
  out(`${lines.join('\n')}\n`);
  return report;
}
