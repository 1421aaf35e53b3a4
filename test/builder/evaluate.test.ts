// The float64 interpreter: every kernel on small hand-computed cases (or against a naive loop
// written out in the test), then whole graphs built with ops.ts against onnxruntime-node.

import { expect } from 'chai';
import { canEvaluate, evaluateGraph, evaluateNode } from '../../src/builder/evaluate.js';
import { attr, Attribute, Graph, GraphBuilder, Node, tensor, Tensor, Value } from '../../src/builder/graph.js';
import * as op from '../../src/builder/ops.js';
import { maxAbsDiff, runGraph } from '../helpers.js';
import { Rng } from '../../support/random-params.js';

// ---------------------------------------------------------------- helpers

const f = (shape: number[], data: ArrayLike<number>): Tensor => tensor('float32', shape, data);
const i64 = (data: number[], shape = [data.length]): Tensor => tensor('int64', shape, data);
const iota = (shape: number[], start = 0): Tensor => f(shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, k) => start + k));

/** Runs one node with the given inputs (undefined = omitted optional input). */
function run(opName: string, inputs: (Tensor | undefined)[], attributes: Record<string, Attribute> = {}, outputs = 1): Tensor[] {
  const ins = inputs.map((t, i) => (t ? new Value(`in${i}`, t.dtype, t.shape) : undefined));
  const outs = Array.from({ length: outputs }, (_, i) => new Value(`out${i}`, 'float32', undefined));
  return evaluateNode(new Node(opName, `test_${opName}`, ins, outs, attributes), inputs);
}

const run1 = (opName: string, inputs: (Tensor | undefined)[], attributes: Record<string, Attribute> = {}) => run(opName, inputs, attributes)[0];

function expectTensor(t: Tensor, shape: number[], data: number[], tol = 1e-12): void {
  expect(t.shape, 'shape').to.deep.equal(shape);
  expect(t.data.length, 'length').to.equal(data.length);
  expect(maxAbsDiff(t.data, data), `data ${Array.from(t.data)} vs ${data}`).to.be.at.most(tol);
}

function randomData(rng: Rng, n: number, scale = 1): Float64Array {
  // float32-representable so that onnxruntime and the interpreter start from the same numbers.
  return Float64Array.from({ length: n }, () => Math.fround(rng.normal(0, scale)));
}

function randomTensor(rng: Rng, shape: number[], scale = 1): Tensor {
  return f(shape, randomData(rng, shape.reduce((a, b) => a * b, 1), scale));
}

// ---------------------------------------------------------------- kernels

describe('evaluate: float64 kernels', () => {
  describe('elementwise', () => {
    it('binary ops broadcast numpy-style', () => {
      const a = iota([2, 3]); // [[0 1 2] [3 4 5]]
      expectTensor(run1('Add', [a, f([3], [10, 20, 30])]), [2, 3], [10, 21, 32, 13, 24, 35]);
      expectTensor(run1('Sub', [f([2, 1], [1, 2]), f([1, 3], [1, 2, 3])]), [2, 3], [0, -1, -2, 1, 0, -1]);
      expectTensor(run1('Mul', [a, f([], [2])]), [2, 3], [0, 2, 4, 6, 8, 10]);
      expectTensor(run1('Div', [f([2], [1, 3]), f([2, 1], [2, 4])]), [2, 2], [0.5, 1.5, 0.25, 0.75]);
      expectTensor(run1('Pow', [f([3], [2, 3, 4]), f([1], [2])]), [3], [4, 9, 16]);
      expectTensor(run1('Add', [f([1, 2, 1], [1, 2]), f([3, 1, 2], [0, 10, 20, 30, 40, 50])]), [3, 2, 2], [1, 11, 2, 12, 21, 31, 22, 32, 41, 51, 42, 52]);
    });

    it('integer Div truncates; float Div does not', () => {
      expectTensor(run1('Div', [i64([7, -7]), i64([2])]), [2], [3, -3]);
      expectTensor(run1('Div', [f([2], [7, -7]), f([1], [2])]), [2], [3.5, -3.5]);
    });

    it('rejects shapes that do not broadcast, naming the node', () => {
      expect(() => run1('Add', [iota([2, 3]), iota([2])])).to.throw(/test_Add.*do not broadcast/);
    });

    it('unary ops', () => {
      const x = f([4], [-2, -0.5, 0, 1.5]);
      expectTensor(run1('Neg', [x]), [4], [2, 0.5, 0, -1.5]);
      expectTensor(run1('Abs', [x]), [4], [2, 0.5, 0, 1.5]);
      expectTensor(run1('Relu', [x]), [4], [0, 0, 0, 1.5]);
      expectTensor(run1('Exp', [x]), [4], [Math.exp(-2), Math.exp(-0.5), 1, Math.exp(1.5)]);
      expectTensor(run1('Sigmoid', [x]), [4], [1 / (1 + Math.exp(2)), 1 / (1 + Math.exp(0.5)), 0.5, 1 / (1 + Math.exp(-1.5))], 1e-15);
      expectTensor(run1('Sigmoid', [f([2], [-800, 800])]), [2], [0, 1]);
      expectTensor(run1('Log', [f([3], [1, Math.E, 0.5])]), [3], [0, 1, -Math.LN2], 1e-15);
      expectTensor(run1('Sqrt', [f([2], [4, 2])]), [2], [2, Math.SQRT2]);
      expectTensor(run1('Reciprocal', [f([2], [4, -0.5])]), [2], [0.25, -2]);
      expectTensor(run1('Tanh', [f([1], [0.5])]), [1], [Math.tanh(0.5)]);
      expectTensor(run1('Identity', [x]), [4], [-2, -0.5, 0, 1.5]);
    });

    it('variadic Sum, Max, Min, Mean broadcast all inputs', () => {
      const a = f([2, 1], [1, 2]);
      const b = f([3], [10, 20, 30]);
      const c = f([], [100]);
      expectTensor(run1('Sum', [a, b, c]), [2, 3], [111, 121, 131, 112, 122, 132]);
      expectTensor(run1('Sum', [a]), [2, 1], [1, 2]);
      expectTensor(run1('Max', [f([3], [1, 5, 3]), f([3], [4, 2, 6])]), [3], [4, 5, 6]);
      expectTensor(run1('Min', [f([3], [1, 5, 3]), f([1], [2])]), [3], [1, 2, 2]);
      expectTensor(run1('Mean', [f([2], [1, 2]), f([2], [3, 6])]), [2], [2, 4]);
    });

    it('Cast changes the dtype, truncates to integers, keeps float64 values for floats', () => {
      const t = run1('Cast', [f([3], [1.7, -1.7, 2])], { to: attr.int(7) });
      expect(t.dtype).to.equal('int64');
      expectTensor(t, [3], [1, -1, 2]);
      const v = 0.1; // not a float32 value: the interpreter does not round
      expect(run1('Cast', [tensor('float64', [1], [v])], { to: attr.int(1) }).data[0]).to.equal(v);
    });
  });

  describe('layout', () => {
    it('Reshape copies 0 dimensions and infers -1; allowzero keeps 0 literal', () => {
      expectTensor(run1('Reshape', [iota([2, 3, 4]), i64([0, -1, 2])]), [2, 6, 2], Array.from(iota([24]).data));
      expectTensor(run1('Reshape', [iota([0, 3]), i64([3, 0])], { allowzero: attr.int(1) }), [3, 0], []);
    });

    it('Transpose permutes axes (default: reversed)', () => {
      expectTensor(run1('Transpose', [iota([2, 3])], { perm: attr.ints([1, 0]) }), [3, 2], [0, 3, 1, 4, 2, 5]);
      expectTensor(run1('Transpose', [iota([2, 3])]), [3, 2], [0, 3, 1, 4, 2, 5]);
      // [2, 2, 2] with perm [2, 0, 1]: out[k, i, j] = x[i, j, k]
      expectTensor(run1('Transpose', [iota([2, 2, 2])], { perm: attr.ints([2, 0, 1]) }), [2, 2, 2], [0, 2, 4, 6, 1, 3, 5, 7]);
    });

    it('Squeeze, Unsqueeze (axes as input or attribute), Flatten', () => {
      expectTensor(run1('Squeeze', [iota([1, 3, 1]), i64([0])]), [3, 1], [0, 1, 2]);
      expectTensor(run1('Squeeze', [iota([1, 3, 1])]), [3], [0, 1, 2]);
      expectTensor(run1('Unsqueeze', [iota([3]), i64([0, -1])]), [1, 3, 1], [0, 1, 2]);
      expectTensor(run1('Unsqueeze', [iota([3])], { axes: attr.ints([1]) }), [3, 1], [0, 1, 2]);
      expectTensor(run1('Flatten', [iota([2, 3, 2])], { axis: attr.int(2) }), [6, 2], Array.from(iota([12]).data));
    });

    it('Concat along any axis', () => {
      const a = iota([2, 2]);
      const b = iota([2, 1], 10);
      expectTensor(run1('Concat', [a, b], { axis: attr.int(1) }), [2, 3], [0, 1, 10, 2, 3, 11]);
      expectTensor(run1('Concat', [a, b], { axis: attr.int(-1) }), [2, 3], [0, 1, 10, 2, 3, 11]);
      expectTensor(run1('Concat', [a, iota([1, 2], 10)], { axis: attr.int(0) }), [3, 2], [0, 1, 2, 3, 10, 11]);
      expect(() => run1('Concat', [a, iota([3, 1])], { axis: attr.int(1) })).to.throw(/cannot concatenate/);
    });

    it('Split by sizes input, sizes attribute, or equal parts', () => {
      const x = iota([2, 5]);
      const [p, q] = run('Split', [x, i64([2, 3])], { axis: attr.int(1) }, 2);
      expectTensor(p, [2, 2], [0, 1, 5, 6]);
      expectTensor(q, [2, 3], [2, 3, 4, 7, 8, 9]);
      const [r, s] = run('Split', [x], { axis: attr.int(0), split: attr.ints([1, 1]) }, 2);
      expectTensor(r, [1, 5], [0, 1, 2, 3, 4]);
      expectTensor(s, [1, 5], [5, 6, 7, 8, 9]);
      const parts = run('Split', [iota([5])], { axis: attr.int(0) }, 3);
      expect(parts.map((t) => Array.from(t.data))).to.deep.equal([[0, 1], [2, 3], [4]]);
      expect(() => run('Split', [x, i64([2, 2])], { axis: attr.int(1) }, 2)).to.throw(/does not cut 5/);
    });

    it('Gather along any axis, negative and multi-dimensional indices', () => {
      const x = iota([3, 4]);
      expectTensor(run1('Gather', [x, i64([2, 0])], { axis: attr.int(0) }), [2, 4], [8, 9, 10, 11, 0, 1, 2, 3]);
      expectTensor(run1('Gather', [x, i64([3, -4, 1])], { axis: attr.int(1) }), [3, 3], [3, 0, 1, 7, 4, 5, 11, 8, 9]);
      expectTensor(run1('Gather', [x, i64([1, 0, 0, 1], [2, 2])], { axis: attr.int(-1) }), [3, 2, 2], [1, 0, 0, 1, 5, 4, 4, 5, 9, 8, 8, 9]);
      expectTensor(run1('Gather', [f([3], [5, 6, 7]), i64([1], [])], { axis: attr.int(0) }), [], [6]);
      expect(() => run1('Gather', [x, i64([4])], { axis: attr.int(1) })).to.throw(/out of range/);
    });

    it('DepthToSpace CRD and DCR (the ONNX operator examples)', () => {
      const x = iota([1, 8, 2, 3]);
      const crd = run1('DepthToSpace', [x], { blocksize: attr.int(2), mode: attr.string('CRD') });
      expectTensor(crd, [1, 2, 4, 6], [
        0, 6, 1, 7, 2, 8, 12, 18, 13, 19, 14, 20, 3, 9, 4, 10, 5, 11, 15, 21, 16, 22, 17, 23,
        24, 30, 25, 31, 26, 32, 36, 42, 37, 43, 38, 44, 27, 33, 28, 34, 29, 35, 39, 45, 40, 46, 41, 47,
      ]);
      const dcr = run1('DepthToSpace', [x], { blocksize: attr.int(2), mode: attr.string('DCR') });
      expectTensor(dcr, [1, 2, 4, 6], [
        0, 12, 1, 13, 2, 14, 24, 36, 25, 37, 26, 38, 3, 15, 4, 16, 5, 17, 27, 39, 28, 40, 29, 41,
        6, 18, 7, 19, 8, 20, 30, 42, 31, 43, 32, 44, 9, 21, 10, 22, 11, 23, 33, 45, 34, 46, 35, 47,
      ]);
      // SpaceToDepth is the inverse of DCR.
      const back = run1('SpaceToDepth', [dcr], { blocksize: attr.int(2) });
      expectTensor(back, [1, 8, 2, 3], Array.from(x.data));
    });

    it('DepthToSpace CRD reads channel c*4 + 2i + j into pixel (2h + i, 2w + j)', () => {
      const [C, H, W] = [2, 2, 3];
      const x = iota([1, 4 * C, H, W]);
      const out = run1('DepthToSpace', [x], { blocksize: attr.int(2), mode: attr.string('CRD') });
      for (let c = 0; c < C; c++)
        for (let h = 0; h < H; h++)
          for (let w = 0; w < W; w++)
            for (let i = 0; i < 2; i++)
              for (let j = 0; j < 2; j++) {
                expect(out.data[(c * 2 * H + 2 * h + i) * 2 * W + 2 * w + j]).to.equal(x.data[((c * 4 + 2 * i + j) * H + h) * W + w]);
              }
    });

    it('Shape (with start/end), Expand, Slice', () => {
      const x = iota([2, 3, 4]);
      const s = run1('Shape', [x]);
      expect(s.dtype).to.equal('int64');
      expectTensor(s, [3], [2, 3, 4]);
      expectTensor(run1('Shape', [x], { start: attr.int(1), end: attr.int(-1) }), [1], [3]);
      expectTensor(run1('Expand', [f([3, 1], [1, 2, 3]), i64([2, 1, 4])]), [2, 3, 4],
        [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
      expectTensor(run1('Expand', [f([], [5]), i64([3])]), [3], [5, 5, 5]);
      expectTensor(run1('Expand', [f([2], [1, 2]), i64([1])]), [2], [1, 2]);
      const y = iota([3, 4]);
      expectTensor(run1('Slice', [y, i64([0, 1]), i64([2, 1000])]), [2, 3], [1, 2, 3, 5, 6, 7]);
      expectTensor(run1('Slice', [y, i64([-1]), i64([-1000]), i64([1]), i64([-2])]), [3, 2], [3, 1, 7, 5, 11, 9]);
      expectTensor(run1('Slice', [y, i64([1]), i64([3]), i64([0]), undefined]), [2, 4], [4, 5, 6, 7, 8, 9, 10, 11]);
    });

    it('Constant and ConstantOfShape', () => {
      expectTensor(run1('Constant', [], { value: attr.tensor(f([2], [1, 2])) }), [2], [1, 2]);
      expectTensor(run1('Constant', [], { value_ints: attr.ints([3, 4]) }), [2], [3, 4]);
      expectTensor(run1('ConstantOfShape', [i64([2, 2])], { value: attr.tensor(f([1], [7])) }), [2, 2], [7, 7, 7, 7]);
    });
  });

  describe('convolution and products', () => {
    it('Conv on hand-computed cases: plain, padded+strided, dilated, grouped with bias', () => {
      const x = iota([1, 1, 3, 3], 1); // 1..9
      const ones = f([1, 1, 2, 2], [1, 1, 1, 1]);
      expectTensor(run1('Conv', [x, ones]), [1, 1, 2, 2], [12, 16, 24, 28]);
      const padded = run1('Conv', [x, ones], { pads: attr.ints([1, 1, 1, 1]), strides: attr.ints([2, 2]) });
      expectTensor(padded, [1, 1, 2, 2], [1, 5, 11, 28]);
      const asym = run1('Conv', [x, ones], { pads: attr.ints([0, 1, 0, 0]) });
      expectTensor(asym, [1, 1, 2, 3], [1 + 4, 1 + 2 + 4 + 5, 2 + 3 + 5 + 6, 4 + 7, 4 + 5 + 7 + 8, 5 + 6 + 8 + 9]);
      expectTensor(run1('Conv', [x, ones], { dilations: attr.ints([2, 2]) }), [1, 1, 1, 1], [1 + 3 + 7 + 9]);
      // Two groups of one channel each, 1x1 kernels 2 and -1, bias 10 and 20.
      const two = f([1, 2, 1, 2], [1, 2, 3, 4]);
      const grouped = run1('Conv', [two, f([2, 1, 1, 1], [2, -1]), f([2], [10, 20])], { group: attr.int(2), kernel_shape: attr.ints([1, 1]) });
      expectTensor(grouped, [1, 2, 1, 2], [12, 14, 17, 16]);
      // 1x1 channel mix: out[o] = sum_i W[o, i] x[i].
      const mixed = run1('Conv', [two, f([2, 2, 1, 1], [1, 1, 1, -1])]);
      expectTensor(mixed, [1, 2, 1, 2], [4, 6, -2, -2]);
    });

    it('Conv matches a naive loop over an explicitly padded input (group, stride, dilation, batch)', () => {
      const rng = new Rng(3);
      const [N, C, H, W, M, group, kH, kW] = [2, 4, 5, 6, 6, 2, 3, 2];
      const pads = [1, 0, 2, 1];
      const [sH, sW] = [2, 1];
      const [dH, dW] = [1, 2];
      const x = randomTensor(rng, [N, C, H, W]);
      const w = randomTensor(rng, [M, C / group, kH, kW]);
      const b = randomTensor(rng, [M]);
      const got = run1('Conv', [x, w, b], { pads: attr.ints(pads), strides: attr.ints([sH, sW]), dilations: attr.ints([dH, dW]), group: attr.int(group) });
      const Hp = H + pads[0] + pads[2];
      const Wp = W + pads[1] + pads[3];
      const xp = new Float64Array(N * C * Hp * Wp);
      for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let h = 0; h < H; h++) for (let v = 0; v < W; v++) {
        xp[((n * C + c) * Hp + h + pads[0]) * Wp + v + pads[1]] = x.data[((n * C + c) * H + h) * W + v];
      }
      const oH = Math.floor((Hp - dH * (kH - 1) - 1) / sH) + 1;
      const oW = Math.floor((Wp - dW * (kW - 1) - 1) / sW) + 1;
      const expected: number[] = [];
      const Cg = C / group;
      const Mg = M / group;
      for (let n = 0; n < N; n++) for (let m = 0; m < M; m++) for (let i = 0; i < oH; i++) for (let j = 0; j < oW; j++) {
        let acc = b.data[m];
        const gIdx = Math.floor(m / Mg);
        for (let c = 0; c < Cg; c++) for (let p = 0; p < kH; p++) for (let q = 0; q < kW; q++) {
          acc += w.data[((m * Cg + c) * kH + p) * kW + q] * xp[((n * C + gIdx * Cg + c) * Hp + i * sH + p * dH) * Wp + j * sW + q * dW];
        }
        expected.push(acc);
      }
      expectTensor(got, [N, M, oH, oW], expected, 1e-12);
    });

    it('Conv auto_pad SAME_UPPER keeps the size at stride 1', () => {
      const x = iota([1, 1, 3, 3], 1);
      const same = run1('Conv', [x, f([1, 1, 3, 3], new Array(9).fill(1))], { auto_pad: attr.string('SAME_UPPER') });
      expectTensor(same, [1, 1, 3, 3], [12, 21, 16, 27, 45, 33, 24, 39, 28]);
    });

    it('Gemm: alpha, beta, transA, transB, broadcast C', () => {
      const a = f([2, 3], [1, 2, 3, 4, 5, 6]);
      const b = f([3, 2], [1, 0, 0, 1, 1, 1]);
      // A B = [[4, 5], [10, 11]]
      expectTensor(run1('Gemm', [a, b]), [2, 2], [4, 5, 10, 11]);
      expectTensor(run1('Gemm', [a, b, f([2], [100, 200])], { alpha: attr.float(2), beta: attr.float(0.5) }), [2, 2], [58, 110, 70, 122]);
      expectTensor(run1('Gemm', [a, f([2, 3], [1, 0, 1, 0, 1, 1]), f([], [1])], { transB: attr.int(1) }), [2, 2], [5, 6, 11, 12]);
      expectTensor(run1('Gemm', [f([3, 2], [1, 4, 2, 5, 3, 6]), b, f([2, 1], [1, 2])], { transA: attr.int(1) }), [2, 2], [5, 6, 12, 13]);
      expectTensor(run1('Gemm', [f([3, 2], [1, 4, 2, 5, 3, 6]), f([2, 3], [1, 0, 1, 0, 1, 1])], { transA: attr.int(1), transB: attr.int(1) }), [2, 2], [4, 5, 10, 11]);
      expect(() => run1('Gemm', [a, a])).to.throw(/inner dimensions/);
    });

    it('MatMul: 2-D, 1-D operands, batched with broadcasting', () => {
      const a = f([2, 3], [1, 2, 3, 4, 5, 6]);
      const b = f([3, 2], [1, 0, 0, 1, 1, 1]);
      expectTensor(run1('MatMul', [a, b]), [2, 2], [4, 5, 10, 11]);
      expectTensor(run1('MatMul', [a, f([3], [1, 1, 1])]), [2], [6, 15]);
      expectTensor(run1('MatMul', [f([2], [1, 1]), a]), [3], [5, 7, 9]);
      const rng = new Rng(5);
      const x = randomTensor(rng, [2, 1, 2, 3]);
      const y = randomTensor(rng, [3, 3, 4]);
      const got = run1('MatMul', [x, y]);
      const expected: number[] = [];
      for (let s = 0; s < 2; s++) for (let t = 0; t < 3; t++) for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) {
        let acc = 0;
        for (let p = 0; p < 3; p++) acc += x.data[(s * 2 + i) * 3 + p] * y.data[(t * 3 + p) * 4 + j];
        expected.push(acc);
      }
      expectTensor(got, [2, 3, 2, 4], expected, 1e-14);
    });
  });

  describe('reductions', () => {
    const x = iota([2, 3, 2]); // x[a, b, c] = 6a + 2b + c

    it('axes as input (opset 13+ ReduceSum, 18+ others) or attribute, keepdims', () => {
      expectTensor(run1('ReduceSum', [x, i64([1])], { keepdims: attr.int(0) }), [2, 2], [6, 9, 24, 27]);
      expectTensor(run1('ReduceSum', [x, i64([0, 2])], { keepdims: attr.int(1) }), [1, 3, 1], [14, 22, 30]);
      expectTensor(run1('ReduceSum', [x], { axes: attr.ints([-1]), keepdims: attr.int(0) }), [2, 3], [1, 5, 9, 13, 17, 21]);
      expectTensor(run1('ReduceMean', [x], { axes: attr.ints([1, 2]), keepdims: attr.int(0) }), [2], [2.5, 8.5]);
      expectTensor(run1('ReduceMean', [x, i64([1, 2])], { keepdims: attr.int(1) }), [2, 1, 1], [2.5, 8.5]);
      expectTensor(run1('ReduceMax', [x, i64([0])], { keepdims: attr.int(0) }), [3, 2], [6, 7, 8, 9, 10, 11]);
      expectTensor(run1('ReduceMin', [x], { axes: attr.ints([2]), keepdims: attr.int(0) }), [2, 3], [0, 2, 4, 6, 8, 10]);
    });

    it('keepdims defaults to 1; no or empty axes reduce everything unless noop_with_empty_axes', () => {
      expectTensor(run1('ReduceSum', [x]), [1, 1, 1], [66]);
      expectTensor(run1('ReduceSum', [x, i64([])], { keepdims: attr.int(0) }), [], [66]);
      expectTensor(run1('ReduceSum', [x, i64([])], { noop_with_empty_axes: attr.int(1) }), [2, 3, 2], Array.from(x.data));
      expectTensor(run1('ReduceMean', [x], { keepdims: attr.int(0) }), [], [5.5]);
    });
  });

  describe('entry points', () => {
    it('canEvaluate: known ops of the default domain only', () => {
      const node = (opName: string, domain = '') => new Node(opName, 'n', [], [], {}, domain);
      for (const o of ['Conv', 'Gemm', 'MatMul', 'Split', 'Concat', 'Gather', 'DepthToSpace', 'Shape', 'Expand', 'Slice', 'ReduceSum', 'ReduceMean', 'Sigmoid', 'Log', 'Exp', 'Sum']) {
        expect(canEvaluate(node(o)), o).to.equal(true);
      }
      expect(canEvaluate(node('Inverse', 'com.microsoft'))).to.equal(false);
      expect(canEvaluate(node('RandomNormal'))).to.equal(false);
      expect(canEvaluate(node('toString'))).to.equal(false);
    });

    it('evaluateNode names the node and op when there is no kernel', () => {
      expect(() => run1('RandomNormal', [])).to.throw(/test_RandomNormal.*RandomNormal/);
    });

    it('evaluateGraph runs a graph and reports nodes without kernels, missing and malformed feeds', () => {
      const g = new GraphBuilder('t');
      const x = g.input('x', 'float32', ['N', 2]);
      const w = g.constant(f([2, 2], [1, 2, 3, 4]), 'w');
      const h = op.sigmoid(g, op.matmul(g, x, w));
      g.output(op.reduceSum(g, h, [1], false), 's');
      g.output(h, 'h');
      const graph = g.build();
      const out = evaluateGraph(graph, { x: f([1, 2], [1, -1]) });
      const sig = (v: number) => 1 / (1 + Math.exp(-v));
      expectTensor(out.h, [1, 2], [sig(-2), sig(-2)], 1e-15);
      expectTensor(out.s, [1], [2 * sig(-2)], 1e-15);
      expect(() => evaluateGraph(graph, {})).to.throw(/missing feed for input x/);
      expect(() => evaluateGraph(graph, { x: f([1, 3], [1, 2, 3]) })).to.throw(/feed x has shape \[1, 3\]/);
      expect(() => evaluateGraph(graph, { x: f([1, 2], [1, 2]), z: f([1], [0]) })).to.throw(/no input named z/);

      const g2 = new GraphBuilder('t2');
      const y = g2.input('y', 'float32', [2]);
      g2.output(g2.node('Erf', [y], {}, [{ dtype: 'float32', shape: [2] }])[0], 'e');
      expect(() => evaluateGraph(g2.build(), { y: f([2], [0, 1]) })).to.throw(/node Erf: no float64 kernel for ai\.onnx::Erf/);
    });
  });
});

// ---------------------------------------------------------------- against onnxruntime

interface RandomGraph {
  name: string;
  opset?: number;
  build: (g: GraphBuilder, rng: Rng) => { inputs: Record<string, Tensor>; outputs: Record<string, Value> };
}

function addInput(g: GraphBuilder, rng: Rng, inputs: Record<string, Tensor>, name: string, shape: number[]): Value {
  inputs[name] = randomTensor(rng, shape);
  return g.input(name, 'float32', shape);
}

const weight = (g: GraphBuilder, rng: Rng, shape: number[], scale = 0.5) => g.constant(randomTensor(rng, shape, scale), 'w');

const GRAPHS: RandomGraph[] = [
  {
    name: 'conv with padding, stride, dilation and groups, relu, sigmoid',
    build(g, rng) {
      const inputs: Record<string, Tensor> = {};
      const x = addInput(g, rng, inputs, 'x', [2, 4, 6, 5]);
      const c1 = op.conv(g, x, weight(g, rng, [6, 2, 3, 3]), weight(g, rng, [6]), { pads: [1, 0, 2, 1], strides: [2, 1], group: 2 });
      const c2 = op.conv(g, op.relu(g, c1), weight(g, rng, [3, 6, 2, 2]), undefined, { dilations: [1, 2], pads: [1, 1, 1, 1] });
      const c3 = op.conv(g, x, weight(g, rng, [4, 1, 3, 3]), weight(g, rng, [4]), { pads: op.samePads(3), group: 4 });
      return { inputs, outputs: { c2: op.sigmoid(g, c2), c3 } };
    },
  },
  {
    name: 'gemm (transA/transB, alpha, beta) and batched matmul',
    build(g, rng) {
      const inputs: Record<string, Tensor> = {};
      const a = addInput(g, rng, inputs, 'a', [3, 4]);
      const b = addInput(g, rng, inputs, 'b', [2, 3, 4, 5]);
      const y1 = op.gemm(g, a, weight(g, rng, [6, 4]), weight(g, rng, [6]), { transB: true });
      const y2 = op.gemm(g, a, weight(g, rng, [3, 2]), weight(g, rng, [4, 1]), { transA: true, alpha: 0.7, beta: -1.3 });
      const y3 = op.gemm(g, y1, weight(g, rng, [2, 6]), undefined, { transB: true, alpha: 2 });
      const m = op.matmul(g, b, weight(g, rng, [3, 5, 2]));
      const m2 = op.matmul(g, a, weight(g, rng, [4, 2]));
      return { inputs, outputs: { y1, y2, y3, m, m2 } };
    },
  },
  {
    name: 'split, concat, gather, transpose, reshape, exp, log, sum',
    build(g, rng) {
      const inputs: Record<string, Tensor> = {};
      const x = addInput(g, rng, inputs, 'x', [2, 6, 3, 2]);
      const [p, q, r] = op.split(g, x, [1, 2, 3], 1);
      const cat = op.concat(g, [r, p, op.exp(g, q)], 1);
      const gathered = op.gather(g, cat, [5, 0, 0, -1, 2], 1);
      const t = op.transpose(g, gathered, [0, 2, 3, 1]);
      const flat = op.reshape(g, t, [0, -1]);
      const pos = op.log(g, op.add(g, op.abs(g, flat), g.constant(f([], [0.5]), 'half')));
      const s = op.sum(g, [pos, flat, g.constant(f([30], Array.from({ length: 30 }, (_, k) => k / 10)), 'ramp')]);
      const [lo, hi] = op.split(g, x, [1, 1], -1);
      return { inputs, outputs: { s, g1: op.gather(g, x, [1], -1), cat2: op.concat(g, [hi, lo], -2) } };
    },
  },
  {
    name: 'depthToSpace CRD and DCR, div, sub, pow, neg, sqrt',
    build(g, rng) {
      const inputs: Record<string, Tensor> = {};
      const x = addInput(g, rng, inputs, 'x', [2, 8, 2, 3]);
      const crd = op.depthToSpace(g, x, 2, 'CRD');
      const dcr = op.depthToSpace(g, x, 2, 'DCR');
      const mix = op.div(g, op.sub(g, crd, dcr), op.add(g, op.sqrt(g, op.mul(g, dcr, dcr)), g.constant(f([], [1]), 'one')));
      const p = op.pow(g, op.neg(g, mix), g.constant(f([], [2]), 'two'));
      return { inputs, outputs: { crd, dcr, p } };
    },
  },
  ...[17, 18].map((opset): RandomGraph => ({
    name: `reductions at opset ${opset}`,
    opset,
    build(g, rng) {
      const inputs: Record<string, Tensor> = {};
      const x = addInput(g, rng, inputs, 'x', [2, 3, 4, 5]);
      return {
        inputs,
        outputs: {
          s1: op.reduceSum(g, x, [1, 2, 3], false),
          s2: op.reduceSum(g, x, [0, -1], true),
          m1: op.reduceMean(g, x, [2, 3], false),
          m2: op.reduceMean(g, x, [0, 2], true),
          m3: op.reduceMean(g, op.exp(g, x), [-3], false),
        },
      };
    },
  })),
];

describe('evaluate: whole graphs against onnxruntime-node (float32)', () => {
  GRAPHS.forEach((spec, idx) => {
    it(spec.name, async () => {
      const g = new GraphBuilder(`random_${idx}`, { opset: spec.opset });
      const { inputs, outputs } = spec.build(g, new Rng(100 + idx));
      for (const [name, v] of Object.entries(outputs)) g.output(v, name);
      const graph: Graph = g.build();
      const ours = evaluateGraph(graph, inputs);
      const theirs = await runGraph(graph, Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, { shape: t.shape, data: Float64Array.from(t.data) }])));
      for (const name of Object.keys(outputs)) {
        expect(ours[name].shape, `${name} shape`).to.deep.equal(theirs[name].shape);
        const scale = Math.max(1, ...Array.from(ours[name].data, Math.abs));
        expect(maxAbsDiff(ours[name].data, theirs[name].data) / scale, name).to.be.below(1e-5);
        // The builder's own shape inference agrees too.
        const declared = graph.outputs.find((io) => io.value.name === name)!.value.shape!;
        declared.forEach((d, i) => typeof d === 'number' && expect(d, `${name} dim ${i}`).to.equal(ours[name].shape[i]));
      }
    });
  });
});
