// npm run bench:export: what exporting costs (issue 7, item 4).
// - Full Glow CIFAR config (44.3 M parameters): wall time and peak memory of
//   exportModelToDirectory (what `glow-onnx export` does), and of the in-memory exportModel for
//   comparison. Targets: under 10 s, peak under 3x the weights' float32 size.
// - CelebA-HQ-sized config ([3, 256, 256], L 6): exported with external data, then both graphs
//   loaded in onnxruntime-node (CPU) and run once (encode of one image, decode at T 0.7).
// Every measurement runs in a fresh child process, so that its peak RSS is its own. Memory is
// reported as (peak - baseline) / weights, baseline = the child's RSS with node and the modules
// loaded, before any weights exist. The float64 host parameters alone are 2x (by design: folding
// is exact), which the ratio includes.
//
//   node dist/scripts/export-cost.js [--skip-celeba] [--celeba-opt all|extended|basic|disabled]

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { DEFAULT_CONFIG, GlowConfig, latentShape } from '../src/glow/config.js';
import { exportModelToDirectory } from '../src/glow/export-directory.js';
import { exportModel } from '../src/glow/export.js';
import { importWeights } from '../src/glow/import/index.js';
import { GlowWeights } from '../src/glow/model.js';
import { checkpointBytes, initWeights } from '../src/glow/params.js';
import { peakRssBytes } from './peak-memory.js';
import { usageOnHelp } from '../support/script-usage.js';

const MB = 2 ** 20;
const TIME_TARGET_S = 10;
const MEMORY_TARGET = 3;

const CIFAR: GlowConfig = {
  ...DEFAULT_CONFIG, imageShape: [3, 32, 32], K: 32, L: 3, hiddenChannels: 512, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 8, actnormScale: 1,
};
const CELEBA: GlowConfig = { ...CIFAR, imageShape: [3, 256, 256], L: 6 };

interface ExportReport {
  params: number;
  exportS: number;
  baselineRss: number;
  weightsRss: number;
  peakRss: number;
  bytes: number;
}

// ---------------------------------------------------------------- children


/** initWeights with every parameter made nonzero, so that all its pages are resident, as a
 * trained model's are (initWeights leaves ActNorms and zero convolutions untouched zeros). */
function denseWeights(config: GlowConfig): GlowWeights {
  const w = initWeights(config, 1);
  for (const [name, t] of w.params) {
    // Not the permutation, signs and the zero prior input, whose values have a meaning.
    if (/invconv\.(p|sign_s)$|prior_h$/.test(name)) continue;
    for (let i = 0; i < t.data.length; i++) t.data[i] += 1e-3 * Math.sin(i);
  }
  return w;
}

/** Exports in this process; `how`: 'dir' (exportModelToDirectory of initWeights), 'dense-dir'
 * (the same with denseWeights), 'memory' (exportModel), or 'checkpoint-dir' (what `glow-onnx
 * export --weights FILE` does: the native checkpoint at `checkpoint` read, then exported). */
function exportChild(config: GlowConfig, how: string, dir: string, externalData: boolean, checkpoint?: string): ExportReport {
  const baselineRss = process.memoryUsage().rss;
  const w = how === 'checkpoint-dir' ? importWeights(readFileSync(checkpoint!), checkpoint!).weights
    : how === 'dense-dir' ? denseWeights(config) : initWeights(config, 1);
  let params = 0;
  for (const t of w.params.values()) params += t.data.length;
  const weightsRss = process.memoryUsage().rss;
  const start = performance.now();
  let bytes = 0;
  if (how === 'memory') {
    for (const data of Object.values(exportModel(w, { externalData }))) bytes += data.length;
  } else {
    for (const f of exportModelToDirectory(w, dir, { externalData }).files) bytes += f.bytes;
  }
  const exportS = (performance.now() - start) / 1000;
  return { params, exportS, baselineRss, weightsRss, peakRss: peakRssBytes(), bytes };
}

function finite(data: Float32Array): boolean {
  return data.every(Number.isFinite);
}

/** Loads encode.onnx and decode.onnx from `dir` and runs each once. */
async function runChild(config: GlowConfig, dir: string, level: string): Promise<Record<string, number | boolean | string>> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'], graphOptimizationLevel: level as ort.InferenceSession.SessionOptions['graphOptimizationLevel'],
  };
  let t = performance.now();
  const encode = await ort.InferenceSession.create(join(dir, 'encode.onnx'), options);
  const encodeLoadS = (performance.now() - t) / 1000;
  const [C, H, W] = config.imageShape;
  const x = new Float32Array(C * H * W);
  for (let i = 0; i < x.length; i++) x[i] = ((i * 7919) % 256) / 256 - 0.5 + 1 / 512;
  t = performance.now();
  const enc = await encode.run({ x: new ort.Tensor('float32', x, [1, C, H, W]) });
  const encodeRunS = (performance.now() - t) / 1000;
  const encodeFinite = Object.values(enc).every((v) => finite(v.data as Float32Array));
  const bpd = (enc.bpd.data as Float32Array)[0];
  await encode.release();

  t = performance.now();
  const decode = await ort.InferenceSession.create(join(dir, 'decode.onnx'), options);
  const decodeLoadS = (performance.now() - t) / 1000;
  const feeds: Record<string, ort.Tensor> = { temperature: new ort.Tensor('float32', Float32Array.of(0.7), []) };
  for (let l = 1; l <= config.L; l++) {
    const shape = latentShape(config, l);
    const eps = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < eps.length; i++) eps[i] = Math.sin(i * 12.9898 + l) * 1.5;
    feeds[`eps_${l}`] = new ort.Tensor('float32', eps, [1, ...shape]);
  }
  t = performance.now();
  const dec = await decode.run(feeds);
  const decodeRunS = (performance.now() - t) / 1000;
  const decodeFinite = finite(dec.x.data as Float32Array);
  await decode.release();
  return { level, encodeLoadS, encodeRunS, bpd, encodeFinite, decodeLoadS, decodeRunS, decodeFinite, peakRss: peakRssBytes() };
}

// ---------------------------------------------------------------- parent

function child<T>(args: string[], timeoutS = 900): T {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', ...args], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: timeoutS * 1000, maxBuffer: 16 * MB,
  });
  if (r.status !== 0) throw new Error(`child ${args.join(' ')} failed (status ${r.status}, signal ${r.signal})`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
}

function printExport(label: string, r: ExportReport, targets = true): void {
  const weights = r.params * 4;
  const ratio = (r.peakRss - r.baselineRss) / weights;
  console.log(`${label}:`);
  console.log(`  parameters ${r.params.toLocaleString('en-US')}, float32 weights ${(weights / MB).toFixed(1)} MiB, files ${(r.bytes / MB).toFixed(1)} MiB`);
  console.log(`  export ${r.exportS.toFixed(2)} s${targets ? ` (${(r.exportS / TIME_TARGET_S).toFixed(2)} of the ${TIME_TARGET_S} s target)` : ''}`);
  console.log(`  RSS: baseline ${(r.baselineRss / MB).toFixed(0)} MiB, with weights ${(r.weightsRss / MB).toFixed(0)} MiB, peak ${(r.peakRss / MB).toFixed(0)} MiB`);
  console.log(`  (peak - baseline) / weights = ${ratio.toFixed(2)}x${targets ? ` (${(ratio / MEMORY_TARGET).toFixed(2)} of the ${MEMORY_TARGET}x target)` : ''}`);
}

function dirBytes(dir: string): string {
  return readdirSync(dir).map((f) => `${f} ${(statSync(join(dir, f)).size / MB).toFixed(1)} MiB`).join(', ');
}

async function main(): Promise<void> {
  usageOnHelp(import.meta.url);
  const { values, positionals } = parseArgs({
    options: { child: { type: 'boolean' }, 'skip-celeba': { type: 'boolean' }, 'celeba-opt': { type: 'string', default: 'all' } },
    allowPositionals: true,
  });
  if (values.child) {
    const [what, arg1, arg2, arg3] = positionals;
    const config = what.startsWith('celeba') ? CELEBA : CIFAR;
    if (arg1 === 'write-checkpoint') {
      writeFileSync(arg2, checkpointBytes(denseWeights(config)));
      console.log('{}');
      return;
    }
    const result = what.endsWith('run') ? await runChild(config, arg1, arg2) : exportChild(config, arg1, arg2, what.startsWith('celeba'), arg3);
    console.log(JSON.stringify(result));
    return;
  }
  const tmp = mkdtempSync(join(tmpdir(), 'glow-export-cost-'));
  try {
    printExport('CIFAR, exportModelToDirectory (the CLI path)', child<ExportReport>(['cifar', 'dir', join(tmp, 'cifar')]));
    rmSync(join(tmp, 'cifar'), { recursive: true, force: true });
    printExport('CIFAR, exportModelToDirectory, every weight nonzero (all pages resident, as trained weights)',
      child<ExportReport>(['cifar', 'dense-dir', join(tmp, 'cifar')]));
    rmSync(join(tmp, 'cifar'), { recursive: true, force: true });
    const checkpoint = join(tmp, 'cifar-dense.safetensors');
    child(['cifar', 'write-checkpoint', checkpoint]);
    printExport('CIFAR, glow-onnx export --weights (a dense float32 checkpoint read, then exported)',
      child<ExportReport>(['cifar', 'checkpoint-dir', join(tmp, 'cifar'), checkpoint]));
    rmSync(join(tmp, 'cifar'), { recursive: true, force: true });
    printExport('CIFAR, exportModel (in memory, all files returned at once)', child<ExportReport>(['cifar', 'memory', '']));
    if (values['skip-celeba']) return;
    const celeba = join(tmp, 'celeba');
    printExport('CelebA-HQ size [3, 256, 256], L 6, external data, exportModelToDirectory (no targets)', child<ExportReport>(['celeba', 'dir', celeba]), false);
    console.log(`  files: ${dirBytes(celeba)}`);
    const run = child<Record<string, number | boolean | string>>(['celeba-run', celeba, values['celeba-opt']!]);
    const s = (k: string) => `${(run[k] as number).toFixed(1)} s`;
    console.log(`CelebA-HQ size in onnxruntime-node (CPU, graphOptimizationLevel ${run.level}):`);
    console.log(`  encode: load ${s('encodeLoadS')}, run (batch 1) ${s('encodeRunS')}, outputs finite: ${run.encodeFinite}, bpd ${(run.bpd as number).toFixed(3)}`);
    console.log(`  decode: load ${s('decodeLoadS')}, run (batch 1, T 0.7) ${s('decodeRunS')}, output finite: ${run.decodeFinite}`);
    console.log(`  peak RSS of that process ${((run.peakRss as number) / MB).toFixed(0)} MiB`);
    if (!run.encodeFinite || !run.decodeFinite) process.exitCode = 1;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
