// What the scale floor costs at run time: the shipped MNIST weights exported with their
// scaleFloor and with none (the same weights otherwise), encode and decode in onnxruntime-node
// CPU, in one process, the two variants alternating round by round. Prints the median time of
// each and the ratio floor / none. The floor adds a Less and a Where to each affine coupling.
//
//   node dist/scripts/floor-cost.js [--rounds 30] [--batches 1,16] [--threads 2]

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { dimensions, latentShape } from '../src/glow/config.js';
import { exportModel } from '../src/glow/export.js';
import { importWeights } from '../src/glow/import/index.js';
import { Rng } from '../src/glow/rng.js';
import { sampleEps } from '../src/runtime/generate.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const REPEATS = 5;

const { values } = parseArgs({ options: { rounds: { type: 'string' }, batches: { type: 'string' }, threads: { type: 'string' } } });
const rounds = Number(values.rounds ?? 30);
const batches = (values.batches ?? '1,16').split(',').map(Number);
const threads = Number(values.threads ?? 2);

const path = join(ROOT, 'models/mnist/weights.safetensors');
const { weights } = importWeights(readFileSync(path), path);
if (!weights.config.scaleFloor) throw new Error(`${path} has no scaleFloor: nothing to compare`);
const options: ort.InferenceSession.SessionOptions = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads };
const variants = { floor: weights, none: { ...weights, config: { ...weights.config, scaleFloor: 0 } } };
type Variant = keyof typeof variants;
const sessions = {} as Record<Variant, { encode: ort.InferenceSession; decode: ort.InferenceSession }>;
for (const [name, w] of Object.entries(variants) as [Variant, typeof weights][]) {
  const files = exportModel(w);
  sessions[name] = { encode: await ort.InferenceSession.create(files['encode.onnx'], options), decode: await ort.InferenceSession.create(files['decode.onnx'], options) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const { config } = weights;
console.log(`scaleFloor ${config.scaleFloor} vs none, ${path}: onnxruntime-node CPU, ${threads} threads, median of ${rounds} alternating rounds of ${REPEATS} runs`);
for (const n of batches) {
  const rng = new Rng(n);
  const x = new ort.Tensor('float32', Float32Array.from({ length: n * dimensions(config) }, () => rng.uniform() - 0.5), [n, ...config.imageShape]);
  const eps = Object.fromEntries(sampleEps(config, n, n).map((data, l) => [`eps_${l + 1}`, new ort.Tensor('float32', data, [n, ...latentShape(config, l + 1)])]));
  const feeds = { encode: { x }, decode: { ...eps, temperature: new ort.Tensor('float32', [1], []) } };
  const times: Record<Variant, Record<'encode' | 'decode', number[]>> = { floor: { encode: [], decode: [] }, none: { encode: [], decode: [] } };
  for (let r = 0; r < rounds; r++) {
    for (const name of (r % 2 ? ['floor', 'none'] : ['none', 'floor']) as Variant[]) {
      for (const pass of ['encode', 'decode'] as const) {
        const start = performance.now();
        for (let i = 0; i < REPEATS; i++) await sessions[name][pass].run(feeds[pass]);
        times[name][pass].push((performance.now() - start) / REPEATS);
      }
    }
  }
  for (const pass of ['encode', 'decode'] as const) {
    const [floor, none] = [median(times.floor[pass]), median(times.none[pass])];
    console.log(`batch ${n} ${pass}: floor ${floor.toFixed(2)} ms, none ${none.toFixed(2)} ms, floor / none ${(floor / none).toFixed(3)}`);
  }
}
