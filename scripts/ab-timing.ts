// Timing of two exports of one model in onnxruntime-node, in one process: the variants alternate
// round by round (so that load from other processes and CPU clock changes hit both alike), each
// round runs every graph REPEATS times. Used by the bench scripts that price one export option.

import * as ort from 'onnxruntime-node';
import { dimensions, GlowConfig, latentShape } from '../src/glow/config.js';
import { ModelFiles } from '../src/glow/export.js';
import { Rng } from '../src/math/rng.js';
import { sampleEps } from '../src/runtime/generate.js';

const REPEATS = 5;
const GRAPHS = ['encode', 'decode'] as const;

export interface AbOptions {
  rounds: number;
  batches: number[];
  threads: number;
}

/** Median ms per run of encode and decode for each variant and batch, printed as
 * `batch N encode: A x ms, B y ms, A / B r` (A and B in the order of `variants`). */
export async function timeVariants(config: GlowConfig, variants: Record<string, ModelFiles>, options: AbOptions): Promise<void> {
  const sessionOptions: ort.InferenceSession.SessionOptions = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: options.threads };
  const names = Object.keys(variants);
  if (names.length !== 2) throw new Error('timeVariants compares two variants');
  const sessions: Record<string, Record<(typeof GRAPHS)[number], ort.InferenceSession>> = {};
  for (const name of names) {
    sessions[name] = {
      encode: await ort.InferenceSession.create(variants[name]['encode.onnx'], sessionOptions),
      decode: await ort.InferenceSession.create(variants[name]['decode.onnx'], sessionOptions),
    };
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  console.log(`onnxruntime-node CPU, ${options.threads} threads, median of ${options.rounds} alternating rounds of ${REPEATS} runs`);
  for (const n of options.batches) {
    const rng = new Rng(n);
    const x = new ort.Tensor('float32', Float32Array.from({ length: n * dimensions(config) }, () => rng.uniform() - 0.5), [n, ...config.imageShape]);
    const eps = Object.fromEntries(sampleEps(config, n, n).map((data, l) => [`eps_${l + 1}`, new ort.Tensor('float32', data, [n, ...latentShape(config, l + 1)])]));
    const y: Record<string, ort.Tensor> = config.numClasses ? { y: new ort.Tensor('float32', Float32Array.from({ length: n * config.numClasses }, (_, i) => (i % config.numClasses === 0 ? 1 : 0)), [n, config.numClasses]) } : {};
    const feeds = { encode: { x, ...y }, decode: { ...eps, ...y, temperature: new ort.Tensor('float32', [1], []) } };
    const times = Object.fromEntries(names.map((name) => [name, { encode: [] as number[], decode: [] as number[] }]));
    for (let r = 0; r < options.rounds; r++) {
      for (const name of r % 2 ? [...names].reverse() : names) {
        for (const graph of GRAPHS) {
          const start = performance.now();
          for (let i = 0; i < REPEATS; i++) await sessions[name][graph].run(feeds[graph]);
          times[name][graph].push((performance.now() - start) / REPEATS);
        }
      }
    }
    for (const graph of GRAPHS) {
      const [a, b] = names.map((name) => median(times[name][graph]));
      console.log(`batch ${n} ${graph}: ${names[0]} ${a.toFixed(2)} ms, ${names[1]} ${b.toFixed(2)} ms, ${names[0]} / ${names[1]} ${(a / b).toFixed(3)}`);
    }
  }
}
