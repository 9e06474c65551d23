// ModelRunner: the forward of one checkpoint, one decoder layer at a time. For each layer it
// opens a weight scope, loads that layer's tensors, builds the layer's ONNX graph (weights as
// graph inputs), runs it and closes the scope — so weights held at once are about one decoder
// layer, whatever the model size. Sessions are kept by graph (SessionCache): layers of the same
// shape share one, so session creation is paid once per distinct graph, not per layer.
//
// Where each part runs:
//   - embedding lookup: on the host (only the rows of the input tokens are read from disk);
//   - a dense decoder layer: one graph (attention + MLP, residuals included); where weights are
//     widened on the host (the CPU), four runs of three graphs instead — attention, gate and up,
//     down — each holding only its own float32 weights (runDenseMlpStages);
//   - an MoE layer: graph A (attention, post-attention norm, router logits) → routing on the
//     host (routing.ts) → one run per routed expert on its rows (a graph with a symbolic row
//     count, the same for every expert) → the combine graph (weighted sum over the top-k, shared
//     experts, residual); only the experts that receive tokens are loaded;
//   - final norm + lm_head: graphs over row chunks of lm_head (HEAD_CHUNK_BYTES each), so a
//     large vocabulary never becomes one float32 matrix.
//
// For verify, a layer can also export each linear's input and output (`capture`), and run
// captured activations of another model through this model's FP8 linears (`probes`); or a layer
// of both models runs in the same graphs, compared inside them (`runLayerPair`: a dense layer as
// one graph, an MoE layer of per-expert linears as its graph A, one graph per expert and the
// combine graph, each holding both models).

import { isFp8Module, loadExpert, runsAsExpertsOp, type ExpertWeights } from './experts.js';
import { isFp8Dtype, type Dtype } from '../../fp8/dtypes.js';
import { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import type { Value } from '../onnx/graph-builder.js';
import { SessionCache } from '../onnx/session-cache.js';
import { HostBufferPool } from './buffer-pool.js';
import { emitLogitComparison, type LogitChunkStats } from '../ops/logit-comparison.js';
import type { Device, HostTensor, OutputBuffer } from '../onnx/session.js';
import { modelSpecOf, type ModelSpec } from './config.js';
import { emitGqaAttention, emitMlaAttention, emitMlp, type AttentionContext, type BatchShape, type GqaWeights, type MlaWeights, type MlpWeights } from './layer-graphs.js';
import { layerPlan, type LayerPlan, type MlpNames, type MoePlan } from './layer-plan.js';
import { ForwardGraphError, ModelGraph, type BlockGemmForm, type WeightDecode } from './model-graph.js';
import { ropeTables, type RopeTableOptions, type RopeTables } from './rope.js';
import { groupByExpert, routeTokens, singleTokenGroups, type ExpertGroups, type TokenRouting } from './routing.js';
import { ModelWeights, WeightAccounting, type Fp8Linear, type LinearWeight, type StoredTensor, type WeightScope } from './weights.js';

/** lm_head rows per head graph: 256 MiB once widened to float32. */
export const HEAD_CHUNK_BYTES = 256 * 1024 * 1024;
/** Bytes per read of warmHeadPages: 16 pieces a row chunk of a 4096-wide BF16 lm_head. */
const HEAD_WARM_PIECE_BYTES = 8 * 1024 * 1024;

/**
 * Routed experts' bytes read ahead of the expert that runs (CUDA): enough reads at once to keep
 * the disk or page cache busy while each expert runs, without holding a whole MoE layer's experts
 * (a DeepSeek-V3 layer's are up to 22 GB in BF16).
 */
export const EXPERT_READ_WINDOW_BYTES = 1024 * 1024 * 1024;

export interface LinearCapture {
  /** `[rows, K]` activations that reached the linear. */
  readonly input: Float32Array;
  /** `[rows, N]` its output. */
  readonly output: Float32Array;
  readonly rows: number;
}

export type LayerCaptures = ReadonlyMap<string, LinearCapture>;

export interface LayerRunOptions {
  /** Export every linear's input and output. */
  readonly capture?: boolean;
  /** Captured inputs to run through this checkpoint's FP8 linears (module → capture). */
  readonly probes?: LayerCaptures;
  /** Replaces the layer's attention (generation's KV cache, cached-attention.ts). */
  readonly attention?: LayerAttentionHook;
  /**
   * Linears that are not part of the layer's forward, run on given inputs in the attention graph
   * (MLA's w_uk/w_uv, which only the absorbed path uses); outputs come back under `name`.
   */
  readonly extraProbes?: readonly ExtraProbe[];
}

/** A decoder layer's attention weights as loaded for its graph. */
export type LayerAttention = { kind: 'gqa'; w: GqaWeights; linears: LinearWeight[] } | { kind: 'mla'; w: MlaWeights; linears: LinearWeight[] };

/** Another attention for a layer: emitted into the layer graph, shown the graph's outputs after the run. */
export interface LayerAttentionHook {
  /** Attention output `[tokens, H]` of the normed hidden states. */
  emit(mg: ModelGraph, attention: LayerAttention, normed: Value): Value;
  collect(out: Record<string, HostTensor>): void;
}

export interface ExtraProbe {
  readonly name: string;
  readonly w: LinearWeight;
  /** `[rows, K]`. */
  readonly input: Float32Array;
  readonly rows: number;
}

export interface LayerResult {
  readonly hidden: Float32Array;
  readonly captures: Map<string, LinearCapture>;
  /** Module → output of this checkpoint's FP8 linear on the probe input. */
  readonly probeOutputs: Map<string, Float32Array>;
}

/** One row chunk of both models' lm_heads and final norms, read for ModelRunner.heads, in their scopes. */
interface SharedHeadChunk {
  readonly scope: WeightScope;
  readonly otherScope: WeightScope;
  readonly norm: StoredTensor;
  readonly w: LinearWeight;
  readonly otherNorm: StoredTensor;
  readonly ow: LinearWeight;
}

/** A layer's attention half as emitted into its graph (emitAttentionBlock). */
interface AttentionBlock {
  readonly h1: Value;
  readonly xn: Value;
  readonly attention: LayerAttention;
  readonly ffNorms: { readonly pre: StoredTensor; readonly post: StoredTensor } | undefined;
}

/** A linear's comparison sums from a paired layer: `[4, 1, groups]` float64 over its `rows` rows (ops/comparison-sums.ts). */
export interface ComparisonSums {
  readonly sums: Float64Array;
  readonly rows: number;
  readonly groups: number;
}

export interface LayerPairResult {
  /** Both hidden states, in the runners' pool: the caller gives them back (giveBack) once nothing reads them. */
  readonly hidden: Float32Array;
  readonly otherHidden: Float32Array;
  /** Module → its comparison sums. */
  readonly sums: Map<string, ComparisonSums>;
}

export interface RunnerOptions {
  readonly device?: Device;
  readonly intraOpThreads?: number;
  /** Shared between runners to measure the peak over both models of a verify. */
  readonly accounting?: WeightAccounting;
  /** Where weights are decoded to float32 (model-graph.ts); default: on the host for CPU, in the graph for CUDA. */
  readonly weightDecode?: WeightDecode;
  /** How FP8 linears' products are laid out (model-graph.ts BlockGemmForm); default: per-block with host decode, dequantized with graph decode. */
  readonly blockGemm?: BlockGemmForm;
  /**
   * Host buffers for weights, shared between runners whose layers have the same shapes (verify).
   * Given, weights are also read into them and reused once their layer has run, so nothing read
   * in a weight scope may be kept past it; absent, the runner pools only its decoded weights.
   */
  readonly buffers?: HostBufferPool;
  /** Round rotary inverse frequencies to BF16, as transformers does for an upcast BF16 model (rope.ts). */
  readonly bf16RopeFrequencies?: boolean;
  /** Read layer i+1's weights while layer i runs (weights.ts); default: on CUDA only. */
  readonly readAhead?: boolean;
  /** onnxruntime's CPU memory arena in this runner's sessions (session.ts); default on. */
  readonly cpuMemArena?: boolean;
  /** Routed experts' bytes read ahead of the running expert, with readAhead; default EXPERT_READ_WINDOW_BYTES. */
  readonly expertReadWindowBytes?: number;
  /** lm_head rows per head graph, as float32 bytes; default HEAD_CHUNK_BYTES. */
  readonly headChunkBytes?: number;
}

const PROJECTIONS = ['gate', 'up', 'down'] as const;

export class ModelRunner {
  private readonly ropeCache = new Map<string, RopeTables>();
  /** Sessions by graph; released by close(). */
  readonly sessions: SessionCache;
  private readonly buffers: HostBufferPool;
  private readonly ownsBuffers: boolean;
  /** Host-decoded weights kept across steps once keepWeightsResident() is on. */
  private decodedWeights: WeakMap<Uint8Array, Float32Array> | undefined;

  private constructor(
    readonly checkpoint: Checkpoint,
    readonly spec: ModelSpec,
    readonly weights: ModelWeights,
    private readonly options: RunnerOptions,
  ) {
    this.ownsBuffers = options.buffers === undefined;
    this.buffers = options.buffers ?? new HostBufferPool();
    // A staged dense layer (host decode) cycles through three graphs (attention, gate/up, down),
    // and each graph's session must survive until the next layer comes back to it. An MoE layer
    // adds its attention-and-router graph, its expert graphs (routed, routed and probed, probed
    // only) and the combine graph: all of them alternate in a model that interleaves dense and MoE
    // layers (Llama 4).
    const staged = (options.weightDecode ?? ((options.device ?? 'cpu') === 'cuda' ? 'graph' : 'host')) === 'host';
    this.sessions = new SessionCache(
      {
        device: options.device ?? 'cpu',
        ...(options.intraOpThreads === undefined ? {} : { intraOpThreads: options.intraOpThreads }),
        ...(options.cpuMemArena === undefined ? {} : { cpuMemArena: options.cpuMemArena }),
      },
      (staged ? 4 : 2) + (spec.routing === undefined ? 0 : 5),
    );
  }

  static async open(dir: string, options: RunnerOptions = {}): Promise<ModelRunner> {
    const ckpt = await Checkpoint.open(dir);
    try {
      const spec = modelSpecOf(ckpt.config, dir, (n) => ckpt.has(n));
      return new ModelRunner(ckpt, spec, new ModelWeights(ckpt, options.accounting, options.buffers, options.readAhead ?? (options.device ?? 'cpu') === 'cuda'), options);
    } catch (e) {
      await ckpt.close();
      throw e;
    }
  }

  get ropeOptions(): RopeTableOptions {
    return { bf16InvFreq: this.options.bf16RopeFrequencies === true };
  }

  get device(): Device {
    return this.options.device ?? 'cpu';
  }

  plan(layer: number): LayerPlan {
    return layerPlan(this.spec, this.weights, layer);
  }

  /**
   * Keeps every weight read from now on in memory, as stored and (when decoded on the host) as
   * float32, so that later forwards over the same layers neither read nor decode it again
   * (generation). Memory: the checkpoint, plus its float32 copy on the CPU. Not with shared buffers.
   */
  keepWeightsResident(): void {
    if (!this.ownsBuffers) throw new Error('resident weights cannot use a shared buffer pool');
    this.weights.keepResident();
    this.decodedWeights ??= new WeakMap();
  }

  /** Whether `module`'s weight is stored in FP8 (a quantized linear; per-expert names of stacked experts included). */
  isFp8Linear(module: string): boolean {
    return isFp8Module(this.checkpoint, module);
  }

  /** Gives hidden states a paired layer returned (LayerPairResult) back to the pool; nothing may read them afterwards. */
  giveBack(hidden: readonly Float32Array[]): void {
    this.buffers.give(hidden);
  }

  async close(): Promise<void> {
    try {
      await this.sessions.clear();
    } finally {
      if (this.ownsBuffers) this.buffers.clear();
      await this.checkpoint.close();
    }
  }

  /** Token embeddings `[ids.length, H]` (times Gemma's √hidden_size, in float32). */
  async embed(ids: ArrayLike<number>): Promise<Float32Array> {
    const rows = await this.weights.gatherRows(`${this.spec.names.decoder}.embed_tokens.weight`, ids);
    const scale = this.spec.gemma?.embedScale;
    if (scale !== undefined) for (let i = 0; i < rows.length; i++) rows[i] = Math.fround(rows[i]! * scale);
    return rows;
  }

  /** Logits `[B*T, vocab]` for the full forward. */
  async forward(ids: ArrayLike<number>, shape: BatchShape, onLayer?: (layer: number) => void): Promise<Float32Array> {
    let hidden = await this.embed(ids);
    for (let i = 0; i < this.spec.numLayers; i++) {
      onLayer?.(i);
      hidden = (await this.runLayer(i, hidden, shape)).hidden;
    }
    return this.head(hidden, shape.batch * shape.seq);
  }

  /** Rotary tables of a layer for `seq` positions: Gemma's sliding-window layers have their own theta. */
  layerRope(seq: number, layer: number): RopeTables {
    const local = this.spec.gemma !== undefined && this.spec.slidingWindow(layer) !== undefined;
    const key = `${local ? 'local' : 'global'}:${seq}`;
    let t = this.ropeCache.get(key);
    if (!t) {
      t = ropeTables(local ? this.spec.gemma!.localRope : this.spec.rope, seq, this.ropeOptions);
      this.ropeCache.set(key, t);
    }
    return t;
  }

  /**
   * Whether a dense layer runs as several graphs (attention, then each MLP linear): where weights
   * are widened to float32 on the host for one forward (the CPU), so that a layer's float32
   * weights are not all held at once. On CUDA the stored bits go over and one graph is fewer runs;
   * resident weights (generation) are held whole anyway.
   */
  private get stagedLayers(): boolean {
    return this.weightDecode === 'host' && this.decodedWeights === undefined;
  }

  private get weightDecode(): WeightDecode {
    return this.options.weightDecode ?? (this.device === 'cuda' ? 'graph' : 'host');
  }

  /** A graph for this runner's device: weights decoded on the host for the CPU, on the GPU for CUDA. */
  private graph(tapLinears: boolean): ModelGraph {
    return new ModelGraph(tapLinears, this.weightDecode, this.buffers, this.decodedWeights, this.options.blockGemm);
  }

  /**
   * A weight scope for a layer or a head chunk. Decoded on the host (and not kept resident), each
   * tensor is widened to float32 as it is read and its read buffer reused by the next one: the
   * layer's float32 weights are needed for its graph anyway, its stored bytes besides them are not
   * (peak memory of a CPU verify, bench/NOTES.md).
   */
  private layerScope(): WeightScope {
    return this.weightDecode === 'host' && this.decodedWeights === undefined ? this.weights.scope({ decodeInto: this.buffers }) : this.weights.scope();
  }

  private async run(mg: ModelGraph): Promise<Record<string, HostTensor>> {
    try {
      const out = await this.sessions.run(mg.toBytes(), mg.feeds, mg.outputBuffers);
      // Callers read an output from the buffer they gave for it; a session layer that returned its own array (a test's spy of SessionCache.run) is copied in.
      for (const [name, buffer] of Object.entries(mg.outputBuffers)) {
        const t = out[name];
        if (t !== undefined && t.data !== buffer.data) {
          buffer.data.set(f32(out, name));
          out[name] = { type: 'float32', data: buffer.data, dims: [...buffer.dims] };
        }
      }
      return out;
    } finally {
      this.buffers.give(mg.hostBuffers);
    }
  }

  async runLayer(index: number, hidden: Float32Array, shape: BatchShape, options: LayerRunOptions = {}): Promise<LayerResult> {
    const plan = this.plan(index);
    const scope = this.layerScope();
    const tokens = shape.batch * shape.seq;
    const h = this.spec.hiddenSize;
    const result: LayerResult = { hidden, captures: new Map(), probeOutputs: new Map() };
    try {
      // Graph A: attention block (and, for a dense layer, the MLP).
      const a = this.graph(options.capture === true);
      const x = a.input('hidden', hidden, [tokens, h]);
      const block = await this.emitAttentionBlock(a, scope, plan, index, x, shape, options.attention);
      const { h1, xn, attention, ffNorms } = block;
      const mlp = plan.mlp;
      if (mlp.kind === 'dense' && this.stagedLayers) {
        // Graph A holds the attention only; its weights go back before the MLP's are read.
        a.output(h1, 'h1');
        a.output(xn, 'xn');
        this.addLinearProbes(a, options.probes, attention.linears);
        const out = await this.run(a);
        options.attention?.collect(out);
        collect(out, a, result);
        scope.close();
        const hidden = await this.runDenseMlpStages(mlp, f32(out, 'h1'), f32(out, 'xn'), tokens, plan, options, result);
        await this.runExtraProbes(options.extraProbes, result);
        return { ...result, hidden };
      }
      if (mlp.kind === 'dense') {
        const dense = await this.emitDenseMlp(a, scope, mlp, block);
        a.output(dense.out, 'out');
        this.addLinearProbes(a, options.probes, dense.linears);
        for (const p of options.extraProbes ?? []) a.probeLinear(p.name, p.w, p.input, p.rows);
        const out = await this.run(a);
        options.attention?.collect(out);
        collect(out, a, result);
        return { ...result, hidden: f32(out, 'out') };
      }
      if (ffNorms) throw new ForwardGraphError(`${this.checkpoint.dir}: layer ${index} has feed-forward norms and an MoE block; the forward has no such layer`);
      const router = await scope.linear(mlp.router);
      a.output(h1, 'h1');
      a.output(xn, 'xn');
      a.output(a.linear(router, xn, false), 'router_logits');
      this.addLinearProbes(a, options.probes, attention.linears);
      for (const p of options.extraProbes ?? []) a.probeLinear(p.name, p.w, p.input, p.rows);
      const outA = await this.run(a);
      options.attention?.collect(outA);
      collect(outA, a, result);

      // Routing on the host, then the routed experts' runs and the combine graph (runMoe).
      const scoreBias = mlp.scoreBias === undefined ? undefined : await scope.vector(mlp.scoreBias);
      const routing = routeTokens(f32(outA, 'router_logits'), mlp.experts.length, this.spec.routing!, scoreBias);
      const outB = await this.runMoe(scope, mlp, routing, f32(outA, 'h1'), f32(outA, 'xn'), tokens, options, result);
      return { ...result, hidden: outB };
    } finally {
      scope.close();
    }
  }

  /**
   * The attention half of layer `index` on `x` (`[tokens, H]`), emitted into `a` with its weights
   * loaded into `scope`: the residual stream after attention (h1), the normed input of the MLP
   * (xn), the attention's linears and Gemma 3's feed-forward norms.
   */
  private async emitAttentionBlock(
    a: ModelGraph,
    scope: WeightScope,
    plan: LayerPlan,
    index: number,
    x: Value,
    shape: BatchShape,
    hook: LayerAttentionHook | undefined,
  ): Promise<AttentionBlock> {
    const ctx: AttentionContext = { spec: this.spec, shape, rope: this.layerRope(shape.seq, index), window: this.spec.slidingWindow(index) };
    const attention = await this.loadAttention(scope, plan);
    const inputNorm = await scope.tensor(plan.inputNorm);
    const postNorm = await scope.tensor(plan.postAttentionNorm);
    const eps = this.spec.rmsNormEps;
    const offset = this.spec.gemma?.normOffset ?? 0;
    const normed = a.rmsNorm(x, inputNorm, eps, offset);
    const attnOut = hook
      ? hook.emit(a, attention, normed)
      : attention.kind === 'gqa'
        ? emitGqaAttention(a, ctx, attention.w, normed)
        : emitMlaAttention(a, ctx, attention.w, normed);
    // Gemma 3 (feedforwardNorms): norm → attention → norm → add; norm → MLP → norm → add.
    const ff = plan.feedforwardNorms;
    const ffNorms = ff === undefined ? undefined : { pre: await scope.tensor(ff.pre), post: await scope.tensor(ff.post) };
    const h1 = a.add(x, ffNorms ? a.rmsNorm(attnOut, postNorm, eps, offset) : attnOut);
    const xn = a.rmsNorm(h1, ffNorms ? ffNorms.pre : postNorm, eps, offset);
    return { h1, xn, attention, ffNorms };
  }

  /** A dense layer's MLP and residual after its attention block, in the same graph: the layer's output and all its linears. */
  private async emitDenseMlp(a: ModelGraph, scope: WeightScope, mlp: MlpNames, block: AttentionBlock): Promise<{ out: Value; linears: LinearWeight[] }> {
    const w = await this.loadMlp(scope, mlp);
    const mlpOut = emitMlp(a, this.spec, w, block.xn);
    const post = block.ffNorms ? a.rmsNorm(mlpOut, block.ffNorms.post, this.spec.rmsNormEps, this.spec.gemma?.normOffset ?? 0) : mlpOut;
    return { out: a.add(block.h1, post), linears: [...block.attention.linears, w.gate, w.up, w.down] };
  }

  /**
   * Whether runLayerPair can hold layer `index`: a dense layer that runs as one graph here, or an
   * MoE layer whose experts are per-expert linears (stacked ones are read by rows, and their
   * probes are fused projections compared by columns; those layers run as before).
   */
  canPairLayer(index: number): boolean {
    if (this.stagedLayers) return false;
    const plan = this.plan(index);
    return plan.mlp.kind === 'dense' || (plan.mlp.stacked === undefined && plan.feedforwardNorms === undefined);
  }

  /**
   * Verify's paired layer: this model's layer `index` (the original) and `other`'s (the quantized
   * one) in one graph (a dense layer; an MoE layer: see below). Each module of `compare` runs through `other`'s linear on the
   * input that reached this model's linear of that name, and is compared there with this model's
   * output (ops/comparison-sums.ts, groups of the given number of columns). Only both hidden
   * states and those sums leave the device: on CUDA, bringing every linear's input and output
   * back to the host and the captured inputs over again was ~3 s of a 12.6 s 512-token verify of
   * an 8B-shaped checkpoint by the rates bench/NOTES.md measured. Both layers' weights are held
   * until the run ends (and both models' next layer, where they are read ahead).
   *
   * An MoE layer runs paired as runMoeLayerPair says. It alone can decline, after both routers have
   * run: undefined when `expertsChecked` refuses the experts the original routed to (their floor
   * is not the stored linear); nothing of the layer is kept, and it runs again as before.
   */
  async runLayerPair(
    other: ModelRunner,
    index: number,
    hidden: Float32Array,
    otherHidden: Float32Array,
    shape: BatchShape,
    compare: ReadonlyMap<string, number>,
    /** The other model's FP8 linears re-quantized in the graph from this model's weights (ModelGraph.requantizeFrom). */
    requantize?: ReadonlySet<string>,
    /** MoE: whether the other model's FP8 linears of the experts this model routed to can be compared in the graph. */
    expertsChecked?: (modules: readonly string[]) => Promise<boolean>,
  ): Promise<LayerPairResult | undefined> {
    const mlp = this.plan(index).mlp;
    const otherMlp = other.plan(index).mlp;
    if (!this.canPairLayer(index) || !other.canPairLayer(index) || mlp.kind !== otherMlp.kind) {
      throw new ForwardGraphError(`layer ${index} cannot run as a pair: both models must run it as one dense graph, or as MoE layers of per-expert linears`);
    }
    if (mlp.kind === 'moe' && otherMlp.kind === 'moe') return this.runMoeLayerPair(other, index, hidden, otherHidden, shape, compare, requantize, expertsChecked);
    if (mlp.kind !== 'dense' || otherMlp.kind !== 'dense') throw new ForwardGraphError(`layer ${index}: not a dense layer`);
    const tokens = shape.batch * shape.seq;
    const h = this.spec.hiddenSize;
    const scope = this.layerScope();
    const otherScope = other.layerScope();
    try {
      const g = this.graph(false);
      g.switchModel('original', 'values');
      const x = g.input('hidden', hidden, [tokens, h]);
      const mine = await this.emitDenseMlp(g, scope, mlp, await this.emitAttentionBlock(g, scope, this.plan(index), index, x, shape, undefined));
      switchToOther(g, requantize);
      const y = g.input('hidden_other', otherHidden, [tokens, h]);
      const theirs = await other.emitDenseMlp(g, otherScope, otherMlp, await other.emitAttentionBlock(g, otherScope, other.plan(index), index, y, shape, undefined));
      return await this.runPairOutputs(g, mine.out, theirs.out, theirs.linears, compare, new Map());
    } finally {
      scope.close();
      otherScope.close();
    }
  }

  /**
   * Verify's paired MoE layer (runLayerPair), as runLayer's MoE path runs, both models at each step:
   * graph A with both attention blocks and routers (the attention's linears compared in it); both
   * routings on the host; then per expert that either model routed a token to, one graph with this
   * model's expert on its rows, the other's on its own rows, and the other's FP8 projections on the
   * inputs that reached this model's (compared there with its outputs); then one combine graph for
   * both (shared experts compared in it). So no expert's activations cross to the host and back:
   * on CUDA, 2 GB of a 512-token verify of a 6-layer DeepSeek-V3-shaped checkpoint (bench/NOTES.md).
   * Each expert's weights are held only while its graph runs, as runExperts holds them.
   */
  private async runMoeLayerPair(
    other: ModelRunner,
    index: number,
    hidden: Float32Array,
    otherHidden: Float32Array,
    shape: BatchShape,
    compare: ReadonlyMap<string, number>,
    requantize: ReadonlySet<string> | undefined,
    expertsChecked: ((modules: readonly string[]) => Promise<boolean>) | undefined,
  ): Promise<LayerPairResult | undefined> {
    const plan = this.plan(index);
    const otherPlan = other.plan(index);
    const mlp = plan.mlp as MoePlan;
    const otherMlp = otherPlan.mlp as MoePlan;
    const tokens = shape.batch * shape.seq;
    const h = this.spec.hiddenSize;
    const sums = new Map<string, ComparisonSums>();
    const scope = this.layerScope();
    const otherScope = other.layerScope();
    const held: Float32Array[] = [];
    try {
      const a = this.graph(false);
      a.switchModel('original', 'values');
      const mine = await this.emitAttentionBlock(a, scope, plan, index, a.input('hidden', hidden, [tokens, h]), shape, undefined);
      // Residuals and normed inputs of both into pooled buffers, given back when the layer ends.
      const pooled = (v: Value, name: string): void => {
        const data = this.buffers.float32(tokens * h);
        held.push(data);
        a.output(v, name, { data, dims: [tokens, h] });
      };
      pooled(mine.h1, 'h1');
      pooled(mine.xn, 'xn');
      a.output(a.linear(await scope.linear(mlp.router), mine.xn, false), 'router_logits');
      switchToOther(a, requantize);
      const theirs = await other.emitAttentionBlock(a, otherScope, otherPlan, index, a.input('hidden_other', otherHidden, [tokens, h]), shape, undefined);
      pooled(theirs.h1, 'h1_other');
      pooled(theirs.xn, 'xn_other');
      a.output(a.linear(await otherScope.linear(otherMlp.router), theirs.xn, false), 'router_logits_other');
      compareWithTaps(a, theirs.attention.linears, compare);
      const outA = await this.run(a);
      collectSums(outA, a, sums);

      const routing = routeTokens(f32(outA, 'router_logits'), mlp.experts.length, this.spec.routing!, mlp.scoreBias === undefined ? undefined : await scope.vector(mlp.scoreBias));
      const otherRouting = routeTokens(
        f32(outA, 'router_logits_other'),
        otherMlp.experts.length,
        other.spec.routing!,
        otherMlp.scoreBias === undefined ? undefined : await otherScope.vector(otherMlp.scoreBias),
      );
      const mineSide = expertSide(routing, f32(outA, 'xn'), tokens, h, this.buffers);
      const theirSide = expertSide(otherRouting, f32(outA, 'xn_other'), tokens, h, this.buffers);
      try {
        try {
          const reached = mineSide.groups.experts.flatMap((e) => PROJECTIONS.map((p) => otherMlp.experts[e]![p])).filter((m) => compare.has(m));
          if (expertsChecked !== undefined && !(await expertsChecked(reached))) return undefined;
          await this.runExpertPairs(other, mlp, otherMlp, mineSide, theirSide, compare, requantize, sums);
        } finally {
          mineSide.release();
          theirSide.release();
        }

        const b = this.graph(false);
        b.switchModel('original', 'values');
        const out = await this.emitMoeCombine(b, scope, mlp, routing, f32(outA, 'h1'), f32(outA, 'xn'), mineSide, tokens, '');
        switchToOther(b, requantize);
        const otherOut = await other.emitMoeCombine(b, otherScope, otherMlp, otherRouting, f32(outA, 'h1_other'), f32(outA, 'xn_other'), theirSide, tokens, '_other');
        return await this.runPairOutputs(b, out.out, otherOut.out, otherOut.linears, compare, sums);
      } finally {
        // Not through the combine graph's hostBuffers: a declined layer never builds it, and one that
        // fails before its run would not give them back.
        this.buffers.give([mineSide.outputs, theirSide.outputs]);
      }
    } finally {
      this.buffers.give(held);
      scope.close();
      otherScope.close();
    }
  }

  /**
   * The end of a paired graph: the other model's `linears` compared with this model's taps, both
   * hidden states as outputs; runs it and adds its comparison sums to `sums`.
   */
  private async runPairOutputs(
    g: ModelGraph,
    out: Value,
    otherOut: Value,
    linears: readonly LinearWeight[],
    compare: ReadonlyMap<string, number>,
    sums: Map<string, ComparisonSums>,
  ): Promise<LayerPairResult> {
    compareWithTaps(g, linears, compare);
    // Both hidden states into pooled buffers; verify gives them back once the next layer has run (giveBack).
    const dims = g.dims(out);
    const size = dims.reduce((a, b) => a * b, 1);
    const buffers = [this.buffers.float32(size), this.buffers.float32(size)] as const;
    try {
      g.output(out, 'out', { data: buffers[0], dims });
      g.output(otherOut, 'out_other', { data: buffers[1], dims });
      const result = await this.run(g);
      collectSums(result, g, sums);
      return { hidden: buffers[0], otherHidden: buffers[1], sums };
    } catch (e) {
      this.buffers.give(buffers);
      throw e;
    }
  }

  /**
   * The experts of a paired MoE layer, one graph each, in expert order (runMoeLayerPair): this
   * model's expert on its rows where it routed any, the other's on its rows where it did, and the
   * other's FP8 projections compared with this model's taps. Each side's outputs go into its slice
   * of that side's `outputs`, as runExperts writes them.
   */
  private async runExpertPairs(
    other: ModelRunner,
    mlp: MoePlan,
    otherMlp: MoePlan,
    mine: ExpertSide,
    theirs: ExpertSide,
    compare: ReadonlyMap<string, number>,
    requantize: ReadonlySet<string> | undefined,
    sums: Map<string, ComparisonSums>,
  ): Promise<void> {
    const single = mine.groups.single === true;
    const needed = [...new Set([...mine.groups.experts, ...theirs.groups.experts])].sort((x, y) => x - y);
    const window = this.options.expertReadWindowBytes ?? EXPERT_READ_WINDOW_BYTES;
    const mineLinears = needed.filter((e) => mine.groupOf.has(e)).flatMap((e) => PROJECTIONS.map((p) => mlp.experts[e]![p]));
    const theirLinears = needed.flatMap((e) => PROJECTIONS.map((p) => otherMlp.experts[e]![p]));
    let mineRead = 0;
    for (const [i, e] of needed.entries()) {
      // A window of each model's next experts is read while this one runs (as runExperts reads its own).
      this.weights.prefetchLinears(mineLinears.slice(mineRead * PROJECTIONS.length), window);
      other.weights.prefetchLinears(theirLinears.slice(i * PROJECTIONS.length), window);
      const scope = this.layerScope();
      const otherScope = other.layerScope();
      try {
        const g = this.graph(false);
        g.switchModel('original', 'values');
        const rows = mine.rowsOf(e);
        if (rows !== undefined) {
          mineRead++;
          const w = await loadExpert(scope, mlp, e);
          g.output(this.emitExpert(g, w, mine.input(g, 'x', 'rows', rows, single), single), 'y', mine.output(rows));
        }
        // Re-quantized only where the original routed to it: its floor checks were awaited (expertsChecked), and its weights are in the graph.
        switchToOther(g, rows === undefined ? undefined : requantize);
        const w = await loadExpert(otherScope, otherMlp, e);
        const otherRows = theirs.rowsOf(e);
        if (otherRows !== undefined) g.output(other.emitExpert(g, w, theirs.input(g, 'x_other', 'rows_other', otherRows, single), single), 'y_other', theirs.output(otherRows));
        const expertsOp = runsAsExpertsOp(w);
        for (const p of PROJECTIONS) {
          const module = otherMlp.experts[e]![p];
          const columns = compare.get(module);
          const tap = g.tapValues.get(module);
          const l = w.layout === 'separate' ? w[p] : undefined;
          if (columns !== undefined && tap !== undefined && l?.kind === 'fp8')
            g.compareInGraph(module, tap.output, emitExpertProjection(g, l, tap.input, expertsOp, single), columns, rows![1]);
        }
        const out = await this.run(g);
        collectSums(out, g, sums);
      } finally {
        scope.close();
        otherScope.close();
      }
    }
  }

  /**
   * A dense MLP as three graphs, one linear each (gate, up, then down with the activation, the
   * Gemma post-norm and the residual), each in a weight scope of its own closed once it has run:
   * on the CPU the float32 weights held at once are one MLP matrix, not the layer's
   * (bench/NOTES.md, verify memory). Same ops on the same values as the one-graph layer.
   */
  private async runDenseMlpStages(
    mlp: MlpNames,
    h1: Float32Array,
    xn: Float32Array,
    tokens: number,
    plan: LayerPlan,
    options: LayerRunOptions,
    result: LayerResult,
  ): Promise<Float32Array> {
    const h = this.spec.hiddenSize;
    const stage = async (build: (g: ModelGraph, scope: WeightScope) => Promise<LinearWeight>): Promise<Record<string, HostTensor>> => {
      const scope = this.layerScope();
      try {
        const g = this.graph(options.capture === true);
        const w = await build(g, scope);
        this.addLinearProbes(g, options.probes, [w]);
        const out = await this.run(g);
        collect(out, g, result);
        return out;
      } finally {
        scope.close();
      }
    };
    const projection = async (module: string): Promise<Float32Array> => {
      const out = await stage(async (g, scope) => {
        const w = await scope.linear(module);
        g.output(g.linear(w, g.input('xn', xn, [tokens, h])), 'y');
        return w;
      });
      return f32(out, 'y');
    };
    const gate = await projection(mlp.gate);
    const up = await projection(mlp.up);
    const out = await stage(async (g, scope) => {
      const w = await scope.linear(mlp.down);
      const inter = w.weight.shape[1]!;
      const post = plan.feedforwardNorms === undefined ? undefined : await scope.tensor(plan.feedforwardNorms.post);
      const act = g.mul(g.act(g.input('gate', gate, [tokens, inter]), this.spec.hiddenAct), g.input('up', up, [tokens, inter]));
      const y = g.linear(w, act);
      const offset = this.spec.gemma?.normOffset ?? 0;
      g.output(g.add(g.input('h1', h1, [tokens, h]), post ? g.rmsNorm(y, post, this.spec.rmsNormEps, offset) : y), 'out');
      return w;
    });
    return f32(out, 'out');
  }

  /** Extra probes of a staged layer, each in a graph of its own: their weights are not held together either. */
  private async runExtraProbes(probes: readonly ExtraProbe[] | undefined, result: LayerResult): Promise<void> {
    for (const p of probes ?? []) {
      const g = this.graph(false);
      g.probeLinear(p.name, p.w, p.input, p.rows);
      const out = await this.run(g);
      collect(out, g, result);
    }
  }

  private async loadAttention(scope: WeightScope, plan: LayerPlan): Promise<LayerAttention> {
    const p = plan.attention;
    if (p.kind === 'gqa') {
      const w: GqaWeights = {
        q: await scope.linear(p.q),
        k: await scope.linear(p.k),
        v: await scope.linear(p.v),
        o: await scope.linear(p.o),
        qNorm: p.qNorm === undefined ? undefined : await scope.tensor(p.qNorm),
        kNorm: p.kNorm === undefined ? undefined : await scope.tensor(p.kNorm),
        sinks: p.sinks === undefined ? undefined : await scope.tensor(p.sinks),
      };
      return { kind: 'gqa', w, linears: [w.q, w.k, w.v, w.o] };
    }
    const opt = async (m: string | undefined): Promise<LinearWeight | undefined> => (m === undefined ? undefined : scope.linear(m));
    const w: MlaWeights = {
      q: await opt(p.q),
      qA: await opt(p.qA),
      qANorm: p.qANorm === undefined ? undefined : await scope.tensor(p.qANorm),
      qB: await opt(p.qB),
      kvA: await scope.linear(p.kvA),
      kvANorm: await scope.tensor(p.kvANorm),
      kvB: await scope.linear(p.kvB),
      o: await scope.linear(p.o),
    };
    const linears = [w.q, w.qA, w.qB, w.kvA, w.kvB, w.o].filter((l): l is LinearWeight => l !== undefined);
    return { kind: 'mla', w, linears };
  }

  private async loadMlp(scope: WeightScope, names: MlpNames): Promise<MlpWeights> {
    return { gate: await scope.linear(names.gate), up: await scope.linear(names.up), down: await scope.linear(names.down) };
  }

  /** Probe inputs for the non-expert linears among `linears` that are FP8 here. */
  private addLinearProbes(mg: ModelGraph, probes: LayerCaptures | undefined, linears: readonly LinearWeight[]): void {
    if (!probes) return;
    for (const w of linears) {
      const c = probes.get(w.module);
      if (c && w.kind === 'fp8') mg.probeLinear(w.module, w, c.input, c.rows);
    }
  }

  /**
   * Graph B of an MoE layer, as several runs: each routed expert on its own rows (emitExpert), in a
   * graph whose row count is symbolic — so every expert of every MoE layer runs in one session,
   * where a graph holding the layer's routing needed a new session per layer — then the combine
   * graph (outputs weighted and summed over each token's top-k, shared experts, residual), whose
   * shapes are the same in every MoE layer.
   */
  private async runMoe(
    scope: WeightScope,
    mlp: MoePlan,
    routing: TokenRouting,
    h1: Float32Array,
    xn: Float32Array,
    tokens: number,
    options: LayerRunOptions,
    result: LayerResult,
  ): Promise<Float32Array> {
    const side = expertSide(routing, xn, tokens, this.spec.hiddenSize, this.buffers);

    // Experts to load: the routed ones, and those the probes name (FP8 here).
    const probeExperts = new Set<number>();
    if (options.probes) {
      mlp.experts.forEach((names, e) => {
        if (PROJECTIONS.some((p) => options.probes!.has(names[p]) && this.isFp8Linear(names[p]))) probeExperts.add(e);
      });
    }
    const needed = [...new Set([...side.groups.experts, ...probeExperts])].sort((x, y) => x - y);

    // The routed outputs are given back once the combine graph has run, or the layer has failed before it.
    try {
      try {
        await this.runExperts(mlp, needed, side, options, result);
      } finally {
        side.release();
      }

      const b = this.graph(options.capture === true);
      const combined = await this.emitMoeCombine(b, scope, mlp, routing, h1, xn, side, tokens, '');
      this.addLinearProbes(b, options.probes, combined.linears);
      b.output(combined.out, 'out');
      const out = await this.run(b);
      collect(out, b, result);
      return f32(out, 'out');
    } finally {
      this.buffers.give([side.outputs]);
    }
  }

  /**
   * The combine of an MoE layer, emitted into `b`: the routed experts' outputs (`side.outputs`, in
   * sorted-row order) gathered to their assignments `[T, k, H]`, weighted and summed over each
   * token's top-k, the shared experts (and their gate) on `xn`, the residual `h1`. Its inputs are
   * named with `suffix` (a paired layer holds two). The gather on the device replaces placing each
   * expert's rows at their assignments on the host: the same values, moved by the device.
   */
  private async emitMoeCombine(
    b: ModelGraph,
    scope: WeightScope,
    mlp: MoePlan,
    routing: TokenRouting,
    h1: Float32Array,
    xn: Float32Array,
    side: ExpertSide,
    tokens: number,
    suffix: string,
  ): Promise<{ out: Value; linears: LinearWeight[] }> {
    const h = this.spec.hiddenSize;
    const k = routing.topK;
    const shared = mlp.shared ? await this.loadMlp(scope, mlp.shared) : undefined;
    const sharedGate = mlp.sharedGate ? await scope.linear(mlp.sharedGate) : undefined;
    const h1v = b.input(`h1${suffix}`, h1, [tokens, h]);
    const rows = side.groups.rows;
    const routed = b.reshape(b.gatherRows(b.input(`experts${suffix}`, side.outputs, [rows, h]), side.groups.assignmentRow), [tokens, k, h]);
    // The k weighted rows of a token are added along the last axis, k terms per output, not over
    // the middle axis of [tokens, k, H]: that was the MoE graphs' one reduction across rows, and a
    // DeepSeek-shaped verify on an H200 once gave other figures from one run to the next
    // (bench/NOTES.md, fourth round); whether this was the cause is not proven.
    let moe = b.reduceSum(b.transpose(b.mul(routed, b.constF32(routing.weights, [tokens, k, 1])), [0, 2, 1]), 2);
    if (shared) {
      const xv = b.input(`xn${suffix}`, xn, [tokens, h]);
      let s = emitMlp(b, this.spec, shared, xv);
      if (sharedGate) s = b.mul(b.sigmoid(b.linear(sharedGate, xv, false)), s);
      moe = b.add(moe, s);
    }
    return { out: b.add(h1v, moe), linears: shared ? [shared.gate, shared.up, shared.down] : [] };
  }

  /**
   * The experts an MoE layer needs, one run each, in expert order: a routed expert on its group of
   * `side`'s rows (a single token: the token itself), its output rows written into its slice of
   * `side.outputs` (the combine gathers them to their assignments); and each expert's probes (verify).
   */
  private async runExperts(mlp: MoePlan, needed: readonly number[], side: ExpertSide, options: LayerRunOptions, result: LayerResult): Promise<void> {
    const single = side.groups.single === true;
    const linears = needed.flatMap((e) => PROJECTIONS.map((p) => mlp.experts[e]![p]));
    for (const [i, e] of needed.entries()) {
      // The reads of this expert and the next ones, EXPERT_READ_WINDOW_BYTES of them, are in flight
      // (where the runner reads ahead; stacked experts are row reads of one tensor, not prefetched).
      if (!mlp.stacked) this.weights.prefetchLinears(linears.slice(i * PROJECTIONS.length), this.options.expertReadWindowBytes ?? EXPERT_READ_WINDOW_BYTES);
      // Each expert's weights only while it runs (a scope of its own): the layer holds one expert's
      // weights at a time beside the read-ahead, not every routed expert's — on the CPU, widened to
      // float32, a DeepSeek-V3 layer's 256 experts would be 45 GB.
      const scope = this.layerScope();
      try {
        const w = await loadExpert(scope, mlp, e);
        const rows = side.rowsOf(e);
        const g = this.graph(options.capture === true);
        if (rows !== undefined) g.output(this.emitExpert(g, w, side.input(g, 'x', 'rows', rows, single), single), 'y', side.output(rows));
        if (options.probes) this.addExpertProbes(g, w, options.probes, single);
        const out = await this.run(g);
        collect(out, g, result);
      } finally {
        scope.close();
      }
    }
  }

  /**
   * One routed expert on its rows `x`, `[rows, H] → [rows, H]`. An all-FP8 expert runs as MLC LLM's
   * BlockScaleQuantizeMixtralExperts runs each expert: the GEMM for a group of rows (one row
   * included), the GEMV for a single token; any other expert runs its linears. Either way taps
   * export each projection under the per-expert module names, so an FP8 original's experts are
   * compared like any other linear.
   */
  private emitExpert(b: ModelGraph, w: ExpertWeights, x: Value, single: boolean): Value {
    const act = (g: Value, u: Value): Value => b.mul(b.act(g, this.spec.hiddenAct), u);
    const withBias = (v: Value, bias: StoredTensor | undefined): Value => (bias ? b.add(v, b.stored(bias)) : v);
    const expertsOp = runsAsExpertsOp(w);
    const project = (l: LinearWeight, input: Value, tapAs: string | false): Value => {
      const y = emitExpertProjection(b, l, input, expertsOp, single);
      if (b.tapLinears && tapAs !== false) b.tap(tapAs, input, y);
      return y;
    };
    const gptOss = this.spec.gptOssExperts;
    if (w.layout === 'fused' && gptOss) {
      // gpt-oss: one gate_up linear per expert (compared as such); its biases come after the linears (the experts op has none).
      const gu = withBias(project(w.gateUp, x, w.names.gate), w.gptOss?.gateUpBias);
      return withBias(project(w.down, emitGptOssGlu(b, gu, w.intermediate, gptOss), w.names.down), w.gptOss?.downBias);
    }
    if (w.layout === 'fused') {
      const gu = project(w.gateUp, x, false);
      const g = b.slice(gu, -1, 0, w.intermediate);
      const u = b.slice(gu, -1, w.intermediate, 2 * w.intermediate);
      if (b.tapLinears) {
        b.tap(w.names.gate, x, g);
        b.tap(w.names.up, x, u);
      }
      return project(w.down, act(g, u), w.names.down);
    }
    return project(w.down, act(project(w.gate, x, w.names.gate), project(w.up, x, w.names.up)), w.names.down);
  }

  /**
   * Captured inputs of one expert's FP8 linears through this checkpoint's expert, each projection
   * as emitExpert runs it (the experts op for an all-FP8 expert, else the linear), the rows
   * symbolic as the forward's are. Stacked experts run gate and up as one fused projection on the
   * gate's captured input; a single token's gate and up take the token once (`[1, K]`).
   */
  private addExpertProbes(b: ModelGraph, w: ExpertWeights, probes: LayerCaptures, single: boolean): void {
    const expertsOp = runsAsExpertsOp(w);
    const probe = (l: LinearWeight, module: string, outputs: readonly { readonly module: string; readonly cols?: readonly [number, number] }[]): void => {
      const capture = probes.get(module);
      if (capture === undefined || l.kind !== 'fp8') return;
      const cols = l.weight.shape[1]!;
      const x = single ? b.probeInput(capture.input, [1, cols]) : b.probeInput(capture.input, [capture.rows, cols], true);
      const name = b.export(emitExpertProjection(b, l, x, expertsOp, single), 'probe_out');
      for (const o of outputs) b.probes.set(o.module, { output: name, ...(o.cols ? { cols: o.cols } : {}) });
    };
    if (w.layout === 'fused' && w.gptOss) {
      // gpt-oss: gate_up is one linear under one name (gate and up interleaved in its output).
      probe(w.gateUp, w.names.gate, [{ module: w.names.gate }]);
    } else if (w.layout === 'fused') {
      const i = w.intermediate;
      probe(w.gateUp, probes.has(w.names.gate) ? w.names.gate : w.names.up, [
        { module: w.names.gate, cols: [0, i] },
        { module: w.names.up, cols: [i, 2 * i] },
      ]);
    } else {
      probe(w.gate, w.names.gate, [{ module: w.names.gate }]);
      probe(w.up, w.names.up, [{ module: w.names.up }]);
    }
    probe(w.down, w.names.down, [{ module: w.names.down }]);
  }

  /** The lm_head module (or the tied embedding) and its weight's info. */
  private headWeight(): { module: string; dtype: string; shape: readonly number[] } {
    const names = this.spec.names;
    const module = this.weights.hasLinear(names.lmHead) ? names.lmHead : this.spec.tieWordEmbeddings ? `${names.decoder}.embed_tokens` : undefined;
    if (module === undefined) {
      throw new ForwardGraphError(`${this.checkpoint.dir}: no ${names.lmHead}.weight and tie_word_embeddings is false`);
    }
    const info = this.checkpoint.info(`${module}.weight`);
    // The logits' width is config.json's vocab_size everywhere after the head (verify's comparison,
    // perplexity, the logits file): a head of another height is a checkpoint at odds with its config.
    if (info.shape.length !== 2 || info.shape[0] !== this.spec.vocabSize) {
      throw new ForwardGraphError(
        `${this.checkpoint.dir}: ${module}.weight is [${info.shape.join(', ')}] but config.json says vocab_size ${this.spec.vocabSize}: the config and the weights disagree; fix config.json (or the weights) so that the head has vocab_size rows`,
      );
    }
    return { module, dtype: info.dtype, shape: info.shape };
  }

  /**
   * Reads lm_head's bytes (and its scale's) through one small buffer, a piece at a time, until
   * stopped: nothing is kept but what the page cache keeps, so that the head phase later reads it
   * from memory. On the CPU, where nothing is read ahead, a cold lm_head was read only in the head
   * phase, the cores idle (bench/NOTES.md), while the layers before it left the disk mostly idle.
   * One read in flight at a time, so the layers' own reads are not held up.
   */
  warmHeadPages(): { stop(): Promise<void> } {
    let stopped = false;
    const run = async (): Promise<void> => {
      // A model without a head throws here, not to verify's layer loop: the head phase names it,
      // and the other model's warmer, already started, is still stopped.
      const head = this.headWeight();
      const names = [`${head.module}.weight`, `${head.module}.weight_scale_inv`, `${head.module}.weight_scale`].filter((n) => this.checkpoint.has(n));
      const piece = new Uint8Array(HEAD_WARM_PIECE_BYTES);
      for (const name of names) {
        const info = this.checkpoint.info(name);
        const rows = info.shape[0] ?? 1;
        const rowBytes = rows === 0 ? 0 : info.byteLength / rows;
        const per = Math.max(1, Math.floor(piece.byteLength / Math.max(1, rowBytes)));
        for (let r = 0; r < rows && !stopped; r += per) {
          const count = Math.min(per, rows - r);
          await this.checkpoint.readRows(name, r, count, count * rowBytes <= piece.byteLength ? piece : undefined);
        }
      }
    };
    // A failed read only means the head phase reads from disk: it reports its own errors then.
    const done = run().catch(() => undefined);
    return {
      stop: async () => {
        stopped = true;
        await done;
      },
    };
  }

  /** The stored tensors the head reads: lm_head's (or the tied embedding's) weight and the final norm. */
  headTensorNames(): { readonly weight: string; readonly norm: string } {
    return { weight: `${this.headWeight().module}.weight`, norm: this.headNormName() };
  }

  /** Final norm and lm_head, in row chunks: logits `[tokens, vocab]`. */
  async head(hidden: Float32Array, tokens: number): Promise<Float32Array> {
    return (await this.heads(hidden, tokens))[0];
  }

  /**
   * Final norm and lm_head of this model on `hidden` and, with `other`, of that model on its own
   * hidden states: logits `[tokens, vocab]` each. Where a row chunk of both heads (and both final
   * norms) has the same stored bytes — a conversion keeps lm_head as it was — the chunk is widened
   * once and both models' rows go through it in one graph (two branches, each the graph the other
   * model would run alone), instead of reading and widening the same gigabyte twice.
   * `allocateLogits`: where the logits go (verify's metrics pool gives shared memory, which its
   * workers read without a copy, and whose pages they touch first; `ready` is awaited before the
   * first chunk is placed). `other.sameStoredBytes`: whether both heads' stored tensors (headTensorNames) hold
   * the same bytes, where that is known already (verify asks a worker thread); else each chunk's
   * bytes are compared here.
   */
  async heads(
    hidden: Float32Array,
    tokens: number,
    other?: { readonly runner: ModelRunner; readonly hidden: Float32Array; readonly sameStoredBytes?: boolean | undefined },
    allocateLogits?: (length: number) => { readonly values: Float32Array; readonly ready: Promise<void> },
  ): Promise<[Float32Array, Float32Array]> {
    const head = this.headWeight();
    const vocab = head.shape[0]!;
    const shareable = other !== undefined && this.headsShareable(other.runner);
    // Each model's head in its own chunks: an FP8 lm_head (a conversion that quantized it) is read
    // whole and cannot follow a BF16 head's row chunks.
    if (other !== undefined && !shareable) {
      return [(await this.heads(hidden, tokens, undefined, allocateLogits))[0], (await other.runner.heads(other.hidden, tokens, undefined, allocateLogits))[0]];
    }
    const chunkRows = this.headChunkRows();
    const pending: Promise<void>[] = [];
    const allocate = (length: number): Float32Array => {
      if (allocateLogits === undefined) return new Float32Array(length);
      const { values, ready } = allocateLogits(length);
      pending.push(ready);
      return values;
    };
    const logits = allocate(tokens * vocab);
    const otherLogits = other === undefined ? new Float32Array(0) : allocate(tokens * vocab);
    let ready: Promise<unknown> | undefined = Promise.all(pending);
    // Awaited by the first place; a failure with nothing placed (a failed run) is not left unhandled.
    ready.catch(() => undefined);
    // A row chunk's logits are written by its run into a pooled buffer (the same size chunk after
    // chunk), placed at their columns, and the buffer given back. A head in one chunk (an FP8
    // lm_head, a small vocabulary) is one output onnxruntime allocates, as big as the logits.
    const chunkBuffer = (count: number): Float32Array | undefined => (count === vocab ? undefined : this.buffers.float32(tokens * count));
    const place = async (into: Float32Array, chunk: Float32Array, start: number, count: number): Promise<void> => {
      try {
        if (ready !== undefined) {
          await ready;
          ready = undefined;
        }
        for (let t = 0; t < tokens; t++) into.set(chunk.subarray(t * count, (t + 1) * count), t * vocab + start);
      } finally {
        if (count !== vocab) this.buffers.give([chunk]);
      }
    };
    // The next chunk's rows of both are read while this one's graph runs (they were read after it:
    // on CUDA the GPU idled, on the CPU a cold lm_head's reads were most of the head's time,
    // bench/NOTES.md); on the CPU that holds one more chunk's stored bytes, half its float32 size.
    let next: Promise<SharedHeadChunk> | undefined;
    const loadNext = (start: number): void => {
      // Known to differ (verify's worker): each model's chunks are read by headChunk, not ahead here as well.
      if (!shareable || other?.sameStoredBytes === false || next !== undefined || start >= vocab) return;
      next = this.loadSharedHeadChunk(other!.runner, other!.sameStoredBytes === true, start, chunkRows);
      next.catch(() => undefined);
    };
    try {
      loadNext(0);
      for (let start = 0; start < vocab; start += chunkRows) {
        const count = Math.min(chunkRows, vocab - start);
        const rows = count === vocab ? undefined : { start, count };
        if (next !== undefined) {
          // Stored bytes of both, compared before anything is widened.
          const chunk = await next;
          next = undefined;
          const { scope, otherScope, norm, w, otherNorm, ow } = chunk;
          try {
            const same =
              w.kind === 'dense' && ow.kind === 'dense' && (other!.sameStoredBytes ?? (sameBytes(norm.bytes, otherNorm.bytes) && sameBytes(w.weight.bytes, ow.weight.bytes)));
            otherScope.close();
            if (same) {
              loadNext(start + chunkRows);
              const g = this.graph(false);
              const chunks = [chunkBuffer(count), chunkBuffer(count)] as const;
              const branch = (x: Float32Array, name: string, out: string, into: Float32Array | undefined): void => {
                g.output(this.emitHeadLogits(g, w, norm, x, name, tokens), out, into && { data: into, dims: [tokens, count] });
              };
              let out: Record<string, HostTensor>;
              try {
                branch(hidden, 'hidden', 'logits', chunks[0]);
                branch(other!.hidden, 'hidden_other', 'logits_other', chunks[1]);
                out = await this.run(g);
              } catch (e) {
                this.buffers.give(chunks.filter((c) => c !== undefined));
                throw e;
              }
              await place(logits, f32(out, 'logits'), start, count);
              await place(otherLogits, f32(out, 'logits_other'), start, count);
              continue;
            }
          } finally {
            otherScope.close();
            scope.close();
          }
        }
        await place(logits, await this.headChunk(head.module, rows, hidden, tokens, chunkBuffer(count)), start, count);
        if (other !== undefined)
          await place(otherLogits, await other.runner.headChunk(other.runner.headWeight().module, rows, other.hidden, tokens, chunkBuffer(count)), start, count);
        loadNext(start + chunkRows);
      }
    } finally {
      // A chunk read ahead of a failed run: its scopes go back.
      const pending = await next?.catch(() => undefined);
      pending?.otherScope.close();
      pending?.scope.close();
    }
    return [logits, otherLogits];
  }

  /**
   * verify on the device: this model's head on `hidden` and `other`'s on its own hidden states,
   * compared chunk by chunk inside the graph (ops/logit-comparison.ts), so that only per-token
   * figures come back, not both models' logits. `targets`: per token the vocabulary id whose logit
   * perplexity needs, -1 for none. Undefined where the heads cannot go through one graph a chunk
   * (headsShareable) or are not known to hold the same bytes (verify's worker answered): the
   * caller then compares the logits on the host.
   */
  async compareHeads(
    hidden: Float32Array,
    tokens: number,
    other: { readonly runner: ModelRunner; readonly hidden: Float32Array; readonly sameStoredBytes?: boolean | undefined },
    targets?: Int32Array,
  ): Promise<LogitChunkStats[] | undefined> {
    if (other.sameStoredBytes !== true || !this.headsShareable(other.runner)) return undefined;
    const head = this.headWeight();
    const vocab = head.shape[0]!;
    const chunkRows = this.headChunkRows();
    const chunks: LogitChunkStats[] = [];
    const load = (start: number): Promise<SharedHeadChunk> | undefined => {
      if (start >= vocab) return undefined;
      const p = this.loadSharedHeadChunk(other.runner, true, start, chunkRows);
      p.catch(() => undefined);
      return p;
    };
    let next = load(0);
    try {
      for (let start = 0; start < vocab; start += chunkRows) {
        const count = Math.min(chunkRows, vocab - start);
        const { scope, otherScope, norm, w } = await next!;
        next = undefined;
        try {
          // The next chunk's rows are read while this one's graph runs.
          next = load(start + chunkRows);
          const g = this.graph(false);
          const local = targets && Float32Array.from(targets, (id) => (id >= start && id < start + count ? id - start : 0));
          const { stats, terms } = emitLogitComparison(
            g.g,
            this.emitHeadLogits(g, w, norm, hidden, 'hidden', tokens),
            this.emitHeadLogits(g, w, norm, other.hidden, 'hidden_other', tokens),
            local && g.input('target', local, [tokens, 1]),
          );
          g.output(stats, 'logit_stats');
          g.output(terms, 'logit_terms');
          const out = await this.run(g);
          chunks.push({ start, count, stats: f64(out, 'logit_stats'), terms: f64(out, 'logit_terms') });
        } finally {
          otherScope.close();
          scope.close();
        }
      }
    } finally {
      // A chunk read ahead of a failed run: its scopes go back.
      const pending = await next?.catch(() => undefined);
      pending?.otherScope.close();
      pending?.scope.close();
    }
    return chunks;
  }

  /**
   * Whether this model's head and `other`'s can run as one graph a row chunk (heads, compareHeads):
   * unquantized heads of the same dtype and shape, final norms alike, and nothing besides the weight.
   */
  private headsShareable(other: ModelRunner): boolean {
    const head = this.headWeight();
    const otherHead = other.headWeight();
    return (
      !isFp8Dtype(head.dtype as Dtype) &&
      otherHead.dtype === head.dtype &&
      otherHead.shape.length === 2 &&
      otherHead.shape[0] === head.shape[0] &&
      otherHead.shape[1] === head.shape[1] &&
      other.spec.hiddenSize === this.spec.hiddenSize &&
      other.spec.rmsNormEps === this.spec.rmsNormEps &&
      (other.spec.gemma?.normOffset ?? 0) === (this.spec.gemma?.normOffset ?? 0) &&
      other.checkpoint.has(this.headNormName()) &&
      // Beside the weight, what linear() reads (a bias) or refuses (a static input_scale): with
      // sameStoredBytes the other's lm_head is never read, so it must be the weight alone.
      !['bias', 'input_scale'].some((s) => this.checkpoint.has(`${head.module}.${s}`) || other.checkpoint.has(`${otherHead.module}.${s}`))
    );
  }

  private headNormName(): string {
    return `${this.spec.names.decoder}.norm.weight`;
  }

  /** Final norm and lm_head (its rows `w`) on hidden states `[tokens, H]` fed as graph input `name`: the logits of those rows. */
  private emitHeadLogits(g: ModelGraph, w: LinearWeight, norm: StoredTensor, hidden: Float32Array, name: string, tokens: number): Value {
    return g.linear(w, g.rmsNorm(g.input(name, hidden, [tokens, this.spec.hiddenSize]), norm, this.spec.rmsNormEps, this.spec.gemma?.normOffset ?? 0), false);
  }

  /** lm_head rows per head graph: all of an FP8 lm_head (read whole), else headChunkBytes of float32. */
  private headChunkRows(): number {
    const head = this.headWeight();
    return isFp8Dtype(head.dtype as Dtype) ? head.shape[0]! : Math.max(1, Math.floor((this.options.headChunkBytes ?? HEAD_CHUNK_BYTES) / (this.spec.hiddenSize * 4)));
  }

  /**
   * Both models' norm and lm_head rows of the chunk at `start`, each checkpoint's in its own scope;
   * `sameStoredBytes`: known to be the same bytes, the other's are not read at all (half the reads).
   */
  private async loadSharedHeadChunk(other: ModelRunner, sameStoredBytes: boolean, start: number, chunkRows: number): Promise<SharedHeadChunk> {
    const head = this.headWeight();
    const vocab = head.shape[0]!;
    const count = Math.min(chunkRows, vocab - start);
    const rows = count === vocab ? undefined : { start, count };
    const scope = this.weights.scope();
    const otherScope = other.weights.scope();
    try {
      const norm = await scope.tensor(this.headNormName());
      const w = await scope.linear(head.module, rows);
      if (sameStoredBytes) return { scope, otherScope, norm, w, otherNorm: norm, ow: w };
      const otherNorm = await otherScope.tensor(this.headNormName());
      const ow = await otherScope.linear(other.headWeight().module, rows);
      return { scope, otherScope, norm, w, otherNorm, ow };
    } catch (e) {
      otherScope.close();
      scope.close();
      throw e;
    }
  }

  /**
   * Logits `[tokens, count]` of one row chunk of the head (all rows when `rows` is undefined),
   * written into `into` where given (a pooled buffer of a row chunk; given back on failure).
   */
  private async headChunk(
    module: string,
    rows: { start: number; count: number } | undefined,
    hidden: Float32Array,
    tokens: number,
    into: Float32Array | undefined,
  ): Promise<Float32Array> {
    const scope = this.layerScope();
    try {
      const norm = await scope.tensor(this.headNormName());
      const w = rows === undefined ? await scope.linear(module) : await scope.linear(module, rows);
      const g = this.graph(false);
      g.output(this.emitHeadLogits(g, w, norm, hidden, 'hidden', tokens), 'logits', into && rows && { data: into, dims: [tokens, rows.count] });
      return f32(await this.run(g), 'logits');
    } catch (e) {
      if (into !== undefined) this.buffers.give([into]);
      throw e;
    } finally {
      scope.close();
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** One projection of an expert as the forward runs it: the experts op (`expertsOp`, runsAsExpertsOp) or the linear, untapped. */
function emitExpertProjection(b: ModelGraph, l: LinearWeight, x: Value, expertsOp: boolean, single: boolean): Value {
  return expertsOp ? b.expertRows(l as Fp8Linear, x, single) : b.linear(l, x, false);
}

/** In a paired graph, from now on the other model's weights, its FP8 linears in `requantize` re-quantized from the original's (ModelGraph.requantizeFrom). */
function switchToOther(g: ModelGraph, requantize: ReadonlySet<string> | undefined): void {
  g.switchModel('other', false);
  if (requantize !== undefined && requantize.size > 0) g.requantizeFrom('original', requantize);
}

/** Compares each of `linears` (the other model's, in a paired graph) with this model's tap of its name, where `compare` names it. */
function compareWithTaps(g: ModelGraph, linears: readonly LinearWeight[], compare: ReadonlyMap<string, number>): void {
  for (const w of linears) {
    const columns = compare.get(w.module);
    const tap = g.tapValues.get(w.module);
    if (columns !== undefined && tap !== undefined) g.compareInGraph(w.module, tap.output, g.linear(w, tap.input, false), columns, g.dims(tap.input)[0]!);
  }
}

/** The comparison sums of a finished paired graph, by module. */
function collectSums(out: Record<string, HostTensor>, g: ModelGraph, into: Map<string, ComparisonSums>): void {
  for (const [module, { output, rows }] of g.sums) {
    const sums = f64(out, output);
    into.set(module, { sums, rows, groups: sums.length / 4 });
  }
}

/** One model's routed experts in an MoE layer (runMoe, and each side of a paired one): its groups of rows, their inputs and where their outputs go. */
interface ExpertSide {
  readonly groups: ExpertGroups;
  readonly groupOf: ReadonlyMap<number, number>;
  /** `[rows, H]` routed outputs in sorted-row order, each expert's slice written by its graph (`output`); in the runner's pool (the caller gives it back after the combine). */
  readonly outputs: Float32Array;
  /** Expert `e`'s `[start, count]` of the sorted rows; undefined when no token was routed to it. */
  rowsOf(e: number): readonly [number, number] | undefined;
  /** Its rows as graph input `name`, the row count symbolic under `rowsName` (it varies from expert to expert and layer to layer; the graph does not); one token: the token. */
  input(g: ModelGraph, name: string, rowsName: string, rows: readonly [number, number], single: boolean): Value;
  /** Where an expert's graph writes its output rows: their slice of `outputs`. */
  output(rows: readonly [number, number]): OutputBuffer;
  /** Gives the sorted rows back to the pool. */
  release(): void;
}

/**
 * The rows of `xn` `[T, H]` grouped by expert, in group order, in pooled buffers: the same size in
 * every MoE layer (tokens × k rows), so the pool has them; each expert is fed its slice, and its
 * graph writes its output rows into the same slice of `outputs` (the combine gathers them).
 */
function expertSide(routing: TokenRouting, xn: Float32Array, tokens: number, h: number, buffers: HostBufferPool): ExpertSide {
  const single = tokens === 1;
  const groups = single ? singleTokenGroups(routing) : groupByExpert(routing);
  const groupOf = new Map(groups.experts.map((e, j) => [e, j]));
  const outputs = buffers.float32(groups.rows * h);
  const sorted = single ? xn : buffers.float32(groups.rows * h);
  if (!single) {
    for (let r = 0; r < groups.rows; r++) {
      const t = groups.rowToken[r]!;
      sorted.set(xn.subarray(t * h, (t + 1) * h), r * h);
    }
  }
  return {
    groups,
    groupOf,
    outputs,
    rowsOf(e) {
      const j = groupOf.get(e);
      return j === undefined ? undefined : [groups.indptr[j]!, groups.indptr[j + 1]! - groups.indptr[j]!];
    },
    input(g, name, rowsName, [start, count], one) {
      return one ? g.input(name, sorted, [1, h]) : g.input(name, sorted.subarray(start * h, (start + count) * h), [count, h], [rowsName, h]);
    },
    output([start, count]) {
      return { data: outputs.subarray(start * h, (start + count) * h), dims: [count, h] };
    },
    release() {
      if (!single) buffers.give([sorted]);
    },
  };
}

function f64(out: Record<string, HostTensor>, name: string): Float64Array {
  const t = out[name];
  if (!t || t.type !== 'float64') throw new ForwardGraphError(`graph output "${name}" is missing or not float64`);
  return t.data;
}

function f32(out: Record<string, HostTensor>, name: string): Float32Array {
  const t = out[name];
  if (!t || t.type !== 'float32') throw new ForwardGraphError(`graph output "${name}" is missing or not float32`);
  return t.data;
}

/** Copies taps and probe outputs of a finished graph into the layer result. */
function collect(out: Record<string, HostTensor>, mg: ModelGraph, result: LayerResult): void {
  for (const [module, names] of mg.taps) {
    const input = out[names.input]!;
    const output = out[names.output]!;
    result.captures.set(module, { input: input.data as Float32Array, output: output.data as Float32Array, rows: input.dims[0]! });
  }
  for (const [module, probe] of mg.probes) {
    const t = f32(out, probe.output);
    const rows = out[probe.output]!.dims[0]!;
    const n = t.length / rows;
    const [c0, c1] = probe.cols ?? [0, n];
    if (c0 === 0 && c1 === n) {
      result.probeOutputs.set(module, t);
      continue;
    }
    const block = new Float32Array(rows * (c1 - c0));
    for (let r = 0; r < rows; r++) block.set(t.subarray(r * n + c0, r * n + c1), r * (c1 - c0));
    result.probeOutputs.set(module, block);
  }
}

/**
 * gpt-oss's expert activation on gate_up `[rows, 2I]` (bias added): gate = even columns, up = odd,
 * (clamp(up, ±limit) + 1) · g · σ(alpha · g) with g = min(gate, limit).
 */
function emitGptOssGlu(b: ModelGraph, gu: Value, intermediate: number, p: { readonly alpha: number; readonly limit: number }): Value {
  const rows = gu.shape[0]!;
  const pairs = b.reshape(gu, [rows, intermediate, 2]);
  const gate = b.clip(b.reshape(b.slice(pairs, -1, 0, 1), [rows, intermediate]), undefined, p.limit);
  const up = b.clip(b.reshape(b.slice(pairs, -1, 1, 2), [rows, intermediate]), -p.limit, p.limit);
  const glu = b.mul(gate, b.sigmoid(b.scale(gate, p.alpha)));
  return b.mul(b.add(up, b.constF32(Float32Array.of(1), [])), glu);
}
