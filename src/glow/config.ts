// GlowConfig: the architecture of a Glow model, independent of its weights.

export type Coupling = 'additive' | 'affine';
export type Permutation = 'invconv' | 'shuffle' | 'reverse';

export interface GlowConfig {
  /** [channels, height, width] of the images the model sees. */
  imageShape: [number, number, number];
  /** Flow steps per level. */
  K: number;
  /** Levels (squeeze, K steps, split; the last level has no split). */
  L: number;
  hiddenChannels: number;
  coupling: Coupling;
  permutation: Permutation;
  /** LU-parameterised 1x1 convolutions (only meaningful for permutation 'invconv'): one flag
   * for every level, or one per level (level 1 first), for models that mix plain and LU 1x1
   * convolutions, as rosinality/glow-pytorch's --no_lu does (its top block is always LU). A
   * list whose entries are all the same is stored as the single flag. */
  lu: boolean | boolean[];
  /** Top prior learned through a Conv2dZeros applied to prior_h. */
  learnTop: boolean;
  /** Classes for class-conditioning; 0 means an unconditional model. */
  numClasses: number;
  /** Bits per pixel of the discretised data (8 for ordinary images). */
  nBits: number;
  /** ActNorm data-dependent init target scale. */
  actnormScale: number;
  /** Lower bound on the affine coupling scale, max(sigmoid(logit), scaleFloor), so decode never
   * divides by less (see layers/coupling.ts). Absent or 0: the paper's unbounded sigmoid, as
   * PyTorch checkpoints have it. */
  scaleFloor?: number;
  /** The value every Conv2dZeros (the couplings' last conv, the split priors, learn_top) pads
   * its input with before its 3x3 conv. Absent or 0: zero padding (y0ast, chaiyujin); 1:
   * rosinality/glow-pytorch's ZeroConv2d, F.pad(x, [1, 1, 1, 1], value=1), which no weight
   * change can express, since the border's contribution depends on the image size. */
  zerosPadValue?: number;
  /** Bounds the affine coupling's scale on both sides: scale = exp(-ln(a) tanh(t)), in
   * [a, 1/a], so decode divides by no less than a and encode multiplies by no more than 1/a
   * (see layers/coupling.ts). Absent: the paper's sigmoid (with scaleFloor, if any). */
  scaleBound?: number;
  /** Spectral normalisation of the coupling networks' convs: each conv's weight, times the
   * per-channel gain that follows it (ActNorm's exp(logs), Conv2dZeros's exp(3 logs)), is
   * divided by max(1, sigma / lipschitz), sigma its largest singular value estimated by power
   * iteration (see layers/networks.ts). Absent: no normalisation. */
  lipschitz?: number;
  /** The split priors' scale is learned per channel instead of predicted from the kept half:
   * their Conv2dZeros's weights into the log-scale channels are held at zero, so that in decode
   * an error in z1 reaches z2 through the predicted mean only, not multiplied by the size of
   * z2 - mean (see layers/networks.ts). Absent or false: the paper's prior. */
  constantSplitScale?: boolean;
}

export const DEFAULT_CONFIG: GlowConfig = {
  imageShape: [1, 28, 28],
  K: 8,
  L: 2,
  hiddenChannels: 128,
  coupling: 'affine',
  permutation: 'invconv',
  lu: true,
  learnTop: true,
  numClasses: 0,
  nBits: 5,
  actnormScale: 1,
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const KEYS = Object.keys(DEFAULT_CONFIG) as (keyof GlowConfig)[];
const OPTIONAL_KEYS: (keyof GlowConfig)[] = ['scaleFloor', 'zerosPadValue', 'scaleBound', 'lipschitz', 'constantSplitScale'];
/** The smallest normal float32. A scale floor must be one, for the encode graph's Log (see
 * layers/coupling.ts). */
export const FLOAT32_MIN_NORMAL = 2 ** -126;

function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

/**
 * Checks a config from any source (JSON file, CLI flags, inference from a checkpoint) and
 * returns a typed copy. Every problem found is reported in one error, not just the first.
 */
export function validateConfig(input: unknown): GlowConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ConfigError('config must be a JSON object');
  }
  const raw = input as Record<string, unknown>;
  const problems: string[] = [];
  const known = [...KEYS, ...OPTIONAL_KEYS] as string[];
  const unknownKeys = Object.keys(raw).filter((k) => !known.includes(k));
  if (unknownKeys.length) problems.push(`unknown key(s) ${unknownKeys.join(', ')} (known: ${known.join(', ')})`);
  for (const k of KEYS) if (!(k in raw)) problems.push(`missing ${k}`);
  if (problems.length) throw new ConfigError(`invalid Glow config: ${problems.join('; ')}`);

  const c = raw as unknown as GlowConfig;
  const shape = c.imageShape;
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every(isPositiveInt)) {
    problems.push(`imageShape must be [channels, height, width] of positive integers, got ${JSON.stringify(shape)}`);
  }
  for (const k of ['K', 'L', 'hiddenChannels'] as const) {
    if (!isPositiveInt(c[k])) problems.push(`${k} must be a positive integer, got ${JSON.stringify(c[k])}`);
  }
  if (c.coupling !== 'additive' && c.coupling !== 'affine') {
    problems.push(`coupling must be 'additive' or 'affine', got ${JSON.stringify(c.coupling)}`);
  }
  if (!['invconv', 'shuffle', 'reverse'].includes(c.permutation)) {
    problems.push(`permutation must be 'invconv', 'shuffle' or 'reverse', got ${JSON.stringify(c.permutation)}`);
  }
  const luProblem = checkLU(c.lu, c.L);
  if (luProblem) problems.push(luProblem);
  if (typeof c.learnTop !== 'boolean') problems.push(`learnTop must be true or false, got ${JSON.stringify(c.learnTop)}`);
  if (!(Number.isInteger(c.numClasses) && c.numClasses >= 0)) {
    problems.push(`numClasses must be an integer >= 0 (0 = unconditional), got ${JSON.stringify(c.numClasses)}`);
  }
  if (!(Number.isInteger(c.nBits) && c.nBits >= 1 && c.nBits <= 16)) {
    problems.push(`nBits must be an integer in 1..16, got ${JSON.stringify(c.nBits)}`);
  }
  if (!(typeof c.actnormScale === 'number' && Number.isFinite(c.actnormScale) && c.actnormScale > 0)) {
    problems.push(`actnormScale must be a finite number > 0, got ${JSON.stringify(c.actnormScale)}`);
  }
  const floor = c.scaleFloor ?? 0;
  if (!(typeof floor === 'number' && (floor === 0 || (floor >= FLOAT32_MIN_NORMAL && floor < 1)))) {
    problems.push(`scaleFloor must be 0 (no floor) or a number in [2^-126, 1), got ${JSON.stringify(c.scaleFloor)}`);
  } else if (floor > 0 && c.coupling !== 'affine') {
    problems.push(`scaleFloor bounds the affine coupling's scale; an ${JSON.stringify(c.coupling)} coupling has none`);
  }
  const bound = c.scaleBound;
  if (bound !== undefined) {
    if (!(typeof bound === 'number' && bound >= 1e-3 && bound < 1)) {
      problems.push(`scaleBound must be a number in [0.001, 1) (scale in [a, 1/a]), got ${JSON.stringify(bound)}`);
    } else if (c.coupling !== 'affine') {
      problems.push(`scaleBound bounds the affine coupling's scale; an ${JSON.stringify(c.coupling)} coupling has none`);
    } else if (floor > 0) {
      problems.push('scaleBound and scaleFloor are two bounds of the same scale: give one');
    }
  }
  const lipschitz = c.lipschitz;
  if (lipschitz !== undefined && !(typeof lipschitz === 'number' && Number.isFinite(lipschitz) && lipschitz > 0)) {
    problems.push(`lipschitz must be a finite number > 0 (each coupling conv's spectral norm bound), got ${JSON.stringify(lipschitz)}`);
  }
  const constantSplitScale = c.constantSplitScale === undefined ? false : c.constantSplitScale;
  if (typeof constantSplitScale !== 'boolean') {
    problems.push(`constantSplitScale must be true or false, got ${JSON.stringify(c.constantSplitScale)}`);
  } else if (constantSplitScale && c.L === 1) {
    problems.push('constantSplitScale sets the split priors\' scale; a model with L = 1 has no split');
  }
  const padValue = c.zerosPadValue === undefined ? 0 : c.zerosPadValue;
  if (padValue !== 0 && padValue !== 1) {
    problems.push(`zerosPadValue must be 0 (zero padding) or 1 (rosinality's ZeroConv2d), got ${JSON.stringify(c.zerosPadValue)}`);
  }
  if (problems.length === 0) {
    const [C, H, W] = shape;
    const f = 2 ** c.L;
    if (H % f !== 0 || W % f !== 0) {
      problems.push(`image ${H}x${W} cannot be squeezed L=${c.L} times: height and width must be multiples of 2^L = ${f}`);
    }
    // The coupling splits the channels of every level in halves; 4C after a squeeze is always even.
    if (C < 1) problems.push('imageShape channels must be >= 1');
  }
  if (problems.length) throw new ConfigError(`invalid Glow config: ${problems.join('; ')}`);
  return {
    imageShape: [shape[0], shape[1], shape[2]],
    K: c.K,
    L: c.L,
    hiddenChannels: c.hiddenChannels,
    coupling: c.coupling,
    permutation: c.permutation,
    lu: normalLU(c.lu),
    learnTop: c.learnTop,
    numClasses: c.numClasses,
    nBits: c.nBits,
    actnormScale: c.actnormScale,
    // Written only when set, so configs of models without a floor stay as they were.
    ...(floor > 0 ? { scaleFloor: floor } : {}),
    ...(padValue !== 0 ? { zerosPadValue: padValue } : {}),
    ...(bound !== undefined ? { scaleBound: bound } : {}),
    ...(lipschitz !== undefined ? { lipschitz } : {}),
    ...(constantSplitScale ? { constantSplitScale } : {}),
  };
}

function checkLU(lu: unknown, L: unknown): string | undefined {
  if (typeof lu === 'boolean') return undefined;
  if (!Array.isArray(lu) || !lu.every((v) => typeof v === 'boolean')) {
    return `lu must be true, false or a list of them (one per level), got ${JSON.stringify(lu)}`;
  }
  if (lu.length !== L) return `lu lists ${lu.length} level(s) but the model has L = ${JSON.stringify(L)}: give one true/false per level`;
  return undefined;
}

/** One flag when every level agrees, so that uniform configs keep their single-boolean form. */
function normalLU(lu: boolean | boolean[]): boolean | boolean[] {
  if (typeof lu === 'boolean') return lu;
  return lu.every((v) => v === lu[0]) ? lu[0] : [...lu];
}

/** Whether the 1x1 convolutions of a level (0-based) are LU-parameterised. */
export function levelLU(config: GlowConfig, level: number): boolean {
  return typeof config.lu === 'boolean' ? config.lu : config.lu[level];
}

/** Whether some level has LU 1x1 convolutions, and whether some level has plain ones. */
export function luLevels(config: GlowConfig): { someLU: boolean; somePlain: boolean } {
  const flags = Array.from({ length: config.L }, (_, level) => levelLU(config, level));
  return { someLU: flags.some((f) => f), somePlain: flags.some((f) => !f) };
}

/** Shape of eps_l (1-based level) for one example: [channels, height, width]. */
export function latentShape(config: GlowConfig, level: number): [number, number, number] {
  const [C, H, W] = config.imageShape;
  const h = H >> level;
  const w = W >> level;
  // Each level squeezes (x4 channels); every level but the top then keeps half.
  const channels = level < config.L ? C * 2 ** level : C * 2 ** (level + 1);
  return [channels, h, w];
}

/** Channels flowing through the steps of a level (after its squeeze). */
export function levelChannels(config: GlowConfig, level: number): number {
  return config.imageShape[0] * 2 ** (level + 1);
}

export function dimensions(config: GlowConfig): number {
  const [C, H, W] = config.imageShape;
  return C * H * W;
}
