import { canEvaluate, evaluateNode } from '../evaluate.js';
import { Graph, Node, Tensor, Value } from '../graph.js';

/**
 * Evaluates, in float64 on the host, every node whose inputs are all initializers, and turns
 * its outputs into initializers. Expects a sorted graph; unused initializers are left for
 * cleanup to remove.
 */
export function foldConstants(graph: Graph): Graph {
  const constants = new Map<Value, Tensor>(graph.initializers);
  const replaced = new Map<Value, Value>();
  const swap = (v: Value | undefined) => (v && replaced.get(v)) ?? v;
  const nodes: Node[] = [];
  for (const original of graph.nodes) {
    const inputs = original.inputs.map(swap);
    const node = inputs.every((v, i) => v === original.inputs[i]) ? original
      : new Node(original.op, original.name, inputs, original.outputs, original.attributes, original.domain);
    const foldable = canEvaluate(node) && node.inputs.every((v) => !v || constants.has(v));
    if (!foldable) {
      nodes.push(node);
      continue;
    }
    const results = evaluateNode(node, node.inputs.map((v) => (v ? constants.get(v)! : undefined)) as Tensor[]);
    node.outputs.forEach((out, i) => {
      const tensor: Tensor = { ...results[i], dtype: out.dtype };
      const folded = new Value(out.name, out.dtype, tensor.shape);
      constants.set(folded, tensor);
      replaced.set(out, folded);
    });
  }
  return {
    ...graph,
    nodes,
    initializers: constants,
    outputs: graph.outputs.map((io) => ({ ...io, value: swap(io.value)! })),
  };
}
