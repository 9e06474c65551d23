// ONNX element types (TensorProto.DataType) used by fp8q's graphs, their byte sizes, and the
// subset a session can feed or fetch from JavaScript.

export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
} as const;

export type DataType = (typeof DataType)[keyof typeof DataType];

/**
 * Element types a graph may take as input or return as output. onnxruntime-node's JavaScript
 * tensor map has no BF16 or FP8 (ONNX types 16–20 are "Unsupported data type"), so those stay
 * inside the graph as initializers. float64: verify's comparison sums come back in it
 * (ops/comparison-sums.ts).
 */
export type IoDataType = typeof DataType.FLOAT | typeof DataType.FLOAT16 | typeof DataType.DOUBLE;

/**
 * Element types a graph may take as input: the IO types, and uint8/uint16 for stored bit patterns
 * (FP8 codes, BF16 words) that the graph decodes itself (ops/types.ts, emitDecodeFp8Codes;
 * models/model-graph.ts). Weights fed this way let one session serve every layer of a shape.
 */
export type FeedDataType = IoDataType | typeof DataType.UINT8 | typeof DataType.UINT16;

export type Fp8DataType = typeof DataType.FLOAT8E4M3FN | typeof DataType.FLOAT8E4M3FNUZ | typeof DataType.FLOAT8E5M2 | typeof DataType.FLOAT8E5M2FNUZ;

const BYTE_SIZES: Readonly<Record<DataType, number>> = {
  [DataType.FLOAT]: 4,
  [DataType.UINT8]: 1,
  [DataType.INT8]: 1,
  [DataType.UINT16]: 2,
  [DataType.INT32]: 4,
  [DataType.INT64]: 8,
  [DataType.BOOL]: 1,
  [DataType.FLOAT16]: 2,
  [DataType.DOUBLE]: 8,
  [DataType.BFLOAT16]: 2,
  [DataType.FLOAT8E4M3FN]: 1,
  [DataType.FLOAT8E4M3FNUZ]: 1,
  [DataType.FLOAT8E5M2]: 1,
  [DataType.FLOAT8E5M2FNUZ]: 1,
};

const NAMES: Readonly<Record<DataType, string>> = {
  [DataType.FLOAT]: 'float32',
  [DataType.UINT8]: 'uint8',
  [DataType.INT8]: 'int8',
  [DataType.UINT16]: 'uint16',
  [DataType.INT32]: 'int32',
  [DataType.INT64]: 'int64',
  [DataType.BOOL]: 'bool',
  [DataType.FLOAT16]: 'float16',
  [DataType.DOUBLE]: 'float64',
  [DataType.BFLOAT16]: 'bfloat16',
  [DataType.FLOAT8E4M3FN]: 'float8e4m3fn',
  [DataType.FLOAT8E4M3FNUZ]: 'float8e4m3fnuz',
  [DataType.FLOAT8E5M2]: 'float8e5m2',
  [DataType.FLOAT8E5M2FNUZ]: 'float8e5m2fnuz',
};

export function dataTypeByteSize(dtype: DataType): number {
  return BYTE_SIZES[dtype];
}

export function dataTypeName(dtype: DataType): string {
  return NAMES[dtype];
}

export function isIoDataType(dtype: DataType): dtype is IoDataType {
  return dtype === DataType.FLOAT || dtype === DataType.FLOAT16 || dtype === DataType.DOUBLE;
}

export function isFeedDataType(dtype: DataType): dtype is FeedDataType {
  return isIoDataType(dtype) || dtype === DataType.UINT8 || dtype === DataType.UINT16;
}

export function isFp8DataType(dtype: DataType): dtype is Fp8DataType {
  return dtype >= DataType.FLOAT8E4M3FN && dtype <= DataType.FLOAT8E5M2FNUZ;
}
