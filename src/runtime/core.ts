// The exported graphs behind a typed API, independent of which ONNX Runtime package runs them
// (onnxruntime-node in Node, onnxruntime-web in the browser or wasm): validation of every input
// against the I/O contract, batching, and progress.

import type { InferenceSession, Tensor } from 'onnxruntime-common';
import { GlowConfig, latentShape } from '../glow/config.js';
import { size } from '../math/tensor.js';
import { interpolate, Latents, lerpPoints, manipulate, pick } from './generate.js';
import { checkRoundTrip, RoundTrip } from './quantize.js';

/** The Tensor constructor of whichever onnxruntime package is in use. */
export interface TensorFactory {
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => Tensor;
}

export type Progress = (done: number, total: number) => void;

export interface Encoded {
  n: number;
  /** eps_1 .. eps_L, each [n, ...latentShape(l)] flattened. */
  eps: Float32Array[];
  logdet: Float32Array;
  logPx: Float32Array;
  bpd: Float32Array;
  yLogits?: Float32Array;
}

/** An image's encoding and the picture its own latents give back, with how far that is from it. */
export interface Reconstruction {
  encoded: Encoded;
  /** decode(encode(x)) at temperature 1, [n, C, H, W] flattened. */
  x: Float32Array;
  /** Per image: does x come back? When not, `x` here shows the model's decode, not the image. */
  roundTrip: RoundTrip;
}

/** Pictures made from the latents of input images (interpolation, manipulation), with the round
 * trip of those inputs: where an input does not round-trip, the pictures near it are the model's
 * decode of latents that do not stand for the image. */
export interface ImageEdit {
  /** The decoded pictures, [steps or alphas, C, H, W] flattened. */
  x: Float32Array;
  /** The round trip of the input images, in the order given. */
  roundTrip: RoundTrip;
}

export class InputError extends Error {
  override name = 'InputError';
}

/** Pixels of a dequantised image lie in [-0.5, 0.5); a little slack for rounding. */
const X_RANGE = 0.5 + 1e-6;

function checkFinite(data: Float32Array, what: string): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new InputError(`${what} holds a non-finite value (${data[i]}) at index ${i}`);
  }
}

export class GlowModel {
  readonly imageSize: number;
  readonly latentSizes: number[];

  constructor(
    readonly config: GlowConfig,
    private readonly encoder: InferenceSession,
    private readonly decoder: InferenceSession,
    private readonly ort: TensorFactory,
    readonly batchSize = 64,
    /** The graphs were exported with a static batch (--batch): every run gets exactly
     * batchSize rows, the last one padded with zeros and its extra outputs dropped. */
    readonly staticBatch = false,
    /** Weights and compute precision (glow.json's dtype): sets the round-trip tolerance of
     * {@link reconstruct}, {@link interpolateImages} and {@link manipulateImage}. */
    readonly dtype = 'float32',
  ) {
    this.imageSize = size(config.imageShape);
    this.latentSizes = Array.from({ length: config.L }, (_, l) => size(latentShape(config, l + 1)));
  }

  /** Checks x against [n, C, H, W] of the model and returns n. */
  checkImages(x: Float32Array, shape: readonly number[]): number {
    const [C, H, W] = this.config.imageShape;
    if (shape.length !== 4) throw new InputError(`x must be 4-D [N, C, H, W], got [${shape.join(', ')}]`);
    const [n, c, h, w] = shape;
    if (n === 0) throw new InputError('empty batch: x has no images');
    if (c !== C) throw new InputError(`x has ${c} channels, the model expects ${C}`);
    if (h !== H || w !== W) throw new InputError(`x is ${h}x${w}, the model expects ${H}x${W}`);
    if (x.length !== size(shape)) throw new InputError(`x has ${x.length} values, shape [${shape.join(', ')}] needs ${size(shape)}`);
    checkFinite(x, 'x');
    for (let i = 0; i < x.length; i++) {
      if (Math.abs(x[i]) > X_RANGE) {
        throw new InputError(`x[${i}] = ${x[i]} is outside [-0.5, 0.5): pixels must be dequantised as k / 2^${this.config.nBits} - 0.5 + u`);
      }
    }
    return n;
  }

  private checkLabels(y: Float32Array | undefined, n: number): void {
    const classes = this.config.numClasses;
    if (classes === 0) {
      if (y) throw new InputError('the model is not class-conditional: do not pass y');
      return;
    }
    if (!y) throw new InputError(`the model is class-conditional: pass y, one-hot [N, ${classes}]`);
    if (y.length !== n * classes) throw new InputError(`y has ${y.length} values, expected ${n} x ${classes}`);
    checkFinite(y, 'y');
  }

  private checkEps(eps: readonly Float32Array[]): number {
    const L = this.config.L;
    if (eps.length !== L) throw new InputError(`expected ${L} latents eps_1..eps_${L}, got ${eps.length}`);
    const n = eps[0].length / this.latentSizes[0];
    if (!Number.isInteger(n) || n === 0) {
      throw new InputError(`eps_1 has ${eps[0].length} values, not a positive multiple of ${this.latentSizes[0]} ([${latentShape(this.config, 1)}])`);
    }
    eps.forEach((e, l) => {
      if (e.length !== n * this.latentSizes[l]) {
        throw new InputError(`eps_${l + 1} has ${e.length} values, expected ${n} x [${latentShape(this.config, l + 1).join(', ')}] = ${n * this.latentSizes[l]}`);
      }
      checkFinite(e, `eps_${l + 1}`);
    });
    return n;
  }

  private tensor(data: Float32Array, dims: readonly number[]): Tensor {
    return new this.ort.Tensor('float32', data, dims);
  }

  /** Rows [start, start + count) of a [n, ...] array as a tensor of `rows` rows (zero padded). */
  private rows(data: Float32Array, rowSize: number, start: number, count: number, rows: number, dims: readonly number[]): Tensor {
    const chunk = data.subarray(start * rowSize, (start + count) * rowSize);
    if (rows === count) return this.tensor(chunk, [rows, ...dims]);
    const padded = new Float32Array(rows * rowSize);
    padded.set(chunk);
    return this.tensor(padded, [rows, ...dims]);
  }

  /** first `count` rows of a run's output. */
  private static head(t: Tensor, count: number): Float32Array {
    const data = t.data as Float32Array;
    return data.subarray(0, (data.length / t.dims[0]) * count);
  }

  /** Latents and bits/dim of images x ([n, C, H, W], dequantised). Does not check that they
   * decode back: {@link reconstruct} does, for pictures shown as the image. */
  async encode(x: Float32Array, shape: readonly number[], y?: Float32Array, onProgress?: Progress): Promise<Encoded> {
    const n = this.checkImages(x, shape);
    this.checkLabels(y, n);
    const classes = this.config.numClasses;
    const out: Encoded = {
      n,
      eps: this.latentSizes.map((s) => new Float32Array(n * s)),
      logdet: new Float32Array(n),
      logPx: new Float32Array(n),
      bpd: new Float32Array(n),
      yLogits: classes ? new Float32Array(n * classes) : undefined,
    };
    for (let start = 0; start < n; start += this.batchSize) {
      const b = Math.min(this.batchSize, n - start);
      const rows = this.staticBatch ? this.batchSize : b;
      const feeds: Record<string, Tensor> = { x: this.rows(x, this.imageSize, start, b, rows, this.config.imageShape) };
      if (y) feeds.y = this.rows(y, classes, start, b, rows, [classes]);
      const r = await this.encoder.run(feeds);
      this.latentSizes.forEach((s, l) => out.eps[l].set(GlowModel.head(r[`eps_${l + 1}`], b), start * s));
      out.logdet.set(GlowModel.head(r.logdet, b), start);
      out.logPx.set(GlowModel.head(r.log_px, b), start);
      out.bpd.set(GlowModel.head(r.bpd, b), start);
      if (out.yLogits) out.yLogits.set(GlowModel.head(r.y_logits, b), start * classes);
      onProgress?.(start + b, n);
    }
    return out;
  }

  /** Images of latents eps_1..eps_L scaled by temperature ([n, C, H, W], flattened). */
  async decode(eps: readonly Float32Array[], temperature: number, y?: Float32Array, onProgress?: Progress): Promise<Float32Array> {
    if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
      throw new InputError(`temperature must be a finite number >= 0, got ${temperature}`);
    }
    const n = this.checkEps(eps);
    this.checkLabels(y, n);
    const classes = this.config.numClasses;
    const x = new Float32Array(n * this.imageSize);
    // A decode without a temperature input (export --target opencv) takes eps pre-scaled.
    const takesTemperature = this.decoder.inputNames.includes('temperature');
    const fed = takesTemperature || temperature === 1 ? eps : eps.map((e) => e.map((v) => v * temperature));
    for (let start = 0; start < n; start += this.batchSize) {
      const b = Math.min(this.batchSize, n - start);
      const rows = this.staticBatch ? this.batchSize : b;
      const feeds: Record<string, Tensor> = takesTemperature ? { temperature: this.tensor(Float32Array.of(temperature), []) } : {};
      fed.forEach((e, l) => (feeds[`eps_${l + 1}`] = this.rows(e, this.latentSizes[l], start, b, rows, latentShape(this.config, l + 1))));
      if (y) feeds.y = this.rows(y, classes, start, b, rows, [classes]);
      const r = await this.decoder.run(feeds);
      x.set(GlowModel.head(r.x, b), start * this.imageSize);
      onProgress?.(start + b, n);
    }
    return x;
  }

  /**
   * Encodes the images and decodes their latents back at temperature 1, measuring each image's
   * round trip (max |x - decode(encode(x))|, against roundTripTolerance of the model's dtype).
   * Check `roundTrip.roundTrips` before showing `x` as the image: off its training data an
   * affine-coupling model can decode something else. onProgress counts images through both
   * runs (total 2n).
   */
  async reconstruct(x: Float32Array, shape: readonly number[], y?: Float32Array, onProgress?: Progress): Promise<Reconstruction> {
    const encoded = await this.encode(x, shape, y, onProgress && ((done, n) => onProgress(done, 2 * n)));
    const decoded = await this.decode(encoded.eps, 1, y, onProgress && ((done, n) => onProgress(n + done, 2 * n)));
    return { encoded, x: decoded, roundTrip: checkRoundTrip(x, decoded, encoded.n, this.dtype, this.config.nBits) };
  }

  /**
   * `steps` pictures on the straight line between the latents of two images (x holds both,
   * [2, C, H, W]), both ends included, with the round trip of the two images. For a
   * class-conditional model y holds the two images' one-hot rows and the label moves with the
   * latents, from the first's to the second's. onProgress counts images through every run.
   */
  async interpolateImages(x: Float32Array, steps: number, y?: Float32Array, onProgress?: Progress): Promise<ImageEdit> {
    if (!Number.isInteger(steps) || steps < 2) throw new InputError(`interpolation needs at least 2 steps, got ${steps}`);
    const total = 4 + steps;
    const { encoded, roundTrip } = await this.reconstruct(x, [2, ...this.config.imageShape], y, onProgress && ((done) => onProgress(done, total)));
    const path = interpolate(this.config, pick(this.config, encoded.eps, 0), pick(this.config, encoded.eps, 1), steps);
    let yPath: Float32Array | undefined;
    if (y) {
      const k = this.config.numClasses;
      const labels = new Float32Array(steps * k);
      lerpPoints([y.subarray(0, k)], [y.subarray(k, 2 * k)], steps).forEach(([row], s) => labels.set(row, s * k));
      yPath = labels;
    }
    const pictures = await this.decode(path, 1, yPath, onProgress && ((done) => onProgress(4 + done, total)));
    return { x: pictures, roundTrip };
  }

  /**
   * The image (x: [1, C, H, W]) with its latent moved along `direction` (attributeDirection's)
   * by each of `alphas`, decoded, with the image's round trip. For a class-conditional model y is
   * the image's one-hot row, kept for every picture. onProgress counts images through every run.
   */
  async manipulateImage(x: Float32Array, direction: Latents, alphas: readonly number[], y?: Float32Array, onProgress?: Progress): Promise<ImageEdit> {
    if (alphas.length === 0) throw new InputError('manipulation needs at least one alpha');
    const directions = this.checkEps(direction);
    if (directions !== 1) throw new InputError(`a direction is one latent, got ${directions}`);
    const total = 2 + alphas.length;
    const { encoded, roundTrip } = await this.reconstruct(x, [1, ...this.config.imageShape], y, onProgress && ((done) => onProgress(done, total)));
    const batch = manipulate(this.config, encoded.eps, direction, alphas);
    const yAll = y && Float32Array.from({ length: alphas.length * y.length }, (_, i) => y[i % y.length]);
    const pictures = await this.decode(batch, 1, yAll, onProgress && ((done) => onProgress(2 + done, total)));
    return { x: pictures, roundTrip };
  }

  async release(): Promise<void> {
    await Promise.all([this.encoder.release(), this.decoder.release()]);
  }
}
