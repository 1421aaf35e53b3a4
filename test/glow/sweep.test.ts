// A sweep of random small configs covering every option: exact inversion in ONNX Runtime, and
// folded and unfolded graphs agreeing.

import { expect } from 'chai';
import { Coupling, GlowConfig, Permutation, validateConfig } from '../../src/glow/config.js';
import { buildDecode, buildEncode, GlowWeights } from '../../src/glow/model.js';
import { Rng } from '../../src/math/rng.js';
import { Feeds, maxAbsDiff, runGraph } from '../helpers.js';
import { randomImages, randomOneHot, randomParams, randomShuffles } from '../../support/random-params.js';

function randomConfig(rng: Rng, index: number): GlowConfig {
  const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)];
  const L = 1 + rng.int(3);
  const side = 2 ** L * (1 + rng.int(2));
  return validateConfig({
    imageShape: [pick([1, 2, 3]), side, pick([side, 2 ** L])],
    K: 1 + rng.int(3),
    L,
    hiddenChannels: 2 + rng.int(7),
    // Cycle through the discrete options so that every one appears regardless of the draw.
    coupling: (['affine', 'additive'] as Coupling[])[index % 2],
    permutation: (['invconv', 'shuffle', 'reverse'] as Permutation[])[index % 3],
    lu: index % 4 < 2,
    learnTop: index % 5 !== 0,
    numClasses: index % 3 === 1 ? 2 + rng.int(3) : 0,
    nBits: 1 + rng.int(8),
    actnormScale: 1,
    // A floor near the typical scale sigmoid(2) = 0.88 binds on part of the elements.
    ...(index % 4 === 2 ? { scaleFloor: 0.88 } : {}),
  });
}

describe('random config sweep (ONNX Runtime CPU)', function () {
  this.timeout(120000);
  const rng = new Rng(2024);
  const configs = Array.from({ length: 32 }, (_, i) => randomConfig(rng, i));

  it('covers every option of GlowConfig', () => {
    const seen = (f: (c: GlowConfig) => unknown) => new Set(configs.map(f)).size;
    expect(seen((c) => c.coupling)).to.equal(2);
    expect(seen((c) => c.permutation)).to.equal(3);
    expect(seen((c) => c.lu)).to.equal(2);
    expect(seen((c) => c.learnTop)).to.equal(2);
    expect(seen((c) => c.numClasses > 0)).to.equal(2);
    expect(seen((c) => c.L)).to.equal(3);
    expect(seen((c) => c.imageShape[0])).to.equal(3);
    expect(seen((c) => c.scaleFloor ?? 0)).to.equal(2);
  });

  configs.forEach((config, i) => {
    it(`config ${i}: ${JSON.stringify(config)}`, async () => {
      const model: GlowWeights = { config, params: randomParams(config, 100 + i), shuffles: randomShuffles(config, 100 + i) };
      const N = 2;
      const x = randomImages(config, N, 200 + i);
      const y = config.numClasses ? randomOneHot(config, N, 300 + i) : undefined;
      const feeds: Feeds = y ? { x, y } : { x };
      const folded = await runGraph(buildEncode(model), feeds);
      const literal = await runGraph(buildEncode(model, { fold: false }), feeds);
      for (const name of Object.keys(literal)) {
        expect(maxAbsDiff(folded[name].data, literal[name].data), `folded vs unfolded ${name}`).to.be.at.most(1e-5 * Math.max(1, ...literal[name].data.map(Math.abs)));
      }
      const decodeFeeds: Feeds = { temperature: 1, ...(y ? { y } : {}) };
      for (let l = 1; l <= config.L; l++) decodeFeeds[`eps_${l}`] = folded[`eps_${l}`];
      for (const fold of [true, false]) {
        const decoded = await runGraph(buildDecode(model, { fold }), decodeFeeds);
        expect(maxAbsDiff(decoded.x.data, x.data), `round trip fold=${fold}`).to.be.at.most(1e-4);
      }
    });
  });
});
