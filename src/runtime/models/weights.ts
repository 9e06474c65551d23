// Weight loading for the forward: one place that knows how a checkpoint stores a linear layer.
// The FP8 layout (block size, scale names) comes from io/formats/quantized-format.ts, the reader inspect,
// dequant and convert --requantize use. `WeightScope.linear(prefix)` returns either a dense weight
// (BF16/F16/F32 bytes as stored) or an FP8 block-scale weight (codes + float32 dequantization multipliers + block shape), so the
// graphs and the reference never look at tensor names. New storage forms (compressed-tensors
// `weight_scale`, stacked experts, MLA w_uk/w_uv) are added here.
//
// Loads happen in scopes: a decoder layer opens a scope, loads what it needs, builds its graph
// and closes the scope. The accounting (bytes held now, peak) is how tests check that a forward
// holds about one decoder layer of weights at a time, never the whole model.

import type { BlockShape } from '../../fp8/block-quantize.js';
import { dtypeSize, isFloatSourceDtype, widenToFloat32, type Dtype, type FloatSourceDtype } from '../../fp8/dtypes.js';
import { decodeCodesToFloat32, type Fp8Format } from '../../fp8/formats.js';
import type { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import { CheckpointError } from '../../io/errors.js';
import { detectQuantizedFormat, type QuantizedFormat } from '../../io/formats/quantized-format.js';
import type { F32Tensor, Fp8Tensor } from '../ops/types.js';
import type { HostBufferPool } from './buffer-pool.js';

/** A floating-point tensor as stored (little-endian bytes of `dtype`). */
export interface StoredTensor {
  readonly name: string;
  readonly dtype: FloatSourceDtype;
  readonly shape: readonly number[];
  /** Empty once `decoded` is set: the read buffer went back to the pool. */
  readonly bytes: Uint8Array;
  /** The values as float32, when a decoding scope read the tensor (`WeightScope`, decodeInto). */
  readonly decoded?: Float32Array;
}

export interface DenseLinear {
  readonly kind: 'dense';
  readonly module: string;
  /** `[N, K]`. */
  readonly weight: StoredTensor;
  readonly bias: StoredTensor | undefined;
}

export interface Fp8Linear {
  readonly kind: 'fp8';
  readonly module: string;
  /** `[N, K]` codes; empty once `decoded` is set (the read buffer went back to the pool). */
  readonly weight: Fp8Tensor;
  /** The codes' float32 values `[N, K]` (without the block scales), when a decoding scope read them. */
  readonly decoded?: Float32Array;
  /** Dequantization multipliers `[ceil(N/bn), ceil(K/bk)]` (HF `weight_scale_inv`). */
  readonly scaleInv: F32Tensor;
  readonly block: BlockShape;
  readonly bias: StoredTensor | undefined;
  /**
   * Static activation scheme: `<module>.activation_scale`, one float32 per input group of bk
   * (`[ceil(K/bk)]`) or one for all (a 0-dim scalar, stored here as length 1). Undefined: dynamic
   * per-token activation quantization.
   */
  readonly activationScale?: Float32Array;
}

export type LinearWeight = DenseLinear | Fp8Linear;

export function linearShape(w: LinearWeight): [number, number] {
  const shape = w.weight.shape;
  return [shape[0]!, shape[1]!];
}

/** Bytes held and the peak, across every scope that shares this object. */
export class WeightAccounting {
  held = 0;
  peak = 0;

  add(bytes: number): void {
    this.held += bytes;
    if (this.held > this.peak) this.peak = this.held;
  }

  remove(bytes: number): void {
    this.held -= bytes;
  }
}

const FP8_DTYPES: Partial<Record<Dtype, Fp8Format>> = { F8_E4M3: 'e4m3fn', F8_E5M2: 'e5m2' };

/**
 * A decoder layer's tensor: the text model's prefix (`model.`, `model.language_model.`,
 * `language_model.model.` in multimodal checkpoints) and the layer index.
 */
const DECODER_LAYER = /^(.*?)\blayers\.(\d+)\./;

/** A routed expert's tensor: `…experts.<e>.…` or a stacked `…experts.<param>` (not `shared_experts.`). */
const ROUTED_EXPERTS = /\.experts\./;

export class ModelWeights {
  /** The checkpoint's FP8 layout (hf or compressed-tensors: block, scale names), from the one reader every command uses; undefined when unquantized. */
  readonly format: QuantizedFormat | undefined;
  readonly block: BlockShape | undefined;
  /** Whole tensors read so far, by name, once keepResident() is on: later scopes reuse them. */
  private resident: Map<string, Uint8Array> | undefined;

  /** Whole-tensor reads started ahead of need (readAhead), by tensor name. */
  private readonly ahead = new Map<string, { readonly bytes: Promise<Uint8Array>; readonly byteLength: number }>();
  /**
   * Read-ahead buffers taken from the pool, until a scope adopts them (and gives them back when it
   * closes): reading a layer ahead into fresh arrays cost a CUDA verify ~0.5 s of garbage collection
   * and the page faults of ~0.8 GB of new memory a layer (bench/NOTES.md).
   */
  private readonly aheadPooled = new WeakMap<ArrayBufferLike, Uint8Array>();
  /** The highest decoder layer whose tensors were read ahead. */
  private aheadLayer = -1;

  constructor(
    readonly checkpoint: Checkpoint,
    readonly accounting: WeightAccounting = new WeightAccounting(),
    /** Where scopes take the buffers they read into (given back when they close); none: fresh arrays. */
    readonly pool?: HostBufferPool,
    /**
     * Read decoder layer i+1's tensors (all but routed experts) while layer i runs. On CUDA the
     * forward is bound by reads and host→device copies, and onnxruntime-node's run blocks the main
     * thread: reads issued before it proceed during it. Costs one more layer of stored bytes.
     */
    readonly readAhead = false,
  ) {
    // Throws QuantizationConfigError (a CheckpointError) for a config fp8q cannot read or one the tensor names contradict.
    this.format = detectQuantizedFormat(checkpoint.config, checkpoint.tensorNames());
    this.block = this.format?.block;
  }

  /** The scale tensor beside FP8 tensor `weight` (`<m>.weight` → `<m>.weight_scale_inv`, `experts.down_proj` → `experts.down_proj_scale_inv`). */
  scaleOf(weight: string): string | undefined {
    if (!this.format) return undefined;
    const name = `${weight}${this.format.scaleSuffix.slice('weight'.length)}`;
    return this.checkpoint.has(name) ? name : undefined;
  }

  has(name: string): boolean {
    return this.checkpoint.has(name);
  }

  /**
   * From now on whole tensors are read from the checkpoint once and kept (generation's resident
   * mode: each decode step reuses the weights instead of reading them again). Row reads (lm_head
   * chunks, stacked experts, embedding rows) still go to the checkpoint. Not with a buffer pool,
   * whose buffers are reused after each scope.
   */
  keepResident(): void {
    if (this.pool !== undefined) throw new Error('resident weights cannot be read into pooled buffers');
    this.resident ??= new Map();
  }

  /**
   * @internal A whole tensor's bytes: from the resident set when kept, else read (or taken from the
   * read-ahead) into `into()` when given.
   */
  async readTensorBytes(name: string, into?: () => Uint8Array | undefined): Promise<Uint8Array> {
    if (this.resident === undefined) return this.readWhole(name, into);
    let bytes = this.resident.get(name);
    if (bytes === undefined) {
      bytes = await this.readWhole(name);
      this.resident.set(name, bytes);
    }
    return bytes;
  }

  hasLinear(module: string): boolean {
    return this.checkpoint.has(`${module}.weight`);
  }

  /**
   * A scope for a layer's or a chunk's weights. With `decodeInto`, every tensor but float32 ones is
   * decoded to float32 (into that pool's buffers) as soon as it is read and its read buffer goes
   * back at once, so the next tensor of the same size reuses it: a scope then holds its weights as
   * float32 plus one read buffer per tensor size, not every stored byte besides.
   */
  scope(options: { readonly decodeInto?: HostBufferPool } = {}): WeightScope {
    return new WeightScope(this, options.decodeInto);
  }

  /** Rows of a 2-D float tensor (embedding lookup) as float32 `[ids.length, cols]`. */
  async gatherRows(name: string, ids: ArrayLike<number>): Promise<Float32Array> {
    const info = this.checkpoint.info(name);
    if (!isFloatSourceDtype(info.dtype) || info.shape.length !== 2) {
      throw new CheckpointError(`${this.checkpoint.dir}: "${name}" is ${info.dtype} [${info.shape.join(', ')}]; expected a 2-D float embedding`);
    }
    const [rows, cols] = info.shape as [number, number];
    const out = new Float32Array(ids.length * cols);
    const cache = new Map<number, Float32Array>();
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= rows) {
        throw new CheckpointError(`token id ${id} at position ${i} is outside ${name} (${rows} rows)`);
      }
      let row = cache.get(id);
      if (row === undefined) {
        row = widenToFloat32(await this.checkpoint.readRows(name, id, 1), info.dtype);
        cache.set(id, row);
      }
      out.set(row, i * cols);
    }
    return out;
  }

  /**
   * A whole tensor's bytes: the read-ahead's when one was started, else read now into `into()`.
   * Reading a tensor of `<prefix>layers.N.` starts the read-ahead of layer N+1 under the same prefix.
   * @internal
   */
  private async readWhole(name: string, into?: () => Uint8Array | undefined): Promise<Uint8Array> {
    const started = this.ahead.get(name);
    this.startReadAhead(name);
    if (started) {
      this.ahead.delete(name);
      this.accounting.remove(started.byteLength);
      return started.bytes;
    }
    return this.checkpoint.readTensor(name, into?.());
  }

  private startReadAhead(name: string): void {
    if (!this.readAhead) return;
    const m = DECODER_LAYER.exec(name);
    if (!m) return;
    const next = Number(m[2]) + 1;
    if (next <= this.aheadLayer) return;
    this.aheadLayer = next;
    const prefix = `${m[1]}layers.${next}.`;
    // Routed experts are read only once routed (most are not, at few tokens): never ahead. Nor the
    // tensors of stacked experts (`experts.gate_up_proj`, its `_scale_inv`, gpt-oss's `_bias`):
    // they are read by rows, so a whole read ahead of them would never be taken, only held.
    for (const t of this.checkpoint.tensorNames()) {
      if (!t.startsWith(prefix) || ROUTED_EXPERTS.test(t)) continue;
      this.startRead(t);
    }
    // Layers already passed: whatever of them was not consumed is dropped.
    for (const [t, a] of this.ahead) {
      const layer = DECODER_LAYER.exec(t);
      if (layer && layer[1] === m[1] && Number(layer[2]) < next - 1) {
        this.ahead.delete(t);
        this.accounting.remove(a.byteLength);
        void a.bytes.then(
          (b) => {
            const pooled = this.adoptReadAhead(b);
            if (pooled) this.pool?.give([pooled]);
          },
          () => undefined,
        );
      }
    }
  }

  /**
   * Starts reading the whole tensors of these linears (weight, and scale when FP8) now, at once
   * (those within `maxBytes`), for a scope that will ask for them next: a MoE layer's routed experts, known only once the
   * router has run, were otherwise read one tensor after another with nothing else to do (a
   * DeepSeek-V3-shaped CUDA verify idled there most of its time, bench/NOTES.md). Only with
   * readAhead (on the CPU, whose scopes decode as they read, it adds nothing but memory).
   */
  prefetchLinears(modules: readonly string[], maxBytes = Number.POSITIVE_INFINITY): void {
    if (!this.readAhead) return;
    // `maxBytes` makes it a window: the leading linears whose bytes (those already in flight
    // included) fit, and at least the first. A MoE layer calls it again before each expert.
    let bytes = 0;
    for (const m of modules) {
      const weight = `${m}.weight`;
      if (!this.checkpoint.has(weight)) continue;
      const scale = this.scaleOf(weight);
      const size = this.checkpoint.info(weight).byteLength + (scale === undefined ? 0 : this.checkpoint.info(scale).byteLength);
      if (bytes > 0 && bytes + size > maxBytes) return;
      bytes += size;
      this.startRead(weight);
      if (scale !== undefined) this.startRead(scale);
    }
  }

  /** A whole-tensor read into a pool buffer, kept in `ahead` until readWhole takes it. */
  private startRead(name: string): void {
    if (this.ahead.has(name) || this.resident?.has(name)) return;
    const byteLength = this.checkpoint.info(name).byteLength;
    const into = this.pool?.bytes(byteLength);
    if (into) this.aheadPooled.set(into.buffer, into);
    const bytes = this.checkpoint.readTensor(name, into);
    // A read nobody consumes (or one that fails) must not become an unhandled rejection.
    bytes.catch(() => undefined);
    this.ahead.set(name, { bytes, byteLength });
    this.accounting.add(byteLength);
  }

  /**
   * @internal The pool's buffer behind `bytes` when they were read ahead into it and nobody has
   * adopted it yet; the caller adopts it (gives it back to the pool when done with the bytes).
   */
  adoptReadAhead(bytes: Uint8Array): Uint8Array | undefined {
    const pooled = this.aheadPooled.get(bytes.buffer);
    if (pooled !== undefined) this.aheadPooled.delete(bytes.buffer);
    return pooled;
  }

  /** @internal */
  async readStored(name: string, rows?: { start: number; count: number }, into?: (byteLength: number) => Uint8Array | undefined): Promise<StoredTensor> {
    const info = this.checkpoint.info(name);
    if (!isFloatSourceDtype(info.dtype)) {
      throw new CheckpointError(`${this.checkpoint.dir}: tensor "${name}" is ${info.dtype}; expected a float tensor (F32/F16/BF16)`);
    }
    if (rows === undefined) return { name, dtype: info.dtype, shape: info.shape, bytes: await this.readTensorBytes(name, () => into?.(info.byteLength)) };
    const rowBytes = info.shape[0] ? info.byteLength / info.shape[0] : 0;
    const bytes = await this.checkpoint.readRows(name, rows.start, rows.count, into?.(rowBytes * rows.count));
    return { name, dtype: info.dtype, shape: [rows.count, ...info.shape.slice(1)], bytes };
  }

  /** The block shape of one FP8 weight: the config's, checked against the scale grid. */
  blockFor(module: string, n: number, k: number, scaleShape: readonly number[]): BlockShape {
    const block = this.block;
    if (block === undefined) throw new CheckpointError(`${this.checkpoint.dir}: ${module} is FP8 but config.json has no quantization_config, so its block size is unknown`);
    // One scale for the whole matrix (some exporters write per-tensor scales): a single block covers it.
    if (scaleShape.every((d) => d === 1) && (scaleShape.length === 0 || n > block.bn || k > block.bk)) return { bn: n, bk: k };
    const expected = [Math.ceil(n / block.bn), Math.ceil(k / block.bk)];
    if (scaleShape.length !== 2 || scaleShape[0] !== expected[0] || scaleShape[1] !== expected[1]) {
      throw new CheckpointError(
        `${this.checkpoint.dir}: ${module} has weight [${n}, ${k}] and scale [${scaleShape.join(', ')}], which does not match ` +
          `quantization_config's block [${block.bn}, ${block.bk}] (expected [${expected.join(', ')}])`,
      );
    }
    return block;
  }
}

const EMPTY = new Uint8Array(0);

export class WeightScope {
  private bytes = 0;
  private closed = false;
  /** Buffers taken from the weights' pool; given back at close(). */
  private readonly pooled: Uint8Array[] = [];
  /** Float32 buffers taken from decodeInto; given back at close(). */
  private readonly decodedBuffers: Float32Array[] = [];

  constructor(
    private readonly weights: ModelWeights,
    /** Where tensors are decoded to float32 as they are read (see ModelWeights.scope); none: kept as stored. */
    private readonly decodeInto?: HostBufferPool,
  ) {}

  /** The read buffer behind `bytes` back to the weights' pool now (it was taken for this scope). */
  private giveBack(bytes: Uint8Array): void {
    const i = this.pooled.findIndex((b) => b.buffer === bytes.buffer);
    if (i < 0) return;
    const [b] = this.pooled.splice(i, 1);
    this.weights.pool?.give([b!]);
  }

  private float32(length: number): Float32Array {
    if (this.decodeInto === undefined) return new Float32Array(length);
    const out = this.decodeInto.float32(length);
    this.decodedBuffers.push(out);
    return out;
  }

  /** `t` decoded to float32 when this scope decodes (float32 tensors stay as read: they need no copy). */
  private decodeStored(t: StoredTensor): StoredTensor {
    if (this.decodeInto === undefined || t.dtype === 'F32') return t;
    const decoded = widenToFloat32(t.bytes, t.dtype, this.float32(t.bytes.byteLength / dtypeSize(t.dtype)));
    this.giveBack(t.bytes);
    return { ...t, bytes: EMPTY, decoded };
  }

  /** An FP8 linear's codes decoded to their float32 values (Cast's, by table) when this scope decodes. */
  private decodeFp8(w: Fp8Linear, readBuffer: Uint8Array): Fp8Linear {
    if (this.decodeInto === undefined) return w;
    const codes = w.weight.codes;
    const decoded = decodeCodesToFloat32(codes, w.weight.format, this.float32(codes.length));
    this.giveBack(readBuffer);
    return { ...w, weight: { ...w.weight, codes: EMPTY }, decoded };
  }

  /** A buffer to read `byteLength` bytes into: the pool's when there is one, else undefined (fresh). */
  private readonly buffer = (byteLength: number): Uint8Array | undefined => {
    const pool = this.weights.pool;
    if (pool === undefined) return undefined;
    const b = pool.bytes(byteLength);
    this.pooled.push(b);
    return b;
  };

  /** A pooled read-ahead buffer becomes this scope's, given back like the ones it took itself. */
  private adoptBytes(bytes: Uint8Array): Uint8Array {
    const pooled = this.weights.adoptReadAhead(bytes);
    if (pooled !== undefined) this.pooled.push(pooled);
    return bytes;
  }

  private adopt(t: StoredTensor): StoredTensor {
    this.adoptBytes(t.bytes);
    return t;
  }

  private count(n: number): void {
    if (this.closed) throw new Error('weight scope is closed');
    this.bytes += n;
    this.weights.accounting.add(n);
  }

  async tensor(name: string): Promise<StoredTensor> {
    const t = this.adopt(await this.weights.readStored(name, undefined, this.buffer));
    this.count(t.bytes.byteLength);
    return this.decodeStored(t);
  }

  async optionalTensor(name: string): Promise<StoredTensor | undefined> {
    return this.weights.has(name) ? this.tensor(name) : undefined;
  }

  /** A 1-D float tensor widened to float32 (router bias). */
  async vector(name: string): Promise<Float32Array> {
    const t = await this.tensor(name);
    return t.decoded ? t.decoded.slice() : widenToFloat32(t.bytes, t.dtype);
  }

  /**
   * The linear layer `module` (`<module>.weight`, optional `.bias`), dense or FP8. With `rows`,
   * only those output rows of a dense weight (lm_head chunks).
   */
  async linear(module: string, rows?: { start: number; count: number }): Promise<LinearWeight> {
    const ckpt = this.weights.checkpoint;
    const name = `${module}.weight`;
    if (!ckpt.has(name)) throw new CheckpointError(`${ckpt.dir}: no tensor "${name}": the checkpoint does not match its config.json`);
    const info = ckpt.info(name);
    if (info.shape.length !== 2) throw new CheckpointError(`${ckpt.dir}: "${name}" is [${info.shape.join(', ')}]; a linear weight is [N, K]`);
    if (ckpt.has(`${module}.input_scale`)) {
      throw new CheckpointError(`${ckpt.dir}: ${module} has a compressed-tensors static input_scale; the forward reads static scales as HF/MLC activation_scale only`);
    }
    const biasName = `${module}.bias`;
    const format = FP8_DTYPES[info.dtype];
    if (format === undefined) {
      const weight = this.adopt(await this.weights.readStored(name, rows, this.buffer));
      this.count(weight.bytes.byteLength);
      const bias = ckpt.has(biasName) ? await this.tensor(biasName) : undefined;
      if (rows !== undefined && bias !== undefined) throw new CheckpointError(`${ckpt.dir}: row chunks of a linear with a bias are not supported (${module})`);
      return { kind: 'dense', module, weight: this.decodeStored(weight), bias };
    }
    if (rows !== undefined) throw new CheckpointError(`${ckpt.dir}: ${module} is FP8; it cannot be read in row chunks`);
    const scaleName = this.weights.scaleOf(name);
    if (scaleName === undefined) {
      const expected = this.weights.format ? `${module}.${this.weights.format.scaleSuffix}` : `${module}.weight_scale_inv (and a quantization_config)`;
      throw new CheckpointError(`${ckpt.dir}: ${name} is ${info.dtype} but there is no ${expected}`);
    }
    const scaleInfo = ckpt.info(scaleName);
    if (!isFloatSourceDtype(scaleInfo.dtype)) throw new CheckpointError(`${ckpt.dir}: ${scaleName} is ${scaleInfo.dtype}; expected F32`);
    const [n, k] = info.shape as [number, number];
    const block = this.weights.blockFor(module, n, k, scaleInfo.shape);
    const codes = this.adoptBytes(await this.weights.readTensorBytes(name, () => this.buffer(info.byteLength)));
    // A scale read ahead lies in a pool buffer too: adopted, and given back once copied out.
    const scaleBytes = this.adoptBytes(await this.weights.readTensorBytes(scaleName));
    this.count(codes.byteLength + scaleBytes.byteLength);
    const scale = widenToFloat32(scaleBytes, scaleInfo.dtype, new Float32Array(scaleBytes.byteLength / dtypeSize(scaleInfo.dtype)));
    this.giveBack(scaleBytes);
    const bias = ckpt.has(biasName) ? await this.tensor(biasName) : undefined;
    const activationScale = await this.activationScale(module, Math.ceil(k / block.bk));
    return this.decodeFp8(
      {
        kind: 'fp8',
        module,
        weight: { codes, shape: [n, k], format },
        scaleInv: { data: scale, shape: [Math.ceil(n / block.bn), Math.ceil(k / block.bk)] },
        block,
        bias,
        ...(activationScale === undefined ? {} : { activationScale }),
      },
      codes,
    );
  }

  private async activationScale(module: string, groups: number): Promise<Float32Array | undefined> {
    const ckpt = this.weights.checkpoint;
    const name = `${module}.activation_scale`;
    if (!ckpt.has(name)) return undefined;
    const info = ckpt.info(name);
    const length = info.shape.reduce((a, b) => a * b, 1);
    if (!isFloatSourceDtype(info.dtype) || info.shape.length > 1 || (length !== groups && length !== 1)) {
      throw new CheckpointError(`${ckpt.dir}: ${name} is ${info.dtype} [${info.shape.join(', ')}]; expected F32 [${groups}] (one per input group) or a scalar`);
    }
    const t = await this.tensor(name);
    return t.decoded ? t.decoded.slice() : widenToFloat32(t.bytes, t.dtype);
  }

  /**
   * Expert `expert` of a stacked `[E, N, K]` expert tensor (`<experts>.gate_up_proj`,
   * `<experts>.down_proj`, as `fp8q convert --stack-experts` and transformers 5 write them), with
   * its `[E, nb, kb]` `<tensor>_scale_inv` slice when FP8. Reads only that expert's bytes.
   */
  async stackedExpert(tensor: string, expert: number, inOut = false): Promise<LinearWeight> {
    const ckpt = this.weights.checkpoint;
    const info = ckpt.info(tensor);
    if (info.shape.length !== 3 || expert >= info.shape[0]!) {
      throw new CheckpointError(`${ckpt.dir}: "${tensor}" is [${info.shape.join(', ')}]; expected stacked experts [E, N, K] with expert ${expert}`);
    }
    // In × out ([E, K, N], gpt-oss) is read as its [N, K] transpose; its scales are [E, ceil(N/bn), ceil(K/bk)] either way.
    const [n, k] = inOut ? [info.shape[2]!, info.shape[1]!] : [info.shape[1]!, info.shape[2]!];
    const module = `${tensor}.${expert}`;
    const stored = await ckpt.readRows(tensor, expert, 1, this.buffer(info.byteLength / info.shape[0]!));
    const bytes = inOut ? transposeBytes(stored, k, n, stored.byteLength / (n * k)) : stored;
    const format = FP8_DTYPES[info.dtype];
    if (format === undefined) {
      if (!isFloatSourceDtype(info.dtype)) throw new CheckpointError(`${ckpt.dir}: "${tensor}" is ${info.dtype}; expected a float or FP8 tensor`);
      this.count(bytes.byteLength);
      const weight = this.decodeStored({ name: module, dtype: info.dtype, shape: [n, k], bytes });
      if (weight.decoded !== undefined) this.giveBack(stored);
      return { kind: 'dense', module, weight, bias: undefined };
    }
    const scaleName = this.weights.scaleOf(tensor);
    if (scaleName === undefined) throw new CheckpointError(`${ckpt.dir}: ${tensor} is ${info.dtype} but there is no ${tensor}_scale_inv (or _scale, with a quantization_config)`);
    const scaleInfo = ckpt.info(scaleName);
    if (!isFloatSourceDtype(scaleInfo.dtype) || scaleInfo.shape.length !== 3) {
      throw new CheckpointError(`${ckpt.dir}: ${scaleName} is ${scaleInfo.dtype} [${scaleInfo.shape.join(', ')}]; expected F32 [E, nb, kb]`);
    }
    const block = this.weights.blockFor(tensor, n, k, scaleInfo.shape.slice(1));
    const scaleBytes = await ckpt.readRows(scaleName, expert, 1);
    this.count(bytes.byteLength + scaleBytes.byteLength);
    return this.decodeFp8(
      {
        kind: 'fp8',
        module,
        weight: { codes: bytes, shape: [n, k], format },
        scaleInv: { data: widenToFloat32(scaleBytes, scaleInfo.dtype), shape: scaleInfo.shape.slice(1) },
        block,
        bias: undefined,
      },
      stored,
    );
  }

  /** Expert `expert`'s row of a stacked bias `[E, N]` (gpt-oss's `gate_up_proj_bias`), or undefined when absent. */
  async stackedBias(tensor: string, expert: number): Promise<StoredTensor | undefined> {
    const ckpt = this.weights.checkpoint;
    if (!ckpt.has(tensor)) return undefined;
    const info = ckpt.info(tensor);
    if (!isFloatSourceDtype(info.dtype) || info.shape.length !== 2)
      throw new CheckpointError(`${ckpt.dir}: "${tensor}" is ${info.dtype} [${info.shape.join(', ')}]; expected a float [E, N] bias`);
    const bytes = await ckpt.readRows(tensor, expert, 1);
    this.count(bytes.byteLength);
    return { name: `${tensor}.${expert}`, dtype: info.dtype, shape: [info.shape[1]!], bytes };
  }

  /**
   * Releases the scope's share of the accounting; the arrays go when nothing references them, or,
   * with a pool, back to the pool — so nothing read in a scope may be used after it closes.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.weights.pool?.give(this.pooled);
    this.pooled.length = 0;
    this.decodeInto?.give(this.decodedBuffers);
    this.decodedBuffers.length = 0;
    this.weights.accounting.remove(this.bytes);
    this.bytes = 0;
  }
}

/** `[rows, cols]` elements of `size` bytes → `[cols, rows]`. */
function transposeBytes(src: Uint8Array, rows: number, cols: number, size: number): Uint8Array {
  const out = new Uint8Array(src.byteLength);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const from = (r * cols + c) * size;
      const to = (c * rows + r) * size;
      for (let b = 0; b < size; b++) out[to + b] = src[from + b]!;
    }
  }
  return out;
}
