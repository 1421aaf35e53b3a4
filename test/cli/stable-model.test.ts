// The second shipped model, models/mnist-stable (bounded affine scales, spectrally normalised
// coupling networks, split priors with a constant scale): its graphs are the export of its own
// weights, and it reaches the bits/dim the README claims and inverts the test images and the
// stress sets as the README states.

import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { STABLE_MODEL } from '../../src/runtime/shipped.js';
import { stressImages } from '../../src/runtime/stress.js';
import { cli, cliInProcess, writeGrayPng } from '../helpers.js';
import { expectOwnExport, fullTestSetBitsPerDim, stressTable } from './shipped-checks.js';

const MODEL = STABLE_MODEL;
const README = fileURLToPath(new URL('../../../README.md', import.meta.url));

/** The README's claims for this model, in the sentences this test reads. */
function readmeClaims(): { bitsPerDim: number; stressImages: number; worst: number; noiseImages: number; noiseWorst: number } {
  const text = readFileSync(README, 'utf8').replace(/\s+/g, ' ');
  const bpd = /\*\*`models\/mnist-stable` test bits\/dim \(8-bit MNIST, all 10,000 test images[^)]*\): (\d\.\d{3}) ± /.exec(text);
  const roundTrip = /\*\*`models\/mnist-stable` round trip \(float32\): no image off by more than 1e-3 among the 10,000 test images and (\d+) images each of inverted digits, grey levels and uniform noise, and none but noise by more than (\d(?:\.\d+)?e-\d+); nor any of (\d[\d,]*) uniform noise images by more than (\d(?:\.\d+)?e-\d+)\*\*/.exec(text);
  if (!bpd || !roundTrip) throw new Error('README.md no longer states models/mnist-stable\'s figures in the form this test reads');
  return {
    bitsPerDim: Number(bpd[1]), stressImages: Number(roundTrip[1]), worst: Number(roundTrip[2]),
    noiseImages: Number(roundTrip[3].replace(/,/g, '')), noiseWorst: Number(roundTrip[4]),
  };
}

/** verify's per-set lines: set -> worst round-trip error. */
function worstBySet(stdout: string): Map<string, number> {
  return new Map([...stdout.matchAll(/^(\d+) images of (\S+): .* round-trip max \|x - decode\(encode\(x\)\)\| = (\S+) /gm)].map((m) => [m[2], Number(m[3])]));
}

describe('the stable shipped model (models/mnist-stable)', function () {
  this.timeout(300_000);
  const claims = readmeClaims();

  it('ships the export of its own weights, byte for byte; its config bounds the scales and the coupling networks', () => {
    const { config } = expectOwnExport(MODEL);
    expect(config.scaleBound).to.be.a('number');
    expect(config.lipschitz).to.be.a('number');
    expect(config.constantSplitScale).to.equal(true);
  });

  it('reaches the bits/dim the README reports on the full MNIST test set', () => {
    expect(fullTestSetBitsPerDim(MODEL)).to.be.closeTo(claims.bitsPerDim, 5e-4);
  });

  it('inverts the test images and every image of the stress sets within the README\'s bounds', () => {
    const all = cli('verify', MODEL, '--limit', '10000');
    expect(all.code, all.stderr).to.equal(0);
    const n = claims.stressImages;
    const stress = cli('verify', MODEL, '--stress', '--limit', String(n));
    expect(stress.code, stress.stderr).to.equal(0);
    const worst = new Map([...worstBySet(stress.stdout), ...worstBySet(all.stdout)]);
    expect([...worst.keys()].sort()).to.deep.equal(['constant', 'inverted', 'mnist-test', 'noise']);
    const table = stressTable(stress.stdout);
    for (const [set, { images, misses }] of table) {
      expect(images, set).to.equal(n);
      expect(misses, set).to.equal(0);
    }
    for (const set of ['mnist-test', 'inverted', 'constant']) expect(worst.get(set), set).to.be.at.most(claims.worst);
  });

  it('inverts every image of a larger noise set within the README\'s bound', () => {
    const noise = cli('verify', MODEL, '--data', 'noise', '--limit', String(claims.noiseImages));
    expect(noise.code, noise.stderr).to.equal(0);
    const worst = worstBySet(noise.stdout).get('noise');
    expect(worst, noise.stdout).to.be.a('number');
    expect(worst).to.be.at.most(claims.noiseWorst);
  });

  it('is what the default model\'s round-trip warning points to, and reconstructs the image it warned about', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'glow-stable-'));
    try {
      const noise = join(dir, 'noise.png');
      await writeGrayPng(noise, stressImages('noise', 784, 1, 1), 28);
      const byDefault = await cliInProcess('reconstruct', noise, '--out', join(dir, 'default.png'));
      expect(byDefault.code, byDefault.stderr).to.equal(0);
      expect(byDefault.stderr).to.match(/^warning: 1 of 1 images do not round-trip through this model .*: noise\.png /m);
      expect(byDefault.stderr).to.contain(`the shipped stable model inverts nearly all such images: --model ${STABLE_MODEL}`);
      const stable = await cliInProcess('reconstruct', noise, '--model', STABLE_MODEL, '--out', join(dir, 'stable.png'));
      expect(stable.code, stable.stderr).to.equal(0);
      expect(stable.stderr).to.not.contain('warning:');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
