// ModelGraph: the GraphBuilder as the layer graphs use it — float32 ops with short names and static
// shapes (the element-wise ops, linears and slices also take a symbolic row count, for a graph that
// serves any number of rows: an MoE expert's), linears dispatched to MLC LLM's quantized ops, and
// the hooks verify needs:
//   - taps: a linear's input and output exported as graph outputs (original model);
//   - probes: extra graph inputs fed with captured activations, run through a quantized linear;
//   - for a graph holding both models' layer (switchModel): taps kept as values of the graph, and
//     a quantized linear's output compared with the original's there (compareInGraph).
//
// Weights (and every other piece of per-layer host data: rotary tables, masks, activation scales)
// are graph INPUTS, decoded to float32 exactly, where WeightDecode says: on the host, or in the
// graph from their stored bits (BF16 words as uint16 and FP8 codes as uint8 through a float32
// lookup table — Gather gives the values a Cast would). Input names are positional (data_0,
// data_1, …), so the graphs of two layers of the same shape serialize to the same bytes and the
// runner runs them in one onnxruntime session (runner.ts, session-cache.ts). Weights as
// initializers instead cost a session per layer, whose constant folding decoded them on the CPU
// whatever the device: most of a verify's time before this design (README, CUDA).

import { DataType } from '../onnx/data-type.js';
import { attr, GraphBuilder, type Dim, type Value } from '../onnx/graph-builder.js';
import { emitBlockScaleLinear } from '../ops/block-scale-linear.js';
import { emitStaticBlockScaleLinear } from '../ops/static-block-scale-linear.js';
import { emitExpertRows } from '../ops/mixtral-experts.js';
import { emitComparisonSums } from '../ops/comparison-sums.js';
import { decodeCodesToFloat32 } from '../../fp8/formats.js';
import { dtypeSize, widenToFloat32 } from '../../fp8/dtypes.js';
import type { HostBufferPool } from './buffer-pool.js';
import { emitDecodeFp8Codes, emitFp8DecodeTable, type BlockGemmOptions, type DecodedFp8Value, type Fp8Format } from '../ops/types.js';
import { emitDequantizeBlockWeight } from '../ops/groupwise-scaled-gemv.js';
import { emitRequantizedBlockWeight } from '../ops/block-requantize.js';
import type { FeedTensor, OutputBuffer } from '../onnx/session.js';
import type { HiddenAct } from './config.js';
import type { Fp8Linear, LinearWeight, StoredTensor } from './weights.js';
import { ForwardGraphError } from '../runtime-errors.js';

let bf16Table: Uint8Array | undefined;

/** float32 bytes of every BF16 bit pattern, in order: the BF16 decode table (256 KiB, built once). */
function bf16DecodeTableBytes(): Uint8Array {
  if (bf16Table === undefined) {
    const words = new Uint32Array(65536);
    for (let i = 0; i < 65536; i++) words[i] = i << 16;
    bf16Table = new Uint8Array(words.buffer);
  }
  return bf16Table;
}

/** A typed view of `bytes` when aligned, else an aligned copy. */
function aligned<T>(bytes: Uint8Array, width: number, make: (buffer: ArrayBufferLike, offset: number, length: number) => T): T {
  if (bytes.byteOffset % width === 0) return make(bytes.buffer, bytes.byteOffset, bytes.byteLength / width);
  const copy = bytes.slice();
  return make(copy.buffer, 0, copy.byteLength / width);
}

export { ForwardGraphError };

export interface ProbeOutput {
  readonly output: string;
  /** The probe's columns of the output, when several probes share it (a fused gate_up). */
  readonly cols?: readonly [number, number];
}

export interface TapNames {
  readonly input: string;
  readonly output: string;
}

/**
 * Where stored weights become float32. 'host': widened in JavaScript and fed as float32 — on the
 * CPU provider a table Gather or a BF16 Cast costs 10–20 ns an element, JavaScript about 1.
 * 'graph': fed in their stored bits (FP8 codes as uint8, BF16 words as uint16, F16 as float16)
 * and decoded by the graph — on a GPU, a quarter (FP8) or half (BF16) of the bytes to copy over,
 * and a decode that costs next to nothing.
 */
export type WeightDecode = 'host' | 'graph';

/**
 * How an FP8 linear's product is laid out (ops/types.ts BlockGemmOptions): 'per-block', one dot
 * product per K block as the block-scale kernels round, or 'dequantized', both operands
 * dequantized in float32 and one MatMul (the same sums to float32 rounding). Default: per-block
 * where weights are decoded on the host (the CPU, where the per-block products cost no more per
 * FLOP), dequantized where they are decoded in the graph (CUDA, where the `[kb, M, N]` products were
 * most of a 512-token verify's GPU memory and kernel time: bench/NOTES.md).
 */
export type BlockGemmForm = 'per-block' | 'dequantized';

/** FP8 codes → float32 values through the decode table (exactly what Cast(FP8 → float) gives). */
export function decodeFp8Codes(codes: Uint8Array, format: Fp8Format, out: Float32Array = new Float32Array(codes.length)): Float32Array {
  return decodeCodesToFloat32(codes, format, out);
}

export class ModelGraph {
  readonly g = new GraphBuilder();
  /** Host data for the graph inputs created so far. */
  readonly feeds: Record<string, FeedTensor> = {};
  /** Linear module → graph output names of its input and output. */
  readonly taps = new Map<string, TapNames>();
  /** Linear module → its input and output as values of this graph, for taps kept in it (switchModel). */
  readonly tapValues = new Map<string, { readonly input: Value; readonly output: Value }>();
  /** Probe name → graph output name, and its columns when several probes share one output. */
  readonly probes = new Map<string, ProbeOutput>();
  /** Name → graph output of comparison sums (compareInGraph). */
  readonly sums = new Map<string, { readonly output: string; readonly rows: number }>();
  private readonly weightValues = new Map<string, Value>();
  /** Prefix of weightValues' keys for the model being emitted (switchModel). */
  private weightKeys = '';
  private keepTaps = false;
  private requantize: { readonly key: string; readonly modules: ReadonlySet<string> } | undefined;
  private readonly exported = new Map<string, string>();
  private readonly probeInputs = new Map<Float32Array, Value>();
  private readonly decodeTables = new Map<Fp8Format | 'bf16', Value>();
  private counter = 0;
  private dataInputs = 0;

  /** Buffers this graph's feeds took from `pool`; the runner gives them back after the run. */
  readonly hostBuffers: Float32Array[] = [];
  /** Output name → the caller's array it is written into (output's `into`). */
  readonly outputBuffers: Record<string, OutputBuffer> = {};

  constructor(
    public tapLinears = false,
    readonly weightDecode: WeightDecode = 'host',
    private readonly pool?: HostBufferPool,
    /**
     * Host-decoded weights kept across graphs, by the stored bytes they came from: for resident
     * weights (the same bytes object every step), so each is widened once, not once per step.
     */
    private readonly decoded?: WeakMap<Uint8Array, Float32Array>,
    readonly blockGemm: BlockGemmForm = weightDecode === 'graph' ? 'dequantized' : 'per-block',
  ) {}

  /**
   * For a graph holding two models' layers (verify's paired layers, runner.ts): the weights emitted
   * from now on belong to the model `name` (both checkpoints name their tensors alike, so each
   * model's weight values are cached apart), and its linears are tapped or not; `'values'` keeps
   * each tap in tapValues instead of exporting it.
   */
  switchModel(name: string, taps: boolean | 'values'): void {
    this.weightKeys = `${name}:`;
    this.tapLinears = taps !== false;
    this.keepTaps = taps === 'values';
    // A re-quantization source is said per model (requantizeFrom), never carried into the next one.
    this.requantize = undefined;
  }

  /**
   * For a paired layer (runner.ts runLayerPair), from now on: the FP8 linears in `modules` take their
   * values from model `name`'s weight of the same name, re-quantized in the graph under the stored
   * scales (ops/block-requantize.ts), instead of their stored codes as a graph input. Only for
   * linears whose stored codes are exactly that re-quantization (verify's floor check), on a
   * device that computes it as the host does (requantizeSelfTest).
   */
  requantizeFrom(name: string, modules: ReadonlySet<string>): void {
    this.requantize = { key: `${name}:`, modules };
  }

  private hostBuffer(length: number): Float32Array {
    if (this.pool === undefined) return new Float32Array(length);
    const b = this.pool.float32(length);
    this.hostBuffers.push(b);
    return b;
  }

  /** `length` float32 values decoded from `bytes`: from the decoded cache when there is one, else into a host buffer. */
  private decodedFrom(bytes: Uint8Array, length: number, decode: (out: Float32Array) => Float32Array): Float32Array {
    if (this.decoded === undefined) return decode(this.hostBuffer(length));
    let values = this.decoded.get(bytes);
    if (values === undefined) {
      values = decode(new Float32Array(length));
      this.decoded.set(bytes, values);
    }
    return values;
  }

  /**
   * A float32 activation input; `graphShape` declares it in the graph where that differs from the
   * data's shape (a symbolic row count, so that one graph serves any number of rows).
   */
  input(name: string, data: Float32Array, shape: readonly number[], graphShape: readonly Dim[] = shape): Value {
    this.feeds[name] = { type: 'float32', data, dims: shape };
    return this.g.input(name, DataType.FLOAT, graphShape);
  }

  /**
   * Marks `v` as graph output `name`; with `into`, the run writes it into that caller-owned array
   * (dims as the run produces them) rather than a fresh one (OnnxSession.run).
   */
  output(v: Value, name: string, into?: OutputBuffer): void {
    this.g.output(v, name);
    if (into !== undefined) this.outputBuffers[name] = into;
  }

  /**
   * A graph input for host data that is not an activation (weights, tables, masks), named by
   * position so that graphs of the same shape are byte-identical whatever layer they come from.
   */
  private dataInput(feed: FeedTensor, dtype: DataType): Value {
    const name = `data_${this.dataInputs++}`;
    this.feeds[name] = feed;
    return this.g.input(name, dtype, feed.dims);
  }

  /** Float32 host data (rotary tables, masks, routing weights) as a positional graph input. */
  constF32(values: Float32Array, shape: readonly number[]): Value {
    return this.dataInput({ type: 'float32', data: values, dims: shape }, DataType.FLOAT);
  }

  private decodeTable(kind: Fp8Format | 'bf16'): Value {
    let table = this.decodeTables.get(kind);
    if (table === undefined) {
      table = kind === 'bf16' ? this.g.initializer('bf16_decode', DataType.FLOAT, [65536], bf16DecodeTableBytes()) : emitFp8DecodeTable(this.g, kind);
      this.decodeTables.set(kind, table);
    }
    return table;
  }

  /** A float32 view of a stored tensor, decoded where `weightDecode` says (exact either way). */
  stored(t: StoredTensor): Value {
    const cached = this.weightValues.get(this.weightKeys + t.name);
    if (cached) return cached;
    let v: Value;
    if (t.decoded !== undefined) {
      // Decoded when read (a decoding weight scope, weights.ts): the values the host decode gives.
      v = this.dataInput({ type: 'float32', data: t.decoded, dims: t.shape }, DataType.FLOAT);
    } else if (this.weightDecode === 'host' || t.dtype === 'F32' || t.dtype === 'F64') {
      const data =
        t.dtype === 'F32'
          ? aligned(t.bytes, 4, (b, o, n) => new Float32Array(b, o, n))
          : this.decodedFrom(t.bytes, t.bytes.byteLength / dtypeSize(t.dtype), (out) => widenToFloat32(t.bytes, t.dtype, out));
      v = this.dataInput({ type: 'float32', data, dims: t.shape }, DataType.FLOAT);
    } else if (t.dtype === 'F16') {
      const halves = this.dataInput({ type: 'float16', data: aligned(t.bytes, 2, (b, o, n) => new Uint16Array(b, o, n)), dims: t.shape }, DataType.FLOAT16);
      v = this.cast(halves, DataType.FLOAT);
    } else {
      const words = this.dataInput({ type: 'uint16', data: aligned(t.bytes, 2, (b, o, n) => new Uint16Array(b, o, n)), dims: t.shape }, DataType.UINT16);
      const index = this.g.op('Cast', [words], { dtype: DataType.INT32, shape: t.shape, name: 'bf16_index' }, { to: attr.int(DataType.INT32) });
      v = this.g.op('Gather', [this.decodeTable('bf16'), index], { dtype: DataType.FLOAT, shape: t.shape, name: 'bf16_decoded' }, { axis: attr.int(0) });
    }
    this.weightValues.set(this.weightKeys + t.name, v);
    return v;
  }

  private f32(op: string, inputs: readonly (Value | null)[], shape: readonly Dim[], attrs: Parameters<GraphBuilder['op']>[3] = {}): Value {
    return this.g.op(op, inputs, { dtype: DataType.FLOAT, shape, name: op.toLowerCase() }, attrs);
  }

  cast(v: Value, to: DataType): Value {
    return this.g.op('Cast', [v], { dtype: to, shape: v.shape, name: `${v.name}_f32` }, { to: attr.int(to) });
  }

  /** `v`'s shape, for the ops that need it static (only an expert graph's row count is symbolic). */
  dims(v: Value): number[] {
    return v.shape.map((d) => {
      if (typeof d !== 'number') throw new ForwardGraphError(`value "${v.name}" has a symbolic shape; this op needs a static one`);
      return d;
    });
  }

  add(a: Value, b: Value): Value {
    return this.f32('Add', [a, b], broadcastShape(a.shape, b.shape));
  }

  mul(a: Value, b: Value): Value {
    return this.f32('Mul', [a, b], broadcastShape(a.shape, b.shape));
  }

  scale(a: Value, s: number): Value {
    return this.mul(a, this.g.constFloat32([s], []));
  }

  neg(a: Value): Value {
    return this.f32('Neg', [a], a.shape);
  }

  /** min(max(a, lo), hi); either bound may be omitted (gpt-oss's clamped SwiGLU). */
  clip(a: Value, lo: number | undefined, hi: number | undefined): Value {
    const bound = (x: number | undefined): Value | null => (x === undefined ? null : this.g.constFloat32([x], []));
    return this.f32('Clip', [a, bound(lo), bound(hi)], a.shape);
  }

  sigmoid(a: Value): Value {
    return this.f32('Sigmoid', [a], a.shape);
  }

  matmul(a: Value, b: Value): Value {
    const da = this.dims(a);
    const db = this.dims(b);
    const lead = broadcastShape(da.slice(0, -2), db.slice(0, -2));
    return this.f32('MatMul', [a, b], [...lead, da[da.length - 2]!, db[db.length - 1]!]);
  }

  /** Reshape to `shape`; one symbolic dimension at most (given to onnxruntime as -1). */
  reshape(v: Value, shape: readonly Dim[]): Value {
    if (shape.filter((d) => typeof d !== 'number').length > 1) throw new ForwardGraphError(`cannot reshape "${v.name}" to [${shape.join(', ')}]: two symbolic dimensions`);
    const target = shape.map((d) => (typeof d === 'number' ? d : -1));
    return this.g.op('Reshape', [v, this.g.constInt64(target)], { dtype: v.dtype, shape, name: 'reshape' });
  }

  transpose(v: Value, perm: readonly number[]): Value {
    const d = this.dims(v);
    return this.g.op('Transpose', [v], { dtype: v.dtype, shape: perm.map((p) => d[p]!), name: 'transpose' }, { perm: attr.ints(perm) });
  }

  /** `v[..., start:end]` along `axis`. */
  slice(v: Value, axis: number, start: number, end: number): Value {
    const d = v.shape;
    const a = axis < 0 ? axis + d.length : axis;
    if (typeof d[a] !== 'number') throw new ForwardGraphError(`cannot slice "${v.name}" along its symbolic axis ${a}`);
    if (start === 0 && end === d[a]) return v;
    const shape = d.map((x, i) => (i === a ? end - start : x));
    return this.g.op('Slice', [v, this.g.constInt64([start]), this.g.constInt64([end]), this.g.constInt64([a])], {
      dtype: v.dtype,
      shape,
      name: 'slice',
    });
  }

  concat(parts: readonly Value[], axis: number): Value {
    if (parts.length === 1) return parts[0]!;
    const d = this.dims(parts[0]!);
    const a = axis < 0 ? axis + d.length : axis;
    const total = parts.reduce((acc, p) => acc + this.dims(p)[a]!, 0);
    return this.f32(
      'Concat',
      parts,
      d.map((x, i) => (i === a ? total : x)),
      { axis: attr.int(a) },
    );
  }

  expand(v: Value, shape: readonly number[]): Value {
    return this.f32('Expand', [v, this.g.constInt64([...shape])], shape);
  }

  softmax(v: Value): Value {
    return this.f32('Softmax', [v], this.dims(v), { axis: attr.int(-1) });
  }

  /**
   * Rows `indices` of `x` `[R, C]` → `[indices.length, C]`. The indices travel as float32 (a feed
   * type onnxruntime-node has; exact below 2^24) and become int64 in the graph.
   */
  gatherRows(x: Value, indices: Int32Array): Value {
    const [rows, cols] = this.dims(x);
    if (rows! > 2 ** 24) throw new ForwardGraphError(`gather from ${rows} rows: indices beyond 2^24 are not exact as float32`);
    const idx = this.cast(this.constF32(Float32Array.from(indices), [indices.length]), DataType.INT64);
    return this.f32('Gather', [x, idx], [indices.length, cols!], { axis: attr.int(0) });
  }

  reduceSum(v: Value, axis: number): Value {
    const d = this.dims(v);
    const a = axis < 0 ? axis + d.length : axis;
    return this.f32(
      'ReduceSum',
      [v, this.g.constInt64([a])],
      d.filter((_, i) => i !== a),
      { keepdims: attr.int(0) },
    );
  }

  /** transformers' RMSNorm: x * 1/sqrt(mean(x²) + eps), times the weight, over the last axis. */
  /** RMSNorm; `offset` 1 for Gemma's norms, which multiply by (1 + weight). */
  rmsNorm(x: Value, weight: StoredTensor, eps: number, offset = 0): Value {
    const d = this.dims(x);
    const statShape = [...d.slice(0, -1), 1];
    const sq = this.mul(x, x);
    const mean = this.f32('ReduceMean', [sq, this.g.constInt64([-1])], statShape, { keepdims: attr.int(1) });
    const rms = this.f32('Sqrt', [this.add(mean, this.g.constFloat32([eps], []))], statShape);
    const normed = this.f32('Div', [x, rms], d);
    const w = this.stored(weight);
    return this.mul(offset === 0 ? w : this.add(w, this.g.constFloat32([offset], [])), normed);
  }

  act(x: Value, kind: HiddenAct): Value {
    switch (kind) {
      case 'silu':
        return this.mul(x, this.sigmoid(x));
      case 'gelu':
        return this.f32('Gelu', [x], x.shape);
      case 'gelu_tanh':
        return this.f32('Gelu', [x], x.shape, { approximate: attr.string('tanh') });
    }
  }

  /** The value as a graph output (once, whatever how many taps name it); returns the output name. */
  export(v: Value, hint: string): string {
    const existing = this.exported.get(v.name);
    if (existing) return existing;
    const name = `${hint}_${this.counter++}`;
    this.g.output(v, name);
    this.exported.set(v.name, name);
    return name;
  }

  /**
   * The FP8 linear's options for the ops: for the dequantized form, its float32 weight, emitted
   * once per graph and model and shared by every linear on it (a paired layer's forward and probe).
   */
  private gemmOptions(w: Fp8Linear, wv: Value, s: Value): BlockGemmOptions {
    if (this.blockGemm === 'per-block') return {};
    const key = `${this.weightKeys}${w.module}.weight:dequantized`;
    let dequantizedWeight = this.weightValues.get(key);
    if (dequantizedWeight === undefined) {
      dequantizedWeight = emitDequantizeBlockWeight(this.g, wv, s, w.block);
      this.weightValues.set(key, dequantizedWeight);
    }
    return { dequantizedWeight };
  }

  private fp8Values(w: Fp8Linear): { w: Value; s: Value } {
    const wName = `${this.weightKeys}${w.module}.weight`;
    const sName = `${this.weightKeys}${w.module}.weight_scale_inv`;
    const cachedW = this.weightValues.get(wName);
    const cachedS = this.weightValues.get(sName);
    if (cachedW && cachedS) return { w: cachedW, s: cachedS };
    const scaleInput = (): Value => this.dataInput({ type: 'float32', data: w.scaleInv.data, dims: w.scaleInv.shape }, DataType.FLOAT);
    const source = this.requantizeSource(w);
    let wv: Value;
    let sv: Value;
    if (source !== undefined) {
      sv = scaleInput();
      wv = emitRequantizedBlockWeight(this.g, source, sv, w.block, w.weight.format);
    } else {
      if (this.weightDecode === 'host' || w.decoded !== undefined) {
        const data = w.decoded ?? this.decodedFrom(w.weight.codes, w.weight.codes.length, (out) => decodeFp8Codes(w.weight.codes, w.weight.format, out));
        const values = this.dataInput({ type: 'float32', data, dims: w.weight.shape }, DataType.FLOAT);
        const decoded: DecodedFp8Value = { ...values, fp8Format: w.weight.format };
        wv = decoded;
      } else {
        const codes = this.dataInput({ type: 'uint8', data: w.weight.codes, dims: w.weight.shape }, DataType.UINT8);
        wv = emitDecodeFp8Codes(this.g, codes, w.weight.format, this.decodeTable(w.weight.format));
      }
      sv = scaleInput();
    }
    this.weightValues.set(wName, wv);
    this.weightValues.set(sName, sv);
    return { w: wv, s: sv };
  }

  /** The weight `w` is re-quantized from (requantizeFrom), when it is one of those modules and the source has its shape. */
  private requantizeSource(w: Fp8Linear): Value | undefined {
    if (this.requantize === undefined || !this.requantize.modules.has(w.module)) return undefined;
    const source = this.weightValues.get(`${this.requantize.key}${w.module}.weight`);
    const same = source !== undefined && source.shape.length === 2 && source.shape.every((d, i) => d === w.weight.shape[i]);
    return same ? source : undefined;
  }

  /**
   * `x [M, K] → [M, N]`. Dense: x · Wᵀ (+ b) in float32. FP8: MLC LLM's BlockScaleQuantizeLinear
   * (GEMV for M = 1, block-scale GEMM with per-token activation quantization otherwise), or with
   * `activation_scale`, BlockScaleQuantizeLinearStaticActivation (static scales, GEMM). `tap`
   * exports input and output (under `w.module`, or the module name given).
   */
  linear(w: LinearWeight, x: Value, tap: boolean | string = this.tapLinears): Value {
    const m = x.shape[0]!;
    const n = w.weight.shape[0]!;
    let y: Value;
    if (w.kind === 'dense') {
      const inputs = [x, this.stored(w.weight)];
      if (w.bias) inputs.push(this.stored(w.bias));
      y = this.f32('Gemm', inputs, [m, n], { transB: attr.int(1) });
    } else {
      const { w: wv, s } = this.fp8Values(w);
      const bias = w.bias ? this.stored(w.bias) : undefined;
      if (w.activationScale !== undefined) {
        // MLC LLM's BlockScaleQuantizeLinearStaticActivation: calibrated scales, GEMM for any M.
        const scale = this.constF32(w.activationScale, [w.activationScale.length]);
        y = emitStaticBlockScaleLinear(this.g, x, scale, wv, s, w.block, bias, this.gemmOptions(w, wv, s));
      } else y = emitBlockScaleLinear(this.g, x, wv, s, w.block, bias, this.gemmOptions(w, wv, s));
    }
    if (tap !== false) this.tap(typeof tap === 'string' ? tap : w.module, x, y);
    return y;
  }

  /** Exports `x` and `y` as the input and output of linear `module`. */
  tap(module: string, x: Value, y: Value): void {
    if (this.keepTaps) {
      this.tapValues.set(module, { input: x, output: y });
      return;
    }
    this.taps.set(module, { input: this.export(x, 'tap_in'), output: this.export(y, 'tap_out') });
  }

  /**
   * Graph input fed with captured activations (one input per distinct array); `symbolicRows`
   * declares its row count symbolic (a graph that serves any number of captured rows).
   */
  probeInput(data: Float32Array, shape: readonly number[], symbolicRows = false): Value {
    const existing = this.probeInputs.get(data);
    if (existing) return existing;
    const n = this.probeInputs.size;
    const v = this.input(`probe_in_${n}`, data, shape, symbolicRows ? [`probe_rows_${n}`, ...shape.slice(1)] : shape);
    this.probeInputs.set(data, v);
    return v;
  }

  /**
   * `[4, 1, nb]` sums comparing `act` with `ref` (`rows` rows) over all rows per group of `bn`
   * columns (ops/comparison-sums.ts), exported under `name` in `sums`.
   */
  compareInGraph(name: string, ref: Value, act: Value, bn: number, rows: number): void {
    this.sums.set(name, { output: this.export(emitComparisonSums(this.g, ref, act, bn, true), 'sums'), rows });
  }

  /** Runs a captured input through `w` and exports the result under probe `name`. */
  probeLinear(name: string, w: LinearWeight, input: Float32Array, rows: number): void {
    const x = this.probeInput(input, [rows, w.weight.shape[1]!]);
    this.probes.set(name, { output: this.export(this.linear(w, x, false), 'probe_out') });
  }

  /**
   * One FP8 expert's projection as MLC LLM's BlockScaleQuantizeMixtralExperts runs it: the
   * expert's group of rows `[M, K]` (M may be symbolic) through the block-scale GEMM whatever M
   * is, or for a single token (`single`) the GEMV. No bias: the experts op has none.
   */
  expertRows(w: Fp8Linear, x: Value, single: boolean): Value {
    const { w: wv, s } = this.fp8Values(w);
    return emitExpertRows(this.g, x, { w: wv, wScaleInv: s }, w.block, single, this.gemmOptions(w, wv, s));
  }

  toBytes(): Uint8Array {
    return this.g.toBytes();
  }
}

/** NumPy broadcasting of two shapes; a symbolic dimension broadcasts with 1 and with itself. */
export function broadcastShape(a: readonly Dim[], b: readonly Dim[]): Dim[] {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new ForwardGraphError(`shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}
