// A model folder on onnxruntime-web: fetched by URL or taken from the user's files, checked
// against the model contract, and opened on WebGPU when this browser can run it there, on wasm
// otherwise. Browser-only: nothing here may import a node: module (test/web/entry.test.ts).

import * as ort from 'onnxruntime-web';
import { GlowConfig } from '../glow/config.js';
import { checkGraphPorts, GRAPH_FILES, GraphFile, messageOf, ModelDescription, ModelFileError, parseGlowJson } from '../glow/contract.js';
import { GlowModel } from '../runtime/core.js';
import { sessionOptions } from '../runtime/session-options.js';

export type Backend = 'webgpu' | 'wasm';
export type BackendChoice = 'auto' | Backend;

/** One file of a model folder: its bytes, a File or Blob, or (glow.json only) its text. */
export type ModelFileData = ArrayBuffer | Uint8Array | Blob | string;

/**
 * Where a model comes from: the URL of its folder (relative URLs resolve against the page; the
 * folder holds glow.json, encode.onnx, decode.onnx and any external data glow.json names), the
 * files a user picked (an <input type=file multiple>'s FileList or array), or the files by name.
 */
export type ModelSource = string | URL | ArrayLike<File> | Readonly<Record<string, ModelFileData>>;

export type LoadPhase = 'download' | 'init';

export interface LoadOptions {
  /** 'auto' (default): WebGPU when this browser can run the model there, else wasm. */
  backend?: BackendChoice;
  /** Rows per run; long runs report progress batch by batch. Default 16. A model exported with
   * a static batch runs in batches of that size whatever this says. */
  batchSize?: number;
  /** Bytes downloaded so far of all files (total 0 while unknown), then session creation. */
  onProgress?: (phase: LoadPhase, done: number, total: number, what?: string) => void;
}

export interface LoadedModel {
  model: GlowModel;
  config: GlowConfig;
  /** Weights and compute precision from glow.json; inputs and outputs are float32 either way. */
  dtype: string;
  backend: Backend;
  /** Why the backend is not the preferred one (auto falling back to wasm). */
  note?: string;
}

const DEFAULT_BATCH = 16;

async function fetchBytes(url: string, what: string, onBytes: (delta: number, total: number) => void): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new ModelFileError(`cannot fetch ${what} from ${url}: ${messageOf(e)} (is the URL right, and does its server allow cross-origin requests?)`);
  }
  if (!response.ok) throw new ModelFileError(`cannot load ${what} from ${url}: HTTP ${response.status} ${response.statusText}`.trim());
  const total = Number(response.headers.get('content-length') ?? 0);
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    onBytes(bytes.length, bytes.length);
    return bytes;
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    onBytes(value.length, total);
  }
  return new Uint8Array(await new Blob(chunks).arrayBuffer());
}

/** A graph's bytes and, when its initializers are stored beside it, that side file. */
interface GraphBytes {
  model: Uint8Array;
  externalData?: { path: string; data: Uint8Array };
}

interface ReadModel {
  description: ModelDescription;
  graphs: [GraphBytes, GraphBytes];
}

function folderUrl(source: string | URL): string {
  const base = typeof globalThis.location === 'undefined' ? undefined : globalThis.location.href;
  const url = new URL(source, base);
  // A folder: its files resolve under it, not beside it.
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url.href;
}

async function readUrl(source: string | URL, options: LoadOptions): Promise<ReadModel> {
  const base = folderUrl(source);
  const url = (file: string) => new URL(file, base).href;
  const jsonBytes = await fetchBytes(url('glow.json'), 'glow.json', () => {});
  const description = parseGlowJson(new TextDecoder().decode(jsonBytes), url('glow.json'));
  // Every file downloads at once; their sizes add up as their headers arrive.
  const files = [...GRAPH_FILES, ...GRAPH_FILES.map((g) => description.externalData[g]).filter((f): f is string => !!f)];
  const totals = files.map(() => 0);
  const loaded = files.map(() => 0);
  const what = files.join(' + ');
  const report = (i: number) => (delta: number, total: number) => {
    loaded[i] += delta;
    totals[i] = total;
    const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
    options.onProgress?.('download', sum(loaded), totals.every((t) => t > 0) ? sum(totals) : 0, what);
  };
  const bytes = await Promise.all(files.map((f, i) => fetchBytes(url(f), f, report(i))));
  const byName = new Map(files.map((f, i) => [f, bytes[i]]));
  const graph = (g: GraphFile): GraphBytes => {
    const side = description.externalData[g];
    return { model: byName.get(g)!, ...(side ? { externalData: { path: side, data: byName.get(side)! } } : {}) };
  };
  return { description, graphs: [graph('encode.onnx'), graph('decode.onnx')] };
}

async function bytesOf(data: ModelFileData): Promise<Uint8Array> {
  if (typeof data === 'string') return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(await data.arrayBuffer());
}

async function readFiles(source: ArrayLike<File> | Readonly<Record<string, ModelFileData>>): Promise<ReadModel> {
  const byName: Record<string, ModelFileData> = isFileList(source) ? Object.fromEntries(Array.from(source, (f) => [f.name, f])) : source;
  const missing = ['glow.json', ...GRAPH_FILES].filter((f) => !(f in byName));
  if (missing.length) throw new ModelFileError(`a model needs glow.json, encode.onnx and decode.onnx together; missing: ${missing.join(', ')}`);
  const description = parseGlowJson(new TextDecoder().decode(await bytesOf(byName['glow.json'])), 'glow.json');
  const graph = async (g: GraphFile): Promise<GraphBytes> => {
    const side = description.externalData[g];
    if (side && !(side in byName)) throw new ModelFileError(`glow.json says ${g} keeps its weights in ${side}: pick that file too`);
    return { model: await bytesOf(byName[g]), ...(side ? { externalData: { path: side, data: await bytesOf(byName[side]) } } : {}) };
  };
  return { description, graphs: [await graph('encode.onnx'), await graph('decode.onnx')] };
}

function isFileList(source: object): source is ArrayLike<File> {
  return typeof (source as ArrayLike<File>).length === 'number' && !('glow.json' in source);
}

async function createSessions([encode, decode]: [GraphBytes, GraphBytes], backend: Backend): Promise<[ort.InferenceSession, ort.InferenceSession]> {
  const options = (g: GraphBytes) => sessionOptions(backend, { quiet: true, externalData: g.externalData && [g.externalData] });
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
export async function webgpuProblem(dtype: string): Promise<string | undefined> {
  type Adapter = { features: { has(name: string): boolean } };
  const gpu = (globalThis.navigator as unknown as { gpu?: { requestAdapter(): Promise<Adapter | null> } } | undefined)?.gpu;
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

/** The model's sessions on the chosen backend: WebGPU first unless wasm is asked for, wasm when
 * WebGPU cannot run it (unless WebGPU was asked for: then its reason is the error). */
async function openSessions(graphs: [GraphBytes, GraphBytes], dtype: string, choice: BackendChoice) {
  let note: string | undefined;
  if (choice !== 'wasm') {
    const problem = await webgpuProblem(dtype);
    if (problem && choice === 'webgpu') throw new Error(`backend=webgpu was requested, but ${problem}`);
    if (!problem) {
      try {
        return { sessions: await createSessions(graphs, 'webgpu'), backend: 'webgpu' as const };
      } catch (e) {
        if (choice === 'webgpu') throw new Error(`WebGPU could not run the model: ${messageOf(e)}`);
        note = `WebGPU could not run the model (${messageOf(e)}); using wasm`;
      }
    } else {
      note = `${problem}; using wasm`;
    }
  }
  try {
    return { sessions: await createSessions(graphs, 'wasm'), backend: 'wasm' as const, note };
  } catch (e) {
    throw new Error(`onnxruntime-web could not open ${messageOf(e)}`);
  }
}

/** Loads a model folder into a GlowModel on onnxruntime-web. Every failure is one line that
 * names the file at fault. */
export async function loadGlowModel(source: ModelSource, options: LoadOptions = {}): Promise<LoadedModel> {
  if (!['auto', 'webgpu', 'wasm', undefined].includes(options.backend)) {
    throw new Error(`backend must be auto, webgpu or wasm, got ${JSON.stringify(options.backend)}`);
  }
  const { description, graphs } = typeof source === 'string' || source instanceof URL ? await readUrl(source, options) : await readFiles(source);
  const { config, dtype, batch } = description;
  options.onProgress?.('init', 0, 0, 'creating sessions');
  const { sessions, backend, note } = await openSessions(graphs, dtype, options.backend ?? 'auto');
  try {
    GRAPH_FILES.forEach((file, i) => {
      const kind = i === 0 ? 'encode' : 'decode';
      const ports = (names: readonly string[]) => names.map((name) => ({ name }));
      checkGraphPorts(config, kind, file, ports(sessions[i].inputNames), ports(sessions[i].outputNames));
    });
  } catch (e) {
    await Promise.all(sessions.map((s) => s.release()));
    throw e;
  }
  const model = new GlowModel(config, sessions[0], sessions[1], ort, batch ?? options.batchSize ?? DEFAULT_BATCH, batch !== undefined, dtype);
  return { model, config, dtype, backend, ...(note ? { note } : {}) };
}
