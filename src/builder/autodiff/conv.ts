// The gradient of Conv: the input gradient as a transposed convolution (or a convolution with
// the flipped kernel), the weight gradient by the strategy ONNX Runtime runs fastest for the
// convolution's shape (GEMMs over shifted copies for the plain case, a convolution otherwise).

import * as op from '../ops.js';
import { GraphBuilder, Value } from '../graph.js';
import { GradientRule, RuleContext, staticDim, UnsupportedGradientError } from './context.js';

type ConvAttributes = Required<op.ConvOptions>;

function supportedConvAttributes(ctx: RuleContext): ConvAttributes {
  const { node } = ctx;
  const autoPad = node.attributes.auto_pad;
  if (autoPad && !(autoPad.kind === 'string' && autoPad.value === 'NOTSET')) {
    throw new UnsupportedGradientError(node, 'auto_pad is not supported; give explicit pads');
  }
  if (node.inputs[0]!.rank !== 4) throw new UnsupportedGradientError(node, 'only 2-D convolution (NCHW) is supported');
  return op.convAttributes(node);
}

/** Fewer channels than ONNX Runtime CPU's smallest NCHWc block. */
const NARROW_CHANNELS = 8;

/**
 * Y = Conv(X, W). Rows of X past the last window (when (H + pads - span) is not a multiple of
 * the stride) get no gradient: `excess` counts them per spatial axis.
 */
export const conv: GradientRule = (ctx) => {
  const { g, node, needs } = ctx;
  const [dy] = ctx.dy;
  const [x, w] = node.inputs as Value[];
  const a = supportedConvAttributes(ctx);
  const [M, Cg, kH, kW] = w.staticShape();
  const [H, W] = [staticDim(ctx, x, 2), staticDim(ctx, x, 3)];
  const [oH, oW] = [staticDim(ctx, dy, 2), staticDim(ctx, dy, 3)];
  const excess = [
    H + a.pads[0] + a.pads[2] - a.dilations[0] * (kH - 1) - 1 - a.strides[0] * (oH - 1),
    W + a.pads[1] + a.pads[3] - a.dilations[1] * (kW - 1) - 1 - a.strides[1] * (oW - 1),
  ] as [number, number];

  const plain = a.group === 1 && [...a.strides, ...a.dilations].every((v) => v === 1);
  // dX: the transposed convolution with the same weight and attributes, output_padding giving
  // back the excess rows, so that the result has exactly X's shape. For a plain convolution with
  // 8 or more input channels it is the convolution of dY with the flipped, channel-swapped
  // kernel, which ONNX Runtime runs faster than its ConvTranspose. With fewer, that convolution
  // would write fewer channels than ONNX Runtime's blocked layout pads them to (8 or 16), and
  // ConvTranspose wins (measured on a Glow train step: the coupling networks' first conv).
  let dx: Value | undefined;
  if (needs[0] && plain && Cg >= NARROW_CHANNELS) {
    const flipped = op.slice(g, op.transpose(g, w, [1, 0, 2, 3]), [-1, -1], [-kH - 1, -kW - 1], [2, 3], [-1, -1]);
    const pads = [kH - 1 - a.pads[0], kW - 1 - a.pads[1], kH - 1 - a.pads[2], kW - 1 - a.pads[3]] as ConvAttributes['pads'];
    dx = op.conv(g, dy, flipped, undefined, { pads });
  } else if (needs[0]) {
    dx = op.convTranspose(g, dy, w, undefined, { ...a, outputPadding: excess });
  }

  // dW[m, c, p, q] = sum_{n,i,j} dY[n, m, i, j] X[n, c', i*s - pad + p*d, ...].
  let dw: Value | undefined;
  if (needs[1] && plain) {
    dw = weightGradientByGemm(g, x, dy, [M, Cg, kH, kW], a.pads, excess);
  } else if (needs[1]) {
    // General case: a convolution of X (channels <- batch, per group) by dY (kernel = output
    // plane), strides and dilations swapped. ONNX Runtime runs such huge kernels slowly.
    const G = a.group;
    const Mg = M / G;
    const xT = op.reshape(g, op.transpose(g, op.reshape(g, x, [0, G, Cg, H, W]), [2, 1, 0, 3, 4]), [Cg, -1, H, W]);
    const dyT = op.reshape(g, op.transpose(g, op.reshape(g, dy, [0, G, Mg, oH, oW]), [1, 2, 0, 3, 4]), [M, -1, oH, oW]);
    const pads: ConvAttributes['pads'] = [a.pads[0], a.pads[1], Math.max(0, a.pads[2] - excess[0]), Math.max(0, a.pads[3] - excess[1])];
    let out = op.conv(g, xT, dyT, undefined, { pads, strides: a.dilations, dilations: a.strides, group: G }); // [Cg, M, >=kH, >=kW]
    if (out.shape![2] !== kH || out.shape![3] !== kW) out = op.slice(g, out, [0, 0], [kH, kW], [2, 3]);
    dw = op.transpose(g, out, [1, 0, 2, 3]);
  }
  const db = needs[2] ? op.reduceSum(g, dy, [0, 2, 3], false) : undefined;
  return [dx, dw, db];
};

/**
 * The weight gradient of a stride-1, undilated, ungrouped convolution as kH*kW GEMMs, one per
 * kernel offset: dW[:, :, p, q] = dY [M, N*oH*oW] x X shifted by (p, q) [N*oH*oW, C]. Same
 * arithmetic as the convolution formulation, but ONNX Runtime runs it on its matrix multiply
 * (much faster on the coupling networks' convolutions, which dominated training steps).
 * Each shift is a copy (a Slice), so the smaller of X and dY is the one shifted: a coupling
 * network's last convolution reads 64+ channels and writes a few, and copying X nine times there
 * was a large part of a training step.
 */
function weightGradientByGemm(
  g: GraphBuilder, x: Value, dy: Value, kernel: number[], pads: ConvAttributes['pads'], excess: [number, number],
): Value {
  const [M, C] = kernel;
  const [H, W] = [x.shape![2] as number, x.shape![3] as number];
  const [oH, oW] = [dy.shape![2] as number, dy.shape![3] as number];
  return M * oH * oW < C * H * W ? shiftingGradients(g, x, dy, kernel, pads) : shiftingInputs(g, x, dy, kernel, pads, excess);
}

/** dW[:, :, p, q] = X shifted by (p, q), then multiplied by dY: kH*kW copies of X. */
function shiftingInputs(
  g: GraphBuilder, x: Value, dy: Value, [M, C, kH, kW]: number[], pads: ConvAttributes['pads'], excess: [number, number],
): Value {
  const [oH, oW] = [dy.shape![2] as number, dy.shape![3] as number];
  // Rows past the last window never reach the output: drop them instead of padding them.
  const padded = pads.some((p) => p > 0) ? op.padSpatial(g, x, [pads[0], pads[1], Math.max(0, pads[2] - excess[0]), Math.max(0, pads[3] - excess[1])]) : x;
  // Channels first, once, so that every shifted slice is already a [C, N*oH*oW] matrix.
  const channelsFirst = op.transpose(g, padded, [1, 0, 2, 3]);
  const grads = op.reshape(g, op.transpose(g, op.reshape(g, dy, [0, M, oH * oW]), [1, 0, 2]), [M, -1]);
  const shifts: Value[] = [];
  for (let p = 0; p < kH; p++) {
    for (let q = 0; q < kW; q++) shifts.push(op.reshape(g, op.slice(g, channelsFirst, [p, q], [p + oH, q + oW], [2, 3]), [C, -1]));
  }
  // One GEMM over the stacked shifts reads dY once, not once per kernel offset.
  const stacked = shifts.length === 1 ? shifts[0] : op.concat(g, shifts, 0); // [kH*kW*C, N*oH*oW]
  const product = op.matmul(g, grads, op.transpose(g, stacked, [1, 0])); // [M, kH*kW*C]
  return op.reshape(g, op.transpose(g, op.reshape(g, product, [M, kH * kW, C]), [0, 2, 1]), [M, C, kH, kW]);
}

/**
 * The same sums with dY shifted the other way over an unpadded X: with i = u - p + pad,
 * dW[m, c, p, q] = sum_{n,u,v} dY[n, m, u - p + padTop, v - q + padLeft] X[n, c, u, v], dY zero
 * outside its plane. dY padded by the kernel size once; kH*kW copies of dY, one transpose of X.
 * (Stride 1, so no rows are left over.)
 */
function shiftingGradients(g: GraphBuilder, x: Value, dy: Value, [M, C, kH, kW]: number[], pads: ConvAttributes['pads']): Value {
  const [H, W] = [x.shape![2] as number, x.shape![3] as number];
  const inputs = op.transpose(g, op.reshape(g, op.transpose(g, x, [1, 0, 2, 3]), [C, -1]), [1, 0]); // [N*H*W, C]
  const grads = op.transpose(g, op.padSpatial(g, dy, [kH - 1, kW - 1, kH - 1, kW - 1]), [1, 0, 2, 3]); // [M, N, oH+2kH-2, oW+2kW-2]
  const shifts: Value[] = [];
  for (let p = 0; p < kH; p++) {
    for (let q = 0; q < kW; q++) {
      const [top, left] = [kH - 1 - p + pads[0], kW - 1 - q + pads[1]];
      shifts.push(op.reshape(g, op.slice(g, grads, [top, left], [top + H, left + W], [2, 3]), [M, -1]));
    }
  }
  // One GEMM over the stacked shifts reads X once, not once per kernel offset.
  const stacked = shifts.length === 1 ? shifts[0] : op.concat(g, shifts, 0); // [kH*kW*M, N*H*W]
  const product = op.reshape(g, op.matmul(g, stacked, inputs), [kH * kW, M, C]);
  return op.reshape(g, op.transpose(g, product, [1, 2, 0]), [M, C, kH, kW]);
}
