// A small typed builder for ONNX graphs: graph inputs/outputs, initializers from raw
// little-endian bytes (any element type, FP8 and BF16 included), nodes with typed attributes,
// unique value names, subgraphs for control flow, and serialization to ModelProto bytes.
//
// Values carry their element type and the shape the emitting code knows (a string dim is
// symbolic, e.g. the token count). ONNX itself does not need them on intermediate values; the
// ops in ../ops use them to build the right Reshape/Slice constants without shape inference.

import { DataType, dataTypeByteSize, dataTypeName, isFeedDataType, isIoDataType } from './data-type.js';
import {
  AttributeType,
  encodeModel,
  type AttributeProtoMessage,
  type GraphProtoMessage,
  type ModelProtoMessage,
  type NodeProtoMessage,
  type TensorProtoMessage,
  type ValueInfoProtoMessage,
} from './onnx-schema.js';

/**
 * Opset 21 covers every operator fp8q emits (Cast with `saturate` is 19+, Pad/Reduce* with axes as
 * inputs are 18+). onnxruntime 1.29's CPU provider also loads and runs 22–25 (measured), but a
 * lower opset keeps the widest kernel coverage on the CUDA provider, whose registrations of new
 * op versions lag CPU's.
 */
export const DEFAULT_OPSET = 21;

/** The IR version each opset first needs (onnx/helper.py VERSION_TABLE); ORT rejects a mismatch. */
const IR_VERSION_FOR_OPSET: ReadonlyMap<number, number> = new Map([
  [19, 9],
  [20, 9],
  [21, 10],
  [22, 10],
  [23, 11],
  [24, 12],
]);

export const PRODUCER_NAME = 'fp8q';

export type Dim = number | string;

export interface Value {
  readonly name: string;
  readonly dtype: DataType;
  readonly shape: readonly Dim[];
}

export interface ValueSpec {
  readonly dtype: DataType;
  readonly shape: readonly Dim[];
  /** Name hint; the value is named `<hint>_<n>`. */
  readonly name?: string;
}

export type Attribute =
  | { readonly type: 'float'; readonly value: number }
  | { readonly type: 'int'; readonly value: number }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'floats'; readonly value: readonly number[] }
  | { readonly type: 'ints'; readonly value: readonly number[] }
  | { readonly type: 'strings'; readonly value: readonly string[] }
  | { readonly type: 'graph'; readonly value: GraphBuilder };

export const attr = {
  float: (value: number): Attribute => ({ type: 'float', value }),
  int: (value: number): Attribute => ({ type: 'int', value }),
  string: (value: string): Attribute => ({ type: 'string', value }),
  floats: (value: readonly number[]): Attribute => ({ type: 'floats', value }),
  ints: (value: readonly number[]): Attribute => ({ type: 'ints', value }),
  strings: (value: readonly string[]): Attribute => ({ type: 'strings', value }),
  graph: (value: GraphBuilder): Attribute => ({ type: 'graph', value }),
};

export class GraphBuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GraphBuildError';
  }
}

export interface GraphBuilderOptions {
  readonly name?: string;
  readonly opset?: number;
  readonly docString?: string;
}

/** Names are one namespace across a model and its subgraphs, so outer values are never shadowed. */
class NameScope {
  private readonly used = new Set<string>();
  private readonly counters = new Map<string, number>();

  reserve(name: string): void {
    if (name === '') throw new GraphBuildError('value names must be non-empty');
    if (this.used.has(name)) throw new GraphBuildError(`value name "${name}" is already used`);
    this.used.add(name);
  }

  /** `hint` itself when free, else `hint_1`, `hint_2`, … */
  unique(hint: string): string {
    const base = hint === '' ? 'v' : hint;
    if (!this.used.has(base)) {
      this.used.add(base);
      return base;
    }
    return this.fresh(base, 1);
  }

  /**
   * Always numbered (`hint_0`, `hint_1`, …): names generated for intermediate values, so they
   * never take a plain name (`y`, `scale`) that a caller gives a graph output later.
   */
  fresh(hint: string, from = 0): string {
    const base = hint === '' ? 'v' : hint;
    let n = this.counters.get(base) ?? from;
    while (this.used.has(`${base}_${n}`)) n++;
    this.counters.set(base, n + 1);
    const name = `${base}_${n}`;
    this.used.add(name);
    return name;
  }
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

type NumericArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint16Array | Uint8Array;

/** The little-endian bytes of a typed array (a view, not a copy, on little-endian hosts). */
export function littleEndianBytes(array: NumericArray): Uint8Array {
  const view = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  if (HOST_IS_LITTLE_ENDIAN || array.BYTES_PER_ELEMENT === 1) return view;
  const out = new Uint8Array(view.length);
  const width = array.BYTES_PER_ELEMENT;
  for (let i = 0; i < view.length; i += width) {
    for (let b = 0; b < width; b++) out[i + b] = view[i + width - 1 - b]!;
  }
  return out;
}

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkStaticShape(shape: readonly number[], what: string): void {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new GraphBuildError(`${what}: dims must be non-negative integers, got [${shape.join(', ')}]`);
    }
  }
}

function valueInfo(value: Value): ValueInfoProtoMessage {
  return {
    name: value.name,
    type: {
      tensor_type: {
        elem_type: value.dtype,
        shape: {
          dim: value.shape.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })),
        },
      },
    },
  };
}

// Options objects handed to the constructor by subgraph(); keeps the parent link off the public API.
const SUBGRAPH_PARENT = new WeakMap<GraphBuilderOptions, GraphBuilder>();

// Small constants (axes, shapes, clip bounds) recur in every op; one initializer each is enough.
const MAX_DEDUP_CONSTANT_BYTES = 64;

/** State shared by a model's root graph and its subgraphs. */
interface SharedState {
  readonly scope: NameScope;
  /** Subgraphs put their initializers in the root graph, which every subgraph can see. */
  readonly initializers: TensorProtoMessage[];
  readonly constants: Map<string, Value>;
}

export class GraphBuilder {
  readonly name: string;
  readonly opset: number;
  readonly isSubgraph: boolean;
  private readonly shared: SharedState;
  private readonly docString: string | undefined;
  private readonly inputs: Value[] = [];
  private readonly outputs: Value[] = [];
  private readonly nodes: NodeProtoMessage[] = [];

  constructor(options: GraphBuilderOptions = {}) {
    this.opset = options.opset ?? DEFAULT_OPSET;
    if (!IR_VERSION_FOR_OPSET.has(this.opset)) {
      throw new GraphBuildError(`opset ${this.opset} is not supported; use one of ${[...IR_VERSION_FOR_OPSET.keys()].join(', ')}`);
    }
    const parent = SUBGRAPH_PARENT.get(options);
    this.isSubgraph = parent !== undefined;
    this.shared = parent?.shared ?? { scope: new NameScope(), initializers: [], constants: new Map() };
    this.name = parent === undefined ? (options.name ?? 'main') : this.shared.scope.unique(options.name ?? 'body');
    this.docString = options.docString;
  }

  /** A builder for a control-flow body (If/Loop) sharing this graph's names and initializers. */
  subgraph(name: string): GraphBuilder {
    const options: GraphBuilderOptions = { name, opset: this.opset };
    SUBGRAPH_PARENT.set(options, this);
    return new GraphBuilder(options);
  }

  uniqueName(hint: string): string {
    return this.shared.scope.unique(hint);
  }

  /** A graph input, fed by name; the name is used verbatim. */
  input(name: string, dtype: DataType, shape: readonly Dim[]): Value {
    if (!this.isSubgraph && !isFeedDataType(dtype)) {
      throw new GraphBuildError(
        `graph input "${name}" is ${dataTypeName(dtype)}; onnxruntime-node feeds only float32/float16/float64/uint8/uint16 ` +
          `(feed the bit pattern as uint8/uint16 and decode it in the graph, or put it in an initializer)`,
      );
    }
    this.shared.scope.reserve(name);
    const value: Value = { name, dtype, shape: [...shape] };
    this.inputs.push(value);
    return value;
  }

  /**
   * Marks `value` as a graph output. With `name`, the output gets exactly that name (through an
   * Identity node when the value is named otherwise).
   */
  output(value: Value, name?: string): Value {
    if (!this.isSubgraph && !isIoDataType(value.dtype)) {
      throw new GraphBuildError(`graph output "${name ?? value.name}" is ${dataTypeName(value.dtype)}; onnxruntime-node returns ` + `only float32/float16/float64 (Cast it first)`);
    }
    let out = value;
    if (name !== undefined && name !== value.name) {
      this.shared.scope.reserve(name);
      out = { name, dtype: value.dtype, shape: value.shape };
      this.nodes.push({
        input: [value.name],
        output: [name],
        name: this.shared.scope.fresh('Identity'),
        op_type: 'Identity',
        attribute: [],
      });
    }
    this.outputs.push(out);
    return out;
  }

  /**
   * An initializer from raw little-endian element bytes (raw_data), for any element type.
   * `nameHint` is kept when free, else suffixed; the returned Value has the final name.
   */
  initializer(nameHint: string, dtype: DataType, shape: readonly number[], raw: Uint8Array): Value {
    checkStaticShape(shape, `initializer "${nameHint}"`);
    const expected = shapeSize(shape) * dataTypeByteSize(dtype);
    if (raw.length !== expected) {
      throw new GraphBuildError(`initializer "${nameHint}" [${shape.join(', ')}] ${dataTypeName(dtype)} needs ${expected} bytes, got ${raw.length}`);
    }
    const name = this.shared.scope.unique(nameHint);
    this.shared.initializers.push({ name, dims: [...shape], data_type: dtype, raw_data: raw });
    return { name, dtype, shape: [...shape] };
  }

  constFloat32(values: ArrayLike<number>, shape: readonly number[] = [values.length], hint = 'const'): Value {
    return this.constant(hint, DataType.FLOAT, shape, littleEndianBytes(Float32Array.from(values)));
  }

  constFloat64(values: ArrayLike<number>, shape: readonly number[] = [values.length], hint = 'const'): Value {
    return this.constant(hint, DataType.DOUBLE, shape, littleEndianBytes(Float64Array.from(values)));
  }

  constInt64(values: readonly number[], shape: readonly number[] = [values.length], hint = 'const'): Value {
    return this.constant(hint, DataType.INT64, shape, littleEndianBytes(BigInt64Array.from(values, BigInt)));
  }

  private constant(hint: string, dtype: DataType, shape: readonly number[], raw: Uint8Array): Value {
    if (raw.length > MAX_DEDUP_CONSTANT_BYTES) return this.initializer(hint, dtype, shape, raw);
    const key = `${dtype}|${shape.join(',')}|${raw.join(',')}`;
    const cached = this.shared.constants.get(key);
    if (cached !== undefined) return cached;
    const value = this.initializer(hint, dtype, shape, raw.slice());
    this.shared.constants.set(key, value);
    return value;
  }

  /** Appends a node; `null` inputs are omitted optional inputs. Returns its outputs in order. */
  node(opType: string, inputs: readonly (Value | null)[], outputs: readonly ValueSpec[], attributes: Readonly<Record<string, Attribute>> = {}, domain = ''): Value[] {
    const outs: Value[] = outputs.map((spec) => ({
      name: this.shared.scope.fresh(spec.name ?? opType),
      dtype: spec.dtype,
      shape: [...spec.shape],
    }));
    const node: NodeProtoMessage = {
      input: inputs.map((v) => (v === null ? '' : v.name)),
      output: outs.map((v) => v.name),
      name: this.shared.scope.fresh(opType),
      op_type: opType,
      attribute: Object.entries(attributes).map(([name, a]) => encodeAttribute(name, a)),
    };
    if (domain !== '') node.domain = domain;
    this.nodes.push(node);
    return outs;
  }

  /** A node with exactly one output. */
  op(opType: string, inputs: readonly (Value | null)[], output: ValueSpec, attributes: Readonly<Record<string, Attribute>> = {}): Value {
    return this.node(opType, inputs, [output], attributes)[0]!;
  }

  toGraphProto(): GraphProtoMessage {
    if (this.outputs.length === 0) throw new GraphBuildError(`graph "${this.name}" has no outputs`);
    const graph: GraphProtoMessage = {
      name: this.name,
      node: this.nodes,
      initializer: this.isSubgraph ? [] : this.shared.initializers,
      input: this.inputs.map(valueInfo),
      output: this.outputs.map(valueInfo),
    };
    if (this.docString !== undefined) graph.doc_string = this.docString;
    return graph;
  }

  toModel(): ModelProtoMessage {
    if (this.isSubgraph) throw new GraphBuildError(`"${this.name}" is a subgraph; serialize its root`);
    return {
      ir_version: IR_VERSION_FOR_OPSET.get(this.opset)!,
      opset_import: [{ domain: '', version: this.opset }],
      producer_name: PRODUCER_NAME,
      producer_version: '0.1.0',
      graph: this.toGraphProto(),
    };
  }

  toBytes(): Uint8Array {
    return encodeModel(this.toModel());
  }
}

function encodeAttribute(name: string, a: Attribute): AttributeProtoMessage {
  switch (a.type) {
    case 'float':
      return { name, type: AttributeType.FLOAT, f: a.value };
    case 'int':
      if (!Number.isSafeInteger(a.value)) throw new GraphBuildError(`attribute ${name}: ${a.value} is not an integer`);
      return { name, type: AttributeType.INT, i: a.value };
    case 'string':
      return { name, type: AttributeType.STRING, s: new TextEncoder().encode(a.value) };
    case 'floats':
      return { name, type: AttributeType.FLOATS, floats: [...a.value] };
    case 'ints':
      for (const v of a.value) {
        if (!Number.isSafeInteger(v)) throw new GraphBuildError(`attribute ${name}: ${v} is not an integer`);
      }
      return { name, type: AttributeType.INTS, ints: [...a.value] };
    case 'strings':
      return { name, type: AttributeType.STRINGS, strings: a.value.map((s) => new TextEncoder().encode(s)) };
    case 'graph':
      return { name, type: AttributeType.GRAPH, g: a.value.toGraphProto() };
  }
}
