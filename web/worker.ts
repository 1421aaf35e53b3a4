// The inference worker: onnxruntime-web (WebGPU first, wasm as fallback) behind the same
// backend-agnostic GlowModel that Node uses, so the page's main thread only draws. Requests run
// one at a time, in the order they arrive.

import * as ort from 'onnxruntime-web';
import { GlowConfig, validateConfig } from '../src/glow/config.js';
import { Rng } from '../src/glow/rng.js';
import { GlowModel } from '../src/runtime/core.js';
import { interpolate, oneHotRows, pick, sampleEps } from '../src/runtime/generate.js';
import { dequantize, quantize } from '../src/runtime/quantize.js';
import { WEBGPU_EP } from '../src/runtime/webgpu-options.js';
import type {
  Backend, BackendChoice, DecodeRequest, EncodeRequest, Envelope, InterpolateRequest, LoadResult, ModelSource, Phase, ReconstructRequest,
  Request, SampleRequest, WorkerMessage,
} from './protocol.js';

/** The glow.json format versions this page understands (src/glow/export.ts FORMAT_VERSION). */
const FORMAT_VERSIONS = [1];
/** Small batches so that long runs report progress as they go. */
const BATCH = 16;

// The DOM library types `self` as a Window; in a dedicated worker it is this.
interface WorkerScope {
  location: Location;
  crossOriginIsolated: boolean;
  onmessage: ((e: MessageEvent<Envelope>) => void) | null;
  postMessage(message: WorkerMessage, transfer?: Transferable[]): void;
}
const scope = self as unknown as WorkerScope;

// onnxruntime-web's .wasm (and its loader .mjs) sit in ort/ next to this script; a prefix URL
// resolved here keeps the static folder relocatable. Threads need a cross-origin isolated page
// (COOP/COEP headers), which plain static hosts do not send: one thread otherwise.
ort.env.wasm.wasmPaths = new URL('./ort/', scope.location.href).href;
ort.env.wasm.numThreads = scope.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
ort.env.wasm.proxy = false;
ort.env.logLevel = 'error';

interface Loaded {
  model: GlowModel;
  config: GlowConfig;
  backend: Backend;
}
let current: Loaded | undefined;

function post(message: WorkerMessage, transfer: Transferable[] = []): void {
  scope.postMessage(message, transfer);
}

function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

// ---------------------------------------------------------------------------------------------
// Loading

async function fetchBytes(url: string, what: string, onBytes: (delta: number, total: number) => void): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`cannot fetch ${what} from ${url}: ${messageOf(e)} (is the URL right, and does its server allow cross-origin requests?)`);
  }
  if (!response.ok) throw new Error(`cannot load ${what} from ${url}: HTTP ${response.status} ${response.statusText}`.trim());
  const total = Number(response.headers.get('content-length') ?? 0);
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    onBytes(bytes.length, bytes.length);
    return bytes;
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    length += value.length;
    onBytes(value.length, total);
  }
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const c of chunks) {
    bytes.set(c, offset);
    offset += c.length;
  }
  return bytes;
}

/** What the page reads from glow.json (src/glow/export.ts GlowJson); fields that older exports
 * lack are optional. */
interface ModelDescription {
  config: GlowConfig;
  dtype: string;
  /** A static batch size of every input and output, when exported with one. */
  batch?: number;
  /** Side file of each .onnx whose initializers are external data. */
  externalData: Record<string, string>;
}

function parseGlowJson(text: string, where: string): ModelDescription {
  let json: { formatVersion?: unknown; config?: unknown; dtype?: unknown; batch?: unknown; externalData?: unknown };
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${where} is not JSON (${messageOf(e)}): is this a glow-onnx model directory?`);
  }
  if (typeof json !== 'object' || json === null || !('config' in json)) {
    throw new Error(`${where} has no "config": it was not written by glow-onnx export`);
  }
  if (!FORMAT_VERSIONS.includes(json.formatVersion as number)) {
    throw new Error(`${where} has format version ${JSON.stringify(json.formatVersion)}; this page reads version(s) ${FORMAT_VERSIONS.join(', ')}`);
  }
  let config: GlowConfig;
  try {
    config = validateConfig(json.config);
  } catch (e) {
    throw new Error(`${where}: ${messageOf(e)}`);
  }
  const batch = json.batch;
  if (batch !== undefined && !(Number.isInteger(batch) && (batch as number) > 0)) {
    throw new Error(`${where}: batch must be a positive integer, got ${JSON.stringify(batch)}`);
  }
  const externalData: Record<string, string> = {};
  if (json.externalData !== undefined) {
    const entries = typeof json.externalData === 'object' && json.externalData !== null ? Object.entries(json.externalData) : [];
    for (const [graph, file] of entries) {
      // A plain file name beside the graph; nothing that would leave the model folder.
      if (!['encode.onnx', 'decode.onnx'].includes(graph) || typeof file !== 'string' || !/^[\w.-]+$/.test(file) || file.startsWith('.')) {
        throw new Error(`${where}: externalData must map encode.onnx/decode.onnx to a file name beside them, got ${JSON.stringify(json.externalData)}`);
      }
      externalData[graph] = file;
    }
  }
  return { config, dtype: typeof json.dtype === 'string' ? json.dtype : 'float32', batch: batch as number | undefined, externalData };
}

/** The graphs' I/O contract, checked on the sessions so that a wrong file fails here, clearly. */
function checkContract(config: GlowConfig, encode: ort.InferenceSession, decode: ort.InferenceSession): void {
  const eps = Array.from({ length: config.L }, (_, l) => `eps_${l + 1}`);
  const y = config.numClasses > 0 ? ['y'] : [];
  const expect = (file: string, kind: string, have: readonly string[], want: string[]) => {
    const missing = want.filter((n) => !have.includes(n));
    if (missing.length) {
      throw new Error(`${file} does not match glow.json: missing ${kind} ${missing.join(', ')} (it has ${have.join(', ') || 'none'})`);
    }
  };
  expect('encode.onnx', 'input(s)', encode.inputNames, ['x', ...y]);
  expect('encode.onnx', 'output(s)', encode.outputNames, [...eps, 'logdet', 'log_px', 'bpd']);
  expect('decode.onnx', 'input(s)', decode.inputNames, [...eps, 'temperature', ...y]);
  expect('decode.onnx', 'output(s)', decode.outputNames, ['x']);
}

/** A graph's bytes and, when its initializers are stored beside it, that side file. */
interface GraphBytes {
  model: Uint8Array;
  externalData?: { path: string; data: Uint8Array };
}

async function createSessions(encode: GraphBytes, decode: GraphBytes, backend: Backend): Promise<[ort.InferenceSession, ort.InferenceSession]> {
  const options = (g: GraphBytes): ort.InferenceSession.SessionOptions => ({
    executionProviders: [backend === 'webgpu' ? WEBGPU_EP : backend],
    graphOptimizationLevel: 'all',
    // Errors only: ORT warns about shape ops it keeps on the CPU on purpose.
    logSeverityLevel: 3,
    ...(g.externalData ? { externalData: [g.externalData] } : {}),
  });
  // Which file failed is what the user needs to know; ORT's message does not say.
  const open = async (file: string, g: GraphBytes) => {
    try {
      return await ort.InferenceSession.create(g.model, options(g));
    } catch (err) {
      throw new Error(`${file}: ${messageOf(err)}`);
    }
  };
  const e = await open('encode.onnx', encode);
  try {
    return [e, await open('decode.onnx', decode)];
  } catch (err) {
    await e.release();
    throw err;
  }
}

/** Why WebGPU cannot run a model of this precision here, or undefined when it can. */
async function webgpuProblem(dtype: string): Promise<string | undefined> {
  type Adapter = { features: { has(name: string): boolean } };
  const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<Adapter | null> } }).gpu;
  if (!gpu) return 'this browser has no WebGPU (navigator.gpu is missing; it needs a secure context: https or localhost)';
  let adapter: Adapter | null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (e) {
    return `WebGPU adapter request failed: ${messageOf(e)}`;
  }
  if (!adapter) return 'WebGPU found no adapter (no usable GPU or driver)';
  // Without shader-f16, onnxruntime-web's float16 kernels produce zeros (seen on SwiftShader).
  if (dtype === 'float16' && !adapter.features.has('shader-f16')) return 'this float16 model needs WebGPU\'s shader-f16 feature, which this adapter lacks';
  return undefined;
}

async function load(id: number, source: ModelSource, choice: BackendChoice): Promise<LoadResult> {
  const started = performance.now();
  const progress = (phase: Phase, done: number, total: number, what?: string) => post({ id, type: 'progress', phase, done, total, what });
  const graphs = ['encode.onnx', 'decode.onnx'] as const;
  let description: ModelDescription;
  let encode: GraphBytes;
  let decode: GraphBytes;
  let name: string;
  if (source.kind === 'url') {
    name = source.name ?? source.base;
    const url = (file: string) => new URL(file, source.base).href;
    const jsonBytes = await fetchBytes(url('glow.json'), 'glow.json', () => {});
    description = parseGlowJson(new TextDecoder().decode(jsonBytes), url('glow.json'));
    // Every file downloads at once; their sizes add up as their headers arrive.
    const files = [...graphs, ...graphs.map((g) => description.externalData[g]).filter((f): f is string => !!f)];
    const totals = files.map(() => 0);
    const loaded = files.map(() => 0);
    const what = files.join(' + ');
    const report = (i: number) => (delta: number, total: number) => {
      loaded[i] += delta;
      totals[i] = total;
      const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
      progress('download', sum(loaded), totals.every((t) => t > 0) ? sum(totals) : 0, what);
    };
    const bytes = await Promise.all(files.map((f, i) => fetchBytes(url(f), f, report(i))));
    const byName = new Map(files.map((f, i) => [f, bytes[i]]));
    [encode, decode] = graphs.map((g) => {
      const side = description.externalData[g];
      return { model: byName.get(g)!, ...(side ? { externalData: { path: side, data: byName.get(side)! } } : {}) };
    });
  } else {
    name = source.name;
    description = parseGlowJson(source.glowJson, 'glow.json');
    const bytes = { 'encode.onnx': source.encode, 'decode.onnx': source.decode };
    [encode, decode] = graphs.map((g) => {
      const side = description.externalData[g];
      if (side && !source.others[side]) throw new Error(`glow.json says ${g} keeps its weights in ${side}: pick that file too`);
      return { model: new Uint8Array(bytes[g]), ...(side ? { externalData: { path: side, data: new Uint8Array(source.others[side]) } } : {}) };
    });
  }
  const { config } = description;

  if (current) {
    await current.model.release();
    current = undefined;
  }
  progress('init', 0, 0, 'creating sessions');
  let backend: Backend;
  let note: string | undefined;
  let sessions: [ort.InferenceSession, ort.InferenceSession] | undefined;
  if (choice !== 'wasm') {
    const problem = await webgpuProblem(description.dtype);
    if (problem && choice === 'webgpu') throw new Error(`backend=webgpu was requested, but ${problem}`);
    if (!problem) {
      try {
        sessions = await createSessions(encode, decode, 'webgpu');
      } catch (e) {
        if (choice === 'webgpu') throw new Error(`WebGPU could not run the model: ${messageOf(e)}`);
        note = `WebGPU could not run the model (${messageOf(e)}); using wasm`;
      }
    } else {
      note = `${problem}; using wasm`;
    }
  }
  if (sessions) {
    backend = 'webgpu';
  } else {
    backend = 'wasm';
    try {
      sessions = await createSessions(encode, decode, 'wasm');
    } catch (e) {
      throw new Error(`onnxruntime-web could not open ${messageOf(e)}`);
    }
  }
  try {
    checkContract(config, sessions[0], sessions[1]);
  } catch (e) {
    await Promise.all(sessions.map((s) => s.release()));
    throw e;
  }
  // A model exported with a static batch runs in batches of exactly that size.
  current = { model: new GlowModel(config, sessions[0], sessions[1], ort, description.batch ?? BATCH, description.batch !== undefined), config, backend };
  return { config, dtype: description.dtype, backend, note, name, ms: performance.now() - started };
}

// ---------------------------------------------------------------------------------------------
// Running

function loaded(): Loaded {
  if (!current) throw new Error('no model is loaded');
  return current;
}

function labelsOf(config: GlowConfig, labels: (number | undefined)[]): Float32Array | undefined {
  if (config.numClasses === 0) return undefined;
  return oneHotRows(config.numClasses, labels.map((l) => l ?? 0));
}

async function sample(id: number, r: SampleRequest) {
  const { model, config } = loaded();
  const started = performance.now();
  const eps = sampleEps(config, r.n, r.seed);
  const y = labelsOf(config, r.labels ?? Array.from({ length: r.n }, () => 0));
  const x = await model.decode(eps, r.temperature, y, (done, total) => post({ id, type: 'progress', phase: 'decode', done, total }));
  return { x, pixels: quantize(x, config.nBits), ms: performance.now() - started };
}

async function reconstruct(id: number, r: ReconstructRequest) {
  const { model, config } = loaded();
  const started = performance.now();
  const shape = [1, ...config.imageShape];
  const y = labelsOf(config, [r.label]);
  // Latents of the bin centres (deterministic); bits/dim of the image dequantised with uniform
  // noise, as likelihoods are measured.
  const x = dequantize(r.pixels, config.nBits, 'center');
  const encoded = await model.encode(x, shape, y);
  post({ id, type: 'progress', phase: 'encode', done: 1, total: 3 });
  const scored = await model.encode(dequantize(r.pixels, config.nBits, new Rng(r.seed)), shape, y);
  post({ id, type: 'progress', phase: 'encode', done: 2, total: 3 });
  const back = await model.decode(encoded.eps, 1, y);
  post({ id, type: 'progress', phase: 'decode', done: 3, total: 3 });
  let maxError = 0;
  for (let i = 0; i < x.length; i++) maxError = Math.max(maxError, Math.abs(back[i] - x[i]));
  return { pixels: quantize(back, config.nBits), bpd: scored.bpd[0], maxError, ms: performance.now() - started };
}

async function interpolation(id: number, r: InterpolateRequest) {
  const { model, config } = loaded();
  const started = performance.now();
  const pixels = new Uint8Array(2 * r.a.length);
  pixels.set(r.a);
  pixels.set(r.b, r.a.length);
  const y = labelsOf(config, [r.labelA, r.labelB]);
  const encoded = await model.encode(dequantize(pixels, config.nBits, 'center'), [2, ...config.imageShape], y);
  post({ id, type: 'progress', phase: 'encode', done: 1, total: 2 });
  const path = interpolate(config, pick(config, encoded.eps, 0), pick(config, encoded.eps, 1), r.steps);
  // A class-conditional model's label moves with the latents, from A's one-hot to B's.
  let yPath: Float32Array | undefined;
  if (y) {
    const k = config.numClasses;
    yPath = new Float32Array(r.steps * k);
    for (let s = 0; s < r.steps; s++) {
      const t = s / (r.steps - 1);
      for (let c = 0; c < k; c++) yPath[s * k + c] = (1 - t) * y[c] + t * y[k + c];
    }
  }
  const x = await model.decode(path, 1, yPath, (done, total) => post({ id, type: 'progress', phase: 'decode', done, total }));
  return { pixels: quantize(x, config.nBits), ms: performance.now() - started };
}

async function encodeImages(r: EncodeRequest) {
  const { model, config } = loaded();
  const started = performance.now();
  const encoded = await model.encode(r.x, [r.n, ...config.imageShape], labelsOf(config, r.labels ?? Array.from({ length: r.n }, () => 0)));
  return { eps: encoded.eps, bpd: encoded.bpd, ms: performance.now() - started };
}

async function decodeLatents(r: DecodeRequest) {
  const { model, config } = loaded();
  const started = performance.now();
  const n = r.eps[0].length / model.latentSizes[0];
  const x = await model.decode(r.eps, r.temperature, labelsOf(config, r.labels ?? Array.from({ length: n }, () => 0)));
  return { x, ms: performance.now() - started };
}

async function handle(id: number, request: Request): Promise<{ result: unknown; transfer: Transferable[] }> {
  switch (request.op) {
    case 'load': {
      const r = await load(id, request.source, request.backend);
      return { result: r, transfer: [] };
    }
    case 'sample': {
      const r = await sample(id, request);
      return { result: r, transfer: [r.x.buffer, r.pixels.buffer] };
    }
    case 'reconstruct': {
      const r = await reconstruct(id, request);
      return { result: r, transfer: [r.pixels.buffer] };
    }
    case 'interpolate': {
      const r = await interpolation(id, request);
      return { result: r, transfer: [r.pixels.buffer] };
    }
    case 'encode': {
      const r = await encodeImages(request);
      return { result: r, transfer: [...r.eps.map((e) => e.buffer), r.bpd.buffer] };
    }
    case 'decode': {
      const r = await decodeLatents(request);
      return { result: r, transfer: [r.x.buffer] };
    }
    default:
      throw new Error(`unknown request ${(request as { op: string }).op}`);
  }
}

let queue: Promise<void> = Promise.resolve();

scope.onmessage = (event: MessageEvent<Envelope>) => {
  const { id, request } = event.data;
  queue = queue.then(async () => {
    try {
      const { result, transfer } = await handle(id, request);
      post({ id, type: 'result', result }, transfer);
    } catch (e) {
      post({ id, type: 'error', message: messageOf(e) });
    }
  });
};

