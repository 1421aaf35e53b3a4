// Zero input channels for the convolutions that ONNX Runtime's WebGPU provider computes wrongly
// in its default layout (NHWC), so that an exported model is right whatever options its user
// passes (the project's own sessions ask for NCHW, where they are right: runtime/session-options.ts).
//
// Which convolutions: test/runtime/webgpu-conv-sweep.test.ts runs every input channel count
// 1..64 with the kernels the graphs use, and fails when the provider is wrong on one that
// `webgpuMiscomputes` does not name. With ONNX Runtime 1.30 these are the kernels larger than
// 1x1 (3x3, and 2x2 of stride 2) whose input has a multiple of 3 channels that is not a multiple
// of 4, except 3 itself: 6, 9, 15, 18, 21, 27, ... The first coupling network of every RGB Glow
// reads 6 (3 channels squeezed to 12, halved).
//
// The padded convolution reads extra input channels of zeros with zero weights: the same sums,
// plus zero terms. Its input gets one Pad on the channel axis (shared by the convolutions that
// read the same value); a weight that only this Conv reads is stored padded under its own name,
// any other weight (a graph input in training graphs) gets a Pad too.

import { Graph, GraphBuilder, Node, Tensor, Value } from '../graph.js';
import * as op from '../ops.js';
import { size } from '../../math/tensor.js';

/** Whether ONNX Runtime's WebGPU provider (1.30, NHWC layout) gets an ungrouped Conv wrong. */
export function webgpuMiscomputes(inputChannels: number, kernel: readonly [number, number]): boolean {
  return kernel[0] * kernel[1] > 1 && inputChannels > 3 && inputChannels % 3 === 0 && inputChannels % 4 !== 0;
}

/** The channel count a Conv's input is padded to: the smallest from `inputChannels` up that
 * the provider gets right. */
export function paddedChannels(inputChannels: number, kernel: readonly [number, number]): number {
  let c = inputChannels;
  while (webgpuMiscomputes(c, kernel)) c++;
  return c;
}

/** Pads the input channels of every Conv that webgpuMiscomputes names; other graphs are
 * returned as they are. */
export function padConvChannels(graph: Graph): Graph {
  const readers = new Map<Value, number>();
  for (const n of graph.nodes) for (const v of n.inputs) if (v) readers.set(v, (readers.get(v) ?? 0) + 1);
  for (const io of graph.outputs) readers.set(io.value, (readers.get(io.value) ?? 0) + 1);

  const g = GraphBuilder.extend(graph);
  const paddedWeights = new Map<Value, [Value, Tensor]>();
  const paddedInputs = new Map<string, Value>();
  const replaced = new Map<Node, Node>();
  for (const node of graph.nodes) {
    if (node.op !== 'Conv' || node.domain !== '') continue;
    const group = node.attributes.group;
    if (group && !(group.kind === 'int' && group.value === 1)) continue;
    const [x, w] = node.inputs;
    const channels = x?.shape?.[1];
    const ws = w?.shape;
    if (!x || !w || typeof channels !== 'number' || !ws || ws.some((d) => typeof d !== 'number')) continue;
    const kernel = (node.ints('kernel_shape') ?? ws.slice(2)) as [number, number];
    if (!webgpuMiscomputes(channels, kernel)) continue;
    const extra = paddedChannels(channels, kernel) - channels;
    const channelPads = (rank: number) => Array.from({ length: 2 * rank }, (_, i) => (i === rank + 1 ? extra : 0));

    const key = `${x.name}:${extra}`;
    let xPadded = paddedInputs.get(key);
    if (!xPadded) {
      xPadded = g.scope(`${x.name}/webgpu_channels`, () => op.pad(g, x, channelPads(x.rank)));
      paddedInputs.set(key, xPadded);
    }
    const stored = graph.initializers.get(w);
    let wPadded: Value;
    if (stored && readers.get(w) === 1) {
      wPadded = new Value(w.name, w.dtype, [ws[0], channels + extra, ...ws.slice(2)]);
      paddedWeights.set(w, [wPadded, padAxis1(stored, extra)]);
    } else {
      wPadded = g.scope(`${w.name}/webgpu_channels`, () => op.pad(g, w, channelPads(ws.length)));
    }
    replaced.set(node, new Node(node.op, node.name, [xPadded, wPadded, ...node.inputs.slice(2)], node.outputs, node.attributes, node.domain));
  }
  if (replaced.size === 0) return graph;

  // The new Pads go right before the first Conv that reads them.
  const built = g.build(graph.docString);
  const added = built.nodes.slice(graph.nodes.length);
  const producer = new Map(added.flatMap((n) => n.outputs.map((v) => [v, n] as const)));
  const emitted = new Set<Node>();
  const nodes: Node[] = [];
  for (const node of graph.nodes) {
    const conv = replaced.get(node);
    if (conv) {
      for (const v of conv.inputs) {
        const pad = v && producer.get(v);
        if (pad && !emitted.has(pad)) {
          emitted.add(pad);
          nodes.push(pad);
        }
      }
    }
    nodes.push(conv ?? node);
  }
  // Padded weights keep their place among the initializers; the Pads' constants come last.
  const initializers = new Map<Value, Tensor>();
  for (const [v, t] of built.initializers) {
    const padded = paddedWeights.get(v);
    initializers.set(...(padded ?? [v, t]));
  }
  return { ...graph, nodes, initializers };
}

/** A [M, C, ...] tensor with `extra` channels of zeros after its C. */
function padAxis1(t: Tensor, extra: number): Tensor {
  const [M, C, ...rest] = t.shape;
  const inner = size(rest);
  const shape = [M, C + extra, ...rest];
  const data = new (t.data instanceof Float32Array ? Float32Array : Float64Array)(size(shape));
  for (let m = 0; m < M; m++) data.set(t.data.subarray(m * C * inner, (m + 1) * C * inner), m * (C + extra) * inner);
  return { ...t, shape, data };
}
