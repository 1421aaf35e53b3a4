// The parameterised sub-networks that are not flows themselves: the coupling network
// NN = conv3x3 + ActNorm + ReLU, conv1x1 + ActNorm + ReLU, Conv2dZeros, and Conv2dZeros alone
// (the split prior). A Conv2dZeros pads its input with the config's zerosPadValue: zeros, or
// ones as rosinality's ZeroConv2d does (an explicit Pad, then the conv without padding). Each comes in two forms returning the same values:
// - literal: the checkpoint tensors used as they are, Exp on weights included (training,
//   --no-fold);
// - folded: ActNorms, exp(3*logs) and the +2 of the affine scale folded into conv weights and
//   biases on the host, in float64, with output channels reordered so that the halves a caller
//   needs are contiguous.

import { GraphBuilder, Value } from '../../builder/graph.js';
import * as op from '../../builder/ops.js';
import * as actnorm from './actnorm.js';
import { ActNormSource, HostParams, hostParam, ParamSource, scalarConstant, weight } from './common.js';

/** Maps z -> the tensors its caller splits the output into. */
export type Network = (g: GraphBuilder, z: Value) => Value[];

/** How a Conv2dZeros output is cut: 'cross' = [even channels, odd channels] (+ `oddOffset`
 * added to the odd half), 'whole' = one tensor; and the value its input is padded with. */
export interface OutputLayout {
  split: 'cross' | 'whole';
  oddOffset?: number;
  padValue?: number;
}

/** The zero-initialised layers (Conv2dZeros, LinearZeros) scale their output by exp(3 logs). */
export const LOGSCALE_FACTOR = 3;

/** [0, 2, 4, ..., 1, 3, 5, ...]: the even channels, then the odd ones. */
export function crossOrder(n: number): number[] {
  return [...Array.from({ length: n / 2 }, (_, i) => 2 * i), ...Array.from({ length: n / 2 }, (_, i) => 2 * i + 1)];
}

// ---------------------------------------------------------------- literal

function literalConvActNorm(
  g: GraphBuilder, src: ParamSource, actnorms: ActNormSource, prefix: string, x: Value, kernel: number, foldActNorm: boolean,
): Value {
  const weight = src(`${prefix}.conv.weight`);
  if (foldActNorm) {
    // (conv(x, W) + b) * s = conv(x, W * s) + b * s: the scaling moves onto the weights (a few
    // thousand values instead of every pixel, in the forward and the backward pass), and ONNX
    // Runtime fuses the Relu into the Conv. Needs the ActNorm's own tensors, not statistics of
    // the conv's output (data-dependent init).
    const { bias, logs } = actnorms(g, `${prefix}.actnorm`, x);
    const M = weight.staticShape()[0];
    const scale = op.reshape(g, op.exp(g, logs), [M]);
    const scaled = op.mul(g, weight, op.reshape(g, scale, [M, 1, 1, 1]));
    return op.relu(g, op.conv(g, x, scaled, op.mul(g, op.reshape(g, bias, [M]), scale), { pads: op.samePads(kernel) }));
  }
  const conv = op.conv(g, x, weight, undefined, { pads: op.samePads(kernel) });
  return op.relu(g, actnorm.encode(g, conv, actnorms(g, `${prefix}.actnorm`, conv)).out);
}

/** The 3x3 conv of a Conv2dZeros, padded with `padValue`. */
export function zerosPaddedConv(g: GraphBuilder, x: Value, weight: Value, bias: Value, padValue = 0): Value {
  if (padValue === 0) return op.conv(g, x, weight, bias, { pads: op.samePads(3) });
  return op.conv(g, op.padSpatial(g, x, op.samePads(3), padValue), weight, bias);
}

/** Conv2dZeros: conv(x) * exp(3 * logs), with `convPrefix` holding weight/bias. */
function literalZerosConv(g: GraphBuilder, src: ParamSource, convPrefix: string, logsName: string, x: Value, layout: OutputLayout): Value[] {
  const h = zerosPaddedConv(g, x, src(`${convPrefix}.weight`), src(`${convPrefix}.bias`), layout.padValue);
  const logs = src(logsName);
  const scaled = op.mul(g, h, op.exp(g, op.mul(g, logs, scalarConstant(g, LOGSCALE_FACTOR, 'logscale_factor'))));
  if (layout.split === 'whole') return [scaled];
  const n = logs.staticShape()[0];
  const [evens, odds] = [0, 1].map((parity) => op.gather(g, scaled, Array.from({ length: n / 2 }, (_, i) => 2 * i + parity), 1));
  return [evens, layout.oddOffset ? op.add(g, odds, scalarConstant(g, layout.oddOffset, 'offset')) : odds];
}

/** `foldActNorms`: the ActNorms as scaled conv weights and biases, in the graph (training). */
export function literalCouplingNetwork(src: ParamSource, actnorms: ActNormSource, prefix: string, layout: OutputLayout, foldActNorms = false): Network {
  return (g, z) => g.scope('nn', () => {
    const h0 = literalConvActNorm(g, src, actnorms, `${prefix}.block.0`, z, 3, foldActNorms);
    const h1 = literalConvActNorm(g, src, actnorms, `${prefix}.block.2`, h0, 1, foldActNorms);
    return literalZerosConv(g, src, `${prefix}.block.4.conv`, `${prefix}.block.4.logs`, h1, layout);
  });
}

export function literalPriorNetwork(src: ParamSource, prefix: string, padValue = 0): Network {
  return (g, z) => g.scope('prior', () => literalZerosConv(g, src, `${prefix}.conv.conv`, `${prefix}.conv.logs`, z, { split: 'cross', padValue }));
}

// ---------------------------------------------------------------- folded

interface FoldedConv {
  shape: number[];
  weight: Float64Array;
  bias: Float64Array;
}

/** conv (no bias) followed by ActNorm: (conv(x) + b) * s = conv with weights * s and bias b * s. */
function foldConvActNorm(params: HostParams, prefix: string): FoldedConv {
  const w = hostParam(params, `${prefix}.conv.weight`);
  const b = hostParam(params, `${prefix}.actnorm.bias`).data;
  const s = hostParam(params, `${prefix}.actnorm.logs`).data.map(Math.exp);
  const perOut = w.data.length / s.length;
  return {
    shape: w.shape,
    weight: w.data.map((v, k) => v * s[Math.floor(k / perOut)]),
    bias: b.map((v, o) => v * s[o]),
  };
}

/** Conv2dZeros folded: weights and bias times exp(3 * logs), output channels in the layout's
 * order, the odd offset added to the odd half's bias. */
export function foldZerosConv(weightT: { shape: number[]; data: Float64Array }, bias: Float64Array, logs: Float64Array, layout: OutputLayout): FoldedConv {
  const n = bias.length;
  const perOut = weightT.data.length / n;
  const order = layout.split === 'cross' ? crossOrder(n) : Array.from({ length: n }, (_, i) => i);
  const w = new Float64Array(weightT.data.length);
  const b = new Float64Array(n);
  order.forEach((src, dst) => {
    const e = Math.exp(LOGSCALE_FACTOR * logs[src]);
    for (let k = 0; k < perOut; k++) w[dst * perOut + k] = weightT.data[src * perOut + k] * e;
    b[dst] = bias[src] * e + (layout.split === 'cross' && dst >= n / 2 ? layout.oddOffset ?? 0 : 0);
  });
  return { shape: weightT.shape, weight: w, bias: b };
}

function emitConv(g: GraphBuilder, x: Value, f: FoldedConv, hint: string, padValue = 0): Value {
  const kernel = f.shape[2];
  const [w, b] = [weight(g, `${hint}.weight`, f.shape, f.weight), weight(g, `${hint}.bias`, [f.shape[0]], f.bias)];
  return kernel === 3 ? zerosPaddedConv(g, x, w, b, padValue) : op.conv(g, x, w, b, { pads: op.samePads(kernel) });
}

function emitLayout(g: GraphBuilder, h: Value, layout: OutputLayout): Value[] {
  if (layout.split === 'whole') return [h];
  const n = h.shape![1] as number;
  return op.split(g, h, [n / 2, n / 2], 1);
}

export function foldedCouplingNetwork(params: HostParams, prefix: string, layout: OutputLayout): Network {
  // Folded when emitted, not when the network is made: every step's network is made before the
  // first is emitted, and holding all folded float64 weights at once would double the memory of
  // an export (the graph keeps its own copy).
  return (g, z) => g.scope('nn', () => {
    const h0 = op.relu(g, emitConv(g, z, foldConvActNorm(params, `${prefix}.block.0`), 'conv0'));
    const h1 = op.relu(g, emitConv(g, h0, foldConvActNorm(params, `${prefix}.block.2`), 'conv1'));
    const c2 = foldZerosConv(hostParam(params, `${prefix}.block.4.conv.weight`), hostParam(params, `${prefix}.block.4.conv.bias`).data,
      hostParam(params, `${prefix}.block.4.logs`).data, layout);
    return emitLayout(g, emitConv(g, h1, c2, 'conv2', layout.padValue), layout);
  });
}

export function foldedPriorNetwork(params: HostParams, prefix: string, padValue = 0): Network {
  const f = foldZerosConv(hostParam(params, `${prefix}.conv.conv.weight`), hostParam(params, `${prefix}.conv.conv.bias`).data,
    hostParam(params, `${prefix}.conv.logs`).data, { split: 'cross' });
  return (g, z) => g.scope('prior', () => emitLayout(g, emitConv(g, z, f, 'conv', padValue), { split: 'cross' }));
}
