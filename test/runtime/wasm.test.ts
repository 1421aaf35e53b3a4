// onnxruntime-web's wasm backend in Node (the package's `node` export condition resolves the
// plain import to dist/ort.node.min.mjs, which runs the wasm build under Node), wrapped in the
// backend-agnostic GlowModel with onnxruntime-web's own Tensor, against onnxruntime-node's CPU
// provider on the same random non-trivial weights and inputs.

import { expect } from 'chai';
import ort from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { GlowConfig } from '../../src/glow/config.js';
import { exportModel, ModelFiles } from '../../src/glow/export.js';
import { Encoded, GlowModel } from '../../src/runtime/core.js';
import { createSession } from '../../src/runtime/providers.js';
import { maxAbsDiff, maxRelDiff } from '../helpers.js';
import { randomImages, randomOneHot, randomParams } from '../../support/random-params.js';

// Threads work too (measured: same results); one thread keeps the 2-core test machines quiet and
// spawns no worker threads. It must be set before the first session initialises the wasm module.
ortWeb.env.wasm.numThreads = 1;

const N = 4;

const CASES: { name: string; config: GlowConfig }[] = [
  {
    name: 'MNIST-shaped [1,28,28] K=2 L=2 hidden 32, affine, LU, learnTop',
    config: {
      imageShape: [1, 28, 28], K: 2, L: 2, hiddenChannels: 32, coupling: 'affine', permutation: 'invconv',
      lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
    },
  },
  {
    name: 'class-conditional [3,8,8] K=2 L=2 hidden 16, additive, 4 classes',
    config: {
      imageShape: [3, 8, 8], K: 2, L: 2, hiddenChannels: 16, coupling: 'additive', permutation: 'invconv',
      lu: true, learnTop: true, numClasses: 4, nBits: 5, actnormScale: 1,
    },
  },
];

async function webModel(config: GlowConfig, files: ModelFiles): Promise<GlowModel> {
  const options: ortWeb.InferenceSession.SessionOptions = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
  const encode = await ortWeb.InferenceSession.create(files['encode.onnx'], options);
  const decode = await ortWeb.InferenceSession.create(files['decode.onnx'], options);
  return new GlowModel(config, encode, decode, ortWeb);
}

async function nodeCpuModel(config: GlowConfig, files: ModelFiles): Promise<GlowModel> {
  const encode = await createSession(files['encode.onnx'], { executionProviders: ['cpu'] });
  const decode = await createSession(files['decode.onnx'], { executionProviders: ['cpu'] });
  return new GlowModel(config, encode.session, decode.session, ort);
}

describe('onnxruntime-web wasm backend in Node', function () {
  this.timeout(60_000);

  it('is the onnxruntime-web package, not onnxruntime-node', () => {
    expect(ortWeb.env.versions.web).to.equal('1.30.0');
    expect(ortWeb.Tensor).to.not.equal(ort.Tensor);
  });

  for (const [index, c] of CASES.entries()) {
    describe(c.name, () => {
      const { config } = c;
      const seed = 40 + index;
      const files = exportModel({ config, params: randomParams(config, seed) });
      const x = Float32Array.from(randomImages(config, N, seed + 1).data);
      const y = config.numClasses ? Float32Array.from(randomOneHot(config, N, seed + 2).data) : undefined;
      const xShape = [N, ...config.imageShape];
      let web: GlowModel;
      let cpu: GlowModel;
      let encWeb: Encoded;
      let encCpu: Encoded;

      before(async () => {
        web = await webModel(config, files);
        cpu = await nodeCpuModel(config, files);
        encWeb = await web.encode(x, xShape, y);
        encCpu = await cpu.encode(x, xShape, y);
      });

      after(async () => {
        await web?.release();
        await cpu?.release();
      });

      it('encode: eps, bpd (and y_logits) within 1e-4 of onnxruntime-node CPU, logdet and log_px within 1e-6 relative', () => {
        const errors: Record<string, number> = {};
        encCpu.eps.forEach((e, l) => (errors[`eps_${l + 1}`] = maxAbsDiff(encWeb.eps[l], e)));
        errors.bpd = maxAbsDiff(encWeb.bpd, encCpu.bpd);
        if (encCpu.yLogits) errors.y_logits = maxAbsDiff(encWeb.yLogits!, encCpu.yLogits);
        // log_px is thousands of nats, where float32 steps by 2.4e-4: compared relatively, like logdet
        // (bpd, the same quantity divided by D ln 2, is held to 1e-4 absolute above).
        const logPxRel = maxRelDiff(encWeb.logPx, encCpu.logPx);
        const logdetRel = maxRelDiff(encWeb.logdet, encCpu.logdet);
        console.log(`      wasm vs node cpu encode: ${Object.entries(errors).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}, logdet rel ${logdetRel.toExponential(2)}`);
        for (const [k, v] of Object.entries(errors)) expect(v, k).to.be.below(1e-4);
        expect(logdetRel, 'logdet (relative)').to.be.below(1e-6);
        expect(logPxRel, 'log_px (relative)').to.be.below(1e-6);
        expect(Math.abs(encCpu.logdet[0]), 'logdet magnitude (non-trivial weights)').to.be.above(1);
      });

      it('decode: x within 1e-4 of onnxruntime-node CPU at T=1 and T=0.8, on the same eps', async () => {
        for (const t of [1, 0.8]) {
          const xWeb = await web.decode(encCpu.eps, t, y);
          const xCpu = await cpu.decode(encCpu.eps, t, y);
          const err = maxAbsDiff(xWeb, xCpu);
          console.log(`      wasm vs node cpu decode T=${t}: x ${err.toExponential(2)}`);
          expect(err, `x at T=${t}`).to.be.below(1e-4);
          if (t === 1) expect(maxAbsDiff(xWeb, x), 'round trip on wasm').to.be.below(1e-4);
        }
      });
    });
  }
});
