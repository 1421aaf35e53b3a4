// `glow-onnx train --engine ort-training`: the loop of ONNX Runtime's on-device training API
// (TrainingSession: runTrainStep, runOptimizerStep, lazyResetGrad, runEvalStep) over the artifacts of
// `artifacts --format ort-training`, in the 1.19.2 training build (CPU wasm). Same data order,
// dequantisation noise, ActNorm init and epoch reports as the default engine; what the API does
// not give (the Adam moments, so no exact resume; clipping; warm-up; EMA) it does not do.

import { join } from 'node:path';
import { GlowWeights } from '../glow/model.js';
import { paramSpecs } from '../glow/names.js';
import { buildOrtTrainingArtifacts } from './ort-artifacts.js';
import { ortTrainingCheckpoint } from '../glow/odtc-weights.js';
import { checkpointBytes, WEIGHTS_FILE } from '../glow/params.js';
import { Rng } from '../math/rng.js';
import { size } from '../math/tensor.js';
import { writeFilesAtomic } from '../io/files.js';
import { createOrtTrainingSession, loadTrainingBuild, runEvalStep, TrainingBuild, TrainingSession } from './ort-runtime.js';
import { dequantize } from '../runtime/quantize.js';
import { weightsWith } from './checkpoint.js';
import { evaluate, evaluationImages } from './epoch-eval.js';
import { checkTrainRun, Dataset, epochOrder, gatherImages, initialiseActNorms, labelsOf, TrainHooks, TrainingError, TrainOptions, TrainResult } from './run.js';

/** Where the run's artifacts and its trained ODTC checkpoint go, under --out. */
export const ORT_TRAINING_DIR = 'ort-training';

async function trainedWeights(session: TrainingSession, base: GlowWeights): Promise<GlowWeights> {
  const flat = (await session.getContiguousParameters(true)).data as Float32Array;
  const trained = new Map<string, Float32Array>();
  let offset = 0;
  for (const spec of paramSpecs(base.config).filter((s) => s.trainable)) {
    const n = size(spec.shape);
    trained.set(spec.name, flat.slice(offset, offset + n));
    offset += n;
  }
  if (offset !== flat.length) throw new TrainingError(`ONNX Runtime holds ${flat.length} trainable values, the model ${offset}`);
  return weightsWith(base, trained);
}

/** The eval model's loss over the epoch's test images, from ONNX Runtime's own eval step, one
 * training batch of images at a time. */
async function sessionEvalLoss(session: TrainingSession, ort: TrainingBuild, test: Dataset | undefined, options: TrainOptions, config: GlowWeights['config']): Promise<number | undefined> {
  if (!test || options.evalLimit <= 0) return undefined;
  const { x, y, count } = evaluationImages(test, options, config);
  const imageSize = size(config.imageShape);
  let total = 0;
  for (let start = 0; start < count; start += options.batchSize) {
    const n = Math.min(options.batchSize, count - start);
    const feeds: Record<string, InstanceType<typeof ort.Tensor>> = { x: new ort.Tensor('float32', x.slice(start * imageSize, (start + n) * imageSize), [n, ...config.imageShape]) };
    if (y) feeds.y = new ort.Tensor('float32', y.slice(start * config.numClasses, (start + n) * config.numClasses), [n, config.numClasses]);
    total += ((await runEvalStep(session, feeds)).loss.data as Float32Array)[0] * n;
  }
  return total / count;
}

export async function trainWithOrtTraining(
  initial: GlowWeights, data: { train: Dataset; test?: Dataset }, options: TrainOptions, hooks: TrainHooks = {},
): Promise<Omit<TrainResult, 'stateLocation'>> {
  const { config } = initial;
  const imageSize = size(config.imageShape);
  checkTrainRun(data.train, options);
  const ort = await loadTrainingBuild();
  const base = await initialiseActNorms(initial, data.train, options);
  const artifacts = buildOrtTrainingArtifacts(base, { ...options, learningRate: options.learningRate });
  const session = await createOrtTrainingSession(artifacts);
  const batchesPerEpoch = Math.floor(data.train.count / options.batchSize);
  const totalSteps = options.epochs ? options.epochs * batchesPerEpoch : undefined;
  const noise = new Rng(options.seed + 2);
  const losses: number[] = [];
  const started = Date.now();
  const budgetLeft = (epoch: number) => (options.epochs === undefined || epoch < options.epochs) && (options.minutes === undefined || Date.now() - started < options.minutes * 60000);
  const save = async (weights: GlowWeights, step: number) => {
    const dir = join(options.out, ORT_TRAINING_DIR);
    writeFilesAtomic(dir, { ...artifacts, checkpoint: ortTrainingCheckpoint(weights) });
    hooks.onCheckpoint?.(join(dir, 'checkpoint'), step);
  };
  let step = 0;
  let stoppedEarly = false;
  let weights: GlowWeights;
  try {
    const x = new Float32Array(options.batchSize * imageSize);
    const pixels = new Uint8Array(options.batchSize * imageSize);
    for (let epoch = 0; budgetLeft(epoch) && !stoppedEarly; epoch++) {
      const order = epochOrder(data.train.count, options.seed, epoch);
      for (let batch = 0; batch < batchesPerEpoch; batch++) {
        const stepStart = Date.now();
        const start = batch * options.batchSize;
        x.set(dequantize(gatherImages(data.train, order, start, options.batchSize, pixels), config.nBits, noise));
        const feeds: Record<string, InstanceType<typeof ort.Tensor>> = { x: new ort.Tensor('float32', x.slice(), [options.batchSize, ...config.imageShape]) };
        const y = labelsOf(data.train, start, options.batchSize, config.numClasses, order);
        if (y) feeds.y = new ort.Tensor('float32', y, [options.batchSize, config.numClasses]);
        const loss = ((await session.runTrainStep(feeds)).loss.data as Float32Array)[0];
        if (!Number.isFinite(loss)) {
          throw new TrainingError(`the loss became ${loss} at step ${step + 1}: stopped without applying it; the last checkpoint in ${join(options.out, ORT_TRAINING_DIR)} is intact. Try a lower learning rate`);
        }
        await session.runOptimizerStep();
        await session.lazyResetGrad();
        step++;
        losses.push(loss);
        hooks.onStep?.({ step, epoch, loss, gradNorm: NaN, imagesPerSecond: options.batchSize / Math.max(1e-3, (Date.now() - stepStart) / 1000), totalSteps });
        const epochDone = batch === batchesPerEpoch - 1;
        if (epochDone) {
          const report = await evaluate(await trainedWeights(session, base), data.test, options, epoch + 1);
          const evalLoss = await sessionEvalLoss(session, ort, data.test, options, config);
          hooks.onEpoch?.({ epoch: epoch + 1, step, ...report, evalLoss });
        }
        if (step % options.checkpointEvery === 0 || epochDone) await save(await trainedWeights(session, base), step);
        if (hooks.shouldStop?.()) {
          stoppedEarly = true;
          break;
        }
        if (!budgetLeft(epoch)) break;
      }
    }
    weights = await trainedWeights(session, base);
    await save(weights, step);
  } finally {
    await session.release();
  }
  writeFilesAtomic(options.out, { [WEIGHTS_FILE]: checkpointBytes(weights), 'config.json': `${JSON.stringify(config, null, 2)}\n` });
  return { weights, steps: step, losses, stoppedEarly };
}
