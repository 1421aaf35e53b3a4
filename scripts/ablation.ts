// The paper's permutation ablation in miniature: reverse vs shuffle vs 1x1 convolution, with
// additive coupling and the same K, L, width, steps, data order and seed, trained by the
// glow-onnx loop on MNIST, then test bits/dim on the full 10k test set.
//   node dist/scripts/ablation.js [--steps 600] [--K 4] [--hidden 32] [--out runs/ablation]

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG, GlowConfig, Permutation } from '../src/glow/config.js';
import { initWeights } from '../src/glow/params.js';
import { Rng } from '../src/math/rng.js';
import { loadGlowRuntime } from '../src/runtime/node.js';
import { loadMnist } from '../src/runtime/mnist.js';
import { dequantize } from '../src/runtime/quantize.js';
import { writeFilesAtomic } from '../src/io/files.js';
import { exportModel } from '../src/glow/export.js';
import { meanAndStdErr } from '../src/runtime/generate.js';
import { train } from '../src/train/loop.js';
import { usageOnHelp } from '../support/script-usage.js';

usageOnHelp(import.meta.url);
const { values } = parseArgs({ options: { steps: { type: 'string' }, K: { type: 'string' }, hidden: { type: 'string' }, out: { type: 'string' } } });
const steps = Number(values.steps ?? 600);
const out = values.out ?? 'runs/ablation';
const data = { train: loadMnist('train'), test: loadMnist('test') };
const rows: string[] = [];
for (const permutation of ['reverse', 'shuffle', 'invconv'] as Permutation[]) {
  const config: GlowConfig = { ...DEFAULT_CONFIG, K: Number(values.K ?? 4), hiddenChannels: Number(values.hidden ?? 32), coupling: 'additive', permutation, lu: true, nBits: 8 };
  const dir = join(out, permutation);
  const started = Date.now();
  let done = 0;
  const result = await train(initWeights(config, 0), data, {
    out: dir, batchSize: 64, learningRate: 1e-3, warmupSteps: 100, emaDecay: 0, checkpointEvery: 1e9, seed: 0, initBatch: 256,
    evalLimit: 0, epochs: 100, threads: 2,
  }, { shouldStop: () => ++done >= steps });
  writeFilesAtomic(join(dir, 'model'), { ...exportModel(result.weights) });
  const runtime = await loadGlowRuntime(join(dir, 'model'), { batchSize: 500 });
  const x = dequantize(data.test.pixels, config.nBits, new Rng(7));
  const bpd = (await runtime.model.encode(x, [data.test.count, ...config.imageShape])).bpd;
  await runtime.model.release();
  const { mean, stdErr } = meanAndStdErr(bpd);
  rows.push(`| ${permutation === 'invconv' ? '1x1 conv (LU)' : permutation} | ${mean.toFixed(4)} ± ${stdErr.toFixed(4)} | ${result.steps} | ${((Date.now() - started) / 60000).toFixed(1)} min |`);
  console.error(rows.at(-1));
}
console.log(`additive coupling, K=${values.K ?? 4}, L=2, hidden ${values.hidden ?? 32}, batch 64, lr 1e-3, seed 0, 8-bit MNIST, ${steps} steps`);
console.log('| permutation | test bits/dim (10k) | steps | time |\n|---|---|---|---|');
console.log(rows.join('\n'));
