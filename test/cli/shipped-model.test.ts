// The model in models/mnist is what `npm start` runs and what the README reports: its graphs must
// be the export of its own weights (not a stale export), and it must reach the bits/dim and the
// round trip the README claims for it.

import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { evaluateGraph } from '../../src/builder/evaluate.js';
import type { Tensor } from '../../src/builder/graph.js';
import { importWeights } from '../../src/glow/import/index.js';
import { buildDecode, buildEncode } from '../../src/glow/model.js';
import { Rng } from '../../src/math/rng.js';
import { size } from '../../src/math/tensor.js';
import { loadMnist } from '../../src/runtime/mnist.js';
import { dequantize } from '../../src/runtime/quantize.js';
import { stressImages } from '../../src/runtime/stress.js';
import { cli, cliInProcess, maxAbsDiff, writeGrayPng } from '../helpers.js';
import { expectOwnExport, fullTestSetBitsPerDim, stressTable } from './shipped-checks.js';

const MODEL = fileURLToPath(new URL('../../../models/mnist/', import.meta.url));
const README = fileURLToPath(new URL('../../../README.md', import.meta.url));
const RESULTS = fileURLToPath(new URL('../../../docs/results.md', import.meta.url));
const FILES = ['weights.safetensors', 'config.json', 'glow.json', 'encode.onnx', 'decode.onnx'];

function readmeBitsPerDim(): number {
  const claim = /\*\*Test bits\/dim \(8-bit MNIST, all 10,000 test images[^)]*\): (\d\.\d{3}) ± /.exec(readFileSync(README, 'utf8'));
  if (!claim) throw new Error('README.md no longer states the shipped model\'s test bits/dim in the form this test reads');
  return Number(claim[1]);
}

/**
 * The README's bound on the shipped model's float32 round trip, one that holds on every x86-64
 * CPU family measured: which images miss, and by how much, depends on the order in which the
 * CPU's kernels sum (AVX2 and AVX-512 differ), so the README states a count and an error that
 * cover them all rather than one machine's list.
 */
function readmeRoundTripBound(): { images: number; worst: number } {
  const text = readFileSync(README, 'utf8').replace(/\s+/g, ' ');
  const claim = /\*\*Round trip \(all 10,000 test images, float32[^)]*\): at most (\d+) images? off by more than 1e-3, none by more than (\d(?:\.\d+)?e-\d+)/.exec(text);
  if (!claim) throw new Error('README.md no longer states the shipped model\'s round trip in the form this test reads');
  return { images: Number(claim[1]), worst: Number(claim[2]) };
}

/** The images docs/results.md names as the model's ill-conditioned ones, with what float64 shows of them. */
function resultsIllConditioned(): { images: number[]; rounding: number } {
  const text = readFileSync(RESULTS, 'utf8').replace(/\s+/g, ' ');
  const claim = /rounded to float32 and decoded in float64, test images ([\d, and]+?) already come back off by more than (\d(?:\.\d+)?e-\d+)/.exec(text);
  if (!claim) throw new Error('docs/results.md no longer names the shipped model\'s ill-conditioned test images in the form this test reads');
  return { images: claim[1].split(/, | and /).map(Number), rounding: Number(claim[2]) };
}

describe('the shipped model (models/mnist)', function () {
  this.timeout(300000);

  it('is under 20 MB in all', () => {
    const bytes = FILES.reduce((sum, f) => sum + statSync(MODEL + f).size, 0);
    expect(bytes).to.be.below(20 * 1024 * 1024);
  });

  it('ships the export of its own weights, byte for byte', () => {
    expectOwnExport(MODEL);
  });

  it('reaches the bits/dim the README reports on the full MNIST test set', () => {
    // The README gives three decimals; float32 kernels move the mean by about 1e-6.
    expect(fullTestSetBitsPerDim(MODEL)).to.be.closeTo(readmeBitsPerDim(), 5e-4);
  });

  it('inverts the full MNIST test set within the README\'s bound on misses', () => {
    const { images, worst } = readmeRoundTripBound();
    const r = cli('verify', MODEL, '--limit', '10000', '--max-failing', String(images));
    expect(r.code, r.stderr).to.equal(0);
    const match = /round-trip max \|x - decode\(encode\(x\)\)\| = (\S+) /.exec(r.stdout);
    expect(match, r.stdout).to.not.equal(null);
    expect(Number(match![1]), r.stdout).to.be.at.most(worst);
  });

  // Why no CPU gets every image back within 1e-3: in exact (float64) arithmetic the model inverts
  // these images to 1e-11, but its decode magnifies the half-ulp rounding of their latents to
  // float32, which every float32 runtime incurs before it computes anything, some ten thousand
  // times more than on an ordinary image. The misses are the model's conditioning; the kernels
  // only decide which of these images cross the tolerance.
  it('is invertible in float64 on the images docs/results.md names, but ill-conditioned there', () => {
    const { images, rounding } = resultsIllConditioned();
    const { weights } = importWeights(readFileSync(MODEL + 'weights.safetensors'), 'weights.safetensors');
    const encode = buildEncode(weights);
    const decode = buildDecode(weights);
    const { pixels } = loadMnist('test', 10000);
    const x = dequantize(pixels, weights.config.nBits, new Rng(1)); // verify's default noise
    const D = size(weights.config.imageShape);
    const roundTrip = (n: number, latents: (data: Float64Array) => Float64Array) => {
      const image = x.subarray(n * D, (n + 1) * D);
      const encoded = evaluateGraph(encode, { x: { dtype: 'float32', shape: [1, ...weights.config.imageShape], data: image } });
      const feeds: Record<string, Tensor> = { temperature: { dtype: 'float32', shape: [], data: Float64Array.of(1) } };
      for (const name of Object.keys(encoded).filter((k) => k.startsWith('eps_'))) {
        feeds[name] = { ...encoded[name], data: latents(Float64Array.from(encoded[name].data)) };
      }
      return maxAbsDiff(evaluateGraph(decode, feeds).x.data, image);
    };
    const toFloat32 = (data: Float64Array) => data.map(Math.fround);
    for (const n of images) {
      expect(roundTrip(n, (d) => d), `test image ${n}, float64 end to end`).to.be.below(1e-9);
      expect(roundTrip(n, toFloat32), `test image ${n}, float32 latents decoded in float64`).to.be.above(rounding);
    }
    // An ordinary image shrugs the same rounding off.
    expect(roundTrip(0, toFloat32), 'test image 0, float32 latents decoded in float64').to.be.below(rounding / 1000);
  });

  // The stress-set claims of docs/results.md ("Off the data"), at seed 1 and bounds loose enough
  // for any CPU's kernels: the misses off the data are the model's conditioning, and which
  // borderline images cross 1e-3 moves with the kernels' summation order.
  it('misses off the data as docs/results.md states (verify --stress), and diagnose names conditioning as the cause', () => {
    const r = cli('verify', MODEL, '--stress', '--limit', '64', '--max-failing', '64');
    expect(r.code, r.stderr).to.equal(0);
    const table = stressTable(r.stdout);
    expect([...table.keys()], r.stdout).to.deep.equal(['mnist-test', 'inverted', 'noise', 'constant']);
    for (const [set, { images }] of table) expect(images, set).to.equal(64);
    const misses = new Map([...table].map(([set, row]) => [set, row.misses]));
    expect(misses.get('mnist-test'), 'test digits').to.equal(0);
    expect(misses.get('inverted'), 'inverted digits').to.be.at.least(60);
    expect(misses.get('noise'), 'noise').to.equal(64);
    expect(misses.get('constant'), 'constant grey').to.be.within(4, 16);
    // A few noise images encode to some 1e17 bits/dim: printed in exponent form, not 20 digits.
    expect(r.stdout).to.match(/^64 images of noise: bits\/dim \d\.\d{4}e\+\d+ ± \d\.\d{4}e\+\d+,/m);
    // The grey levels that miss are the light ones (level of constant[i]: 255 i / 63).
    const constantMisses = /(\d+) of 64 images do not round-trip within the float32 tolerance 0\.001: (constant\[.*)/.exec(r.stderr);
    for (const m of constantMisses![2].matchAll(/constant\[(\d+)\]/g)) expect(Math.round((255 * Number(m[1])) / 63), 'missing grey level').to.be.at.least(180);

    const d = cli('diagnose', MODEL, '--data', 'noise', '--limit', '16', '--worst', '2');
    expect(d.code, d.stderr).to.equal(0);
    const images = [...d.stdout.matchAll(/float64 end to end (\S+), float64 of the float32 latents (\S+); float32 latents off by (\S+)\n {2}(.*)\n {2}largest gains .*: (\S+) x(\S+)/g)];
    expect(images.length, d.stdout).to.equal(2);
    for (const [, exact, fromFloat32, latentError, verdict, layer, gain] of images) {
      expect(Number(exact), 'float64 end to end').to.be.below(1e-7);
      expect(Number(fromFloat32), 'float64 decode of the float32 latents').to.be.above(1e-3);
      expect(Number(fromFloat32) / Number(latentError), 'amplification').to.be.above(10);
      expect(verdict).to.match(/^conditioning: /);
      expect(layer).to.match(/^flow\.layers\.\d+\/(coupling|sample)$/);
      expect(Number(gain), 'largest layer gain').to.be.above(2);
    }
  });

  it('warns when a user\'s image does not round-trip (reconstruct, interpolate, manipulate), naming it, and only then', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'glow-off-data-'));
    try {
      const [digit, noise, direction] = ['digit.png', 'noise.png', 'one.safetensors'].map((f) => join(dir, f));
      await writeGrayPng(digit, loadMnist('test', 1).pixels, 28);
      await writeGrayPng(noise, stressImages('noise', 784, 1, 1), 28);
      const run = async (...args: string[]) => {
        const r = await cliInProcess(...args, '--model', MODEL, '--out', join(dir, 'out.png'));
        expect(r.code, r.stderr).to.equal(0);
        return r.stderr.split('\n').filter((l) => l.startsWith('warning:'));
      };
      expect((await cliInProcess('direction', '--model', MODEL, '--mnist-digit', '1', '--limit', '20', '--out', direction)).code).to.equal(0);
      for (const args of [['reconstruct', digit, noise], ['interpolate', digit, noise], ['manipulate', noise, '--direction', direction]]) {
        const warnings = await run(...args);
        expect(warnings, args[0]).to.have.length(1);
        expect(warnings[0], args[0]).to.match(/^warning: 1 of \d images do not round-trip through this model .*: noise\.png \(\d\.\de[+-]\d+\);/);
        expect(warnings[0], args[0]).to.not.contain('digit.png');
      }
      expect(await run('reconstruct', digit), 'a test digit').to.deep.equal([]);
      expect(await run('manipulate', digit, '--direction', direction), 'a test digit').to.deep.equal([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
