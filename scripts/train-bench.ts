// Training throughput: the same config trained by the PyTorch reference (python3-torch, eager,
// Adam) and by glow-onnx's fused train-step graph in onnxruntime-node CPU, in one invocation,
// with the ratio. A benchmark, not a test: the machine is shared, so read the ratio.
//   node dist/scripts/train-bench.js [--K 16] [--hidden 64] [--batch 64] [--steps 20] [--threads 2]

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG, GlowConfig } from '../src/glow/config.js';
import { initWeights } from '../src/glow/params.js';
import { Rng } from '../src/math/rng.js';
import { train } from '../src/train/loop.js';
import { usageOnHelp } from '../support/script-usage.js';
import { PYTHON } from '../support/python.js';

usageOnHelp(import.meta.url);
const { values } = parseArgs({
  options: { K: { type: 'string' }, hidden: { type: 'string' }, batch: { type: 'string' }, steps: { type: 'string' }, threads: { type: 'string' } },
});
const config: GlowConfig = { ...DEFAULT_CONFIG, K: Number(values.K ?? 16), hiddenChannels: Number(values.hidden ?? 64), nBits: 8 };
const batchSize = Number(values.batch ?? 64);
const steps = Number(values.steps ?? 20);
const threads = Number(values.threads ?? 2);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const script = fileURLToPath(new URL('../../scripts/torch_reference/train_bench.py', import.meta.url));
const torchRun = spawnSync(PYTHON, [script, JSON.stringify({ config, batchSize, steps, threads })], { encoding: 'utf8' });
if (torchRun.status !== 0) throw new Error(`PyTorch benchmark failed (install python3-torch): ${torchRun.stderr.trim().split('\n').at(-1)}`);
const torchRate = (JSON.parse(torchRun.stdout.trim().split('\n').at(-1)!) as { imagesPerSecond: number }).imagesPerSecond;

const rng = new Rng(0);
const count = batchSize * 4;
const pixels = new Uint8Array(count * 784).map(() => rng.int(256));
const out = mkdtempSync(join(tmpdir(), 'glow-train-bench-'));
const rates: number[] = [];
try {
  await train(initWeights(config, 0), { train: { pixels, count } }, {
    out, batchSize, learningRate: 1e-3, warmupSteps: 1, emaDecay: 0, checkpointEvery: 1e9, seed: 0, initBatch: batchSize,
    evalLimit: 0, epochs: 1000, threads,
  }, { onStep: (r) => rates.push(r.imagesPerSecond), shouldStop: () => rates.length >= steps });
} finally {
  rmSync(out, { recursive: true, force: true });
}
const onnxRate = median(rates.slice(2));
console.log(`config ${JSON.stringify(config)}, batch ${batchSize}, ${steps} steps, ${threads} threads`);
console.log(`PyTorch eager (reference): ${torchRate.toFixed(1)} img/s`);
console.log(`glow-onnx fused step (ORT CPU): ${onnxRate.toFixed(1)} img/s`);
console.log(`ratio glow-onnx / PyTorch: ${(onnxRate / torchRate).toFixed(2)}x`);
