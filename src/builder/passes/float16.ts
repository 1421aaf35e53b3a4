// float32 -> float16 compute. The graph's interface does not change: float32 inputs are cast
// to float16 where the float16 part of the graph reads them, float32 outputs are cast back from
// float16 where the float16 part produces them. Inside, every float32 value, initializer and
// Cast target of a converted node becomes float16; the initializers keep their float64 host
// data, so each weight is rounded once, from float64, when it is serialised.
//
// Nodes chosen by `keepFloat32` stay in float32 and read float32 copies of their inputs. By
// default those are the nodes whose float outputs are all of rank <= 1: per-example terms [N]
// and scalars. In the Glow graphs these are exactly the log-determinant and log-likelihood
// reductions and their sums: each term is computed elementwise in float16, cast up, and reduced
// and accumulated in float32 (a sum of hundreds of terms near 1e3 would otherwise be rounded to
// float16's spacing of 0.5 to 2, and the export-time constants reach 1e6).

import { attr, Attribute, Graph, GraphIO, Node, ONNX_TYPE, Tensor, Value } from '../graph.js';

export interface Float16Options {
  /** Nodes that keep float32 compute; default `perExampleTerms`. */
  keepFloat32?: (node: Node) => boolean;
}

/** Nodes whose float outputs all have a known rank <= 1 (per-example terms, scalars). */
export function perExampleTerms(node: Node): boolean {
  const floats = node.outputs.filter((v) => v.dtype === 'float32');
  return floats.length > 0 && floats.every((v) => v.shape !== undefined && v.shape.length <= 1);
}

/** Largest finite float16. */
export const FLOAT16_MAX = 65504;

/** Ops that read only the shape of their input, not its values: they take whichever copy exists. */
const SHAPE_ONLY = new Set(['Shape', 'Size']);

export function toFloat16(graph: Graph, options: Float16Options = {}): Graph {
  const keep = options.keepFloat32 ?? perExampleTerms;
  const names = new Set<string>([
    ...graph.inputs.map((io) => io.value.name), ...[...graph.initializers.keys()].map((v) => v.name),
    ...graph.nodes.flatMap((n) => [n.name, ...n.outputs.map((v) => v.name)]),
  ]);
  const fresh = (base: string): string => {
    let name = base;
    for (let i = 1; names.has(name); i++) name = `${base}_${i}`;
    names.add(name);
    return name;
  };
  const isFloat = (v: Value | undefined): v is Value => v !== undefined && v.dtype === 'float32';
  const converted = new Set(graph.nodes.filter((n) => !keep(n)));
  const outputValues = new Set(graph.outputs.map((io) => io.value));

  // Which precisions each float32 initializer is read in.
  const reads = new Map<Value, { f16: boolean; f32: boolean }>();
  const noteRead = (v: Value, f16: boolean) => {
    if (!graph.initializers.has(v) || !isFloat(v)) return;
    const r = reads.get(v) ?? { f16: false, f32: false };
    if (f16) r.f16 = true;
    else r.f32 = true;
    reads.set(v, r);
  };
  for (const n of graph.nodes) for (const v of n.inputs) if (v && !SHAPE_ONLY.has(n.op)) noteRead(v, converted.has(n));
  for (const v of outputValues) noteRead(v, false);

  // The float32 and float16 copy of every float value, made on first need.
  const f32 = new Map<Value, Value>();
  const f16 = new Map<Value, Value>();
  const initializers = new Map<Value, Tensor>();
  for (const [v, t] of graph.initializers) {
    const r = reads.get(v);
    // Kept as it is unless only float16 compute reads it (shape-only readers take either copy).
    if (!r?.f16 || r.f32) {
      initializers.set(v, t);
      if (isFloat(v)) f32.set(v, v);
    }
    if (r?.f16) {
      checkRange(t, v.name);
      const half = new Value(r.f32 ? fresh(`${v.name}_float16`) : v.name, 'float16', v.shape);
      initializers.set(half, { ...t, dtype: 'float16' });
      f16.set(v, half);
    }
  }
  for (const io of graph.inputs) if (isFloat(io.value)) f32.set(io.value, io.value);

  const nodes: Node[] = [];
  const castNode = (from: Value, to: Value) =>
    nodes.push(new Node('Cast', fresh(`${to.name}/Cast`), [from], [to], { to: attr.int(ONNX_TYPE[to.dtype]) }));
  const copy = (v: Value, half: boolean): Value => {
    const have = half ? f16 : f32;
    const other = half ? f32 : f16;
    let c = have.get(v);
    if (!c) {
      const source = other.get(v);
      if (!source) throw new Error(`toFloat16: ${v.name} is read before it is computed (is the graph sorted?)`);
      c = new Value(fresh(`${v.name}/${half ? 'float16' : 'float32'}`), half ? 'float16' : 'float32', v.shape);
      castNode(source, c);
      have.set(v, c);
    }
    return c;
  };

  for (const n of graph.nodes) {
    const half = converted.has(n);
    const inputs = n.inputs.map((v) => {
      if (!isFloat(v)) return v;
      if (SHAPE_ONLY.has(n.op)) return f32.get(v) ?? f16.get(v);
      return copy(v, half);
    });
    if (!half) {
      nodes.push(inputs.every((v, i) => v === n.inputs[i]) ? n : new Node(n.op, n.name, inputs, n.outputs, n.attributes, n.domain));
      for (const v of n.outputs) if (isFloat(v)) f32.set(v, v);
      continue;
    }
    const pending: [Value, Value][] = [];
    const outputs = n.outputs.map((v) => {
      if (!isFloat(v)) return v;
      // A graph output keeps its Value (name, float32) as the output of a Cast back to float32.
      const h = new Value(outputValues.has(v) ? fresh(`${v.name}/float16`) : v.name, 'float16', v.shape);
      f16.set(v, h);
      if (outputValues.has(v)) {
        f32.set(v, v);
        pending.push([h, v]);
      }
      return h;
    });
    nodes.push(new Node(n.op, n.name, inputs, outputs, halfAttributes(n), n.domain));
    for (const [h, v] of pending) castNode(h, v);
  }

  return {
    ...graph,
    nodes,
    initializers,
    inputs: graph.inputs,
    outputs: graph.outputs.map((io): GraphIO => ({ ...io, value: isFloat(io.value) ? copy(io.value, false) : io.value })),
  };
}

/** Cast targets and tensor attributes (Constant values) of a converted node, in float16. */
function halfAttributes(n: Node): Record<string, Attribute> {
  const out: Record<string, Attribute> = {};
  for (const [k, a] of Object.entries(n.attributes)) {
    if (n.op === 'Cast' && k === 'to' && a.kind === 'int' && a.value === ONNX_TYPE.float32) out[k] = attr.int(ONNX_TYPE.float16);
    else if (a.kind === 'tensor' && a.value.dtype === 'float32') {
      checkRange(a.value, `${n.name}.${k}`);
      out[k] = attr.tensor({ ...a.value, dtype: 'float16' });
    } else out[k] = a;
  }
  return out;
}

function checkRange(t: Tensor, name: string): void {
  for (let i = 0; i < t.data.length; i++) {
    const v = t.data[i];
    if (Number.isFinite(v) && Math.abs(v) > FLOAT16_MAX) {
      throw new Error(`toFloat16: ${name}[${i}] = ${v} is beyond float16's range (±${FLOAT16_MAX}); keep the nodes that read it in float32`);
    }
  }
}
