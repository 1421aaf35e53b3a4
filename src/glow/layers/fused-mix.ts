// ActNorm followed by the channel mix (1x1 conv or permutation), folded on the host into one
// 1x1 Conv with bias:  y = W ((x + b) * s) = (W diag(s)) x + W (b * s),
// and its inverse      x = diag(1/s) W^-1 y - b.
// Log-det H*W*(sum(logs) + log|det W|), a constant.
// After a squeeze the same map is one 2x2 convolution of stride 2 on the unsqueezed input
// (encodeSqueezed): the squeeze's Reshape-Transpose-Reshape copy disappears into the weights.

import { GraphBuilder, Value } from '../../builder/graph.js';
import * as op from '../../builder/ops.js';
import * as actnorm from './actnorm.js';
import { FlowOutput, weight } from './common.js';
import { FoldedMix } from './invconv.js';

export interface FusedMix {
  weight: Float64Array;
  bias: Float64Array;
  inverseWeight: Float64Array;
  inverseBias: Float64Array;
  logdetPerPixel: number;
}

export function fuse(bias: Float64Array, logs: Float64Array, mix: FoldedMix): FusedMix {
  const C = bias.length;
  const an = actnorm.fold(bias, logs);
  const w = new Float64Array(C * C);
  const wInv = new Float64Array(C * C);
  const fusedBias = new Float64Array(C);
  for (let o = 0; o < C; o++) {
    for (let i = 0; i < C; i++) {
      w[o * C + i] = mix.weight.data[o * C + i] * an.scale[i];
      fusedBias[o] += mix.weight.data[o * C + i] * an.shift[i];
      wInv[o * C + i] = mix.inverse.data[o * C + i] / an.scale[o];
    }
  }
  return {
    weight: w,
    bias: fusedBias,
    inverseWeight: wInv,
    inverseBias: bias.map((b) => -b),
    logdetPerPixel: an.logdetPerPixel + mix.logAbsDet,
  };
}

export function encode(g: GraphBuilder, x: Value, f: FusedMix): FlowOutput {
  return g.scope('mix', () => {
    const C = f.bias.length;
    const [, , H, W] = x.shape as number[];
    const out = op.conv(g, x, weight(g, 'weight', [C, C, 1, 1], f.weight), weight(g, 'bias', [C], f.bias));
    return { out, logdet: H * W * f.logdetPerPixel };
  });
}

/** squeeze then encode, for x [N, C/4, 2H, 2W]: squeezed channel c*4 + 2i + j is pixel (i, j)
 * of a 2x2 block of channel c, so 1x1 weight [o, c*4 + 2i + j] becomes 2x2 weight [o, c, i, j],
 * which is the same memory order. */
export function encodeSqueezed(g: GraphBuilder, x: Value, f: FusedMix): FlowOutput {
  return g.scope('mix', () => {
    const C = f.bias.length;
    const out = op.conv(g, x, weight(g, 'weight', [C, C / 4, 2, 2], f.weight), weight(g, 'bias', [C], f.bias), { strides: [2, 2] });
    const [, , H, W] = out.shape as number[];
    return { out, logdet: H * W * f.logdetPerPixel };
  });
}

export function decode(g: GraphBuilder, y: Value, f: FusedMix): FlowOutput {
  return g.scope('mix', () => {
    const C = f.bias.length;
    const [, , H, W] = y.shape as number[];
    const out = op.conv(g, y, weight(g, 'inverse_weight', [C, C, 1, 1], f.inverseWeight), weight(g, 'inverse_bias', [C], f.inverseBias));
    return { out, logdet: -H * W * f.logdetPerPixel };
  });
}
