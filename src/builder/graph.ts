// The graph IR: typed Value handles, Nodes with explicit attributes, initializers registered
// once, and deterministic scoped names. It knows nothing of Glow.

import { size } from '../math/tensor.js';

export type DType = 'float32' | 'float16' | 'float64' | 'int64' | 'int32' | 'bool';
/** TensorProto.DataType codes. */
export const ONNX_TYPE: Readonly<Record<DType, number>> = { float32: 1, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11 };

export function dtypeOfCode(code: number): DType | undefined {
  return (Object.keys(ONNX_TYPE) as DType[]).find((k) => ONNX_TYPE[k] === code);
}

/** A static size, or a symbolic one (e.g. 'N' for a dynamic batch). */
export type Dim = number | string;
export type Shape = readonly Dim[];

/** Constant data. Values are kept in float64 on the host whatever the dtype (integers are exact up
 * to 2^53): the cast to the graph's dtype happens once, when serialising. */
export interface Tensor {
  dtype: DType;
  shape: number[];
  data: Float64Array | Float32Array;
}

export type Attribute =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: number[] }
  | { kind: 'floats'; value: number[] }
  | { kind: 'tensor'; value: Tensor };

export const attr = {
  int: (value: number): Attribute => ({ kind: 'int', value }),
  float: (value: number): Attribute => ({ kind: 'float', value }),
  string: (value: string): Attribute => ({ kind: 'string', value }),
  ints: (value: number[]): Attribute => ({ kind: 'ints', value }),
  floats: (value: number[]): Attribute => ({ kind: 'floats', value }),
  tensor: (value: Tensor): Attribute => ({ kind: 'tensor', value }),
};

export class Value {
  constructor(
    readonly name: string,
    readonly dtype: DType,
    /** undefined when the rank is unknown. */
    readonly shape: Shape | undefined,
  ) {}

  get rank(): number {
    if (!this.shape) throw new Error(`value ${this.name} has no known shape`);
    return this.shape.length;
  }

  /** The static shape, or an error naming the value if any dimension is symbolic. */
  staticShape(): number[] {
    if (!this.shape || this.shape.some((d) => typeof d !== 'number')) {
      throw new Error(`value ${this.name} needs a static shape, has [${this.shape?.join(', ') ?? '?'}]`);
    }
    return this.shape as number[];
  }

  toString(): string {
    return `${this.name}: ${this.dtype}[${this.shape?.join(', ') ?? '?'}]`;
  }
}

export class Node {
  constructor(
    readonly op: string,
    readonly name: string,
    /** undefined marks an omitted optional input. */
    readonly inputs: readonly (Value | undefined)[],
    readonly outputs: readonly Value[],
    readonly attributes: Readonly<Record<string, Attribute>>,
    readonly domain = '',
  ) {}

  // The attribute readers: undefined when the attribute is absent. One of another kind reads as
  // absent (passes match on kinds), or with `strict` is an error (kernels reject such a node).

  /** An int attribute. */
  int(name: string, strict = false): number | undefined {
    return this.read(name, ['int'], 'an int', strict) as number | undefined;
  }

  /** An ints attribute. */
  ints(name: string, strict = false): number[] | undefined {
    return this.read(name, ['ints'], 'ints', strict) as number[] | undefined;
  }

  /** A number: a float attribute, or an int one. */
  number(name: string, strict = false): number | undefined {
    return this.read(name, ['float', 'int'], 'a float', strict) as number | undefined;
  }

  /** A string attribute. */
  string(name: string, strict = false): string | undefined {
    return this.read(name, ['string'], 'a string', strict) as string | undefined;
  }

  private read(name: string, kinds: readonly Attribute['kind'][], what: string, strict: boolean): Attribute['value'] | undefined {
    const a = this.attributes[name];
    if (a === undefined) return undefined;
    if (kinds.includes(a.kind)) return a.value;
    if (strict) throw new Error(`attribute ${name} must be ${what}`);
    return undefined;
  }
}

export interface GraphIO {
  value: Value;
  doc?: string;
}

/** An immutable snapshot of a graph; passes take one and return a new one. */
export interface Graph {
  name: string;
  opset: number;
  inputs: readonly GraphIO[];
  outputs: readonly GraphIO[];
  nodes: readonly Node[];
  initializers: ReadonlyMap<Value, Tensor>;
  metadata: Readonly<Record<string, string>>;
  docString?: string;
}

export const DEFAULT_OPSET = 17;
export const SUPPORTED_OPSETS = [13, 14, 15, 16, 17, 18, 19, 20];

/**
 * Builds a Graph. Every value name is `scope/hint`, made unique by a counter that depends only
 * on the order of calls, so the same program always produces the same names.
 */
export class GraphBuilder {
  readonly opset: number;
  private readonly inputs: GraphIO[] = [];
  private readonly outputs: GraphIO[] = [];
  private readonly nodes: Node[] = [];
  private readonly initializers = new Map<Value, Tensor>();
  private readonly names = new Set<string>();
  private readonly scopes: string[] = [];
  private readonly counters = new Map<string, number>();
  metadata: Record<string, string> = {};
  private readonly compact: boolean;

  /** `compact`: keep float32 initializers as Float32Array, rounded once here instead of when
   * serialising. Same bytes, half the memory; for graphs that are only serialised (export of big
   * models). Graphs evaluated on the host (tests, evaluate.ts) need the float64 values. */
  constructor(readonly name: string, opts: { opset?: number; compact?: boolean } = {}) {
    this.opset = opts.opset ?? DEFAULT_OPSET;
    this.compact = opts.compact ?? false;
    if (!SUPPORTED_OPSETS.includes(this.opset)) {
      throw new Error(`opset ${this.opset} is not supported (supported: ${SUPPORTED_OPSETS[0]} to ${SUPPORTED_OPSETS.at(-1)})`);
    }
  }

  /**
   * A builder that continues an existing graph: same name, opset and metadata, with all its
   * inputs, outputs, nodes and initializers, and every name it uses reserved. The graph itself
   * is not modified; pass its doc string to build() to keep it.
   */
  static extend(graph: Graph): GraphBuilder {
    const g = new GraphBuilder(graph.name, { opset: graph.opset });
    g.metadata = { ...graph.metadata };
    g.inputs.push(...graph.inputs);
    g.outputs.push(...graph.outputs);
    g.nodes.push(...graph.nodes);
    for (const [value, t] of graph.initializers) g.initializers.set(value, t);
    const values = [
      ...graph.inputs.map((io) => io.value), ...graph.outputs.map((io) => io.value),
      ...graph.initializers.keys(), ...graph.nodes.flatMap((n) => n.outputs),
    ];
    for (const v of values) g.names.add(v.name);
    for (const n of graph.nodes) g.names.add(n.name);
    return g;
  }

  /** Runs fn with names prefixed by `name/`. */
  scope<T>(name: string, fn: () => T): T {
    this.scopes.push(name);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  /** A fresh name under the current scope, reserved so that it is never handed out twice. */
  freshName(hint: string): string {
    const base = [...this.scopes, hint].join('/');
    let n = this.counters.get(base) ?? 0;
    let candidate = n === 0 ? base : `${base}_${n}`;
    while (this.names.has(candidate)) candidate = `${base}_${++n}`;
    this.counters.set(base, n + 1);
    this.names.add(candidate);
    return candidate;
  }

  private claim(name: string): string {
    if (this.names.has(name)) throw new Error(`name ${name} is already used in graph ${this.name}`);
    this.names.add(name);
    return name;
  }

  input(name: string, dtype: DType, shape: Shape, doc?: string): Value {
    const value = new Value(this.claim(name), dtype, shape);
    this.inputs.push({ value, doc });
    return value;
  }

  /** Registers a graph output under an exact name (the I/O contract), renaming through Identity
   * when the value already has another name. */
  output(value: Value, name: string, doc?: string): Value {
    const out = value.name === name ? value : this.node('Identity', [value], {}, [{ dtype: value.dtype, shape: value.shape }], name)[0];
    this.outputs.push({ value: out, doc });
    return out;
  }

  /** A named initializer: weights keep their own names, registered exactly once. */
  initializer(name: string, tensor: Tensor): Value {
    return this.addInitializer(this.claim(name), tensor);
  }

  /** An anonymous constant under the current scope. */
  constant(tensor: Tensor, hint = 'const'): Value {
    return this.addInitializer(this.freshName(hint), tensor);
  }

  private addInitializer(name: string, tensor: Tensor): Value {
    checkTensor(tensor, name);
    if (this.compact && tensor.dtype === 'float32' && !(tensor.data instanceof Float32Array)) {
      tensor = { ...tensor, data: Float32Array.from(tensor.data) };
    }
    const value = new Value(name, tensor.dtype, tensor.shape);
    this.initializers.set(value, tensor);
    return value;
  }

  /**
   * Adds one node. `outputName` pins the name of a single output (for graph outputs); otherwise
   * names are derived from the op under the current scope.
   */
  node(
    op: string,
    inputs: readonly (Value | undefined)[],
    attributes: Record<string, Attribute>,
    outputTypes: readonly { dtype: DType; shape: Shape | undefined }[],
    outputName?: string,
    domain = '',
  ): Value[] {
    const nodeName = this.freshName(op);
    const outputs = outputTypes.map((t, i) => {
      // A single output shares the node's (already reserved) name.
      const name = outputName !== undefined && outputTypes.length === 1 ? this.claim(outputName)
        : outputTypes.length === 1 ? nodeName : this.claim(`${nodeName}:${i}`);
      return new Value(name, t.dtype, t.shape);
    });
    this.nodes.push(new Node(op, nodeName, inputs, outputs, attributes, domain));
    return outputs;
  }

  build(docString?: string): Graph {
    return {
      name: this.name,
      opset: this.opset,
      inputs: [...this.inputs],
      outputs: [...this.outputs],
      nodes: [...this.nodes],
      initializers: new Map(this.initializers),
      metadata: { ...this.metadata },
      docString,
    };
  }
}

/** The number of elements of a tensor of this shape (glow-onnx/builder's name for math's size). */
export const tensorSize: (shape: readonly number[]) => number = size;

function checkTensor(t: Tensor, name: string): void {
  const n = size(t.shape);
  if (t.data.length !== n) {
    throw new Error(`initializer ${name}: ${t.data.length} values for shape [${t.shape.join(', ')}] (needs ${n})`);
  }
}

export function tensor(dtype: DType, shape: number[], data: ArrayLike<number>): Tensor {
  const t: Tensor = { dtype, shape: [...shape], data: data instanceof Float32Array ? data : Float64Array.from(data) };
  checkTensor(t, 'tensor');
  return t;
}

export function scalar(value: number, dtype: DType = 'float32'): Tensor {
  return tensor(dtype, [], [value]);
}
