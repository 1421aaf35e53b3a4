// The WebGPU execution provider of onnxruntime-node, for real: on machines without a GPU it runs
// on the CPU through SwiftShader (Debian's chromium package ships the Vulkan ICD; libvulkan1 is
// the loader). Parity with the CPU provider on random non-trivial weights, and where ONNX
// Runtime actually placed every node (no silent CPU fallback of the convolutions).
//
// Dawn reads VK_ICD_FILENAMES when it creates its adapter, i.e. at the first WebGPU session of
// the process, and a failed first attempt is sticky (measured: a later session in the same process
// fails too, even with the variable set by then). Setting it here, while mocha imports the test
// files and before any test runs, is early enough; an earlier import of onnxruntime-node does not
// matter.

import { expect } from 'chai';
import ort from 'onnxruntime-node';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GlowConfig } from '../../src/glow/config.js';
import { exportModel, ModelFiles } from '../../src/glow/export.js';
import { latentShape } from '../../src/glow/config.js';
import { Encoded, GlowModel } from '../../src/runtime/core.js';
import { loadGlowRuntime } from '../../src/runtime/node.js';
import { createSession, Placement, profilePlacement } from '../../src/runtime/providers.js';
import { maxAbsDiff, RGB_CONFIGS, RGB_TOLERANCE, SWIFTSHADER_ICD, useSoftwareWebGpu, WEBGPU_INSTALL_HELP, webGpuDriverProblem } from '../helpers.js';
import { randomImages, randomOneHot, randomParams } from '../../support/random-params.js';

const presetIcd = useSoftwareWebGpu();

const N = 4;
// eps, bpd, y_logits and decoded x of the two small models against the CPU provider; the README
// states this bound. Measured at most 4.8e-7 with AVX-512 CPU kernels and 7.2e-7 with AVX2 (qemu):
// a few float32 ulps of values of magnitude 1-4, where the two kernels' sums part ways.
const PARITY_TOLERANCE = 2e-6;
const WEBGPU = 'WebGpuExecutionProvider';
const CPU = 'CPUExecutionProvider';

interface Case {
  name: string;
  config: GlowConfig;
  /** The nodes ONNX Runtime 1.30 puts on the CPU provider in a WebGPU session, as observed. */
  cpuFallback: { encode: Record<string, number>; decode: Record<string, number> };
}

// Observed fallbacks (onnxruntime-node 1.30.0). The WebGPU EP has no Sum kernel, so the graphs
// add their per-example terms with Add chains; a Sum here would be a regression.
// - Gather: the batch size taken from Shape(x) (Shape -> Gather -> Expand broadcasts a
//   constant log-det term of a class-conditional top prior to [N]); ORT keeps shape
//   arithmetic on the CPU on purpose.
const CASES: Case[] = [
  {
    name: 'MNIST-shaped [1,28,28] K=2 L=2 hidden 32, affine, LU, learnTop, scaleFloor (Max)',
    config: {
      imageShape: [1, 28, 28], K: 2, L: 2, hiddenChannels: 32, coupling: 'affine', permutation: 'invconv',
      lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1, scaleFloor: 0.88,
    },
    cpuFallback: { encode: {}, decode: {} },
  },
  {
    name: 'class-conditional [3,8,8] K=2 L=2 hidden 16, additive, 4 classes',
    config: {
      imageShape: [3, 8, 8], K: 2, L: 2, hiddenChannels: 16, coupling: 'additive', permutation: 'invconv',
      lu: true, learnTop: true, numClasses: 4, nBits: 5, actnormScale: 1,
    },
    cpuFallback: { encode: { Gather: 1 }, decode: {} },
  },
];

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), 1e-30));
  return m;
}

function nodeTensor(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

function describePlacement(p: Placement): string {
  return Object.entries(p.byProvider)
    .map(([provider, ops]) => `${provider}: ${Object.entries(ops).sort().map(([op, n]) => `${op}x${n}`).join(' ')}`)
    .join(' | ');
}

/** Sessions for both graphs on one provider, wrapped in the backend-agnostic GlowModel:
 * through the project's createSession, or ('webgpu defaults') the way a user who never heard of
 * this project's options would create them. */
async function glowOn(provider: 'webgpu' | 'cpu' | 'webgpu defaults', config: GlowConfig, files: ModelFiles): Promise<GlowModel> {
  const create = async (model: Uint8Array) => (provider === 'webgpu defaults'
    ? ort.InferenceSession.create(model, { executionProviders: ['webgpu'] })
    : (await createSession(model, { executionProviders: [provider], strict: true })).session);
  const encode = await create(files['encode.onnx']);
  return new GlowModel(config, encode, await create(files['decode.onnx']), ort);
}


describe('WebGPU execution provider (onnxruntime-node, SwiftShader on the CPU)', function () {
  this.timeout(120_000);
  const dirs: string[] = [];

  before(async function () {
    const problem = webGpuDriverProblem(presetIcd);
    if (problem) throw new Error(problem);
    // One tiny session first, so that a missing adapter is reported as such, not as a parity failure.
    const config = CASES[1].config;
    const files = exportModel({ config, params: randomParams(config, 1) });
    try {
      const probe = await createSession(files['decode.onnx'], { executionProviders: ['webgpu'], strict: true });
      await probe.session.release();
    } catch (e) {
      throw new Error(`no WebGPU adapter (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES}): ${(e as Error).message}. `
        + `If another test created a WebGPU session before this file set VK_ICD_FILENAMES, Dawn keeps that failure: `
        + `run mocha with VK_ICD_FILENAMES=${SWIFTSHADER_ICD} in its environment. Otherwise ${WEBGPU_INSTALL_HELP}`);
    }
  });

  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  for (const [index, c] of CASES.entries()) {
    describe(c.name, () => {
      const { config } = c;
      const seed = 20 + index;
      const files = exportModel({ config, params: randomParams(config, seed) });
      const x = Float32Array.from(randomImages(config, N, seed + 1).data);
      const y = config.numClasses ? Float32Array.from(randomOneHot(config, N, seed + 2).data) : undefined;
      const xShape = [N, ...config.imageShape];
      const T = 0.8;
      let gpu: GlowModel;
      let cpu: GlowModel;
      let encGpu: Encoded;
      let encCpu: Encoded;

      before(async () => {
        gpu = await glowOn('webgpu', config, files);
        cpu = await glowOn('cpu', config, files);
        encGpu = await gpu.encode(x, xShape, y);
        encCpu = await cpu.encode(x, xShape, y);
      });

      after(async () => {
        await gpu?.release();
        await cpu?.release();
      });

      it(`encode: eps, bpd (and y_logits) within ${PARITY_TOLERANCE} of CPU, logdet and log_px within 5e-6 relative`, () => {
        const errors: Record<string, number> = {};
        encCpu.eps.forEach((e, l) => (errors[`eps_${l + 1}`] = maxAbsDiff(encGpu.eps[l], e)));
        errors.bpd = maxAbsDiff(encGpu.bpd, encCpu.bpd);
        if (encCpu.yLogits) errors.y_logits = maxAbsDiff(encGpu.yLogits!, encCpu.yLogits);
        // log_px is thousands of nats, where float32 steps by 2.4e-4: compared relatively, like logdet
        // (bpd, the same quantity divided by D ln 2, is held to PARITY_TOLERANCE absolute above).
        const logPxRel = relDiff(encGpu.logPx, encCpu.logPx);
        const logdetRel = relDiff(encGpu.logdet, encCpu.logdet);
        console.log(`      webgpu vs cpu encode: ${Object.entries(errors).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}, `
          + `logdet rel ${logdetRel.toExponential(2)} (|logdet| ~ ${Math.abs(encCpu.logdet[0]).toFixed(0)}, |log_px| ~ ${Math.abs(encCpu.logPx[0]).toFixed(0)})`);
        for (const [k, v] of Object.entries(errors)) expect(v, k).to.be.below(PARITY_TOLERANCE);
        expect(logdetRel, 'logdet (relative)').to.be.below(5e-6);
        expect(logPxRel, 'log_px (relative)').to.be.below(5e-6);
        // Non-trivial weights: the flow is far from identity, so the parity is not vacuous.
        expect(Math.abs(encCpu.logdet[0]), 'logdet magnitude').to.be.above(1);
      });

      it(`decode: x within ${PARITY_TOLERANCE} of CPU at T=1 and T=${T}, on the same eps`, async () => {
        for (const t of [1, T]) {
          const xGpu = await gpu.decode(encCpu.eps, t, y);
          const xCpu = await cpu.decode(encCpu.eps, t, y);
          const err = maxAbsDiff(xGpu, xCpu);
          console.log(`      webgpu vs cpu decode T=${t}: x ${err.toExponential(2)}`);
          expect(err, `x at T=${t}`).to.be.below(PARITY_TOLERANCE);
          if (t === 1) expect(maxAbsDiff(xGpu, x), 'round trip on WebGPU').to.be.below(1e-4);
        }
      });

      it('runs every Conv on WebGPU; only the observed shape/reduction ops fall back to CPU', async () => {
        const encFeeds: Record<string, ort.Tensor> = { x: nodeTensor(x, xShape) };
        const decFeeds: Record<string, ort.Tensor> = { temperature: nodeTensor(Float32Array.of(T), []) };
        encCpu.eps.forEach((e, l) => (decFeeds[`eps_${l + 1}`] = nodeTensor(e, [N, ...latentShape(config, l + 1)])));
        if (y) encFeeds.y = decFeeds.y = nodeTensor(y, [N, config.numClasses]);
        for (const [graph, feeds] of [['encode', encFeeds], ['decode', decFeeds]] as const) {
          const placement = await profilePlacement(files[`${graph}.onnx`], 'webgpu', feeds);
          console.log(`      ${graph} placement: ${describePlacement(placement)}`);
          const onGpu = placement.byProvider[WEBGPU] ?? {};
          const onCpu = placement.byProvider[CPU] ?? {};
          expect(Object.keys(placement.byProvider).filter((p) => p !== WEBGPU && p !== CPU), 'other providers').to.deep.equal([]);
          const convs = (ops: Record<string, number>) => Object.entries(ops).filter(([op]) => /Conv/.test(op)).reduce((a, [, n]) => a + n, 0);
          expect(convs(onCpu), `${graph}: convolutions on the CPU`).to.equal(0);
          expect(convs(onGpu), `${graph}: convolutions on WebGPU`).to.be.at.least(4 * config.K * config.L);
          expect(onCpu, `${graph}: CPU fallback`).to.deep.equal(c.cpuFallback[graph]);
          // The bulk of the compute: every node but the copies, > 90% on WebGPU.
          const count = (ops: Record<string, number>) => Object.entries(ops).filter(([op]) => !op.startsWith('Memcpy')).reduce((a, [, n]) => a + n, 0);
          expect(count(onGpu) / (count(onGpu) + count(onCpu)), `${graph}: share of nodes on WebGPU`).to.be.above(0.9);
        }
      });
    });
  }

  for (const [index, config] of RGB_CONFIGS.entries()) {
    for (const fold of [true, false]) {
      const [C, H, W] = config.imageShape;
      describe(`RGB ${H}x${W}x${C}, affine, LU, K=${config.K} L=${config.L} hidden ${config.hiddenChannels}, ${config.numClasses} classes, ${fold ? 'folded' : '--no-fold'}`, () => {
        const w = { config, params: randomParams(config, 40 + index) };
        const files = exportModel(w, { fold });
        // What older exports and other producers hand over: only the session options protect these.
        const unpadded = exportModel(w, { fold, webgpuConvPadding: false });
        const x = Float32Array.from(randomImages(config, N, 41 + index).data);
        const y = Float32Array.from(randomOneHot(config, N, 42 + index).data);
        let cpu: GlowModel;
        let encCpu: Encoded;

        before(async () => {
          cpu = await glowOn('cpu', config, files);
          encCpu = await cpu.encode(x, [N, ...config.imageShape], y);
        });
        after(async () => {
          await cpu?.release();
        });

        // The padded graphs under the project's options are what the CLI runs on new exports:
        // the [3,8,8] case above and the page's tests run those.
        const runs = [
          { provider: 'webgpu defaults', graphs: files, name: "the provider's default options" },
          { provider: 'webgpu', graphs: unpadded, name: "the project's options (NCHW), graphs exported without the channel padding" },
        ] as const;
        for (const { provider, graphs, name } of runs) {
          it(`${name}: eps, bpd and decoded x within ${RGB_TOLERANCE} of CPU`, async () => {
            const gpu = await glowOn(provider, config, graphs);
            try {
              const enc = await gpu.encode(x, [N, ...config.imageShape], y);
              const errors: Record<string, number> = {};
              encCpu.eps.forEach((e, l) => (errors[`eps_${l + 1}`] = maxAbsDiff(enc.eps[l], e)));
              errors.bpd = maxAbsDiff(enc.bpd, encCpu.bpd);
              errors['x (T=1)'] = maxAbsDiff(await gpu.decode(encCpu.eps, 1, y), await cpu.decode(encCpu.eps, 1, y));
              errors['x (T=0.7)'] = maxAbsDiff(await gpu.decode(encCpu.eps, 0.7, y), await cpu.decode(encCpu.eps, 0.7, y));
              console.log(`      ${provider}${graphs === unpadded ? ', unpadded' : ''} vs cpu: ${Object.entries(errors).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
              for (const [k, v] of Object.entries(errors)) expect(v, k).to.be.below(RGB_TOLERANCE);
              // Non-trivial weights: far from the identity, so that the parity says something.
              expect(Math.abs(encCpu.logdet[0]), 'logdet magnitude').to.be.above(1);
            } finally {
              await gpu.release();
            }
          });
        }
      });
    }
  }

  it("loadGlowRuntime(dir, { executionProviders: ['webgpu', 'cpu'] }) runs both graphs on WebGPU", async () => {
    const { config } = CASES[0];
    const files = exportModel({ config, params: randomParams(config, 5) });
    const dir = mkdtempSync(join(tmpdir(), 'glow-webgpu-'));
    dirs.push(dir);
    for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
    const runtime = await loadGlowRuntime(dir, { executionProviders: ['webgpu', 'cpu'] });
    try {
      expect(runtime.providers).to.deep.equal({ encode: 'webgpu', decode: 'webgpu' });
      expect(runtime.failures).to.deep.equal([]);
      const x = Float32Array.from(randomImages(config, 2, 9).data);
      const enc = await runtime.model.encode(x, [2, ...config.imageShape]);
      const back = await runtime.model.decode(enc.eps, 1);
      expect(maxAbsDiff(back, x), 'round trip').to.be.below(1e-4);
    } finally {
      await runtime.model.release();
    }
  });
});
