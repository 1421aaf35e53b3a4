// The gradient-rule test cases, shared by rules.test.ts (float64 finite differences and
// onnxruntime CPU) and webgpu.test.ts: each builds a tiny graph f -> out; prepare() adds
// loss = ReduceSum(out * R) with a fixed random R, so that every output element matters.

import { attr, Dim, Graph, GraphBuilder, tensor, Tensor, Value } from '../../../src/builder/graph.js';
import * as op from '../../../src/builder/ops.js';
import { Rng } from '../../../support/random-params.js';
import { evaluateGraph as evaluate } from '../../../src/builder/evaluate.js';

// ---------------------------------------------------------------- harness

/** What a case builds: the output to weigh into the loss and the values to differentiate. */
export interface Built {
  out: Value;
  wrt: Value[];
}

export interface Case {
  name: string;
  /** The rules the case exercises (checked against RULES for coverage). */
  ops: string[];
  opset?: number;
  build(t: CaseBuilder): Built;
}

/** Registers inputs and initializers with random float32-representable data. */
export class CaseBuilder {
  readonly feeds: Record<string, Tensor> = {};

  constructor(readonly g: GraphBuilder, private readonly rng: Rng) {}

  private data(shape: number[], lo: number, hi: number): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    return tensor('float32', shape, Array.from({ length: n }, () => Math.fround(this.rng.uniform(lo, hi))));
  }

  /** A graph input declared with `declared` (symbolic dims allowed), fed with shape `actual`. */
  input(name: string, actual: number[], opts: { declared?: Dim[]; lo?: number; hi?: number } = {}): Value {
    this.feeds[name] = this.data(actual, opts.lo ?? -1, opts.hi ?? 1);
    return this.g.input(name, 'float32', opts.declared ?? actual);
  }

  param(name: string, shape: number[], lo = -1, hi = 1): Value {
    return this.g.initializer(name, this.data(shape, lo, hi));
  }

  /** Values in ±[0.2, 1]: away from the kinks of Relu and Abs. */
  awayFromZero(name: string, shape: number[]): Value {
    const t = this.data(shape, 0.2, 1);
    t.data = t.data.map((v) => (this.rng.next() < 0.5 ? -v : v));
    return this.g.initializer(name, t);
  }
}

export interface Prepared {
  graph: Graph;
  loss: Value;
  wrt: Value[];
  feeds: Record<string, Tensor>;
}

export function prepare(c: Case, seed: number): Prepared {
  const rng = new Rng(seed);
  const g = new GraphBuilder('rule_test', { opset: c.opset });
  const t = new CaseBuilder(g, rng);
  const { out, wrt } = c.build(t);
  g.output(out, 'out');
  const forward = g.build();
  // The loss weighs each element of out (at its run-time shape) by a fixed random number.
  const outShape = evaluate(forward, t.feeds).out.shape;
  const e = GraphBuilder.extend(forward);
  const r = e.initializer('R', tensor(out.dtype, outShape, Array.from({ length: outShape.reduce((a, b) => a * b, 1) }, () => Math.fround(rng.uniform(-1, 1)))));
  const loss = op.reduceSum(e, op.mul(e, out, r), outShape.map((_, i) => i), false);
  e.output(loss, 'loss');
  return { graph: e.build(), loss, wrt, feeds: t.feeds };
}

/** The loss with one element of v moved by delta (v an input or an initializer). */
export function lossWith(p: Prepared, v: Value, k: number, delta: number): number {
  const bump = (t: Tensor): Tensor => {
    const data = Float64Array.from(t.data);
    data[k] += delta;
    return { ...t, data };
  };
  const feeds = { ...p.feeds };
  let graph = p.graph;
  if (p.feeds[v.name]) {
    feeds[v.name] = bump(p.feeds[v.name]);
  } else {
    const initializers = new Map(graph.initializers);
    initializers.set(v, bump(initializers.get(v)!));
    graph = { ...graph, initializers };
  }
  return evaluate(graph, feeds).loss.data[0];
}

export function valueData(p: Prepared, v: Value): Tensor {
  return p.feeds[v.name] ?? p.graph.initializers.get(v)!;
}
// ---------------------------------------------------------------- cases

const N: Dim[] = ['N'];

export const CASES: Case[] = [
  // ---- elementwise and broadcasting
  {
    name: 'Add: [1,C,1,1] parameter against [N,C,H,W] with a symbolic batch',
    ops: ['Add'],
    build: (t) => {
      const x = t.input('x', [2, 3, 2, 2], { declared: [...N, 3, 2, 2] });
      const b = t.param('b', [1, 3, 1, 1]);
      return { out: op.add(t.g, x, b), wrt: [x, b] };
    },
  },
  {
    name: 'Add: scalar with tensor, and both sides broadcast ([3,1] + [1,4])',
    ops: ['Add'],
    build: (t) => {
      const s = t.param('s', []);
      const a = t.param('a', [3, 1]);
      const b = t.param('b', [1, 4]);
      return { out: op.add(t.g, op.add(t.g, a, b), s), wrt: [s, a, b] };
    },
  },
  {
    name: 'Sub: rank-3 minus a trailing vector',
    ops: ['Sub'],
    build: (t) => {
      const a = t.param('a', [2, 3, 4]);
      const b = t.param('b', [4]);
      return { out: op.sub(t.g, a, b), wrt: [a, b] };
    },
  },
  {
    name: 'Mul: [N,C,H,W] by [1,C,1,1], and [2,1,3] by [4,1]',
    ops: ['Mul'],
    build: (t) => {
      const x = t.input('x', [2, 3, 2, 2], { declared: [...N, 3, 2, 2] });
      const s = t.param('s', [1, 3, 1, 1]);
      const a = t.param('a', [2, 1, 3]);
      const b = t.param('b', [4, 1]);
      const ab = op.reduceSum(t.g, op.mul(t.g, a, b), [0, 1, 2], false); // scalar
      return { out: op.mul(t.g, op.mul(t.g, x, s), ab), wrt: [x, s, a, b] };
    },
  },
  {
    name: 'Div: both inputs, divisor broadcast',
    ops: ['Div'],
    build: (t) => {
      const a = t.param('a', [2, 3]);
      const b = t.param('b', [3], 0.5, 2);
      return { out: op.div(t.g, a, b), wrt: [a, b] };
    },
  },
  {
    name: 'Pow: base and exponent, exponent broadcast',
    ops: ['Pow'],
    build: (t) => {
      const a = t.param('a', [2, 3], 0.5, 2);
      const b = t.param('b', [3], -1.5, 2.5);
      return { out: op.pow(t.g, a, b), wrt: [a, b] };
    },
  },
  {
    name: 'Pow: constant exponent (the exponent needs no gradient; negative bases are fine)',
    ops: ['Pow'],
    build: (t) => {
      const a = t.param('a', [5]);
      return { out: op.pow(t.g, a, t.g.constant(tensor('float32', [], [3]), 'three')), wrt: [a] };
    },
  },
  {
    name: 'unary: Neg, Exp, Log, Sqrt, Sigmoid, Tanh, Softplus, Reciprocal',
    ops: ['Neg', 'Exp', 'Log', 'Sqrt', 'Sigmoid', 'Tanh', 'Softplus', 'Reciprocal'],
    build: (t) => {
      const { g } = t;
      const x = t.param('x', [2, 3]);
      const pos = t.param('pos', [2, 3], 0.5, 2);
      const terms = [
        op.neg(g, x), op.exp(g, x), op.log(g, pos), op.sqrt(g, pos), op.sigmoid(g, x), op.tanh(g, x), op.softplus(g, x), op.reciprocal(g, pos),
      ];
      return { out: op.concat(g, terms, 0), wrt: [x, pos] };
    },
  },
  {
    name: 'Relu and Abs (inputs away from the kink)',
    ops: ['Relu', 'Abs'],
    build: (t) => {
      const x = t.awayFromZero('x', [3, 4]);
      return { out: op.concat(t.g, [op.relu(t.g, x), op.abs(t.g, x)], 1), wrt: [x] };
    },
  },
  {
    name: 'Identity, Cast float32 -> float64 -> float32',
    ops: ['Identity', 'Cast'],
    build: (t) => {
      const x = t.param('x', [2, 2]);
      const wide = op.cast(t.g, op.exp(t.g, op.identity(t.g, x)), 'float64');
      return { out: op.cast(t.g, op.mul(t.g, wide, wide), 'float32'), wrt: [x] };
    },
  },
  {
    name: 'Sum (three inputs, broadcast) and Mean',
    ops: ['Sum', 'Mean'],
    build: (t) => {
      const a = t.param('a', [2, 3]);
      const b = t.param('b', [3]);
      const c = t.param('c', [2, 1]);
      const mean = t.g.node('Mean', [a, b], {}, [{ dtype: 'float32', shape: [2, 3] }])[0];
      return { out: op.add(t.g, op.sum(t.g, [a, b, c]), mean), wrt: [a, b, c] };
    },
  },
  {
    name: 'Expand [3,1] -> [2,3,4]',
    ops: ['Expand'],
    build: (t) => {
      const a = t.param('a', [3, 1]);
      return { out: op.expand(t.g, a, [2, 3, 4]), wrt: [a] };
    },
  },
  {
    name: 'Where: condition without gradient, both branches broadcast',
    ops: ['Where'],
    build: (t) => {
      const c = t.awayFromZero('c', [2, 3]);
      const a = t.param('a', [2, 3]);
      const b = t.param('b', [3]);
      const cond = op.greater(t.g, c, t.g.constant(tensor('float32', [], [0]), 'zero'));
      return { out: op.where(t.g, cond, op.mul(t.g, a, c), b), wrt: [a, b, c] };
    },
  },
  {
    name: 'accumulation: a value read by several nodes (x*x + exp(x) + x)',
    ops: ['Mul', 'Exp', 'Add'],
    build: (t) => {
      const x = t.param('x', [2, 3]);
      return { out: op.add(t.g, op.add(t.g, op.mul(t.g, x, x), op.exp(t.g, x)), x), wrt: [x] };
    },
  },
  {
    name: 'a parameter the loss does not depend on gets zeros; so does a symbolic-batch input',
    ops: ['Mul'],
    build: (t) => {
      const x = t.param('x', [2, 3]);
      const unused = t.param('unused', [4, 1]);
      const input = t.input('input', [2, 3], { declared: [...N, 3] });
      t.g.node('Neg', [input], {}, [{ dtype: 'float32', shape: input.shape }]);
      return { out: op.mul(t.g, x, x), wrt: [x, unused, input] };
    },
  },

  // ---- layout
  {
    name: 'Reshape (static and with the symbolic batch), Flatten, Squeeze, Unsqueeze',
    ops: ['Reshape', 'Flatten', 'Squeeze', 'Unsqueeze'],
    build: (t) => {
      const { g } = t;
      const x = t.input('x', [2, 3, 4], { declared: [...N, 3, 4] });
      const w = t.param('w', [3, 4]);
      const r = op.reshape(g, op.mul(g, x, w), [0, 12]);
      const f = g.node('Flatten', [op.reshape(g, w, [3, 2, 2])], { axis: attr.int(1) }, [{ dtype: 'float32', shape: [3, 4] }])[0];
      const u = op.unsqueeze(g, f, [0, 2]);
      const s = g.node('Squeeze', [u, g.constant(tensor('int64', [1], [2]))], {}, [{ dtype: 'float32', shape: [1, 3, 4] }])[0];
      return { out: op.mul(g, r, op.reshape(g, s, [1, 12])), wrt: [x, w] };
    },
  },
  {
    name: 'Transpose',
    ops: ['Transpose'],
    build: (t) => {
      const x = t.param('x', [2, 3, 4]);
      return { out: op.transpose(t.g, x, [1, 2, 0]), wrt: [x] };
    },
  },
  {
    name: 'Concat on axis 1',
    ops: ['Concat'],
    build: (t) => {
      const a = t.param('a', [2, 1, 3]);
      const b = t.param('b', [2, 2, 3]);
      const c = t.input('c', [2, 3, 3], { declared: [...N, 3, 3] });
      return { out: op.concat(t.g, [a, b, op.mul(t.g, c, c)], 1), wrt: [a, b, c] };
    },
  },
  {
    name: 'Split: both outputs used, and only one (zeros for the other)',
    ops: ['Split'],
    build: (t) => {
      const x = t.input('x', [2, 5, 2], { declared: [...N, 5, 2] });
      const [a, b] = op.split(t.g, x, [2, 3], 1);
      const [c] = op.split(t.g, op.exp(t.g, x), [1, 4], 1);
      return { out: op.concat(t.g, [op.mul(t.g, a, a), b, c], 1), wrt: [x] };
    },
  },
  {
    name: 'Slice: step 1, step 2 and a negative step on several axes',
    ops: ['Slice'],
    build: (t) => {
      const x = t.param('x', [4, 5, 6]);
      const a = op.slice(t.g, x, [1, 0], [3, 5], [0, 2], [1, 2]); // [2, 5, 3]
      const b = op.slice(t.g, x, [-1, 4], [-100, 1], [0, 1], [-1, -2]); // [4, 2, 6]
      return { out: op.concat(t.g, [op.reshape(t.g, a, [-1]), op.reshape(t.g, b, [-1])], 0), wrt: [x] };
    },
  },
  {
    name: 'Pad: ones around the spatial axes (rosinality\'s ZeroConv2d), and zeros on one side of one axis',
    ops: ['Pad'],
    build: (t) => {
      const x = t.input('x', [2, 3, 2, 3], { declared: [...N, 3, 2, 3] });
      const w = t.param('w', [2, 3, 3, 3]);
      const ones = op.padSpatial(t.g, x, [1, 1, 1, 1], 1);
      const side = op.pad(t.g, op.exp(t.g, x), [0, 0, 0, 2, 0, 0, 0, 0]);
      const conv = op.conv(t.g, ones, w, undefined);
      return { out: op.concat(t.g, [op.reshape(t.g, conv, [0, -1]), op.reshape(t.g, side, [0, -1])], 1), wrt: [x, w] };
    },
  },
  {
    name: 'Gather: a channel permutation on axis 1 (as Glow), repeated indices, a scalar index',
    ops: ['Gather'],
    build: (t) => {
      const { g } = t;
      const x = t.input('x', [2, 4, 2, 2], { declared: [...N, 4, 2, 2] });
      const perm = op.gather(g, x, [2, 0, 3, 1], 1);
      const w = t.param('w', [3, 5]);
      const rep = op.gather(g, w, [4, 0, 4, -1], 1); // [3, 4]
      const one = g.node('Gather', [w, g.constant(tensor('int64', [], [1]))], { axis: attr.int(0) }, [{ dtype: 'float32', shape: [5] }])[0];
      const side = op.add(g, op.reduceSum(g, rep, [0, 1], false), op.reduceSum(g, op.mul(g, one, one), [0], false));
      return { out: op.mul(g, perm, side), wrt: [x, w] };
    },
  },
  {
    name: 'DepthToSpace CRD (Glow unsqueeze) and DCR',
    ops: ['DepthToSpace'],
    build: (t) => {
      const x = t.input('x', [2, 8, 2, 3], { declared: [...N, 8, 2, 3] });
      const crd = op.depthToSpace(t.g, x, 2, 'CRD');
      const dcr = op.depthToSpace(t.g, op.exp(t.g, x), 2, 'DCR');
      return { out: op.add(t.g, crd, dcr), wrt: [x] };
    },
  },

  // ---- reductions
  ...[13, 17, 18].map((opset): Case => ({
    name: `ReduceSum and ReduceMean, keepdims 0 and 1, all axes and the symbolic batch axis, opset ${opset}`,
    ops: ['ReduceSum', 'ReduceMean'],
    opset,
    build: (t) => {
      const { g } = t;
      const x = t.input('x', [3, 2, 4], { declared: [...N, 2, 4] });
      const w = t.param('w', [2, 4]);
      const xw = op.mul(g, x, w);
      const m1 = op.reduceMean(g, xw, [0, 2], true); // [1, 2, 1]
      const m0 = op.reduceMean(g, xw, [1], false); // [N, 4]
      const s1 = op.reduceSum(g, xw, [-1], true); // [N, 2, 1]
      const s0 = op.reduceSum(g, op.mul(g, xw, xw), [0, 1, 2], false); // []
      const all = op.reduceMean(g, w, [0, 1], false); // []
      const a = op.add(g, op.mul(g, s1, m1), op.unsqueeze(g, op.mul(g, m0, s0), [1]));
      return { out: op.mul(g, a, all), wrt: [x, w] };
    },
  })),

  // Random inputs have no ties: the gradient goes to the one maximum of each slice.
  ...[13, 18].map((opset): Case => ({
    name: `ReduceMax, keepdims 0 and 1, the symbolic batch axis and not, opset ${opset}`,
    ops: ['ReduceMax'],
    opset,
    build: (t) => {
      const { g } = t;
      const x = t.input('x', [3, 2, 4], { declared: [...N, 2, 4] });
      const w = t.param('w', [2, 4]);
      const xw = op.mul(g, x, w);
      const m1 = op.reduceMax(g, xw, [-1], true); // [N, 2, 1]
      const m0 = op.reduceMax(g, xw, [0, 1], false); // [4]
      return { out: op.add(g, op.mul(g, m1, op.reduceMax(g, w, [0, 1], false)), m0), wrt: [x, w] };
    },
  })),

  // ---- linear algebra
  ...[
    { name: 'plain 3x3, same pads, bias', x: [2, 2, 5, 5], w: [3, 2, 3, 3], conv: { pads: [1, 1, 1, 1] } },
    // 8+ input channels: dX as a convolution with the flipped kernel (fewer: ConvTranspose).
    { name: 'plain 3x3, same pads, 8 -> 3 channels', x: [1, 8, 4, 4], w: [3, 8, 3, 3], conv: { pads: [1, 1, 1, 1] } },
    // Fewer outputs than inputs: the weight gradient shifts dY instead of X.
    { name: 'plain 3x3, same pads, 5 -> 2 channels', x: [2, 5, 5, 4], w: [2, 5, 3, 3], conv: { pads: [1, 1, 1, 1] } },
    { name: 'plain 3x2, asymmetric pads, 4 -> 1 channel', x: [2, 4, 5, 6], w: [1, 4, 3, 2], conv: { pads: [0, 1, 2, 0] }, noBias: true },
    { name: 'stride 2, asymmetric pads, rows left over', x: [2, 2, 7, 6], w: [3, 2, 3, 2], conv: { pads: [1, 0, 0, 1], strides: [2, 2] } },
    { name: 'stride 2 with more bottom padding than leftover', x: [1, 2, 6, 6], w: [2, 2, 3, 3], conv: { pads: [0, 2, 2, 1], strides: [2, 3] } },
    { name: 'dilations 2', x: [2, 2, 7, 7], w: [2, 2, 3, 3], conv: { pads: [2, 1, 2, 1], dilations: [2, 2] } },
    { name: 'groups 2, stride 2, dilations 2', x: [2, 4, 9, 8], w: [6, 2, 3, 3], conv: { pads: [1, 1, 1, 0], strides: [2, 2], dilations: [2, 2], group: 2 } },
    { name: '1x1 (Glow invconv, no bias)', x: [2, 3, 3, 3], w: [3, 3, 1, 1], conv: {}, noBias: true },
  ].map((c): Case => ({
    name: `Conv: ${c.name}`,
    ops: ['Conv'],
    build: (t) => {
      const x = t.input('x', c.x, { declared: [...N, ...c.x.slice(1)] });
      const w = t.param('w', c.w);
      const b = c.noBias ? undefined : t.param('b', [c.w[0]]);
      return { out: op.conv(t.g, x, w, b, c.conv as op.ConvOptions), wrt: b ? [x, w, b] : [x, w] };
    },
  })),
  ...[
    { transA: false, transB: false, alpha: 1, beta: 1, c: [4] },
    { transA: true, transB: false, alpha: 0.7, beta: 1, c: [3, 4] },
    { transA: false, transB: true, alpha: 1, beta: -1.5, c: [] },
    { transA: true, transB: true, alpha: 2.5, beta: 0.3, c: [3, 1] },
  ].map((o): Case => ({
    name: `Gemm transA=${o.transA} transB=${o.transB} alpha=${o.alpha} beta=${o.beta}, C [${o.c}]`,
    ops: ['Gemm'],
    build: (t) => {
      const a = t.param('a', o.transA ? [2, 3] : [3, 2]);
      const b = t.param('b', o.transB ? [4, 2] : [2, 4]);
      const c = t.param('c', o.c);
      return { out: op.gemm(t.g, a, b, c, o), wrt: [a, b, c] };
    },
  })),
  {
    name: 'Gemm without C, symbolic batch (Glow project_ycond)',
    ops: ['Gemm'],
    build: (t) => {
      const y = t.input('y', [2, 3], { declared: [...N, 3] });
      const w = t.param('w', [4, 3]);
      return { out: op.gemm(t.g, y, w, undefined, { transB: true }), wrt: [y, w] };
    },
  },
  {
    name: 'MatMul: 2-D, batched, and batch-broadcast ([2,1,3,4] x [3,4,5])',
    ops: ['MatMul'],
    build: (t) => {
      const { g } = t;
      const a = t.param('a', [3, 4]);
      const b = t.param('b', [4, 2]);
      const p = t.param('p', [2, 1, 3, 4]);
      const q = t.param('q', [3, 4, 5]);
      const ab = op.matmul(g, a, b); // [3, 2]
      const pq = op.matmul(g, p, q); // [2, 3, 3, 5]
      return { out: op.mul(g, op.reduceSum(g, ab, [0, 1], false), pq), wrt: [a, b, p, q] };
    },
  },
];

