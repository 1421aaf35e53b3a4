// The training loop: data-dependent ActNorm init, then Adam steps of the fused train-step graph
// in ONNX Runtime, with warm-up, gradient clipping, optional EMA, atomic checkpoints that resume
// exactly, and a stop that never loses the last good state.

import ort from 'onnxruntime-node';
import { join } from 'node:path';
import { serializeModel } from '../builder/serialize.js';
import { effectiveWeight, powerIterate } from '../glow/layers/networks.js';
import { GlowWeights } from '../glow/model.js';
import { normalisedConvs, spectralVectors } from '../glow/names.js';
import { checkpointBytes } from '../glow/params.js';
import { Rng } from '../math/rng.js';
import { size } from '../math/tensor.js';
import { adamFeeds, buildFusedTrainStep, zeroMoments } from './graphs.js';
import { writeFileAtomic, writeFilesAtomic } from '../io/files.js';
import { dequantize } from '../runtime/quantize.js';
import { sessionOptions } from '../runtime/session-options.js';
import { CHECKPOINT_FILE, checkpointFile, floats, spectralShapes, TrainCheckpoint, trainableShapes, weightsWith } from './checkpoint.js';
import { DeviceState, modelTensors, splitState } from './device-state.js';
import { evaluate } from './epoch-eval.js';
import { checkTrainRun, Dataset, epochOrder, gatherImages, initialiseActNorms, labelsOf, TrainHooks, TrainingError, TrainOptions, TrainResult, TrainState } from './run.js';

/** Power iterations before the first step, on the initialised weights, so that sigma is
 * estimated from the start rather than after dozens of steps. */
const SPECTRAL_WARMUP_ITERATIONS = 30;

function warmSpectralVectors(w: GlowWeights): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const block of normalisedConvs(w.config)) {
    const names = spectralVectors(block);
    const { u, v } = powerIterate(effectiveWeight(w.params, block), Float64Array.from(w.params.get(names.u)!.data),
      Float64Array.from(w.params.get(names.v)!.data), SPECTRAL_WARMUP_ITERATIONS);
    out.set(names.u, Float32Array.from(u));
    out.set(names.v, Float32Array.from(v));
  }
  return out;
}

/**
 * Trains from fresh weights (after data-dependent ActNorm initialisation) or continues a
 * training checkpoint exactly: same data order, noise, optimizer state and EMA.
 */
export async function train(start: GlowWeights | TrainCheckpoint, data: { train: Dataset; test?: Dataset }, options: TrainOptions, hooks: TrainHooks = {}): Promise<TrainResult> {
  const resumed = 'state' in start ? start : undefined;
  const initial = resumed ? resumed.weights : (start as GlowWeights);
  const { config } = initial;
  const imageSize = size(config.imageShape);
  const classes = config.numClasses;
  checkTrainRun(data.train, options);

  let base = initial;
  let params: Map<string, Float32Array>;
  let moments: Map<string, Float32Array>;
  let ema: Map<string, Float32Array> | undefined;
  let state: TrainState;
  let spectral: Map<string, Float32Array>;
  const shapes = trainableShapes(config);
  const spectralState = spectralShapes(config);
  if (resumed) {
    ({ params, moments, ema, state } = resumed);
    // The checkpoint's vectors are the step's own: a resume continues their iteration exactly.
    spectral = new Map([...spectralState.keys()].map((name) => [name, floats(initial.params.get(name)!)]));
  } else {
    base = await initialiseActNorms(initial, data.train, options);
    spectral = warmSpectralVectors(base);
    params = new Map([...shapes.keys()].map((name) => [name, floats(base.params.get(name)!)]));
    moments = zeroMoments(shapes);
    ema = options.emaDecay > 0 ? new Map([...params].map(([k, v]) => [k, v.slice()])) : undefined;
    state = { step: 0, epoch: 0, batchInEpoch: 0, noise: new Rng(options.seed + 2).state(), elapsedSeconds: 0 };
  }

  const ep = options.ep ?? 'cpu';
  const deviceOptions = sessionOptions(ep, { threads: options.threads });
  const withEma = ema !== undefined;
  const stepGraph = buildFusedTrainStep(base, { ...options, ema: withEma });
  // On WebGPU every updated tensor stays on the device; only the loss and norm come back.
  const hostOutputs = new Set(['loss', 'grad_norm']);
  const session = await ort.InferenceSession.create(serializeModel(stepGraph), {
    ...deviceOptions,
    ...(ep === 'webgpu' ? { preferredOutputLocation: Object.fromEntries(stepGraph.outputs.map((io) => [io.value.name, hostOutputs.has(io.value.name) ? 'cpu' : 'gpu-buffer'])) } : {}),
  });
  const device = DeviceState.fromHost(shapes, { params, moments, ema, spectral }, deviceOptions, spectralState);
  const batchesPerEpoch = Math.floor(data.train.count / options.batchSize);
  const totalSteps = options.epochs ? options.epochs * batchesPerEpoch : undefined;
  const noise = Rng.fromState(state.noise);
  const losses: number[] = [];
  const started = Date.now() - state.elapsedSeconds * 1000;
  const elapsed = () => (Date.now() - started) / 1000;
  let lastCheckpoint = state.step;
  const hostCopies = async () => splitState(await device.toHost(), shapes, withEma, spectralState.keys());
  const saveCheckpoint = async () => {
    const path = join(options.out, CHECKPOINT_FILE);
    const host = await hostCopies();
    writeFileAtomic(path, checkpointFile(base, new Map([...host.params, ...host.spectral]), host.moments, host.ema, { ...state, noise: noise.state(), elapsedSeconds: elapsed() }, options));
    lastCheckpoint = state.step;
    hooks.onCheckpoint?.(path, state.step);
  };
  const budgetLeft = () => (options.epochs === undefined || state.epoch < options.epochs) && (options.minutes === undefined || elapsed() < options.minutes * 60);

  let stoppedEarly = false;
  let final: Awaited<ReturnType<typeof hostCopies>>;
  let stateLocation: ort.Tensor.DataLocation;
  try {
    let order = epochOrder(data.train.count, options.seed, state.epoch);
    const x = new Float32Array(options.batchSize * imageSize);
    const pixels = new Uint8Array(options.batchSize * imageSize);
    while (budgetLeft()) {
      const stepStart = Date.now();
      const start = state.batchInEpoch * options.batchSize;
      x.set(dequantize(gatherImages(data.train, order, start, options.batchSize, pixels), config.nBits, noise));
      const stepNumber = state.step + 1;
      const lr = options.learningRate * Math.min(1, stepNumber / Math.max(1, options.warmupSteps));
      const scalar = (v: number) => new ort.Tensor('float32', Float32Array.of(v), []);
      const feeds: Record<string, ort.Tensor> = {
        x: new ort.Tensor('float32', x, [options.batchSize, ...config.imageShape]),
        ...Object.fromEntries(Object.entries(adamFeeds(stepNumber, lr, options)).map(([k, v]) => [k, scalar(v)])),
        ...device.feeds(),
      };
      // The EMA decay ramps up with the step count, so that early averages are not dominated
      // by the initial weights.
      if (withEma) feeds.ema_decay = scalar(Math.min(options.emaDecay, (1 + stepNumber) / (10 + stepNumber)));
      const y = labelsOf(data.train, start, options.batchSize, classes, order);
      if (y) feeds.y = new ort.Tensor('float32', y, [options.batchSize, classes]);
      const out = await session.run(feeds);
      const loss = (out.loss.data as Float32Array)[0];
      const gradNorm = out.grad_norm ? (out.grad_norm.data as Float32Array)[0] : NaN;
      if (!Number.isFinite(loss) || (out.grad_norm && !Number.isFinite(gradNorm))) {
        for (const [name, t] of Object.entries(out)) if (!hostOutputs.has(name) && (t as ort.Tensor).location === 'gpu-buffer') (t as ort.Tensor).dispose();
        throw new TrainingError(`the loss became ${loss} (gradient norm ${gradNorm}) at step ${stepNumber}: stopped without applying it; `
          + `the last good checkpoint (step ${lastCheckpoint}) is intact in ${options.out}. Try a lower learning rate or more warm-up`);
      }
      device.update(out);
      state.step = stepNumber;
      state.batchInEpoch++;
      losses.push(loss);
      hooks.onStep?.({ step: state.step, epoch: state.epoch, loss, gradNorm, imagesPerSecond: options.batchSize / Math.max(1e-3, (Date.now() - stepStart) / 1000), totalSteps });

      const epochDone = state.batchInEpoch === batchesPerEpoch;
      if (epochDone) {
        const finished = state.epoch;
        state.epoch++;
        state.batchInEpoch = 0;
        order = epochOrder(data.train.count, options.seed, state.epoch);
        const host = await hostCopies();
        const report = await evaluate(weightsWith(base, modelTensors(host)), data.test, options, finished + 1);
        hooks.onEpoch?.({ epoch: finished + 1, step: state.step, ...report });
      }
      if (state.step % options.checkpointEvery === 0 || epochDone) await saveCheckpoint();
      if (hooks.shouldStop?.()) {
        stoppedEarly = true;
        break;
      }
    }
    await saveCheckpoint();
    final = await hostCopies();
    stateLocation = device.location;
  } finally {
    await device.release();
    await session.release();
  }
  const weights = weightsWith(base, modelTensors(final));
  writeFilesAtomic(options.out, { 'weights.safetensors': checkpointBytes(weights), 'config.json': `${JSON.stringify(config, null, 2)}\n` });
  return { weights, steps: state.step, losses, stoppedEarly, stateLocation };
}
