// The change-of-variables identity on the exported encode graphs themselves, evaluated in
// float64 by the builder's interpreter: the finite-difference Jacobian of x -> (eps_1..eps_L)
// must have log|det J| = log_px + D ln 2^nBits + 0.5 |eps|^2 + 0.5 D ln 2pi, and with N(0, 1)
// priors the graph's `logdet` output alone must equal log|det J|. Both folded and literal graphs;
// they must also agree with the independent float64 reference (test/reference/glow64.ts).

import { expect } from 'chai';
import { evaluateGraph } from '../../src/builder/evaluate.js';
import { Graph, Tensor } from '../../src/builder/graph.js';
import { DEFAULT_CONFIG, dimensions, GlowConfig, validateConfig } from '../../src/glow/config.js';
import { buildEncode, GlowWeights } from '../../src/glow/model.js';
import { HostTensor } from '../../src/math/tensor.js';
import { maxAbsDiff } from '../helpers.js';
import { refEncode } from '../reference/glow64.js';
import { randomImages, randomOneHot, randomParams, randomShuffles, withZeroPriors } from '../../support/random-params.js';
import { expectClose, logAbsDet, repeatFirst } from '../reference/finite-differences.js';

function cfg(overrides: Partial<GlowConfig>): GlowConfig {
  return validateConfig({ ...DEFAULT_CONFIG, ...overrides });
}

const feed = (t: HostTensor): Tensor => ({ dtype: 'float32', shape: [...t.shape], data: t.data });

/** Example n of eps_1..eps_L, flattened into one vector. */
function flatEps(out: Record<string, Tensor>, L: number, n: number): Float64Array {
  const parts: Float64Array[] = [];
  for (let l = 1; l <= L; l++) {
    const e = out[`eps_${l}`];
    const per = e.data.length / e.shape[0];
    parts.push(Float64Array.from(e.data.subarray(n * per, (n + 1) * per)));
  }
  const flat = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    flat.set(p, pos);
    pos += p.length;
  }
  return flat;
}

interface Probe {
  /** Outputs at the unperturbed example (index 0 of the batch). */
  at: Record<string, Tensor>;
  logAbsDetJ: number;
}

/**
 * One float64 evaluation of the graph on a batch of 1 + 2D copies of example 0 of x: the
 * original, then x ± step e_j for every input dimension j; central differences give
 * J[i, j] = d eps_i / d x_j.
 */
function probe(graph: Graph, L: number, x: HostTensor, y: HostTensor | undefined, step = 1e-5): Probe {
  const D = x.data.length / x.shape[0];
  const xs = repeatFirst(x, 1 + 2 * D);
  for (let j = 0; j < D; j++) {
    xs.data[(1 + 2 * j) * D + j] += step;
    xs.data[(2 + 2 * j) * D + j] -= step;
  }
  const feeds: Record<string, Tensor> = { x: feed(xs) };
  if (y) feeds.y = feed(repeatFirst(y, 1 + 2 * D));
  const out = evaluateGraph(graph, feeds);
  const J = new Float64Array(D * D);
  for (let j = 0; j < D; j++) {
    const plus = flatEps(out, L, 1 + 2 * j);
    const minus = flatEps(out, L, 2 + 2 * j);
    expect(plus.length, 'eps has D values per example').to.equal(D);
    for (let i = 0; i < D; i++) J[i * D + j] = (plus[i] - minus[i]) / (2 * step);
  }
  const at: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(out)) {
    const per = t.data.length / t.shape[0];
    at[name] = { ...t, shape: [1, ...t.shape.slice(1)], data: t.data.slice(0, per) };
  }
  return { at, logAbsDetJ: logAbsDet(J, D) };
}

const TOL_REF = 1e-9;

const CASES: { name: string; config: GlowConfig }[] = [
  { name: '[1,4,4] K1 L1 additive reverse', config: cfg({ imageShape: [1, 4, 4], K: 1, L: 1, hiddenChannels: 4, coupling: 'additive', permutation: 'reverse', lu: false, learnTop: false, numClasses: 0 }) },
  { name: '[1,4,4] K2 L2 affine invconv-LU learnTop', config: cfg({ imageShape: [1, 4, 4], K: 2, L: 2, hiddenChannels: 4, coupling: 'affine', permutation: 'invconv', lu: true, learnTop: true, numClasses: 0 }) },
  { name: '[2,4,4] K1 L2 affine shuffle learnTop classes3 nBits8', config: cfg({ imageShape: [2, 4, 4], K: 1, L: 2, hiddenChannels: 6, coupling: 'affine', permutation: 'shuffle', lu: false, learnTop: true, numClasses: 3, nBits: 8 }) },
  { name: '[2,4,4] K2 L1 additive invconv-plain classes3', config: cfg({ imageShape: [2, 4, 4], K: 2, L: 1, hiddenChannels: 5, coupling: 'additive', permutation: 'invconv', lu: false, learnTop: false, numClasses: 3 }) },
  { name: '[3,4,4] K1 L2 additive invconv-LU', config: cfg({ imageShape: [3, 4, 4], K: 1, L: 2, hiddenChannels: 4, coupling: 'additive', permutation: 'invconv', lu: true, learnTop: false, numClasses: 0 }) },
  { name: '[1,4,4] K2 L2 affine invconv-LU learnTop scaleFloor 0.88', config: cfg({ imageShape: [1, 4, 4], K: 2, L: 2, hiddenChannels: 4, coupling: 'affine', permutation: 'invconv', lu: true, learnTop: true, numClasses: 0, scaleFloor: 0.88 }) },
  { name: '[2,8,8] K1 L3 affine invconv lu [false, true, false] learnTop', config: cfg({ imageShape: [2, 8, 8], K: 1, L: 3, hiddenChannels: 4, coupling: 'affine', permutation: 'invconv', lu: [false, true, false], learnTop: true, numClasses: 0 }) },
  { name: '[3,4,4] K2 L1 affine invconv-plain learnTop classes2', config: cfg({ imageShape: [3, 4, 4], K: 2, L: 1, hiddenChannels: 6, coupling: 'affine', permutation: 'invconv', lu: false, learnTop: true, numClasses: 2 }) },
];

describe('glow encode graphs in float64: log-determinant against the FD Jacobian', () => {
  CASES.forEach(({ name, config }, idx) => {
    const seed = 2000 + 10 * idx;
    const params = randomParams(config, seed, 1, { priorHStd: 0.1 });
    const shuffles = randomShuffles(config, seed + 1);
    const model: GlowWeights = { config, params, shuffles };
    const zeroModel: GlowWeights = { config, params: withZeroPriors(config, params), shuffles };
    const D = dimensions(config);
    const x = randomImages(config, 3, seed + 2);
    const y = config.numClasses > 0 ? randomOneHot(config, 3, seed + 3) : undefined;
    const feeds: Record<string, Tensor> = y ? { x: feed(x), y: feed(y) } : { x: feed(x) };

    if (config.scaleFloor) {
      it(`${name}: the scale floor binds on some elements (the log-det differs without it)`, () => {
        const unbounded = refEncode({ config: { ...config, scaleFloor: 0 }, params, shuffles }, x, y);
        expect(maxAbsDiff(unbounded.logdet, refEncode({ config, params, shuffles }, x, y).logdet)).to.be.above(1e-3);
      });
    }

    for (const fold of [true, false]) {
      describe(`${name} fold=${fold}`, () => {
        // The graph's initializers hold the float64 values (the float32 cast only happens when
        // serialising), so the interpreter and the reference agree to rounding (~1e-14 seen);
        // 1e-9 (tighter than the 1e-6 needed) would catch weights silently rounded to float32.
        it('eps, logdet, log_px, bpd (and y_logits) equal the float64 reference', () => {
          const out = evaluateGraph(buildEncode(model, { fold }), feeds);
          const ref = refEncode({ config, params, shuffles }, x, y);
          ref.eps.forEach((e, l) => {
            expect(out[`eps_${l + 1}`].shape).to.deep.equal(e.shape);
            expect(maxAbsDiff(out[`eps_${l + 1}`].data, e.data), `eps_${l + 1}`).to.be.below(TOL_REF);
          });
          expect(maxAbsDiff(out.logdet.data, ref.logdet), 'logdet').to.be.below(TOL_REF);
          expect(maxAbsDiff(out.log_px.data, ref.logPx), 'log_px').to.be.below(TOL_REF);
          expect(maxAbsDiff(out.bpd.data, ref.bpd), 'bpd').to.be.below(TOL_REF);
          if (y) expect(maxAbsDiff(out.y_logits.data, ref.yLogits!.data), 'y_logits').to.be.below(TOL_REF);
        });

        it('log|det J| = log_px + D ln 2^nBits + 0.5 |eps|^2 + 0.5 D ln 2pi', () => {
          const { at, logAbsDetJ } = probe(buildEncode(model, { fold }), config.L, x, y);
          const eps = flatEps(at, config.L, 0);
          const sq = eps.reduce((s, e) => s + e * e, 0);
          const expected = at.log_px.data[0] + D * config.nBits * Math.LN2 + 0.5 * sq + 0.5 * D * Math.log(2 * Math.PI);
          expectClose(logAbsDetJ, expected, 1e-6, 'log|det J|');
        });

        it('with zero priors, the logdet output alone equals log|det J|', () => {
          const { at, logAbsDetJ } = probe(buildEncode(zeroModel, { fold }), config.L, x, y);
          expectClose(at.logdet.data[0], logAbsDetJ, 1e-6, 'logdet');
        });
      });
    }
  });
});
