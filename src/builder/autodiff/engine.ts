// Reverse-mode differentiation of a builder graph, emitted into the graph as standard ONNX ops.
//
// The nodes that lie on a path from `wrt` to `loss` are visited in reverse topological order,
// starting from dLoss/dLoss = 1. Each node's rule (rules.ts) maps the gradients of its outputs to
// gradients of its inputs; the engine does the two things every rule would otherwise repeat:
// - un-broadcasting: a gradient returned with the broadcast output shape for a smaller input is
//   reduced back (ReduceSum over the broadcast axes), symbolic batch dimensions included;
// - accumulation: the contributions to a value read by several nodes are added once, when the
//   value's own producer (or the caller) needs its total.
// Only floating-point values carry gradients, so integer inputs (shapes, axes, indices, split
// sizes) and bool conditions are skipped without any rule having to say so.

import { DType, Graph, GraphBuilder, Node, Shape, tensor, Tensor, Value } from '../graph.js';
import * as op from '../ops.js';
import { toposort } from '../passes/toposort.js';
import { RULES } from './rules.js';

/** No gradient rule exists for an op on the path from the parameters to the loss. */
export class MissingGradientError extends Error {
  override name = 'MissingGradientError';
  constructor(readonly node: Node) {
    super(`no gradient rule for ${node.domain ? `${node.domain}::` : ''}${node.op} (node ${node.name}); `
      + `rules exist for ${Object.keys(RULES).sort().join(', ')}`);
  }
}

export interface GradientOptions {
  /** Name of the graph output holding the gradient of v; default `${v.name}_grad`. */
  outputNames?: (v: Value) => string;
}

const FLOAT_TYPES: readonly DType[] = ['float32', 'float16', 'float64'];
const isFloat = (v: Value | undefined): v is Value => v !== undefined && FLOAT_TYPES.includes(v.dtype);

/** Equal, or not known to differ (a symbolic size may take any value). */
function sameDim(a: Shape[number], b: Shape[number]): boolean {
  return a === b || typeof a === 'string' || typeof b === 'string';
}

/**
 * Reduces a gradient computed with a broadcast shape to the shape of `target`: sums over the
 * axes where target has size 1 (keeping them), then over the leading axes target lacks.
 */
function unbroadcast(g: GraphBuilder, grad: Value, target: Value): Value {
  const gs = grad.shape;
  const ts = target.shape;
  if (!gs || !ts) throw new Error(`gradient ${grad} for ${target}: shapes must be known`);
  const lead = gs.length - ts.length;
  if (lead < 0) throw new Error(`gradient ${grad} has a lower rank than ${target}`);
  const ones = ts.flatMap((d, i) => (d === 1 && gs[i + lead] !== 1 ? [i + lead] : []));
  let out = ones.length > 0 ? op.reduceSum(g, grad, ones, true) : grad;
  if (lead > 0) out = op.reduceSum(g, out, Array.from({ length: lead }, (_, i) => i), false);
  const os = out.shape!;
  if (os.length !== ts.length || os.some((d, i) => !sameDim(d, ts[i]))) {
    throw new Error(`gradient ${grad} does not reduce to the shape of ${target}`);
  }
  return out;
}

/** Zeros of v's shape: Expand of a scalar, to a static shape or to Shape(v) at run time. */
function zerosLike(g: GraphBuilder, v: Value): Value {
  const zero = g.constant(tensor(v.dtype, [], [0]), 'zero');
  return v.shape?.every((d) => typeof d === 'number') ? op.expand(g, zero, v.staticShape()) : op.expandAs(g, zero, v);
}

export function addGradients(graph: Graph, loss: Value, wrt: readonly Value[], options: GradientOptions = {}): Graph {
  const sorted = toposort(graph);
  const produced = new Set<Value>([...graph.inputs.map((io) => io.value), ...graph.initializers.keys(), ...sorted.nodes.flatMap((n) => n.outputs)]);
  for (const v of [loss, ...wrt]) {
    if (!produced.has(v)) throw new Error(`addGradients: ${v} is not a value of graph ${graph.name}`);
  }
  if (!isFloat(loss) || loss.shape?.length !== 0) throw new Error(`addGradients: the loss ${loss} must be a floating-point scalar (shape [])`);
  for (const v of wrt) if (!isFloat(v)) throw new Error(`addGradients: cannot differentiate with respect to ${v}: not floating-point`);

  // Values that depend on wrt (forward) and that the loss depends on (backward), through
  // floating-point values only.
  const depends = new Set<Value>(wrt);
  for (const node of sorted.nodes) {
    if (node.inputs.some((v) => v && depends.has(v))) node.outputs.filter(isFloat).forEach((v) => depends.add(v));
  }
  const reaches = new Set<Value>([loss]);
  for (const node of [...sorted.nodes].reverse()) {
    if (node.outputs.some((v) => reaches.has(v))) node.inputs.filter(isFloat).forEach((v) => reaches.add(v));
  }
  const active = (v: Value | undefined) => v !== undefined && depends.has(v) && reaches.has(v);

  const g = GraphBuilder.extend(sorted);
  const constants = new Map<Value, Tensor>(sorted.initializers);
  const contributions = new Map<Value, Value[]>();
  const totals = new Map<Value, Value>();
  /** The accumulated gradient of v (one Add per extra contribution), or undefined if none. */
  const total = (v: Value): Value | undefined => {
    if (totals.has(v)) return totals.get(v);
    const parts = contributions.get(v);
    if (!parts) return undefined;
    // Add rather than a variadic Sum: onnxruntime's WebGPU provider has no Sum kernel.
    const t = g.scope(`${v.name}_acc`, () => parts.slice(1).reduce((acc, p) => op.add(g, acc, p), parts[0]));
    totals.set(v, t);
    return t;
  };

  g.scope('grad', () => {
    contributions.set(loss, [g.constant(tensor(loss.dtype, [], [1]), 'seed')]);
    for (const node of [...sorted.nodes].reverse()) {
      if (!node.outputs.some(active)) continue;
      const needs = node.inputs.map(active);
      if (!needs.some(Boolean)) continue;
      const outputGrads = node.outputs.map(total);
      if (outputGrads.every((d) => d === undefined)) continue;
      const rule = node.domain === '' ? RULES[node.op] : undefined;
      if (!rule) throw new MissingGradientError(node);
      g.scope(node.name, () => {
        const dy = node.outputs.map((v, i) => outputGrads[i] ?? zerosLike(g, v));
        const grads = rule({ g, node, dy, needs, constant: (i) => (node.inputs[i] ? constants.get(node.inputs[i]!) : undefined) });
        node.inputs.forEach((x, i) => {
          if (!needs[i]) return;
          const d = grads[i];
          if (!d) throw new Error(`gradient rule of ${node.op} returned no gradient for input ${i} of node ${node.name}`);
          const list = contributions.get(x!) ?? [];
          list.push(unbroadcast(g, d, x!));
          contributions.set(x!, list);
        });
      });
    }
  });

  const name = options.outputNames ?? ((v: Value) => `${v.name}_grad`);
  for (const v of wrt) {
    // A value the loss does not depend on has a gradient of zeros of its shape.
    const grad = g.scope('grad', () => total(v) ?? zerosLike(g, v));
    g.output(grad, name(v), `gradient of ${loss.name} with respect to ${v.name}`);
  }
  return g.build(graph.docString);
}
