// The benchmark's FLOP count (derived from the config) against the convolutions the exported
// graphs really contain, counted node by node from their weight and output shapes.

import { expect } from 'chai';
import { Graph } from '../../src/builder/graph.js';
import { GlowConfig } from '../../src/glow/config.js';
import { convFlopsPerImage } from '../../src/glow/flops.js';
import { buildDecode, buildEncode } from '../../src/glow/model.js';
import { randomParams, randomShuffles } from '../../support/random-params.js';

function graphConvFlops(graph: Graph): number {
  let macs = 0;
  for (const node of graph.nodes) {
    if (node.op !== 'Conv') continue;
    const [outputs, inputsPerGroup, kH, kW] = node.inputs[1]!.staticShape();
    const [, , oH, oW] = node.outputs[0].shape as number[];
    macs += outputs * inputsPerGroup * kH * kW * oH * oW;
  }
  return 2 * macs;
}

describe('convFlopsPerImage', () => {
  const base: GlowConfig = {
    imageShape: [3, 16, 16], K: 3, L: 3, hiddenChannels: 12, coupling: 'affine', permutation: 'invconv',
    lu: true, learnTop: true, numClasses: 0, nBits: 8, actnormScale: 1,
  };
  const variants: Partial<GlowConfig>[] = [{}, { coupling: 'additive' }, { permutation: 'reverse' }, { L: 1, imageShape: [1, 8, 8] }, { numClasses: 4 }];
  for (const variant of variants) {
    it(`${JSON.stringify(variant)}: equals the multiply-adds of the folded encode and decode graphs`, () => {
      const config = { ...base, ...variant };
      const w = { config, params: randomParams(config, 1), shuffles: randomShuffles(config, 1) };
      const expected = convFlopsPerImage(config);
      expect(graphConvFlops(buildEncode(w, { batch: 1 }))).to.equal(expected);
      expect(graphConvFlops(buildDecode(w, { batch: 1 }))).to.equal(expected);
    });
  }
});
