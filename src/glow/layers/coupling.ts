// Coupling: z1, z2 = channel halves; the network sees z1 only, so the layer inverts exactly.
//   additive: z2' = z2 + h                                 log-det 0
//   affine:   z2' = (z2 + shift) * sigmoid(scaleLogit)     log-det sum(log sigmoid(scaleLogit))
// The network returns [h] or [shift, scaleLogit] with the paper's +2 already in scaleLogit.
//
// The affine log-det comes in two forms (LogScale):
// - 'stable': -softplus(-t), for training graphs: Log(Sigmoid(t)) is -inf once the sigmoid
//   underflows (t < -87 in ONNX Runtime), and one such batch turned a training loss infinite.
// - 'log': Log of the scale the layer already computes, where it is a normal float32, and t
//   itself below that (log sigmoid(t) = t - log(1 + e^t) = t to within 1e-38 there). Three
//   vectorised ops instead of ONNX Runtime's Softplus, a scalar loop that took 11% of the MNIST
//   encode. Exported (folded) encode graphs use it.

import { GraphBuilder, Value } from '../../builder/graph.js';
import * as op from '../../builder/ops.js';
import { Coupling } from '../config.js';
import { FlowOutput, scalarConstant } from './common.js';
import { Network } from './networks.js';

export type LogScale = 'stable' | 'log';

/** The smallest normal float32. */
const FLOAT32_MIN_NORMAL = 2 ** -126;

function logScale(g: GraphBuilder, scaleLogit: Value, scale: Value, form: LogScale): Value {
  if (form === 'stable') return op.neg(g, op.softplus(g, op.neg(g, scaleLogit)));
  const underflows = op.less(g, scale, scalarConstant(g, FLOAT32_MIN_NORMAL, 'float32_min_normal'));
  return op.where(g, underflows, scaleLogit, op.log(g, scale));
}

function halves(g: GraphBuilder, z: Value): Value[] {
  const C = z.shape![1] as number;
  return op.split(g, z, [C / 2, C / 2], 1);
}

export function encode(g: GraphBuilder, z: Value, kind: Coupling, network: Network, form: LogScale = 'stable'): FlowOutput {
  return g.scope('coupling', () => {
    const [z1, z2] = halves(g, z);
    if (kind === 'additive') {
      const [h] = network(g, z1);
      return { out: op.concat(g, [z1, op.add(g, z2, h)], 1), logdet: 0 };
    }
    const [shift, scaleLogit] = network(g, z1);
    const scale = op.sigmoid(g, scaleLogit);
    const out = op.concat(g, [z1, op.mul(g, op.add(g, z2, shift), scale)], 1);
    return { out, logdet: op.reduceSum(g, logScale(g, scaleLogit, scale, form), [1, 2, 3], false) };
  });
}

export function decode(g: GraphBuilder, y: Value, kind: Coupling, network: Network): FlowOutput {
  return g.scope('coupling', () => {
    const [y1, y2] = halves(g, y);
    if (kind === 'additive') {
      const [h] = network(g, y1);
      return { out: op.concat(g, [y1, op.sub(g, y2, h)], 1), logdet: 0 };
    }
    const [shift, scaleLogit] = network(g, y1);
    const scale = op.sigmoid(g, scaleLogit);
    const out = op.concat(g, [y1, op.sub(g, op.div(g, y2, scale), shift)], 1);
    return { out, logdet: op.neg(g, op.reduceSum(g, logScale(g, scaleLogit, scale, 'stable'), [1, 2, 3], false)) };
  });
}
