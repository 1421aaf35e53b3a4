// What a training run is, for both engines (the fused train step here and ONNX Runtime's
// TrainingSession): its data, options, reports and state, and the data order and batches they
// share.
import type ort from 'onnxruntime-node';
import { GlowWeights } from '../glow/model.js';
import { Rng } from '../math/rng.js';
import { size } from '../math/tensor.js';
import { oneHotRows } from '../runtime/generate.js';
import { initActNorms } from '../runtime/init.js';
import { dequantize } from '../runtime/quantize.js';
import { LossOptions, OptimizerOptions } from './graphs.js';

export interface Dataset {
  /** 8-bit CHW pixels, image after image. */
  pixels: Uint8Array;
  labels?: Uint8Array;
  count: number;
}

export interface TrainOptions extends OptimizerOptions, LossOptions {
  out: string;
  batchSize: number;
  learningRate: number;
  warmupSteps: number;
  epochs?: number;
  minutes?: number;
  /** Exponential moving average of the weights used for evaluation, samples and the exported
   * weights; 0 turns it off. */
  emaDecay: number;
  checkpointEvery: number;
  seed: number;
  /** Images for the data-dependent ActNorm initialisation before the first step; 0 keeps the
   * ActNorms the start weights have, as fine-tuning a trained model must. */
  initBatch: number;
  threads?: number;
  /** Where the train step runs (default cpu). On webgpu the parameters, moments and averages
   * stay in GPU buffers between steps; only the loss comes back each step. */
  ep?: 'cpu' | 'webgpu';
  /** Test images evaluated at the end of every epoch (0: none). */
  evalLimit: number;
}

export interface StepReport {
  step: number;
  epoch: number;
  loss: number;
  gradNorm: number;
  imagesPerSecond: number;
  /** Steps in the whole run, when the budget is epochs. */
  totalSteps?: number;
}

export interface EpochReport {
  epoch: number;
  step: number;
  testBpd?: number;
  /** decode(encode(x)) on the same test images: how many miss x by more than the float32
   * tolerance, and the largest miss (NaN if a decode gave NaN). */
  roundTrip?: { failing: number; count: number; maxError: number };
  samplePath?: string;
  /** The ort-training engine: the loss of ONNX Runtime's own eval step (mean bits/dim, plus the
   * weighted class term) on the same test images. */
  evalLoss?: number;
}

export interface TrainHooks {
  onStep?: (r: StepReport) => void;
  onEpoch?: (r: EpochReport) => void;
  onCheckpoint?: (path: string, step: number) => void;
  /** Polled after every step; true stops the run at the next checkpoint boundary. */
  shouldStop?: () => boolean;
}

export class TrainingError extends Error {
  override name = 'TrainingError';
}

export interface TrainState {
  step: number;
  epoch: number;
  /** Batches of the current epoch already consumed. */
  batchInEpoch: number;
  noise: number[];
  elapsedSeconds: number;
}

export interface TrainResult {
  weights: GlowWeights;
  steps: number;
  losses: number[];
  stoppedEarly: boolean;
  /** Where the training state lived between steps. */
  stateLocation: ort.Tensor.DataLocation;
}

/** The order of an epoch's examples: a permutation fixed by the seed and the epoch number. */
export function epochOrder(count: number, seed: number, epoch: number): number[] {
  return new Rng(seed * 1000003 + epoch).permutation(count);
}

export function labelsOf(data: Dataset, start: number, count: number, classes: number, order?: number[]): Float32Array | undefined {
  if (!classes) return undefined;
  if (!data.labels) throw new TrainingError('a class-conditional model needs labelled data');
  const labels = data.labels;
  // Labels the model has no class for train as unconditioned rows (zeros), as they always have.
  return oneHotRows(classes, Array.from({ length: count }, (_, i) => labels[order ? order[start + i] : start + i]), true);
}

/** Images order[start], ..., order[start + count - 1] of `data`, one after another, into `into`. */
export function gatherImages(data: Dataset, order: readonly number[], start: number, count: number, into: Uint8Array): Uint8Array {
  const n = into.length / count;
  for (let i = 0; i < count; i++) into.set(data.pixels.subarray(order[start + i] * n, (order[start + i] + 1) * n), i * n);
  return into;
}

/** What every engine's run needs before its first step: one batch of data and a budget. */
export function checkTrainRun(data: Dataset, options: Pick<TrainOptions, 'batchSize' | 'epochs' | 'minutes'>): void {
  if (data.count < options.batchSize) throw new TrainingError(`the training set has ${data.count} images, fewer than one batch of ${options.batchSize}`);
  if (!options.epochs && !options.minutes) throw new TrainingError('give a budget: epochs or minutes');
}

/** Data-dependent ActNorm initialisation on the first `initBatch` images of a fixed order (none
 * when initBatch is 0): the start of every engine's run. */
export async function initialiseActNorms(initial: GlowWeights, data: Dataset, options: Pick<TrainOptions, 'initBatch' | 'seed'>): Promise<GlowWeights> {
  if (options.initBatch <= 0) return initial;
  const { config } = initial;
  const initRng = new Rng(options.seed + 1);
  const initCount = Math.min(options.initBatch, data.count);
  const order = epochOrder(data.count, options.seed, -1).slice(0, initCount);
  const initPixels = gatherImages(data, order, 0, initCount, new Uint8Array(initCount * size(config.imageShape)));
  return initActNorms(initial, dequantize(initPixels, config.nBits, initRng), labelsOf(data, 0, initCount, config.numClasses, order));
}
