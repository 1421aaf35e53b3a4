// Seeded random Glow parameters (and inputs) for tests: every tensor of paramSpecs(config) gets
// values of moderate size, so that tests exercise non-trivial weights instead of the paper's
// zero/identity initialisation. Self-contained (own PRNG) so results never depend on Math.random.

import { GlowConfig, levelChannels } from '../src/glow/config.js';
import { ParamSpec, paramSpecs, splitPrefix, stepPrefix } from '../src/glow/names.js';
import { HostTensor } from '../src/math/tensor.js';

/** mulberry32 uniform [0, 1) with Box-Muller normals. */
export class Rng {
  private state: number;
  private spare: number | null = null;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  normal(mean = 0, std = 1): number {
    if (this.spare !== null) {
      const z = this.spare;
      this.spare = null;
      return mean + std * z;
    }
    const u1 = 1 - this.next(); // (0, 1]
    const u2 = this.next();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return mean + std * r * Math.cos(2 * Math.PI * u2);
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [p[i], p[j]] = [p[j], p[i]];
    }
    return p;
  }
}

export interface RandomParamsOptions {
  /** Standard deviation of prior_h; 0 (the PyTorch convention: a zero buffer) by default. */
  priorHStd?: number;
}

function fill(shape: number[], f: () => number): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) data[i] = f();
  return { shape: [...shape], data };
}

function randomTensor(spec: ParamSpec, rng: Rng, scale: number, options: RandomParamsOptions): HostTensor {
  const { shape } = spec;
  switch (spec.role) {
    case 'actnorm.bias':
    case 'conv.bias':
    case 'linear.bias':
      return fill(shape, () => rng.normal(0, 0.1));
    case 'actnorm.logs':
      return fill(shape, () => rng.uniform(-0.3, 0.3));
    case 'conv.weight':
      return fill(shape, () => rng.normal(0, 0.05 * scale));
    case 'linear.weight':
      return fill(shape, () => rng.normal(0, 0.1 * scale));
    case 'zeros.logs':
      return fill(shape, () => rng.uniform(-0.2, 0.2));
    case 'invconv.lower':
    case 'invconv.upper':
      // Entries of random triangular factors must shrink like 1/sqrt(C): with a fixed spread their
      // condition number grows exponentially with C and float32 could not invert the flow.
      return fill(shape, () => rng.normal(0, 0.3 / Math.sqrt(shape[0])));
    case 'invconv.log_s':
      return fill(shape, () => rng.uniform(-0.3, 0.3));
    case 'invconv.sign_s':
      return fill(shape, () => (rng.next() < 0.5 ? -1 : 1));
    case 'invconv.p': {
      const C = shape[0];
      const t = fill(shape, () => 0);
      rng.permutation(C).forEach((col, row) => (t.data[row * C + col] = 1));
      return t;
    }
    case 'invconv.weight': {
      // I + 0.3 N(0, 1) / sqrt(C): singular values stay well away from zero, log|det| != 0.
      const C = shape[0];
      const t = fill(shape, () => (0.3 * rng.normal()) / Math.sqrt(C));
      for (let i = 0; i < C; i++) t.data[i * C + i] += 1;
      return t;
    }
    case 'spectral.u':
    case 'spectral.v': {
      // A random direction: any unit vector is a valid power-iteration state.
      const t = fill(shape, () => rng.normal());
      const norm = Math.sqrt(Array.from(t.data).reduce((a, b) => a + b * b, 0));
      t.data.forEach((e, i) => (t.data[i] = e / norm));
      return t;
    }
    case 'prior_h': {
      const std = options.priorHStd ?? 0;
      return fill(shape, () => (std > 0 ? rng.normal(0, std) : 0));
    }
  }
}

/** Random values of moderate size for every tensor of paramSpecs(config), keyed by name. */
export function randomParams(
  config: GlowConfig,
  seed: number,
  scale = 1,
  options: RandomParamsOptions = {},
): Map<string, HostTensor> {
  const rng = new Rng(seed);
  const params = new Map<string, HostTensor>();
  for (const spec of paramSpecs(config)) params.set(spec.name, randomTensor(spec, rng, scale, options));
  return params;
}

/** A random channel permutation per step prefix for permutation 'shuffle' (else an empty map). */
export function randomShuffles(config: GlowConfig, seed: number): Map<string, number[]> {
  const shuffles = new Map<string, number[]>();
  if (config.permutation !== 'shuffle') return shuffles;
  const rng = new Rng(seed);
  for (let level = 0; level < config.L; level++) {
    const C = levelChannels(config, level + 1);
    for (let step = 0; step < config.K; step++) shuffles.set(stepPrefix(config, level, step), rng.permutation(C));
  }
  return shuffles;
}

/**
 * A copy of params with every prior parameter zeroed (split Conv2dZeros, learn_top_fn,
 * project_ycond, prior_h): every prior is then N(0, 1) and eps = z.
 */
export function withZeroPriors(config: GlowConfig, params: Map<string, HostTensor>): Map<string, HostTensor> {
  const out = new Map(params);
  const splits = Array.from({ length: config.L - 1 }, (_, level) => `${splitPrefix(config, level)}.`);
  for (const spec of paramSpecs(config)) {
    const n = spec.name;
    const isPrior =
      n === 'prior_h' ||
      n.startsWith('learn_top_fn.') ||
      n.startsWith('project_ycond.') ||
      splits.some((p) => n.startsWith(p));
    if (isPrior) out.set(n, fill(spec.shape, () => 0));
  }
  return out;
}

/** Dequantised random images [N, C, H, W]: x = k / 2^nBits - 0.5 + u. */
export function randomImages(config: GlowConfig, N: number, seed: number): HostTensor {
  const rng = new Rng(seed);
  const bins = 2 ** config.nBits;
  const [C, H, W] = config.imageShape;
  return fill([N, C, H, W], () => rng.int(bins) / bins - 0.5 + rng.next() / bins);
}

/** Random one-hot labels [N, numClasses]. */
export function randomOneHot(config: GlowConfig, N: number, seed: number): HostTensor {
  const rng = new Rng(seed);
  const K = config.numClasses;
  const t = fill([N, K], () => 0);
  for (let n = 0; n < N; n++) t.data[n * K + rng.int(K)] = 1;
  return t;
}
