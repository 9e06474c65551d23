// The generation loop: feed the prompt, pick a token, feed it, until an end-of-sequence token, the
// token budget or the decoder's capacity. Each step reports the chosen token and its
// log-probability under the model (temperature 1) as it is produced, for streaming.

import type { TokenDecoder } from './decoder.js';
import { logProbability, type TokenSampler } from './sampling.js';

export type StopReason = 'eos' | 'max-new-tokens' | 'context';

export interface GeneratedTokens {
  /** Generated ids (an end-of-sequence token included when it stopped the run). */
  readonly ids: number[];
  /** log p(token) per generated token, under the model's own distribution. */
  readonly logprobs: number[];
  readonly stop: StopReason;
}

export interface GenerateOptions {
  readonly maxNewTokens: number;
  /** Token ids that end the generation. */
  readonly stopIds: ReadonlySet<number>;
  readonly sampler: TokenSampler;
  readonly onToken?: (id: number, logprob: number, step: number) => void;
}

export async function generateTokens(decoder: TokenDecoder, prompt: readonly number[], options: GenerateOptions): Promise<GeneratedTokens> {
  if (prompt.length === 0) throw new RangeError('the prompt has no tokens');
  const ids: number[] = [];
  const logprobs: number[] = [];
  let logits = await decoder.append(prompt);
  for (let step = 0; step < options.maxNewTokens; step++) {
    const id = options.sampler.next(logits);
    const lp = logProbability(logits, id);
    ids.push(id);
    logprobs.push(lp);
    options.onToken?.(id, lp, step);
    if (options.stopIds.has(id)) return { ids, logprobs, stop: 'eos' };
    if (step + 1 === options.maxNewTokens) break;
    if (decoder.length >= decoder.capacity) return { ids, logprobs, stop: 'context' };
    logits = await decoder.append([id]);
  }
  return { ids, logprobs, stop: 'max-new-tokens' };
}
