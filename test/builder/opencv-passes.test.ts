// The OpenCV passes (builder/passes/opencv.ts) change forms, not results: the --target opencv
// graphs against the default export, both evaluated in float64 by the builder's interpreter
// (no OpenCV needed; test/interop/opencv.test.ts runs them in OpenCV), and each pass returns a
// graph without its pattern as it is.

import { expect } from 'chai';
import { evaluateGraph } from '../../src/builder/evaluate.js';
import { Tensor } from '../../src/builder/graph.js';
import { classPriorPerPixel, constantsWithoutBatchAxis, floorAsMax, floorAsRelu, reduceSumAsMean, withoutTemperature } from '../../src/builder/passes/index.js';
import { GlowConfig, latentShape } from '../../src/glow/config.js';
import { exportGraph } from '../../src/glow/export.js';
import { GlowWeights } from '../../src/glow/model.js';
import { Rng } from '../../src/math/rng.js';
import { maxScaledDiff } from '../helpers.js';
import { randomImages, randomOneHot, randomParams, randomShuffles } from '../../support/random-params.js';

const N = 2;
const T = 0.7;
const base: GlowConfig = {
  imageShape: [3, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 3, nBits: 5, actnormScale: 1,
};
/** The forms differ only in rounding order: the per-pixel prior's bias, the coupling log-det. */
const TOLERANCE = 1e-6;

const f64 = (shape: number[], data: ArrayLike<number>): Tensor => ({ dtype: 'float32', shape, data: Float64Array.from(data) });

describe('OpenCV graph passes', () => {
  for (const [label, config] of [['with a scale floor', { ...base, scaleFloor: 0.2 }], ['without one', base]] as [string, GlowConfig][]) {
    it(`encode and decode compute what the default export does, ${label}`, () => {
      const w: GlowWeights = { config, params: randomParams(config, 21), shuffles: randomShuffles(config, 21) };
      const x = randomImages(config, N, 3);
      const y = randomOneHot(config, N, 4);
      const encodeFeeds = { x: f64(x.shape, x.data), y: f64(y.shape, y.data) };
      const want = evaluateGraph(exportGraph(w, 'encode', { batch: N }), encodeFeeds);
      const got = evaluateGraph(exportGraph(w, 'encode', { batch: N, target: 'opencv' }), encodeFeeds);
      for (const name of Object.keys(want)) expect(maxScaledDiff(got[name].data, want[name].data), name).to.be.below(TOLERANCE);

      const rng = new Rng(5);
      const eps = Array.from({ length: config.L }, (_, i) => {
        const shape = [N, ...latentShape(config, i + 1)];
        return f64(shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()));
      });
      const named = (scale: number) => Object.fromEntries(eps.map((t, i) => [`eps_${i + 1}`, f64(t.shape, Array.from(t.data, (v) => v * scale))]));
      const wantX = evaluateGraph(exportGraph(w, 'decode', { batch: N }), { ...named(1), y: encodeFeeds.y, temperature: f64([], [T]) }).x;
      const gotX = evaluateGraph(exportGraph(w, 'decode', { batch: N, target: 'opencv' }), { ...named(T), y: encodeFeeds.y }).x;
      expect(maxScaledDiff(gotX.data, wantX.data)).to.be.below(TOLERANCE);
    });
  }

  it('each pass returns a graph without its pattern as it is (an additive unconditional decode)', () => {
    const config: GlowConfig = { ...base, coupling: 'additive', numClasses: 0 };
    const w: GlowWeights = { config, params: randomParams(config, 2), shuffles: randomShuffles(config, 2) };
    const decode = exportGraph(w, 'decode', { batch: 1, webgpuConvPadding: false });
    const untouched = withoutTemperature(decode);
    for (const pass of [floorAsMax, floorAsRelu, classPriorPerPixel, reduceSumAsMean, withoutTemperature]) expect(pass(untouched), pass.name).to.equal(untouched);
    const narrowed = constantsWithoutBatchAxis(untouched);
    expect(narrowed).to.not.equal(untouched);
    expect(constantsWithoutBatchAxis(narrowed)).to.equal(narrowed);
  });
});
