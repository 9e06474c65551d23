// ModelGraph: the GraphBuilder as the layer graphs use it — static-shape float32 ops with short
// names, weights as initializers in their stored dtype (BF16/F16 cast to float32 in the graph:
// the CPU provider has no BF16 MatMul, and a BF16 initializer is half the bytes of a float32
// one until onnxruntime folds the cast), linears dispatched to the seed's quantized ops, and the
// two hooks verify needs:
//   - taps: a linear's input and output exported as graph outputs (original model);
//   - probes: extra graph inputs fed with captured activations, run through a quantized linear.

import { DataType } from '../onnx/data-type.js';
import { attr, GraphBuilder, littleEndianBytes, type Value } from '../onnx/graph-builder.js';
import { emitBlockScaleLinear } from '../ops/block-scale-linear.js';
import { emitStaticBlockScaleLinear } from '../ops/static-block-scale-linear.js';
import { emitMixtralExperts, type ExpertValues, type RoutingTensor } from '../ops/mixtral-experts.js';
import { fp8DataType, type BlockShape } from '../ops/types.js';
import type { HostTensor } from '../session.js';
import type { HiddenAct } from './config.js';
import type { Fp8Linear, LinearWeight, StoredTensor } from './weights.js';

const STORED_TYPES = { F32: DataType.FLOAT, F16: DataType.FLOAT16, BF16: DataType.BFLOAT16 } as const;

export class ForwardGraphError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForwardGraphError';
  }
}

export interface ProbeOutput {
  readonly output: string;
  /** The probe's rows / columns of the output, when several probes share it. */
  readonly rows?: readonly [number, number];
  readonly cols?: readonly [number, number];
}

export interface TapNames {
  readonly input: string;
  readonly output: string;
}

export class ModelGraph {
  readonly g = new GraphBuilder();
  /** Host data for the graph inputs created so far. */
  readonly feeds: Record<string, HostTensor> = {};
  /** Linear module → graph output names of its input and output. */
  readonly taps = new Map<string, TapNames>();
  /** Probe name → graph output name, and its rows when several probes share one output. */
  readonly probes = new Map<string, ProbeOutput>();
  private readonly weightValues = new Map<string, Value>();
  private readonly exported = new Map<string, string>();
  private readonly probeInputs = new Map<Float32Array, Value>();
  private counter = 0;

  constructor(readonly tapLinears = false) {}

  input(name: string, data: Float32Array, shape: readonly number[]): Value {
    this.feeds[name] = { type: 'float32', data, dims: shape };
    return this.g.input(name, DataType.FLOAT, shape);
  }

  output(v: Value, name: string): void {
    this.g.output(v, name);
  }

  /** A float32 view of a stored tensor (initializer in its own dtype, cast in the graph). */
  stored(t: StoredTensor): Value {
    const cached = this.weightValues.get(t.name);
    if (cached) return cached;
    const init = this.g.initializer(t.name, STORED_TYPES[t.dtype as keyof typeof STORED_TYPES] ?? this.unsupported(t), t.shape, t.bytes);
    const v = init.dtype === DataType.FLOAT ? init : this.cast(init, DataType.FLOAT);
    this.weightValues.set(t.name, v);
    return v;
  }

  private unsupported(t: StoredTensor): never {
    throw new ForwardGraphError(`tensor "${t.name}" is ${t.dtype}; graphs take F32, F16 or BF16 weights`);
  }

  constF32(values: Float32Array, shape: readonly number[], hint: string): Value {
    return this.g.initializer(this.g.uniqueName(hint), DataType.FLOAT, shape, littleEndianBytes(values));
  }

  constI64(values: ArrayLike<number>, shape: readonly number[], hint: string): Value {
    return this.g.initializer(this.g.uniqueName(hint), DataType.INT64, shape, littleEndianBytes(BigInt64Array.from(Array.from(values), BigInt)));
  }

  private f32(op: string, inputs: readonly (Value | null)[], shape: readonly number[], attrs: Parameters<GraphBuilder['op']>[3] = {}): Value {
    return this.g.op(op, inputs, { dtype: DataType.FLOAT, shape, name: op.toLowerCase() }, attrs);
  }

  cast(v: Value, to: DataType): Value {
    return this.g.op('Cast', [v], { dtype: to, shape: v.shape, name: `${v.name}_f32` }, { to: attr.int(to) });
  }

  dims(v: Value): number[] {
    return v.shape.map((d) => {
      if (typeof d !== 'number') throw new ForwardGraphError(`value "${v.name}" has a symbolic shape; model graphs are static`);
      return d;
    });
  }

  add(a: Value, b: Value): Value {
    return this.f32('Add', [a, b], broadcastShape(this.dims(a), this.dims(b)));
  }

  mul(a: Value, b: Value): Value {
    return this.f32('Mul', [a, b], broadcastShape(this.dims(a), this.dims(b)));
  }

  scale(a: Value, s: number): Value {
    return this.mul(a, this.g.constFloat32([s], []));
  }

  neg(a: Value): Value {
    return this.f32('Neg', [a], this.dims(a));
  }

  sigmoid(a: Value): Value {
    return this.f32('Sigmoid', [a], this.dims(a));
  }

  matmul(a: Value, b: Value): Value {
    const da = this.dims(a);
    const db = this.dims(b);
    const lead = broadcastShape(da.slice(0, -2), db.slice(0, -2));
    return this.f32('MatMul', [a, b], [...lead, da[da.length - 2]!, db[db.length - 1]!]);
  }

  reshape(v: Value, shape: readonly number[]): Value {
    return this.g.op('Reshape', [v, this.g.constInt64([...shape])], { dtype: v.dtype, shape, name: 'reshape' });
  }

  transpose(v: Value, perm: readonly number[]): Value {
    const d = this.dims(v);
    return this.g.op('Transpose', [v], { dtype: v.dtype, shape: perm.map((p) => d[p]!), name: 'transpose' }, { perm: attr.ints(perm) });
  }

  /** `v[..., start:end]` along `axis`. */
  slice(v: Value, axis: number, start: number, end: number): Value {
    const d = this.dims(v);
    const a = axis < 0 ? axis + d.length : axis;
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
    return this.f32('Concat', parts, d.map((x, i) => (i === a ? total : x)), { axis: attr.int(a) });
  }

  expand(v: Value, shape: readonly number[]): Value {
    return this.f32('Expand', [v, this.g.constInt64([...shape])], shape);
  }

  /** Rows of a 2-D value by index (constant indices). */
  gatherRows(v: Value, indices: ArrayLike<number>): Value {
    const d = this.dims(v);
    const idx = this.constI64(indices, [indices.length], 'gather_idx');
    return this.f32('Gather', [v, idx], [indices.length, ...d.slice(1)], { axis: attr.int(0) });
  }

  softmax(v: Value): Value {
    return this.f32('Softmax', [v], this.dims(v), { axis: attr.int(-1) });
  }

  reduceSum(v: Value, axis: number): Value {
    const d = this.dims(v);
    const a = axis < 0 ? axis + d.length : axis;
    return this.f32('ReduceSum', [v, this.g.constInt64([a])], d.filter((_, i) => i !== a), { keepdims: attr.int(0) });
  }

  /** transformers' RMSNorm: x * 1/sqrt(mean(x²) + eps), times the weight, over the last axis. */
  rmsNorm(x: Value, weight: StoredTensor, eps: number): Value {
    const d = this.dims(x);
    const statShape = [...d.slice(0, -1), 1];
    const sq = this.mul(x, x);
    const mean = this.f32('ReduceMean', [sq, this.g.constInt64([-1])], statShape, { keepdims: attr.int(1) });
    const rms = this.f32('Sqrt', [this.add(mean, this.g.constFloat32([eps], []))], statShape);
    const normed = this.f32('Div', [x, rms], d);
    return this.mul(this.stored(weight), normed);
  }

  act(x: Value, kind: HiddenAct): Value {
    switch (kind) {
      case 'silu':
        return this.mul(x, this.sigmoid(x));
      case 'gelu':
        return this.f32('Gelu', [x], this.dims(x));
      case 'gelu_tanh':
        return this.f32('Gelu', [x], this.dims(x), { approximate: attr.string('tanh') });
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

  private fp8Values(w: Fp8Linear): { w: Value; s: Value } {
    const wName = `${w.module}.weight`;
    let wv = this.weightValues.get(wName);
    let sv = this.weightValues.get(`${w.module}.weight_scale_inv`);
    if (!wv || !sv) {
      wv = this.g.initializer(wName, fp8DataType(w.weight.format), w.weight.shape, w.weight.codes);
      sv = this.g.initializer(`${w.module}.weight_scale_inv`, DataType.FLOAT, w.scaleInv.shape, littleEndianBytes(w.scaleInv.data));
      this.weightValues.set(wName, wv);
      this.weightValues.set(`${w.module}.weight_scale_inv`, sv);
    }
    return { w: wv, s: sv };
  }

  /**
   * `x [M, K] → [M, N]`. Dense: x · Wᵀ (+ b) in float32. FP8: the seed's BlockScaleQuantizeLinear
   * (GEMV for M = 1, block-scale GEMM with per-token activation quantization otherwise), or with
   * `activation_scale`, BlockScaleQuantizeLinearStaticActivation (static scales, GEMM). `tap`
   * exports input and output (under `w.module`, or the module name given).
   */
  linear(w: LinearWeight, x: Value, tap: boolean | string = this.tapLinears): Value {
    const [m] = this.dims(x);
    const n = w.weight.shape[0]!;
    let y: Value;
    if (w.kind === 'dense') {
      const inputs = [x, this.stored(w.weight)];
      if (w.bias) inputs.push(this.stored(w.bias));
      y = this.f32('Gemm', inputs, [m!, n], { transB: attr.int(1) });
    } else {
      const { w: wv, s } = this.fp8Values(w);
      const bias = w.bias ? this.stored(w.bias) : undefined;
      if (w.activationScale !== undefined) {
        // The seed's BlockScaleQuantizeLinearStaticActivation: calibrated scales, GEMM for any M.
        const scale = this.constF32(w.activationScale, [w.activationScale.length], `${w.module}.activation_scale`);
        y = emitStaticBlockScaleLinear(this.g, x, scale, wv, s, w.block, bias);
      } else y = emitBlockScaleLinear(this.g, x, wv, s, w.block, bias);
    }
    if (tap !== false) this.tap(typeof tap === 'string' ? tap : w.module, x, y);
    return y;
  }

  /** Exports `x` and `y` as the input and output of linear `module`. */
  tap(module: string, x: Value, y: Value): void {
    this.taps.set(module, { input: this.export(x, 'tap_in'), output: this.export(y, 'tap_out') });
  }

  /** Graph input fed with captured activations (one input per distinct array). */
  probeInput(data: Float32Array, shape: readonly number[]): Value {
    const existing = this.probeInputs.get(data);
    if (existing) return existing;
    const v = this.input(`probe_in_${this.probeInputs.size}`, data, shape);
    this.probeInputs.set(data, v);
    return v;
  }

  /** Runs a captured input through `w` and exports the result under probe `name`. */
  probeLinear(name: string, w: LinearWeight, input: Float32Array, rows: number): void {
    const x = this.probeInput(input, [rows, w.weight.shape[1]!]);
    this.probes.set(name, { output: this.export(this.linear(w, x, false), 'probe_out') });
  }

  /**
   * The seed's BlockScaleQuantizeMixtralExperts for one projection over FP8 experts: rows of `x`
   * grouped by `routing` (indptr over `experts`, or expert_indices for a single token).
   */
  fp8Experts(experts: readonly Fp8Linear[], x: Value, routing: RoutingTensor): Value {
    const block = commonBlock(experts);
    const values: ExpertValues[] = experts.map((e) => {
      const v = this.fp8Values(e);
      return { w: v.w, wScaleInv: v.s };
    });
    return emitMixtralExperts(this.g, x, values, routing, block);
  }

  toBytes(): Uint8Array {
    return this.g.toBytes();
  }
}

function commonBlock(experts: readonly Fp8Linear[]): BlockShape {
  const block = experts[0]!.block;
  for (const e of experts) {
    if (e.block.bn !== block.bn || e.block.bk !== block.bk) {
      throw new ForwardGraphError(`experts ${experts[0]!.module} and ${e.module} have different block shapes`);
    }
  }
  return block;
}

export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new ForwardGraphError(`shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}
