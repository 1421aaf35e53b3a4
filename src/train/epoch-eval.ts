// The end of an epoch: test bits per dimension, the float32 round trip on the same images,
// and a grid of samples written as a PNG.
import ort from 'onnxruntime-node';
import { join } from 'node:path';
import { exportModel } from '../glow/export.js';
import { GlowConfig } from '../glow/config.js';
import { GlowWeights } from '../glow/model.js';
import { Rng } from '../math/rng.js';
import { size } from '../math/tensor.js';
import { GlowModel } from '../runtime/core.js';
import { oneHotRows, sampleEps } from '../runtime/generate.js';
import { writeGrid } from '../runtime/images.js';
import { dequantize, failingImages, largest, quantize, roundTripErrors, roundTripTolerance } from '../runtime/quantize.js';
import { sessionOptions } from '../runtime/session-options.js';
import { Dataset, EpochReport, labelsOf, TrainOptions } from './run.js';

/** The test images an epoch is scored on, dequantised with the noise every epoch's score uses. */
export function evaluationImages(test: Dataset, options: Pick<TrainOptions, 'evalLimit' | 'seed'>, config: GlowConfig): { x: Float32Array; y?: Float32Array; count: number } {
  const count = Math.min(test.count, options.evalLimit);
  const x = dequantize(test.pixels.subarray(0, count * size(config.imageShape)), config.nBits, new Rng(options.seed + 7));
  return { x, y: labelsOf(test, 0, count, config.numClasses), count };
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
      const { x, y, count } = evaluationImages(test, options, config);
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
