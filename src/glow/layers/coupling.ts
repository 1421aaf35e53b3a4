// Coupling: z1, z2 = channel halves; the network sees z1 only, so the layer inverts exactly.
//   additive: z2' = z2 + h                                 log-det 0
//   affine:   z2' = (z2 + shift) * sigmoid(scaleLogit)     log-det sum(log sigmoid(scaleLogit))
// The network returns [h] or [shift, scaleLogit] with the paper's +2 already in scaleLogit.
// log sigmoid(t) is computed as -softplus(-t): Log(Sigmoid(t)) is -inf once sigmoid underflows
// (t < -87 in ONNX Runtime), which turned one training batch's loss infinite.

import { GraphBuilder, Value } from '../../builder/graph.js';
import * as op from '../../builder/ops.js';
import { Coupling } from '../config.js';
import { FlowOutput } from './common.js';
import { Network } from './networks.js';

function logSigmoid(g: GraphBuilder, t: Value): Value {
  return op.neg(g, op.softplus(g, op.neg(g, t)));
}

function halves(g: GraphBuilder, z: Value): Value[] {
  const C = z.shape![1] as number;
  return op.split(g, z, [C / 2, C / 2], 1);
}

export function encode(g: GraphBuilder, z: Value, kind: Coupling, network: Network): FlowOutput {
  return g.scope('coupling', () => {
    const [z1, z2] = halves(g, z);
    if (kind === 'additive') {
      const [h] = network(g, z1);
      return { out: op.concat(g, [z1, op.add(g, z2, h)], 1), logdet: 0 };
    }
    const [shift, scaleLogit] = network(g, z1);
    const scale = op.sigmoid(g, scaleLogit);
    const out = op.concat(g, [z1, op.mul(g, op.add(g, z2, shift), scale)], 1);
    return { out, logdet: op.reduceSum(g, logSigmoid(g, scaleLogit), [1, 2, 3], false) };
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
    return { out, logdet: op.neg(g, op.reduceSum(g, logSigmoid(g, scaleLogit), [1, 2, 3], false)) };
  });
}
