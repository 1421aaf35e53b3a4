// A float16 graph as a GPU runs it: every op computed exactly (the builder's float64
// interpreter) and every float16 result rounded to float16, including overflow to infinity.
// onnxruntime's CPU provider has no float16 kernels for most ops: it computes them in float32
// and drops the casts between neighbouring ones, so it rounds to float16 far less often than
// CUDA, TensorRT or WebGPU with shader-f16 do. This is the stricter reference.

import { evaluateNode } from '../src/builder/evaluate.js';
import { float16Bits, float16Value } from '../src/math/half-precision.js';
import { Graph, Tensor } from '../src/builder/graph.js';

function rounded(t: Tensor): Tensor {
  return { ...t, data: Float64Array.from(t.data, (v) => float16Value(float16Bits(v))) };
}

export function evaluateFloat16(graph: Graph, feeds: Record<string, Tensor>): Record<string, Tensor> {
  const values = new Map<string, Tensor>();
  for (const [v, t] of graph.initializers) values.set(v.name, v.dtype === 'float16' ? rounded(t) : t);
  for (const { value } of graph.inputs) {
    const t = feeds[value.name];
    if (!t) throw new Error(`missing feed ${value.name}`);
    values.set(value.name, t);
  }
  for (const node of graph.nodes) {
    const outputs = evaluateNode(node, node.inputs.map((v) => (v ? values.get(v.name) : undefined)));
    node.outputs.forEach((v, i) => values.set(v.name, v.dtype === 'float16' ? rounded(outputs[i]) : outputs[i]));
  }
  return Object.fromEntries(graph.outputs.map(({ value }) => [value.name, values.get(value.name)!]));
}
