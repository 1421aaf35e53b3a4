// The parameterised sub-networks that are not flows themselves: the coupling network
// NN = conv3x3 + ActNorm + ReLU, conv1x1 + ActNorm + ReLU, Conv2dZeros, and Conv2dZeros alone
// (the split prior). A Conv2dZeros pads its input with the config's zerosPadValue: zeros, or
// ones as rosinality's ZeroConv2d does (an explicit Pad, then the conv without padding). Each comes in two forms returning the same values:
// - literal: the checkpoint tensors used as they are, Exp on weights included (training,
//   --no-fold);
// - folded: ActNorms, exp(3*logs) and the +2 of the affine scale folded into conv weights and
//   biases on the host, in float64, with output channels reordered so that the halves a caller
//   needs are contiguous.

import { GraphBuilder, tensor, Value } from '../../builder/graph.js';
import * as op from '../../builder/ops.js';
import { spectralVectors } from '../names.js';
import * as actnorm from './actnorm.js';
import { ActNormSource, HostParams, hostParam, ParamSource, scalarConstant, weight } from './common.js';
import { size } from '../../math/tensor.js';

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

// ---------------------------------------------------------------- spectral normalisation
//
// With config.lipschitz c, each coupling conv's effective weight W (its weight times the
// per-output-channel gain after it: the ActNorm's exp(logs), the Conv2dZeros's exp(3 logs);
// biases do not change a Lipschitz constant) becomes W / max(1, sigma / c), as in Behrmann et
// al.'s invertible ResNets: weights already within the bound are left alone, so the
// zero-initialised Conv2dZeros (sigma = 0) is too. sigma = u^T W v, W as a [out, in*kh*kw]
// matrix, with u, v the power-iteration vectors of the model's state: the train step computes
// sigma from the vectors it is given (no gradient reaches them) and outputs the vectors of one
// more iteration on the same W for the next step; export folds the same u^T W v in float64. The
// matrix norm bounds a 3x3 conv's operator norm to within a factor 3, and a network of three
// such convs and ReLUs is then Lipschitz with a constant of at most 9 c^3.

/** The spectral normalisation of a network: the bound, and (train step) where the vectors of
 * the next iteration go. */
export interface Spectral {
  lipschitz: number;
  onUpdate?: (name: string, value: Value) => void;
}

/** Tiny norms keep the old vector: a zero weight (a fresh Conv2dZeros) has no direction. */
const SPECTRAL_TINY = 1e-12;

function unitOr(g: GraphBuilder, x: Value, old: Value): Value {
  const n = old.staticShape()[0];
  const flat = op.reshape(g, x, [n]);
  const norm = op.sqrt(g, op.reduceSum(g, op.mul(g, flat, flat), [0], false));
  return op.where(g, op.less(g, scalarConstant(g, SPECTRAL_TINY, 'tiny'), norm), op.div(g, flat, norm), old);
}

function normalizedWeight(g: GraphBuilder, w: Value, block: string, src: ParamSource, spectral: Spectral): Value {
  return g.scope('spectral', () => {
    const [O, ...rest] = w.staticShape();
    const n = size(rest);
    const names = spectralVectors(block);
    const [u, v] = [src(names.u), src(names.v)];
    const matrix = op.reshape(g, w, [O, n]);
    const sigma = op.reduceSum(g, op.mul(g, op.matmul(g, matrix, op.reshape(g, v, [n, 1])), op.reshape(g, u, [O, 1])), [0, 1], false);
    const c = scalarConstant(g, spectral.lipschitz, 'lipschitz');
    // c / max(sigma, c), the max taken by Where: where(sigma > c, c / sigma, 1) would send its
    // gradient through c / sigma also where it is not taken, inf * 0 at a zero weight's sigma.
    const factor = op.div(g, c, op.where(g, op.less(g, c, sigma), sigma, c));
    if (spectral.onUpdate) {
      const nextV = unitOr(g, op.matmul(g, op.reshape(g, u, [1, O]), matrix), v);
      const nextU = unitOr(g, op.matmul(g, matrix, op.reshape(g, nextV, [n, 1])), u);
      spectral.onUpdate(names.u, nextU);
      spectral.onUpdate(names.v, nextV);
    }
    return op.mul(g, w, factor);
  });
}

/** sigma = u^T W v for a [rows, cols] weight in float64. */
export function spectralSigma(w: Float64Array, u: ArrayLike<number>, v: ArrayLike<number>): number {
  const rows = u.length;
  const cols = v.length;
  let sigma = 0;
  for (let o = 0; o < rows; o++) {
    let acc = 0;
    for (let k = 0; k < cols; k++) acc += w[o * cols + k] * v[k];
    sigma += u[o] * acc;
  }
  return sigma;
}

/** 1 / max(1, sigma / c), as the train step computes it. */
export function spectralFactor(w: Float64Array, u: ArrayLike<number>, v: ArrayLike<number>, lipschitz: number): number {
  const sigma = spectralSigma(w, u, v);
  return sigma > lipschitz ? lipschitz / sigma : 1;
}

/** `iterations` power iterations on a [rows, cols] weight in float64, as the train step does
 * them (v from u, then u from v; a vector whose image is tiny stays as it was). */
export function powerIterate(w: Float64Array, u: Float64Array, v: Float64Array, iterations: number): { u: Float64Array; v: Float64Array } {
  const rows = u.length;
  const cols = v.length;
  const unit = (x: Float64Array, old: Float64Array) => {
    const norm = Math.sqrt(x.reduce((a, b) => a + b * b, 0));
    return norm > SPECTRAL_TINY ? x.map((e) => e / norm) : old;
  };
  for (let it = 0; it < iterations; it++) {
    const wu = new Float64Array(cols);
    for (let o = 0; o < rows; o++) for (let k = 0; k < cols; k++) wu[k] += w[o * cols + k] * u[o];
    v = unit(wu, v);
    const wv = new Float64Array(rows);
    for (let o = 0; o < rows; o++) for (let k = 0; k < cols; k++) wv[o] += w[o * cols + k] * v[k];
    u = unit(wv, u);
  }
  return { u, v };
}

/** The effective weight (see above) of a coupling network's conv in float64, output channels
 * in checkpoint order: what sigma is taken of. */
export function effectiveWeight(params: HostParams, block: string): Float64Array {
  if (block.endsWith('.block.4')) {
    const f = foldZerosConv(hostParam(params, `${block}.conv.weight`), hostParam(params, `${block}.conv.bias`).data, hostParam(params, `${block}.logs`).data, { split: 'whole' });
    return f.weight;
  }
  return foldConvActNorm(params, block).weight;
}

function hostSpectralFactor(params: HostParams, block: string, lipschitz: number): number {
  const names = spectralVectors(block);
  return spectralFactor(effectiveWeight(params, block), hostParam(params, names.u).data, hostParam(params, names.v).data, lipschitz);
}

// ---------------------------------------------------------------- literal

function literalConvActNorm(
  g: GraphBuilder, src: ParamSource, actnorms: ActNormSource, prefix: string, x: Value, kernel: number, foldActNorm: boolean, spectral?: Spectral,
): Value {
  const weight = src(`${prefix}.conv.weight`);
  if (foldActNorm || spectral) {
    // (conv(x, W) + b) * s = conv(x, W * s) + b * s: the scaling moves onto the weights (a few
    // thousand values instead of every pixel, in the forward and the backward pass), and ONNX
    // Runtime fuses the Relu into the Conv. Needs the ActNorm's own tensors, not statistics of
    // the conv's output (data-dependent init).
    const { bias, logs } = actnorms(g, `${prefix}.actnorm`, x);
    const M = weight.staticShape()[0];
    const scale = op.reshape(g, op.exp(g, logs), [M]);
    let scaled = op.mul(g, weight, op.reshape(g, scale, [M, 1, 1, 1]));
    if (spectral) scaled = normalizedWeight(g, scaled, prefix, src, spectral);
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

/** Conv2dZeros: conv(x) * exp(3 * logs), with `convPrefix` holding weight/bias. Spectrally
 * normalised, the gain moves onto the weight and bias first, as the effective weight is what
 * is normalised. */
function literalZerosConv(g: GraphBuilder, src: ParamSource, convPrefix: string, logsName: string, x: Value, layout: OutputLayout, spectral?: Spectral): Value[] {
  const gainOf = (logs: Value) => op.exp(g, op.mul(g, logs, scalarConstant(g, LOGSCALE_FACTOR, 'logscale_factor')));
  let scaled: Value;
  let logs: Value;
  if (spectral) {
    logs = src(logsName);
    const gain = gainOf(logs);
    const M = logs.staticShape()[0];
    const w = normalizedWeight(g, op.mul(g, src(`${convPrefix}.weight`), op.reshape(g, gain, [M, 1, 1, 1])), convPrefix.replace(/\.conv$/, ''), src, spectral);
    scaled = zerosPaddedConv(g, x, w, op.mul(g, src(`${convPrefix}.bias`), op.reshape(g, gain, [M])), layout.padValue);
  } else {
    const h = zerosPaddedConv(g, x, src(`${convPrefix}.weight`), src(`${convPrefix}.bias`), layout.padValue);
    logs = src(logsName);
    scaled = op.mul(g, h, gainOf(logs));
  }
  if (layout.split === 'whole') return [scaled];
  const n = logs.staticShape()[0];
  const [evens, odds] = [0, 1].map((parity) => op.gather(g, scaled, Array.from({ length: n / 2 }, (_, i) => 2 * i + parity), 1));
  return [evens, layout.oddOffset ? op.add(g, odds, scalarConstant(g, layout.oddOffset, 'offset')) : odds];
}

/** `foldActNorms`: the ActNorms as scaled conv weights and biases, in the graph (training);
 * always so with `spectral`, which normalises those scaled weights. */
export function literalCouplingNetwork(src: ParamSource, actnorms: ActNormSource, prefix: string, layout: OutputLayout, foldActNorms = false, spectral?: Spectral): Network {
  return (g, z) => g.scope('nn', () => {
    const h0 = literalConvActNorm(g, src, actnorms, `${prefix}.block.0`, z, 3, foldActNorms, spectral);
    const h1 = literalConvActNorm(g, src, actnorms, `${prefix}.block.2`, h0, 1, foldActNorms, spectral);
    return literalZerosConv(g, src, `${prefix}.block.4.conv`, `${prefix}.block.4.logs`, h1, layout, spectral);
  });
}

/** With `constantScale` (config.constantSplitScale) the weights into the log-scale channels
 * (the odd ones: 'cross') are multiplied by zero in the graph, so that no gradient moves them
 * and stored values there, as a model fine-tuned into the option has them, are ignored. */
export function literalPriorNetwork(src: ParamSource, prefix: string, padValue = 0, constantScale = false): Network {
  const conv = `${prefix}.conv.conv`;
  return (g, z) => g.scope('prior', () => {
    const masked: ParamSource = (name) => {
      if (!constantScale || name !== `${conv}.weight`) return src(name);
      const w = src(name);
      const M = w.staticShape()[0];
      return op.mul(g, w, g.constant(tensor('float32', [M, 1, 1, 1], meanChannels(M)), 'mean_channels'));
    };
    return literalZerosConv(g, masked, conv, `${prefix}.conv.logs`, z, { split: 'cross', padValue });
  });
}

/** 1 for a split prior conv's mean channels (even), 0 for its log-scale channels (odd). */
function meanChannels(n: number): Float64Array {
  return Float64Array.from({ length: n }, (_, o) => (o % 2 === 0 ? 1 : 0));
}

// ---------------------------------------------------------------- folded

interface FoldedConv {
  shape: number[];
  weight: Float64Array;
  bias: Float64Array;
}

/** conv (no bias) followed by ActNorm: (conv(x) + b) * s = conv with weights * s and bias b * s. */
function foldConvActNorm(params: HostParams, prefix: string, lipschitz?: number): FoldedConv {
  const w = hostParam(params, `${prefix}.conv.weight`);
  const b = hostParam(params, `${prefix}.actnorm.bias`).data;
  const s = hostParam(params, `${prefix}.actnorm.logs`).data.map(Math.exp);
  const perOut = w.data.length / s.length;
  const weight = w.data.map((v, k) => v * s[Math.floor(k / perOut)]);
  if (lipschitz !== undefined) {
    // `weight` is already the effective weight sigma is taken of.
    const { u, v } = spectralVectors(prefix);
    const factor = spectralFactor(weight, hostParam(params, u).data, hostParam(params, v).data, lipschitz);
    weight.forEach((v, k) => (weight[k] = v * factor));
  }
  return { shape: w.shape, weight, bias: b.map((v, o) => v * s[o]) };
}

/** Conv2dZeros folded: weights and bias times exp(3 * logs), output channels in the layout's
 * order, the odd offset added to the odd half's bias. */
export function foldZerosConv(weightT: { shape: number[]; data: Float64Array }, bias: Float64Array, logs: Float64Array, layout: OutputLayout, weightFactor = 1): FoldedConv {
  const n = bias.length;
  const perOut = weightT.data.length / n;
  const order = layout.split === 'cross' ? crossOrder(n) : Array.from({ length: n }, (_, i) => i);
  const w = new Float64Array(weightT.data.length);
  const b = new Float64Array(n);
  order.forEach((src, dst) => {
    const e = Math.exp(LOGSCALE_FACTOR * logs[src]);
    for (let k = 0; k < perOut; k++) w[dst * perOut + k] = weightT.data[src * perOut + k] * e;
    if (weightFactor !== 1) for (let k = 0; k < perOut; k++) w[dst * perOut + k] *= weightFactor;
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

export function foldedCouplingNetwork(params: HostParams, prefix: string, layout: OutputLayout, lipschitz?: number): Network {
  // Folded when emitted, not when the network is made: every step's network is made before the
  // first is emitted, and holding all folded float64 weights at once would double the memory of
  // an export (the graph keeps its own copy).
  return (g, z) => g.scope('nn', () => {
    const h0 = op.relu(g, emitConv(g, z, foldConvActNorm(params, `${prefix}.block.0`, lipschitz), 'conv0'));
    const h1 = op.relu(g, emitConv(g, h0, foldConvActNorm(params, `${prefix}.block.2`, lipschitz), 'conv1'));
    const c2 = foldZerosConv(hostParam(params, `${prefix}.block.4.conv.weight`), hostParam(params, `${prefix}.block.4.conv.bias`).data,
      hostParam(params, `${prefix}.block.4.logs`).data, layout, lipschitz === undefined ? 1 : hostSpectralFactor(params, `${prefix}.block.4`, lipschitz));
    return emitLayout(g, emitConv(g, h1, c2, 'conv2', layout.padValue), layout);
  });
}

export function foldedPriorNetwork(params: HostParams, prefix: string, padValue = 0, constantScale = false): Network {
  const weight = hostParam(params, `${prefix}.conv.conv.weight`);
  const perOut = weight.data.length / weight.shape[0];
  const mask = meanChannels(weight.shape[0]);
  const kept = constantScale ? { shape: weight.shape, data: weight.data.map((v, k) => v * mask[Math.floor(k / perOut)]) } : weight;
  const f = foldZerosConv(kept, hostParam(params, `${prefix}.conv.conv.bias`).data, hostParam(params, `${prefix}.conv.logs`).data, { split: 'cross' });
  return (g, z) => g.scope('prior', () => emitLayout(g, emitConv(g, z, f, 'conv', padValue), { split: 'cross' }));
}
