// The model's view of pixels: k = p >> (8 - nBits) on 2^nBits levels, x = k / 2^nBits - 0.5 + u
// with u uniform in [0, 2^-nBits) (dequantisation noise), and back.

import { Rng } from '../math/rng.js';

/** Images are read as luminance (1 channel) or RGB (3); nothing else has a meaning here. */
export function checkImageChannels(channels: number): void {
  if (channels !== 1 && channels !== 3) throw new Error(`images with ${channels} channels are not supported (1 or 3)`);
}

/**
 * 8-bit pixels -> encode input x. `noise` is an Rng for uniform dequantisation noise (what
 * likelihoods are measured with) or 'center' for u = half a bin (deterministic, for encoding
 * images to edit or reconstruct).
 */
export function dequantize(pixels: Uint8Array, nBits: number, noise: Rng | 'center'): Float32Array {
  const bins = 2 ** nBits;
  const shift = 8 - nBits;
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) {
    const u = noise === 'center' ? 0.5 / bins : noise.uniform() / bins;
    out[i] = (pixels[i] >> shift) / bins - 0.5 + u;
  }
  return out;
}

/** Decoded x -> 8-bit pixels: the bin x falls into, clamped, back on the 8-bit scale
 * (k << (8 - nBits)), so quantize(dequantize(p)) is p with its dropped low bits zero. */
export function quantize(x: ArrayLike<number>, nBits: number): Uint8Array {
  const bins = 2 ** nBits;
  const out = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const k = Math.min(bins - 1, Math.max(0, Math.floor((x[i] + 0.5) * bins)));
    out[i] = k << (8 - nBits);
  }
  return out;
}

/** The largest |x - decode(encode(x))| a pixel may show: 1e-3 for float32 graphs; float16 ones
 * must still land in the pixel's own quantisation bin. */
export function roundTripTolerance(dtype: string, nBits: number): number {
  return dtype === 'float16' ? 2 ** -(nBits + 1) : 1e-3;
}

/** Each image's max |x - decode(encode(x))|; NaN where the decode gave NaN. */
export function roundTripErrors(x: Float32Array, decoded: Float32Array, count: number): Float64Array {
  const perImage = x.length / count;
  const errors = new Float64Array(count);
  for (let i = 0; i < x.length; i++) {
    const n = Math.floor(i / perImage);
    errors[n] = Math.max(errors[n], Math.abs(x[i] - decoded[i]));
  }
  return errors;
}

/** Indices of the images whose round-trip error is not below the tolerance (NaN included). */
export function failingImages(errors: Float64Array, tolerance: number): number[] {
  return [...errors.keys()].filter((n) => !(errors[n] < tolerance));
}

/** How far decode(encode(x)) lands from each input image x, against the bound for the model's
 * dtype: a picture made from the latents of an image that does not round-trip shows the model's
 * decode, not the image (affine-coupling flows do this off their training data). */
export interface RoundTrip {
  /** Each image's max |x - decode(encode(x))| over its pixels; NaN where the decode gave NaN. */
  errors: Float64Array;
  /** The bound each error must stay under: {@link roundTripTolerance} of the model's dtype. */
  tolerance: number;
  /** Indices of the images whose error is not under the tolerance (NaN included), in order. */
  failing: number[];
  /** True when every image comes back within the tolerance (failing is empty). */
  roundTrips: boolean;
}

/** The round trip of `count` images: x as encoded, decoded = decode(encode(x)) at temperature 1. */
export function checkRoundTrip(x: Float32Array, decoded: Float32Array, count: number, dtype: string, nBits: number): RoundTrip {
  const errors = roundTripErrors(x, decoded, count);
  const tolerance = roundTripTolerance(dtype, nBits);
  const failing = failingImages(errors, tolerance);
  return { errors, tolerance, failing, roundTrips: failing.length === 0 };
}

/** The largest value, NaN if any is NaN (Math.max(...values) overflows the stack on big arrays). */
export function largest(values: Float64Array): number {
  return values.reduce((a, b) => Math.max(a, b), 0);
}
