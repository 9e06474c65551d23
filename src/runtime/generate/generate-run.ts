// One model's generation over a list of prompts (token ids): opens the checkpoint, picks the weight
// mode, decodes each prompt with the KV cache (or by recomputation), and optionally scores given
// continuations by teacher forcing (the quantized side of a comparison: its log-probability of
// each token the original chose). No printing: progress goes through callbacks.

import { performance } from 'node:perf_hooks';
import { CheckpointError } from '../../io/errors.js';
import type { Device } from '../onnx/session.js';
import { ModelRunner } from '../models/runner.js';
import { CachedDecoder, RecomputingDecoder, type TokenDecoder } from './decoder.js';
import { generateTokens, type GeneratedTokens } from './generate-tokens.js';
import { logProbability, TokenSampler, type SamplingOptions } from './sampling.js';
import { chooseWeightMode, residentWeightBytes, type WeightModeChoice, type WeightModeRequest } from './weight-residency.js';

export interface GenerationRunOptions {
  readonly device: Device;
  readonly intraOpThreads?: number;
  readonly weights: WeightModeRequest;
  /** false: recompute the whole sequence at each step (no KV cache). */
  readonly cache: boolean;
  readonly sampling: SamplingOptions;
  readonly maxNewTokens: number;
  readonly stopIds: ReadonlySet<number>;
  /** Called once the model is open, before the first prompt. */
  readonly onOpen?: (info: ModelRunInfo) => void;
  readonly onToken?: (prompt: number, id: number, logprob: number) => void;
  readonly onPromptDone?: (prompt: number, result: TimedGeneration) => void;
}

export interface ModelRunInfo {
  readonly architecture: string;
  readonly weights: WeightModeChoice;
  readonly cache: boolean;
}

export interface TimedGeneration extends GeneratedTokens {
  readonly seconds: number;
}

export interface GenerationRun extends ModelRunInfo {
  readonly results: TimedGeneration[];
  /** Per scored continuation: log p of each of its tokens under this model. */
  readonly scores: number[][];
}

/** Positions a prompt may use: prompt + new tokens, within the model's context. */
export function decoderCapacity(promptLength: number, maxNewTokens: number, context: number, where: string): number {
  if (promptLength >= context) {
    throw new CheckpointError(`the prompt has ${promptLength} tokens; ${where} has a context of ${context} (max_position_embeddings): shorten the prompt`);
  }
  return Math.min(promptLength + maxNewTokens, context);
}

export async function runGeneration(
  modelDir: string,
  prompts: readonly (readonly number[])[],
  options: GenerationRunOptions,
  /** Continuations to score, one per prompt (teacher forcing after the prompt). */
  score?: readonly (readonly number[])[],
): Promise<GenerationRun> {
  const runner = await ModelRunner.open(modelDir, {
    device: options.device,
    ...(options.intraOpThreads === undefined ? {} : { intraOpThreads: options.intraOpThreads }),
  });
  try {
    const weights = chooseWeightMode(options.weights, residentWeightBytes(runner.checkpoint, options.device));
    if (weights.mode === 'resident') runner.keepWeightsResident();
    const info: ModelRunInfo = { architecture: runner.spec.label, weights, cache: options.cache };
    options.onOpen?.(info);
    const context = runner.spec.rope.maxPositionEmbeddings;
    const results: TimedGeneration[] = [];
    for (let p = 0; p < prompts.length; p++) {
      const prompt = prompts[p]!;
      const capacity = decoderCapacity(prompt.length, options.maxNewTokens, context, modelDir);
      const decoder: TokenDecoder = options.cache ? new CachedDecoder(runner, capacity) : new RecomputingDecoder(runner, capacity);
      const t0 = performance.now();
      const generated = await generateTokens(decoder, prompt, {
        maxNewTokens: options.maxNewTokens,
        stopIds: options.stopIds,
        sampler: new TokenSampler(options.sampling),
        onToken: (id, lp) => options.onToken?.(p, id, lp),
      });
      const result = { ...generated, seconds: (performance.now() - t0) / 1000 };
      results.push(result);
      options.onPromptDone?.(p, result);
    }
    // Teacher forcing through the same kind of decoder as generation, so that while the texts agree
    // these log-probabilities are exactly the ones this model's own generation reported.
    const scores: number[][] = [];
    for (let p = 0; p < (score?.length ?? 0); p++) {
      const prompt = prompts[p]!;
      const continuation = score![p]!;
      const capacity = decoderCapacity(prompt.length, Math.max(1, continuation.length), context, modelDir);
      const decoder: TokenDecoder = options.cache ? new CachedDecoder(runner, capacity) : new RecomputingDecoder(runner, capacity);
      const lps: number[] = [];
      let logits = await decoder.append(prompt);
      for (let i = 0; i < continuation.length; i++) {
        lps.push(logProbability(logits, continuation[i]!));
        if (i + 1 < continuation.length) logits = await decoder.append([continuation[i]!]);
      }
      scores.push(lps);
    }
    return { ...info, results, scores };
  } finally {
    await runner.close();
  }
}
