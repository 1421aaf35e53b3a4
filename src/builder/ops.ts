// Typed helpers for the ONNX ops the project emits. Each writes every attribute explicitly,
// picks the form its opset defines, and infers the output shape so mistakes surface at build
// time with the names of the values involved.

import { normAxis, sliceRange } from './axes.js';
import { attr, Attribute, Dim, DType, GraphBuilder, Node, ONNX_TYPE, Shape, tensor, Value } from './graph.js';

// ---------------------------------------------------------------- shape helpers

function broadcastDim(a: Dim, b: Dim, ctx: () => string): Dim {
  if (a === b) return a;
  if (a === 1) return b;
  if (b === 1) return a;
  if (typeof a === 'string' && typeof b === 'number') return b;
  if (typeof b === 'string' && typeof a === 'number') return a;
  if (typeof a === 'string' && typeof b === 'string') return a;
  throw new Error(`cannot broadcast ${ctx()}`);
}

export function broadcastShapes(a: Shape | undefined, b: Shape | undefined, ctx = () => 'shapes'): Shape | undefined {
  if (!a || !b) return undefined;
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)];
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)];
    out.push(broadcastDim(da, db, ctx));
  }
  return out;
}

function sameDtype(op: string, values: Value[]): DType {
  const dtype = values[0].dtype;
  for (const v of values) {
    if (v.dtype !== dtype) throw new Error(`${op}: mixed dtypes ${values.map(String).join(', ')}`);
  }
  return dtype;
}

function int64(g: GraphBuilder, values: number[], hint: string): Value {
  return g.constant(tensor('int64', [values.length], values), hint);
}

// ---------------------------------------------------------------- elementwise

function binary(g: GraphBuilder, op: string, a: Value, b: Value): Value {
  const dtype = sameDtype(op, [a, b]);
  const shape = broadcastShapes(a.shape, b.shape, () => `${op}(${a}, ${b})`);
  return g.node(op, [a, b], {}, [{ dtype, shape }])[0];
}

function unary(g: GraphBuilder, op: string, x: Value): Value {
  return g.node(op, [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0];
}

export const add = (g: GraphBuilder, a: Value, b: Value) => binary(g, 'Add', a, b);
export const sub = (g: GraphBuilder, a: Value, b: Value) => binary(g, 'Sub', a, b);
export const mul = (g: GraphBuilder, a: Value, b: Value) => binary(g, 'Mul', a, b);
export const div = (g: GraphBuilder, a: Value, b: Value) => binary(g, 'Div', a, b);
export const pow = (g: GraphBuilder, a: Value, b: Value) => binary(g, 'Pow', a, b);
export const neg = (g: GraphBuilder, x: Value) => unary(g, 'Neg', x);
export const exp = (g: GraphBuilder, x: Value) => unary(g, 'Exp', x);
export const log = (g: GraphBuilder, x: Value) => unary(g, 'Log', x);
export const sigmoid = (g: GraphBuilder, x: Value) => unary(g, 'Sigmoid', x);
export const relu = (g: GraphBuilder, x: Value) => unary(g, 'Relu', x);
export const sqrt = (g: GraphBuilder, x: Value) => unary(g, 'Sqrt', x);
export const abs = (g: GraphBuilder, x: Value) => unary(g, 'Abs', x);
export const identity = (g: GraphBuilder, x: Value) => unary(g, 'Identity', x);

/** Variadic sum with broadcasting (ONNX Sum). */
export function sum(g: GraphBuilder, values: Value[]): Value {
  if (values.length === 0) throw new Error('Sum needs at least one input');
  if (values.length === 1) return values[0];
  const dtype = sameDtype('Sum', values);
  const shape = values.slice(1).reduce<Shape | undefined>((s, v) => broadcastShapes(s, v.shape), values[0].shape);
  return g.node('Sum', values, {}, [{ dtype, shape }])[0];
}

export function cast(g: GraphBuilder, x: Value, to: DType): Value {
  return g.node('Cast', [x], { to: attr.int(ONNX_TYPE[to]) }, [{ dtype: to, shape: x.shape }])[0];
}


// ---------------------------------------------------------------- convolution and matmul

export interface ConvOptions {
  pads?: [number, number, number, number];
  strides?: [number, number];
  dilations?: [number, number];
  group?: number;
}

/** The attributes Conv and ConvTranspose share, ONNX's defaults filled in (2-D). */
export function convDefaults(opts: ConvOptions): Required<ConvOptions> {
  return {
    pads: opts.pads ?? [0, 0, 0, 0],
    strides: opts.strides ?? [1, 1],
    dilations: opts.dilations ?? [1, 1],
    group: opts.group ?? 1,
  };
}

/** The shared convolution attributes of a Conv or ConvTranspose node (`strict`: as Node.ints). */
export function convAttributes(node: Node, strict = false): Required<ConvOptions> {
  return convDefaults({
    pads: node.ints('pads', strict) as ConvOptions['pads'],
    strides: node.ints('strides', strict) as ConvOptions['strides'],
    dilations: node.ints('dilations', strict) as ConvOptions['dilations'],
    group: node.int('group', strict),
  });
}

/**
 * 2-D convolution, NCHW. The weight [M, C/group, kH, kW] needs a static kernel size; its channel
 * dimensions may be symbolic when it is computed at run time (a weight gradient that contracts
 * over the batch).
 */
export function conv(g: GraphBuilder, x: Value, weight: Value, bias: Value | undefined, opts: ConvOptions = {}): Value {
  const ws = weight.shape;
  if (!ws || ws.length !== 4 || typeof ws[2] !== 'number' || typeof ws[3] !== 'number') {
    throw new Error(`Conv: weight ${weight} needs a static kernel size`);
  }
  const [M, Cg, kH, kW] = ws as [Dim, Dim, number, number];
  const { pads, strides, dilations, group } = convDefaults(opts);
  const xs = x.shape;
  if (!xs || xs.length !== 4) throw new Error(`Conv: input ${x} must be 4-D NCHW`);
  const cin = xs[1];
  if (typeof cin === 'number' && typeof Cg === 'number' && cin !== Cg * group) {
    throw new Error(`Conv: input ${x} has ${cin} channels, weight ${weight} expects ${Cg * group}`);
  }
  if (bias && typeof M === 'number' && bias.staticShape()[0] !== M) throw new Error(`Conv: bias ${bias} does not match ${M} output channels`);
  const spatial = (d: Dim, k: number, i: number): Dim =>
    typeof d === 'number' ? Math.floor((d + pads[i] + pads[i + 2] - dilations[i] * (k - 1) - 1) / strides[i]) + 1 : `${d}_conv`;
  const shape: Dim[] = [xs[0], M, spatial(xs[2], kH, 0), spatial(xs[3], kW, 1)];
  const attributes: Record<string, Attribute> = {
    dilations: attr.ints(dilations),
    group: attr.int(group),
    kernel_shape: attr.ints([kH, kW]),
    pads: attr.ints(pads),
    strides: attr.ints(strides),
  };
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return g.node('Conv', inputs, attributes, [{ dtype: sameDtype('Conv', [x, weight]), shape }])[0];
}

/** "same" padding for odd kernels at stride 1. */
export function samePads(kernel: number): [number, number, number, number] {
  const p = (kernel - 1) / 2;
  return [p, p, p, p];
}

export function matmul(g: GraphBuilder, a: Value, b: Value): Value {
  const as = a.shape;
  const bs = b.shape;
  let shape: Shape | undefined;
  if (as && bs && as.length >= 2 && bs.length >= 2) {
    const k1 = as[as.length - 1];
    const k2 = bs[bs.length - 2];
    if (typeof k1 === 'number' && typeof k2 === 'number' && k1 !== k2) {
      throw new Error(`MatMul: inner dimensions differ in ${a} x ${b}`);
    }
    const batch = broadcastShapes(as.slice(0, -2), bs.slice(0, -2), () => `MatMul(${a}, ${b})`)!;
    shape = [...batch, as[as.length - 2], bs[bs.length - 1]];
  }
  return g.node('MatMul', [a, b], {}, [{ dtype: sameDtype('MatMul', [a, b]), shape }])[0];
}

/** Y = alpha * A' B' + beta * C with A' = transA ? A^T : A. */
export function gemm(
  g: GraphBuilder, a: Value, b: Value, c: Value | undefined,
  opts: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number } = {},
): Value {
  const as = a.shape!;
  const bs = b.shape!;
  const m = opts.transA ? as[1] : as[0];
  const n = opts.transB ? bs[0] : bs[1];
  const attributes = {
    alpha: attr.float(opts.alpha ?? 1),
    beta: attr.float(opts.beta ?? 1),
    transA: attr.int(opts.transA ? 1 : 0),
    transB: attr.int(opts.transB ? 1 : 0),
  };
  return g.node('Gemm', c ? [a, b, c] : [a, b], attributes, [{ dtype: sameDtype('Gemm', [a, b]), shape: [m, n] }])[0];
}

// ---------------------------------------------------------------- shape manipulation

/**
 * Reshape to a static target in which 0 copies the input dimension (used for the dynamic batch)
 * and one -1 is inferred. Symbolic input dimensions copied by 0 cancel out, so sizes stay static
 * wherever they can be known.
 */
export function reshape(g: GraphBuilder, x: Value, target: number[]): Value {
  const fail = (why: string) => new Error(`Reshape: ${x} cannot become [${target.join(', ')}]: ${why}`);
  if (target.some((d) => !Number.isInteger(d) || d < -1)) throw fail('dimensions must be integers >= -1');
  if (target.filter((d) => d === -1).length > 1) throw fail('at most one dimension can be -1');
  const xs = x.shape;
  let shape: Dim[] | undefined;
  if (xs) {
    shape = target.map((d, i) => {
      if (d !== 0) return d;
      if (i >= xs.length) throw fail(`0 at position ${i} has no input dimension to copy`);
      return xs[i];
    });
    const staticProduct = (dims: readonly Dim[]) => dims.reduce<number>((a, d) => (typeof d === 'number' && d !== -1 ? a * d : a), 1);
    const symbols = (dims: readonly Dim[]) => dims.filter((d): d is string => typeof d === 'string').sort().join('*');
    const inferred = shape.indexOf(-1);
    if (symbols(xs) === symbols(shape)) {
      const rest = staticProduct(xs) / staticProduct(shape);
      if (inferred >= 0) {
        if (!Number.isInteger(rest)) throw fail(`${staticProduct(xs)} elements do not divide into ${staticProduct(shape)}`);
        shape[inferred] = rest;
      } else if (rest !== 1) {
        throw fail(`${staticProduct(xs)} elements cannot fill ${staticProduct(shape)}`);
      }
    } else if (inferred >= 0) {
      shape[inferred] = `${x.name}_reshaped`;
    }
  }
  const shapeValue = int64(g, target, 'shape');
  // allowzero exists from opset 14; its default (0) is what 0 in `target` relies on.
  const attributes: Record<string, Attribute> = g.opset >= 14 ? { allowzero: attr.int(0) } : {};
  return g.node('Reshape', [x, shapeValue], attributes, [{ dtype: x.dtype, shape }])[0];
}

export function transpose(g: GraphBuilder, x: Value, perm: number[]): Value {
  const shape = x.shape ? perm.map((p) => x.shape![p]) : undefined;
  return g.node('Transpose', [x], { perm: attr.ints(perm) }, [{ dtype: x.dtype, shape }])[0];
}

export function concat(g: GraphBuilder, values: Value[], axis: number): Value {
  const dtype = sameDtype('Concat', values);
  let shape: Dim[] | undefined;
  if (values.every((v) => v.shape)) {
    const a = normAxis(axis, values[0].rank, 'Concat');
    shape = [...values[0].shape!];
    for (const v of values.slice(1)) {
      const other = v.shape!;
      const mismatch = other.length !== shape.length
        || other.some((d, i) => i !== a && typeof d === 'number' && typeof shape![i] === 'number' && d !== shape![i]);
      if (mismatch) throw new Error(`Concat on axis ${axis}: ${values[0]} and ${v} differ on another axis`);
    }
    const dims = values.map((v) => v.shape![a]);
    shape[a] = dims.every((d) => typeof d === 'number') ? (dims as number[]).reduce((x, y) => x + y, 0) : `concat_${a}`;
  }
  return g.node('Concat', values, { axis: attr.int(axis) }, [{ dtype, shape }])[0];
}

/** Split along a static axis into pieces of the given sizes (the `split` input form of opset 13+). */
export function split(g: GraphBuilder, x: Value, sizes: number[], axis: number): Value[] {
  const a = normAxis(axis, x.rank, 'Split');
  const total = x.shape![a];
  if (typeof total === 'number' && sizes.reduce((p, q) => p + q, 0) !== total) {
    throw new Error(`Split: sizes [${sizes.join(', ')}] do not add up to ${total} on axis ${axis} of ${x}`);
  }
  const outputTypes = sizes.map((s) => {
    const shape = [...x.shape!];
    shape[a] = s;
    return { dtype: x.dtype, shape };
  });
  return g.node('Split', [x, int64(g, sizes, 'split')], { axis: attr.int(axis) }, outputTypes);
}

/** Gather along an axis with constant indices. */
export function gather(g: GraphBuilder, x: Value, indices: number[], axis: number): Value {
  const a = normAxis(axis, x.rank, 'Gather');
  const shape = [...x.shape!];
  shape[a] = indices.length;
  const idx = int64(g, indices, 'indices');
  return g.node('Gather', [x, idx], { axis: attr.int(axis) }, [{ dtype: x.dtype, shape }])[0];
}

/** DepthToSpace; CRD mode is the inverse of Glow's squeeze. */
export function depthToSpace(g: GraphBuilder, x: Value, blocksize: number, mode: 'CRD' | 'DCR'): Value {
  const [n, c, h, w] = x.shape!;
  const b2 = blocksize * blocksize;
  if (typeof c === 'number' && c % b2 !== 0) throw new Error(`DepthToSpace: ${x} has ${c} channels, not a multiple of ${b2}`);
  const scale = (d: Dim, f: number): Dim => (typeof d === 'number' ? d * f : `${d}*${f}`);
  const shape = [n, typeof c === 'number' ? c / b2 : `${c}/${b2}`, scale(h, blocksize), scale(w, blocksize)];
  return g.node('DepthToSpace', [x], { blocksize: attr.int(blocksize), mode: attr.string(mode) }, [{ dtype: x.dtype, shape }])[0];
}

// ---------------------------------------------------------------- reductions

function reducedShape(x: Value, axes: number[], keepdims: boolean): Shape | undefined {
  if (!x.shape) return undefined;
  const norm = axes.map((a) => normAxis(a, x.rank, 'Reduce'));
  const out: Dim[] = [];
  x.shape.forEach((d, i) => {
    if (!norm.includes(i)) out.push(d);
    else if (keepdims) out.push(1);
  });
  return out;
}

function reduce(g: GraphBuilder, op: 'ReduceSum' | 'ReduceMean' | 'ReduceMax', x: Value, axes: number[], keepdims: boolean): Value {
  const shape = reducedShape(x, axes, keepdims);
  const keep = { keepdims: attr.int(keepdims ? 1 : 0) };
  // ReduceSum takes axes as an input from opset 13, the other reductions only from opset 18.
  const axesAsInput = op === 'ReduceSum' || g.opset >= 18;
  if (axesAsInput) {
    return g.node(op, [x, int64(g, axes, 'axes')], { ...keep, noop_with_empty_axes: attr.int(0) }, [{ dtype: x.dtype, shape }])[0];
  }
  return g.node(op, [x], { ...keep, axes: attr.ints(axes) }, [{ dtype: x.dtype, shape }])[0];
}

export const reduceSum = (g: GraphBuilder, x: Value, axes: number[], keepdims: boolean) => reduce(g, 'ReduceSum', x, axes, keepdims);
export const reduceMean = (g: GraphBuilder, x: Value, axes: number[], keepdims: boolean) => reduce(g, 'ReduceMean', x, axes, keepdims);
export const reduceMax = (g: GraphBuilder, x: Value, axes: number[], keepdims: boolean) => reduce(g, 'ReduceMax', x, axes, keepdims);

// ---------------------------------------------------------------- comparisons and selection

function compare(g: GraphBuilder, op: 'Greater' | 'Less' | 'Equal', a: Value, b: Value): Value {
  sameDtype(op, [a, b]);
  const shape = broadcastShapes(a.shape, b.shape, () => `${op}(${a}, ${b})`);
  return g.node(op, [a, b], {}, [{ dtype: 'bool', shape }])[0];
}

export const greater = (g: GraphBuilder, a: Value, b: Value) => compare(g, 'Greater', a, b);
export const less = (g: GraphBuilder, a: Value, b: Value) => compare(g, 'Less', a, b);
export const equal = (g: GraphBuilder, a: Value, b: Value) => compare(g, 'Equal', a, b);

/** cond ? a : b, elementwise with numpy broadcasting of all three. */
export function where(g: GraphBuilder, cond: Value, a: Value, b: Value): Value {
  if (cond.dtype !== 'bool') throw new Error(`Where: condition ${cond} must be bool`);
  const dtype = sameDtype('Where', [a, b]);
  const ctx = () => `Where(${cond}, ${a}, ${b})`;
  const shape = broadcastShapes(cond.shape, broadcastShapes(a.shape, b.shape, ctx), ctx);
  return g.node('Where', [cond, a, b], {}, [{ dtype, shape }])[0];
}

export const sign = (g: GraphBuilder, x: Value) => unary(g, 'Sign', x);
export const tanh = (g: GraphBuilder, x: Value) => unary(g, 'Tanh', x);
export const reciprocal = (g: GraphBuilder, x: Value) => unary(g, 'Reciprocal', x);
export const softplus = (g: GraphBuilder, x: Value) => unary(g, 'Softplus', x);

// ---------------------------------------------------------------- shapes known at run time

/** Shape(x): int64 [rank]. */
export function shapeOf(g: GraphBuilder, x: Value): Value {
  return g.node('Shape', [x], {}, [{ dtype: 'int64', shape: [x.rank] }])[0];
}

/** Expand (numpy broadcast) to a static target shape. */
export function expand(g: GraphBuilder, x: Value, target: number[]): Value {
  const shape = broadcastShapes(x.shape, target, () => `Expand(${x}, [${target.join(', ')}])`);
  return g.node('Expand', [x, int64(g, target, 'shape')], {}, [{ dtype: x.dtype, shape }])[0];
}

/** Expand x to the run-time shape of `like` (through Shape(like)), for symbolic dimensions. */
export function expandAs(g: GraphBuilder, x: Value, like: Value): Value {
  const shape = broadcastShapes(x.shape, like.shape, () => `Expand(${x}) as ${like}`);
  return g.node('Expand', [x, shapeOf(g, like)], {}, [{ dtype: x.dtype, shape }])[0];
}

/** Reshape x to the run-time shape of `like` (through Shape(like)), for symbolic dimensions. */
export function reshapeAs(g: GraphBuilder, x: Value, like: Value): Value {
  const attributes: Record<string, Attribute> = g.opset >= 14 ? { allowzero: attr.int(0) } : {};
  return g.node('Reshape', [x, shapeOf(g, like)], attributes, [{ dtype: x.dtype, shape: like.shape }])[0];
}

export function unsqueeze(g: GraphBuilder, x: Value, axes: number[]): Value {
  const rank = x.rank + axes.length;
  const norm = axes.map((a) => normAxis(a, rank, 'Unsqueeze'));
  const rest = [...x.shape!];
  const shape = Array.from({ length: rank }, (_, i) => (norm.includes(i) ? 1 : rest.shift()!));
  return g.node('Unsqueeze', [x, int64(g, axes, 'axes')], {}, [{ dtype: x.dtype, shape }])[0];
}

/**
 * Slice with constant starts/ends/axes/steps (inputs, opset 10+), clamped as ONNX clamps them.
 * Sliced axes must be static.
 */
export function slice(g: GraphBuilder, x: Value, starts: number[], ends: number[], axes: number[], steps?: number[]): Value {
  const st = steps ?? axes.map(() => 1);
  const shape = [...x.shape!];
  axes.forEach((axis, i) => {
    const a = normAxis(axis, x.rank, 'Slice');
    const d = shape[a];
    if (typeof d !== 'number') throw new Error(`Slice: axis ${axis} of ${x} is symbolic`);
    const s = st[i];
    if (s === 0) throw new Error('Slice: step cannot be 0');
    shape[a] = sliceRange(starts[i], ends[i], s, d).count;
  });
  const inputs = [x, int64(g, starts, 'starts'), int64(g, ends, 'ends'), int64(g, axes, 'axes'), int64(g, st, 'steps')];
  return g.node('Slice', inputs, {}, [{ dtype: x.dtype, shape }])[0];
}

// ---------------------------------------------------------------- convolution, more forms

export interface ConvTransposeOptions extends ConvOptions {
  /** Extra rows/columns at the end of the output (each < stride). */
  outputPadding?: [number, number];
}

/** 2-D transposed convolution, NCHW. Weight [C, M/group, kH, kW] must have a static shape; no
 * output_shape attribute: the size follows from pads and output_padding. */
export function convTranspose(g: GraphBuilder, x: Value, weight: Value, bias: Value | undefined, opts: ConvTransposeOptions = {}): Value {
  const [C, Mg, kH, kW] = weight.staticShape();
  const { pads, strides, dilations, group } = convDefaults(opts);
  const outputPadding = opts.outputPadding ?? [0, 0];
  const xs = x.shape;
  if (!xs || xs.length !== 4) throw new Error(`ConvTranspose: input ${x} must be 4-D NCHW`);
  if (typeof xs[1] === 'number' && xs[1] !== C) throw new Error(`ConvTranspose: input ${x} has ${xs[1]} channels, weight ${weight} expects ${C}`);
  if (bias && bias.staticShape()[0] !== Mg * group) throw new Error(`ConvTranspose: bias ${bias} does not match ${Mg * group} output channels`);
  const spatial = (d: Dim, k: number, i: number): Dim =>
    typeof d === 'number' ? strides[i] * (d - 1) + outputPadding[i] + dilations[i] * (k - 1) + 1 - pads[i] - pads[i + 2] : `${d}_convT`;
  const shape: Dim[] = [xs[0], Mg * group, spatial(xs[2], kH, 0), spatial(xs[3], kW, 1)];
  const attributes: Record<string, Attribute> = {
    dilations: attr.ints(dilations),
    group: attr.int(group),
    kernel_shape: attr.ints([kH, kW]),
    output_padding: attr.ints(outputPadding),
    pads: attr.ints(pads),
    strides: attr.ints(strides),
  };
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return g.node('ConvTranspose', inputs, attributes, [{ dtype: sameDtype('ConvTranspose', [x, weight]), shape }])[0];
}

/** Constant padding in ONNX's form: pads = [begin of each axis..., end of each axis...], with
 * `value` (default 0). */
export function pad(g: GraphBuilder, x: Value, pads: number[], value = 0): Value {
  const rank = x.rank;
  if (pads.length !== 2 * rank || pads.some((p) => !Number.isInteger(p) || p < 0)) {
    throw new Error(`Pad: ${x} needs ${2 * rank} non-negative integer pads, got [${pads.join(', ')}]`);
  }
  const grow = (d: Dim, i: number): Dim => (pads[i] + pads[i + rank] === 0 ? d : typeof d === 'number' ? d + pads[i] + pads[i + rank] : `${d}_padded`);
  const shape = x.shape!.map(grow);
  const inputs = [x, int64(g, pads, 'pads')];
  if (value !== 0) inputs.push(g.constant(tensor(x.dtype, [], [value]), 'pad_value'));
  return g.node('Pad', inputs, { mode: attr.string('constant') }, [{ dtype: x.dtype, shape }])[0];
}

/** Constant padding of the two spatial axes of an NCHW tensor: pads = [top, left, bottom, right]. */
export function padSpatial(g: GraphBuilder, x: Value, pads: [number, number, number, number], value = 0): Value {
  return pad(g, x, [0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]], value);
}
