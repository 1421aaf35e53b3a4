// Invertible 1x1 convolution y = W x over channels, with its two parameterisations:
// plain W (log-det H*W*log|det W|) and LU, W = P L (U + diag(sign_s * exp(log_s)))
// (log-det H*W*sum(log_s)). Channel permutations (shuffle, reverse) are the special case of a
// permutation matrix with log-det 0.

import { GraphBuilder, tensor, Value } from '../../builder/graph.js';
import * as op from '../../builder/ops.js';
import { identity, inverse, inverseFromLU, logAbsDet, matmul, Matrix, matrix, transpose } from '../../math/linalg.js';
import { FlowOutput, LogDet, scalarConstant } from './common.js';

export interface LUWeights {
  p: Value;
  lower: Value;
  upper: Value;
  log_s: Value;
  sign_s: Value;
}

/** W built inside the graph from its LU factors, as training needs it (the masks keep L unit
 * lower triangular and U strictly upper triangular whatever the optimizer does). */
export function weightFromLU(g: GraphBuilder, w: LUWeights): { weight: Value; logAbsDet: Value } {
  return g.scope('lu', () => {
    const C = w.lower.staticShape()[0];
    const lowerMask = new Float64Array(C * C);
    const eye = new Float64Array(C * C);
    for (let i = 0; i < C; i++) {
      eye[i * C + i] = 1;
      for (let j = 0; j < i; j++) lowerMask[i * C + j] = 1;
    }
    const upperMask = transpose(matrix(C, C, lowerMask)).data;
    const eyeValue = g.constant(tensor('float32', [C, C], eye), 'eye');
    const l = op.add(g, op.mul(g, w.lower, g.constant(tensor('float32', [C, C], lowerMask), 'lower_mask')), eyeValue);
    const diagonal = op.mul(g, eyeValue, op.mul(g, w.sign_s, op.exp(g, w.log_s)));
    const u = op.add(g, op.mul(g, w.upper, g.constant(tensor('float32', [C, C], upperMask), 'upper_mask')), diagonal);
    const weight = op.matmul(g, w.p, op.matmul(g, l, u));
    return { weight, logAbsDet: op.reduceSum(g, w.log_s, [0], false) };
  });
}

/** y = conv1x1(x, W); `logAbsDet` is log|det W| (constant or in-graph). */
export function encode(g: GraphBuilder, x: Value, weight: Value, logAbsDet: LogDet): FlowOutput {
  return g.scope('invconv', () => {
    const C = weight.staticShape()[0];
    const out = op.conv(g, x, op.reshape(g, weight, [C, C, 1, 1]), undefined);
    return { out, logdet: perPixel(g, x, logAbsDet, 1) };
  });
}

export function decode(g: GraphBuilder, y: Value, weightInverse: Value, logAbsDet: LogDet): FlowOutput {
  return g.scope('invconv', () => {
    const C = weightInverse.staticShape()[0];
    const out = op.conv(g, y, op.reshape(g, weightInverse, [C, C, 1, 1]), undefined);
    return { out, logdet: perPixel(g, y, logAbsDet, -1) };
  });
}

function perPixel(g: GraphBuilder, x: Value, logAbsDet: LogDet, sign: number): LogDet {
  const [, , H, W] = x.shape as number[];
  if (typeof logAbsDet === 'number') return sign * H * W * logAbsDet;
  return op.mul(g, logAbsDet, scalarConstant(g, sign * H * W, 'hw'));
}

export interface FoldedMix {
  weight: Matrix;
  inverse: Matrix;
  logAbsDet: number;
}

function square(data: Float64Array, C: number): Matrix {
  return matrix(C, C, data);
}

/** Host fold of the LU form, in float64: W = P L U, W^-1 by triangular solves, log|det W| from
 * the diagonal. */
export function foldLU(
  p: Float64Array, lower: Float64Array, upper: Float64Array, logS: Float64Array, signS: Float64Array,
): FoldedMix {
  const C = logS.length;
  const l = identity(C);
  const u = matrix(C, C);
  for (let i = 0; i < C; i++) {
    for (let j = 0; j < C; j++) {
      if (j < i) l.data[i * C + j] = lower[i * C + j];
      if (j > i) u.data[i * C + j] = upper[i * C + j];
    }
    u.data[i * C + i] = signS[i] * Math.exp(logS[i]);
  }
  const P = square(p, C);
  return {
    weight: matmul(P, matmul(l, u)),
    inverse: inverseFromLU(P, l, u),
    logAbsDet: logS.reduce((a, b) => a + b, 0),
  };
}

/** Host fold of a plain W: inverse by LU with partial pivoting. */
export function foldPlain(weight: Float64Array, C: number): FoldedMix {
  const w = square(weight, C);
  return { weight: w, inverse: inverse(w), logAbsDet: logAbsDet(w) };
}

/** Output channel c reads input channel indices[c]. */
export function foldPermutation(indices: readonly number[]): FoldedMix {
  const C = indices.length;
  const w = matrix(C, C);
  indices.forEach((src, c) => (w.data[c * C + src] = 1));
  return { weight: w, inverse: transpose(w), logAbsDet: 0 };
}

export function reversePermutation(C: number): number[] {
  return Array.from({ length: C }, (_, i) => C - 1 - i);
}
