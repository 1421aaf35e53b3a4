// The inference worker: onnxruntime-web (WebGPU first, wasm as fallback) behind the same
// backend-agnostic GlowModel that Node uses, so the page's main thread only draws. Requests run
// one at a time, in the order they arrive.

import * as ort from 'onnxruntime-web';
import {
  Backend, BackendChoice, dequantize, GlowConfig, GlowModel, loadGlowModel, oneHotRows, quantize, Rng, type RoundTrip, sampleEps,
} from '../src/web/index.js';
import type {
  DecodeRequest, EncodeRequest, Envelope, InterpolateRequest, LoadResult, ModelSource, ReconstructRequest, Request, RoundTripReport, SampleRequest,
  WorkerMessage,
} from './protocol.js';

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
// (COOP/COEP headers, as npm run web sends them); plain static hosts do not: one thread then.
// Isolated, every core the browser reports, since decode scales with threads.
ort.env.wasm.wasmPaths = new URL('./ort/', scope.location.href).href;
ort.env.wasm.numThreads = scope.crossOriginIsolated ? navigator.hardwareConcurrency || 1 : 1;
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

async function load(id: number, source: ModelSource, choice: BackendChoice): Promise<LoadResult> {
  const started = performance.now();
  const from = source.kind === 'url'
    ? source.base
    : { ...source.others, 'glow.json': source.glowJson, 'encode.onnx': source.encode, 'decode.onnx': source.decode };
  const loadedModel = await loadGlowModel(from, {
    backend: choice,
    batchSize: BATCH,
    onProgress: (phase, done, total, what) => post({ id, type: 'progress', phase, done, total, what }),
  });
  // The previous model goes once the new one runs: a failed load leaves it usable.
  await current?.model.release();
  const { model, config, backend, dtype, note } = loadedModel;
  current = { model, config, backend };
  const name = source.kind === 'url' ? source.name ?? source.base : source.name;
  return { config, dtype, backend, note, name, ms: performance.now() - started };
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

function report(roundTrip: RoundTrip): RoundTripReport {
  return { errors: Array.from(roundTrip.errors), tolerance: roundTrip.tolerance, failing: roundTrip.failing };
}

async function reconstruct(id: number, r: ReconstructRequest) {
  const { model, config } = loaded();
  const started = performance.now();
  const shape = [1, ...config.imageShape];
  const y = labelsOf(config, [r.label]);
  // Latents of the bin centres (deterministic), decoded back with the image's round trip;
  // bits/dim of the image dequantised with uniform noise, as likelihoods are measured.
  const back = await model.reconstruct(dequantize(r.pixels, config.nBits, 'center'), shape, y,
    (done) => post({ id, type: 'progress', phase: done < 2 ? 'encode' : 'decode', done, total: 3 }));
  const scored = await model.encode(dequantize(r.pixels, config.nBits, new Rng(r.seed)), shape, y);
  post({ id, type: 'progress', phase: 'encode', done: 3, total: 3 });
  const maxError = back.roundTrip.errors[0];
  return { pixels: quantize(back.x, config.nBits), bpd: scored.bpd[0], maxError, roundTrip: report(back.roundTrip), ms: performance.now() - started };
}

async function interpolation(id: number, r: InterpolateRequest) {
  const { model, config } = loaded();
  const started = performance.now();
  const pixels = new Uint8Array(2 * r.a.length);
  pixels.set(r.a);
  pixels.set(r.b, r.a.length);
  // A class-conditional model's label moves with the latents, from A's one-hot to B's.
  const y = labelsOf(config, [r.labelA, r.labelB]);
  const { x, roundTrip } = await model.interpolateImages(dequantize(pixels, config.nBits, 'center'), r.steps, y,
    (done, total) => post({ id, type: 'progress', phase: done <= 2 ? 'encode' : 'decode', done, total }));
  return { pixels: quantize(x, config.nBits), roundTrip: report(roundTrip), ms: performance.now() - started };
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

