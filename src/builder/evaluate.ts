// Float64 host kernels for the ops that appear on weights, used to fold initializer-only
// subgraphs at export. Deliberately small: an op missing here is simply not folded.

import { dtypeOfCode, Node, Tensor } from './graph.js';

type Kernel = (node: Node, inputs: Tensor[]) => Tensor[];

function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Elementwise op over numpy-broadcast inputs. */
function broadcast(f: (...xs: number[]) => number): Kernel {
  return (node, inputs) => {
    const rank = Math.max(...inputs.map((t) => t.shape.length));
    const shape = new Array<number>(rank).fill(1);
    for (const t of inputs) {
      t.shape.forEach((d, i) => {
        const j = i + rank - t.shape.length;
        if (shape[j] !== 1 && d !== 1 && d !== shape[j]) throw new Error(`${node.name}: shapes do not broadcast`);
        if (d !== 1) shape[j] = d;
      });
    }
    const outStrides = strides(shape);
    const inStrides = inputs.map((t) => {
      const own = strides(t.shape);
      return shape.map((_, j) => {
        const i = j - (rank - t.shape.length);
        return i < 0 || t.shape[i] === 1 ? 0 : own[i];
      });
    });
    const n = size(shape);
    const out = new Float64Array(n);
    const args = new Array<number>(inputs.length);
    for (let k = 0; k < n; k++) {
      for (let a = 0; a < inputs.length; a++) {
        let offset = 0;
        let rest = k;
        for (let j = 0; j < rank; j++) {
          const idx = Math.floor(rest / outStrides[j]);
          rest -= idx * outStrides[j];
          offset += idx * inStrides[a][j];
        }
        args[a] = inputs[a].data[offset];
      }
      out[k] = f(...args);
    }
    return [{ dtype: inputs[0].dtype, shape, data: out }];
  };
}

function transposeTensor(t: Tensor, perm: number[]): Tensor {
  const shape = perm.map((p) => t.shape[p]);
  const inStrides = strides(t.shape);
  const outStrides = strides(shape);
  const out = new Float64Array(t.data.length);
  for (let k = 0; k < out.length; k++) {
    let rest = k;
    let offset = 0;
    for (let j = 0; j < shape.length; j++) {
      const idx = Math.floor(rest / outStrides[j]);
      rest -= idx * outStrides[j];
      offset += idx * inStrides[perm[j]];
    }
    out[k] = t.data[offset];
  }
  return { dtype: t.dtype, shape, data: out };
}

function reduce(mean: boolean): Kernel {
  return (node, [x, axesTensor]) => {
    const attrAxes = node.attributes.axes;
    const axes = (axesTensor ? Array.from(axesTensor.data) : attrAxes?.kind === 'ints' ? attrAxes.value : x.shape.map((_, i) => i))
      .map((a) => (a < 0 ? a + x.shape.length : a));
    const keep = node.attributes.keepdims?.kind !== 'int' || node.attributes.keepdims.value === 1;
    const reducedShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const out = new Float64Array(size(reducedShape));
    const inStrides = strides(x.shape);
    const outStrides = strides(reducedShape);
    for (let k = 0; k < x.data.length; k++) {
      let rest = k;
      let offset = 0;
      for (let j = 0; j < x.shape.length; j++) {
        const idx = Math.floor(rest / inStrides[j]);
        rest -= idx * inStrides[j];
        if (!axes.includes(j)) offset += idx * outStrides[j];
      }
      out[offset] += x.data[k];
    }
    if (mean) {
      const count = x.data.length / out.length;
      for (let i = 0; i < out.length; i++) out[i] /= count;
    }
    const shape = keep ? reducedShape : x.shape.filter((_, i) => !axes.includes(i));
    return [{ dtype: x.dtype, shape, data: out }];
  };
}

const KERNELS: Record<string, Kernel> = {
  Add: broadcast((a, b) => a + b),
  Sub: broadcast((a, b) => a - b),
  Mul: broadcast((a, b) => a * b),
  Div: broadcast((a, b) => a / b),
  Pow: broadcast((a, b) => a ** b),
  Neg: broadcast((a) => -a),
  Exp: broadcast(Math.exp),
  Log: broadcast(Math.log),
  Sqrt: broadcast(Math.sqrt),
  Abs: broadcast(Math.abs),
  Relu: broadcast((a) => Math.max(a, 0)),
  Sigmoid: broadcast((a) => 1 / (1 + Math.exp(-a))),
  Sum: broadcast((...xs) => xs.reduce((a, b) => a + b, 0)),
  Identity: (_, [x]) => [x],
  Cast: (node, [x]) => {
    const to = node.attributes.to;
    const dtype = to?.kind === 'int' ? dtypeOfCode(to.value) : undefined;
    if (!dtype) throw new Error(`${node.name}: unsupported Cast target`);
    const convert = dtype === 'int32' || dtype === 'int64' ? Math.trunc : dtype === 'bool' ? (v: number) => (v ? 1 : 0) : (v: number) => v;
    return [{ dtype, shape: x.shape, data: Float64Array.from(x.data, convert) }];
  },
  Reshape: (node, [x, target]) => {
    const shape = Array.from(target.data, (d, i) => (d === 0 ? x.shape[i] : d));
    const inferred = shape.indexOf(-1);
    if (inferred >= 0) shape[inferred] = x.data.length / shape.reduce((a, d, i) => (i === inferred ? a : a * d), 1);
    if (size(shape) !== x.data.length) throw new Error(`${node.name}: bad reshape`);
    return [{ ...x, shape }];
  },
  Transpose: (node, [x]) => {
    const perm = node.attributes.perm;
    return [transposeTensor(x, perm?.kind === 'ints' ? perm.value : x.shape.map((_, i) => x.shape.length - 1 - i))];
  },
  MatMul: (node, [a, b]) => {
    if (a.shape.length !== 2 || b.shape.length !== 2) throw new Error(`${node.name}: only 2-D MatMul is folded`);
    const [m, k] = a.shape;
    const n = b.shape[1];
    const out = new Float64Array(m * n);
    for (let i = 0; i < m; i++) {
      for (let p = 0; p < k; p++) {
        const aip = a.data[i * k + p];
        for (let j = 0; j < n; j++) out[i * n + j] += aip * b.data[p * n + j];
      }
    }
    return [{ dtype: a.dtype, shape: [m, n], data: out }];
  },
  ReduceSum: reduce(false),
  ReduceMean: reduce(true),
};

export function canEvaluate(node: Node): boolean {
  return node.domain === '' && node.op in KERNELS;
}

/** Evaluates one node on host tensors in float64. */
export function evaluateNode(node: Node, inputs: Tensor[]): Tensor[] {
  const kernel = KERNELS[node.op];
  if (!kernel || node.domain !== '') throw new Error(`no host kernel for ${node.domain || 'ai.onnx'}::${node.op}`);
  return kernel(node, inputs);
}
