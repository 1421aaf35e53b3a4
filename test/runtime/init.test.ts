import { expect } from 'chai';
import { DEFAULT_CONFIG, GlowConfig } from '../../src/glow/config.js';
import { paramSpecs, stepPrefix } from '../../src/glow/names.js';
import { initWeights } from '../../src/glow/params.js';
import { Rng } from '../../src/glow/rng.js';
import { initActNorms } from '../../src/runtime/init.js';
import { squeeze } from '../reference/glow64.js';

describe('data-dependent ActNorm initialisation', () => {
  const config: GlowConfig = { ...DEFAULT_CONFIG, imageShape: [2, 8, 8], K: 2, L: 2, hiddenChannels: 8, actnormScale: 0.8 };
  const N = 16;
  const rng = new Rng(4);
  const x = new Float32Array(N * 128).map((_, i) => (i % 7) / 10 + 0.3 * rng.uniform() - 0.5);

  it('sets the first ActNorm from the statistics of its input, and every other one to finite non-zero values', async () => {
    const before = initWeights(config, 1);
    const after = await initActNorms(before, x);
    const z = squeeze({ shape: [N, 2, 8, 8], data: Float64Array.from(x) });
    const [, C, H, W] = z.shape;
    const prefix = stepPrefix(config, 0, 0);
    const bias = after.params.get(`${prefix}.actnorm.bias`)!.data;
    const logs = after.params.get(`${prefix}.actnorm.logs`)!.data;
    for (let c = 0; c < C; c++) {
      const values: number[] = [];
      for (let n = 0; n < N; n++) for (let p = 0; p < H * W; p++) values.push(z.data[(n * C + c) * H * W + p]);
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
      expect(bias[c]).to.be.closeTo(-mean, 1e-5);
      expect(logs[c]).to.be.closeTo(Math.log(0.8 / (std + 1e-6)), 1e-4);
    }
    for (const spec of paramSpecs(config).filter((s) => s.role.startsWith('actnorm'))) {
      const data = after.params.get(spec.name)!.data;
      expect(data.every(Number.isFinite), spec.name).to.equal(true);
      expect(data.some((v) => v !== 0), spec.name).to.equal(true);
    }
    for (const spec of paramSpecs(config).filter((s) => !s.role.startsWith('actnorm'))) {
      expect(after.params.get(spec.name), spec.name).to.equal(before.params.get(spec.name));
    }
  });

  it('refuses a batch of one image', async () => {
    let error: Error | undefined;
    await initActNorms(initWeights(config, 1), x.slice(0, 128)).catch((e) => (error = e));
    expect(error?.message).to.contain('at least 2 images');
  });
});
