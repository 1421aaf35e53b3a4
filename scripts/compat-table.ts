// The README's runtime compatibility table, measured: every runtime installed here runs encode
// and decode of the shipped model (models/mnist, two MNIST test images) and of a class-conditional
// RGB model (16x16x3, affine with LU, random weights, a scale floor), and each output (eps,
// logdet, log p(x), bits/dim, y_logits, decoded x) is compared with the project's float64
// interpreter (builder/evaluate.ts) running the default export on the same inputs: the error is
// |a - b| / max(1, |b|), the largest over both models and all outputs. Prints the markdown table
// the README holds between its compat-table markers; test/interop/compat-table.test.ts reruns
// the rows that need no GPU emulation and checks the README against them.
//
//   node dist/scripts/compat-table.js [--rows cpu,webgpu,wasm,opencv,float64]

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { evaluateGraph } from '../src/builder/evaluate.js';
import { Graph, Tensor } from '../src/builder/graph.js';
import { serializeModel } from '../src/builder/serialize.js';
import { GlowConfig, latentShape } from '../src/glow/config.js';
import { exportGraph, ExportOptions, GraphKind } from '../src/glow/export.js';
import { importWeights } from '../src/glow/import/index.js';
import { GlowWeights } from '../src/glow/model.js';
import { Rng } from '../src/math/rng.js';
import { loadMnist } from '../src/runtime/mnist.js';
import { dequantize } from '../src/runtime/quantize.js';
import { maxScaledDiff } from '../support/compare.js';
import { Float32Feeds, Outputs } from '../support/feeds.js';
import { opencvVersion, runOpencv } from '../support/opencv.js';
import { RGB_CONFIGS } from '../support/rgb-configs.js';
import { useSoftwareWebGpu, webGpuDriverProblem } from '../support/webgpu.js';
import { randomImages, randomOneHot, randomParams, randomShuffles } from '../support/random-params.js';
import { runInChromium, WebBuild } from './browser-ort.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const N = 2;
const TEMPERATURE = 0.7;

type Feeds = Float32Feeds<Float32Array>;

interface Case {
  model: string;
  kind: GraphKind;
  weights: GlowWeights;
  feeds: Feeds;
}

/** Runs one graph of a case in a runtime; the graph is the one its export options give. */
interface Runner {
  runtime: string;
  version: () => string;
  options: ExportOptions;
  profile: string;
  run: (cases: { c: Case; graph: Graph; feeds: Feeds }[]) => Promise<(Outputs | Error)[]>;
}

export interface Row {
  runtime: string;
  version: string;
  encode: boolean;
  decode: boolean;
  /** Largest scaled error vs float64 over the outputs it produced; undefined for the reference. */
  error?: number;
  profile: string;
  /** The first failure, when encode or decode did not run. */
  failure?: string;
}

const packageVersion = (name: string) => {
  const path = name === 'glow-onnx' ? join(ROOT, 'package.json') : join(ROOT, 'node_modules', name, 'package.json');
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
};

function cases(): Case[] {
  const shipped = importWeights(readFileSync(join(ROOT, 'models/mnist/weights.safetensors')), 'weights.safetensors').weights;
  const rgbConfig: GlowConfig = { ...RGB_CONFIGS[0], scaleFloor: 0.1 };
  const rgb: GlowWeights = { config: rgbConfig, params: randomParams(rgbConfig, 90), shuffles: randomShuffles(rgbConfig, 90) };
  const digits = loadMnist('test', N);
  const f32 = (t: { shape: readonly number[]; data: ArrayLike<number> }) => ({ shape: [...t.shape], data: Float32Array.from(t.data) });
  const out: Case[] = [];
  for (const [model, w, x] of [
    ['shipped', shipped, { shape: [N, 1, 28, 28], data: dequantize(digits.pixels, shipped.config.nBits, 'center') }],
    ['rgb16', rgb, randomImages(rgbConfig, N, 91)],
  ] as const) {
    const y: Feeds = w.config.numClasses ? { y: f32(randomOneHot(w.config, N, 92)) } : {};
    const rng = new Rng(93);
    const eps: Feeds = Object.fromEntries(Array.from({ length: w.config.L }, (_, i) => {
      const shape = [N, ...latentShape(w.config, i + 1)];
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
      for (let k = 0; k < data.length; k++) data[k] = rng.normal();
      return [`eps_${i + 1}`, { shape, data }];
    }));
    out.push({ model, kind: 'encode', weights: w, feeds: { x: f32(x), ...y } });
    out.push({ model, kind: 'decode', weights: w, feeds: { ...eps, ...y, temperature: { shape: [], data: Float32Array.of(TEMPERATURE) } } });
  }
  return out;
}

/** The feeds of an OpenCV graph: no temperature input, eps scaled by it instead. */
function withoutTemperatureInput(feeds: Feeds): Feeds {
  const t = feeds.temperature?.data[0];
  if (t === undefined) return feeds;
  return Object.fromEntries(Object.entries(feeds).filter(([k]) => k !== 'temperature')
    .map(([k, v]) => [k, k.startsWith('eps_') ? { shape: v.shape, data: v.data.map((e) => e * t) } : v]));
}

async function ortRun(ort: typeof import('onnxruntime-node'), sessionOptions: object, jobs: { graph: Graph; feeds: Feeds }[]): Promise<(Outputs | Error)[]> {
  const results: (Outputs | Error)[] = [];
  for (const { graph, feeds } of jobs) {
    try {
      const session = await ort.InferenceSession.create(serializeModel(graph), sessionOptions);
      try {
        const input = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor('float32', v.data, v.shape)]));
        const out = await session.run(input);
        results.push(Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array])));
      } finally {
        await session.release();
      }
    } catch (e) {
      results.push(e as Error);
    }
  }
  return results;
}

function float64Run(jobs: { graph: Graph; feeds: Feeds }[]): Outputs[] {
  return jobs.map(({ graph, feeds }) => {
    const input: Record<string, Tensor> = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, { dtype: 'float32', shape: [...v.shape], data: Float64Array.from(v.data) }]));
    return Object.fromEntries(Object.entries(evaluateGraph(graph, input)).map(([k, t]) => [k, t.data]));
  });
}

export const ROW_KEYS = ['cpu', 'webgpu', 'wasm', 'chromium-wasm', 'chromium-webgpu', 'chromium-webgpu-native', 'opencv', 'float64'] as const;
export type RowKey = (typeof ROW_KEYS)[number];

/** A row of onnxruntime-web run in headless Chromium, on the default export. */
function inChromium(runtime: string, build: WebBuild, executionProvider: 'wasm' | 'webgpu'): Runner {
  return {
    runtime, version: () => packageVersion('onnxruntime-web'), options: {}, profile: 'default',
    run: (jobs) => runInChromium(jobs, build, executionProvider),
  };
}

function runners(): Record<RowKey, Runner> {
  return {
    cpu: {
      runtime: 'onnxruntime-node CPU', version: () => packageVersion('onnxruntime-node'), options: {}, profile: 'default',
      run: async (jobs) => ortRun(await import('onnxruntime-node'), { executionProviders: ['cpu'] }, jobs),
    },
    webgpu: {
      runtime: 'onnxruntime-node WebGPU (Dawn on SwiftShader)', version: () => packageVersion('onnxruntime-node'), options: {}, profile: 'default',
      run: async (jobs) => {
        const problem = webGpuDriverProblem(useSoftwareWebGpu());
        if (problem) throw new Error(problem);
        return ortRun(await import('onnxruntime-node'), { executionProviders: ['webgpu'], logSeverityLevel: 3 }, jobs);
      },
    },
    wasm: {
      runtime: 'onnxruntime-web wasm (in Node)', version: () => packageVersion('onnxruntime-web'), options: {}, profile: 'default',
      run: async (jobs) => {
        const ortWeb = await import('onnxruntime-web');
        ortWeb.env.wasm.numThreads = 1;
        return ortRun(ortWeb as unknown as typeof import('onnxruntime-node'), { executionProviders: ['wasm'] }, jobs);
      },
    },
    'chromium-wasm': inChromium('onnxruntime-web wasm (Chromium)', 'jsep', 'wasm'),
    'chromium-webgpu': inChromium('onnxruntime-web WebGPU, JSEP build (Chromium on SwiftShader)', 'jsep', 'webgpu'),
    'chromium-webgpu-native': inChromium('onnxruntime-web/webgpu, native EP (Chromium on SwiftShader)', 'webgpu', 'webgpu'),
    opencv: {
      runtime: 'OpenCV DNN (python3-opencv)', version: opencvVersion, options: { target: 'opencv', batch: N }, profile: '`--target opencv`',
      run: async (jobs) => runOpencv(jobs.map((j) => ({ graph: j.graph, feeds: withoutTemperatureInput(j.feeds) }))),
    },
    float64: {
      runtime: 'glow-onnx float64 interpreter', version: () => packageVersion('glow-onnx'), options: {}, profile: 'default',
      run: async (jobs) => float64Run(jobs),
    },
  };
}

/** Measures the rows asked for, in ROW_KEYS order. */
export async function measure(keys: readonly RowKey[]): Promise<Row[]> {
  const all = cases();
  const reference = float64Run(all.map((c) => ({ graph: exportGraph(c.weights, c.kind), feeds: c.feeds })));
  const rows: Row[] = [];
  const byKey = runners();
  for (const key of ROW_KEYS.filter((k) => keys.includes(k))) {
    const r = byKey[key];
    const version = r.version();
    const results = await r.run(all.map((c) => ({ c, graph: exportGraph(c.weights, c.kind, r.options), feeds: c.feeds })));
    const ok = { encode: true, decode: true };
    let error = 0;
    let failure: string | undefined;
    for (const [i, result] of results.entries()) {
      const c = all[i];
      if (result instanceof Error) {
        ok[c.kind] = false;
        failure ??= `${c.model} ${c.kind}: ${result.message.split('\n')[0]}`;
        continue;
      }
      for (const [name, want] of Object.entries(reference[i])) {
        // OpenCV returns per-example sums as [N, 1]: same values.
        error = Math.max(error, maxScaledDiff(Array.from(result[name]), Array.from(want)));
      }
    }
    rows.push({ runtime: r.runtime, version, ...ok, ...(key === 'float64' ? {} : { error }), profile: r.profile, ...(failure ? { failure } : {}) });
  }
  return rows;
}

/** Runtimes nobody could run here; listed so that the table does not read as support. */
export const UNTESTED = [
  'TensorRT', 'OpenVINO', 'TVM', 'Triton Inference Server',
  // Debian's python3-onnx (1.12) predates onnx.reference (1.13).
  'ONNX reference evaluator (onnx.reference, onnx 1.13 on)',
];
const yesNo = (b: boolean) => (b ? 'yes' : 'no');
export const formatError = (e: number | undefined) => (e === undefined ? '(reference)' : e === 0 ? '0' : e.toExponential(1));

export function formatTable(rows: Row[]): string {
  const lines = [
    '| runtime | version | encode | decode | max error vs float64 | export |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.runtime} | ${r.version} | ${yesNo(r.encode)} | ${yesNo(r.decode)} | ${formatError(r.error)} | ${r.profile} |`),
    ...UNTESTED.map((name) => `| ${name} | — | untested | untested | — | — |`),
  ];
  return lines.join('\n');
}

/** The table's cells, row by row, as formatTable writes them (for the README check). */
export function parseTable(markdown: string): string[][] {
  return markdown.trim().split('\n').slice(2).map((line) => line.split('|').slice(1, -1).map((cell) => cell.trim()));
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rows: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) {
    console.log(`usage: node dist/scripts/compat-table.js [--rows ${ROW_KEYS.join(',')}]`);
    return;
  }
  const keys = (values.rows ?? ROW_KEYS.join(',')).split(',');
  const bad = keys.find((k) => !(ROW_KEYS as readonly string[]).includes(k));
  if (bad) throw new Error(`--rows: unknown row ${bad} (rows: ${ROW_KEYS.join(', ')})`);
  const rows = await measure(keys as RowKey[]);
  for (const r of rows) if (r.failure) console.error(`${r.runtime}: ${r.failure}`);
  console.log(formatTable(rows));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().then(() => process.exit(0), (e: Error) => {
    console.error(`compat-table: ${e.message}`);
    process.exit(1);
  });
}
