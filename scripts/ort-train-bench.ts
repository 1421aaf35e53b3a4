// Training throughput of the two engines on the same config and random data, in one invocation:
// glow-onnx's fused train step (onnxruntime-node CPU) and ONNX Runtime's TrainingSession on the
// ort-training artifacts (onnxruntime-web 1.19.2 training build, CPU wasm, one thread). Median
// img/s over the steps after two warm-up steps. A benchmark, not a test: the machine is shared.
//   node dist/scripts/ort-train-bench.js [--K 4] [--hidden 32] [--batch 16] [--steps 10] [--threads 1]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG, GlowConfig } from '../src/glow/config.js';
import { initWeights } from '../src/glow/params.js';
import { Rng } from '../src/math/rng.js';
import { trainWithOrtTraining } from '../src/train/ort-loop.js';
import { train } from '../src/train/loop.js';
import { TrainOptions } from '../src/train/run.js';
import { usageOnHelp } from '../support/script-usage.js';

usageOnHelp(import.meta.url);
const { values } = parseArgs({
  options: { K: { type: 'string' }, hidden: { type: 'string' }, batch: { type: 'string' }, steps: { type: 'string' }, threads: { type: 'string' } },
});
const config: GlowConfig = { ...DEFAULT_CONFIG, K: Number(values.K ?? 4), hiddenChannels: Number(values.hidden ?? 32), nBits: 8 };
const batchSize = Number(values.batch ?? 16);
const steps = Number(values.steps ?? 10);
const threads = Number(values.threads ?? 1);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const rng = new Rng(0);
const size = config.imageShape.reduce((a, b) => a * b, 1);
// One epoch longer than the run, so that neither engine stops to evaluate.
const count = batchSize * (steps + 1);
const pixels = new Uint8Array(count * size).map(() => rng.int(256));

async function rate(engine: typeof train | typeof trainWithOrtTraining): Promise<number> {
  const out = mkdtempSync(join(tmpdir(), 'glow-ort-bench-'));
  const rates: number[] = [];
  const options: TrainOptions = {
    out, batchSize, learningRate: 1e-3, warmupSteps: 0, clipNorm: 0, emaDecay: 0, checkpointEvery: 1e9, seed: 0, initBatch: batchSize,
    evalLimit: 0, epochs: 1, threads,
  };
  try {
    await engine(initWeights(config, 0), { train: { pixels, count } }, options, { onStep: (r) => rates.push(r.imagesPerSecond), shouldStop: () => rates.length >= steps });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  return median(rates.slice(2));
}

const fused = await rate(train);
const ortTraining = await rate(trainWithOrtTraining);
console.log(`config ${JSON.stringify(config)}, batch ${batchSize}, ${steps} steps, ${threads} threads (fused engine)`);
console.log(`glow-onnx fused step (onnxruntime-node CPU): ${fused.toFixed(1)} img/s`);
console.log(`ORT TrainingSession (onnxruntime-web 1.19.2 wasm, 1 thread): ${ortTraining.toFixed(1)} img/s`);
console.log(`ratio ort-training / fused: ${(ortTraining / fused).toFixed(2)}x`);
