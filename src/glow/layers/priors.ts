// The Gaussian priors that turn latents into standardised eps and back:
//   encode  eps = (z - mean) * exp(-logs),   log-density term -sum(logs) (the rest is added once)
//   decode  z   = mean + exp(logs) * T * eps
// A prior is either data-dependent (split priors, class-conditional top) or a host constant
// (unconditional top prior), whose exp(±logs) and sum(logs) are folded at export.

import { GraphBuilder, tensor, Value } from '../../builder/graph.js';
import * as op from '../../builder/ops.js';
import { HostTensor, sum } from '../../math/tensor.js';
import { LogDet } from './common.js';

export type Gaussian =
  | { kind: 'data'; mean: Value; logs: Value }
  | { kind: 'constant'; mean: HostTensor; logs: HostTensor };

function constant(g: GraphBuilder, t: HostTensor, hint: string, f: (v: number) => number = (v) => v): Value {
  return g.constant(tensor('float32', t.shape, Float64Array.from(t.data, f)), hint);
}

/** eps and the per-example term -sum(logs) of log N(z; mean, exp(logs)). */
export function standardize(g: GraphBuilder, z: Value, prior: Gaussian): { eps: Value; logdet: LogDet } {
  return g.scope('standardize', () => {
    if (prior.kind === 'constant') {
      const eps = op.mul(g, op.sub(g, z, constant(g, prior.mean, 'mean')), constant(g, prior.logs, 'inv_sigma', (v) => Math.exp(-v)));
      return { eps, logdet: -sum(prior.logs.data) };
    }
    const eps = op.mul(g, op.sub(g, z, prior.mean), op.exp(g, op.neg(g, prior.logs)));
    return { eps, logdet: op.neg(g, op.reduceSum(g, prior.logs, [1, 2, 3], false)) };
  });
}

export function sample(g: GraphBuilder, eps: Value, temperature: Value, prior: Gaussian): Value {
  return g.scope('sample', () => {
    if (prior.kind === 'constant') {
      const scale = op.mul(g, constant(g, prior.logs, 'sigma', Math.exp), temperature);
      return op.add(g, constant(g, prior.mean, 'mean'), op.mul(g, scale, eps));
    }
    return op.add(g, prior.mean, op.mul(g, op.mul(g, op.exp(g, prior.logs), temperature), eps));
  });
}
