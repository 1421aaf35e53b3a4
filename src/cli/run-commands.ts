// Commands that run an exported model: sample, encode, decode, reconstruct, interpolate,
// direction, manipulate, eval, verify.

import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import ort from 'onnxruntime-node';
import { GlowConfig, latentShape } from '../glow/config.js';
import { importWeights } from '../glow/import/index.js';
import { InverseDiagnoser, inverseVerdict } from '../glow/inverse-diagnosis.js';
import { Rng } from '../math/rng.js';
import { Encoded, InputError } from '../runtime/core.js';
import { sameConfig } from '../glow/contract.js';
import { writeFileAtomic } from '../io/files.js';
import { attributeDirection, Latents, meanAndStdErr, oneHotRows, sampleEps } from '../runtime/generate.js';
import { writeGrid } from '../runtime/images.js';
import { STRESS_SETS } from '../runtime/stress.js';
import { latentsBytes, parseLatents } from '../runtime/latents.js';
import { loadMnist } from '../runtime/mnist.js';
import { SHIPPED_MODEL, STABLE_MODEL } from '../runtime/shipped.js';
import { GlowRuntime, loadGlowRuntime } from '../runtime/node.js';
import { PROVIDERS, ProviderName } from '../runtime/providers.js';
import { dequantize, largest, quantize, RoundTrip } from '../runtime/quantize.js';
import { integer, number, Options, parse, readBytes, required, UsageError, Values } from './args.js';
import { checkMnistShape, ImageBatch, loadImages, oneHot, readImages } from './data.js';
import { withProgress } from './progress.js';
import { size } from '../math/tensor.js';

/** The shipped model, used when --model is not given. */

const RUNTIME_FLAGS: Options = {
  model: { type: 'string' }, ep: { type: 'string' }, 'strict-ep': { type: 'boolean' }, threads: { type: 'string' },
  'batch-size': { type: 'string' }, 'device-id': { type: 'string' }, 'trt-fp16': { type: 'boolean' }, 'trt-cache': { type: 'string' },
};

async function openModel(values: Values): Promise<GlowRuntime> {
  const dir = (values.model as string | undefined) ?? SHIPPED_MODEL;
  if (!values.model && !existsSync(dir)) throw new UsageError(`no shipped model at ${dir}: pass --model DIR (a folder written by glow-onnx export)`);
  const providers = ((values.ep as string | undefined) ?? 'cpu').split(',').map((p) => p.trim()) as ProviderName[];
  for (const p of providers) if (!PROVIDERS.includes(p)) throw new UsageError(`--ep ${p} is not a provider (${PROVIDERS.join(', ')})`);
  const runtime = await loadGlowRuntime(dir, {
    executionProviders: providers,
    strict: values['strict-ep'] === true,
    threads: integer(values, 'threads', 1),
    batchSize: integer(values, 'batch-size', 1),
    deviceId: integer(values, 'device-id', 0),
    tensorrtFp16: values['trt-fp16'] === true,
    tensorrtEngineCacheDir: values['trt-cache'] as string | undefined,
  });
  for (const f of runtime.failures) console.error(`note: ${f.provider} unavailable (${f.reason}); fell back`);
  console.error(`running on ${runtime.providers.encode === runtime.providers.decode ? runtime.providers.encode : `encode: ${runtime.providers.encode}, decode: ${runtime.providers.decode}`}`);
  return runtime;
}

/** Bits/dim to `digits` decimals; the astronomic values of images far off the data (1e15 and
 * more) in exponent form, where decimals say nothing. */
function fixed(value: number, digits: number): string {
  return Math.abs(value) < 1e6 ? value.toFixed(digits) : value.toExponential(digits);
}

function temperatureFlag(values: Values, fallback: number): number {
  return number(values, 'temperature', (t) => Number.isFinite(t) && t >= 0, 'a finite number >= 0') ?? fallback;
}

function imagesOf(config: GlowConfig, x: Float32Array): Uint8Array[] {
  const n = size(config.imageShape);
  const pixels = quantize(x, config.nBits);
  return Array.from({ length: x.length / n }, (_, i) => pixels.subarray(i * n, (i + 1) * n));
}

function scaleFor(config: GlowConfig): number {
  return Math.max(1, Math.round(64 / config.imageShape[1]));
}

async function saveGrid(path: string, config: GlowConfig, x: Float32Array, columns: number, captions?: string[]): Promise<void> {
  await writeGrid(path, imagesOf(config, x), config.imageShape, { columns, scale: scaleFor(config), captions });
  console.log(`wrote ${path}`);
}

function labelsFor(runtime: GlowRuntime, values: Values, n: number): Float32Array | undefined {
  const classes = runtime.config.numClasses;
  const label = integer(values, 'class', 0);
  if (classes === 0) {
    if (label !== undefined) throw new UsageError('--class needs a class-conditional model');
    return undefined;
  }
  if (label !== undefined && label >= classes) throw new UsageError(`--class must be in 0..${classes - 1}`);
  return oneHotRows(classes, Array.from({ length: n }, (_, i) => label ?? i % classes));
}

/** Images from files as the model takes them: bin centres (deterministic), no class. */
interface InputImages { x: Float32Array; y?: Float32Array; names: string[]; count: number }

async function inputImages(runtime: GlowRuntime, paths: string[]): Promise<InputImages> {
  const { config } = runtime;
  const batch = await readImages(paths, config);
  const x = dequantize(batch.pixels, config.nBits, 'center');
  return { x, y: oneHot(undefined, batch.count, config.numClasses), names: batch.names, count: batch.count };
}

async function encodeImages(runtime: GlowRuntime, paths: string[]): Promise<{ encoded: Encoded; names: string[] }> {
  const { x, y, names, count } = await inputImages(runtime, paths);
  const encoded = await withProgress('encode', count, (p) => runtime.model.encode(x, [count, ...runtime.config.imageShape], y, p));
  return { encoded, names };
}

/** Warns, on stderr, about each input image that does not come back through the model: every
 * picture made from its latents shows the model's decode, not the image. On the default model it
 * points to the stable one, which inverts more images off the data. */
function warnRoundTrip(roundTrip: RoundTrip, names: readonly string[], values: Values): void {
  const { failing, errors, tolerance } = roundTrip;
  if (failing.length === 0) return;
  const named = failing.map((n) => `${basename(names[n])} (${errors[n].toExponential(1)})`).join(', ');
  const stable = values.model ? '' : `; the shipped stable model inverts nearly all such images: --model ${STABLE_MODEL}`;
  console.error(`warning: ${failing.length} of ${errors.length} images do not round-trip through this model `
    + `(|x - decode(encode(x))| over ${tolerance}): ${named}; what is drawn from their latents is the model's decode, `
    + `not the image (images unlike its training data; glow-onnx diagnose --data DIR says why)${stable}`);
}

/** The first `count` images of a read batch, for the commands that draw from that many. */
function firstImages(runtime: GlowRuntime, images: InputImages, count: number): InputImages {
  const { imageSize, config } = runtime.model;
  if (images.count < count) throw new UsageError(`needs ${count} images, got ${images.count}`);
  return {
    x: images.x.subarray(0, count * imageSize),
    y: images.y?.subarray(0, count * config.numClasses),
    names: images.names.slice(0, count),
    count,
  };
}

export async function cmdSample(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    ...RUNTIME_FLAGS, n: { type: 'string' }, temperature: { type: 'string' }, class: { type: 'string' }, seed: { type: 'string' },
    out: { type: 'string' }, columns: { type: 'string' },
  });
  const out = required(values, 'out');
  const n = integer(values, 'n', 1) ?? 64;
  const temperature = temperatureFlag(values, 0.7);
  const runtime = await openModel(values);
  try {
    const y = labelsFor(runtime, values, n);
    const eps = sampleEps(runtime.config, n, integer(values, 'seed', 0) ?? 0);
    const x = await withProgress('sample', n, (p) => runtime.model.decode(eps, temperature, y, p));
    await saveGrid(out, runtime.config, x, integer(values, 'columns', 1) ?? Math.ceil(Math.sqrt(n)));
  } finally {
    await runtime.model.release();
  }
}

export async function cmdEncode(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...RUNTIME_FLAGS, out: { type: 'string' } }, [1, Infinity]);
  const out = required(values, 'out');
  const runtime = await openModel(values);
  try {
    const { encoded, names } = await encodeImages(runtime, positionals);
    writeFileAtomic(out, latentsBytes(runtime.config, encoded.eps, encoded.n, { images: JSON.stringify(names.map((n) => basename(n))) }));
    const mean = encoded.bpd.reduce((a, b) => a + b, 0) / encoded.n;
    console.log(`wrote ${out}: latents of ${encoded.n} images (mean ${mean.toFixed(3)} bits/dim)`);
  } finally {
    await runtime.model.release();
  }
}

export async function cmdDecode(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...RUNTIME_FLAGS, out: { type: 'string' }, temperature: { type: 'string' }, class: { type: 'string' } }, 1);
  const out = required(values, 'out');
  const temperature = temperatureFlag(values, 1);
  const runtime = await openModel(values);
  try {
    const { latents, n } = parseLatents(readBytes(positionals[0]), positionals[0], runtime.config);
    const x = await withProgress('decode', n, (p) => runtime.model.decode(latents, temperature, labelsFor(runtime, values, n), p));
    await saveGrid(out, runtime.config, x, Math.ceil(Math.sqrt(n)));
  } finally {
    await runtime.model.release();
  }
}

export async function cmdReconstruct(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...RUNTIME_FLAGS, out: { type: 'string' } }, [1, Infinity]);
  const out = required(values, 'out');
  const runtime = await openModel(values);
  try {
    const { config } = runtime;
    const { x, y, names, count } = await inputImages(runtime, positionals);
    const { x: xr, roundTrip } = await withProgress('encode, decode', 2 * count, (p) => runtime.model.reconstruct(x, [count, ...config.imageShape], y, p));
    warnRoundTrip(roundTrip, names, values);
    const maxError = largest(roundTrip.errors);
    const size = x.length / count;
    const pairs = new Float32Array(2 * x.length);
    for (let i = 0; i < count; i++) {
      pairs.set(x.subarray(i * size, (i + 1) * size), 2 * i * size);
      pairs.set(xr.subarray(i * size, (i + 1) * size), (2 * i + 1) * size);
    }
    const before = quantize(x, config.nBits);
    const after = quantize(xr, config.nBits);
    const changed = before.reduce((count, v, i) => count + (v !== after[i] ? 1 : 0), 0);
    await saveGrid(out, config, pairs, 2, names.flatMap((n) => [basename(n), 'decoded']));
    console.log(`${count} images: max |x - decode(encode(x))| = ${maxError.toExponential(2)}, ${changed} of ${x.length} pixels change level`);
  } finally {
    await runtime.model.release();
  }
}

export async function cmdInterpolate(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...RUNTIME_FLAGS, out: { type: 'string' }, steps: { type: 'string' } }, 2);
  const out = required(values, 'out');
  const steps = integer(values, 'steps', 2) ?? 8;
  const runtime = await openModel(values);
  try {
    const { config } = runtime;
    const { x: ends, y, names } = firstImages(runtime, await inputImages(runtime, positionals), 2);
    const { x, roundTrip } = await withProgress('interpolate', 4 + steps, (p) => runtime.model.interpolateImages(ends, steps, y, p));
    warnRoundTrip(roundTrip, names, values);
    await saveGrid(out, config, x, steps, Array.from({ length: steps }, (_, s) => `t=${(s / (steps - 1)).toFixed(2)}`));
  } finally {
    await runtime.model.release();
  }
}

/** Latents of MNIST training digits and whether each is `digit`. */
async function mnistDirection(runtime: GlowRuntime, digit: number, limit: number): Promise<Latents> {
  const { config } = runtime;
  checkMnistShape(config);
  if (!Number.isInteger(digit) || digit < 0 || digit > 9) throw new UsageError(`an MNIST attribute is a digit 0..9, got ${digit}`);
  const m = loadMnist('train', limit);
  const x = dequantize(m.pixels, config.nBits, 'center');
  const encoded = await withProgress('encode', m.count, (p) => runtime.model.encode(x, [m.count, ...config.imageShape], oneHot(m.labels, m.count, config.numClasses), p));
  return attributeDirection(config, encoded.eps, Array.from(m.labels, (l) => l === digit));
}

function parseLabelFile(text: string, source: string): Map<string, boolean> {
  const labels = new Map<string, boolean>();
  text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).forEach((line, i) => {
    const m = /^(.+?)[\s,;]+(0|1|true|false)$/.exec(line);
    if (!m) throw new Error(`${source}:${i + 1}: expected "<image name> <0|1>", got "${line}"`);
    labels.set(m[1], m[2] === '1' || m[2] === 'true');
  });
  return labels;
}

export async function cmdDirection(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    ...RUNTIME_FLAGS, out: { type: 'string' }, images: { type: 'string' }, labels: { type: 'string' },
    'mnist-digit': { type: 'string' }, limit: { type: 'string' },
  });
  const out = required(values, 'out');
  const runtime = await openModel(values);
  try {
    const { config } = runtime;
    let direction: Latents;
    if (values['mnist-digit'] !== undefined) {
      direction = await mnistDirection(runtime, Number(values['mnist-digit']), integer(values, 'limit', 2) ?? 2000);
    } else {
      const dir = required(values, 'images');
      const labelsPath = required(values, 'labels');
      const labels = parseLabelFile(new TextDecoder().decode(readBytes(labelsPath)), labelsPath);
      const { encoded, names } = await encodeImages(runtime, [dir]);
      const has = names.map((n) => {
        const flag = labels.get(basename(n));
        if (flag === undefined) throw new Error(`${labelsPath} has no label for ${basename(n)}`);
        return flag;
      });
      direction = attributeDirection(config, encoded.eps, has);
    }
    writeFileAtomic(out, latentsBytes(config, direction, 1, { kind: 'direction' }));
    console.log(`wrote ${out}`);
  } finally {
    await runtime.model.release();
  }
}

function alphas(values: Values): number[] {
  const raw = (values.alpha as string | undefined) ?? '-1..1';
  const steps = integer(values, 'steps', 2) ?? 5;
  const m = /^(-?[\d.]+)\.\.(-?[\d.]+)$/.exec(raw);
  if (m) {
    const [a, b] = [Number(m[1]), Number(m[2])];
    if (!Number.isFinite(a) || !Number.isFinite(b)) throw new UsageError(`--alpha ${raw} is not a range A..B`);
    return Array.from({ length: steps }, (_, i) => a + ((b - a) * i) / (steps - 1));
  }
  const alpha = Number(raw);
  if (raw === '' || !Number.isFinite(alpha)) throw new UsageError(`--alpha must be a number or a range A..B, got ${raw}`);
  return [0, alpha];
}

/** A direction file holds one latent of this model (glow-onnx direction writes one). */
function directionFile(path: string, config: GlowConfig): Latents {
  const { latents, n } = parseLatents(readBytes(path), path, config);
  if (n !== 1) throw new InputError(`${path} holds ${n} latents, a direction is one (write it with glow-onnx direction)`);
  return latents;
}

export async function cmdManipulate(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    ...RUNTIME_FLAGS, out: { type: 'string' }, direction: { type: 'string' }, attribute: { type: 'string' },
    alpha: { type: 'string' }, steps: { type: 'string' }, limit: { type: 'string' },
  }, 1);
  const out = required(values, 'out');
  if (!values.direction === !values.attribute) throw new UsageError('pass exactly one of --direction FILE and --attribute LABEL');
  const amounts = alphas(values);
  const runtime = await openModel(values);
  try {
    const { config } = runtime;
    const direction = values.direction
      ? directionFile(values.direction as string, config)
      : await mnistDirection(runtime, Number(values.attribute), integer(values, 'limit', 2) ?? 2000);
    const { x: image, y, names } = firstImages(runtime, await inputImages(runtime, positionals), 1);
    const { x, roundTrip } = await withProgress('manipulate', 2 + amounts.length, (p) => runtime.model.manipulateImage(image, direction, amounts, y, p));
    warnRoundTrip(roundTrip, names, values);
    await saveGrid(out, config, x, amounts.length, amounts.map((a) => `a=${a.toFixed(2)}`));
  } finally {
    await runtime.model.release();
  }
}

export async function cmdEval(argv: string[]): Promise<void> {
  const { values } = parse(argv, { ...RUNTIME_FLAGS, data: { type: 'string' }, limit: { type: 'string' }, seed: { type: 'string' } });
  const data = (values.data as string | undefined) ?? 'mnist-test';
  const runtime = await openModel(values);
  try {
    const { config } = runtime;
    const batch = await loadImages(data, config, integer(values, 'limit', 1) ?? Infinity);
    const x = dequantize(batch.pixels, config.nBits, new Rng(integer(values, 'seed', 0) ?? 0));
    const encoded = await withProgress('eval', batch.count, (p) => runtime.model.encode(x, [batch.count, ...config.imageShape], oneHot(batch.labels, batch.count, config.numClasses), p));
    const { mean, stdErr } = meanAndStdErr(encoded.bpd);
    console.log(`${batch.count} images of ${data}: ${fixed(mean, 4)} ± ${fixed(stdErr, 4)} bits/dim (mean ± standard error, uniform dequantisation)`);
  } finally {
    await runtime.model.release();
  }
}

/** Round trip of one set of images: bits/dim, per-image max |x - decode(encode(x))|, the misses. */
interface SetRoundTrip extends RoundTrip {
  data: string;
  batch: ImageBatch;
  x: Float32Array;
  y?: Float32Array;
  encoded: Encoded;
}

async function roundTrip(runtime: GlowRuntime, data: string, limit: number, seed: number): Promise<SetRoundTrip> {
  const { config } = runtime;
  const batch = await loadImages(data, config, limit);
  const x = dequantize(batch.pixels, config.nBits, new Rng(seed));
  const y = oneHot(batch.labels, batch.count, config.numClasses);
  const { encoded, roundTrip } = await withProgress(`encode, decode ${data}`, 2 * batch.count, (p) => runtime.model.reconstruct(x, [batch.count, ...config.imageShape], y, p));
  return { data, batch, x, y, encoded, ...roundTrip };
}

/** An error as it ranks: NaN (a decode that gave NaN) as the largest. */
function ranked(error: number): number {
  return Number.isNaN(error) ? Infinity : error;
}

/** The q-quantile of values, NaN counted as the largest. */
function quantile(values: ArrayLike<number>, q: number): number {
  const sorted = Float64Array.from(values, ranked).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** What failed, one line naming the first few images. */
function missMessage(r: SetRoundTrip, dtype: string): string {
  const named = r.failing.slice(0, 5).map((n) => `${r.batch.names[n]} (${r.errors[n].toExponential(2)}, ${r.encoded.bpd[n].toFixed(3)} bits/dim)`).join(', ');
  return `${r.failing.length} of ${r.batch.count} images do not round-trip within the ${dtype} tolerance ${r.tolerance}: ${named}${r.failing.length > 5 ? ', ...' : ''}`;
}

export async function cmdVerify(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    ...RUNTIME_FLAGS, data: { type: 'string' }, limit: { type: 'string' }, seed: { type: 'string' }, 'max-failing': { type: 'string' },
    placement: { type: 'boolean' }, stress: { type: 'boolean' },
  }, [0, 1]);
  const runtime = await openModel({ ...values, model: positionals[0] ?? values.model });
  try {
    const { config } = runtime;
    const data = (values.data as string | undefined) ?? 'mnist-test';
    const limit = integer(values, 'limit', 1) ?? 256;
    const seed = integer(values, 'seed', 0) ?? 1;
    const maxFailing = integer(values, 'max-failing', 0) ?? 0;
    const [C, H, W] = config.imageShape;
    // The inverted set is MNIST's digits: only for models of MNIST's shape.
    const stress = STRESS_SETS.filter((s) => s !== data && (s !== 'inverted' || (C === 1 && H === 28 && W === 28)));
    const sets = values.stress ? [data, ...stress] : [data];
    const results: SetRoundTrip[] = [];
    for (const set of sets) {
      const r = await roundTrip(runtime, set, limit, seed);
      results.push(r);
      const { mean, stdErr } = meanAndStdErr(r.encoded.bpd);
      const q = (p: number) => quantile(r.errors, p).toExponential(1);
      console.log(`${r.batch.count} images of ${set}: bits/dim ${fixed(mean, 4)} ± ${fixed(stdErr, 4)}, round-trip max |x - decode(encode(x))| = ${largest(r.errors).toExponential(2)} `
        + `(per image: median ${q(0.5)}, 99th percentile ${q(0.99)}, 99.9th ${q(0.999)})`);
    }
    if (values.stress) {
      console.log('\nset           images  misses  median bits/dim  median error  worst error');
      for (const r of results) {
        console.log(`${r.data.padEnd(12)}  ${String(r.batch.count).padStart(6)}  ${String(r.failing.length).padStart(6)}  ${fixed(quantile(r.encoded.bpd, 0.5), 3).padStart(15)}  `
          + `${quantile(r.errors, 0.5).toExponential(1).padStart(12)}  ${largest(r.errors).toExponential(1).padStart(11)}`);
      }
    }
    const over = results.filter((r) => r.failing.length > maxFailing);
    for (const r of results.filter((r) => r.failing.length > 0 && r.failing.length <= maxFailing)) {
      console.error(`note: ${missMessage(r, runtime.dtype)} (at most ${maxFailing} allowed by --max-failing)`);
    }
    if (over.length > 0) {
      const message = over.map((r) => missMessage(r, runtime.dtype)).join('; ');
      throw new Error(maxFailing ? `${message} (at most ${maxFailing} allowed)` : message);
    }
    if (values.placement) await printPlacement(runtime, results[0].x, results[0].y, results[0].encoded.eps);
  } finally {
    await runtime.model.release();
  }
}

export async function cmdDiagnose(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    ...RUNTIME_FLAGS, data: { type: 'string' }, limit: { type: 'string' }, seed: { type: 'string' }, worst: { type: 'string' }, weights: { type: 'string' },
  }, [0, 1]);
  const dir = positionals[0] ?? (values.model as string | undefined) ?? SHIPPED_MODEL;
  const weightsPath = (values.weights as string | undefined) ?? join(dir, 'weights.safetensors');
  if (!existsSync(weightsPath)) throw new UsageError(`diagnose needs the model's weights: no ${weightsPath} (pass --weights FILE)`);
  const { weights } = importWeights(readBytes(weightsPath), weightsPath);
  const runtime = await openModel({ ...values, model: dir });
  try {
    const { config } = runtime;
    if (!sameConfig(weights.config, config)) throw new UsageError(`${weightsPath} is not this model's: its config differs from ${dir}/glow.json`);
    const data = (values.data as string | undefined) ?? 'mnist-test';
    const r = await roundTrip(runtime, data, integer(values, 'limit', 1) ?? 64, integer(values, 'seed', 0) ?? 1);
    const worst = Array.from(r.errors.keys()).sort((a, b) => ranked(r.errors[b]) - ranked(r.errors[a])).slice(0, integer(values, 'worst', 1) ?? 3);
    console.log(`${r.batch.count} images of ${data}: ${r.failing.length} do not round-trip within ${r.tolerance}; the ${worst.length} worst, diagnosed in float64:`);
    const diagnoser = new InverseDiagnoser(weights);
    const size = runtime.model.imageSize;
    const latentSizes = runtime.model.latentSizes;
    const classes = config.numClasses;
    for (const n of worst) {
      const d = diagnoser.diagnose(r.x.subarray(n * size, (n + 1) * size), r.y?.subarray(n * classes, (n + 1) * classes),
        r.encoded.eps.map((e, l) => e.subarray(n * latentSizes[l], (n + 1) * latentSizes[l])));
      const gains = [...d.layers].sort((a, b) => b.gain - a.gain).slice(0, 4)
        .map((g) => `${g.layer} x${g.gain.toPrecision(3)} (${g.input.toExponential(1)} -> ${g.output.toExponential(1)})`);
      const e = (v: number) => v.toExponential(2);
      console.log(`\n${r.batch.names[n]} (${r.encoded.bpd[n].toFixed(3)} bits/dim): round trip float32 ${e(r.errors[n])}, float64 end to end ${e(d.float64)}, `
        + `float64 of the float32 latents ${e(d.float64OfFloat32Latents)}; float32 latents off by ${e(d.latentError)}`);
      console.log(`  ${inverseVerdict(d, r.errors[n], r.tolerance)}`);
      console.log(`  largest gains (decode order's input -> output change): ${gains.join(', ')}`);
    }
  } finally {
    await runtime.model.release();
  }
}

/** Which provider ran each op, from one profiled run of a small batch per graph. */
async function printPlacement(runtime: GlowRuntime, x: Float32Array, y: Float32Array | undefined, eps: Latents): Promise<void> {
  const { config } = runtime;
  const n = runtime.model.staticBatch ? runtime.model.batchSize : Math.min(2, x.length / runtime.model.imageSize);
  const rows = (data: Float32Array, size: number, dims: number[]) => {
    const out = new Float32Array(n * size);
    out.set(data.subarray(0, Math.min(data.length, n * size)));
    return new ort.Tensor('float32', out, [n, ...dims]);
  };
  const label: Record<string, ort.Tensor> = y ? { y: rows(y, config.numClasses, [config.numClasses]) } : {};
  const encodeFeeds = { x: rows(x, runtime.model.imageSize, config.imageShape), ...label };
  const decodeFeeds: Record<string, ort.Tensor> = { temperature: new ort.Tensor('float32', Float32Array.of(1), []), ...label };
  eps.forEach((e, l) => (decodeFeeds[`eps_${l + 1}`] = rows(e, runtime.model.latentSizes[l], latentShape(config, l + 1))));
  for (const [graph, feeds] of [['encode', encodeFeeds], ['decode', decodeFeeds]] as const) {
    const { byProvider } = await runtime.placement(graph, feeds);
    const describe = (ops: Record<string, number>) => Object.entries(ops).sort().map(([op, count]) => `${op} ${count}`).join(', ');
    for (const [provider, ops] of Object.entries(byProvider)) {
      console.log(`${graph} on ${provider}: ${Object.values(ops).reduce((a, b) => a + b, 0)} nodes (${describe(ops)})`);
    }
  }
}
