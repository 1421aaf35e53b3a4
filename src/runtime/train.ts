// The training loop: data-dependent ActNorm init, then Adam steps of the fused train-step graph
// in ONNX Runtime, with warm-up, gradient clipping, optional EMA, atomic checkpoints that resume
// exactly, and a stop that never loses the last good state.

import ort from 'onnxruntime-node';
import { join } from 'node:path';
import { GraphBuilder } from '../builder/graph.js';
import { serializeModel } from '../builder/serialize.js';
import { GlowConfig, validateConfig } from '../glow/config.js';
import { exportModel } from '../glow/export.js';
import { GlowWeights } from '../glow/model.js';
import { effectiveWeight, powerIterate } from '../glow/layers/networks.js';
import { paramSpecs, spectralVectors } from '../glow/names.js';
import { checkpointBytes, checkShuffles, checkWeights, parseJson, shufflesFrom } from '../glow/params.js';
import { Rng } from '../glow/rng.js';
import { readSafetensors, writeSafetensors } from '../glow/safetensors.js';
import { HostTensor, size } from '../glow/tensor.js';
import { buildFusedTrainStep, emaName, LossOptions, momentNames, OptimizerOptions, updatedName, zeroMoments } from '../glow/training.js';
import { GlowModel } from './core.js';
import { writeFileAtomic, writeFilesAtomic } from './files.js';
import { oneHotRows, sampleEps } from './generate.js';
import { writeGrid } from './images.js';
import { initActNorms } from './init.js';
import { dequantize, failingImages, largest, quantize, roundTripErrors, roundTripTolerance } from './quantize.js';
import { sessionOptions } from './session-options.js';

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

export const CHECKPOINT_FILE = 'checkpoint.safetensors';

function floats(t: { data: ArrayLike<number> }): Float32Array {
  return Float32Array.from(t.data);
}

/** The order of an epoch's examples: a permutation fixed by the seed and the epoch number. */
export function epochOrder(count: number, seed: number, epoch: number): number[] {
  return new Rng(seed * 1000003 + epoch).permutation(count);
}

function trainableShapes(config: GlowConfig): Map<string, number[]> {
  return new Map(paramSpecs(config).filter((s) => s.trainable).map((s) => [s.name, s.shape]));
}

/** Spectral normalisation's power-iteration vectors: state the train step updates, without
 * gradients or moments. */
function spectralShapes(config: GlowConfig): Map<string, number[]> {
  return new Map(paramSpecs(config).filter((s) => s.role === 'spectral.u' || s.role === 'spectral.v').map((s) => [s.name, s.shape]));
}

/** Power iterations before the first step, on the initialised weights, so that sigma is
 * estimated from the start rather than after dozens of steps. */
const SPECTRAL_WARMUP_ITERATIONS = 30;

function warmSpectralVectors(w: GlowWeights): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const spec of paramSpecs(w.config).filter((s) => s.role === 'spectral.u')) {
    const block = spec.name.replace(/\.conv\.weight_u$/, '');
    const names = spectralVectors(block);
    const { u, v } = powerIterate(effectiveWeight(w.params, block), Float64Array.from(w.params.get(names.u)!.data),
      Float64Array.from(w.params.get(names.v)!.data), SPECTRAL_WARMUP_ITERATIONS);
    out.set(names.u, Float32Array.from(u));
    out.set(names.v, Float32Array.from(v));
  }
  return out;
}

/** Everything a run needs to continue exactly: parameters, moments, EMA, counters, RNG. */
function checkpointFile(w: GlowWeights, params: ReadonlyMap<string, Float32Array>, moments: ReadonlyMap<string, Float32Array>, ema: ReadonlyMap<string, Float32Array> | undefined, state: TrainState, options: object): Uint8Array {
  const tensors: [string, { dtype: 'F32'; shape: number[]; data: ArrayLike<number> }][] = [];
  for (const spec of paramSpecs(w.config)) {
    tensors.push([spec.name, { dtype: 'F32', shape: spec.shape, data: params.get(spec.name) ?? w.params.get(spec.name)!.data }]);
  }
  const shapes = trainableShapes(w.config);
  for (const [name, shape] of shapes) {
    tensors.push([momentNames(name).m, { dtype: 'F32', shape, data: moments.get(momentNames(name).m)! }]);
    tensors.push([momentNames(name).v, { dtype: 'F32', shape, data: moments.get(momentNames(name).v)! }]);
    if (ema) tensors.push([`ema.${name}`, { dtype: 'F32', shape, data: ema.get(name)! }]);
  }
  return writeSafetensors(tensors, {
    'glow_onnx.config': JSON.stringify(w.config),
    ...(w.shuffles ? { 'glow_onnx.shuffles': JSON.stringify(Object.fromEntries(w.shuffles)) } : {}),
    'glow_onnx.train_state': JSON.stringify(state),
    'glow_onnx.train_options': JSON.stringify(options),
  });
}

export interface TrainCheckpoint {
  weights: GlowWeights;
  /** The options the run was started with (a resume reuses them unless told otherwise). */
  options: Partial<TrainOptions>;
  params: Map<string, Float32Array>;
  moments: Map<string, Float32Array>;
  ema?: Map<string, Float32Array>;
  state: TrainState;
}

/** The checkpoint of a run that has not started: the weights, zero moments, step 0. */
export function initialCheckpoint(w: GlowWeights, seed = 0): Uint8Array {
  const shapes = trainableShapes(w.config);
  const params = new Map([...shapes.keys()].map((name) => [name, floats(w.params.get(name)!)]));
  const state: TrainState = { step: 0, epoch: 0, batchInEpoch: 0, noise: new Rng(seed + 2).state(), elapsedSeconds: 0 };
  return checkpointFile(w, params, zeroMoments(shapes), undefined, state, { seed });
}

/** A training checkpoint: the model (every checkpoint tensor, trained ones at their latest
 * values) and the optimizer state. */
export function readTrainCheckpoint(bytes: Uint8Array, source: string): TrainCheckpoint {
  const file = readSafetensors(bytes, source);
  const raw = file.metadata['glow_onnx.train_state'];
  const rawConfig = file.metadata['glow_onnx.config'];
  if (!raw || !rawConfig) throw new TrainingError(`${source} is not a training checkpoint (no train state)`);
  const config = validateConfig(parseJson(rawConfig, `${source} metadata glow_onnx.config`));
  const modelParams = new Map<string, HostTensor>(paramSpecs(config).flatMap((spec) => {
    const t = file.tensors.get(spec.name);
    return t ? [[spec.name, { shape: t.shape, data: t.data }] as const] : [];
  }));
  // The model's tensors as strictly as a weights file's (present, shaped, finite).
  checkWeights(config, modelParams, source);
  const get = (name: string, shape: number[]) => {
    const t = file.tensors.get(name);
    if (!t) throw new TrainingError(`${source} has no ${name}`);
    if (t.shape.join() !== shape.join()) throw new TrainingError(`${source}: ${name} is [${t.shape}], the config needs [${shape}]`);
    return t;
  };
  const shufflesRaw = file.metadata['glow_onnx.shuffles'];
  const shuffles = shufflesRaw ? shufflesFrom(parseJson(shufflesRaw, `${source} metadata glow_onnx.shuffles`), `${source} metadata glow_onnx.shuffles`) : undefined;
  if (config.permutation === 'shuffle') {
    if (!shuffles) throw new TrainingError(`${source}: a shuffle model's checkpoint needs its channel orders (glow_onnx.shuffles)`);
    checkShuffles(config, shuffles, source);
  }
  const weights: GlowWeights = { config, params: modelParams, shuffles };
  const params = new Map<string, Float32Array>();
  const moments = new Map<string, Float32Array>();
  const hasEma = [...file.tensors.keys()].some((k) => k.startsWith('ema.'));
  const ema = hasEma ? new Map<string, Float32Array>() : undefined;
  for (const [name, shape] of trainableShapes(config)) {
    params.set(name, floats(get(name, shape)));
    moments.set(momentNames(name).m, floats(get(momentNames(name).m, shape)));
    moments.set(momentNames(name).v, floats(get(momentNames(name).v, shape)));
    if (ema) ema.set(name, floats(get(`ema.${name}`, shape)));
  }
  const options = parseJson(file.metadata['glow_onnx.train_options'] ?? '{}', `${source} metadata glow_onnx.train_options`);
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new TrainingError(`${source}: glow_onnx.train_options is not a JSON object`);
  return { weights, options: options as Partial<TrainOptions>, params, moments, ema, state: trainState(parseJson(raw, `${source} metadata glow_onnx.train_state`), source) };
}

/** A stored train state, checked so that a resume fails here rather than steps later. */
function trainState(json: unknown, source: string): TrainState {
  const s = json as Partial<TrainState> | null;
  const count = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  const fail = (what: string) => new TrainingError(`${source}: the train state has ${what}`);
  if (typeof s !== 'object' || s === null) throw fail('no fields');
  for (const key of ['step', 'epoch', 'batchInEpoch'] as const) if (!count(s[key])) throw fail(`an invalid ${key} (${JSON.stringify(s[key])})`);
  if (!(Number.isFinite(s.elapsedSeconds) && s.elapsedSeconds! >= 0)) throw fail(`an invalid elapsedSeconds (${JSON.stringify(s.elapsedSeconds)})`);
  if (!Array.isArray(s.noise) || !s.noise.every((v) => typeof v === 'number')) throw fail('no noise generator state');
  try {
    Rng.fromState(s.noise);
  } catch (e) {
    throw fail(`an invalid noise generator state (${(e as Error).message})`);
  }
  return { step: s.step!, epoch: s.epoch!, batchInEpoch: s.batchInEpoch!, noise: s.noise, elapsedSeconds: s.elapsedSeconds! };
}

/** Host weights (for export) from the trained tensors; fixed buffers come from `base`. */
export function weightsWith(base: GlowWeights, trained: ReadonlyMap<string, Float32Array>): GlowWeights {
  const params = new Map(base.params);
  for (const [name, data] of trained) params.set(name, { shape: base.params.get(name)!.shape, data: Float64Array.from(data) });
  return { ...base, params };
}

export async function evaluate(w: GlowWeights, test: Dataset | undefined, options: TrainOptions, epoch: number): Promise<Omit<EpochReport, 'epoch' | 'step'>> {
  const files = exportModel(w);
  const cpu = sessionOptions('cpu', { threads: options.threads });
  const model = new GlowModel(
    w.config,
    await ort.InferenceSession.create(files['encode.onnx'], cpu),
    await ort.InferenceSession.create(files['decode.onnx'], cpu),
    ort,
    256,
  );
  try {
    const { config } = w;
    const imageSize = size(config.imageShape);
    let testBpd: number | undefined;
    let roundTrip: EpochReport['roundTrip'];
    if (test && options.evalLimit > 0) {
      const count = Math.min(test.count, options.evalLimit);
      const x = dequantize(test.pixels.subarray(0, count * imageSize), config.nBits, new Rng(options.seed + 7));
      const y = labelsOf(test, 0, count, config.numClasses);
      const enc = await model.encode(x, [count, ...config.imageShape], y);
      testBpd = enc.bpd.reduce((a, b) => a + b, 0) / count;
      // A model can learn scales that float32 cannot invert on some images; say so every epoch.
      const errors = roundTripErrors(x, await model.decode(enc.eps, 1, y), count);
      const failing = failingImages(errors, roundTripTolerance('float32', config.nBits)).length;
      roundTrip = { failing, count, maxError: largest(errors) };
    }
    const n = 64;
    const y = config.numClasses ? oneHotRows(config.numClasses, Array.from({ length: n }, (_, i) => i % config.numClasses)) : undefined;
    const xs = await model.decode(sampleEps(config, n, options.seed), 0.7, y);
    const pixels = quantize(xs, config.nBits);
    const samplePath = join(options.out, 'samples', `epoch-${String(epoch).padStart(3, '0')}.png`);
    await writeGrid(samplePath, Array.from({ length: n }, (_, i) => pixels.subarray(i * imageSize, (i + 1) * imageSize)), config.imageShape, { columns: 8, scale: Math.max(1, Math.round(56 / config.imageShape[1])) });
    return { testBpd, roundTrip, samplePath };
  } finally {
    await model.release();
  }
}

export function labelsOf(data: Dataset, start: number, count: number, classes: number, order?: number[]): Float32Array | undefined {
  if (!classes) return undefined;
  if (!data.labels) throw new TrainingError('a class-conditional model needs labelled data');
  const y = new Float32Array(count * classes);
  for (let i = 0; i < count; i++) {
    const label = data.labels[order ? order[start + i] : start + i];
    if (label < classes) y[i * classes + label] = 1;
  }
  return y;
}

export interface TrainResult {
  weights: GlowWeights;
  steps: number;
  losses: number[];
  stoppedEarly: boolean;
  /** Where the training state lived between steps. */
  stateLocation: ort.Tensor.DataLocation;
}

/** The training state (parameters, Adam moments, averages) as ONNX Runtime tensors keyed by
 * graph input name: host arrays on the CPU, GPU buffers that never leave the device on WebGPU,
 * read back only for checkpoints, evaluation and the end of the run. */
class DeviceState {
  private readback?: ort.InferenceSession;

  private constructor(private tensors: Map<string, ort.Tensor>, private readonly sessionOptions: ort.InferenceSession.SessionOptions) {}

  /** Each trainable tensor, its two moments and (with an EMA) its average, under their graph
   * input names; splitState is the inverse. */
  static fromHost(
    shapes: ReadonlyMap<string, number[]>, host: ReturnType<typeof splitState>, sessionOptions: ort.InferenceSession.SessionOptions,
    spectral: ReadonlyMap<string, number[]> = new Map(),
  ): DeviceState {
    const tensors = new Map<string, ort.Tensor>();
    for (const [name, shape] of spectral) tensors.set(name, new ort.Tensor('float32', host.spectral.get(name)!, shape));
    for (const [name, shape] of shapes) {
      const put = (key: string, data: Float32Array) => tensors.set(key, new ort.Tensor('float32', data, shape));
      put(name, host.params.get(name)!);
      put(momentNames(name).m, host.moments.get(momentNames(name).m)!);
      put(momentNames(name).v, host.moments.get(momentNames(name).v)!);
      if (host.ema) put(emaName(name), host.ema.get(name)!);
    }
    return new DeviceState(tensors, sessionOptions);
  }

  get location(): ort.Tensor.DataLocation {
    return this.tensors.values().next().value?.location ?? 'cpu';
  }

  feeds(): Record<string, ort.Tensor> {
    return Object.fromEntries(this.tensors);
  }

  /** Takes each `<name>.updated` output as the new `<name>` and frees the GPU buffers it replaces. */
  update(outputs: ort.InferenceSession.OnnxValueMapType): void {
    for (const [name, old] of this.tensors) {
      this.tensors.set(name, outputs[updatedName(name)] as ort.Tensor);
      if (old.location === 'gpu-buffer') old.dispose();
    }
  }

  /** Host copies of every tensor. onnxruntime-node cannot download a GPU tensor itself, so an
   * Identity graph on the same provider hands the buffers back as CPU outputs. */
  async toHost(): Promise<Map<string, Float32Array>> {
    if (this.location !== 'gpu-buffer') return new Map([...this.tensors].map(([k, t]) => [k, t.data as Float32Array]));
    if (!this.readback) {
      const g = new GraphBuilder('glow_state_readback');
      for (const [name, t] of this.tensors) g.output(g.node('Identity', [g.input(name, 'float32', [...t.dims])], {}, [{ dtype: 'float32', shape: [...t.dims] }])[0], `${name}.host`);
      this.readback = await ort.InferenceSession.create(serializeModel(g.build()), { ...this.sessionOptions, preferredOutputLocation: 'cpu' });
    }
    const out = await this.readback.run(this.feeds());
    return new Map([...this.tensors.keys()].map((k) => [k, (out[`${k}.host`] as ort.Tensor).data as Float32Array]));
  }

  async release(): Promise<void> {
    for (const t of this.tensors.values()) if (t.location === 'gpu-buffer') t.dispose();
    await this.readback?.release();
  }
}

/** Splits host state into parameters, moments, averages and power-iteration vectors. */
function splitState(host: ReadonlyMap<string, Float32Array>, shapes: ReadonlyMap<string, number[]>, withEma: boolean, spectralNames: Iterable<string>): {
  params: Map<string, Float32Array>; moments: Map<string, Float32Array>; ema?: Map<string, Float32Array>; spectral: Map<string, Float32Array>;
} {
  const params = new Map([...shapes.keys()].map((n) => [n, host.get(n)!]));
  const moments = new Map([...shapes.keys()].flatMap((n) => [momentNames(n).m, momentNames(n).v].map((k) => [k, host.get(k)!] as const)));
  const ema = withEma ? new Map([...shapes.keys()].map((n) => [n, host.get(emaName(n))!])) : undefined;
  const spectral = new Map([...spectralNames].map((n) => [n, host.get(n)!]));
  return { params, moments, ema, spectral };
}

/** The tensors a model is made of at this point: the trained ones (or their averages) with the
 * power-iteration vectors of the same step. */
function modelTensors(host: ReturnType<typeof splitState>): Map<string, Float32Array> {
  return new Map([...(host.ema ?? host.params), ...host.spectral]);
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
        learning_rate: scalar(lr),
        step: scalar(stepNumber),
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
