// The affine coupling's scale floor in the form more runtimes read. The layer writes it as
// Where(Less(s, f), f, s) because autodiff has a rule for Where; an exported graph needs no
// gradient, and Max(s, f) is the same function in one node and without the boolean tensor that
// wonnx refuses (no BOOL) and the Where that OpenCV 4.6 has no layer for (its --target opencv
// still rewrites Max with a constant, see opencv.ts; onnxjs 0.1.8 has neither Where nor an
// elementwise Max). Exact in float32 and float16: both forms pick s or f itself, and equal
// values are the same bits (f is positive, so no -0 / +0 tie). NaN stays NaN in ONNX Runtime's
// CPU Max as in the Where form; +inf stays +inf, which Clip(s, f) would not keep (its default
// max is the largest finite float).

import { Graph, Node, Value } from '../graph.js';
import { size } from '../../math/tensor.js';

/** Whether v is an initializer holding one value. */
export function isScalarConstant(graph: Graph, v: Value | undefined): v is Value {
  const t = v && graph.initializers.get(v);
  return !!t && size(t.shape) === 1;
}

/** Where(Less(s, f), f, s), f a scalar constant, as Max(s, f); the Less nodes left unread are
 * for cleanup to drop. */
export function floorAsMax(graph: Graph): Graph {
  const producer = new Map(graph.nodes.flatMap((n) => n.outputs.map((v) => [v, n] as const)));
  let changed = false;
  const nodes = graph.nodes.map((node) => {
    const less = node.op === 'Where' ? producer.get(node.inputs[0]!) : undefined;
    const [s, f] = less?.op === 'Less' ? less.inputs : [];
    if (!less || !s || !isScalarConstant(graph, f) || node.inputs[1] !== f || node.inputs[2] !== s) return node;
    changed = true;
    return new Node('Max', node.name, [s, f], node.outputs, {});
  });
  return changed ? { ...graph, nodes } : graph;
}
