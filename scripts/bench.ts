// Inference benchmark (npm run bench): encode and decode images/s and peak memory in
// onnxruntime-node CPU for glow-onnx's graphs (folded and --no-fold), the same weights in
// PyTorch eager (the reference, python3-torch) and exported by torch.onnx with W and W^-1
// cached, plus achieved GFLOP/s against a large MatMul run in the same invocation. The machine
// is shared and noisy: read the ratios, every number of which comes from this one invocation.
//
//   npm run bench -- [--configs mnist,cifar-like,cifar] [--batches 1,16,64] [--reps 5] [--rounds 2] [--threads 2] [--profile]
//
// Every runtime measurement runs in a child process of its own (this script with --worker, or
// bench_torch.py), so peak memory is that runtime's alone.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { GraphBuilder, tensor } from '../src/builder/graph.js';
import * as op from '../src/builder/ops.js';
import { serializeModel } from '../src/builder/serialize.js';
import { GlowConfig, latentShape } from '../src/glow/config.js';
import { exportModel } from '../src/glow/export.js';
import { convFlopsPerImage } from '../src/glow/flops.js';
import { peakRssBytes } from './peak-memory.js';
import { parseCheckpoint, checkpointBytes, initWeights } from '../src/glow/params.js';
import { GlowWeights } from '../src/glow/model.js';
import { usageOnHelp } from '../support/script-usage.js';
import { PYTHON } from '../support/python.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TORCH_SCRIPT = join(ROOT, 'scripts/torch_reference/bench_torch.py');

const base = { coupling: 'affine', permutation: 'invconv', lu: true, learnTop: true, numClasses: 0, nBits: 8, actnormScale: 1 } as const;
const CONFIGS: Record<string, { describe: string; weights: () => GlowWeights }> = {
  mnist: {
    describe: 'the shipped MNIST model (models/mnist)',
    weights: () => parseCheckpoint(readFileSync(join(ROOT, 'models/mnist/weights.safetensors')), 'models/mnist/weights.safetensors'),
  },
  'cifar-like': {
    describe: '32x32x3, K=8, L=3, hidden 256, affine, LU',
    weights: () => initWeights({ ...base, imageShape: [3, 32, 32], K: 8, L: 3, hiddenChannels: 256 }, 1),
  },
  cifar: {
    describe: 'full Glow CIFAR: 32x32x3, K=32, L=3, hidden 512, affine, LU',
    weights: () => initWeights({ ...base, imageShape: [3, 32, 32], K: 32, L: 3, hiddenChannels: 512 }, 1),
  },
};

interface WorkerSpec {
  encode: string;
  decode: string;
  config: GlowConfig;
  batches: number[];
  reps: number;
  threads: number;
  /** Instead of timing: ONNX Runtime's per-op kernel time of the first batch size. */
  profile?: boolean;
}

/** Kernel microseconds per op type, per pass. */
type Profile = Record<'encode' | 'decode', Record<string, number>>;

interface Timing {
  /** Resident memory before any model is loaded (runtime and modules only). */
  baseRssMB: number;
  batches: Record<string, { encode: number[]; decode: number[]; peakRssMB: number }>;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rssMB = () => peakRssBytes() / 2 ** 20;

function sessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1 };
}

function randomFloats(n: number, scale: number, offset = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * scale + offset;
  return a;
}

function passFeeds(config: GlowConfig, n: number): Record<'encode' | 'decode', Record<string, ort.Tensor>> {
  const [C, H, W] = config.imageShape;
  const eps: Record<string, ort.Tensor> = {};
  for (let l = 1; l <= config.L; l++) {
    const shape = latentShape(config, l);
    eps[`eps_${l}`] = new ort.Tensor('float32', randomFloats(n * shape[0] * shape[1] * shape[2], 2, -1), [n, ...shape]);
  }
  return {
    encode: { x: new ort.Tensor('float32', randomFloats(n * C * H * W, 1, -0.5), [n, C, H, W]) },
    decode: { ...eps, temperature: new ort.Tensor('float32', new Float32Array([0.7]), []) },
  };
}

async function runWorker(spec: WorkerSpec): Promise<Timing> {
  const baseRssMB = rssMB();
  const options = sessionOptions(spec.threads);
  const sessions = { encode: await ort.InferenceSession.create(spec.encode, options), decode: await ort.InferenceSession.create(spec.decode, options) };
  const batches: Timing['batches'] = {};
  for (const n of spec.batches) {
    const feeds = passFeeds(spec.config, n);
    const times = { encode: [] as number[], decode: [] as number[] };
    // One pass's runs back to back: interleaving two sessions makes each one's idle pool threads
    // spin against the other's work, which halves small models' throughput.
    for (const pass of ['encode', 'decode'] as const) {
      for (let rep = 0; rep <= spec.reps; rep++) {
        const start = performance.now();
        await sessions[pass].run(feeds[pass]);
        if (rep > 0) times[pass].push(performance.now() - start);
      }
    }
    batches[n] = { ...times, peakRssMB: rssMB() };
  }
  return { baseRssMB, batches };
}

async function profileWorker(spec: WorkerSpec): Promise<Profile> {
  const dir = mkdtempSync(join(tmpdir(), 'glow-bench-profile-'));
  try {
    const feeds = passFeeds(spec.config, spec.batches[0]);
    const result = {} as Profile;
    for (const pass of ['encode', 'decode'] as const) {
      const prefix = join(dir, pass);
      const session = await ort.InferenceSession.create(spec[pass], { ...sessionOptions(spec.threads), enableProfiling: true, profileFilePrefix: prefix });
      for (let rep = 0; rep <= spec.reps; rep++) await session.run(feeds[pass]);
      session.endProfiling();
      await session.release();
      const file = readdirSync(dir).find((f) => f.startsWith(pass) && f.endsWith('.json'))!;
      const byOp: Record<string, number> = {};
      for (const e of JSON.parse(readFileSync(join(dir, file), 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[]) {
        if (e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.args?.op_name) byOp[e.args.op_name] = (byOp[e.args.op_name] ?? 0) + e.dur;
      }
      result[pass] = byOp;
    }
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** "Conv 93%, Add 2%, ...": the op types' shares of kernel time, largest first. */
function profileLine(byOp: Record<string, number>): string {
  const total = Object.values(byOp).reduce((a, b) => a + b, 0);
  const shares = Object.entries(byOp).sort((a, b) => b[1] - a[1]).map(([op, t]) => [op, (100 * t) / total] as const);
  return shares.filter(([, p], i) => i < 6 && p >= 0.5).map(([op, p]) => `${op} ${p.toFixed(1)}%`).join(', ');
}

/** GFLOP/s of one [M,M] x [M,M] MatMul graph: the machine's practical float32 peak in ORT. It is
 * measured again before every config and the highest value kept, so that one noisy moment does
 * not set it. */
async function matmulPeak(threads: number, reps: number): Promise<number> {
  const M = 2048;
  const g = new GraphBuilder('matmul_peak');
  const a = g.input('a', 'float32', [M, M]);
  const b = g.initializer('b', tensor('float32', [M, M], randomFloats(M * M, 1)));
  g.output(op.matmul(g, a, b), 'y');
  const session = await ort.InferenceSession.create(serializeModel(g.build()), sessionOptions(threads));
  const feeds = { a: new ort.Tensor('float32', randomFloats(M * M, 1), [M, M]) };
  let best = Infinity;
  for (let rep = 0; rep <= reps; rep++) {
    const start = performance.now();
    await session.run(feeds);
    if (rep > 0) best = Math.min(best, performance.now() - start);
  }
  await session.release();
  // A peak: the fastest run, not the median.
  return (2 * M ** 3) / (best / 1000) / 1e9;
}


/** Per batch and pass, the round with the lower median time; memory: the higher peak. */
function bestOf(a: Timing, b: Timing): Timing {
  const batches: Timing['batches'] = {};
  for (const [n, x] of Object.entries(a.batches)) {
    const y = b.batches[n];
    const pick = (pass: 'encode' | 'decode') => (median(y[pass]) < median(x[pass]) ? y[pass] : x[pass]);
    batches[n] = { encode: pick('encode'), decode: pick('decode'), peakRssMB: Math.max(x.peakRssMB, y.peakRssMB) };
  }
  return { baseRssMB: Math.max(a.baseRssMB, b.baseRssMB), batches };
}

function child(command: string, args: string[], what: string): string {
  const run = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (run.status !== 0) throw new Error(`${what} failed: ${(run.stderr || run.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  return run.stdout.trim().split('\n').at(-1)!;
}

function nodeWorker(spec: WorkerSpec, what: string): Timing {
  return JSON.parse(child(process.execPath, [fileURLToPath(import.meta.url), '--worker', JSON.stringify(spec)], what)) as Timing;
}

const fmtRate = (n: number, times: number[]) => {
  const rate = (t: number) => (n * 1000) / t;
  const spread = (rate(Math.min(...times)) - rate(Math.max(...times))) / rate(median(times)) / 2;
  return `${rate(median(times)).toFixed(rate(median(times)) < 100 ? 1 : 0)} ±${(spread * 100).toFixed(0)}%`;
};

async function main(): Promise<void> {
  usageOnHelp(import.meta.url);
  const { values } = parseArgs({
    options: {
      worker: { type: 'string' }, configs: { type: 'string' }, batches: { type: 'string' }, reps: { type: 'string' }, threads: { type: 'string' },
      profile: { type: 'boolean' }, rounds: { type: 'string' },
    },
  });
  if (values.worker) {
    const spec = JSON.parse(values.worker) as WorkerSpec;
    console.log(JSON.stringify(spec.profile ? await profileWorker(spec) : await runWorker(spec)));
    return;
  }
  const configNames = (values.configs ?? 'mnist,cifar-like,cifar').split(',');
  for (const name of configNames) if (!CONFIGS[name]) throw new Error(`unknown config ${name}: choose from ${Object.keys(CONFIGS).join(', ')}`);
  const batches = (values.batches ?? '1,16,64').split(',').map(Number).sort((a, b) => a - b);
  const reps = Number(values.reps ?? 5);
  const threads = Number(values.threads ?? 2);
  const rounds = Number(values.rounds ?? 2);
  if (!batches.every((b) => Number.isSafeInteger(b) && b > 0) || ![reps, threads, rounds].every((v) => Number.isSafeInteger(v) && v >= 1)) throw new Error('--batches, --reps, --threads and --rounds take positive integers');

  let peak = 0;
  console.log(`onnxruntime-node ${ort.env.versions.common} CPU, ${threads} threads, ${reps} timed runs after one warm-up, best of ${rounds} rounds; median images/s ±half the min-max spread\n`);
  const dir = mkdtempSync(join(tmpdir(), 'glow-bench-'));
  const summary: { config: string; batch: number; pass: string; vsTorchOnnx: number; vsEager: number; ofPeak: number; decodeOverEncode: number }[] = [];
  try {
    for (const name of configNames) {
      const weights = CONFIGS[name].weights();
      const config = weights.config;
      const at = (...p: string[]) => join(dir, name, ...p);
      mkdirSync(at('torch'), { recursive: true });
      writeFileSync(at('weights.safetensors'), checkpointBytes(weights));
      const variants: Record<string, { encode: string; decode: string }> = {};
      for (const fold of [false, true]) {
        const files = exportModel(weights, { fold });
        const sub = fold ? 'fold' : 'nofold';
        mkdirSync(at(sub));
        writeFileSync(at(sub, 'encode.onnx'), files['encode.onnx']);
        writeFileSync(at(sub, 'decode.onnx'), files['decode.onnx']);
        variants[fold ? 'glow-onnx' : 'glow-onnx --no-fold'] = { encode: at(sub, 'encode.onnx'), decode: at(sub, 'decode.onnx') };
      }
      const torchSpec = { checkpoint: at('weights.safetensors'), out: at('torch'), batches, reps, threads };
      child(PYTHON, [TORCH_SCRIPT, 'export', JSON.stringify(torchSpec)], `torch.onnx export of ${name} (python3-torch)`);
      const order = ['torch.onnx (W, W^-1 cached)', 'glow-onnx --no-fold', 'glow-onnx'];
      variants[order[0]] = { encode: at('torch', 'encode.onnx'), decode: at('torch', 'decode.onnx') };
      // Each runtime runs once per round, the order reversed every other round so that drift
      // on a shared machine does not always hit the same one; each keeps its best round.
      const runners: Record<string, () => Timing> = {
        'PyTorch eager': () => JSON.parse(child(PYTHON, [TORCH_SCRIPT, 'time', JSON.stringify(torchSpec)], `PyTorch eager timing of ${name}`)) as Timing,
        ...Object.fromEntries(order.map((v) => [v, () => nodeWorker({ ...variants[v], config, batches, reps, threads }, `${v} on ${name}`)])),
      };
      const timings: Record<string, Timing> = {};
      for (let round = 0; round < rounds; round++) {
        const names = Object.keys(runners);
        for (const v of round % 2 ? names.reverse() : names) timings[v] = timings[v] ? bestOf(timings[v], runners[v]()) : runners[v]();
      }

      peak = Math.max(peak, await matmulPeak(threads, reps));
      const flops = convFlopsPerImage(config);
      console.log(`## ${name}: ${CONFIGS[name].describe}; ${(flops / 1e9).toFixed(3)} GFLOP per image and pass`);
      console.log(`MatMul peak so far (2048x2048x2048 in ORT, this invocation): ${peak.toFixed(1)} GFLOP/s`);
      console.log(`RSS before loading a model: PyTorch ${timings['PyTorch eager'].baseRssMB.toFixed(0)} MB, onnxruntime-node ${timings['glow-onnx'].baseRssMB.toFixed(0)} MB`);
      const columns = ['PyTorch eager', ...order];
      const header = ['batch', 'pass', ...columns.map((c) => `${c} img/s`), 'glow-onnx / torch.onnx', 'glow-onnx / eager', 'glow-onnx GFLOP/s (of peak)',
        'peak RSS MB eager / torch.onnx / glow-onnx'];
      // A Markdown table, so that docs/results.md's can be pasted from a run.
      console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`);
      for (const n of batches) {
        for (const pass of ['encode', 'decode'] as const) {
          const t = (v: string) => median(timings[v].batches[n][pass]);
          // Peak resident memory of the process that ran it, up to this batch size (batches run
          // in increasing order, so it is this batch's peak when it is the largest so far).
          const mem = (v: string) => timings[v].batches[n].peakRssMB.toFixed(0);
          const ours = t('glow-onnx');
          const gflops = (flops * n) / (ours / 1000) / 1e9;
          const row = {
            config: name, batch: n, pass, vsTorchOnnx: t(order[0]) / ours, vsEager: t('PyTorch eager') / ours, ofPeak: gflops / peak,
            decodeOverEncode: median(timings['glow-onnx'].batches[n].decode) / median(timings['glow-onnx'].batches[n].encode),
          };
          summary.push(row);
          const cells = [n, pass, ...columns.map((c) => fmtRate(n, timings[c].batches[n][pass])), `${row.vsTorchOnnx.toFixed(2)}x`,
            `${row.vsEager.toFixed(2)}x`, `${gflops.toFixed(1)} (${(100 * row.ofPeak).toFixed(0)}%)`, `${mem('PyTorch eager')} / ${mem(order[0])} / ${mem('glow-onnx')}`];
          console.log(`| ${cells.join(' | ')} |`);
        }
      }
      if (values.profile) {
        // Where the time goes at the largest batch: when Conv dominates the baseline too, no
        // change around the convolutions can beat it by much (the ceiling printed).
        const n = Math.max(...batches);
        console.log(`ONNX Runtime profile, batch ${n}, share of kernel time:`);
        for (const v of [order[0], 'glow-onnx']) {
          const profile = JSON.parse(child(process.execPath, [fileURLToPath(import.meta.url), '--worker',
            JSON.stringify({ ...variants[v], config, batches: [n], reps: 3, threads, profile: true })], `profile of ${v}`)) as Profile;
          for (const pass of ['encode', 'decode'] as const) {
            const byOp = profile[pass];
            const total = Object.values(byOp).reduce((a, b) => a + b, 0);
            const ceiling = v === order[0] ? `; ceiling for a graph with the same convolutions: ${(total / (byOp.Conv ?? 0)).toFixed(2)}x` : '';
            console.log(`  ${v} ${pass}: ${profileLine(byOp)}${ceiling}`);
          }
        }
      }
      console.log('');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  printTargets(summary);
}

function printTargets(rows: { config: string; batch: number; pass: string; vsTorchOnnx: number; vsEager: number; ofPeak: number; decodeOverEncode: number }[]): void {
  const check = (label: string, selected: typeof rows, value: (r: (typeof rows)[number]) => number, ok: (v: number) => boolean, fmt: (v: number) => string) => {
    if (!selected.length) return;
    const misses = selected.filter((r) => !ok(value(r))).length;
    const list = selected.map((r) => `${r.pass} b${r.batch} ${fmt(value(r))}${ok(value(r)) ? '' : '*'}`).join(', ');
    console.log(`${misses ? `MISS (${misses} of ${selected.length}, marked *)` : 'met'}  ${label}: ${list}`);
  };
  console.log('targets (issue 7), from this invocation:');
  const by = (config: string, pass?: string) => rows.filter((r) => r.config === config && (!pass || r.pass === pass));
  const x = (v: number) => `${v.toFixed(2)}x`;
  check('cifar-like >= 1.15x torch.onnx', by('cifar-like'), (r) => r.vsTorchOnnx, (v) => v >= 1.15, x);
  check('mnist >= 1.5x torch.onnx', by('mnist'), (r) => r.vsTorchOnnx, (v) => v >= 1.5, x);
  check('encode >= 2x PyTorch eager', rows.filter((r) => r.pass === 'encode'), (r) => r.vsEager, (v) => v >= 2, x);
  check('decode time <= 1.1x encode time', rows.filter((r) => r.pass === 'decode'), (r) => r.decodeOverEncode, (v) => v <= 1.1, x);
  check('cifar >= 80% of the MatMul peak', by('cifar'), (r) => r.ofPeak, (v) => v >= 0.8, (v) => `${(100 * v).toFixed(0)}%`);
}

await main();
