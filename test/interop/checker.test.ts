// onnx's check_model(full_check=True) (python3-onnx 1.12, strict shape inference against the
// value_info the serializer writes) on every interop variant at opsets 13, 15 and 17: float16,
// static batch, external data, their combination, --target opencv, and the Triton graphs.

import { expect } from 'chai';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GlowConfig } from '../../src/glow/config.js';
import { ExportOptions, exportModel } from '../../src/glow/export.js';
import { GlowWeights } from '../../src/glow/model.js';
import { tritonRepository } from '../../src/glow/triton.js';
import { randomParams, randomShuffles } from '../../support/random-params.js';
import { checkerFailures } from './onnx-checker.js';

const base: GlowConfig = {
  imageShape: [2, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};
const CONFIGS: [string, GlowConfig][] = [
  ['affine-lu', base],
  ['additive-conditional-plain', { ...base, coupling: 'additive', numClasses: 3, lu: false }],
  ['shuffle-L3-no-learntop', { ...base, imageShape: [1, 8, 8], L: 3, permutation: 'shuffle', learnTop: false }],
];
const VARIANTS: [string, ExportOptions][] = [
  ['float16', { dtype: 'float16' }],
  ['float16-unfolded', { dtype: 'float16', fold: false }],
  ['batch2', { batch: 2 }],
  ['float16-batch3-external', { dtype: 'float16', batch: 3, externalData: true }],
  ['opencv', { target: 'opencv' }],
];
const OPSETS = [13, 15, 17];

function write(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
}

describe('ONNX checker on the interop variants (float16, static batch, external data, Triton)', function () {
  this.timeout(60_000);
  let dir: string;
  const paths: string[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'glow-interop-checker-'));
    for (const [label, config] of CONFIGS) {
      const w: GlowWeights = { config, params: randomParams(config, 51), shuffles: randomShuffles(config, 51) };
      for (const opset of OPSETS) {
        for (const [variant, options] of VARIANTS) {
          // OpenCV takes affine couplings only (see targetOptions).
          if (options.target === 'opencv' && config.coupling !== 'affine') continue;
          const files = exportModel(w, { ...options, opset });
          for (const [name, data] of Object.entries(files)) write(join(dir, label, `${opset}`, variant, name), data);
          paths.push(join(dir, label, `${opset}`, variant, 'encode.onnx'), join(dir, label, `${opset}`, variant, 'decode.onnx'));
        }
        for (const [name, data] of Object.entries(tritonRepository(w, { opset, dtype: 'float16', externalData: opset === 15 }))) {
          const path = join(dir, label, `${opset}`, 'triton', name);
          write(path, data);
          if (name.endsWith('model.onnx')) paths.push(path);
        }
      }
    }
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every model passes check_model(full_check=True)', () => {
    const opencvSkipped = CONFIGS.filter(([, c]) => c.coupling !== 'affine').length * OPSETS.length;
    expect(paths.length).to.equal((CONFIGS.length * OPSETS.length * (VARIANTS.length + 1) - opencvSkipped) * 2);
    const failures = checkerFailures(paths);
    expect(failures, `${failures.length} of ${paths.length} failed:\n${failures.join('\n')}\n`).to.deep.equal([]);
  });
});
