// Gradient rules, one per op: given the gradients of a node's outputs, the gradients of its
// inputs, written with the builder's op helpers (standard ONNX only, nothing from the training
// or contrib domains, so the result runs wherever the forward graph runs).
//
// A rule may return a gradient with the shape of the broadcast output for an input of smaller
// (broadcast) shape: the engine reduces it to the input's shape. Contributions to a value used
// several times are summed by the engine too. Rules only compute gradients for the inputs that
// `needs` marks (the others may be left undefined).

import { normAxis, sliceRange } from '../axes.js';
import { GraphBuilder, Node, tensor, Value } from '../graph.js';
import * as op from '../ops.js';
import { conv } from './conv.js';
import { constantInts, GradientRule, RuleContext, scalarOf, staticDim, UnsupportedGradientError } from './context.js';

export type { GradientRule, RuleContext } from './context.js';
export { UnsupportedGradientError } from './context.js';

// ---------------------------------------------------------------- helpers

function inversePerm(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
}

const isStatic = (v: Value) => v.shape !== undefined && v.shape.every((d) => typeof d === 'number');

/** Broadcasts v up to the shape of `like` (static target when known, else Shape(like)). */
function broadcastTo(g: GraphBuilder, v: Value, like: Value): Value {
  return isStatic(like) ? op.expand(g, v, like.staticShape()) : op.expandAs(g, v, like);
}

/** Reshapes v to the shape of `like` (static target when known, else Shape(like)). */
function reshapeTo(g: GraphBuilder, v: Value, like: Value): Value {
  return isStatic(like) ? op.reshape(g, v, like.staticShape()) : op.reshapeAs(g, v, like);
}

/** Swaps the last two axes. */
function transposeLast2(g: GraphBuilder, v: Value): Value {
  const r = v.rank;
  const perm = Array.from({ length: r }, (_, i) => (i < r - 2 ? i : i === r - 2 ? r - 1 : r - 2));
  return op.transpose(g, v, perm);
}

/**
 * The adjoint of selecting `indices` along `axis`: dx[..., j, ...] = sum over i with
 * indices[i] = j of dy[..., i, ...], as a MatMul with a constant one-hot [k, dim] matrix (the
 * axis moved last around it). Standard, and exact: repeated and missing indices included.
 */
function scatterAlongAxis(g: GraphBuilder, dy: Value, indices: readonly number[], axis: number, dim: number): Value {
  const k = indices.length;
  const oneHot = new Float64Array(k * dim);
  indices.forEach((j, i) => (oneHot[i * dim + j] = 1));
  const matrix = g.constant(tensor(dy.dtype, [k, dim], oneHot), 'one_hot');
  const r = dy.rank;
  if (r === 1) return op.reshape(g, op.matmul(g, op.reshape(g, dy, [1, k]), matrix), [dim]);
  if (axis === r - 1) return op.matmul(g, dy, matrix);
  const perm = [...Array.from({ length: r }, (_, i) => i).filter((i) => i !== axis), axis];
  const moved = op.matmul(g, op.transpose(g, dy, perm), matrix);
  return op.transpose(g, moved, inversePerm(perm));
}

/** Reduction axes (input from ReduceSum-13 / ReduceMean-18, else the attribute), normalised;
 * undefined means the node is an identity (empty axes with noop_with_empty_axes). */
function reductionAxes(ctx: RuleContext): number[] | undefined {
  const { node } = ctx;
  const x = node.inputs[0]!;
  const given = node.inputs[1] ? constantInts(ctx, 1, 'axes') : node.ints('axes');
  if (!given || given.length === 0) {
    if ((node.number('noop_with_empty_axes') ?? 0) === 1) return undefined;
    return Array.from({ length: x.rank }, (_, i) => i);
  }
  return given.map((a) => normAxis(a, x.rank)).sort((a, b) => a - b);
}

/** dy of a reduction put back to the input's shape: the reduced axes restored, then expanded. */
function unreduce(g: GraphBuilder, node: Node, dy: Value, axes: number[]): Value {
  const x = node.inputs[0]!;
  const kept = (node.number('keepdims') ?? 1) === 1 || axes.length === 0 ? dy : op.unsqueeze(g, dy, axes);
  return broadcastTo(g, kept, x);
}

/** The number of elements a ReduceMean averages, as a scalar of x's dtype; symbolic dimensions
 * (the batch) are read from Shape(x) at run time. */
function reductionCount(g: GraphBuilder, x: Value, axes: number[]): Value {
  const fixed = axes.reduce((p, a) => (typeof x.shape![a] === 'number' ? p * (x.shape![a] as number) : p), 1);
  const symbolic = axes.filter((a) => typeof x.shape![a] !== 'number');
  const sizes = symbolic.map((a) => op.reshape(g, op.cast(g, op.gather(g, op.shapeOf(g, x), [a], 0), x.dtype), []));
  if (fixed !== 1 || sizes.length === 0) sizes.push(scalarOf(g, x, fixed, 'count'));
  return sizes.slice(1).reduce((p, s) => op.mul(g, p, s), sizes[0]);
}

// ---------------------------------------------------------------- the table

export const RULES: Record<string, GradientRule> = {
  // ---- elementwise
  Add: ({ dy: [d] }) => [d, d],
  Sub: ({ g, dy: [d], needs }) => [d, needs[1] ? op.neg(g, d) : undefined],
  Mul: ({ g, node, dy: [d], needs }) => {
    const [a, b] = node.inputs as Value[];
    return [needs[0] ? op.mul(g, d, b) : undefined, needs[1] ? op.mul(g, d, a) : undefined];
  },
  Div: ({ g, node, dy: [d], needs }) => {
    const [, b] = node.inputs as Value[];
    const y = node.outputs[0];
    // d(a/b)/db = -y/b.
    return [needs[0] ? op.div(g, d, b) : undefined, needs[1] ? op.neg(g, op.div(g, op.mul(g, d, y), b)) : undefined];
  },
  Pow: ({ g, node, dy: [d], needs }) => {
    const [a, b] = node.inputs as Value[];
    const y = node.outputs[0];
    // d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log(a) (defined for a > 0).
    const da = needs[0] ? op.mul(g, d, op.mul(g, b, op.pow(g, a, op.sub(g, b, scalarOf(g, b, 1, 'one'))))) : undefined;
    const db = needs[1] ? op.mul(g, d, op.mul(g, y, op.log(g, a))) : undefined;
    return [da, db];
  },
  Neg: ({ g, dy: [d] }) => [op.neg(g, d)],
  Exp: ({ g, node, dy: [d] }) => [op.mul(g, d, node.outputs[0])],
  Log: ({ g, node, dy: [d] }) => [op.div(g, d, node.inputs[0]!)],
  Sqrt: ({ g, node, dy: [d] }) => [op.div(g, op.mul(g, d, scalarOf(g, d, 0.5, 'half')), node.outputs[0])],
  Reciprocal: ({ g, node, dy: [d] }) => {
    const y = node.outputs[0];
    return [op.neg(g, op.mul(g, d, op.mul(g, y, y)))];
  },
  Sigmoid: ({ g, node, dy: [d] }) => {
    const y = node.outputs[0];
    return [op.mul(g, d, op.mul(g, y, op.sub(g, scalarOf(g, y, 1, 'one'), y)))];
  },
  Tanh: ({ g, node, dy: [d] }) => {
    const y = node.outputs[0];
    return [op.mul(g, d, op.sub(g, scalarOf(g, y, 1, 'one'), op.mul(g, y, y)))];
  },
  Softplus: ({ g, node, dy: [d] }) => [op.mul(g, d, op.sigmoid(g, node.inputs[0]!))],
  // Subgradient 0 at x = 0 (as PyTorch).
  Relu: ({ g, node, dy: [d] }) => {
    const x = node.inputs[0]!;
    return [op.where(g, op.greater(g, x, scalarOf(g, x, 0, 'zero')), d, scalarOf(g, d, 0, 'zero'))];
  },
  Abs: ({ g, node, dy: [d] }) => [op.mul(g, d, op.sign(g, node.inputs[0]!))],
  Identity: ({ dy: [d] }) => [d],
  Cast: ({ g, node, dy: [d] }) => [op.cast(g, d, node.inputs[0]!.dtype)],
  Sum: ({ node, dy: [d] }) => node.inputs.map(() => d),
  Mean: ({ g, node, dy: [d] }) => {
    const scaled = op.mul(g, d, scalarOf(g, d, 1 / node.inputs.length, 'inv_count'));
    return node.inputs.map(() => scaled);
  },
  Where: ({ g, node, dy: [d], needs }) => {
    const cond = node.inputs[0]!;
    const zero = scalarOf(g, d, 0, 'zero');
    return [undefined, needs[1] ? op.where(g, cond, d, zero) : undefined, needs[2] ? op.where(g, cond, zero, d) : undefined];
  },
  Expand: ({ dy: [d] }) => [d],

  // ---- linear algebra
  Conv: conv,
  MatMul: ({ g, node, dy: [d], needs }) => {
    const [a, b] = node.inputs as Value[];
    if (a.rank < 2 || b.rank < 2) throw new UnsupportedGradientError(node, '1-D operands are not supported');
    return [needs[0] ? op.matmul(g, d, transposeLast2(g, b)) : undefined, needs[1] ? op.matmul(g, transposeLast2(g, a), d) : undefined];
  },
  // Y = alpha A' B' + beta C, A' = A or A^T, B' = B or B^T.
  Gemm: ({ g, node, dy: [d], needs }) => {
    const [a, b, c] = node.inputs;
    const alpha = node.number('alpha') ?? 1;
    const beta = node.number('beta') ?? 1;
    const transA = (node.number('transA') ?? 0) === 1;
    const transB = (node.number('transB') ?? 0) === 1;
    // dA' = alpha dY B'^T, dB' = alpha A'^T dY, transposed back where A or B was.
    const da = !needs[0] ? undefined : transA
      ? op.gemm(g, b!, d, undefined, { transA: transB, transB: true, alpha })
      : op.gemm(g, d, b!, undefined, { transB: !transB, alpha });
    const db = !needs[1] ? undefined : transB
      ? op.gemm(g, d, a!, undefined, { transA: true, transB: transA, alpha })
      : op.gemm(g, a!, d, undefined, { transA: !transA, alpha });
    const dc = !needs[2] || !c ? undefined : beta === 1 ? d : op.mul(g, d, scalarOf(g, d, beta, 'beta'));
    return [da, db, dc];
  },

  // ---- layout
  Reshape: ({ g, node, dy: [d] }) => [reshapeTo(g, d, node.inputs[0]!)],
  Flatten: ({ g, node, dy: [d] }) => [reshapeTo(g, d, node.inputs[0]!)],
  Squeeze: ({ g, node, dy: [d] }) => [reshapeTo(g, d, node.inputs[0]!)],
  Unsqueeze: ({ g, node, dy: [d] }) => [reshapeTo(g, d, node.inputs[0]!)],
  Transpose: ({ g, node, dy: [d] }) => {
    const rank = node.inputs[0]!.rank;
    const perm = node.ints('perm') ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
    return [op.transpose(g, d, inversePerm(perm))];
  },
  Concat: (ctx) => {
    const { g, node, dy: [d] } = ctx;
    const axis = normAxis(node.number('axis') ?? 0, d.rank);
    const sizes = node.inputs.map((v) => staticDim(ctx, v!, axis));
    return op.split(g, d, sizes, axis);
  },
  Split: ({ g, node, dy }) => [op.concat(g, [...dy], normAxis(node.number('axis') ?? 0, dy[0].rank))],
  Slice: (ctx) => {
    const { node, dy: [d] } = ctx;
    const x = node.inputs[0]!;
    const starts = constantInts(ctx, 1, 'starts');
    const ends = constantInts(ctx, 2, 'ends');
    const axes = node.inputs[3] ? constantInts(ctx, 3, 'axes') : starts.map((_, i) => i);
    const steps = node.inputs[4] ? constantInts(ctx, 4, 'steps') : starts.map(() => 1);
    // Each sliced axis is a selection of indices; undo them one axis at a time.
    let dx = d;
    axes.forEach((axisIn, i) => {
      const axis = normAxis(axisIn, x.rank);
      const dim = staticDim(ctx, x, axis);
      const s = steps[i];
      const { start, count } = sliceRange(starts[i], ends[i], s, dim);
      const indices = Array.from({ length: count }, (_, k) => start + k * s);
      dx = scatterAlongAxis(ctx.g, dx, indices, axis, dim);
    });
    return [dx];
  },
  // Constant padding (rosinality's ZeroConv2d pads with ones): the padded border is not x.
  Pad: (ctx) => {
    const { g, node, dy: [d] } = ctx;
    const x = node.inputs[0]!;
    const pads = constantInts(ctx, 1, 'pads');
    const axes = Array.from({ length: x.rank }, (_, i) => i).filter((i) => pads[i] !== 0 || pads[i + x.rank] !== 0);
    if (!axes.length) return [d];
    return [op.slice(g, d, axes.map((i) => pads[i]), axes.map((i) => pads[i] + staticDim(ctx, x, i)), axes)];
  },
  Gather: (ctx) => {
    const { g, node, dy: [d] } = ctx;
    const x = node.inputs[0]!;
    const axis = normAxis(node.number('axis') ?? 0, x.rank);
    const dim = staticDim(ctx, x, axis);
    const indices = constantInts(ctx, 1, 'indices').map((i) => (i < 0 ? i + dim : i));
    const rank = ctx.constant(1)!.shape.length;
    if (rank > 1) throw new UnsupportedGradientError(node, 'indices of rank > 1 are not supported');
    // Scalar indices drop the axis: put it back first.
    const dyAxis = rank === 0 ? op.unsqueeze(g, d, [axis]) : d;
    return [scatterAlongAxis(g, dyAxis, indices, axis, dim)];
  },
  // The inverse rearrangement (SpaceToDepth for mode CRD, written as Reshape/Transpose).
  DepthToSpace: (ctx) => {
    const { g, node, dy: [d] } = ctx;
    const b = node.number('blocksize') ?? 0;
    const mode = node.string('mode') ?? 'DCR';
    const x = node.inputs[0]!;
    const [C, h, w] = [1, 2, 3].map((i) => staticDim(ctx, x, i));
    const c = C / (b * b);
    const blocks = op.reshape(g, d, [0, c, h, b, w, b]);
    const moved = mode === 'CRD' ? op.transpose(g, blocks, [0, 1, 3, 5, 2, 4]) : op.transpose(g, blocks, [0, 3, 5, 1, 2, 4]);
    return [op.reshape(g, moved, [0, C, h, w])];
  },

  // ---- reductions
  ReduceSum: (ctx) => {
    const axes = reductionAxes(ctx);
    return [axes ? unreduce(ctx.g, ctx.node, ctx.dy[0], axes) : ctx.dy[0]];
  },
  ReduceMean: (ctx) => {
    const { g, node, dy: [d] } = ctx;
    const axes = reductionAxes(ctx);
    if (!axes) return [d];
    return [unreduce(g, node, op.div(g, d, reductionCount(g, node.inputs[0]!, axes)), axes)];
  },
  ReduceMax: (ctx) => {
    const { g, node, dy: [d] } = ctx;
    const axes = reductionAxes(ctx);
    if (!axes) return [d];
    // dy goes to the elements equal to the maximum; tied elements share it (a subgradient).
    const x = node.inputs[0]!;
    const winners = op.cast(g, op.equal(g, x, unreduce(g, node, node.outputs[0], axes)), x.dtype);
    const ties = op.reduceSum(g, winners, axes, true);
    return [op.div(g, op.mul(g, unreduce(g, node, d, axes), winners), ties)];
  },
};
