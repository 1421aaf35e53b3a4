// Rewrites that OpenCV's DNN module (4.6, Debian's python3-opencv, cv2.dnn.readNetFromONNX)
// needs to load and run a graph. Each is a pure pass that leaves graphs without its pattern as
// they are; export.ts chains them for --target opencv. They change rounding, not results: the
// rewritten graphs match the originals to float32 noise, and stay valid ONNX at their opset.
//
// What the 4.6 importer refuses, and the form each pass writes instead:
// - Max with a constant (4.6 takes Max only between two computed tensors), the scale floor
//   Max(s, f) of the default export (passes/floor.ts): Relu(s - f) + f. Clip is no help either:
//   4.6 takes it only with attributes (opset 10).
// - ReduceSum with axes as an input (opset 13 on): ReduceMean, whose axes stay an attribute up
//   to opset 17, times the count.
// - 1-D tensors in arithmetic (its Eltwise layer wants rank 2 or more): per-example sums keep
//   their reduced axes ([N, 1, 1, 1]) until they leave the graph, reshaped to [N] there.
// - A constant of shape [1, C, H, W] added to or multiplied with a computed tensor (its Scale
//   layer takes the leading 1 as a second batch axis): the constant without that axis.
// - A scalar graph input multiplied in (decode's temperature): see withoutTemperature.
// - A computed [N, C, 1, 1] broadcast over the pixels (the class-conditional prior; its
//   broadcasting finds no single axis): see classPriorPerPixel.

import { attr, Graph, Node, Tensor, tensor, Value } from '../graph.js';
import { isScalarConstant } from './floor.js';
import { toposort } from './toposort.js';
import { size } from '../../math/tensor.js';

const ELEMENTWISE = new Set(['Add', 'Sub', 'Mul', 'Div', 'Neg']);

/** The scale floor, Max(s, f) with f a scalar constant, as Relu(s - f) + f. */
export function floorAsRelu(graph: Graph): Graph {
  const nodes: Node[] = [];
  let changed = false;
  for (const node of graph.nodes) {
    const [s, f] = node.op === 'Max' && node.inputs.length === 2 ? node.inputs : [];
    if (!s || !isScalarConstant(graph, f) || isScalarConstant(graph, s)) {
      nodes.push(node);
      continue;
    }
    const [out] = node.outputs;
    const above = new Value(`${out.name}/above_floor`, out.dtype, out.shape);
    const excess = new Value(`${out.name}/excess`, out.dtype, out.shape);
    nodes.push(
      new Node('Sub', `${node.name}/above_floor`, [s, f], [above], {}),
      new Node('Relu', `${node.name}/excess`, [above], [excess], {}),
      new Node('Add', `${node.name}/floored`, [excess, f], [out], {}),
    );
    changed = true;
  }
  return changed ? { ...graph, nodes } : graph;
}

/**
 * Every ReduceSum with axes as an input becomes ReduceMean (axes as an attribute, keepdims 1)
 * times the count of the reduced elements, and what follows it elementwise keeps the reduced
 * axes; where such a value leaves that chain (a graph output, another op) it is reshaped back
 * to its original shape. Needs static reduced dimensions and opset 17 or lower.
 */
export function reduceSumAsMean(graph: Graph): Graph {
  if (!graph.nodes.some((n) => n.op === 'ReduceSum' && n.inputs.length > 1)) return graph;
  if (graph.opset > 17) throw new Error(`reduceSumAsMean: ReduceMean takes its axes as an input from opset 18; graph ${graph.name} is at opset ${graph.opset}`);
  const initializers = new Map<Value, Tensor>(graph.initializers);
  const kept = new Map<Value, Value>();
  const restored = new Map<Value, Value>();
  const nodes: Node[] = [];
  const restore = (v: Value | undefined): Value | undefined => {
    const wide = v && kept.get(v);
    if (!v || !wide) return v;
    let back = restored.get(v);
    if (!back) {
      back = new Value(`${v.name}/restored`, v.dtype, v.shape);
      const shape = new Value(`${v.name}/restored_shape`, 'int64', [v.rank]);
      initializers.set(shape, tensor('int64', [v.rank], v.staticShape()));
      nodes.push(new Node('Reshape', `${v.name}/restore`, [wide, shape], [back], {}));
      restored.set(v, back);
    }
    return back;
  };
  for (const node of graph.nodes) {
    if (node.op === 'ReduceSum' && node.inputs.length > 1) {
      const [x, axesValue] = node.inputs;
      const axesTensor = axesValue && graph.initializers.get(axesValue);
      if (!x || !axesTensor) throw new Error(`reduceSumAsMean: ${node.name} has no constant axes`);
      const rank = x.rank;
      const axes = Array.from(axesTensor.data, (a) => (a < 0 ? a + rank : a));
      const shape = x.shape!;
      const count = axes.reduce((n, a) => {
        const d = shape[a];
        if (typeof d !== 'number') throw new Error(`reduceSumAsMean: ${node.name} sums over the symbolic dimension ${d}`);
        return n * d;
      }, 1);
      const [out] = node.outputs;
      const wideShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
      const mean = new Value(`${out.name}/mean`, out.dtype, wideShape);
      const keepdims = node.int('keepdims') !== 0;
      const wide = keepdims ? out : new Value(`${out.name}/kept_axes`, out.dtype, wideShape);
      const countValue = new Value(`${out.name}/count`, out.dtype, []);
      initializers.set(countValue, tensor(out.dtype, [], [count]));
      nodes.push(
        new Node('ReduceMean', `${node.name}/mean`, [x], [mean], { axes: attr.ints(axes), keepdims: attr.int(1) }),
        new Node('Mul', `${node.name}/sum`, [mean, countValue], [wide], {}),
      );
      if (!keepdims) kept.set(out, wide);
      continue;
    }
    const wideInput = node.inputs.find((v) => v && kept.has(v));
    const others = node.inputs.filter((v) => v && !kept.has(v));
    if (ELEMENTWISE.has(node.op) && wideInput && others.every((v) => isScalarConstant(graph, v))) {
      const inputs = node.inputs.map((v) => (v && kept.get(v)) ?? v);
      const [out] = node.outputs;
      const wide = new Value(`${out.name}/kept_axes`, out.dtype, kept.get(wideInput)!.shape);
      nodes.push(new Node(node.op, node.name, inputs, [wide], node.attributes, node.domain));
      kept.set(out, wide);
      continue;
    }
    const inputs = node.inputs.map(restore);
    nodes.push(inputs.every((v, i) => v === node.inputs[i]) ? node : new Node(node.op, node.name, inputs, node.outputs, node.attributes, node.domain));
  }
  const outputs = graph.outputs.map((io) => ({ ...io, value: restore(io.value) ?? io.value }));
  // A graph output read straight from a kept value is now a Reshape's output under another
  // name: an Identity gives it its name back.
  const named = outputs.map((io, i) => {
    const original = graph.outputs[i].value;
    if (io.value === original) return io;
    nodes.push(new Node('Identity', `${original.name}/output`, [io.value], [original], {}));
    return { ...io, value: original };
  });
  return toposort({ ...graph, nodes, initializers, outputs: named });
}

/** Constants of shape [1, ...] read by Add, Sub, Mul or Div, without the leading 1 (the same
 * numpy broadcast; see the file comment). */
export function constantsWithoutBatchAxis(graph: Graph): Graph {
  const initializers = new Map<Value, Tensor>(graph.initializers);
  const dropped = new Map<Value, Value>();
  for (const node of graph.nodes) {
    if (!ELEMENTWISE.has(node.op)) continue;
    for (const v of node.inputs) {
      const t = v && graph.initializers.get(v);
      if (!v || !t || dropped.has(v) || t.shape.length < 2 || t.shape[0] !== 1 || size(t.shape) === 1) continue;
      const shape = t.shape.slice(1);
      const narrow = new Value(`${v.name}/no_batch_axis`, v.dtype, shape);
      initializers.set(narrow, { ...t, shape });
      dropped.set(v, narrow);
    }
  }
  if (dropped.size === 0) return graph;
  const nodes = graph.nodes.map((node) => {
    if (!ELEMENTWISE.has(node.op) || !node.inputs.some((v) => v && dropped.has(v))) return node;
    return new Node(node.op, node.name, node.inputs.map((v) => (v && dropped.get(v)) ?? v), node.outputs, node.attributes, node.domain);
  });
  return { ...graph, nodes, initializers };
}

/**
 * The class-conditional top prior, h + Reshape(Gemm(y, W, b), [0, C, 1, 1]) with h a constant
 * [1, C, H, W], as one Gemm whose rows are W's repeated per pixel and whose bias is b + h:
 * Reshape(Gemm(y, W', b'), [0, C, H, W]). Same sums, in another order.
 */
export function classPriorPerPixel(graph: Graph): Graph {
  const producer = new Map(graph.nodes.flatMap((n) => n.outputs.map((v) => [v, n] as const)));
  const initializers = new Map<Value, Tensor>(graph.initializers);
  const replaced = new Map<Node, Node[]>();
  for (const add of graph.nodes) {
    if (add.op !== 'Add') continue;
    const h = add.inputs.find((v) => v && graph.initializers.get(v)?.shape.length === 4);
    const reshape = producer.get(add.inputs.find((v) => v !== h)!);
    const gemm = reshape?.op === 'Reshape' ? producer.get(reshape.inputs[0]!) : undefined;
    if (!h || !reshape || gemm?.op !== 'Gemm' || gemm.int('transB') !== 1 || gemm.int('transA') === 1) continue;
    const [y, wValue, bValue] = gemm.inputs;
    const hT = graph.initializers.get(h)!;
    const wT = wValue && graph.initializers.get(wValue);
    const bT = bValue && graph.initializers.get(bValue);
    const [, C, H, W] = hT.shape;
    if (!y || !wT || !bT || hT.shape[0] !== 1 || wT.shape[0] !== C || H * W === 1) continue;
    const alpha = gemm.attributes.alpha?.kind === 'float' ? gemm.attributes.alpha.value : 1;
    const beta = gemm.attributes.beta?.kind === 'float' ? gemm.attributes.beta.value : 1;
    const K = wT.shape[1];
    const P = H * W;
    const weight = new Float64Array(C * P * K);
    const bias = new Float64Array(C * P);
    for (let c = 0; c < C; c++) {
      for (let p = 0; p < P; p++) {
        for (let k = 0; k < K; k++) weight[(c * P + p) * K + k] = alpha * wT.data[c * K + k];
        bias[c * P + p] = beta * bT.data[c] + hT.data[c * P + p];
      }
    }
    const [out] = add.outputs;
    const wNew = new Value(`${wValue!.name}/per_pixel`, wValue!.dtype, [C * P, K]);
    const bNew = new Value(`${bValue!.name}/per_pixel`, bValue!.dtype, [C * P]);
    const flat = new Value(`${gemm.outputs[0].name}/per_pixel`, out.dtype, [y.shape![0], C * P]);
    const shape = new Value(`${out.name}/per_pixel_shape`, 'int64', [4]);
    initializers.set(wNew, tensor(wValue!.dtype, [C * P, K], weight));
    initializers.set(bNew, tensor(bValue!.dtype, [C * P], bias));
    initializers.set(shape, tensor('int64', [4], [0, C, H, W]));
    replaced.set(add, [
      new Node('Gemm', `${gemm.name}/per_pixel`, [y, wNew, bNew], [flat], { transB: attr.int(1) }),
      new Node('Reshape', `${reshape.name}/per_pixel`, [flat, shape], [out], {}),
    ]);
  }
  if (replaced.size === 0) return graph;
  // The old Gemm and Reshape are unread now; cleanup drops them.
  return { ...graph, nodes: graph.nodes.flatMap((n) => replaced.get(n) ?? [n]), initializers };
}

/** Decode without its scalar temperature input: every Mul by it becomes its other operand.
 * The caller scales the eps inputs by the temperature instead (z = mean + sigma * (t * eps));
 * 4.6 cannot multiply by a scalar that is not a constant. */
export function withoutTemperature(graph: Graph, input = 'temperature'): Graph {
  const temperature = graph.inputs.find((io) => io.value.name === input)?.value;
  if (!temperature) return graph;
  if (temperature.rank !== 0) throw new Error(`withoutTemperature: ${input} is per-example ([${temperature.shape!.join(', ')}]); only a scalar temperature can move into eps`);
  const replaced = new Map<Value, Value>();
  const nodes: Node[] = [];
  for (const node of graph.nodes) {
    const inputs = node.inputs.map((v) => (v && replaced.get(v)) ?? v);
    if (node.op === 'Mul' && inputs.includes(temperature)) {
      replaced.set(node.outputs[0], inputs.find((v) => v !== temperature)!);
      continue;
    }
    if (inputs.includes(temperature)) throw new Error(`withoutTemperature: ${node.name} (${node.op}) reads ${input} other than by a Mul`);
    nodes.push(inputs.every((v, i) => v === node.inputs[i]) ? node : new Node(node.op, node.name, inputs, node.outputs, node.attributes, node.domain));
  }
  return { ...graph, nodes, inputs: graph.inputs.filter((io) => io.value !== temperature) };
}

/** The ops of the --target opencv graphs, each one that 4.6 was seen to run. */
export const OPENCV_OPS: ReadonlySet<string> = new Set([
  'Add', 'Concat', 'Conv', 'DepthToSpace', 'Div', 'Exp', 'Gemm', 'Identity', 'Log', 'Mul', 'Neg', 'Pad', 'ReduceMean',
  'Relu', 'Reshape', 'Sigmoid', 'Softplus', 'Split', 'Sub',
]);

/** Throws, naming the first node of each op that OPENCV_OPS lacks, and a symbolic input. */
export function checkOpencvForms(graph: Graph): Graph {
  const unsupported = new Map<string, string>();
  for (const n of graph.nodes) if (!OPENCV_OPS.has(n.op) && !unsupported.has(n.op)) unsupported.set(n.op, n.name);
  if (unsupported.size) {
    const list = [...unsupported].map(([o, name]) => `${o} (${name})`).join(', ');
    throw new Error(`graph ${graph.name} has ops that OpenCV 4.6 cannot run: ${list}`);
  }
  const symbolic = graph.inputs.find((io) => io.value.shape?.some((d) => typeof d !== 'number'));
  if (symbolic) throw new Error(`OpenCV 4.6 needs static input shapes; ${symbolic.value} is not (export with a batch size)`);
  return graph;
}
