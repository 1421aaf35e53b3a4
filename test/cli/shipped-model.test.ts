// The model in models/mnist is what `npm start` runs and what the README reports: its graphs must
// be the export of its own weights (not a stale export), and it must reach the bits/dim and the
// round trip the README claims for it.

import { expect } from 'chai';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { exportModel, type GlowJson } from '../../src/glow/export.js';
import { importWeights } from '../../src/glow/import/index.js';
import { cli } from '../helpers.js';

const MODEL = fileURLToPath(new URL('../../../models/mnist/', import.meta.url));
const README = fileURLToPath(new URL('../../../README.md', import.meta.url));
const FILES = ['weights.safetensors', 'config.json', 'glow.json', 'encode.onnx', 'decode.onnx'];

function readmeBitsPerDim(): number {
  const claim = /\*\*Test bits\/dim \(8-bit MNIST, all 10,000 test images[^)]*\): (\d\.\d{3}) ± /.exec(readFileSync(README, 'utf8'));
  if (!claim) throw new Error('README.md no longer states the shipped model\'s test bits/dim in the form this test reads');
  return Number(claim[1]);
}

/** The README's count of test images the shipped model does not invert within 1e-3. */
function readmeRoundTripFailures(): number {
  const claim = /\*\*Round trip \(all 10,000 test images, float32\): (\d+) images? off by more than 1e-3/.exec(readFileSync(README, 'utf8'));
  if (!claim) throw new Error('README.md no longer states the shipped model\'s round trip in the form this test reads');
  return Number(claim[1]);
}

describe('the shipped model (models/mnist)', function () {
  this.timeout(300000);

  it('is under 20 MB in all', () => {
    const bytes = FILES.reduce((sum, f) => sum + statSync(MODEL + f).size, 0);
    expect(bytes).to.be.below(20 * 1024 * 1024);
  });

  it('ships the export of its own weights, byte for byte', () => {
    const { weights } = importWeights(readFileSync(MODEL + 'weights.safetensors'), 'weights.safetensors');
    const shipped = JSON.parse(readFileSync(MODEL + 'glow.json', 'utf8')) as GlowJson;
    expect(JSON.parse(readFileSync(MODEL + 'config.json', 'utf8'))).to.deep.equal(weights.config);
    const files = exportModel(weights, {}, shipped.provenance);
    expect(JSON.parse(files['glow.json'])).to.deep.equal(shipped);
    expect(Buffer.compare(files['encode.onnx'], readFileSync(MODEL + 'encode.onnx'))).to.equal(0, 'encode.onnx is stale');
    expect(Buffer.compare(files['decode.onnx'], readFileSync(MODEL + 'decode.onnx'))).to.equal(0, 'decode.onnx is stale');
  });

  it('reaches the bits/dim the README reports on the full MNIST test set', () => {
    const r = cli('eval', '--model', MODEL, '--data', 'mnist-test', '--limit', '10000');
    expect(r.code, r.stderr).to.equal(0);
    const match = /^10000 images of mnist-test: (\d+\.\d+) ± (\d+\.\d+) bits\/dim/m.exec(r.stdout);
    expect(match, r.stdout).to.not.equal(null);
    expect(Number(match![1]).toFixed(3)).to.equal(readmeBitsPerDim().toFixed(3));
  });

  it('inverts the full MNIST test set except for the images the README owns up to', () => {
    const failures = readmeRoundTripFailures();
    const r = cli('verify', MODEL, '--limit', '10000');
    if (failures === 0) {
      expect(r.code, r.stderr).to.equal(0);
    } else {
      expect(r.code, r.stdout).to.equal(1);
      expect(r.stderr).to.contain(`${failures} of 10000 images do not round-trip within the float32 tolerance 0.001`);
    }
  });
});
