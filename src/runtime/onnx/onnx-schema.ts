// The ONNX protobuf schema, embedded, and the encode/decode of ModelProto.
//
// The npm `onnx-proto` package predates ONNX's float8 types (IR 9), so it cannot describe the FP8
// initializers fp8q's verification graphs are made of. This module carries the subset of
// onnx/onnx.proto (proto2, field numbers unchanged) that a graph builder writes: ModelProto and
// what it contains, without training info, sparse tensors, functions or sequence/map types.
// Keeping it as a string inside a TS module means `tsc` output needs no extra files.

import protobuf from 'protobufjs';

const ONNX_PROTO_SUBSET = `
syntax = "proto2";
package onnx;

message AttributeProto {
  enum AttributeType {
    UNDEFINED = 0; FLOAT = 1; INT = 2; STRING = 3; TENSOR = 4; GRAPH = 5;
    FLOATS = 6; INTS = 7; STRINGS = 8; TENSORS = 9; GRAPHS = 10;
    SPARSE_TENSOR = 11; SPARSE_TENSORS = 12; TYPE_PROTO = 13; TYPE_PROTOS = 14;
  }
  optional string name = 1;
  optional string ref_attr_name = 21;
  optional string doc_string = 13;
  optional AttributeType type = 20;
  optional float f = 2;
  optional int64 i = 3;
  optional bytes s = 4;
  optional TensorProto t = 5;
  optional GraphProto g = 6;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
  repeated TensorProto tensors = 10;
  repeated GraphProto graphs = 11;
}

message ValueInfoProto {
  optional string name = 1;
  optional TypeProto type = 2;
  optional string doc_string = 3;
}

message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  optional string name = 3;
  optional string op_type = 4;
  optional string domain = 7;
  repeated AttributeProto attribute = 5;
  optional string doc_string = 6;
}

message StringStringEntryProto {
  optional string key = 1;
  optional string value = 2;
}

message ModelProto {
  optional int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  optional string producer_name = 2;
  optional string producer_version = 3;
  optional string domain = 4;
  optional int64 model_version = 5;
  optional string doc_string = 6;
  optional GraphProto graph = 7;
  repeated StringStringEntryProto metadata_props = 14;
}

message GraphProto {
  repeated NodeProto node = 1;
  optional string name = 2;
  repeated TensorProto initializer = 5;
  optional string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
}

message TensorProto {
  enum DataType {
    UNDEFINED = 0; FLOAT = 1; UINT8 = 2; INT8 = 3; UINT16 = 4; INT16 = 5; INT32 = 6; INT64 = 7;
    STRING = 8; BOOL = 9; FLOAT16 = 10; DOUBLE = 11; UINT32 = 12; UINT64 = 13;
    COMPLEX64 = 14; COMPLEX128 = 15; BFLOAT16 = 16;
    FLOAT8E4M3FN = 17; FLOAT8E4M3FNUZ = 18; FLOAT8E5M2 = 19; FLOAT8E5M2FNUZ = 20;
    UINT4 = 21; INT4 = 22; FLOAT4E2M1 = 23;
  }
  repeated int64 dims = 1;
  optional int32 data_type = 2;
  repeated float float_data = 4 [packed = true];
  repeated int32 int32_data = 5 [packed = true];
  repeated bytes string_data = 6;
  repeated int64 int64_data = 7 [packed = true];
  optional string name = 8;
  optional string doc_string = 12;
  optional bytes raw_data = 9;
  repeated double double_data = 10 [packed = true];
  repeated uint64 uint64_data = 11 [packed = true];
}

message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    }
    optional string denotation = 3;
  }
  repeated Dimension dim = 1;
}

message TypeProto {
  message Tensor {
    optional int32 elem_type = 1;
    optional TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
  optional string denotation = 6;
}

message OperatorSetIdProto {
  optional string domain = 1;
  optional int64 version = 2;
}
`;

/** AttributeProto.AttributeType values this project writes. */
export const AttributeType = {
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
} as const;

// Plain-object views of the messages, with onnx.proto's snake_case field names (the parser keeps
// case), so a decoded model reads like `onnx.helper.printable_graph` output.

export interface TensorProtoMessage {
  name: string;
  dims: number[];
  data_type: number;
  raw_data?: Uint8Array;
  doc_string?: string;
}

export interface DimensionMessage {
  dim_value?: number;
  dim_param?: string;
}

export interface ValueInfoProtoMessage {
  name: string;
  type: { tensor_type: { elem_type: number; shape?: { dim: DimensionMessage[] } } };
  doc_string?: string;
}

export interface AttributeProtoMessage {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorProtoMessage;
  g?: GraphProtoMessage;
  floats?: number[];
  ints?: number[];
  strings?: Uint8Array[];
}

export interface NodeProtoMessage {
  input: string[];
  output: string[];
  name: string;
  op_type: string;
  domain?: string;
  attribute: AttributeProtoMessage[];
}

export interface GraphProtoMessage {
  name: string;
  node: NodeProtoMessage[];
  initializer: TensorProtoMessage[];
  input: ValueInfoProtoMessage[];
  output: ValueInfoProtoMessage[];
  value_info?: ValueInfoProtoMessage[];
  doc_string?: string;
}

export interface ModelProtoMessage {
  ir_version: number;
  opset_import: { domain: string; version: number }[];
  producer_name: string;
  producer_version: string;
  graph: GraphProtoMessage;
  doc_string?: string;
}

let modelType: protobuf.Type | undefined;

// Parsed lazily: importing the runtime (e.g. for its types) should not pay for the parser.
function getModelType(): protobuf.Type {
  if (modelType === undefined) {
    const root = protobuf.parse(ONNX_PROTO_SUBSET, { keepCase: true }).root;
    modelType = root.lookupType('onnx.ModelProto');
  }
  return modelType;
}

export function encodeModel(model: ModelProtoMessage): Uint8Array {
  const type = getModelType();
  // fromObject converts nested plain objects (and number int64s) into message instances.
  return type.encode(type.fromObject(model)).finish();
}

/** Decodes a model back to plain objects; int64 become numbers, bytes stay Uint8Array. */
export function decodeModel(bytes: Uint8Array): ModelProtoMessage {
  const type = getModelType();
  const message = type.decode(bytes);
  return type.toObject(message, { longs: Number, arrays: true, defaults: false }) as ModelProtoMessage;
}
