// `fp8q verify` as a library call: run the original and the quantized checkpoint side by side,
// one decoder layer at a time, and measure how far the quantized one strays.
//
// Per layer L: the original runs layer L on its own hidden states and exports each linear's
// input and output (the activations that actually reach it); then the quantized checkpoint runs
// layer L on ITS hidden states (for the model-level metrics) and, in the same graphs, runs the
// original's captured inputs through its FP8 linears (probes). Each quantized linear is thus
// compared with the original linear on identical inputs, so an error is pinned to the layer that
// makes it, not smeared over everything downstream. Only one layer's weights (of one checkpoint)
// and one layer's captures are held at a time. Events report progress; nothing is printed here.

import { performance } from 'node:perf_hooks';
import { CheckpointError } from '../../io/errors.js';
import type { BatchShape } from '../models/layer-graphs.js';
import { layerLinears } from '../models/layer-plan.js';
import { HostBufferPool } from '../models/buffer-pool.js';
import { ModelRunner } from '../models/runner.js';
import { generateInputIds, type TokenBatch } from '../models/token-ids.js';
import { WeightAccounting } from '../models/weights.js';
import type { Device } from '../session.js';
import { linearClipping, staticActivationScaleOf, summarizeClipping, type ClippingSummary, type LinearClipping } from './activation-clipping.js';
import { DEFAULT_GATES, evaluateGates, type GateFailure, type Gates } from './gates.js';
import { compareLogits, compareTensors, type LogitMetrics } from './metrics.js';

export const DEFAULT_VERIFY_TOKENS = 32;
export const DEFAULT_VERIFY_SEED = 0;

export interface VerifyOptions {
  readonly original: string;
  readonly quantized: string;
  /** Token ids; when absent, `tokens` seeded random ids in one sequence. */
  readonly input?: TokenBatch;
  readonly tokens?: number;
  readonly seed?: number;
  readonly device?: Device;
  readonly gates?: Partial<Gates>;
  readonly intraOpThreads?: number;
  readonly onEvent?: (event: VerifyEvent) => void;
}

export type VerifyEvent =
  | { readonly type: 'start'; readonly layers: number; readonly tokens: number }
  | { readonly type: 'layer'; readonly index: number; readonly count: number }
  | { readonly type: 'head' };

export interface LinearReport {
  readonly module: string;
  readonly layer: number;
  /** Rows (tokens, or tokens routed to an expert) the comparison ran on. */
  readonly rows: number;
  readonly relativeError: number;
  readonly cosine: number;
  readonly sqnrDb: number;
  /** Static activation scheme: its input values beyond the calibrated range (activation-clipping.ts). */
  readonly clipping?: LinearClipping;
}

export interface VerifyReport {
  readonly original: string;
  readonly quantized: string;
  readonly architecture: string;
  readonly device: Device;
  readonly input: { readonly source: 'file' | 'generated'; readonly batch: number; readonly seq: number; readonly seed?: number };
  readonly model: LogitMetrics;
  readonly linears: readonly LinearReport[];
  /** Quantized linears no activation reached (experts no token was routed to). */
  readonly notReached: readonly string[];
  readonly summary: {
    readonly linearsCompared: number;
    readonly maxRelativeError: number;
    readonly minCosine: number;
    readonly minSqnrDb: number;
    readonly worstLinear: string | undefined;
  };
  readonly gates: Gates;
  readonly failures: readonly GateFailure[];
  readonly passed: boolean;
  /** Static activation scheme: clipping over every linear with an activation_scale; absent for dynamic. */
  readonly clipping?: ClippingSummary;
  /** Largest weight bytes held at once (both checkpoints together): about one decoder layer. */
  readonly peakWeightBytes: number;
  readonly checkpointBytes: { readonly original: number; readonly quantized: number };
  readonly seconds: number;
}

function checkpointBytes(runner: ModelRunner): number {
  let n = 0;
  for (const name of runner.checkpoint.tensorNames()) n += runner.checkpoint.info(name).byteLength;
  return n;
}

function checkCompatible(o: ModelRunner, q: ModelRunner): void {
  const a = o.spec;
  const b = q.spec;
  const diffs: string[] = [];
  if (a.family !== b.family) diffs.push(`architecture ${a.label} vs ${b.label}`);
  if (a.numLayers !== b.numLayers) diffs.push(`num_hidden_layers ${a.numLayers} vs ${b.numLayers}`);
  if (a.hiddenSize !== b.hiddenSize) diffs.push(`hidden_size ${a.hiddenSize} vs ${b.hiddenSize}`);
  if (a.vocabSize !== b.vocabSize) diffs.push(`vocab_size ${a.vocabSize} vs ${b.vocabSize}`);
  if (diffs.length > 0) {
    throw new CheckpointError(`${q.checkpoint.dir} is not a conversion of ${o.checkpoint.dir}: ${diffs.join(', ')}`);
  }
}

export async function verifyCheckpoints(opts: VerifyOptions): Promise<VerifyReport> {
  const t0 = performance.now();
  const emit = opts.onEvent ?? (() => undefined);
  const device = opts.device ?? 'cpu';
  const gates: Gates = { ...DEFAULT_GATES, ...opts.gates };
  const accounting = new WeightAccounting();
  // One pool of weight buffers (read and decoded) for both runners: their layers have the same shapes.
  const buffers = new HostBufferPool();
  const runnerOptions = { device, accounting, buffers, ...(opts.intraOpThreads === undefined ? {} : { intraOpThreads: opts.intraOpThreads }) };
  const original = await ModelRunner.open(opts.original, runnerOptions);
  let quantized: ModelRunner | undefined;
  try {
    quantized = await ModelRunner.open(opts.quantized, runnerOptions);
    checkCompatible(original, quantized);
    const spec = original.spec;
    const seed = opts.seed ?? DEFAULT_VERIFY_SEED;
    const input = opts.input ?? generateInputIds(spec.vocabSize, opts.tokens ?? DEFAULT_VERIFY_TOKENS, seed);
    const shape: BatchShape = { batch: input.batch, seq: input.seq };
    emit({ type: 'start', layers: spec.numLayers, tokens: input.ids.length });

    let ho = await original.embed(input.ids);
    let hq = await quantized.embed(input.ids);
    const linears: LinearReport[] = [];
    const notReached: string[] = [];
    for (let layer = 0; layer < spec.numLayers; layer++) {
      emit({ type: 'layer', index: layer, count: spec.numLayers });
      const ro = await original.runLayer(layer, ho, shape, { capture: true });
      const rq = await quantized.runLayer(layer, hq, shape, { probes: ro.captures });
      for (const module of layerLinears(quantized.plan(layer))) {
        if (!quantized.isFp8Linear(module)) continue;
        const capture = ro.captures.get(module);
        const out = rq.probeOutputs.get(module);
        if (capture === undefined || out === undefined) {
          notReached.push(module);
          continue;
        }
        const staticScale = await staticActivationScaleOf(quantized, module);
        linears.push({
          module,
          layer,
          rows: capture.rows,
          ...compareTensors(capture.output, out),
          ...(staticScale === undefined ? {} : { clipping: linearClipping(capture.input, capture.rows, staticScale) }),
        });
      }
      ho = ro.hidden;
      hq = rq.hidden;
    }
    emit({ type: 'head' });
    // Layer-shaped weight buffers and the layer graphs' sessions (with their arenas) are of no use
    // to the head's lm_head chunks: dropped, the head's memory takes their place instead of adding
    // to it (peak RSS of a Llama-8B-shaped verify: bench/NOTES.md).
    buffers.clear();
    await original.sessions.clear();
    await quantized.sessions.clear();
    const tokens = shape.batch * shape.seq;
    const model = compareLogits(await original.head(ho, tokens), await quantized.head(hq, tokens), spec.vocabSize);

    let worst: LinearReport | undefined;
    for (const l of linears) if (worst === undefined || !(l.relativeError <= worst.relativeError)) worst = l;
    const failures = evaluateGates({ meanKl: model.meanKl, top1Agreement: model.top1Agreement, linears }, gates);
    const clipping = summarizeClipping(linears);
    return {
      original: opts.original,
      quantized: opts.quantized,
      architecture: spec.label,
      device,
      input: opts.input ? { source: 'file', batch: shape.batch, seq: shape.seq } : { source: 'generated', batch: shape.batch, seq: shape.seq, seed },
      model,
      linears,
      notReached,
      summary: {
        linearsCompared: linears.length,
        maxRelativeError: worst?.relativeError ?? 0,
        minCosine: linears.reduce((m, l) => Math.min(m, l.cosine), 1),
        minSqnrDb: linears.reduce((m, l) => Math.min(m, l.sqnrDb), Infinity),
        worstLinear: worst?.module,
      },
      gates,
      failures,
      passed: failures.length === 0,
      ...(clipping === undefined ? {} : { clipping }),
      peakWeightBytes: accounting.peak,
      checkpointBytes: { original: checkpointBytes(original), quantized: checkpointBytes(quantized) },
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    await original.close();
    await quantized?.close();
  }
}
