// The training checkpoint: everything a run needs to continue exactly (parameters, Adam
// moments, EMA, counters, noise state) in one safetensors file, read back as strictly as a
// weights file.
import { GlowConfig, validateConfig } from '../glow/config.js';
import { GlowWeights } from '../glow/model.js';
import { paramSpecs } from '../glow/names.js';
import { checkShuffles, checkWeights, parseJson, shufflesFrom } from '../glow/params.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { Rng } from '../math/rng.js';
import { HostTensor } from '../math/tensor.js';
import { zeroMoments } from './graphs.js';
import { emaName, momentNames } from './names.js';
import { TrainingError, TrainOptions, TrainState } from './run.js';
import { META_CONFIG, META_SHUFFLES, META_TRAIN_OPTIONS, META_TRAIN_STATE } from '../glow/metadata.js';

export const CHECKPOINT_FILE = 'checkpoint.safetensors';

export function floats(t: { data: ArrayLike<number> }): Float32Array {
  return Float32Array.from(t.data);
}

/** Spectral normalisation's power-iteration vectors: state the train step updates, without
 * gradients or moments. */
export function spectralShapes(config: GlowConfig): Map<string, number[]> {
  return new Map(paramSpecs(config).filter((s) => s.role === 'spectral.u' || s.role === 'spectral.v').map((s) => [s.name, s.shape]));
}

export function trainableShapes(config: GlowConfig): Map<string, number[]> {
  return new Map(paramSpecs(config).filter((s) => s.trainable).map((s) => [s.name, s.shape]));
}

/** Everything a run needs to continue exactly: parameters, moments, EMA, counters, RNG. */
export function checkpointFile(w: GlowWeights, params: ReadonlyMap<string, Float32Array>, moments: ReadonlyMap<string, Float32Array>, ema: ReadonlyMap<string, Float32Array> | undefined, state: TrainState, options: object): Uint8Array {
  const tensors: [string, { dtype: 'F32'; shape: number[]; data: ArrayLike<number> }][] = [];
  for (const spec of paramSpecs(w.config)) {
    tensors.push([spec.name, { dtype: 'F32', shape: spec.shape, data: params.get(spec.name) ?? w.params.get(spec.name)!.data }]);
  }
  const shapes = trainableShapes(w.config);
  for (const [name, shape] of shapes) {
    tensors.push([momentNames(name).m, { dtype: 'F32', shape, data: moments.get(momentNames(name).m)! }]);
    tensors.push([momentNames(name).v, { dtype: 'F32', shape, data: moments.get(momentNames(name).v)! }]);
    if (ema) tensors.push([emaName(name), { dtype: 'F32', shape, data: ema.get(name)! }]);
  }
  return writeSafetensors(tensors, {
    [META_CONFIG]: JSON.stringify(w.config),
    ...(w.shuffles ? { [META_SHUFFLES]: JSON.stringify(Object.fromEntries(w.shuffles)) } : {}),
    [META_TRAIN_STATE]: JSON.stringify(state),
    [META_TRAIN_OPTIONS]: JSON.stringify(options),
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
  const raw = file.metadata[META_TRAIN_STATE];
  const rawConfig = file.metadata[META_CONFIG];
  if (!raw || !rawConfig) throw new TrainingError(`${source} is not a training checkpoint (no train state)`);
  const config = validateConfig(parseJson(rawConfig, `${source} metadata ${META_CONFIG}`));
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
  const shufflesRaw = file.metadata[META_SHUFFLES];
  const shuffles = shufflesRaw ? shufflesFrom(parseJson(shufflesRaw, `${source} metadata ${META_SHUFFLES}`), `${source} metadata ${META_SHUFFLES}`) : undefined;
  if (config.permutation === 'shuffle') {
    if (!shuffles) throw new TrainingError(`${source}: a shuffle model's checkpoint needs its channel orders (${META_SHUFFLES})`);
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
    if (ema) ema.set(name, floats(get(emaName(name), shape)));
  }
  const options = parseJson(file.metadata[META_TRAIN_OPTIONS] ?? '{}', `${source} metadata ${META_TRAIN_OPTIONS}`);
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new TrainingError(`${source}: ${META_TRAIN_OPTIONS} is not a JSON object`);
  return { weights, options: options as Partial<TrainOptions>, params, moments, ema, state: trainState(parseJson(raw, `${source} metadata ${META_TRAIN_STATE}`), source) };
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
