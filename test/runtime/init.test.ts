import { expect } from 'chai';
import { DEFAULT_CONFIG, GlowConfig } from '../../src/glow/config.js';
import { paramSpecs, stepPrefix } from '../../src/glow/names.js';
import { initWeights } from '../../src/glow/params.js';
import { Rng } from '../../src/math/rng.js';
import { initActNorms } from '../../src/runtime/init.js';
import { HostTensor } from '../../src/math/tensor.js';
import { refEncode, squeeze } from '../reference/glow64.js';

describe('data-dependent ActNorm initialisation', () => {
  const config: GlowConfig = { ...DEFAULT_CONFIG, imageShape: [2, 8, 8], K: 2, L: 2, hiddenChannels: 8, actnormScale: 0.8 };
  const N = 16;
  const rng = new Rng(4);
  const x = new Float32Array(N * 128).map((_, i) => (i % 7) / 10 + 0.3 * rng.uniform() - 0.5);
  // A few times the worst float32 error measured against the float64 statistics (bias 6.4e-8
  // relative to max(1, std), logs 2.6e-7; AVX-512, AVX2 and SSE4.2 kernels alike).
  const BIAS_TOLERANCE = 5e-7;
  const LOGS_TOLERANCE = 2e-6;

  it('sets every ActNorm from the statistics of its input, as the float64 reference computes that input', async () => {
    const before = initWeights(config, 1);
    const after = await initActNorms(before, x);
    // Each ActNorm's input depends only on the layers before it, so encoding with the initialised
    // weights reproduces the activations the initialisation saw at every ActNorm.
    const inputs = new Map<string, HostTensor>();
    refEncode({ config, params: new Map(after.params), onActNorm: (prefix, input) => inputs.set(prefix, input) }, { shape: [N, 2, 8, 8], data: Float64Array.from(x) });
    const actnorms = paramSpecs(config).filter((s) => s.role.startsWith('actnorm') && s.name.endsWith('.bias')).map((s) => s.name.slice(0, -'.bias'.length));
    expect([...inputs.keys()].sort()).to.deep.equal(actnorms.sort());
    expect(inputs.get(`${stepPrefix(config, 0, 0)}.actnorm`)!.data).to.deep.equal(squeeze({ shape: [N, 2, 8, 8], data: Float64Array.from(x) }).data);
    for (const [prefix, input] of inputs) {
      const [, C, H, W] = input.shape;
      const bias = after.params.get(`${prefix}.bias`)!.data;
      const logs = after.params.get(`${prefix}.logs`)!.data;
      for (let c = 0; c < C; c++) {
        const values: number[] = [];
        for (let n = 0; n < N; n++) for (let p = 0; p < H * W; p++) values.push(input.data[(n * C + c) * H * W + p]);
        const mean = values.reduce((a, b) => a + b, 0) / values.length;
        const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
        expect(bias[c], `${prefix}.bias[${c}]`).to.be.closeTo(-mean, BIAS_TOLERANCE * Math.max(1, std));
        expect(logs[c], `${prefix}.logs[${c}]`).to.be.closeTo(Math.log(config.actnormScale / (std + 1e-6)), LOGS_TOLERANCE);
      }
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
