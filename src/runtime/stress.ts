// Images a model was not trained on, to test its inverse off the data. Affine-coupling flows can
// be invertible on their training distribution and numerically not invertible elsewhere
// (Behrmann et al., "Understanding and Mitigating Exploding Inverses in Invertible Neural
// Networks", AISTATS 2021); verify and diagnose run these sets to measure it.

import { Rng } from '../math/rng.js';

export const STRESS_SETS = ['inverted', 'noise', 'constant'] as const;
export type StressSet = (typeof STRESS_SETS)[number];

export function isStressSet(source: string): source is StressSet {
  return (STRESS_SETS as readonly string[]).includes(source);
}

/**
 * `count` 8-bit images of `imageSize` pixels each:
 * - inverted: 255 - the given base images (digits on white, for MNIST);
 * - noise: every pixel uniform in 0..255, from `seed`;
 * - constant: flat images at levels evenly spaced from 0 (black) to 255 (white).
 */
export function stressImages(set: StressSet, imageSize: number, count: number, seed: number, base?: Uint8Array): Uint8Array {
  const pixels = new Uint8Array(count * imageSize);
  if (set === 'inverted') {
    if (!base || base.length < pixels.length) throw new Error(`the inverted set needs ${count} base images of ${imageSize} pixels`);
    for (let i = 0; i < pixels.length; i++) pixels[i] = 255 - base[i];
  } else if (set === 'noise') {
    const rng = new Rng(seed);
    for (let i = 0; i < pixels.length; i++) pixels[i] = rng.int(256);
  } else {
    for (let n = 0; n < count; n++) pixels.fill(count === 1 ? 0 : Math.round((255 * n) / (count - 1)), n * imageSize, (n + 1) * imageSize);
  }
  return pixels;
}
