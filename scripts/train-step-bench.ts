// Fused train step vs the separate artifacts: the same Adam steps on the same batches, once as
// one graph (forward + backward + Adam; what `glow-onnx train` runs) and once as
// training_model.onnx followed by optimizer_model.onnx (ONNX Runtime's artifact layout), in one
// invocation, alternating blocks so that drift on a shared machine hits both. Prints
// milliseconds per step, images/s and the ratio, and checks that both took the same steps.
//   node dist/scripts/train-step-bench.js [--K 16] [--hidden 64] [--batch 64] [--steps 10] [--rounds 3] [--threads 2]

import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { serializeModel } from '../src/builder/serialize.js';
import { DEFAULT_CONFIG, GlowConfig } from '../src/glow/config.js';
import { paramSpecs } from '../src/glow/names.js';
import { initWeights } from '../src/glow/params.js';
import { Rng } from '../src/math/rng.js';
import { adamFeeds, buildFusedTrainStep, buildOptimizerModel, buildTrainingModel, zeroMoments } from '../src/train/graphs.js';
import { gradName, momentNames, updatedName } from '../src/train/names.js';
import { usageOnHelp } from '../support/script-usage.js';

usageOnHelp(import.meta.url);
const { values } = parseArgs({
  options: {
    K: { type: 'string' }, hidden: { type: 'string' }, batch: { type: 'string' }, steps: { type: 'string' }, rounds: { type: 'string' }, threads: { type: 'string' },
  },
});
const config: GlowConfig = { ...DEFAULT_CONFIG, K: Number(values.K ?? 16), hiddenChannels: Number(values.hidden ?? 64), nBits: 8 };
const batch = Number(values.batch ?? 64);
const steps = Number(values.steps ?? 10);
const rounds = Number(values.rounds ?? 3);
const threads = Number(values.threads ?? 2);

const weights = initWeights(config, 0);
const shapes = new Map(paramSpecs(config).filter((s) => s.trainable).map((s) => [s.name, s.shape]));
const options: ort.InferenceSession.SessionOptions = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1 };
const fused = await ort.InferenceSession.create(serializeModel(buildFusedTrainStep(weights)), options);
const training = await ort.InferenceSession.create(serializeModel(buildTrainingModel(weights)), options);
const optimizer = await ort.InferenceSession.create(serializeModel(buildOptimizerModel(shapes)), options);

const rng = new Rng(0);
const [C, H, W] = config.imageShape;
const batches = Array.from({ length: steps }, () => new ort.Tensor('float32', Float32Array.from({ length: batch * C * H * W }, () => rng.uniform() - 0.5), [batch, C, H, W]));

type State = Map<string, Float32Array>;
const initialState = (): State => {
  const s: State = new Map([...shapes.keys()].map((name) => [name, Float32Array.from(weights.params.get(name)!.data)]));
  for (const [k, v] of zeroMoments(shapes)) s.set(k, v);
  return s;
};
const tensorsOf = (s: State, names: string[]) => Object.fromEntries(names.map((n) => [n, new ort.Tensor('float32', s.get(n)!, shapes.get(n.replace(/\.exp_avg(_sq)?$/, ''))!)]));
const stateNames = [...shapes.keys()].flatMap((n) => [n, momentNames(n).m, momentNames(n).v]);
const scalars = (step: number) => Object.fromEntries(Object.entries(adamFeeds(step, 1e-3)).map(([k, v]) => [k, new ort.Tensor('float32', Float32Array.of(v), [])]));

async function runFused(): Promise<{ ms: number; losses: number[] }> {
  const s = initialState();
  const losses: number[] = [];
  const start = performance.now();
  for (let i = 0; i < steps; i++) {
    const out = await fused.run({ x: batches[i], ...scalars(i + 1), ...tensorsOf(s, stateNames) });
    losses.push((out.loss.data as Float32Array)[0]);
    for (const n of stateNames) s.set(n, out[updatedName(n)].data as Float32Array);
  }
  return { ms: (performance.now() - start) / steps, losses };
}

async function runSeparate(): Promise<{ ms: number; losses: number[] }> {
  const s = initialState();
  const losses: number[] = [];
  const start = performance.now();
  for (let i = 0; i < steps; i++) {
    const grads = await training.run({ x: batches[i], ...tensorsOf(s, [...shapes.keys()]) });
    losses.push((grads.loss.data as Float32Array)[0]);
    const gradFeeds = Object.fromEntries([...shapes.keys()].map((n) => [gradName(n), grads[gradName(n)]]));
    const out = await optimizer.run({ ...scalars(i + 1), ...tensorsOf(s, stateNames), ...gradFeeds });
    for (const n of stateNames) s.set(n, out[updatedName(n)].data as Float32Array);
  }
  return { ms: (performance.now() - start) / steps, losses };
}

await runFused();
await runSeparate(); // warm-up of both
const results = { fused: [] as number[], separate: [] as number[] };
let worstLossGap = 0;
for (let r = 0; r < rounds; r++) {
  const a = await runFused();
  const b = await runSeparate();
  results.fused.push(a.ms);
  results.separate.push(b.ms);
  a.losses.forEach((l, i) => (worstLossGap = Math.max(worstLossGap, Math.abs(l - b.losses[i]) / Math.abs(l))));
}
const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
console.log(`config K=${config.K} L=${config.L} hidden ${config.hiddenChannels} ${config.imageShape.join('x')}, batch ${batch}, ${steps} steps x ${rounds} rounds, ${threads} threads, ORT CPU`);
console.log(`fused step (forward + backward + Adam, one run):         ${median(results.fused).toFixed(1)} ms/step, ${(batch * 1000 / median(results.fused)).toFixed(1)} img/s`);
console.log(`separate artifacts (training_model, then optimizer_model): ${median(results.separate).toFixed(1)} ms/step, ${(batch * 1000 / median(results.separate)).toFixed(1)} img/s`);
console.log(`ratio separate / fused time: ${(median(results.separate) / median(results.fused)).toFixed(3)}x; largest relative loss difference between the two: ${worstLossGap.toExponential(1)}`);
