// Host-side tensor shapes shared by the op references and the graph emitters, and the small
// graph fragments several ops need (casts, padding a last axis to whole groups, block-scale
// expansion). Graph fragments here emit only Cast/Reshape/Transpose on FP8 values: onnxruntime
// 1.29 rejects FP8 inputs to Gather, Slice and Pad at opset 21, so slicing and padding happen in
// float32.

import { decodeTableFor, fp8FormatInfo, type BlockShape, type Fp8Format } from '../../fp8/index.js';
import { DataType, type Fp8DataType } from '../onnx/data-type.js';
import { attr, GraphBuildError, type Attribute, type Dim, type GraphBuilder, type Value } from '../onnx/graph-builder.js';

export type { BlockShape, Fp8Format };

/** A float32 tensor on the host, row-major. */
export interface F32Tensor {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

/** FP8 codes on the host, row-major, one byte per element. */
export interface Fp8Tensor {
  readonly codes: Uint8Array;
  readonly shape: readonly number[];
  readonly format: Fp8Format;
}

export class OpShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OpShapeError';
  }
}

export function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

export function product(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function fp8DataType(format: Fp8Format): Fp8DataType {
  return format === 'e4m3fn' ? DataType.FLOAT8E4M3FN : DataType.FLOAT8E5M2;
}

export function fp8FormatOf(dtype: DataType, what: string): Fp8Format {
  if (dtype === DataType.FLOAT8E4M3FN) return 'e4m3fn';
  if (dtype === DataType.FLOAT8E5M2) return 'e5m2';
  throw new GraphBuildError(`${what} must be FLOAT8E4M3FN or FLOAT8E5M2, got data type ${dtype}`);
}

/**
 * An FP8 weight already decoded to float32 inside the graph: a float32 Value holding exactly the
 * FP8 values, that remembers its format (the activations are quantized into the weight's format).
 * The ops accept it wherever they take an FP8 weight Value; their Cast to float is then a no-op.
 */
export interface DecodedFp8Value extends Value {
  readonly fp8Format: Fp8Format;
}

function isDecodedFp8(v: Value): v is DecodedFp8Value {
  return (v as Partial<DecodedFp8Value>).fp8Format !== undefined;
}

/** The FP8 format of a weight Value: an FP8-typed value, or a decoded one. */
export function weightFp8Format(w: Value, what: string): Fp8Format {
  return isDecodedFp8(w) ? w.fp8Format : fp8FormatOf(w.dtype, what);
}

/** The 256-entry float32 decode table of `format` as an initializer (one per graph is enough). */
export function emitFp8DecodeTable(g: GraphBuilder, format: Fp8Format): Value {
  return g.constFloat32(decodeTableFor(format), [256], `${format}_decode`);
}

/**
 * FP8 codes fed as uint8 → their float32 values, by table lookup: Cast to int32, Gather from the
 * 256-entry decode table (the same values as Cast(FP8 → float), NaN codes included). onnxruntime-node
 * cannot feed FP8 tensors, and Gather's indices must be int32/int64 (CPU and CUDA kernels).
 */
export function emitDecodeFp8Codes(g: GraphBuilder, codes: Value, format: Fp8Format, table: Value = emitFp8DecodeTable(g, format)): DecodedFp8Value {
  if (codes.dtype !== DataType.UINT8) throw new GraphBuildError(`FP8 codes "${codes.name}" must be uint8, got data type ${codes.dtype}`);
  const index = g.op('Cast', [codes], { dtype: DataType.INT32, shape: codes.shape, name: `${codes.name}_index` }, { to: attr.int(DataType.INT32) });
  const decoded = g.op('Gather', [table, index], { dtype: DataType.FLOAT, shape: codes.shape, name: `${codes.name}_decoded` }, { axis: attr.int(0) });
  return { ...decoded, fp8Format: format };
}

export function fp8Max(format: Fp8Format): number {
  return fp8FormatInfo(format).max;
}

export function checkBlock(block: BlockShape): void {
  if (!Number.isInteger(block.bn) || !Number.isInteger(block.bk) || block.bn <= 0 || block.bk <= 0) {
    throw new OpShapeError(`block must be positive integers, got [${block.bn}, ${block.bk}]`);
  }
}

export function checkSize(what: string, shape: readonly number[], length: number): void {
  if (product(shape) !== length) {
    throw new OpShapeError(`${what}: shape [${shape.join(', ')}] needs ${product(shape)} elements, got ${length}`);
  }
}

/** The static last dimension of a graph value; the ops need it to lay out groups. */
export function staticLastDim(v: Value, what: string): number {
  const k = v.shape[v.shape.length - 1];
  if (typeof k !== 'number') {
    throw new GraphBuildError(`${what} "${v.name}" needs a static last dimension, got [${v.shape.join(', ')}]`);
  }
  return k;
}

export function staticDims(v: Value, what: string): number[] {
  return v.shape.map((d) => {
    if (typeof d !== 'number') throw new GraphBuildError(`${what} "${v.name}" needs a static shape, got [${v.shape.join(', ')}]`);
    return d;
  });
}

export function emitCast(g: GraphBuilder, v: Value, to: DataType, saturate?: boolean): Value {
  if (v.dtype === to) return v;
  const attrs: Record<string, Attribute> = { to: attr.int(to) };
  // saturate is only legal on casts to FP8.
  if (saturate !== undefined) attrs['saturate'] = attr.int(saturate ? 1 : 0);
  return g.op('Cast', [v], { dtype: to, shape: v.shape, name: `${v.name}_cast` }, attrs);
}

export function emitReshape(g: GraphBuilder, v: Value, target: readonly number[], shape: readonly Dim[]): Value {
  return g.op('Reshape', [v, g.constInt64([...target])], { dtype: v.dtype, shape, name: `${v.name}_reshape` });
}

export function emitTranspose(g: GraphBuilder, v: Value, perm: readonly number[]): Value {
  const shape = perm.map((p) => v.shape[p]!);
  return g.op('Transpose', [v], { dtype: v.dtype, shape, name: `${v.name}_t` }, { perm: attr.ints(perm) });
}

/** Zero-pads the last axis of a float value to `to` elements (no node when already that long). */
export function emitPadLastAxis(g: GraphBuilder, v: Value, to: number): Value {
  const k = staticLastDim(v, 'padded value');
  if (k === to) return v;
  const shape = [...v.shape.slice(0, -1), to];
  return g.op('Pad', [v, g.constInt64([0, to - k]), null, g.constInt64([-1])], { dtype: v.dtype, shape, name: `${v.name}_pad` });
}

/** Keeps the first `count` elements along `axis` (no node when that is all of it). */
export function emitSliceAxis(g: GraphBuilder, v: Value, axis: number, count: number): Value {
  const rank = v.shape.length;
  const a = axis < 0 ? axis + rank : axis;
  if (v.shape[a] === count) return v;
  const shape = v.shape.map((d, i) => (i === a ? count : d));
  return g.op('Slice', [v, g.constInt64([0]), g.constInt64([count]), g.constInt64([a])], {
    dtype: v.dtype,
    shape,
    name: `${v.name}_slice`,
  });
}

/**
 * A matrix `[rows, cols]` and its block-scale grid `[ceil(rows/bn), ceil(cols/bk)]` as views that
 * broadcast against each other, for an elementwise op per block (dequantize: Mul; re-quantize:
 * Div): `blocks`, the matrix as float32 zero-padded to whole blocks, `[nb, bn, kb, bk]`; `scales`,
 * the grid as float32 `[nb, 1, kb, 1]`; `unblock`, a value of the blocked shape back to `[rows, cols]`
 * (the padding cut off). The same `scale[i / bn, j / bk]` indexing as the references, nothing
 * expanded to a full `[rows, cols]` scale.
 */
export function emitBlockViews(g: GraphBuilder, matrix: Value, scale: Value, block: BlockShape): { blocks: Value; scales: Value; unblock: (v: Value) => Value } {
  const dims = staticDims(matrix, 'blocked matrix');
  if (dims.length !== 2) throw new GraphBuildError(`"${matrix.name}" must be a matrix, got [${dims.join(', ')}]`);
  const [rows, cols] = dims as [number, number];
  const [nb, kb] = [ceilDiv(rows, block.bn), ceilDiv(cols, block.bk)];
  const [gr, gc] = staticDims(scale, 'block scale');
  if (scale.shape.length !== 2 || gr !== nb || gc !== kb) {
    throw new GraphBuildError(
      `block scale "${scale.name}" is [${scale.shape.join(', ')}], expected [${nb}, ${kb}] ` + `for a [${rows}, ${cols}] matrix in [${block.bn}, ${block.bk}] blocks`,
    );
  }
  const [paddedRows, paddedCols] = [nb * block.bn, kb * block.bk];
  const values = emitCast(g, matrix, DataType.FLOAT);
  const padded =
    paddedRows === rows && paddedCols === cols
      ? values
      : g.op('Pad', [values, g.constInt64([0, 0, paddedRows - rows, paddedCols - cols])], {
          dtype: DataType.FLOAT,
          shape: [paddedRows, paddedCols],
          name: `${matrix.name}_pad_blocks`,
        });
  const blockShape = [nb, block.bn, kb, block.bk];
  return {
    blocks: emitReshape(g, padded, blockShape, blockShape),
    scales: emitReshape(g, emitCast(g, scale, DataType.FLOAT), [nb, 1, kb, 1], [nb, 1, kb, 1]),
    unblock: (v) => emitSliceAxis(g, emitSliceAxis(g, emitReshape(g, v, [paddedRows, paddedCols], [paddedRows, paddedCols]), 0, rows), 1, cols),
  };
}

/**
 * How a graph lays out an FP8 linear's product. Default, the per-block form: one dot product per
 * K block, scaled and summed over the blocks, as the block-scale kernels round (block-scale-gemm.ts).
 * With `dequantizedWeight` (the float32 `[N, K]` of emitDequantizeBlockWeight, emitted once and
 * shared by every linear of the graph on that weight), both operands are dequantized in float32
 * and multiplied by one MatMul: the same sums up to float32 rounding (~1e-7 relative), without the
 * `[kb, M, N]` intermediates that dominate a GPU's memory and time at hundreds of tokens.
 */
export interface BlockGemmOptions {
  readonly dequantizedWeight?: Value;
}
