// The training loop and its artifacts: exact resume, stops that keep the last good checkpoint,
// Adam against a direct implementation, and artifacts that agree with each other and run on
// WebGPU.

import { expect } from 'chai';
import ort from 'onnxruntime-node';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serializeModel } from '../../src/builder/serialize.js';
import { GlowConfig } from '../../src/glow/config.js';
import { GlowWeights } from '../../src/glow/model.js';
import { effectiveWeight, powerIterate, spectralSigma } from '../../src/glow/layers/networks.js';
import { normalisedConvs, paramSpecs, spectralVectors, stepPrefix } from '../../src/glow/names.js';
import { initWeights } from '../../src/glow/params.js';
import { Rng } from '../../src/math/rng.js';
import { buildEvalModel, buildFusedTrainStep, buildOptimizerModel, buildTrainingModel } from '../../src/train/graphs.js';
import { gradName, momentNames, updatedName } from '../../src/train/names.js';
import { CHECKPOINT_FILE, readTrainCheckpoint } from '../../src/train/checkpoint.js';
import { train } from '../../src/train/loop.js';
import { Dataset, EpochReport, TrainingError, TrainOptions } from '../../src/train/run.js';
import { WEBGPU_EP } from '../../src/runtime/session-options.js';
import { adamScalars, blobDataset as dataset, expectSameCheckpoint, maxAbsDiff, useSoftwareWebGpu } from '../helpers.js';

const config: GlowConfig = {
  imageShape: [1, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 3, nBits: 5, actnormScale: 1,
};

/** An RGB model of the shape that trips WebGPU's NHWC Conv (6 channels into the first coupling). */
const rgbConfig: GlowConfig = { ...config, imageShape: [3, 8, 8] };

function options(out: string, extra: Partial<TrainOptions> = {}): TrainOptions {
  return {
    out, batchSize: 8, learningRate: 2e-3, warmupSteps: 3, emaDecay: 0.9, checkpointEvery: 5, seed: 3, initBatch: 16,
    evalLimit: 16, epochs: 1, threads: 1, ...extra,
  };
}

function feedsFor(w: GlowWeights, rng: Rng): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {
    x: new ort.Tensor('float32', new Float32Array(4 * 64).map(() => rng.uniform() - 0.5), [4, 1, 8, 8]),
    y: new ort.Tensor('float32', Float32Array.from({ length: 12 }, (_, i) => (i % 3 === Math.floor(i / 3) % 3 ? 1 : 0)), [4, 3]),
  };
  for (const spec of paramSpecs(w.config).filter((s) => s.trainable)) {
    feeds[spec.name] = new ort.Tensor('float32', Float32Array.from(w.params.get(spec.name)!.data, (v) => v + 0.05 * rng.normal()), spec.shape);
  }
  return feeds;
}

describe('training loop', function () {
  this.timeout(300000);
  let dir: string;
  const data = { train: dataset(48, 1), test: dataset(16, 2) };
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'glow-train-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('learns, and a resumed run reproduces the uninterrupted run exactly', async () => {
    const straight = await train(initWeights(config, 1), data, options(join(dir, 'a'), { epochs: 4 }));
    expect(straight.steps).to.equal(24);
    expect(straight.losses.slice(-6).reduce((a, b) => a + b) / 6).to.be.below(straight.losses.slice(0, 6).reduce((a, b) => a + b) / 6 - 0.2);

    const first = await train(initWeights(config, 1), data, options(join(dir, 'b'), { epochs: 2 }));
    const path = join(dir, 'b', CHECKPOINT_FILE);
    const resumed = await train(readTrainCheckpoint(readFileSync(path), path), data, options(join(dir, 'b'), { epochs: 4 }));
    expect([...first.losses, ...resumed.losses]).to.deep.equal(straight.losses);
    for (const [name, t] of straight.weights.params) expect(maxAbsDiff(resumed.weights.params.get(name)!.data, t.data), name).to.equal(0);
    expect(existsSync(join(dir, 'b', 'samples', 'epoch-004.png'))).to.equal(true);
  });

  it('a model with plain and LU levels (lu [false, true]) learns through its LU factors and keeps each plain W', async () => {
    const mixed: GlowConfig = { ...config, lu: [false, true] };
    const start = initWeights(mixed, 1);
    const run = await train(start, data, options(join(dir, 'mixed'), { epochs: 3 }));
    expect(run.losses.slice(-6).reduce((a, b) => a + b) / 6).to.be.below(run.losses.slice(0, 6).reduce((a, b) => a + b) / 6 - 0.2);
    expect(run.weights.config.lu).to.deep.equal([false, true]);
    for (let k = 0; k < mixed.K; k++) {
      const plain = `${stepPrefix(mixed, 0, k)}.invconv.weight`;
      expect(maxAbsDiff(run.weights.params.get(plain)!.data, start.params.get(plain)!.data), plain).to.equal(0);
      for (const n of ['lower', 'upper', 'log_s']) {
        const name = `${stepPrefix(mixed, 1, k)}.invconv.${n}`;
        expect(maxAbsDiff(run.weights.params.get(name)!.data, start.params.get(name)!.data), name).to.be.above(1e-4);
      }
    }
    const path = join(dir, 'mixed', CHECKPOINT_FILE);
    expect(readTrainCheckpoint(readFileSync(path), path).weights.config.lu).to.deep.equal([false, true]);
  });

  it('spectral normalisation: its vectors are state that moves, resumes exactly and tracks the largest singular value', async () => {
    const normalised: GlowConfig = { ...config, scaleBound: 0.5, lipschitz: 0.9 };
    // No average: the exported weights are then the ones the vectors were iterated on.
    const straight = await train(initWeights(normalised, 1), data, options(join(dir, 'a'), { epochs: 4, emaDecay: 0 }));
    const first = await train(initWeights(normalised, 1), data, options(join(dir, 'b'), { epochs: 2, emaDecay: 0 }));
    const path = join(dir, 'b', CHECKPOINT_FILE);
    const checkpoint = readTrainCheckpoint(readFileSync(path), path);
    const resumed = await train(checkpoint, data, options(join(dir, 'b'), { epochs: 4, emaDecay: 0 }));
    expect([...first.losses, ...resumed.losses]).to.deep.equal(straight.losses);
    for (const [name, t] of straight.weights.params) expect(maxAbsDiff(resumed.weights.params.get(name)!.data, t.data), name).to.equal(0);
    const blocks = normalisedConvs(normalised);
    expect(blocks).to.have.length(2 * 2 * 3);
    let moved = 0;
    for (const block of blocks) {
      const { u, v } = spectralVectors(block);
      if (maxAbsDiff(checkpoint.weights.params.get(u)!.data, straight.weights.params.get(u)!.data) > 1e-6) moved++;
      // One iteration a step keeps sigma = u^T W v near the largest singular value (many more
      // iterations on the final weights); it lags the moving weights (0.89 of it at worst here).
      const current = new Map(straight.weights.params);
      const w = effectiveWeight(current, block);
      const exact = powerIterate(w, Float64Array.from(current.get(u)!.data), Float64Array.from(current.get(v)!.data), 500);
      const sigma = spectralSigma(w, current.get(u)!.data, current.get(v)!.data);
      const largest = spectralSigma(w, exact.u, exact.v);
      if (largest > 1e-3) expect(sigma / largest, block).to.be.within(0.8, 1 + 1e-9);
    }
    expect(moved, 'vectors that changed between steps 12 and 24').to.be.above(blocks.length / 2);
  });

  it('each epoch reports the round trip of the test images it scores, and flags a model that cannot invert', async () => {
    const reports: EpochReport[] = [];
    await train(initWeights(config, 1), data, options(join(dir, 'ok')), { onEpoch: (r) => reports.push(r) });
    expect(reports).to.have.length(1);
    const { roundTrip } = reports[0];
    expect(roundTrip?.count).to.equal(16);
    expect(roundTrip?.failing).to.equal(0);
    expect(roundTrip?.maxError).to.be.within(1e-9, 1e-3);

    // Coupling scales of sigmoid(-198): encode multiplies half the channels by 0 in float32.
    const start = initWeights(config, 1);
    const params = new Map(start.params);
    const bias = `${stepPrefix(config, 0, 0)}.block.4.conv.bias`;
    params.set(bias, { ...params.get(bias)!, data: params.get(bias)!.data.map(() => -200) });
    const saturated: EpochReport[] = [];
    await train({ ...start, params }, data, options(join(dir, 'saturated'), { learningRate: 1e-12, initBatch: 0 }), { onEpoch: (r) => saturated.push(r) });
    expect(saturated[0].roundTrip?.failing).to.equal(16);
  });

  it('a stop request mid-epoch ends at a checkpoint from which the run continues exactly as if never stopped', async () => {
    const straight = await train(initWeights(config, 1), data, options(join(dir, 'straight'), { epochs: 3 }));
    let steps = 0;
    // Step 7 at 6 steps an epoch: the checkpoint must carry the epoch's position and noise state.
    const stopped = await train(initWeights(config, 1), data, options(dir, { epochs: 3 }), { shouldStop: () => ++steps === 7 });
    expect(stopped.stoppedEarly).to.equal(true);
    const checkpoint = readTrainCheckpoint(readFileSync(join(dir, CHECKPOINT_FILE)), 'checkpoint');
    expect(checkpoint.state).to.include({ step: 7, epoch: 1, batchInEpoch: 1 });
    const rest = await train(checkpoint, data, options(dir, { epochs: 3 }));
    expect(rest.steps).to.equal(18);
    expect([...stopped.losses, ...rest.losses]).to.deep.equal(straight.losses);
    for (const [name, t] of straight.weights.params) expect(maxAbsDiff(rest.weights.params.get(name)!.data, t.data), name).to.equal(0);
    const [a, b] = [join(dir, 'straight', CHECKPOINT_FILE), join(dir, CHECKPOINT_FILE)].map((path) => readTrainCheckpoint(readFileSync(path), path));
    expectSameCheckpoint(b, a);
  });

  it('a non-finite loss stops the run and leaves the last good checkpoint intact', async () => {
    const out = join(dir, 'nan');
    let error: unknown;
    await train(initWeights(config, 1), data, options(out, { learningRate: 1e4, warmupSteps: 0, clipNorm: 0, checkpointEvery: 1, epochs: 20 })).catch((e) => (error = e));
    expect(error).to.be.instanceOf(TrainingError);
    const message = (error as Error).message;
    const step = Number(/at step (\d+)/.exec(message)![1]);
    expect(message).to.match(/the last good checkpoint \(step \d+\) is intact/);
    const saved = readTrainCheckpoint(readFileSync(join(out, CHECKPOINT_FILE)), 'checkpoint');
    expect(saved.state.step).to.equal(step - 1);
    for (const t of saved.params.values()) expect(t.every(Number.isFinite)).to.equal(true);
  });

  for (const [shape, c, d] of [['1x8x8', config, data], ['RGB 3x8x8', rgbConfig, { train: dataset(48, 1, 3), test: dataset(16, 2, 3) }]] as const) {
    it(`on WebGPU the state stays in GPU buffers and the run follows the CPU run (${shape})`, async () => {
      useSoftwareWebGpu();
      if (!existsSync(process.env.VK_ICD_FILENAMES!)) throw new Error('no Vulkan driver for WebGPU: apt-get install chromium libvulkan1');
      const cpu = await train(initWeights(c, 1), d, options(join(dir, 'cpu'), { evalLimit: 0 }));
      const gpu = await train(initWeights(c, 1), d, options(join(dir, 'gpu'), { evalLimit: 0, ep: 'webgpu' }));
      expect(cpu.stateLocation).to.equal('cpu');
      expect(gpu.stateLocation).to.equal('gpu-buffer');
      expect(gpu.losses.length).to.equal(cpu.losses.length);
      // Measured 1e-6 relative (losses) and 1e-6 absolute (parameters) after 6 steps, 1 and 3 channels.
      gpu.losses.forEach((loss, i) => expect(loss, `loss ${i + 1}`).to.be.closeTo(cpu.losses[i], 1e-5 * Math.abs(cpu.losses[i])));
      // The checkpoint is read back from the device: it must hold the run's final state.
      const saved = readTrainCheckpoint(readFileSync(join(dir, 'gpu', CHECKPOINT_FILE)), 'checkpoint');
      expect(saved.state.step).to.equal(gpu.steps);
      let worst = 0;
      for (const [name, t] of gpu.weights.params) {
        const error = maxAbsDiff(t.data, cpu.weights.params.get(name)!.data);
        worst = Math.max(worst, error);
        expect(error, name).to.be.below(1e-5);
        if (saved.ema?.has(name)) expect(maxAbsDiff(saved.ema.get(name)!, t.data), `${name} (EMA in checkpoint vs exported)`).to.be.below(1e-7);
      }
      console.log(`      ${gpu.steps} steps; losses ${cpu.losses[0].toFixed(4)} -> ${cpu.losses.at(-1)!.toFixed(4)} on the CPU, worst loss gap ${Math.max(...gpu.losses.map((l, i) => Math.abs(l - cpu.losses[i]) / Math.abs(cpu.losses[i]))).toExponential(1)} relative, worst parameter gap ${worst.toExponential(1)}`);
    });
  }
});

describe('training artifacts', function () {
  this.timeout(120000);
  const w = initWeights(config, 2);
  // Non-zero last convolutions, so that every gradient is non-trivial.
  // A non-zero prior_h too, or learn_top_fn.conv.weight (applied to it) would get no gradient.
  for (const [name, t] of w.params) if (/block\.4|conv\.conv|learn_top_fn|project_|\.logs$|prior_h/.test(name)) t.data.forEach((_, i) => (t.data[i] = 0.02 * Math.sin(i + name.length)));

  it('Adam in the optimizer graph matches a direct implementation (parameters, both moments, the bias-corrected step), clipping included', async () => {
    // `c` starts at 0, so that its updated value is the step itself, free of the parameters'
    // rounding: its relative error shows the bias corrections'.
    const shapes = new Map([['a', [3, 4]], ['b', [5]], ['c', [6]]]);
    const options = { clipNorm: 1, weightDecay: 0.01 };
    const session = await ort.InferenceSession.create(serializeModel(buildOptimizerModel(shapes, options)));
    const rng = new Rng(5);
    const values = (n: number, s = 1) => new Float32Array(n).map(() => s * rng.normal());
    let worstStep = 0;
    for (const t of [1, 2, 3]) {
      const feeds: Record<string, ort.Tensor> = adamScalars(t, 0.01, options);
      const host: Record<string, Float32Array> = {};
      for (const [name, shape] of shapes) {
        const n = shape.reduce((p, q) => p * q, 1);
        for (const [key, data] of [[name, values(n, name === 'c' ? 0 : 1)], [gradName(name), values(n, 3)], [momentNames(name).m, values(n, 0.1)], [momentNames(name).v, values(n, 0.1).map(Math.abs)]] as const) {
          host[key] = data;
          feeds[key] = new ort.Tensor('float32', data, shape);
        }
      }
      const out = await session.run(feeds);
      const norm = Math.sqrt([...shapes.keys()].reduce((s, name) => s + host[gradName(name)].reduce((a, g) => a + g * g, 0), 0));
      const scale = Math.min(1, 1 / (norm + 1e-6));
      for (const name of shapes.keys()) {
        host[gradName(name)].forEach((g0, i) => {
          const g = g0 * scale;
          const m = 0.9 * host[momentNames(name).m][i] + 0.1 * g;
          const v = 0.999 * host[momentNames(name).v][i] + 0.001 * g * g;
          const step = (0.01 * (m / (1 - 0.9 ** t))) / (Math.sqrt(v / (1 - 0.999 ** t)) + 1e-8);
          const p = host[name][i] - step - 0.01 * 0.01 * host[name][i];
          const updated = (out[updatedName(name)].data as Float32Array)[i];
          expect(updated, `${name}[${i}] at step ${t}`).to.be.closeTo(p, 1e-6);
          if (name === 'c') worstStep = Math.max(worstStep, Math.abs(updated - p) / Math.abs(step));
          expect((out[updatedName(momentNames(name).m)].data as Float32Array)[i]).to.be.closeTo(m, 1e-6);
          // The stored second moment is the raw average; bias correction applies only in the step.
          expect((out[updatedName(momentNames(name).v)].data as Float32Array)[i], `${name} exp_avg_sq[${i}]`).to.be.closeTo(v, 1e-6 * Math.max(1, v));
        });
      }
      expect((out.grad_norm.data as Float32Array)[0]).to.be.closeTo(norm, 1e-4 * norm);
    }
    console.log(`      worst relative error of the step: ${worstStep.toExponential(1)}`);
    expect(worstStep).to.be.below(1e-6);
  });

  it('training, eval and optimizer models compose to the fused step', async () => {
    const feeds = feedsFor(w, new Rng(9));
    const trainingSession = await ort.InferenceSession.create(serializeModel(buildTrainingModel(w)));
    const evalSession = await ort.InferenceSession.create(serializeModel(buildEvalModel(w)));
    const fusedSession = await ort.InferenceSession.create(serializeModel(buildFusedTrainStep(w)));
    const shapes = new Map(paramSpecs(config).filter((s) => s.trainable).map((s) => [s.name, s.shape]));
    const optimizerSession = await ort.InferenceSession.create(serializeModel(buildOptimizerModel(shapes)));
    const grads = await trainingSession.run(feeds);
    const evaluation = await evalSession.run(feeds);
    expect((grads.loss.data as Float32Array)[0]).to.be.closeTo((evaluation.loss.data as Float32Array)[0], 1e-6);
    expect(evaluation.bpd.dims).to.deep.equal([4]);
    const step = adamScalars(1, 1e-3);
    const optimizerFeeds: Record<string, ort.Tensor> = { ...step };
    const fusedFeeds: Record<string, ort.Tensor> = { ...feeds, ...step };
    for (const [name, shape] of shapes) {
      const zeros = new ort.Tensor('float32', new Float32Array(shape.reduce((p, q) => p * q, 1)), shape);
      const g = grads[gradName(name)].data as Float32Array;
      expect(g.some((v) => v !== 0), `${name} gradient`).to.equal(true);
      Object.assign(optimizerFeeds, { [name]: feeds[name], [gradName(name)]: grads[gradName(name)], [momentNames(name).m]: zeros, [momentNames(name).v]: zeros });
      Object.assign(fusedFeeds, { [momentNames(name).m]: zeros, [momentNames(name).v]: zeros });
    }
    const separate = await optimizerSession.run(optimizerFeeds);
    const fused = await fusedSession.run(fusedFeeds);
    for (const name of shapes.keys()) {
      expect(maxAbsDiff(fused[updatedName(name)].data as Float32Array, separate[updatedName(name)].data as Float32Array), name).to.be.below(1e-6);
    }
  });

  it('the fused step updates the moving averages: ema * decay + (1 - decay) * updated parameter', async () => {
    const feeds = feedsFor(w, new Rng(6));
    const shapes = new Map(paramSpecs(config).filter((s) => s.trainable).map((s) => [s.name, s.shape]));
    const rng = new Rng(8);
    Object.assign(feeds, { ...adamScalars(2, 1e-3), ema_decay: new ort.Tensor('float32', Float32Array.of(0.75), []) });
    for (const [name, shape] of shapes) {
      const n = shape.reduce((p, q) => p * q, 1);
      for (const key of [momentNames(name).m, momentNames(name).v, `ema.${name}`]) feeds[key] = new ort.Tensor('float32', new Float32Array(n).map(() => Math.abs(rng.normal())), shape);
    }
    const out = await (await ort.InferenceSession.create(serializeModel(buildFusedTrainStep(w, { ema: true })))).run(feeds);
    for (const name of shapes.keys()) {
      const updated = out[updatedName(name)].data as Float32Array;
      const average = feeds[`ema.${name}`].data as Float32Array;
      const expected = Float64Array.from(average, (a, i) => 0.75 * a + 0.25 * updated[i]);
      expect(maxAbsDiff(out[updatedName(`ema.${name}`)].data as Float32Array, expected), name).to.be.below(1e-6);
    }
  });

  it('the training model runs on WebGPU with the CPU results', async () => {
    useSoftwareWebGpu();
    if (!existsSync(process.env.VK_ICD_FILENAMES!)) throw new Error('no Vulkan driver for WebGPU: apt-get install chromium libvulkan1');
    const model = serializeModel(buildTrainingModel(w));
    const feeds = feedsFor(w, new Rng(4));
    const cpu = await (await ort.InferenceSession.create(model)).run(feeds);
    const gpu = await (await ort.InferenceSession.create(model, { executionProviders: [WEBGPU_EP] })).run(feeds);
    for (const name of Object.keys(cpu)) {
      const reference = cpu[name].data as Float32Array;
      const scale = Math.max(1e-3, ...Array.from(reference, Math.abs));
      expect(maxAbsDiff(gpu[name].data as Float32Array, reference) / scale, name).to.be.below(1e-4);
    }
  });
});
