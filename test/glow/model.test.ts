import { expect } from 'chai';
import { GlowConfig } from '../../src/glow/config.js';
import { exportGraphs } from '../../src/glow/export.js';
import { buildDecode, buildEncode, GlowWeights } from '../../src/glow/model.js';
import { Feeds, maxAbsDiff, maxRelDiff, runGraph } from '../helpers.js';
import { refDecode, refEncode } from '../reference/glow64.js';
import { randomImages, randomOneHot, randomParams, randomShuffles } from '../../support/random-params.js';

const base: GlowConfig = {
  imageShape: [2, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};

// Relative bounds on the per-example sums, a few times the worst float32 error measured over the
// variants below (bits/dim 1.2e-7, logdet 3.5e-7, the same with AVX-512, AVX2 or SSE4.2 kernels).
// They must stay tight enough to catch a log|det W| off by 2e-5 in one invertible 1x1 conv: that
// moves the logdet by 4e-5 and bits/dim by 1.4e-6 relative.
const BPD_REL = 1e-6;
const LOGDET_REL = 2e-6;

describe('glow encode/decode against the float64 reference', () => {
  const variants: Partial<GlowConfig>[] = [
    {}, { coupling: 'additive' }, { lu: false }, { permutation: 'reverse' }, { permutation: 'shuffle' },
    { learnTop: false }, { numClasses: 3 }, { L: 1 }, { L: 3, imageShape: [1, 8, 8] },
    // Near the typical scale sigmoid(2) = 0.88: the floor binds on part of the elements.
    { scaleFloor: 0.88 },
    // Bounded scale, spectral normalisation (random unit u, v estimate sigma low, so a small
    // bound makes it bind), both, and normalisation of an additive coupling's network.
    { scaleBound: 0.5 }, { lipschitz: 0.02 }, { scaleBound: 0.5, lipschitz: 0.02 }, { coupling: 'additive', lipschitz: 0.02 },
    // Split priors with a per-channel scale, gray, and RGB on two splits with a class-conditional top.
    { constantSplitScale: true }, { constantSplitScale: true, L: 3, imageShape: [3, 8, 8], numClasses: 3 },
  ];
  for (const variant of variants) {
    for (const fold of [true, false]) {
      it(`${JSON.stringify(variant)} fold=${fold}`, async () => {
        const config = { ...base, ...variant };
        const seed = 7;
        const model: GlowWeights = { config, params: randomParams(config, seed), shuffles: randomShuffles(config, seed) };
        const x = randomImages(config, 3, 11);
        const y = config.numClasses ? randomOneHot(config, 3, 5) : undefined;
        const ref = refEncode({ config, params: model.params as never, shuffles: model.shuffles as never }, x, y);
        const feeds: Feeds = y ? { x, y } : { x };
        const enc = await runGraph(buildEncode(model, { fold }), feeds);
        ref.eps.forEach((e, i) => expect(maxAbsDiff(enc[`eps_${i + 1}`].data, e.data), `eps_${i + 1}`).to.be.below(1e-4));
        expect(maxRelDiff(enc.bpd.data, ref.bpd), 'bpd').to.be.below(BPD_REL);
        if (config.scaleFloor) {
          const unbounded = refEncode({ config: { ...config, scaleFloor: 0 }, params: model.params as never }, x, y);
          expect(maxAbsDiff(unbounded.bpd, ref.bpd), 'the floor binds somewhere').to.be.above(1e-3);
        }
        if (config.lipschitz) {
          const { lipschitz: _, ...free } = config;
          const unnormalised = refEncode({ config: free, params: model.params as never }, x, y);
          expect(maxAbsDiff(unnormalised.bpd, ref.bpd), 'the normalisation binds').to.be.above(1e-4);
        }
        if (config.constantSplitScale) {
          const { constantSplitScale: _, ...free } = config;
          const predicted = refEncode({ config: free, params: model.params as never, shuffles: model.shuffles as never }, x, y);
          expect(maxAbsDiff(predicted.bpd, ref.bpd), 'the constant scale binds').to.be.above(1e-4);
        }
        expect(maxRelDiff(enc.logdet.data, ref.logdet), 'logdet').to.be.below(LOGDET_REL);
        if (y) expect(maxAbsDiff(enc.y_logits.data, ref.yLogits!.data), 'y_logits').to.be.below(1e-4);
        const decFeeds: Record<string, never> = {} as never;
        ref.eps.forEach((e, i) => ((decFeeds as Record<string, unknown>)[`eps_${i + 1}`] = enc[`eps_${i + 1}`]));
        const dec = await runGraph(buildDecode(model, { fold }), { ...decFeeds, temperature: 1, ...(y ? { y } : {}) });
        expect(maxAbsDiff(dec.x.data, x.data), 'round trip').to.be.below(1e-4);
        const dec07 = await runGraph(buildDecode(model, { fold }), { ...decFeeds, temperature: 0.7, ...(y ? { y } : {}) });
        const ref07 = refDecode({ config, params: model.params as never, shuffles: model.shuffles as never }, ref.eps, 0.7, y);
        expect(maxAbsDiff(dec07.x.data, ref07.data), 'decode T=0.7').to.be.below(1e-4);
        // T = 0 ignores eps: every level takes its prior mean.
        const sevens = Object.fromEntries(ref.eps.map((e, i) => [`eps_${i + 1}`, { shape: e.shape, data: e.data.map(() => 7) }]));
        const dec0 = await runGraph(buildDecode(model, { fold }), { ...sevens, temperature: 0, ...(y ? { y } : {}) });
        const means = refDecode({ config, params: model.params as never, shuffles: model.shuffles as never }, ref.eps.map((e) => ({ shape: e.shape, data: new Float64Array(e.data.length) })), 1, y);
        expect(maxAbsDiff(dec0.x.data, means.data), 'decode T=0').to.be.below(1e-4);
      });
    }
  }
});

describe('affine coupling log-det where the scale underflows float32', () => {
  // scale = sigmoid(t) with t near -198: below float32's smallest normal, where Log(Sigmoid(t))
  // would be -inf. The folded graph takes t there, the literal one -softplus(-t).
  const config = { ...base, K: 1, L: 1, learnTop: false };
  const params = randomParams(config, 3);
  const net = 'flow.layers.1.block.4';
  params.get(`${net}.logs`)!.data.fill(0);
  params.get(`${net}.conv.bias`)!.data.forEach((_, i, b) => (b[i] = i % 2 ? -200 : 0.1));
  const model: GlowWeights = { config, params };
  const x = randomImages(config, 2, 4);
  const ref = refEncode({ config, params: params as never }, x);

  for (const fold of [true, false]) {
    it(`fold=${fold}: logdet equals the float64 reference`, async () => {
      const enc = await runGraph(buildEncode(model, { fold }), { x });
      expect(Math.max(...ref.logdet.map(Math.abs))).to.be.above(1e4);
      enc.logdet.data.forEach((v, i) => expect(v, `example ${i}`).to.be.closeTo(ref.logdet[i], 1e-5 * Math.abs(ref.logdet[i])));
    });
  }

  it('float16 export keeps it finite (float16 cannot hold the float32 threshold)', async () => {
    const { encode } = exportGraphs(model, { dtype: 'float16' });
    expect(encode.nodes.map((n) => n.op)).to.include('Softplus');
    const enc = await runGraph(encode, { x });
    enc.logdet.data.forEach((v, i) => expect(v, `example ${i}`).to.be.closeTo(ref.logdet[i], 2e-3 * Math.abs(ref.logdet[i])));
  });
});

describe('spectral normalisation folds away on export', () => {
  // The exported graphs of a normalised model are those of the same model without it, weights
  // aside: sigma is folded into the conv weights on the host, no power-iteration vector remains.
  for (const variant of [{}, { scaleBound: 0.5 }] as Partial<GlowConfig>[]) {
    it(`${JSON.stringify(variant)}: same ops, no u or v`, () => {
      const plain: GlowWeights = { config: { ...base, ...variant }, params: randomParams({ ...base, ...variant }, 5) };
      const config = { ...base, ...variant, lipschitz: 0.02 };
      const normalised: GlowWeights = { config, params: randomParams(config, 5) };
      for (const kind of ['encode', 'decode'] as const) {
        const opsOf = (w: GlowWeights) => exportGraphs(w)[kind].nodes.map((n) => n.op).sort();
        expect(opsOf(normalised), kind).to.deep.equal(opsOf(plain));
        const names = [...exportGraphs(normalised)[kind].initializers.keys()].map((v) => v.name);
        expect(names.filter((n) => /weight_[uv]/.test(n)), kind).to.deep.equal([]);
      }
    });
  }
});
