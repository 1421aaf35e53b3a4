// Coupling: z1, z2 = channel halves; the network sees z1 only, so the layer inverts exactly.
//   additive: z2' = z2 + h                                 log-det 0
//   affine:   z2' = (z2 + shift) * scale                   log-det sum(log scale)
//             scale = max(sigmoid(scaleLogit), scaleFloor)
// The network returns [h] or [shift, scaleLogit] with the paper's +2 already in scaleLogit.
//
// scaleFloor (GlowConfig.scaleFloor; 0, the paper's layer, when absent) bounds what decode
// divides by. With the paper's sigmoid a trained MNIST model drove the scale of some test
// images' pixels down to 1e-7..4e-3 against 0.12 on ordinary ones; decode then amplified
// float32 rounding of the latents past 1e-2 in pixel space, or to NaN. The max keeps the layer
// a bijection (the scale still depends on z1 alone) and leaves every scale above the floor as
// it was, so weights trained without a floor keep their likelihood wherever it does not bind.
//
// scaleBound a (GlowConfig.scaleBound) replaces the sigmoid by scale = exp(lambda tanh(t)),
// lambda = -ln a: smooth, in [a, 1/a] on both sides, so that neither direction multiplies an
// error by more than 1/a, and its log is lambda tanh(t) exactly (no Log, no underflow). Its
// network output carries no +2 (layout oddOffset 0): the zero-initialised last conv starts the
// layer at scale 1, as the paper's +2 starts the sigmoid near 0.88.
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
import { FLOAT32_MIN_NORMAL, GlowConfig } from '../config.js';
import { FlowOutput, scalarConstant } from './common.js';
import { Network } from './networks.js';

export type LogScale = 'stable' | 'log';

/** What the coupling layer takes from the model's config. */
export type CouplingSpec = Pick<GlowConfig, 'coupling' | 'scaleFloor' | 'scaleBound'>;

function logSigmoid(g: GraphBuilder, scaleLogit: Value, sigmoid: Value, form: LogScale): Value {
  if (form === 'stable') return op.neg(g, op.softplus(g, op.neg(g, scaleLogit)));
  const underflows = op.less(g, sigmoid, scalarConstant(g, FLOAT32_MIN_NORMAL, 'float32_min_normal'));
  return op.where(g, underflows, scaleLogit, op.log(g, sigmoid));
}

/** The affine scale and its log. Where, not Max, applies the floor: autodiff has a rule for
 * it. A floor is a normal float32 (validateConfig), so the 'log' form can take Log of the scale
 * as it is; the training form takes log(floor) as a constant where the floor binds. */
function affineScale(g: GraphBuilder, scaleLogit: Value, floor: number, form: LogScale): { scale: Value; logScale: Value } {
  const sigmoid = op.sigmoid(g, scaleLogit);
  if (!floor) return { scale: sigmoid, logScale: logSigmoid(g, scaleLogit, sigmoid, form) };
  const floorValue = scalarConstant(g, floor, 'scale_floor');
  const floored = op.less(g, sigmoid, floorValue);
  const scale = op.where(g, floored, floorValue, sigmoid);
  const logScale = form === 'log'
    ? op.log(g, scale)
    : op.where(g, floored, scalarConstant(g, Math.log(floor), 'log_scale_floor'), logSigmoid(g, scaleLogit, sigmoid, form));
  return { scale, logScale };
}

/** exp(lambda tanh(t)) and its log, lambda = -ln(bound). */
function boundedScale(g: GraphBuilder, scaleLogit: Value, bound: number): { scale: Value; logScale: Value } {
  const logScale = op.mul(g, op.tanh(g, scaleLogit), scalarConstant(g, -Math.log(bound), 'log_scale_bound'));
  return { scale: op.exp(g, logScale), logScale };
}

function scaleOf(g: GraphBuilder, scaleLogit: Value, spec: CouplingSpec, form: LogScale): { scale: Value; logScale: Value } {
  return spec.scaleBound ? boundedScale(g, scaleLogit, spec.scaleBound) : affineScale(g, scaleLogit, spec.scaleFloor ?? 0, form);
}

function halves(g: GraphBuilder, z: Value): Value[] {
  const C = z.shape![1] as number;
  return op.split(g, z, [C / 2, C / 2], 1);
}

export function encode(g: GraphBuilder, z: Value, spec: CouplingSpec, network: Network, form: LogScale = 'stable'): FlowOutput {
  return g.scope('coupling', () => {
    const [z1, z2] = halves(g, z);
    if (spec.coupling === 'additive') {
      const [h] = network(g, z1);
      return { out: op.concat(g, [z1, op.add(g, z2, h)], 1), logdet: 0 };
    }
    const [shift, scaleLogit] = network(g, z1);
    const { scale, logScale } = scaleOf(g, scaleLogit, spec, form);
    const out = op.concat(g, [z1, op.mul(g, op.add(g, z2, shift), scale)], 1);
    return { out, logdet: op.reduceSum(g, logScale, [1, 2, 3], false) };
  });
}

export function decode(g: GraphBuilder, y: Value, spec: CouplingSpec, network: Network): FlowOutput {
  return g.scope('coupling', () => {
    const [y1, y2] = halves(g, y);
    if (spec.coupling === 'additive') {
      const [h] = network(g, y1);
      return { out: op.concat(g, [y1, op.sub(g, y2, h)], 1), logdet: 0 };
    }
    const [shift, scaleLogit] = network(g, y1);
    const { scale, logScale } = scaleOf(g, scaleLogit, spec, 'stable');
    const out = op.concat(g, [y1, op.sub(g, op.div(g, y2, scale), shift)], 1);
    return { out, logdet: op.neg(g, op.reduceSum(g, logScale, [1, 2, 3], false)) };
  });
}
