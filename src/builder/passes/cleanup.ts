import { Graph, Tensor, Value } from '../graph.js';

/** Drops nodes whose outputs no graph output depends on, then initializers nothing reads. */
export function cleanup(graph: Graph): Graph {
  const needed = new Set<Value>(graph.outputs.map((io) => io.value));
  const kept = [];
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i];
    if (!node.outputs.some((v) => needed.has(v))) continue;
    kept.push(node);
    node.inputs.forEach((v) => v && needed.add(v));
  }
  kept.reverse();
  const initializers = new Map<Value, Tensor>([...graph.initializers].filter(([v]) => needed.has(v)));
  return { ...graph, nodes: kept, initializers };
}
