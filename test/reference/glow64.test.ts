// Validates the float64 reference itself: invertibility, the change-of-variables identity against
// a brute-force finite-difference Jacobian, and the index conventions on hand-checkable cases.

import { expect } from 'chai';
import { DEFAULT_CONFIG, GlowConfig, dimensions, latentShape, validateConfig } from '../../src/glow/config.js';
import { paramSpecs, stepPrefix } from '../../src/glow/names.js';
import { HostTensor } from '../../src/math/tensor.js';
import { Ref64Input, refDecode, refEncode, squeeze, unsqueeze } from './glow64.js';
import { randomImages, randomOneHot, randomParams, randomShuffles, withZeroPriors } from '../../support/random-params.js';
import { maxAbsDiff } from '../helpers.js';
import { expectClose, logAbsDet, repeatFirst } from './finite-differences.js';

function cfg(overrides: Partial<GlowConfig>): GlowConfig {
  return validateConfig({ ...DEFAULT_CONFIG, ...overrides });
}

/** Flattens eps_1..eps_L of example n into one vector. */
function flatEps(eps: HostTensor[], n: number): number[] {
  const out: number[] = [];
  for (const e of eps) {
    const per = e.data.length / e.shape[0];
    for (let k = n * per; k < (n + 1) * per; k++) out.push(e.data[k]);
  }
  return out;
}

/**
 * log|det d eps / d x| at example 0 of x by central differences; all 2D perturbed copies go
 * through one batched encode.
 */
function fdLogAbsDet(model: Ref64Input, x: HostTensor, y: HostTensor | undefined, step = 1e-5): number {
  const D = dimensions(model.config);
  const xs = repeatFirst(x, 2 * D);
  for (let j = 0; j < D; j++) {
    xs.data[2 * j * D + j] += step;
    xs.data[(2 * j + 1) * D + j] -= step;
  }
  const { eps } = refEncode(model, xs, y ? repeatFirst(y, 2 * D) : undefined);
  const J = new Float64Array(D * D); // J[i, j] = d eps_i / d x_j
  for (let j = 0; j < D; j++) {
    const plus = flatEps(eps, 2 * j);
    const minus = flatEps(eps, 2 * j + 1);
    for (let i = 0; i < D; i++) J[i * D + j] = (plus[i] - minus[i]) / (2 * step);
  }
  return logAbsDet(J, D);
}

const CASES: { name: string; config: GlowConfig }[] = [
  { name: '[1,4,4] K1 L1 additive reverse', config: cfg({ imageShape: [1, 4, 4], K: 1, L: 1, hiddenChannels: 4, coupling: 'additive', permutation: 'reverse', lu: false, learnTop: false, numClasses: 0 }) },
  { name: '[1,4,4] K2 L2 affine invconv-LU learnTop', config: cfg({ imageShape: [1, 4, 4], K: 2, L: 2, hiddenChannels: 4, coupling: 'affine', permutation: 'invconv', lu: true, learnTop: true, numClasses: 0 }) },
  { name: '[2,4,4] K1 L2 affine shuffle learnTop classes3', config: cfg({ imageShape: [2, 4, 4], K: 1, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'shuffle', lu: false, learnTop: true, numClasses: 3, nBits: 8 }) },
  { name: '[2,4,4] K2 L1 additive invconv-plain classes3', config: cfg({ imageShape: [2, 4, 4], K: 2, L: 1, hiddenChannels: 6, coupling: 'additive', permutation: 'invconv', lu: false, learnTop: false, numClasses: 3 }) },
  { name: '[2,4,4] K1 L1 affine invconv-plain learnTop classes3', config: cfg({ imageShape: [2, 4, 4], K: 1, L: 1, hiddenChannels: 4, coupling: 'affine', permutation: 'invconv', lu: false, learnTop: true, numClasses: 3 }) },
  { name: '[3,8,8] K2 L2 affine invconv-LU learnTop classes3', config: cfg({ imageShape: [3, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv', lu: true, learnTop: true, numClasses: 3, nBits: 8 }) },
  { name: '[3,8,8] K1 L2 additive shuffle', config: cfg({ imageShape: [3, 8, 8], K: 1, L: 2, hiddenChannels: 4, coupling: 'additive', permutation: 'shuffle', lu: false, learnTop: false, numClasses: 0 }) },
  { name: '[1,4,4] K2 L2 affine invconv-LU learnTop scaleFloor 0.88', config: cfg({ imageShape: [1, 4, 4], K: 2, L: 2, hiddenChannels: 4, coupling: 'affine', permutation: 'invconv', lu: true, learnTop: true, numClasses: 0, scaleFloor: 0.88 }) },
  { name: '[2,4,4] K2 L2 affine invconv lu [true, false] learnTop', config: cfg({ imageShape: [2, 4, 4], K: 2, L: 2, hiddenChannels: 4, coupling: 'affine', permutation: 'invconv', lu: [true, false], learnTop: true, numClasses: 0 }) },
  { name: '[1,8,8] K2 L3 affine reverse learnTop', config: cfg({ imageShape: [1, 8, 8], K: 2, L: 3, hiddenChannels: 4, coupling: 'affine', permutation: 'reverse', lu: false, learnTop: true, numClasses: 0 }) },
];

describe('reference glow64', () => {
  CASES.forEach(({ name, config }, idx) => {
    describe(name, () => {
      const seed = 1000 + idx;
      const model: Ref64Input = {
        config,
        params: randomParams(config, seed, 1, { priorHStd: 0.1 }),
        shuffles: randomShuffles(config, seed + 1),
      };
      const N = 2;
      const x = randomImages(config, N, seed + 2);
      const y = config.numClasses > 0 ? randomOneHot(config, N, seed + 3) : undefined;
      const D = dimensions(config);

      it('encodes to the contract shapes and consistent log_px / bpd', () => {
        const enc = refEncode(model, x, y);
        expect(enc.eps).to.have.length(config.L);
        enc.eps.forEach((e, l) => expect(e.shape).to.deep.equal([N, ...latentShape(config, l + 1)]));
        expect(enc.logdet).to.have.length(N);
        for (let n = 0; n < N; n++) {
          expect(Number.isFinite(enc.logPx[n])).to.equal(true);
          expectClose(enc.bpd[n], -enc.logPx[n] / (D * Math.LN2), 1e-14, 'bpd');
        }
        if (config.numClasses > 0) expect(enc.yLogits?.shape).to.deep.equal([N, config.numClasses]);
        else expect(enc.yLogits).to.equal(undefined);
      });

      if (config.scaleFloor) {
        it('the scale floor binds on some elements (the log-det differs without it)', () => {
          const unbounded = refEncode({ ...model, config: { ...config, scaleFloor: 0 } }, x, y);
          expect(maxAbsDiff(unbounded.logdet, refEncode(model, x, y).logdet)).to.be.above(1e-3);
        });
      }

      it('decode(encode(x).eps, T=1) reproduces x', () => {
        const enc = refEncode(model, x, y);
        const back = refDecode(model, enc.eps, 1, y);
        expect(back.shape).to.deep.equal(x.shape);
        expect(maxAbsDiff(back.data, x.data)).to.be.below(1e-10);
      });

      it('encodes each example of a batch independently', () => {
        const enc = refEncode(model, x, y);
        for (let n = 0; n < N; n++) {
          const one = (t: HostTensor) => ({ shape: [1, ...t.shape.slice(1)], data: t.data.slice(n * (t.data.length / N), (n + 1) * (t.data.length / N)) });
          const single = refEncode(model, one(x), y ? one(y) : undefined);
          expect(maxAbsDiff(flatEps(single.eps, 0), flatEps(enc.eps, n))).to.be.below(1e-13);
          expectClose(single.logPx[0], enc.logPx[n], 1e-13, 'log_px');
        }
      });

      it('change of variables: FD log|det d eps/dx| = log_px + D ln 2^nBits + 0.5 |eps|^2 + 0.5 D ln 2pi', () => {
        const enc = refEncode(model, x, y);
        const eps0 = flatEps(enc.eps, 0);
        const sq = eps0.reduce((s, e) => s + e * e, 0);
        const expected = enc.logPx[0] + D * config.nBits * Math.LN2 + 0.5 * sq + 0.5 * D * Math.log(2 * Math.PI);
        expectClose(fdLogAbsDet(model, x, y), expected, 1e-6, 'log|det J|');
      });

      it('with zero priors, logdet alone equals the FD Jacobian log|det|', () => {
        const zeroModel: Ref64Input = { ...model, params: withZeroPriors(config, model.params) };
        const enc = refEncode(zeroModel, x, y);
        expectClose(fdLogAbsDet(zeroModel, x, y), enc.logdet[0], 1e-6, 'logdet');
        // Priors are N(0, 1) here, so log_px reduces to logdet - 0.5|z|^2 - D/2 ln 2pi - D ln 2^nBits.
        const sq = flatEps(enc.eps, 0).reduce((s, e) => s + e * e, 0);
        expectClose(enc.logPx[0], enc.logdet[0] - 0.5 * sq - 0.5 * D * Math.log(2 * Math.PI) - D * config.nBits * Math.LN2, 1e-12, 'log_px');
      });

      it('temperature 0 decodes the prior means (eps = 0)', () => {
        const enc = refEncode(model, x, y);
        const zerosLike = enc.eps.map((e) => ({ shape: [...e.shape], data: new Float64Array(e.data.length) }));
        const atT0 = refDecode(model, enc.eps, 0, y);
        const atMeans = refDecode(model, zerosLike, 1, y);
        expect(maxAbsDiff(atT0.data, atMeans.data)).to.be.below(1e-14);
        // And the means really are the priors' means: encoding them back gives eps_L = 0 on top.
        const again = refEncode(model, atMeans, y);
        again.eps.forEach((e) => expect(maxAbsDiff(e.data, new Float64Array(e.data.length))).to.be.below(1e-9));
      });
    });
  });

  describe('index conventions on hand-checkable cases', () => {
    /** Parameters making every layer the identity: zero weights, zero logs, P = I, sign_s = 1. */
    function identityParams(config: GlowConfig): Map<string, HostTensor> {
      const params = new Map<string, HostTensor>();
      for (const spec of paramSpecs(config)) {
        const data = new Float64Array(spec.shape.reduce((a, b) => a * b, 1));
        if (spec.role === 'invconv.p' || spec.role === 'invconv.weight') for (let i = 0; i < spec.shape[0]; i++) data[i * spec.shape[0] + i] = 1;
        if (spec.role === 'invconv.sign_s') data.fill(1);
        params.set(spec.name, { shape: [...spec.shape], data });
      }
      return params;
    }

    const base = { imageShape: [2, 4, 4] as [number, number, number], K: 1, L: 1, hiddenChannels: 4, coupling: 'additive' as const, learnTop: true, numClasses: 0, nBits: 5 };
    const x: HostTensor = { shape: [1, 2, 4, 4], data: Float64Array.from({ length: 32 }, (_, k) => k / 32 - 0.5) };

    it('squeeze puts x[c, 2h+i, 2w+j] in channel c*4 + 2i + j; unsqueeze inverts it', () => {
      const s = squeeze(x);
      expect(s.shape).to.deep.equal([1, 8, 2, 2]);
      for (let c = 0; c < 2; c++)
        for (let h = 0; h < 4; h++)
          for (let w = 0; w < 4; w++) {
            const oc = c * 4 + 2 * (h % 2) + (w % 2);
            expect(s.data[(oc * 2 + (h >> 1)) * 2 + (w >> 1)]).to.equal(x.data[(c * 4 + h) * 4 + w]);
          }
      expect(Array.from(unsqueeze(s).data)).to.deep.equal(Array.from(x.data));
    });

    for (const lu of [false, true]) {
      it(`identity weights (invconv, lu=${lu}): eps = squeeze(x), logdet 0, standard normal log_px`, () => {
        const config = cfg({ ...base, permutation: 'invconv', lu });
        const enc = refEncode({ config, params: identityParams(config) }, x);
        expect(Array.from(enc.eps[0].data)).to.deep.equal(Array.from(squeeze(x).data));
        expect(enc.logdet[0]).to.equal(0);
        const D = 32;
        const sq = Array.from(x.data).reduce((s, v) => s + v * v, 0);
        expectClose(enc.logPx[0], -0.5 * sq - 0.5 * D * Math.log(2 * Math.PI) - D * 5 * Math.LN2, 1e-14, 'log_px');
      });
    }

    it("'reverse' and 'shuffle' take y[:, c] = x[:, indices[c]]", () => {
      const sq = squeeze(x);
      const hw = 4;
      const rev = cfg({ ...base, permutation: 'reverse', lu: false });
      const encRev = refEncode({ config: rev, params: identityParams(rev) }, x);
      for (let c = 0; c < 8; c++) {
        expect(Array.from(encRev.eps[0].data.subarray(c * hw, (c + 1) * hw))).to.deep.equal(Array.from(sq.data.subarray((7 - c) * hw, (8 - c) * hw)));
      }
      const shuf = cfg({ ...base, permutation: 'shuffle', lu: false });
      const indices = [3, 0, 6, 1, 7, 2, 5, 4];
      const shuffles = new Map([[stepPrefix(shuf, 0, 0), indices]]);
      const encShuf = refEncode({ config: shuf, params: identityParams(shuf), shuffles }, x);
      for (let c = 0; c < 8; c++) {
        const src = indices[c];
        expect(Array.from(encShuf.eps[0].data.subarray(c * hw, (c + 1) * hw))).to.deep.equal(Array.from(sq.data.subarray(src * hw, (src + 1) * hw)));
      }
      const back = refDecode({ config: shuf, params: identityParams(shuf), shuffles }, encShuf.eps, 1);
      expect(maxAbsDiff(back.data, x.data)).to.equal(0);
    });

    it('actnorm alone: y = (x + bias) * exp(logs), logdet = H*W*sum(logs)', () => {
      const config = cfg({ ...base, permutation: 'reverse', lu: false });
      const params = identityParams(config);
      const p = stepPrefix(config, 0, 0);
      const bias = Float64Array.from({ length: 8 }, (_, c) => 0.1 * c - 0.3);
      const logs = Float64Array.from({ length: 8 }, (_, c) => 0.05 * c - 0.2);
      params.set(`${p}.actnorm.bias`, { shape: [1, 8, 1, 1], data: bias });
      params.set(`${p}.actnorm.logs`, { shape: [1, 8, 1, 1], data: logs });
      const enc = refEncode({ config, params }, x);
      const sq = squeeze(x);
      for (let c = 0; c < 8; c++)
        for (let k = 0; k < 4; k++) {
          const src = 7 - c; // reverse after actnorm
          const expected = (sq.data[src * 4 + k] + bias[src]) * Math.exp(logs[src]);
          expect(enc.eps[0].data[c * 4 + k]).to.be.closeTo(expected, 1e-15);
        }
      expect(enc.logdet[0]).to.be.closeTo(4 * logs.reduce((a, b) => a + b, 0), 1e-14);
    });

    /** Sets a constant-output Conv2dZeros (zero weight): output channel c = bias[c] * exp(3 logs[c]). */
    function constantZerosConv(params: Map<string, HostTensor>, prefix: string, bias: number[], logs: number[]): number[] {
      params.set(`${prefix}.conv.bias`, { shape: [bias.length], data: Float64Array.from(bias) });
      params.set(`${prefix}.logs`, { shape: [logs.length, 1, 1], data: Float64Array.from(logs) });
      return bias.map((b, c) => b * Math.exp(3 * logs[c]));
    }

    for (const coupling of ['additive', 'affine'] as const) {
      it(`${coupling} coupling: z2' = ${coupling === 'additive' ? 'z2 + h' : '(z2 + h[0::2]) * sigmoid(h[1::2] + 2)'}`, () => {
        const config = cfg({ ...base, coupling, permutation: 'invconv', lu: false });
        const params = identityParams(config);
        const p = stepPrefix(config, 0, 0);
        const out = coupling === 'additive' ? 4 : 8;
        const h = constantZerosConv(params, `${p}.block.4`, Array.from({ length: out }, (_, c) => 0.3 - 0.1 * c), Array.from({ length: out }, (_, c) => 0.02 * c - 0.05));
        const enc = refEncode({ config, params }, x);
        const sq = squeeze(x).data;
        let logdet = 0;
        for (let c = 0; c < 8; c++)
          for (let k = 0; k < 4; k++) {
            let expected = sq[c * 4 + k];
            if (c >= 4) {
              const j = c - 4;
              if (coupling === 'additive') expected += h[j];
              else {
                const scale = 1 / (1 + Math.exp(-(h[2 * j + 1] + 2)));
                expected = (expected + h[2 * j]) * scale;
                logdet += Math.log(scale);
              }
            }
            expect(enc.eps[0].data[c * 4 + k]).to.be.closeTo(expected, 1e-15);
          }
        expect(enc.logdet[0]).to.be.closeTo(logdet, 1e-13);
      });
    }

    it('affine coupling with scaleFloor: scale = max(sigmoid(h[1::2] + 2), floor), exactly inverted', () => {
      const floor = 0.6;
      const config = cfg({ ...base, coupling: 'affine', permutation: 'invconv', lu: false, scaleFloor: floor });
      const params = identityParams(config);
      const p = stepPrefix(config, 0, 0);
      // Scale logits (h + 2) -2.5 (sigmoid 0.08, below the floor) and 0.5 (sigmoid 0.62) alternate.
      const h = constantZerosConv(params, `${p}.block.4`, Array.from({ length: 8 }, (_, c) => (c % 2 ? (c % 4 === 1 ? -4.5 : -1.5) : 0.1 * c)), Array(8).fill(0));
      const enc = refEncode({ config, params }, x);
      const sq = squeeze(x).data;
      let logdet = 0;
      let floored = 0;
      for (let c = 4; c < 8; c++) {
        const j = c - 4;
        const sigmoid = 1 / (1 + Math.exp(-(h[2 * j + 1] + 2)));
        const scale = sigmoid < floor ? floor : sigmoid;
        if (sigmoid < floor) floored++;
        for (let k = 0; k < 4; k++) {
          expect(enc.eps[0].data[c * 4 + k]).to.be.closeTo((sq[c * 4 + k] + h[2 * j]) * scale, 1e-15);
          logdet += Math.log(scale);
        }
      }
      expect(floored).to.equal(2);
      expect(enc.logdet[0]).to.be.closeTo(logdet, 1e-13);
      expect(maxAbsDiff(refDecode({ config, params }, enc.eps, 1).data, x.data)).to.be.below(1e-14);
    });

    it('split prior: mean = even, logs = odd channels; top prior: mean = first, logs = second half (+ y projection); y_logits', () => {
      const config = cfg({ ...base, imageShape: [1, 4, 4], L: 2, permutation: 'invconv', lu: false, learnTop: true, numClasses: 3 });
      const params = identityParams(config);
      const xs: HostTensor = { shape: [1, 1, 4, 4], data: Float64Array.from({ length: 16 }, (_, k) => 0.37 - k / 20) };
      const hs = constantZerosConv(params, `flow.layers.${config.K + 1}.conv`, [0.1, -0.2, 0.3, 0.05], [0.01, -0.03, 0.02, 0.04]);
      const ht = constantZerosConv(params, 'learn_top_fn', [0.2, -0.1, 0.05, 0.3, -0.25, 0.15, 0.1, -0.05, 0.12, -0.3, 0.07, 0.01, 0.2, -0.15, 0.05, 0.09], Array(16).fill(0.03));
      const W = Float64Array.from({ length: 16 * 3 }, (_, k) => Math.sin(k) * 0.2);
      params.set('project_ycond.linear.weight', { shape: [16, 3], data: W });
      const Wc = Float64Array.from({ length: 3 * 8 }, (_, k) => Math.cos(k) * 0.3);
      params.set('project_class.linear.weight', { shape: [3, 8], data: Wc });
      params.set('project_class.linear.bias', { shape: [3], data: Float64Array.from([0.1, -0.2, 0.3]) });
      params.set('project_class.logs', { shape: [3], data: Float64Array.from([0.05, 0, -0.05]) });
      const y: HostTensor = { shape: [1, 3], data: Float64Array.from([0, 1, 0]) };
      const enc = refEncode({ config, params }, xs, y);

      // Level 1: squeeze [1,4,4] -> [4,2,2]; z1 = channels 0,1, z2 = channels 2,3 (identity step).
      const s1 = squeeze(xs).data;
      for (let j = 0; j < 2; j++)
        for (let k = 0; k < 4; k++) {
          const expected = (s1[(2 + j) * 4 + k] - hs[2 * j]) * Math.exp(-hs[2 * j + 1]);
          expect(enc.eps[0].data[j * 4 + k]).to.be.closeTo(expected, 1e-15);
        }
      // Level 2: squeeze z1 [2,2,2] -> [8,1,1]; h = learn_top + W[:, 1] (y = class 1).
      const z1: HostTensor = { shape: [1, 2, 2, 2], data: s1.slice(0, 8) };
      const top = squeeze(z1).data;
      const h = ht.map((v, c) => v + W[c * 3 + 1]);
      for (let c = 0; c < 8; c++) {
        expect(enc.eps[1].data[c]).to.be.closeTo((top[c] - h[c]) * Math.exp(-h[8 + c]), 1e-14);
      }
      for (let k = 0; k < 3; k++) {
        let s = [0.1, -0.2, 0.3][k];
        for (let c = 0; c < 8; c++) s += Wc[k * 8 + c] * top[c];
        expect(enc.yLogits!.data[k]).to.be.closeTo(s * Math.exp(3 * [0.05, 0, -0.05][k]), 1e-15);
      }
    });

    it('invconv: y[o] = sum_i W[o,i] x[i]; LU form W = P (L + I) (U + diag(sign_s exp(log_s)))', () => {
      const plain = cfg({ ...base, permutation: 'invconv', lu: false });
      const lu = cfg({ ...base, permutation: 'invconv', lu: true });
      const p = stepPrefix(plain, 0, 0);
      const C = 8;
      const perm = [2, 0, 7, 5, 1, 3, 6, 4];
      const P = new Float64Array(C * C);
      perm.forEach((col, row) => (P[row * C + col] = 1));
      const lower = Float64Array.from({ length: C * C }, (_, k) => 0.3 * Math.sin(3 * k + 1));
      const upper = Float64Array.from({ length: C * C }, (_, k) => 0.3 * Math.cos(5 * k + 2));
      const logS = Float64Array.from({ length: C }, (_, k) => 0.1 * k - 0.35);
      const signS = Float64Array.from({ length: C }, (_, k) => (k % 3 === 0 ? -1 : 1));
      // W[o, i] = sum_{a, b} P[o, a] Lfull[a, b] Ufull[b, i]
      const Lfull = (a: number, b: number) => (a === b ? 1 : b < a ? lower[a * C + b] : 0);
      const Ufull = (b: number, i: number) => (b === i ? signS[b] * Math.exp(logS[b]) : i > b ? upper[b * C + i] : 0);
      const W = new Float64Array(C * C);
      for (let o = 0; o < C; o++)
        for (let i = 0; i < C; i++)
          for (let a = 0; a < C; a++) for (let b = 0; b < C; b++) W[o * C + i] += P[o * C + a] * Lfull(a, b) * Ufull(b, i);

      const plainParams = identityParams(plain);
      plainParams.set(`${p}.invconv.weight`, { shape: [C, C], data: W });
      const luParams = identityParams(lu);
      luParams.set(`${p}.invconv.p`, { shape: [C, C], data: P });
      luParams.set(`${p}.invconv.lower`, { shape: [C, C], data: lower });
      luParams.set(`${p}.invconv.upper`, { shape: [C, C], data: upper });
      luParams.set(`${p}.invconv.log_s`, { shape: [C], data: logS });
      luParams.set(`${p}.invconv.sign_s`, { shape: [C], data: signS });
      const encPlain = refEncode({ config: plain, params: plainParams }, x);
      const encLu = refEncode({ config: lu, params: luParams }, x);

      const sq = squeeze(x).data;
      for (let o = 0; o < C; o++)
        for (let k = 0; k < 4; k++) {
          let expected = 0;
          for (let i = 0; i < C; i++) expected += W[o * C + i] * sq[i * 4 + k];
          expect(encPlain.eps[0].data[o * 4 + k]).to.be.closeTo(expected, 1e-14);
          expect(encLu.eps[0].data[o * 4 + k]).to.be.closeTo(expected, 1e-14);
        }
      const sumLogS = logS.reduce((s, v) => s + v, 0);
      expect(encLu.logdet[0]).to.be.closeTo(4 * sumLogS, 1e-13);
      expect(encPlain.logdet[0]).to.be.closeTo(4 * sumLogS, 1e-12); // log|det W| = sum(log_s)
    });

    it('rejects missing parameters, wrong shapes and missing labels', () => {
      const config = cfg({ ...base, permutation: 'invconv', lu: true, numClasses: 3 });
      const params = randomParams(config, 1);
      expect(() => refEncode({ config, params }, x)).to.throw(/needs y/);
      const broken = new Map(params);
      broken.delete('prior_h');
      expect(() => refEncode({ config, params: broken }, x, randomOneHot(config, 1, 2))).to.throw(/prior_h/);
      const reshaped = new Map(params);
      reshaped.set('prior_h', { shape: [16, 1, 1], data: new Float64Array(16) });
      expect(() => refEncode({ config, params: reshaped }, x, randomOneHot(config, 1, 2))).to.throw(/prior_h has shape/);
      const shuf = cfg({ ...base, permutation: 'shuffle', lu: false });
      expect(() => refEncode({ config: shuf, params: randomParams(shuf, 1) }, x)).to.throw(/shuffle/);
    });
  });
});
