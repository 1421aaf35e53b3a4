// float16 against float32: the same weights exported both ways (exportModel), run on
// onnxruntime-node's CPU provider, compared on bits/dim, latents and the round trip.
//
//   node dist/scripts/fp16-parity.js --weights FILE [--data mnist-test|DIR] [--limit N]
//   node dist/scripts/fp16-parity.js                   (a few random configs, random images)
//
// With --weights: any weights file `export` takes, images from --data (default mnist-test, the
// first --limit, default 1000), dequantised with a fixed seed. Without: the configs below with
// seeded random non-trivial weights and 64 random images each. Prints one markdown table row per
// model: bits/dim (float32 mean), |bpd16 - bpd32| (mean and max), max |eps16 - eps32|, the round
// trip max |x - decode(encode(x))| of each precision, and the size of encode.onnx + decode.onnx.
// The last two columns run the float16 graphs as a GPU does, every op's result rounded to
// float16 (support/fp16-emulate.ts, float64 interpreter: slow, on the first --emulate
// images, default 16): onnxruntime's CPU provider computes most float16 ops in float32.

import ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadImages, oneHot } from '../src/cli/data.js';
import { GlowConfig } from '../src/glow/config.js';
import { ExportDType, exportGraphs, exportModel } from '../src/glow/export.js';
import { importWeights } from '../src/glow/import/index.js';
import { GlowWeights } from '../src/glow/model.js';
import { Rng } from '../src/math/rng.js';
import { GlowModel } from '../src/runtime/core.js';
import { createSession } from '../src/runtime/providers.js';
import { dequantize } from '../src/runtime/quantize.js';
import { evaluateFloat16 } from '../support/fp16-emulate.js';
import { randomImages, randomOneHot, randomParams, randomShuffles } from '../support/random-params.js';
import { usageOnHelp } from '../support/script-usage.js';

const base: GlowConfig = {
  imageShape: [1, 28, 28], K: 4, L: 2, hiddenChannels: 64, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};
const RANDOM_CONFIGS: [string, GlowConfig][] = [
  ['random [1,28,28] K4 L2 h64 affine LU', base],
  ['random [3,16,16] K4 L2 h64 additive, 4 classes', { ...base, imageShape: [3, 16, 16], coupling: 'additive', numClasses: 4 }],
  ['random [3,32,32] K4 L3 h64 affine shuffle, 8 bits', { ...base, imageShape: [3, 32, 32], L: 3, permutation: 'shuffle', nBits: 8 }],
];

async function open(w: GlowWeights, dtype: ExportDType): Promise<{ model: GlowModel; bytes: number }> {
  const files = exportModel(w, { dtype });
  const encode = await createSession(files['encode.onnx']);
  const decode = await createSession(files['decode.onnx']);
  return { model: new GlowModel(w.config, encode.session, decode.session, ort), bytes: files['encode.onnx'].length + files['decode.onnx'].length };
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** bpd and round trip of the float16 graphs with every op rounded, on the first m images. */
function emulated(w: GlowWeights, x: Float32Array, y: Float32Array | undefined, m: number): { bpd: Float64Array; roundTrip: number } {
  const { encode, decode } = exportGraphs(w, { dtype: 'float16' });
  const size = w.config.imageShape.reduce((p, q) => p * q, 1);
  const t = (data: Float32Array, shape: number[]) => ({ dtype: 'float32' as const, shape, data: Float64Array.from(data) });
  const xs = x.subarray(0, m * size);
  const feeds = { x: t(xs, [m, ...w.config.imageShape]), ...(y ? { y: t(y.subarray(0, m * w.config.numClasses), [m, w.config.numClasses]) } : {}) };
  const enc = evaluateFloat16(encode, feeds);
  const decodeFeeds: Record<string, { dtype: 'float32'; shape: number[]; data: Float64Array }> = { temperature: { dtype: 'float32', shape: [], data: Float64Array.of(1) } };
  if (feeds.y) decodeFeeds.y = feeds.y;
  for (let l = 1; l <= w.config.L; l++) decodeFeeds[`eps_${l}`] = { dtype: 'float32', shape: enc[`eps_${l}`].shape, data: Float64Array.from(enc[`eps_${l}`].data) };
  const xr = evaluateFloat16(decode, decodeFeeds).x.data;
  return { bpd: Float64Array.from(enc.bpd.data), roundTrip: maxAbs(xs, xr) };
}

async function compare(label: string, w: GlowWeights, x: Float32Array, y: Float32Array | undefined, n: number, emulate: number): Promise<string> {
  const shape = [n, ...w.config.imageShape];
  const results = [];
  for (const dtype of ['float32', 'float16'] as const) {
    const { model, bytes } = await open(w, dtype);
    try {
      const encoded = await model.encode(x, shape, y);
      const xr = await model.decode(encoded.eps, 1, y);
      results.push({ encoded, roundTrip: maxAbs(x, xr), bytes });
    } finally {
      await model.release();
    }
  }
  const [f32, f16] = results;
  let meanBpd = 0;
  let meanDiff = 0;
  for (let i = 0; i < n; i++) {
    meanBpd += f32.encoded.bpd[i] / n;
    meanDiff += Math.abs(f16.encoded.bpd[i] - f32.encoded.bpd[i]) / n;
  }
  const epsError = Math.max(...f32.encoded.eps.map((e, l) => maxAbs(e, f16.encoded.eps[l])));
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
  const m = Math.min(emulate, n);
  const gpu = emulated(w, x, y, m);
  return `| ${label} | ${n} | ${meanBpd.toFixed(4)} | ${meanDiff.toExponential(1)} / ${maxAbs(f32.encoded.bpd, f16.encoded.bpd).toExponential(1)} `
    + `| ${epsError.toExponential(1)} | ${f32.roundTrip.toExponential(1)} | ${f16.roundTrip.toExponential(1)} | ${mb(f32.bytes)} / ${mb(f16.bytes)} `
    + `| ${maxAbs(gpu.bpd, f32.encoded.bpd.subarray(0, m)).toExponential(1)} | ${gpu.roundTrip.toExponential(1)} (${m}) |`;
}

async function main(): Promise<void> {
  usageOnHelp(import.meta.url);
  const { values } = parseArgs({ options: { weights: { type: 'string' }, data: { type: 'string' }, limit: { type: 'string' }, emulate: { type: 'string' } } });
  const emulate = Number(values.emulate ?? 16);
  console.log('| model | images | bits/dim (fp32) | CPU: abs bpd error mean / max | CPU: max abs eps error | round trip fp32 | CPU: round trip fp16 | size fp32 / fp16 | every op rounded: max abs bpd error | every op rounded: round trip (images) |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  if (values.weights) {
    const { weights } = importWeights(readFileSync(values.weights), values.weights);
    const batch = await loadImages(values.data ?? 'mnist-test', weights.config, Number(values.limit ?? 1000));
    const x = dequantize(batch.pixels, weights.config.nBits, new Rng(1));
    const y = oneHot(batch.labels, batch.count, weights.config.numClasses);
    console.log(await compare(`${values.weights} on ${values.data ?? 'mnist-test'}`, weights, x, y, batch.count, emulate));
    return;
  }
  for (const [label, config] of RANDOM_CONFIGS) {
    const n = 64;
    const w: GlowWeights = { config, params: randomParams(config, 3), shuffles: randomShuffles(config, 3) };
    const x = Float32Array.from(randomImages(config, n, 4).data);
    const y = config.numClasses ? Float32Array.from(randomOneHot(config, n, 5).data) : undefined;
    console.log(await compare(label, w, x, y, n, emulate));
  }
}

main().catch((e) => {
  console.error(`fp16-parity: ${(e as Error).message}`);
  process.exit(1);
});
