// Weight loading for the forward: one place that knows how a checkpoint stores a linear layer.
// `WeightScope.linear(prefix)` returns either a dense weight (BF16/F16/F32 bytes as stored) or an
// FP8 block-scale weight (codes + float32 dequantization multipliers + block shape), so the
// graphs and the reference never look at tensor names. New storage forms (compressed-tensors
// `weight_scale`, stacked experts, MLA w_uk/w_uv) are added here.
//
// Loads happen in scopes: a decoder layer opens a scope, loads what it needs, builds its graph
// and closes the scope. The accounting (bytes held now, peak) is how tests check that a forward
// holds about one decoder layer of weights at a time, never the whole model.

import type { BlockShape } from '../../fp8/block-quantize.js';
import { dtypeSize, isFloatSourceDtype, widenToFloat32, type Dtype, type FloatSourceDtype } from '../../fp8/dtypes.js';
import type { Fp8Format } from '../../fp8/formats.js';
import type { Checkpoint, ModelConfig } from '../../io/checkpoint.js';
import { CheckpointError } from '../../io/errors.js';
import type { F32Tensor, Fp8Tensor } from '../ops/types.js';
import type { HostBufferPool } from './buffer-pool.js';

/** A floating-point tensor as stored (little-endian bytes of `dtype`). */
export interface StoredTensor {
  readonly name: string;
  readonly dtype: FloatSourceDtype;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
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
  /** `[N, K]` codes. */
  readonly weight: Fp8Tensor;
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

/** Block shape from `quantization_config` (HF fp8 `weight_block_size`, or compressed-tensors `block_structure`). */
export function configuredBlock(config: ModelConfig | undefined): BlockShape | undefined {
  const qc = config?.['quantization_config'];
  if (typeof qc !== 'object' || qc === null) return undefined;
  const q = qc as Record<string, unknown>;
  const fromPair = (v: unknown): BlockShape | undefined =>
    Array.isArray(v) && v.length === 2 && v.every((d) => Number.isSafeInteger(d) && (d as number) > 0)
      ? { bn: v[0] as number, bk: v[1] as number }
      : undefined;
  const direct = fromPair(q['weight_block_size']);
  if (direct) return direct;
  const groups = q['config_groups'];
  if (typeof groups === 'object' && groups !== null) {
    for (const group of Object.values(groups as Record<string, unknown>)) {
      const weights = (group as Record<string, unknown> | null)?.['weights'];
      const b = fromPair((weights as Record<string, unknown> | null | undefined)?.['block_structure']);
      if (b) return b;
    }
  }
  return undefined;
}

export class ModelWeights {
  readonly block: BlockShape | undefined;
  /** Whole tensors read so far, by name, once keepResident() is on: later scopes reuse them. */
  private resident: Map<string, Uint8Array> | undefined;

  constructor(
    readonly checkpoint: Checkpoint,
    readonly accounting: WeightAccounting = new WeightAccounting(),
    /** Where scopes take the buffers they read into (given back when they close); none: fresh arrays. */
    readonly pool?: HostBufferPool,
  ) {
    this.block = configuredBlock(checkpoint.config);
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

  /** @internal A whole tensor's bytes: from the resident set when kept, else read (into `into` when given). */
  async readTensorBytes(name: string, into?: Uint8Array): Promise<Uint8Array> {
    if (this.resident === undefined) return this.checkpoint.readTensor(name, into);
    let bytes = this.resident.get(name);
    if (bytes === undefined) {
      bytes = await this.checkpoint.readTensor(name);
      this.resident.set(name, bytes);
    }
    return bytes;
  }

  hasLinear(module: string): boolean {
    return this.checkpoint.has(`${module}.weight`);
  }

  scope(): WeightScope {
    return new WeightScope(this);
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

  /** @internal */
  async readStored(name: string, rows?: { start: number; count: number }, into?: (byteLength: number) => Uint8Array | undefined): Promise<StoredTensor> {
    const info = this.checkpoint.info(name);
    if (!isFloatSourceDtype(info.dtype)) {
      throw new CheckpointError(`${this.checkpoint.dir}: tensor "${name}" is ${info.dtype}; expected a float tensor (F32/F16/BF16)`);
    }
    if (rows === undefined) return { name, dtype: info.dtype, shape: info.shape, bytes: await this.readTensorBytes(name, into?.(info.byteLength)) };
    const rowBytes = info.shape[0] ? info.byteLength / info.shape[0] : 0;
    const bytes = await this.checkpoint.readRows(name, rows.start, rows.count, into?.(rowBytes * rows.count));
    return { name, dtype: info.dtype, shape: [rows.count, ...info.shape.slice(1)], bytes };
  }

  /** The block shape of one FP8 weight: the config's, checked against the scale grid. */
  blockFor(module: string, n: number, k: number, scaleShape: readonly number[]): BlockShape {
    if (scaleShape.length === 0 || (scaleShape.length <= 2 && scaleShape.every((d) => d === 1) && this.block === undefined)) {
      return { bn: n, bk: k }; // one per-tensor scale: a single block covers the matrix
    }
    const block = this.block ?? { bn: 128, bk: 128 };
    const expected = [Math.ceil(n / block.bn), Math.ceil(k / block.bk)];
    if (scaleShape.length !== 2 || scaleShape[0] !== expected[0] || scaleShape[1] !== expected[1]) {
      throw new CheckpointError(
        `${this.checkpoint.dir}: ${module} has weight [${n}, ${k}] and scale [${scaleShape.join(', ')}], which does not match ` +
          `${this.block ? `quantization_config's weight_block_size [${block.bn}, ${block.bk}]` : 'the default [128, 128] blocks (config.json has no weight_block_size)'} ` +
          `(expected [${expected.join(', ')}])`,
      );
    }
    return block;
  }
}

/** Scale tensor names, in lookup order: HF fp8 (`weight_scale_inv`), compressed-tensors (`weight_scale`). */
const SCALE_SUFFIXES = ['weight_scale_inv', 'weight_scale'] as const;

export class WeightScope {
  private bytes = 0;
  private closed = false;
  /** Buffers taken from the weights' pool; given back at close(). */
  private readonly pooled: Uint8Array[] = [];

  constructor(private readonly weights: ModelWeights) {}

  /** A buffer to read `byteLength` bytes into: the pool's when there is one, else undefined (fresh). */
  private readonly buffer = (byteLength: number): Uint8Array | undefined => {
    const pool = this.weights.pool;
    if (pool === undefined) return undefined;
    const b = pool.bytes(byteLength);
    this.pooled.push(b);
    return b;
  };

  private count(n: number): void {
    if (this.closed) throw new Error('weight scope is closed');
    this.bytes += n;
    this.weights.accounting.add(n);
  }

  async tensor(name: string): Promise<StoredTensor> {
    const t = await this.weights.readStored(name, undefined, this.buffer);
    this.count(t.bytes.byteLength);
    return t;
  }

  async optionalTensor(name: string): Promise<StoredTensor | undefined> {
    return this.weights.has(name) ? this.tensor(name) : undefined;
  }

  /** A 1-D float tensor widened to float32 (router bias). */
  async vector(name: string): Promise<Float32Array> {
    const t = await this.tensor(name);
    return widenToFloat32(t.bytes, t.dtype);
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
      throw new CheckpointError(
        `${ckpt.dir}: ${module} has a compressed-tensors static input_scale; the forward reads static scales as HF/MLC activation_scale only`,
      );
    }
    const biasName = `${module}.bias`;
    const format = FP8_DTYPES[info.dtype];
    if (format === undefined) {
      const weight = await this.weights.readStored(name, rows, this.buffer);
      this.count(weight.bytes.byteLength);
      const bias = ckpt.has(biasName) ? await this.tensor(biasName) : undefined;
      if (rows !== undefined && bias !== undefined) throw new CheckpointError(`${ckpt.dir}: row chunks of a linear with a bias are not supported (${module})`);
      return { kind: 'dense', module, weight, bias };
    }
    if (rows !== undefined) throw new CheckpointError(`${ckpt.dir}: ${module} is FP8; it cannot be read in row chunks`);
    const scaleName = SCALE_SUFFIXES.map((s) => `${module}.${s}`).find((n) => ckpt.has(n));
    if (scaleName === undefined) {
      throw new CheckpointError(`${ckpt.dir}: ${name} is ${info.dtype} but there is no ${module}.weight_scale_inv (or .weight_scale)`);
    }
    const scaleInfo = ckpt.info(scaleName);
    if (!isFloatSourceDtype(scaleInfo.dtype)) throw new CheckpointError(`${ckpt.dir}: ${scaleName} is ${scaleInfo.dtype}; expected F32`);
    const [n, k] = info.shape as [number, number];
    const block = this.weights.blockFor(module, n, k, scaleInfo.shape);
    const codes = await this.weights.readTensorBytes(name, this.buffer(info.byteLength));
    const scaleBytes = await this.weights.readTensorBytes(scaleName);
    this.count(codes.byteLength + scaleBytes.byteLength);
    const scale = widenToFloat32(scaleBytes, scaleInfo.dtype, new Float32Array(scaleBytes.byteLength / dtypeSize(scaleInfo.dtype)));
    const bias = ckpt.has(biasName) ? await this.tensor(biasName) : undefined;
    const activationScale = await this.activationScale(module, Math.ceil(k / block.bk));
    return {
      kind: 'fp8',
      module,
      weight: { codes, shape: [n, k], format },
      scaleInv: { data: scale, shape: [Math.ceil(n / block.bn), Math.ceil(k / block.bk)] },
      block,
      bias,
      ...(activationScale === undefined ? {} : { activationScale }),
    };
  }

  private async activationScale(module: string, groups: number): Promise<Float32Array | undefined> {
    const ckpt = this.weights.checkpoint;
    const name = `${module}.activation_scale`;
    if (!ckpt.has(name)) return undefined;
    const info = ckpt.info(name);
    const length = info.shape.reduce((a, b) => a * b, 1);
    if (!isFloatSourceDtype(info.dtype) || info.shape.length > 1 || (length !== groups && length !== 1)) {
      throw new CheckpointError(
        `${ckpt.dir}: ${name} is ${info.dtype} [${info.shape.join(', ')}]; expected F32 [${groups}] (one per input group) or a scalar`,
      );
    }
    const t = await this.tensor(name);
    return widenToFloat32(t.bytes, t.dtype);
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
      return { kind: 'dense', module, weight: { name: module, dtype: info.dtype, shape: [n, k], bytes }, bias: undefined };
    }
    const scaleName = [`${tensor}_scale_inv`, `${tensor}_scale`].find((s) => ckpt.has(s));
    if (scaleName === undefined) throw new CheckpointError(`${ckpt.dir}: ${tensor} is ${info.dtype} but there is no ${tensor}_scale_inv`);
    const scaleInfo = ckpt.info(scaleName);
    if (!isFloatSourceDtype(scaleInfo.dtype) || scaleInfo.shape.length !== 3) {
      throw new CheckpointError(`${ckpt.dir}: ${scaleName} is ${scaleInfo.dtype} [${scaleInfo.shape.join(', ')}]; expected F32 [E, nb, kb]`);
    }
    const block = this.weights.blockFor(tensor, n, k, scaleInfo.shape.slice(1));
    const scaleBytes = await ckpt.readRows(scaleName, expert, 1);
    this.count(bytes.byteLength + scaleBytes.byteLength);
    return {
      kind: 'fp8',
      module,
      weight: { codes: bytes, shape: [n, k], format },
      scaleInv: { data: widenToFloat32(scaleBytes, scaleInfo.dtype), shape: scaleInfo.shape.slice(1) },
      block,
      bias: undefined,
    };
  }

  /** Expert `expert`'s row of a stacked bias `[E, N]` (gpt-oss's `gate_up_proj_bias`), or undefined when absent. */
  async stackedBias(tensor: string, expert: number): Promise<StoredTensor | undefined> {
    const ckpt = this.weights.checkpoint;
    if (!ckpt.has(tensor)) return undefined;
    const info = ckpt.info(tensor);
    if (!isFloatSourceDtype(info.dtype) || info.shape.length !== 2) throw new CheckpointError(`${ckpt.dir}: "${tensor}" is ${info.dtype} [${info.shape.join(', ')}]; expected a float [E, N] bias`);
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
