import { Graph, Node, Value } from '../graph.js';

/** Orders nodes so that every value is produced before it is read; ties keep the original
 * order, so an already sorted graph is returned unchanged. */
export function toposort(graph: Graph): Graph {
  const available = new Set<Value>([...graph.inputs.map((io) => io.value), ...graph.initializers.keys()]);
  const pending = [...graph.nodes];
  const sorted: Node[] = [];
  while (pending.length) {
    const ready = pending.findIndex((n) => n.inputs.every((v) => !v || available.has(v)));
    if (ready < 0) {
      const stuck = pending[0];
      const missing = stuck.inputs.filter((v) => v && !available.has(v)).map((v) => v!.name);
      throw new Error(`graph ${graph.name} has a cycle or a dangling input: node ${stuck.name} waits for ${missing.join(', ')}`);
    }
    const [node] = pending.splice(ready, 1);
    node.outputs.forEach((v) => available.add(v));
    sorted.push(node);
  }
  return { ...graph, nodes: sorted };
}
