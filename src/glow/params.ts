// The parameter tree: the paper's initialisation, strict validation, and the native checkpoint
// (safetensors with the y0ast/Glow-PyTorch state_dict names, config in its metadata).

import { GlowConfig, levelChannels, levelLU, luLevels, validateConfig } from './config.js';
import { logAbsDet, luDecompose, matrix, randomOrthogonal } from '../math/linalg.js';
import { GlowWeights } from './model.js';
import { paramSpecs, stepPrefix } from './names.js';
import { Rng } from '../math/rng.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { HostTensor, sameShape, zeros } from '../math/tensor.js';
import { META_CONFIG, META_SHUFFLES } from './metadata.js';

export const CONV_WEIGHT_STD = 0.05;

/**
 * Paper-style initialisation (as in the PyTorch ports): ActNorms zero (to be set from data),
 * 1x1 convolutions a random rotation from QR of a Gaussian matrix (stored as its LU factors when
 * config.lu at its level), coupling convolutions N(0, 0.05), every Conv2dZeros / LinearZeros and the priors
 * zero, so that the initial model is close to identity in its couplings.
 */
export function initWeights(config: GlowConfig, seed: number): GlowWeights {
  const rng = new Rng(seed);
  const params = new Map<string, HostTensor>();
  const shuffles = new Map<string, number[]>();
  for (const spec of paramSpecs(config)) {
    const t = zeros(spec.shape);
    if (spec.role === 'conv.weight' && /\.block\.[02]\.conv\.weight$/.test(spec.name)) rng.fillNormal(t.data, 0, CONV_WEIGHT_STD);
    params.set(spec.name, t);
  }
  for (let level = 0; level < config.L; level++) {
    const C = levelChannels(config, level + 1);
    for (let k = 0; k < config.K; k++) {
      const prefix = stepPrefix(config, level, k);
      if (config.permutation === 'shuffle') shuffles.set(prefix, rng.permutation(C));
      if (config.permutation !== 'invconv') continue;
      const w = randomOrthogonal(C, rng);
      if (!levelLU(config, level)) {
        params.get(`${prefix}.invconv.weight`)!.data.set(w.data);
        continue;
      }
      const { p, l, u } = luDecompose(w);
      const upper = params.get(`${prefix}.invconv.upper`)!.data;
      const logS = params.get(`${prefix}.invconv.log_s`)!.data;
      const signS = params.get(`${prefix}.invconv.sign_s`)!.data;
      for (let i = 0; i < C; i++) {
        const s = u.data[i * C + i];
        signS[i] = Math.sign(s);
        logS[i] = Math.log(Math.abs(s));
        for (let j = i + 1; j < C; j++) upper[i * C + j] = u.data[i * C + j];
      }
      params.get(`${prefix}.invconv.p`)!.data.set(p.data);
      params.get(`${prefix}.invconv.lower`)!.data.set(l.data);
    }
  }
  // Random unit vectors, drawn last so that the other tensors stay as without them; train
  // iterates them to the weights' directions before its first step.
  for (const spec of paramSpecs(config).filter((s) => s.role === 'spectral.u' || s.role === 'spectral.v')) {
    const t = params.get(spec.name)!;
    rng.fillNormal(t.data, 0, 1);
    let squares = 0;
    for (const e of t.data) squares += e * e;
    for (let i = 0; i < t.data.length; i++) t.data[i] /= Math.sqrt(squares);
  }
  return { config, params, shuffles: config.permutation === 'shuffle' ? shuffles : undefined };
}

export class WeightsError extends Error {
  override name = 'WeightsError';
}

/**
 * Checks tensors against the config like load_state_dict(strict=True), and beyond it refuses
 * non-finite values and singular 1x1 convolutions. One error lists every problem.
 */
export function checkWeights(config: GlowConfig, tensors: ReadonlyMap<string, HostTensor>, source: string): void {
  const specs = paramSpecs(config);
  const expected = new Set(specs.map((s) => s.name));
  const missing = specs.filter((s) => !tensors.has(s.name)).map((s) => s.name);
  const unexpected = [...tensors.keys()].filter((k) => !expected.has(k));
  const mismatched: string[] = [];
  const nonFinite: string[] = [];
  for (const spec of specs) {
    const t = tensors.get(spec.name);
    if (!t) continue;
    if (!sameShape(t.shape, spec.shape)) mismatched.push(`${spec.name} [${t.shape}] (expected [${spec.shape}])`);
    else if (!t.data.every(Number.isFinite)) nonFinite.push(spec.name);
  }
  const problems: string[] = [];
  const list = (label: string, items: string[]) => {
    if (items.length) problems.push(`${label} (${items.length}): ${items.slice(0, 8).join(', ')}${items.length > 8 ? ', ...' : ''}`);
  };
  list('missing keys', missing);
  list('unexpected keys', unexpected);
  list('shape mismatches', mismatched);
  list('non-finite values in', nonFinite);
  if (!problems.length && config.permutation === 'invconv' && luLevels(config).somePlain) {
    const singular = specs.filter((s) => s.role === 'invconv.weight').map((s) => s.name)
      .filter((name) => !Number.isFinite(logAbsDetOrInf(tensors.get(name)!)));
    list('singular 1x1 convolutions', singular);
  }
  if (problems.length) throw new WeightsError(`${source} does not fit the config: ${problems.join('; ')}`);
}

function logAbsDetOrInf(t: HostTensor): number {
  try {
    return logAbsDet(matrix(t.shape[0], t.shape[1], t.data));
  } catch {
    return -Infinity;
  }
}

export const WEIGHTS_FILE = 'weights.safetensors';

/** Native checkpoint bytes: float32 tensors in state_dict order, config and shuffle orders in
 * the safetensors metadata (which PyTorch's loaders ignore). */
export function checkpointBytes(w: GlowWeights): Uint8Array {
  checkWeights(w.config, w.params, 'weights');
  const metadata: Record<string, string> = { format: 'pt', [META_CONFIG]: JSON.stringify(w.config) };
  if (w.shuffles) metadata[META_SHUFFLES] = JSON.stringify(Object.fromEntries(w.shuffles));
  const tensors = paramSpecs(w.config).map((s) => {
    const t = w.params.get(s.name)!;
    return [s.name, { dtype: 'F32' as const, shape: t.shape, data: t.data }] as [string, { dtype: 'F32'; shape: number[]; data: Float64Array }];
  });
  return writeSafetensors(tensors, metadata);
}

/**
 * Reads a native checkpoint. The config comes from `configOverride`, else from the file's
 * metadata; the result is strictly checked.
 */
export function parseCheckpoint(bytes: Uint8Array, source: string, configOverride?: GlowConfig): GlowWeights {
  const file = readSafetensors(bytes, source);
  const params = new Map<string, HostTensor>();
  for (const [name, t] of file.tensors) params.set(name, { shape: t.shape, data: t.data });
  return weightsFromMetadata(params, file.metadata, source, configOverride);
}

/** Weights from named tensors and the string metadata stored beside them (safetensors metadata,
 * an ODTC checkpoint's string properties): config and shuffle orders as checkpointBytes writes
 * them. `where` names the metadata in messages. */
export function weightsFromMetadata(
  params: Map<string, HostTensor>, metadata: Record<string, string>, source: string, configOverride?: GlowConfig, where = 'metadata',
): GlowWeights {
  let config = configOverride;
  if (!config) {
    const raw = metadata[META_CONFIG];
    if (!raw) throw new WeightsError(`${source} carries no Glow config in its ${where}: pass --config FILE`);
    config = validateConfig(parseJson(raw, `${source} ${where} ${META_CONFIG}`));
  }
  checkWeights(config, params, source);
  let shuffles: Map<string, number[]> | undefined;
  if (config.permutation === 'shuffle') {
    const raw = metadata[META_SHUFFLES];
    if (!raw) throw new WeightsError(`${source}: shuffle permutations are not stored in it; a shuffle model needs its channel orders`);
    shuffles = shufflesFrom(parseJson(raw, `${source} ${where} ${META_SHUFFLES}`), `${source} ${where} ${META_SHUFFLES}`);
    checkShuffles(config, shuffles, source);
  }
  return { config, params, shuffles };
}

export function checkShuffles(config: GlowConfig, shuffles: ReadonlyMap<string, readonly number[]>, source: string): void {
  for (let level = 0; level < config.L; level++) {
    const C = levelChannels(config, level + 1);
    for (let k = 0; k < config.K; k++) {
      const prefix = stepPrefix(config, level, k);
      const p = shuffles.get(prefix);
      const isPermutation = Array.isArray(p) && p.length === C && [...p].sort((a, b) => a - b).every((v, i) => v === i);
      if (!isPermutation) throw new WeightsError(`${source}: shuffle of ${prefix} is not a permutation of 0..${C - 1}`);
    }
  }
}

/** Shuffle orders as JSON holds them, {"flow.layers.N": [indices]}; checkShuffles checks them
 * against a config. */
export function shufflesFrom(json: unknown, where: string): Map<string, number[]> {
  const valid = typeof json === 'object' && json !== null && !Array.isArray(json)
    && Object.values(json).every((p) => Array.isArray(p) && p.every(Number.isInteger));
  if (!valid) throw new WeightsError(`${where} must be a JSON object {"flow.layers.N": [channel indices]}`);
  return new Map(Object.entries(json as Record<string, number[]>));
}

export function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new WeightsError(`${where} is not valid JSON (${(e as Error).message})`);
  }
}
