// A float64 interpreter for the ONNX ops the builder emits. Two users:
// - the constant-folding pass (canEvaluate / evaluateNode) folds initializer-only subgraphs at
//   export, so that weights are combined in float64 before the single cast to the graph's dtype;
// - tests (evaluateGraph) run whole graphs in float64, e.g. to check log-determinants against a
//   finite-difference Jacobian with more precision than float32 runtimes give.
//
// Every value is computed in float64 whatever its dtype: the dtype is carried along (Cast changes
// it, integer Div truncates) but float32 values are not rounded. Written for clarity on small
// tensors, not for speed: index arithmetic goes through precomputed offset tables.

import { normAxis, sliceRange } from './axes.js';
import { dtypeOfCode, DType, Graph, Node, Tensor } from './graph.js';
import { convAttributes } from './ops.js';
import { size } from '../math/tensor.js';

/** Omitted optional inputs are undefined. */
type Inputs = readonly (Tensor | undefined)[];
type Kernel = (node: Node, inputs: Inputs) => Tensor[];

// ---------------------------------------------------------------- helpers

function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/**
 * For each row-major position k of `shape`, base + sum_j idx_j(k) * strides[j]. Transpose,
 * broadcasting, reductions and slices are all this table with different strides.
 */
function offsets(shape: readonly number[], strides: readonly number[], base = 0): Int32Array {
  const n = size(shape);
  const out = new Int32Array(n);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let off = base;
  for (let k = 0; k < n; k++) {
    out[k] = off;
    for (let j = rank - 1; j >= 0; j--) {
      idx[j]++;
      off += strides[j];
      if (idx[j] < shape[j]) break;
      off -= strides[j] * shape[j];
      idx[j] = 0;
    }
  }
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** numpy broadcast of several shapes. */
function broadcastShape(shapes: readonly (readonly number[])[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    s.forEach((d, i) => {
      const j = i + rank - s.length;
      if (d === out[j] || d === 1) return;
      if (out[j] !== 1) throw new Error(`shapes ${shapes.map((t) => `[${t.join(', ')}]`).join(', ')} do not broadcast`);
      out[j] = d;
    });
  }
  return out;
}

/** Offsets into a tensor of shape `from` for each element of the broadcast shape `to`; null when
 * no broadcasting is needed. */
function broadcastOffsets(from: readonly number[], to: readonly number[]): Int32Array | null {
  if (sameShape(from, to)) return null;
  const own = stridesOf(from);
  const strides = to.map((_, j) => {
    const i = j - (to.length - from.length);
    return i < 0 || from[i] === 1 ? 0 : own[i];
  });
  return offsets(to, strides);
}

function result(dtype: DType, shape: number[], data: Float64Array): Tensor {
  return { dtype, shape, data };
}

function required(inputs: Inputs, i: number, what: string): Tensor {
  const t = inputs[i];
  if (!t) throw new Error(`missing input ${i} (${what})`);
  return t;
}

// Attributes are read strictly (Node's readers with strict set): a kernel rejects an attribute of
// the wrong kind rather than fall back to the default.

function intAttr(node: Node, name: string, fallback: number): number {
  return node.int(name, true) ?? fallback;
}

function intsAttr(node: Node, name: string): number[] | undefined {
  return node.ints(name, true);
}

function stringAttr(node: Node, name: string, fallback: string): string {
  return node.string(name, true) ?? fallback;
}

function ints(t: Tensor): number[] {
  return Array.from(t.data);
}

const isInteger = (dtype: DType) => dtype === 'int32' || dtype === 'int64';

// ---------------------------------------------------------------- elementwise

function unary(f: (a: number) => number): Kernel {
  return (_, inputs) => {
    const x = required(inputs, 0, 'X');
    return [result(x.dtype, [...x.shape], Float64Array.from(x.data, f))];
  };
}

function binaryOn(a: Tensor, b: Tensor, f: (a: number, b: number) => number): Tensor {
  const shape = broadcastShape([a.shape, b.shape]);
  const ia = broadcastOffsets(a.shape, shape);
  const ib = broadcastOffsets(b.shape, shape);
  const out = new Float64Array(size(shape));
  const ad = a.data;
  const bd = b.data;
  for (let k = 0; k < out.length; k++) out[k] = f(ad[ia ? ia[k] : k], bd[ib ? ib[k] : k]);
  return result(a.dtype, shape, out);
}

function binary(f: (a: number, b: number) => number, intF?: (a: number, b: number) => number): Kernel {
  return (_, inputs) => {
    const a = required(inputs, 0, 'A');
    const b = required(inputs, 1, 'B');
    return [binaryOn(a, b, intF && isInteger(a.dtype) ? intF : f)];
  };
}

/** Sum, Max, Min: a left fold of a binary op over any number of broadcast inputs. */
function variadic(f: (a: number, b: number) => number): Kernel {
  return (_, inputs) => {
    const xs = inputs.filter((t): t is Tensor => t !== undefined);
    if (xs.length === 0) throw new Error('needs at least one input');
    return [xs.slice(1).reduce((acc, t) => binaryOn(acc, t, f), { ...xs[0], shape: [...xs[0].shape], data: Float64Array.from(xs[0].data) })];
  };
}

const sigmoid = (a: number) => (a >= 0 ? 1 / (1 + Math.exp(-a)) : Math.exp(a) / (1 + Math.exp(a)));

function castTo(dtype: DType): (v: number) => number {
  if (isInteger(dtype)) return Math.trunc;
  if (dtype === 'bool') return (v) => (v ? 1 : 0);
  return (v) => v;
}

function compare(f: (a: number, b: number) => boolean): Kernel {
  return (_, inputs) => {
    const t = binaryOn(required(inputs, 0, 'A'), required(inputs, 1, 'B'), (a, b) => (f(a, b) ? 1 : 0));
    return [{ ...t, dtype: 'bool' }];
  };
}

function where(_: Node, inputs: Inputs): Tensor[] {
  const ts = [required(inputs, 0, 'condition'), required(inputs, 1, 'X'), required(inputs, 2, 'Y')];
  const shape = broadcastShape(ts.map((t) => t.shape));
  const [ic, ia, ib] = ts.map((t) => broadcastOffsets(t.shape, shape));
  const [c, a, b] = ts.map((t) => t.data);
  const out = new Float64Array(size(shape));
  for (let k = 0; k < out.length; k++) out[k] = c[ic ? ic[k] : k] ? a[ia ? ia[k] : k] : b[ib ? ib[k] : k];
  return [result(ts[1].dtype, shape, out)];
}

// ---------------------------------------------------------------- layout

function transposeTensor(t: Tensor, perm: readonly number[]): Tensor {
  if (perm.length !== t.shape.length || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new Error(`perm [${perm.join(', ')}] is not a permutation of rank ${t.shape.length}`);
  }
  const shape = perm.map((p) => t.shape[p]);
  const own = stridesOf(t.shape);
  const idx = offsets(shape, perm.map((p) => own[p]));
  return result(t.dtype, shape, Float64Array.from(idx, (o) => t.data[o]));
}

function reshapeTo(t: Tensor, shape: number[]): Tensor {
  if (size(shape) !== t.data.length) throw new Error(`cannot reshape [${t.shape.join(', ')}] to [${shape.join(', ')}]`);
  return { ...t, shape };
}

/** ONNX Reshape target: 0 copies the input dimension (unless allowzero), -1 is inferred. */
function resolveShape(input: readonly number[], target: number[], allowzero: boolean, total: number): number[] {
  const shape = target.map((d, i) => (d === 0 && !allowzero ? input[i] : d));
  const inferred = shape.indexOf(-1);
  if (inferred >= 0) {
    const rest = shape.reduce((a, d, i) => (i === inferred ? a : a * d), 1);
    shape[inferred] = rest === 0 ? 0 : total / rest;
  }
  return shape;
}

function concatTensors(xs: Tensor[], axisAttr: number): Tensor {
  const rank = xs[0].shape.length;
  const axis = normAxis(axisAttr, rank);
  for (const t of xs) {
    if (t.shape.length !== rank || t.shape.some((d, i) => i !== axis && d !== xs[0].shape[i])) {
      throw new Error(`cannot concatenate ${xs.map((u) => `[${u.shape.join(', ')}]`).join(', ')} on axis ${axisAttr}`);
    }
  }
  const shape = [...xs[0].shape];
  shape[axis] = xs.reduce((a, t) => a + t.shape[axis], 0);
  const outer = size(shape.slice(0, axis));
  const inner = size(shape.slice(axis + 1));
  const out = new Float64Array(size(shape));
  let pos = 0;
  for (let o = 0; o < outer; o++) {
    for (const t of xs) {
      const chunk = t.shape[axis] * inner;
      out.set(t.data.subarray(o * chunk, (o + 1) * chunk), pos);
      pos += chunk;
    }
  }
  return result(xs[0].dtype, shape, out);
}

/** Pieces [start, start + len) along an axis. */
function sliceAxis(t: Tensor, axis: number, start: number, len: number): Tensor {
  const shape = [...t.shape];
  shape[axis] = len;
  const outer = size(t.shape.slice(0, axis));
  const inner = size(t.shape.slice(axis + 1));
  const out = new Float64Array(size(shape));
  for (let o = 0; o < outer; o++) {
    const from = (o * t.shape[axis] + start) * inner;
    out.set(t.data.subarray(from, from + len * inner), o * len * inner);
  }
  return result(t.dtype, shape, out);
}

function depthToSpace(x: Tensor, b: number, mode: string): Tensor {
  if (x.shape.length !== 4) throw new Error('input must be 4-D');
  const [n, c, h, w] = x.shape;
  if (c % (b * b) !== 0) throw new Error(`${c} channels are not divisible by blocksize^2 = ${b * b}`);
  const cOut = c / (b * b);
  // The operator's definition: reshape, transpose, reshape.
  const moved = mode === 'CRD'
    ? transposeTensor(reshapeTo(x, [n, cOut, b, b, h, w]), [0, 1, 4, 2, 5, 3])
    : mode === 'DCR' ? transposeTensor(reshapeTo(x, [n, b, b, cOut, h, w]), [0, 3, 4, 1, 5, 2])
      : undefined;
  if (!moved) throw new Error(`unknown mode ${mode}`);
  return reshapeTo(moved, [n, cOut, h * b, w * b]);
}

function spaceToDepth(x: Tensor, b: number): Tensor {
  if (x.shape.length !== 4) throw new Error('input must be 4-D');
  const [n, c, h, w] = x.shape;
  if (h % b !== 0 || w % b !== 0) throw new Error(`spatial size ${h}x${w} is not divisible by blocksize ${b}`);
  const moved = transposeTensor(reshapeTo(x, [n, c, h / b, b, w / b, b]), [0, 3, 5, 1, 2, 4]);
  return reshapeTo(moved, [n, c * b * b, h / b, w / b]);
}

function gather(x: Tensor, indices: Tensor, axisAttr: number): Tensor {
  const axis = normAxis(axisAttr, x.shape.length);
  const dim = x.shape[axis];
  const idx = Array.from(indices.data, (i) => {
    const j = i < 0 ? i + dim : i;
    if (!Number.isInteger(j) || j < 0 || j >= dim) throw new Error(`index ${i} out of range for axis ${axisAttr} of size ${dim}`);
    return j;
  });
  const shape = [...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)];
  const outer = size(x.shape.slice(0, axis));
  const inner = size(x.shape.slice(axis + 1));
  const out = new Float64Array(size(shape));
  let pos = 0;
  for (let o = 0; o < outer; o++) {
    for (const j of idx) {
      const from = (o * dim + j) * inner;
      out.set(x.data.subarray(from, from + inner), pos);
      pos += inner;
    }
  }
  return result(x.dtype, shape, out);
}

function slice(x: Tensor, starts: number[], ends: number[], axesIn: number[] | undefined, stepsIn: number[] | undefined): Tensor {
  const rank = x.shape.length;
  const axes = (axesIn ?? starts.map((_, i) => i)).map((a) => normAxis(a, rank));
  const steps = stepsIn ?? starts.map(() => 1);
  const begin = x.shape.map(() => 0);
  const step = x.shape.map(() => 1);
  const shape = [...x.shape];
  axes.forEach((a, i) => {
    const d = x.shape[a];
    const s = steps[i];
    if (s === 0) throw new Error('slice step cannot be 0');
    const range = sliceRange(starts[i], ends[i], s, d);
    begin[a] = range.start;
    step[a] = s;
    shape[a] = range.count;
  });
  const own = stridesOf(x.shape);
  const base = begin.reduce((acc, b, j) => acc + b * own[j], 0);
  const idx = offsets(shape, own.map((o, j) => o * step[j]), base);
  return result(x.dtype, shape, Float64Array.from(idx, (o) => x.data[o]));
}

/** Constant-mode Pad with pads given as an input. */
function pad(node: Node, inputs: Inputs): Tensor[] {
  const x = required(inputs, 0, 'data');
  const pads = Array.from(required(inputs, 1, 'pads').data);
  const value = inputs[2]?.data[0] ?? 0;
  if (stringAttr(node, 'mode', 'constant') !== 'constant') throw new Error('only constant padding is supported');
  const rank = x.shape.length;
  const shape = x.shape.map((d, i) => d + pads[i] + pads[i + rank]);
  const out = new Float64Array(size(shape)).fill(value);
  const inStrides = x.shape.map((_, i) => size(x.shape.slice(i + 1)));
  const outStrides = shape.map((_, i) => size(shape.slice(i + 1)));
  for (let k = 0; k < x.data.length; k++) {
    let offset = 0;
    for (let j = 0; j < rank; j++) offset += (Math.floor(k / inStrides[j]) % x.shape[j] + pads[j]) * outStrides[j];
    out[offset] = x.data[k];
  }
  return [result(x.dtype, shape, out)];
}

// ---------------------------------------------------------------- linear algebra

function conv(node: Node, inputs: Inputs): Tensor[] {
  const x = required(inputs, 0, 'X');
  const w = required(inputs, 1, 'W');
  const bias = inputs[2];
  if (x.shape.length !== 4 || w.shape.length !== 4) throw new Error('only 2-D convolution (4-D X and W) is supported');
  const [N, C, H, W] = x.shape;
  const [M, Cg, kH, kW] = w.shape;
  const { group, strides, dilations, pads } = convAttributes(node, true);
  const kernel = intsAttr(node, 'kernel_shape');
  if (kernel && (kernel[0] !== kH || kernel[1] !== kW)) throw new Error(`kernel_shape [${kernel.join(', ')}] does not match W [${w.shape.join(', ')}]`);
  if (C !== Cg * group || M % group !== 0) throw new Error(`X [${x.shape.join(', ')}] and W [${w.shape.join(', ')}] do not match group ${group}`);
  if (bias && bias.data.length !== M) throw new Error(`bias has ${bias.data.length} values for ${M} output channels`);
  const [sH, sW] = strides;
  const [dH, dW] = dilations;
  let [pT, pL, pB, pR] = pads;
  const autoPad = stringAttr(node, 'auto_pad', 'NOTSET');
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    const total = (d: number, k: number, s: number, dil: number) => Math.max(0, (Math.ceil(d / s) - 1) * s + (k - 1) * dil + 1 - d);
    const [tH, tW] = [total(H, kH, sH, dH), total(W, kW, sW, dW)];
    const small = (t: number) => (autoPad === 'SAME_UPPER' ? Math.floor(t / 2) : Math.ceil(t / 2));
    [pT, pL, pB, pR] = [small(tH), small(tW), tH - small(tH), tW - small(tW)];
  } else if (autoPad === 'VALID') {
    [pT, pL, pB, pR] = [0, 0, 0, 0];
  } else if (autoPad !== 'NOTSET') {
    throw new Error(`unknown auto_pad ${autoPad}`);
  }
  const oH = Math.floor((H + pT + pB - dH * (kH - 1) - 1) / sH) + 1;
  const oW = Math.floor((W + pL + pR - dW * (kW - 1) - 1) / sW) + 1;
  const Mg = M / group;
  const out = new Float64Array(N * M * oH * oW);
  const xd = x.data;
  const wd = w.data;
  for (let n = 0; n < N; n++) {
    for (let m = 0; m < M; m++) {
      const c0 = Math.floor(m / Mg) * Cg;
      const b = bias ? bias.data[m] : 0;
      for (let i = 0; i < oH; i++) {
        for (let j = 0; j < oW; j++) {
          let acc = b;
          for (let c = 0; c < Cg; c++) {
            const xBase = (n * C + c0 + c) * H;
            const wBase = (m * Cg + c) * kH;
            for (let p = 0; p < kH; p++) {
              const ii = i * sH - pT + p * dH;
              if (ii < 0 || ii >= H) continue;
              for (let q = 0; q < kW; q++) {
                const jj = j * sW - pL + q * dW;
                if (jj < 0 || jj >= W) continue;
                acc += xd[(xBase + ii) * W + jj] * wd[(wBase + p) * kW + q];
              }
            }
          }
          out[((n * M + m) * oH + i) * oW + j] = acc;
        }
      }
    }
  }
  return [result(x.dtype, [N, M, oH, oW], out)];
}

/** The input gradient of Conv: X [N, C, H, W], W [C, M/group, kH, kW]. */
function convTranspose(node: Node, inputs: Inputs): Tensor[] {
  const x = required(inputs, 0, 'X');
  const w = required(inputs, 1, 'W');
  const bias = inputs[2];
  if (node.attributes.output_shape) throw new Error('output_shape is not supported; give pads and output_padding');
  const [N, C, H, W] = x.shape;
  const [C2, Mg, kH, kW] = w.shape;
  const { group, strides, dilations, pads } = convAttributes(node, true);
  if (C !== C2) throw new Error(`X [${x.shape.join(', ')}] and W [${w.shape.join(', ')}] disagree`);
  const [sH, sW] = strides;
  const [dH, dW] = dilations;
  const [pT, pL, pB, pR] = pads;
  const [opH, opW] = intsAttr(node, 'output_padding') ?? [0, 0];
  const oH = sH * (H - 1) + opH + dH * (kH - 1) + 1 - pT - pB;
  const oW = sW * (W - 1) + opW + dW * (kW - 1) + 1 - pL - pR;
  const M = Mg * group;
  const Cg = C / group;
  const out = new Float64Array(N * M * oH * oW);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const gi = Math.floor(c / Cg);
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          const v = x.data[((n * C + c) * H + i) * W + j];
          for (let m = 0; m < Mg; m++) {
            for (let p = 0; p < kH; p++) {
              const oi = i * sH - pT + p * dH;
              if (oi < 0 || oi >= oH) continue;
              for (let q = 0; q < kW; q++) {
                const oj = j * sW - pL + q * dW;
                if (oj >= 0 && oj < oW) out[((n * M + gi * Mg + m) * oH + oi) * oW + oj] += v * w.data[((c * Mg + m) * kH + p) * kW + q];
              }
            }
          }
        }
      }
    }
  }
  if (bias) for (let k = 0; k < out.length; k++) out[k] += bias.data[Math.floor(k / (oH * oW)) % M];
  return [result(x.dtype, [N, M, oH, oW], out)];
}

/** out[i, j] (+)= sum_p a[aOff + i*aRow + p*aCol] * b[bOff + p*bRow + j*bCol]. */
function matmulInto(
  out: Float64Array, outOff: number, m: number, k: number, n: number,
  a: ArrayLike<number>, aOff: number, aRow: number, aCol: number,
  b: ArrayLike<number>, bOff: number, bRow: number, bCol: number,
  alpha = 1,
): void {
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += a[aOff + i * aRow + p * aCol] * b[bOff + p * bRow + j * bCol];
      out[outOff + i * n + j] += alpha * acc;
    }
  }
}

function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.shape.length === 0 || b.shape.length === 0) throw new Error('MatMul inputs must have rank >= 1');
  // numpy rules: a 1-D operand gets a unit dimension that is removed from the result.
  const as = a.shape.length === 1 ? [1, a.shape[0]] : a.shape;
  const bs = b.shape.length === 1 ? [b.shape[0], 1] : b.shape;
  const [m, k] = as.slice(-2);
  const [k2, n] = bs.slice(-2);
  if (k !== k2) throw new Error(`inner dimensions differ: [${a.shape.join(', ')}] x [${b.shape.join(', ')}]`);
  const batch = broadcastShape([as.slice(0, -2), bs.slice(0, -2)]);
  const batchOffsets = (s: readonly number[], matrix: number) => {
    const own = stridesOf(s.slice(0, -2)).map((st) => st * matrix);
    const strides = batch.map((_, j) => {
      const i = j - (batch.length - (s.length - 2));
      return i < 0 || s[i] === 1 ? 0 : own[i];
    });
    return offsets(batch, strides);
  };
  const ia = batchOffsets(as, m * k);
  const ib = batchOffsets(bs, k * n);
  const out = new Float64Array(size(batch) * m * n);
  for (let t = 0; t < ia.length; t++) matmulInto(out, t * m * n, m, k, n, a.data, ia[t], k, 1, b.data, ib[t], n, 1);
  const shape = [...batch, ...(a.shape.length === 1 ? [] : [m]), ...(b.shape.length === 1 ? [] : [n])];
  return result(a.dtype, shape, out);
}

function gemm(node: Node, inputs: Inputs): Tensor[] {
  const a = required(inputs, 0, 'A');
  const b = required(inputs, 1, 'B');
  const c = inputs[2];
  if (a.shape.length !== 2 || b.shape.length !== 2) throw new Error('A and B must be 2-D');
  const transA = intAttr(node, 'transA', 0) === 1;
  const transB = intAttr(node, 'transB', 0) === 1;
  const alpha = node.number('alpha', true) ?? 1;
  const beta = node.number('beta', true) ?? 1;
  const [m, k] = transA ? [a.shape[1], a.shape[0]] : a.shape;
  const [k2, n] = transB ? [b.shape[1], b.shape[0]] : b.shape;
  if (k !== k2) throw new Error(`inner dimensions differ: A [${a.shape.join(', ')}]${transA ? '^T' : ''} x B [${b.shape.join(', ')}]${transB ? '^T' : ''}`);
  const out = new Float64Array(m * n);
  if (c && beta !== 0) {
    const ic = broadcastOffsets(c.shape, [m, n]);
    if (broadcastShape([c.shape, [m, n]]).some((d, i) => d !== [m, n][i])) throw new Error(`C [${c.shape.join(', ')}] does not broadcast to [${m}, ${n}]`);
    for (let t = 0; t < out.length; t++) out[t] = beta * c.data[ic ? ic[t] : t];
  }
  // A'[i, p] = transA ? A[p, i] : A[i, p]; likewise B'.
  const [aRow, aCol] = transA ? [1, a.shape[1]] : [a.shape[1], 1];
  const [bRow, bCol] = transB ? [1, b.shape[1]] : [b.shape[1], 1];
  matmulInto(out, 0, m, k, n, a.data, 0, aRow, aCol, b.data, 0, bRow, bCol, alpha);
  return [result(a.dtype, [m, n], out)];
}

// ---------------------------------------------------------------- reductions

type Reduction = { init: number; step: (acc: number, v: number) => number; finish?: (acc: number, count: number) => number };

const REDUCTIONS: Record<string, Reduction> = {
  ReduceSum: { init: 0, step: (acc, v) => acc + v },
  ReduceMean: { init: 0, step: (acc, v) => acc + v, finish: (acc, count) => acc / count },
  ReduceMax: { init: -Infinity, step: Math.max },
  ReduceMin: { init: Infinity, step: Math.min },
  ReduceProd: { init: 1, step: (acc, v) => acc * v },
  ReduceSumSquare: { init: 0, step: (acc, v) => acc + v * v },
};

/** Axes from the second input (ReduceSum from opset 13, the others from 18) or the `axes`
 * attribute (earlier opsets); none means all unless noop_with_empty_axes. */
function reduce(r: Reduction): Kernel {
  return (node, inputs) => {
    const x = required(inputs, 0, 'data');
    const rank = x.shape.length;
    const given = inputs[1] ? ints(inputs[1]) : intsAttr(node, 'axes');
    const keep = intAttr(node, 'keepdims', 1) === 1;
    if ((given === undefined || given.length === 0) && intAttr(node, 'noop_with_empty_axes', 0) === 1) {
      return [{ ...x, shape: [...x.shape] }];
    }
    const axes = given === undefined || given.length === 0 ? x.shape.map((_, i) => i) : given.map((a) => normAxis(a, rank));
    const reducedShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const own = stridesOf(reducedShape);
    const target = offsets(x.shape, own.map((s, i) => (axes.includes(i) ? 0 : s)));
    const out = new Float64Array(size(reducedShape)).fill(r.init);
    for (let k = 0; k < x.data.length; k++) out[target[k]] = r.step(out[target[k]], x.data[k]);
    if (r.finish) {
      const count = out.length === 0 ? 0 : x.data.length / out.length;
      for (let i = 0; i < out.length; i++) out[i] = r.finish(out[i], count);
    }
    const shape = keep ? reducedShape : x.shape.filter((_, i) => !axes.includes(i));
    return [result(x.dtype, shape, out)];
  };
}

// ---------------------------------------------------------------- the table

const KERNELS: Record<string, Kernel> = {
  // elementwise
  Add: binary((a, b) => a + b),
  Sub: binary((a, b) => a - b),
  Mul: binary((a, b) => a * b),
  Div: binary((a, b) => a / b, (a, b) => Math.trunc(a / b)),
  Pow: binary((a, b) => a ** b),
  Sum: variadic((a, b) => a + b),
  Max: variadic(Math.max),
  Min: variadic(Math.min),
  Mean: (node, inputs) => {
    const [s] = KERNELS.Sum(node, inputs);
    const count = inputs.filter((t) => t !== undefined).length;
    return [{ ...s, data: Float64Array.from(s.data, (v) => v / count) }];
  },
  Neg: unary((a) => -a),
  Abs: unary(Math.abs),
  Exp: unary(Math.exp),
  Log: unary(Math.log),
  Sqrt: unary(Math.sqrt),
  Reciprocal: unary((a) => 1 / a),
  Relu: unary((a) => Math.max(a, 0)),
  Sigmoid: unary(sigmoid),
  Tanh: unary(Math.tanh),
  Softplus: unary((a) => Math.max(a, 0) + Math.log1p(Math.exp(-Math.abs(a)))),
  Floor: unary(Math.floor),
  Sign: unary(Math.sign),
  Where: where,
  Greater: compare((a, b) => a > b),
  Less: compare((a, b) => a < b),
  Equal: compare((a, b) => a === b),
  Identity: (_, inputs) => [required(inputs, 0, 'input')],
  Cast: (node, inputs) => {
    const x = required(inputs, 0, 'input');
    const dtype = dtypeOfCode(intAttr(node, 'to', -1));
    if (!dtype) throw new Error(`unsupported Cast target ${intAttr(node, 'to', -1)}`);
    return [result(dtype, [...x.shape], Float64Array.from(x.data, castTo(dtype)))];
  },

  // layout
  Reshape: (node, inputs) => {
    const x = required(inputs, 0, 'data');
    const target = ints(required(inputs, 1, 'shape'));
    return [reshapeTo(x, resolveShape(x.shape, target, intAttr(node, 'allowzero', 0) === 1, x.data.length))];
  },
  Flatten: (node, inputs) => {
    const x = required(inputs, 0, 'input');
    const axis = intAttr(node, 'axis', 1);
    const a = axis < 0 ? axis + x.shape.length : axis;
    return [reshapeTo(x, [size(x.shape.slice(0, a)), size(x.shape.slice(a))])];
  },
  Squeeze: (node, inputs) => {
    const x = required(inputs, 0, 'data');
    const given = inputs[1] ? ints(inputs[1]) : intsAttr(node, 'axes');
    const axes = given ? given.map((a) => normAxis(a, x.shape.length)) : x.shape.flatMap((d, i) => (d === 1 ? [i] : []));
    if (axes.some((a) => x.shape[a] !== 1)) throw new Error(`cannot squeeze axes [${given?.join(', ')}] of [${x.shape.join(', ')}]`);
    return [reshapeTo(x, x.shape.filter((_, i) => !axes.includes(i)))];
  },
  Unsqueeze: (node, inputs) => {
    const x = required(inputs, 0, 'data');
    const given = inputs[1] ? ints(inputs[1]) : intsAttr(node, 'axes');
    if (!given) throw new Error('needs axes');
    const rank = x.shape.length + given.length;
    const axes = given.map((a) => normAxis(a, rank));
    const rest = [...x.shape];
    return [reshapeTo(x, Array.from({ length: rank }, (_, i) => (axes.includes(i) ? 1 : rest.shift()!)))];
  },
  Transpose: (node, inputs) => {
    const x = required(inputs, 0, 'data');
    return [transposeTensor(x, intsAttr(node, 'perm') ?? x.shape.map((_, i) => x.shape.length - 1 - i))];
  },
  Concat: (node, inputs) => {
    const xs = inputs.filter((t): t is Tensor => t !== undefined);
    if (xs.length === 0) throw new Error('needs at least one input');
    return [concatTensors(xs, intAttr(node, 'axis', 0))];
  },
  Split: (node, inputs) => {
    const x = required(inputs, 0, 'input');
    const axis = normAxis(intAttr(node, 'axis', 0), x.shape.length);
    const d = x.shape[axis];
    const count = node.outputs.length;
    let sizes = inputs[1] ? ints(inputs[1]) : intsAttr(node, 'split');
    if (!sizes) {
      // Equal parts; from opset 18 the last one may be smaller.
      const part = Math.ceil(d / count);
      sizes = Array.from({ length: count }, (_, i) => Math.max(0, Math.min(part, d - i * part)));
    }
    if (sizes.length !== count || sizes.reduce((a, b) => a + b, 0) !== d) {
      throw new Error(`split [${sizes.join(', ')}] does not cut ${d} into ${count} outputs`);
    }
    let start = 0;
    return sizes.map((len) => {
      const piece = sliceAxis(x, axis, start, len);
      start += len;
      return piece;
    });
  },
  Slice: (_, inputs) => {
    const x = required(inputs, 0, 'data');
    const opt = (i: number) => (inputs[i] ? ints(inputs[i]!) : undefined);
    return [slice(x, ints(required(inputs, 1, 'starts')), ints(required(inputs, 2, 'ends')), opt(3), opt(4))];
  },
  Pad: pad,
  Gather: (node, inputs) => [gather(required(inputs, 0, 'data'), required(inputs, 1, 'indices'), intAttr(node, 'axis', 0))],
  DepthToSpace: (node, inputs) => [depthToSpace(required(inputs, 0, 'input'), intAttr(node, 'blocksize', 0), stringAttr(node, 'mode', 'DCR'))],
  SpaceToDepth: (node, inputs) => [spaceToDepth(required(inputs, 0, 'input'), intAttr(node, 'blocksize', 0))],
  Shape: (node, inputs) => {
    const x = required(inputs, 0, 'data');
    const rank = x.shape.length;
    const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + rank : v, 0), rank);
    const dims = x.shape.slice(clamp(intAttr(node, 'start', 0)), clamp(intAttr(node, 'end', rank)));
    return [result('int64', [dims.length], Float64Array.from(dims))];
  },
  Expand: (_, inputs) => {
    const x = required(inputs, 0, 'input');
    const shape = broadcastShape([x.shape, ints(required(inputs, 1, 'shape'))]);
    const idx = broadcastOffsets(x.shape, shape);
    return [result(x.dtype, shape, idx ? Float64Array.from(idx, (o) => x.data[o]) : Float64Array.from(x.data))];
  },
  Constant: (node) => {
    const a = node.attributes;
    if (a.value?.kind === 'tensor') return [{ ...a.value.value, data: Float64Array.from(a.value.value.data) }];
    if (a.value_float?.kind === 'float') return [result('float32', [], Float64Array.of(a.value_float.value))];
    if (a.value_floats?.kind === 'floats') return [result('float32', [a.value_floats.value.length], Float64Array.from(a.value_floats.value))];
    if (a.value_int?.kind === 'int') return [result('int64', [], Float64Array.of(a.value_int.value))];
    if (a.value_ints?.kind === 'ints') return [result('int64', [a.value_ints.value.length], Float64Array.from(a.value_ints.value))];
    throw new Error('unsupported Constant attribute');
  },
  ConstantOfShape: (node, inputs) => {
    const shape = ints(required(inputs, 0, 'input'));
    const v = node.attributes.value;
    const fill = v?.kind === 'tensor' ? v.value : { dtype: 'float32' as DType, shape: [1], data: Float64Array.of(0) };
    return [result(fill.dtype, shape, new Float64Array(size(shape)).fill(fill.data[0]))];
  },

  // linear algebra
  Conv: conv,
  ConvTranspose: convTranspose,
  Gemm: gemm,
  MatMul: (_, inputs) => [matmul(required(inputs, 0, 'A'), required(inputs, 1, 'B'))],

  // reductions
  ...Object.fromEntries(Object.entries(REDUCTIONS).map(([op, r]) => [op, reduce(r)])),
};

// ---------------------------------------------------------------- entry points

/** Whether evaluateNode has a kernel for this node's op. */
export function canEvaluate(node: Node): boolean {
  return node.domain === '' && Object.hasOwn(KERNELS, node.op);
}

/** Evaluates one node on host tensors in float64; omitted optional inputs are undefined. Errors
 * name the node. */
export function evaluateNode(node: Node, inputs: readonly (Tensor | undefined)[]): Tensor[] {
  if (!canEvaluate(node)) {
    throw new Error(`node ${node.name}: no float64 kernel for ${node.domain || 'ai.onnx'}::${node.op}`);
  }
  let outputs: Tensor[];
  try {
    outputs = KERNELS[node.op](node, inputs);
  } catch (e) {
    const shapes = inputs.map((t) => (t ? `[${t.shape.join(', ')}]` : '-')).join(', ');
    throw new Error(`${node.op} node ${node.name} (inputs ${shapes}): ${(e as Error).message}`);
  }
  if (outputs.length < node.outputs.length) {
    throw new Error(`${node.op} node ${node.name}: computed ${outputs.length} outputs, the node has ${node.outputs.length}`);
  }
  return outputs;
}

/**
 * Runs a topologically sorted graph in float64. Feeds are keyed by graph input name and must
 * match the static dimensions declared for them; returns every graph output by name. `observe`
 * sees every node's outputs as they are computed (intermediate values, for analyses).
 */
export function evaluateGraph(graph: Graph, feeds: Record<string, Tensor>, observe?: (node: Node, outputs: readonly Tensor[]) => void): Record<string, Tensor> {
  const values = new Map<string, Tensor>();
  for (const [v, t] of graph.initializers) values.set(v.name, t);
  const declared = new Set(graph.inputs.map((io) => io.value.name));
  for (const name of Object.keys(feeds)) {
    if (!declared.has(name)) throw new Error(`graph ${graph.name} has no input named ${name} (inputs: ${[...declared].join(', ')})`);
  }
  for (const { value } of graph.inputs) {
    const t = feeds[value.name];
    if (!t) {
      if (values.has(value.name)) continue; // an input with an initializer as its default
      throw new Error(`graph ${graph.name}: missing feed for input ${value}`);
    }
    const shape = value.shape;
    if (shape && (shape.length !== t.shape.length || shape.some((d, i) => typeof d === 'number' && d !== t.shape[i]))) {
      throw new Error(`graph ${graph.name}: feed ${value.name} has shape [${t.shape.join(', ')}], input is ${value}`);
    }
    if (t.data.length !== size(t.shape)) throw new Error(`feed ${value.name}: ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    values.set(value.name, t);
  }
  for (const node of graph.nodes) {
    const inputs = node.inputs.map((v) => {
      if (!v) return undefined;
      const t = values.get(v.name);
      if (!t) throw new Error(`graph ${graph.name}: node ${node.name} (${node.op}) reads ${v.name} before it is computed (is the graph sorted?)`);
      return t;
    });
    const outputs = evaluateNode(node, inputs);
    node.outputs.forEach((v, i) => values.set(v.name, outputs[i]));
    observe?.(node, outputs);
  }
  const out: Record<string, Tensor> = {};
  for (const { value } of graph.outputs) {
    const t = values.get(value.name);
    if (!t) throw new Error(`graph ${graph.name}: output ${value.name} is never computed`);
    out[value.name] = t;
  }
  return out;
}
