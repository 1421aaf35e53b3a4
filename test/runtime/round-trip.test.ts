// GlowModel's helpers that draw pictures from input images (reconstruct, interpolateImages,
// manipulateImage) report each input's round trip, so that a library user cannot show the model's
// decode of an image it does not invert as that image. The shipped model misses on noise and
// inverted digits (README's stress table) and inverts test digits.

import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GlowConfig } from '../../src/glow/config.js';
import { exportModel } from '../../src/glow/export.js';
import { InputError } from '../../src/runtime/core.js';
import { interpolate, oneHotRows, pick } from '../../src/runtime/generate.js';
import { writeFilesAtomic } from '../../src/io/files.js';
import { loadMnist } from '../../src/runtime/mnist.js';
import { GlowRuntime, loadGlowRuntime } from '../../src/runtime/node.js';
import { dequantize } from '../../src/runtime/quantize.js';
import { stressImages } from '../../src/runtime/stress.js';
import { maxAbsDiff } from '../helpers.js';
import { randomImages, randomParams } from '../../support/random-params.js';

const MODEL = fileURLToPath(new URL('../../../models/mnist/', import.meta.url));

/** max |a - b| over each of n images, computed here from the plain encode and decode. */
function perImage(a: Float32Array, b: Float32Array, n: number): number[] {
  const size = a.length / n;
  return Array.from({ length: n }, (_, i) => maxAbsDiff(a.subarray(i * size, (i + 1) * size), b.subarray(i * size, (i + 1) * size)));
}

describe('GlowModel helpers report the round trip of their input images', function () {
  this.timeout(120000);
  let runtime: GlowRuntime;
  const digits = loadMnist('test', 2).pixels;
  const [digit, digit2] = [digits.subarray(0, 784), digits.subarray(784)];
  const noise = stressImages('noise', 784, 1, 1);
  const inverted = stressImages('inverted', 784, 1, 0, digit);
  const xOf = (...images: Uint8Array[]) => dequantize(Uint8Array.from(images.flatMap((i) => [...i])), 5, 'center');

  before(async () => {
    runtime = await loadGlowRuntime(MODEL, { executionProviders: ['cpu'] });
  });
  after(async () => {
    await runtime?.model.release();
  });

  it('reconstruct: errors as the plain calls measure them, the failing images named, the float32 tolerance', async () => {
    const x = xOf(digit, noise, inverted, digit2);
    const shape = [4, 1, 28, 28];
    const progress: [number, number][] = [];
    const r = await runtime.model.reconstruct(x, shape, undefined, (done, total) => progress.push([done, total]));
    const plain = await runtime.model.decode((await runtime.model.encode(x, shape)).eps, 1);
    expect(maxAbsDiff(r.x, plain), 'x is decode(encode(x))').to.be.below(1e-6);
    const expected = perImage(x, plain, 4);
    console.log(`      per-image round trip: ${expected.map((e) => e.toExponential(1)).join(', ')}`);
    // Per-image errors of the same decode: equal up to the float32 arithmetic of the two runs.
    Array.from(r.roundTrip.errors).forEach((e, i) => expect(Math.abs(e - expected[i]), `image ${i}`).to.be.at.most(1e-6 + 1e-3 * expected[i]));
    expect(r.roundTrip.tolerance).to.equal(1e-3);
    expect(r.roundTrip.failing).to.deep.equal([1, 2]);
    expect(r.roundTrip.roundTrips).to.equal(false);
    expect(r.roundTrip.errors[0]).to.be.below(1e-4);
    expect(r.roundTrip.errors[1]).to.be.above(1e-3);
    expect(progress.at(-1)).to.deep.equal([8, 8]);

    const good = await runtime.model.reconstruct(xOf(digit), [1, 1, 28, 28]);
    expect(good.roundTrip.roundTrips).to.equal(true);
    expect(good.roundTrip.failing).to.deep.equal([]);
  });

  it('interpolateImages: the path between the reconstructions, with the round trip of both ends', async () => {
    const { x, roundTrip } = await runtime.model.interpolateImages(xOf(digit, noise), 4);
    expect(roundTrip.failing).to.deep.equal([1]);
    expect(roundTrip.errors).to.have.length(2);
    const ends = await runtime.model.reconstruct(xOf(digit, noise), [2, 1, 28, 28]);
    expect(maxAbsDiff(x.subarray(0, 784), ends.x.subarray(0, 784)), 'starts at the first reconstruction').to.be.below(1e-5);
    expect((await runtime.model.interpolateImages(xOf(digit, digit2), 3)).roundTrip.roundTrips, 'two test digits').to.equal(true);
    let error: unknown;
    await runtime.model.interpolateImages(xOf(digit), 4).catch((e) => (error = e));
    expect(error).to.be.instanceOf(InputError);
  });

  it('manipulateImage: alpha 0 is the reconstruction; the image\'s round trip comes with the pictures', async () => {
    const direction = pick(runtime.config, (await runtime.model.encode(xOf(digit2), [1, 1, 28, 28])).eps, 0);
    const { x, roundTrip } = await runtime.model.manipulateImage(xOf(inverted), direction, [0, 0.5]);
    expect(x.length).to.equal(2 * 784);
    expect(roundTrip.failing).to.deep.equal([0]);
    const back = await runtime.model.reconstruct(xOf(inverted), [1, 1, 28, 28]);
    expect(maxAbsDiff(x.subarray(0, 784), back.x), 'alpha 0').to.be.below(1e-5);
    expect((await runtime.model.manipulateImage(xOf(digit), direction, [1])).roundTrip.roundTrips, 'a test digit').to.equal(true);
    let error: unknown;
    await runtime.model.manipulateImage(xOf(digit), direction.map((d) => Float32Array.from([...d, ...d])), [1]).catch((e) => (error = e));
    expect((error as Error).message).to.equal('a direction is one latent, got 2');
  });

  it('a class-conditional model\'s interpolation moves the label with the latents: each end is its image\'s reconstruction', async () => {
    const config: GlowConfig = {
      imageShape: [1, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'additive', permutation: 'invconv',
      lu: true, learnTop: true, numClasses: 3, nBits: 5, actnormScale: 1,
    };
    const dir = mkdtempSync(join(tmpdir(), 'glow-round-trip-'));
    writeFilesAtomic(dir, { ...exportModel({ config, params: randomParams(config, 3) }) });
    const conditional = await loadGlowRuntime(dir);
    try {
      const x = Float32Array.from(randomImages(config, 2, 4).data);
      const y = oneHotRows(3, [0, 2]);
      const { x: path, roundTrip } = await conditional.model.interpolateImages(x, 3, y);
      expect(roundTrip.roundTrips).to.equal(true);
      const encoded = await conditional.model.encode(x, [2, 1, 8, 8], y);
      const ends = await conditional.model.decode(encoded.eps, 1, y);
      expect(maxAbsDiff(path.subarray(0, 64), ends.subarray(0, 64)), 'A with its label').to.be.below(1e-5);
      expect(maxAbsDiff(path.subarray(128), ends.subarray(64)), 'B with its label').to.be.below(1e-5);
      const middle = interpolate(config, pick(config, encoded.eps, 0), pick(config, encoded.eps, 1), 3);
      const half = await conditional.model.decode(pick(config, middle, 1), 1, Float32Array.of(0.5, 0, 0.5));
      expect(maxAbsDiff(path.subarray(64, 128), half), 'the middle, with half of each label').to.be.below(1e-5);
    } finally {
      await conditional.model.release();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
