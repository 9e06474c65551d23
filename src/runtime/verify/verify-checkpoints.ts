// `fp8q verify` as a library call: run the original and the quantized checkpoint side by side,
// one decoder layer at a time, and measure how far the quantized one strays.
//
// Per layer L: the original runs layer L on its own hidden states and exports each linear's
// input and output (the activations that actually reach it); then the quantized checkpoint runs
// layer L on ITS hidden states (for the model-level metrics) and, in the same graphs, runs the
// original's captured inputs through its FP8 linears (probes). Each quantized linear is thus
// compared with the original linear on identical inputs, so an error is pinned to the layer that
// makes it, not smeared over everything downstream. The same graphs also run each linear's FP8
// floor (fp8-floor.ts: its original weights re-quantized the same way) and, for --mla-split
// output, every head's w_uk/w_uv (mla-split-probes.ts). On CUDA a layer whose linears need
// nothing but that comparison runs instead in graphs of both models, compared in the graph
// (paired-layers.ts: a dense layer, or an MoE layer of per-expert linears, which declines after
// routing where a routed expert's floor is not its stored linear): only the hidden states and the
// comparison sums come back to the host, where the separate runs bring every linear's input and
// output. Before anything runs, the two folders
// must be an original and its conversion (checkpoint-pair.ts); after, every FP8 tensor no
// comparison ran is listed (coverage.ts). On text input both models' perplexity is reported.
// Only one layer's weights (of one checkpoint; of both in a paired layer) and one layer's captures
// are held at a time.
// Events report progress; nothing is printed here.

import { freemem } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { BatchShape } from '../models/layer-graphs.js';
import { layerLinears, type LayerPlan } from '../models/layer-plan.js';
import { HostBufferPool } from '../models/buffer-pool.js';
import { EXPERT_READ_WINDOW_BYTES, ModelRunner, type ExtraProbe, type LayerCaptures, type LayerPairResult, type LayerResult } from '../models/runner.js';
import { generateInputIds, type TokenBatch } from '../models/token-ids.js';
import { WeightAccounting, type WeightScope } from '../models/weights.js';
import type { Device } from '../onnx/session.js';
import { isFp8Dtype, type Fp8Format } from '../../fp8/index.js';
import type { WeightDecode } from '../models/model-graph.js';
import { linearClipping, staticActivationScaleOf, summarizeClipping, type ClippingSummary, type LinearClipping } from './activation-clipping.js';
import { DEFAULT_GATES, evaluateGates, type GateFailure, type Gates } from './gates.js';
import {
  compareLogits,
  linearMetrics,
  linearMetricsFromSums,
  logitMetrics,
  mergeLogitChunks,
  nextTokenTargets,
  perplexity,
  perplexityFromNll,
  type LinearMetrics,
  type LogitMetrics,
  type Perplexity,
} from './metrics.js';
import { defaultMetricsThreads, MetricsPool } from './metrics-pool.js';
import { requantizeSelfTest } from '../ops/block-requantize.js';
import { sameStoredBytes, storedRange } from './same-stored-bytes.js';
import { checkCheckpointPair } from './checkpoint-pair.js';
import { quantizedKeptModules, unverifiedTensors } from './coverage.js';
import { mlaSplitProbes, mlaSplitTensors, REFERENCE_SUFFIX } from './mla-split-probes.js';
import { floorProbes, FLOOR_SUFFIX } from './fp8-floor.js';
import { mayPairLayer, pairedComparisons } from './paired-layers.js';
import { defaultCpuFloorCheckThreads, defaultFloorCheckThreads, FloorChecker, floorCheckJob } from './floor-check.js';
import type { TextInputDescription } from '../text/text-input.js';

export const DEFAULT_VERIFY_TOKENS = 32;
export { FLOOR_EPSILON } from './metrics.js';
export const DEFAULT_VERIFY_SEED = 0;

export interface VerifyOptions {
  readonly original: string;
  readonly quantized: string;
  /** Token ids; when absent, `tokens` seeded random ids in one sequence. */
  readonly input?: TokenBatch;
  /** Where `input` came from: text (then perplexity is reported and gated), or an ids file (default). */
  readonly inputSource?: { readonly kind: 'file'; readonly file?: string } | { readonly kind: 'text'; readonly text: TextInputDescription };
  /** Quantized tensors no comparison reached do not fail the run. */
  readonly allowUnverified?: boolean;
  readonly tokens?: number;
  readonly seed?: number;
  readonly device?: Device;
  readonly gates?: Partial<Gates>;
  readonly intraOpThreads?: number;
  /**
   * Worker threads that check the FP8 floors ahead of the layers (floor-check.ts); default: the
   * spare cores on CUDA, one on the CPU (with two cores or more: the main thread's widening and
   * decoding of weights leaves the other cores idle between onnxruntime's runs). The report is
   * the same.
   */
  readonly floorCheckThreads?: number;
  /**
   * Worker threads that compute the per-linear metrics while the main thread runs the next graphs
   * (metrics-pool.ts); default: up to 4 of the cores left on CUDA, none on the CPU (whose cores
   * onnxruntime uses). The report is the same.
   */
  readonly metricsThreads?: number;
  /**
   * Read the next layer, and a MoE layer's routed experts a window at a time, ahead of need (models/weights.ts);
   * default on CUDA only (on the CPU it adds memory, not speed). The report is the same.
   */
  readonly readAhead?: boolean;
  /**
   * Run each layer whose linears need nothing but their outputs compared in graphs of both models,
   * compared in the graph (paired-layers.ts: dense layers, and MoE layers of per-expert linears);
   * default on CUDA. Needs layers that run as one graph (weights decoded in the graph: CUDA, or
   * `weightDecode: 'graph'`) and the floor-check workers (`floorCheckThreads` > 0: a layer is
   * paired only once they found each linear its own floor). The report is the same but for the
   * last digits of the per-linear figures (their sums are added in another order).
   */
  readonly pairedLayers?: boolean;
  /** Where stored weights become float32 (model-graph.ts); default: on the host for the CPU, in the graph for CUDA. */
  readonly weightDecode?: WeightDecode;
  /**
   * Awaited before the first onnxruntime session and the 'start' event: the CUDA probe running in a
   * worker (device.ts selectDeviceEarly), so that opening both checkpoints, the floor checks and the
   * first layer's reads overlap it. Its rejection is verify's.
   */
  readonly deviceReady?: Promise<void>;
  /**
   * In paired layers, a quantized linear whose stored codes and scales the floor check found to be
   * exactly the original's re-quantization takes its codes from the original's weights, re-quantized
   * on the device (ops/block-requantize.ts), instead of sending them over; only where the device
   * passes requantizeSelfTest. Default on CUDA. The report is the same.
   */
  readonly requantizeOnDevice?: boolean;
  /**
   * Where both heads hold the same bytes (a conversion keeps lm_head), the two models' logits are
   * compared chunk by chunk on the device (ModelRunner.compareHeads, ops/logit-comparison.ts) and
   * only per-token figures come back, not `[tokens, vocab]` logits of each. Default on CUDA. The
   * figures are the host's up to the order of their sums.
   */
  readonly logitsOnDevice?: boolean;
  readonly onEvent?: (event: VerifyEvent) => void;
}

export type VerifyEvent =
  | {
      readonly type: 'start';
      readonly layers: number;
      readonly tokens: number;
      /**
       * Where re-quantizing floor-checked codes on the device was tried (requantizeOnDevice with
       * paired layers): whether the device passed its self-test, so that the codes stay on the host.
       */
      readonly requantizeOnDevice?: boolean;
    }
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
  /**
   * Relative error of the original weights re-quantized the same way (block, FP8 format, scale
   * format; dynamic activations) on the same input: the FP8 floor (fp8-floor.ts). Absent for
   * stacked / fused 3-D experts.
   */
  readonly floorError?: number;
  /** relativeError / max(floorError, FLOOR_EPSILON): 1 for a conversion as good as FP8 allows. */
  readonly errorRatio?: number;
  /** Static activation scheme: its input values beyond the calibrated range (activation-clipping.ts). */
  readonly clipping?: LinearClipping;
}

/** The token ids a verify ran on. */
export interface VerifyInput {
  /** `text`/`dataset`/`bundled`: tokenized text (perplexity reported); `file`: --input-ids; `generated`: random ids. */
  readonly source: 'file' | 'generated' | TextInputDescription['kind'];
  readonly batch: number;
  readonly seq: number;
  /** Generated ids' seed. */
  readonly seed?: number;
  /** The file read (`-` for stdin); for `bundled`, the sample's path. */
  readonly file?: string;
  /** Text: the tokenizer.json used and how many of the text's tokens the run used. */
  readonly tokenizer?: string;
  readonly tokensAvailable?: number;
  /** One line for reports, e.g. `text fixtures/a.txt (2×512 of 2156 tokens, tokenizer.json)`. */
  readonly description: string;
}

/** Perplexity of both models on the input text (next-token NLL over every row). */
export interface VerifyPerplexity {
  readonly original: number;
  readonly quantized: number;
  /** (quantized / original − 1) × 100. */
  readonly increasePercent: number;
  readonly predictions: number;
}

/** The linears' comparison in a line: how many, and the worst of each figure. */
export interface VerifySummary {
  readonly linearsCompared: number;
  readonly maxRelativeError: number;
  readonly minCosine: number;
  readonly minSqnrDb: number;
  readonly worstLinear: string | undefined;
}

export interface VerifyReport {
  readonly original: string;
  readonly quantized: string;
  readonly architecture: string;
  readonly device: Device;
  readonly input: VerifyInput;
  readonly model: LogitMetrics;
  /** Present when the input is text. */
  readonly perplexity?: VerifyPerplexity;
  readonly linears: readonly LinearReport[];
  /** Quantized linears no activation reached (experts no token was routed to). */
  readonly notReached: readonly string[];
  /** Every FP8 tensor of the quantized checkpoint that no comparison ran (coverage.ts); non-empty fails unless allowed. */
  readonly unverified: readonly string[];
  /** FP8 modules fp8q keeps in high precision (lm_head, embeddings, routers) while the original does. */
  readonly keptModules: readonly string[];
  readonly summary: VerifySummary;
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

interface LayerExtraProbes {
  readonly probes: ExtraProbe[];
  /** MLA w_uk/w_uv heads compared (with reference and floor probes). */
  readonly splitModules: readonly { readonly name: string; readonly rows: number }[];
  /** Floor probe name → its block's bn (row blocks of the floor ratio). */
  readonly floorRows: ReadonlyMap<string, number>;
  /** Modules whose floor is their stored linear: the module's own output is its floor. */
  readonly sameAsStored: ReadonlySet<string>;
}

/**
 * A quantized layer's probes beyond its own linears: MLA split heads (when it has w_uk/w_uv) and
 * the FP8 floor of every FP8 linear. The original's weights are read in a scope of their own,
 * closed before the layer runs: the probes hold fresh copies, so they do not add to the peak.
 */
async function layerExtraProbes(
  original: ModelRunner,
  quantized: ModelRunner,
  plan: LayerPlan,
  captures: LayerCaptures,
  quantizedScope: WeightScope,
  checked?: (module: string) => Promise<boolean | undefined>,
): Promise<LayerExtraProbes> {
  const originalScope = original.weights.scope();
  try {
    const attention = plan.attention;
    const spec = quantized.spec.attention;
    const split = attention.kind === 'mla' && spec.kind === 'mla' ? mlaSplitTensors((n) => quantized.checkpoint.has(n), attention) : undefined;
    const mla = split && attention.kind === 'mla' && spec.kind === 'mla' ? await mlaSplitProbes(spec, attention, split, captures, originalScope, quantizedScope) : undefined;
    const fp8Modules = layerLinears(plan).filter((m) => quantized.isFp8Linear(m));
    const sameAsStored = new Map<string, number>();
    const floors = await floorProbes(
      fp8Modules,
      captures,
      { checkpoint: original.checkpoint, scope: () => original.weights.scope() },
      { checkpoint: quantized.checkpoint, blockFor: (m, n, k, shape) => quantized.weights.blockFor(m, n, k, shape) },
      sameAsStored,
      original.weights.pool,
      checked,
    );
    const probes = [...(mla?.probes ?? []), ...floors];
    const floorRows = new Map<string, number>();
    for (const p of probes) if (p.name.endsWith(FLOOR_SUFFIX) && p.w.kind === 'fp8') floorRows.set(p.name, p.w.block.bn);
    for (const [m, bn] of sameAsStored) floorRows.set(`${m}${FLOOR_SUFFIX}`, bn);
    return { probes, splitModules: mla?.modules ?? [], floorRows, sameAsStored: new Set(sameAsStored.keys()) };
  } finally {
    originalScope.close();
  }
}

/**
 * Whether both models' head tensors hold the same bytes (same-stored-bytes.ts), where both are
 * stored alike and not FP8 (the only heads the head phase shares); undefined otherwise.
 */
function compareHeadsOffThread(original: ModelRunner, quantized: ModelRunner, signal: AbortSignal): Promise<boolean | undefined> {
  const a = original.headTensorNames();
  const b = quantized.headTensorNames();
  const pairs: [string, string][] = [
    [a.weight, b.weight],
    [a.norm, b.norm],
  ];
  const comparable = pairs.every(([x, y]) => {
    if (!original.checkpoint.has(x) || !quantized.checkpoint.has(y)) return false;
    const [ix, iy] = [original.checkpoint.info(x), quantized.checkpoint.info(y)];
    return ix.dtype === iy.dtype && !isFp8Dtype(ix.dtype) && ix.byteLength === iy.byteLength;
  });
  if (!comparable) return Promise.resolve(undefined);
  return sameStoredBytes(
    pairs.map(([x, y]) => [storedRange(original.checkpoint, x), storedRange(quantized.checkpoint, y)] as const),
    signal,
  );
}

/** Whether `device` re-quantizes in every FP8 format `runner`'s checkpoint stores as the host does (requantizeSelfTest). */
async function requantizesAsHost(runner: ModelRunner, device: Device): Promise<boolean> {
  const formats = new Set<Fp8Format>();
  for (const name of runner.checkpoint.tensorNames()) {
    const dtype = runner.checkpoint.info(name).dtype;
    if (dtype === 'F8_E4M3') formats.add('e4m3fn');
    else if (dtype === 'F8_E5M2') formats.add('e5m2');
  }
  for (const format of formats) if (!(await requantizeSelfTest(device, format))) return false;
  return formats.size > 0;
}

function checkpointBytes(runner: ModelRunner): number {
  let n = 0;
  for (const name of runner.checkpoint.tensorNames()) n += runner.checkpoint.info(name).byteLength;
  return n;
}

export async function verifyCheckpoints(opts: VerifyOptions): Promise<VerifyReport> {
  const t0 = performance.now();
  // Awaited below; a rejection that comes first is not an unhandled one.
  opts.deviceReady?.catch(() => undefined);
  const emit = opts.onEvent ?? (() => undefined);
  const device = opts.device ?? 'cpu';
  const gates: Gates = { ...DEFAULT_GATES, ...opts.gates };
  const accounting = new WeightAccounting();
  // One pool of weight buffers (read and decoded) for both runners: their layers have the same shapes.
  const buffers = new HostBufferPool();
  // On the CPU each layer runs as several graphs (runner.ts): without the arena, a graph's work
  // memory goes when its run ends rather than staying with each cached session (bench/NOTES.md).
  const runnerOptions = {
    device,
    accounting,
    buffers,
    ...(opts.readAhead === undefined ? {} : { readAhead: opts.readAhead }),
    ...(device === 'cpu' ? { cpuMemArena: false } : {}),
    ...(opts.weightDecode === undefined ? {} : { weightDecode: opts.weightDecode }),
    ...(opts.intraOpThreads === undefined ? {} : { intraOpThreads: opts.intraOpThreads }),
  };
  const original = await ModelRunner.open(opts.original, runnerOptions);
  let quantized: ModelRunner | undefined;
  let checker: FloorChecker | undefined;
  let metricsPool: MetricsPool | undefined;
  const headWarmers: { stop(): Promise<void> }[] = [];
  // Stops the heads' comparison worker when verify ends (early, on an error: its reads are not waited for).
  const stopWorkers = new AbortController();
  try {
    quantized = await ModelRunner.open(opts.quantized, runnerOptions);
    await checkCheckpointPair(original, quantized);
    const spec = original.spec;
    const q = quantized;
    // Where reads run ahead (CUDA), the first layer's linears start reading now, beside the workers'
    // start and the embedding: the read-ahead of layer i+1 starts only once layer i is read. Not its
    // experts: routed ones are read once routed, stacked ones by rows.
    if (spec.numLayers > 0) for (const r of [original, q]) r.weights.prefetchLinears(layerLinears(r.plan(0)).filter((m) => !/\.experts\./.test(m)));
    const floorThreads = opts.floorCheckThreads ?? (device === 'cuda' ? defaultFloorCheckThreads() : defaultCpuFloorCheckThreads());
    const jobOf = (m: string) => floorCheckJob(m, original.checkpoint, q.checkpoint, (mm, n, k, s) => q.weights.blockFor(mm, n, k, s));
    if (floorThreads > 0) checker = new FloorChecker(floorThreads);
    const c = checker;
    /** Queues `m`'s floor check where the worker path applies (`soon`: see FloorChecker.submit). */
    const submitCheck = (m: string, soon = false): void => {
      if (c === undefined) return;
      const job = jobOf(m);
      if (job) c.submit(m, job, soon);
    };
    const pairLayers = opts.pairedLayers ?? device === 'cuda';
    // Every layer's linears, the workers running ahead. Routed experts only where their layer may
    // run paired (mayPairLayer, and a worker can check each of its other linears): it asks for the
    // checks of the experts the original routes to right after routing, before any of them runs, so
    // they are done by then. The others' checks run too, never awaited; a layer that cannot pair
    // would have its workers read every expert for nothing. Elsewhere an expert is checked once a
    // token reaches it.
    if (c) {
      for (let layer = 0; layer < spec.numLayers; layer++) {
        const plan = q.plan(layer);
        const linears = layerLinears(plan).filter((m) => q.isFp8Linear(m));
        const checkable = (m: string): boolean => EXPERT.test(m) || !original.checkpoint.has(`${m}.weight`) || jobOf(m) !== undefined;
        const experts = pairLayers && mayPairLayer(original, q, layer, plan) && linears.every(checkable);
        for (const m of linears) if (experts || !EXPERT.test(m)) submitCheck(m);
      }
    }
    const metricsThreads = opts.metricsThreads ?? (device === 'cuda' ? defaultMetricsThreads(floorThreads) : 0);
    if (metricsThreads > 0) metricsPool = new MetricsPool(metricsThreads);
    const pool = metricsPool;
    // Handed to the pool, outputs go to its workers and are not read here again.
    const measure = (reference: Float32Array, actual: Float32Array, floor: Float32Array | undefined, rows: number, bn: number | undefined): Promise<LinearMetrics> =>
      pool ? pool.measure(reference, actual, floor, rows, bn) : Promise.resolve(linearMetrics(reference, actual, floor, rows, bn));
    const checked =
      c === undefined
        ? undefined
        : (m: string): Promise<boolean | undefined> => {
            submitCheck(m);
            return c.result(m);
          };
    // Without read-ahead (the CPU), both lm_heads are read into the page cache while the layers run
    // (warmHeadsAt says from which layer).
    const warmHeads = !(opts.readAhead ?? device === 'cuda');
    const sizes = { original: checkpointBytes(original), quantized: checkpointBytes(q) };
    const seed = opts.seed ?? DEFAULT_VERIFY_SEED;
    const input = opts.input ?? generateInputIds(spec.vocabSize, opts.tokens ?? DEFAULT_VERIFY_TOKENS, seed);
    const shape: BatchShape = { batch: input.batch, seq: input.seq };
    await opts.deviceReady;
    // Checked once, on the device, before any layer relies on it (a failed check sends the codes).
    const tryRequantize = pairLayers && (opts.requantizeOnDevice ?? device === 'cuda');
    const requantize = tryRequantize && (await requantizesAsHost(q, device));
    emit({ type: 'start', layers: spec.numLayers, tokens: input.ids.length, ...(tryRequantize ? { requantizeOnDevice: requantize } : {}) });

    let ho = await original.embed(input.ids);
    let hq = await quantized.embed(input.ids);
    // In report order; each entry's metrics may still be computing in the pool. A failure is
    // thrown where they are all awaited, after the layers (not as an unhandled rejection before).
    const measured: Promise<LinearReport>[] = [];
    const track = (report: Promise<LinearReport>): void => {
      report.catch(() => undefined);
      measured.push(report);
    };
    const notReached: string[] = [];
    // Whether both heads' stored bytes are the same, asked of a worker thread while the last two
    // layers run (where a pool of workers shows cores to spare): the head then need not compare them.
    let headsSame: Promise<boolean | undefined> | undefined;
    for (let layer = 0; layer < spec.numLayers; layer++) {
      emit({ type: 'layer', index: layer, count: spec.numLayers });
      if (pool !== undefined && headsSame === undefined && layer === Math.max(0, spec.numLayers - 2)) headsSame = compareHeadsOffThread(original, quantized, stopWorkers.signal);
      if (warmHeads && headWarmers.length === 0 && warmHeadsAt(layer, spec.numLayers, sizes.original + sizes.quantized, freemem())) {
        headWarmers.push(...[original, quantized].map((r) => r.warmHeadPages()));
      }
      const paired = pairLayers ? await pairedComparisons(original, quantized, layer, quantized.plan(layer), checked) : undefined;
      let pair: LayerPairResult | undefined;
      if (paired !== undefined) {
        const fromOriginal = requantize ? new Set([...paired].filter(([, c]) => c.floor === 'output').map(([m]) => m)) : undefined;
        // An MoE layer's routed experts (pairedComparisons leaves their checks to this): all must be the stored linears.
        const expertsChecked = async (modules: readonly string[]): Promise<boolean> => (await Promise.all(modules.map((m) => checked!(m)))).every((same) => same === true);
        pair = await original.runLayerPair(quantized, layer, ho, hq, shape, new Map([...paired].map(([m, c]) => [m, c.columns])), fromOriginal, expertsChecked);
      }
      if (paired !== undefined && pair !== undefined) {
        for (const [module, c] of paired) {
          const s = pair.sums.get(module);
          if (s === undefined) {
            notReached.push(module);
            continue;
          }
          track(Promise.resolve({ module, layer, rows: s.rows, ...linearMetricsFromSums(s.sums, 1, s.groups, c.floor, c.perBlock) }));
        }
        // The layer's inputs are read by nothing else: their buffers serve the next layer's outputs.
        original.giveBack([ho, hq]);
        ho = pair.hidden;
        hq = pair.otherHidden;
        continue;
      }
      const ro = await original.runLayer(layer, ho, shape, { capture: true });
      // The quantized layer probes every expert the original routed a token to. The reads of the
      // first of them (a window; the runner reads the rest as it goes) start now, while the floor
      // checks and the quantized attention run (on CUDA; see prefetchLinears), and their floor
      // checks are all submitted now (floorProbes asks for them one after another, so submitted
      // there they would run one at a time).
      const reached = [...ro.captures.keys()].filter((m) => EXPERT.test(m) && q.isFp8Linear(m));
      q.weights.prefetchLinears(reached, EXPERT_READ_WINDOW_BYTES);
      // Ahead of the later layers' jobs queued at the start: these are waited for in this layer.
      for (const m of reached) submitCheck(m, true);
      const plan = quantized.plan(layer);
      // Scope of the quantized checkpoint's w_uk/w_uv heads: they live in its pooled buffers until the layer has run.
      const quantizedScope = quantized.weights.scope();
      let rq: LayerResult;
      let extra: LayerExtraProbes;
      try {
        extra = await layerExtraProbes(original, quantized, plan, ro.captures, quantizedScope, checked);
        rq = await quantized.runLayer(layer, hq, shape, { probes: ro.captures, extraProbes: extra.probes });
      } finally {
        quantizedScope.close();
      }
      const { splitModules, floorRows } = extra;
      for (const m of splitModules) {
        const ref = rq.probeOutputs.get(`${m.name}${REFERENCE_SUFFIX}`);
        const out = rq.probeOutputs.get(m.name);
        if (ref === undefined || out === undefined) continue;
        const metrics = measure(ref, out, rq.probeOutputs.get(`${m.name}${FLOOR_SUFFIX}`), m.rows, floorRows.get(`${m.name}${FLOOR_SUFFIX}`));
        track(metrics.then((x) => ({ module: m.name, layer, rows: m.rows, ...x })));
      }
      for (const module of layerLinears(plan)) {
        if (!quantized.isFp8Linear(module)) continue;
        const capture = ro.captures.get(module);
        const out = rq.probeOutputs.get(module);
        if (capture === undefined || out === undefined) {
          notReached.push(module);
          continue;
        }
        const staticScale = await staticActivationScaleOf(quantized, module);
        const clipping = staticScale === undefined ? undefined : linearClipping(capture.input, capture.rows, staticScale);
        const floor = extra.sameAsStored.has(module) ? out : rq.probeOutputs.get(`${module}${FLOOR_SUFFIX}`);
        const metrics = measure(capture.output, out, floor, capture.rows, floorRows.get(`${module}${FLOOR_SUFFIX}`));
        const rows = capture.rows;
        track(metrics.then((x) => ({ module, layer, rows, ...x, ...(clipping === undefined ? {} : { clipping }) })));
      }
      ho = ro.hidden;
      hq = rq.hidden;
    }
    await Promise.all(headWarmers.map((w) => w.stop()));
    const linears = await Promise.all(measured);
    emit({ type: 'head' });
    // Every floor check has answered (each linear's metrics waited for its own): the checker's
    // threads take a share of the logits' comparison instead, where the host compares them.
    let floorThreadsFree = false;
    if (checker !== undefined && pool !== undefined) {
      await checker.close();
      checker = undefined;
      floorThreadsFree = true;
    }
    // Layer-shaped weight buffers and the layer graphs' sessions (with their arenas) are of no use
    // to the head's lm_head chunks: dropped, the head's memory takes their place instead of adding
    // to it (peak RSS of a Llama-8B-shaped verify: bench/NOTES.md).
    buffers.clear();
    await original.sessions.clear();
    await quantized.sessions.clear();
    const tokens = shape.batch * shape.seq;
    // One widening of lm_head for both where the conversion kept it as it was (runner.ts, heads).
    const sameStoredBytes = await headsSame;
    const scored = opts.inputSource?.kind === 'text';
    const targets = scored ? nextTokenTargets(input.ids, shape.batch, shape.seq) : undefined;
    const onDevice = (opts.logitsOnDevice ?? device === 'cuda') ? await original.compareHeads(ho, tokens, { runner: quantized, hidden: hq, sameStoredBytes }, targets) : undefined;
    let model: LogitMetrics;
    let po: Perplexity | undefined;
    let pq: Perplexity | undefined;
    if (onDevice !== undefined) {
      const merged = mergeLogitChunks(onDevice, tokens, targets);
      model = logitMetrics(merged.comparison);
      if (merged.nll !== undefined) {
        po = perplexityFromNll(merged.nll.original, shape.batch, shape.seq);
        pq = perplexityFromNll(merged.nll.quantized, shape.batch, shape.seq);
      }
    } else {
      if (floorThreadsFree) pool?.grow(floorThreads);
      const [logitsO, logitsQ] = await original.heads(ho, tokens, { runner: quantized, hidden: hq, sameStoredBytes }, pool && ((n) => pool.sharedZeroed(n)));
      model = pool ? await pool.compareLogits(logitsO, logitsQ, spec.vocabSize) : compareLogits(logitsO, logitsQ, spec.vocabSize);
      if (scored) {
        po = perplexity(logitsO, input.ids, shape.batch, shape.seq, spec.vocabSize);
        pq = perplexity(logitsQ, input.ids, shape.batch, shape.seq, spec.vocabSize);
      }
    }
    const ppl: VerifyPerplexity | undefined =
      po === undefined || pq === undefined
        ? undefined
        : { original: po.perplexity, quantized: pq.perplexity, increasePercent: (pq.perplexity / po.perplexity - 1) * 100, predictions: po.predictions };
    const unverified = unverifiedTensors(quantized.checkpoint, new Set(linears.map((l) => l.module)));
    const keptModules = quantizedKeptModules(original.checkpoint, quantized.checkpoint, spec.routing !== undefined);

    let worst: LinearReport | undefined;
    for (const l of linears) if (worst === undefined || !(l.relativeError <= worst.relativeError)) worst = l;
    const failures = evaluateGates(
      {
        meanKl: model.meanKl,
        top1Agreement: model.top1Agreement,
        linears,
        ...(ppl === undefined ? {} : { pplIncreasePercent: ppl.increasePercent }),
        unverified,
        allowUnverified: opts.allowUnverified === true,
        keptModules,
      },
      gates,
    );
    const clipping = summarizeClipping(linears);
    return {
      original: opts.original,
      quantized: opts.quantized,
      architecture: spec.label,
      device,
      input: describeInput(opts, shape, seed),
      model,
      ...(ppl === undefined ? {} : { perplexity: ppl }),
      linears,
      notReached,
      unverified,
      keptModules,
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
      checkpointBytes: sizes,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    stopWorkers.abort();
    await Promise.all(headWarmers.map((w) => w.stop()));
    await metricsPool?.close();
    await checker?.close();
    await original.close();
    await quantized?.close();
  }
}

/**
 * Whether verify, at `layer`, starts reading both lm_heads into the page cache
 * (ModelRunner.warmHeadPages): once past the first layer (whose reads start cold and should not
 * wait behind the heads'), and once what is left to read, estimated as the remaining layers' share
 * of both checkpoints' bytes, fits in half the available memory. Earlier, the layers read after
 * the heads would evict them, and the head phase would read them a second time.
 */
export function warmHeadsAt(layer: number, layers: number, bothCheckpointsBytes: number, availableBytes: number): boolean {
  return layer >= 1 && layer < layers && (bothCheckpointsBytes * (layers - layer)) / layers <= availableBytes / 2;
}

/** A routed expert's linear (`…experts.<e>.…`). */
const EXPERT = /\.experts\.\d+\./;

function describeInput(opts: VerifyOptions, shape: BatchShape, seed: number): VerifyInput {
  const dims = `${shape.batch}×${shape.seq} tokens`;
  const src = opts.inputSource;
  if (!opts.input) return { source: 'generated', batch: shape.batch, seq: shape.seq, seed, description: `random ids, ${dims}, seed ${seed}` };
  if (src?.kind === 'text') {
    const t = src.text;
    const what = t.kind === 'bundled' ? 'bundled English sample' : t.kind === 'dataset' ? `dataset ${t.file}` : `text ${t.file === '-' ? 'stdin' : t.file}`;
    return {
      source: t.kind,
      batch: shape.batch,
      seq: shape.seq,
      file: t.file,
      tokenizer: t.tokenizer,
      tokensAvailable: t.tokensAvailable,
      description: `${what}, ${dims} of its ${t.tokensAvailable}`,
    };
  }
  const file = src?.kind === 'file' ? src.file : undefined;
  return { source: 'file', batch: shape.batch, seq: shape.seq, ...(file === undefined ? {} : { file }), description: `ids ${file ?? 'given'}, ${dims}` };
}
