// Seeded random numbers that are bit-identical on every platform, so that a seed alone
// reproduces an initialisation. The generator is xoshiro128** (Blackman & Vigna), seeded
// through splitmix64 as its authors recommend. Generation uses only 32-bit integer arithmetic;
// BigInt appears once, when seeding.

const TWO_POW_32 = 2 ** 32;
const TWO_POW_53 = 2 ** 53;
const STATE_WORDS = 4;

export type RngSeed = number | bigint;

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Four 32-bit words from two splitmix64 outputs, low word first. */
function splitmix64Words(seed: bigint): number[] {
  const mask = (1n << 64n) - 1n;
  let state = seed;
  const words: number[] = [];
  for (let i = 0; i < STATE_WORDS / 2; i++) {
    state = (state + 0x9e3779b97f4a7c15n) & mask;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask;
    z ^= z >> 31n;
    words.push(Number(z & 0xffffffffn), Number(z >> 32n));
  }
  return words;
}

function seedToUint64(seed: RngSeed): bigint {
  if (typeof seed === 'number' && !Number.isSafeInteger(seed)) {
    throw new Error(`rng seed must be a safe integer or a bigint, got ${seed}`);
  }
  // Negative seeds wrap as two's complement, so every 64-bit pattern is reachable.
  return BigInt.asUintN(64, BigInt(seed));
}

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  /** Box–Muller yields normals in pairs; the second waits here for the next normal() call. */
  private spareNormal: number | null = null;

  constructor(seed: RngSeed) {
    [this.s0, this.s1, this.s2, this.s3] = splitmix64Words(seedToUint64(seed));
  }

  /** Resumes exactly where state() was taken, including a pending Box–Muller value. */
  static fromState(state: readonly number[]): Rng {
    if (state.length !== STATE_WORDS + 2) {
      throw new Error(`rng state must have ${STATE_WORDS + 2} numbers, got ${state.length}`);
    }
    const words = state.slice(0, STATE_WORDS);
    if (!words.every((w) => Number.isInteger(w) && w >= 0 && w < TWO_POW_32)) {
      throw new Error(`rng state words must be unsigned 32-bit integers, got [${words.join(', ')}]`);
    }
    if (words.every((w) => w === 0)) throw new Error('rng state words must not all be zero');
    const [hasSpare, spare] = state.slice(STATE_WORDS);
    if ((hasSpare !== 0 && hasSpare !== 1) || !Number.isFinite(spare)) {
      throw new Error(`rng state has an invalid cached normal: flag ${hasSpare}, value ${spare}`);
    }
    const rng = new Rng(0);
    [rng.s0, rng.s1, rng.s2, rng.s3] = words;
    rng.spareNormal = hasSpare === 1 ? spare : null;
    return rng;
  }

  /** [s0, s1, s2, s3, hasCachedNormal (0|1), cachedNormal]; plain numbers, so JSON-safe. */
  state(): number[] {
    const hasSpare = this.spareNormal !== null;
    return [this.s0, this.s1, this.s2, this.s3, hasSpare ? 1 : 0, this.spareNormal ?? 0];
  }

  /** Next raw output, an unsigned 32-bit integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    this.s3 >>>= 0;
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits: 27 high bits of one output, 26 of the next. */
  uniform(): number {
    const high = this.nextUint32() >>> 5;
    const low = this.nextUint32() >>> 6;
    return (high * 2 ** 26 + low) / TWO_POW_53;
  }

  normal(): number {
    if (this.spareNormal !== null) {
      const spare = this.spareNormal;
      this.spareNormal = null;
      return spare;
    }
    // 1 - uniform() lies in (0, 1], keeping the logarithm finite.
    const radius = Math.sqrt(-2 * Math.log(1 - this.uniform()));
    const angle = 2 * Math.PI * this.uniform();
    this.spareNormal = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  fillNormal<T extends Float32Array | Float64Array>(out: T, mean = 0, std = 1): T {
    for (let i = 0; i < out.length; i++) out[i] = mean + std * this.normal();
    return out;
  }

  /** Values in [low, high); rounding into a Float32Array can land exactly on high. */
  fillUniform<T extends Float32Array | Float64Array>(out: T, low = 0, high = 1): T {
    for (let i = 0; i < out.length; i++) out[i] = low + (high - low) * this.uniform();
    return out;
  }

  /** Unbiased integer in [0, n) for 1 <= n <= 2^32, by rejecting the incomplete top block. */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      throw new Error(`rng int bound must be an integer in [1, 2^32], got ${n}`);
    }
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    let draw = this.nextUint32();
    while (draw >= limit) draw = this.nextUint32();
    return draw % n;
  }

  /** Fisher–Yates, in place; returns the same array. */
  shuffle<T>(array: T[]): T[] {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [array[i], array[j]] = [array[j], array[i]];
    }
    return array;
  }

  permutation(n: number): number[] {
    return this.shuffle(Array.from({ length: n }, (_, i) => i));
  }
}
