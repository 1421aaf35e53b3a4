// ActNorm: y = (x + bias) * exp(logs) per channel; log-det H*W*sum(logs).

import { GraphBuilder, Value } from '../../builder/graph.js';
import * as op from '../../builder/ops.js';
import { FlowOutput, scalarConstant } from './common.js';

export interface ActNormWeights {
  bias: Value;
  logs: Value;
}

export function encode(g: GraphBuilder, x: Value, w: ActNormWeights): FlowOutput {
  return g.scope('actnorm', () => {
    const out = op.mul(g, op.add(g, x, w.bias), op.exp(g, w.logs));
    return { out, logdet: logdet(g, x, w) };
  });
}

export function decode(g: GraphBuilder, y: Value, w: ActNormWeights): FlowOutput {
  return g.scope('actnorm', () => {
    const out = op.sub(g, op.mul(g, y, op.exp(g, op.neg(g, w.logs))), w.bias);
    return { out, logdet: op.neg(g, logdet(g, y, w)) };
  });
}

function logdet(g: GraphBuilder, x: Value, w: ActNormWeights): Value {
  const [, , H, W] = x.shape as number[];
  return op.mul(g, op.reduceSum(g, w.logs, [0, 1, 2, 3], false), scalarConstant(g, H * W, 'hw'));
}

/** Host fold: y = x * scale + shift. */
export function fold(bias: Float64Array, logs: Float64Array): { scale: Float64Array; shift: Float64Array; logdetPerPixel: number } {
  const scale = logs.map(Math.exp);
  return { scale, shift: bias.map((b, i) => b * scale[i]), logdetPerPixel: logs.reduce((a, b) => a + b, 0) };
}

/**
 * Data-dependent initialisation inside the graph: bias = -mean and logs = log(scale / (std + 1e-6))
 * per channel over the batch and pixels of x, the ActNorm's input.
 */
export function statistics(g: GraphBuilder, x: Value, targetScale: number): ActNormWeights {
  return g.scope('actnorm_init', () => {
    const bias = op.neg(g, op.reduceMean(g, x, [0, 2, 3], true));
    const centered = op.add(g, x, bias);
    const variance = op.reduceMean(g, op.mul(g, centered, centered), [0, 2, 3], true);
    const std = op.add(g, op.sqrt(g, variance), scalarConstant(g, 1e-6, 'eps'));
    return { bias, logs: op.log(g, op.div(g, scalarConstant(g, targetScale, 'scale'), std)) };
  });
}
