// What people do with a Glow (the paper's section 5): samples at a temperature,
// interpolation between real images and attribute manipulation, on standardised latents.
// Pure functions of Float32Arrays, shared by Node and the browser.

import { GlowConfig, latentShape } from '../glow/config.js';
import { Rng } from '../math/rng.js';
import { size } from '../math/tensor.js';

export type Latents = Float32Array[];

function latentSize(config: GlowConfig, level: number): number {
  return size(latentShape(config, level));
}

/** n standard-normal eps per level from a seeded generator: the same seed gives the same samples
 * everywhere. */
export function sampleEps(config: GlowConfig, n: number, seed: number): Latents {
  const rng = new Rng(seed);
  return Array.from({ length: config.L }, (_, l) => rng.fillNormal(new Float32Array(n * latentSize(config, l + 1))));
}

/**
 * One-hot rows [labels.length, classes], row i of class labels[i]. A label outside
 * 0..classes - 1 is an error, or with `unknownAsZero` a row of zeros (data labelled beyond the
 * model's classes, or not labelled: undefined).
 */
export function oneHotRows(classes: number, labels: readonly (number | undefined)[], unknownAsZero = false): Float32Array {
  const y = new Float32Array(labels.length * classes);
  labels.forEach((label, i) => {
    if (label === undefined || !Number.isInteger(label) || label < 0 || label >= classes) {
      if (unknownAsZero) return;
      throw new Error(`class ${label} is not in 0..${classes - 1}`);
    }
    y[i * classes + label] = 1;
  });
  return y;
}

/** Example i of a batch of latents. */
export function pick(config: GlowConfig, latents: Latents, i: number): Latents {
  return latents.map((e, l) => e.slice(i * latentSize(config, l + 1), (i + 1) * latentSize(config, l + 1)));
}

/** Stacks single-example latents into one batch. */
export function stack(config: GlowConfig, items: Latents[]): Latents {
  return Array.from({ length: config.L }, (_, l) => {
    const size = latentSize(config, l + 1);
    const out = new Float32Array(items.length * size);
    items.forEach((item, i) => out.set(item[l], i * size));
    return out;
  });
}

/** steps points from a to b (both ends included), linear in every array. */
export function lerpPoints(a: readonly Float32Array[], b: readonly Float32Array[], steps: number): Float32Array[][] {
  if (!Number.isInteger(steps) || steps < 2) throw new Error(`interpolation needs at least 2 steps, got ${steps}`);
  return Array.from({ length: steps }, (_, s) => {
    const t = s / (steps - 1);
    return a.map((e, l) => e.map((v, k) => (1 - t) * v + t * b[l][k]));
  });
}

/** steps points from a to b (both ends included), linear at every level. */
export function interpolate(config: GlowConfig, a: Latents, b: Latents, steps: number): Latents {
  return stack(config, lerpPoints(a, b, steps));
}

/** Mean latent of the examples with the attribute minus the mean of those without. */
export function attributeDirection(config: GlowConfig, latents: Latents, has: readonly boolean[]): Latents {
  const positives = has.filter(Boolean).length;
  const negatives = has.length - positives;
  if (positives === 0 || negatives === 0) throw new Error(`a direction needs examples with and without the attribute (got ${positives} with, ${negatives} without)`);
  return latents.map((e, l) => {
    const size = latentSize(config, l + 1);
    const direction = new Float32Array(size);
    has.forEach((flag, i) => {
      const weight = flag ? 1 / positives : -1 / negatives;
      for (let k = 0; k < size; k++) direction[k] += weight * e[i * size + k];
    });
    return direction;
  });
}

/** latent + alpha * direction for each alpha, as one batch. */
export function manipulate(config: GlowConfig, latent: Latents, direction: Latents, alphas: readonly number[]): Latents {
  return stack(config, alphas.map((alpha) => latent.map((e, l) => e.map((v, k) => v + alpha * direction[l][k]))));
}

/** Mean and its standard error, as bits/dim are reported. */
export function meanAndStdErr(values: ArrayLike<number>): { mean: number; stdErr: number } {
  const n = values.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += values[i] / n;
  let variance = 0;
  for (let i = 0; i < n; i++) variance += (values[i] - mean) ** 2 / Math.max(1, n - 1);
  return { mean, stdErr: Math.sqrt(variance / n) };
}
