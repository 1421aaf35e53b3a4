// A model directory: glow.json (config, I/O description, format version, opset, provenance),
// encode.onnx and decode.onnx, and their external data files (encode.onnx.data,
// decode.onnx.data) when the weights are stored beside the graphs. Each .onnx also carries the
// config in its metadata.

import { Graph } from '../builder/graph.js';
import {
  chain, checkOpencvForms, classPriorPerPixel, cleanup, constantsWithoutBatchAxis, floorAsMax, floorAsRelu, padConvChannels, reduceSumAsMean, toFloat16, withoutTemperature,
} from '../builder/passes/index.js';
import { needsExternalData } from '../builder/external-data.js';
import { concatChunks, modelChunks, ModelInfo } from '../builder/serialize.js';
import { FORMAT_VERSION } from './contract.js';
import { GlowConfig } from './config.js';
import { buildDecode, buildEncode, BuildOptions, GlowWeights } from './model.js';
import { META_BATCH, META_DTYPE, META_TARGET } from './metadata.js';

export { FORMAT_VERSION };
export const PRODUCER = 'glow-onnx';
export const PRODUCER_VERSION = '0.1.0';

export const DTYPES = ['float32', 'float16'] as const;
export type ExportDType = (typeof DTYPES)[number];

/** 'onnxruntime' (default): the forms ONNX Runtime runs fastest. 'opencv': forms OpenCV's DNN
 * module (4.6) loads and runs (builder/passes/opencv.ts), with a static batch (1 unless given)
 * and no temperature input: decode's eps inputs come pre-scaled by the temperature. */
export const TARGETS = ['onnxruntime', 'opencv'] as const;
export type ExportTarget = (typeof TARGETS)[number];

export interface ExportOptions extends BuildOptions {
  /** The runtime the graphs are written for (see TARGETS). */
  target?: ExportTarget;
  /** Weights and compute precision. Graph inputs and outputs stay float32 either way; float16
   * graphs keep the log-det and log-likelihood sums in float32 (see passes/float16.ts). */
  dtype?: ExportDType;
  /** Initializers in a side file beside each graph: true always, false never, 'auto' (default)
   * when a graph would not fit in one ModelProto (2 GiB). */
  externalData?: boolean | 'auto';
  /** The size 'auto' compares with; default PROTOBUF_LIMIT (lower it only to test). */
  inlineLimit?: number;
  /** Zero input channels where ONNX Runtime's WebGPU provider computes a Conv wrongly in its
   * default layout (builder/passes/conv-channels.ts), so that the files are right whatever
   * options their user gives it. Default true; false only to measure what the padding costs. */
  webgpuConvPadding?: boolean;
  /** The affine coupling's scale floor as Max (builder/passes/floor.ts), the same outputs in
   * fewer, more widely supported ops. Default true; false writes the layer's Less + Where, only
   * to compare the two forms. */
  floorAsMax?: boolean;
}

export interface ModelFiles {
  'glow.json': string;
  'encode.onnx': Uint8Array;
  'decode.onnx': Uint8Array;
  'encode.onnx.data'?: Uint8Array;
  'decode.onnx.data'?: Uint8Array;
}

export interface GlowJson {
  formatVersion: number;
  producer: string;
  producerVersion: string;
  config: GlowConfig;
  opset: number;
  folded: boolean;
  /** Weights and compute precision (inputs and outputs are float32 either way). */
  dtype: ExportDType;
  /** Present when the graphs were written for a runtime other than ONNX Runtime. */
  target?: ExportTarget;
  /** The static batch size of every input and output; absent when the batch is dynamic. */
  batch?: number;
  /** Side file of each .onnx whose initializers are stored as external data. */
  externalData?: Record<string, string>;
  io: {
    encode: { inputs: Record<string, (number | string)[]>; outputs: Record<string, (number | string)[]> };
    decode: { inputs: Record<string, (number | string)[]>; outputs: Record<string, (number | string)[]> };
  };
  provenance: Record<string, string>;
}

function ioOf(graph: Graph): { inputs: Record<string, (number | string)[]>; outputs: Record<string, (number | string)[]> } {
  const shapes = (list: Graph['inputs']) => Object.fromEntries(list.map((io) => [io.value.name, [...(io.value.shape ?? [])]]));
  return { inputs: shapes(graph.inputs), outputs: shapes(graph.outputs) };
}

export type GraphKind = 'encode' | 'decode';

/** One graph as exported: built, its convolutions padded for WebGPU, converted to float16
 * compute when asked, with the export options in its metadata. */
export function exportGraph(w: GlowWeights, kind: GraphKind, exportOptions: ExportOptions = {}): Graph {
  const options = targetOptions(w, exportOptions);
  if (options.target === 'opencv') return opencvGraph(w, kind, options);
  const dtype = options.dtype ?? 'float32';
  if (!DTYPES.includes(dtype)) throw new Error(`dtype must be ${DTYPES.join(' or ')}, got ${dtype}`);
  // Float32 weights are stored compactly: an exported graph is only serialised. Not for float16,
  // whose weights are rounded once from the float64 values when serialised.
  const buildOptions = { ...options, compact: dtype === 'float32', ...(dtype === 'float16' ? { couplingLogDet: 'stable' as const } : {}) };
  const built = kind === 'encode' ? buildEncode(w, buildOptions) : buildDecode(w, buildOptions);
  const portable = options.floorAsMax === false ? built : cleanup(floorAsMax(built));
  const graph = options.webgpuConvPadding === false ? portable : padConvChannels(portable);
  const converted = dtype === 'float16' ? toFloat16(graph) : graph;
  const metadata = { ...converted.metadata, [META_DTYPE]: dtype, [META_BATCH]: String(options.batch ?? 'dynamic') };
  return { ...converted, metadata };
}

/** The options with the target's defaults filled in (a static batch for OpenCV); throws, saying
 * why, on what the target cannot run. */
export function targetOptions(w: GlowWeights, options: ExportOptions): ExportOptions {
  const target = options.target ?? 'onnxruntime';
  if (!TARGETS.includes(target)) throw new Error(`target must be ${TARGETS.join(' or ')}, got ${target}`);
  if (target !== 'opencv') return options;
  const refuse = (what: string) => new Error(`--target opencv: ${what}`);
  if (w.config.coupling === 'additive') {
    throw refuse('additive couplings are not supported: their log-det is a constant broadcast to the batch (Shape, Gather, Expand), ops OpenCV 4.6 lacks');
  }
  if ((options.dtype ?? 'float32') !== 'float32') throw refuse('float16 is not supported: OpenCV 4.6 rejects FLOAT16 tensors');
  if (options.temperature === 'per-example') throw refuse('a per-example temperature is not supported: scale each eps by its temperature instead');
  if (options.fold === false) throw refuse('unfolded graphs are not supported: their parameter arithmetic uses ops OpenCV 4.6 lacks');
  if (options.opset !== undefined && options.opset > 17) throw refuse(`opset ${options.opset}: OpenCV 4.6 needs ReduceMean's axes as an attribute (opset 17 or lower)`);
  return { ...options, batch: options.batch ?? 1 };
}

/** An OpenCV graph: built like the default one, minus the WebGPU padding, with the 'stable'
 * coupling log-det where there is no floor (the 'log' form needs Less and Where), then
 * rewritten by the OpenCV passes. */
function opencvGraph(w: GlowWeights, kind: GraphKind, options: ExportOptions): Graph {
  const buildOptions = { ...options, compact: true, ...(w.config.scaleFloor ? {} : { couplingLogDet: 'stable' as const }) };
  const built = kind === 'encode' ? buildEncode(w, buildOptions) : buildDecode(w, buildOptions);
  const passes = chain(floorAsMax, floorAsRelu, classPriorPerPixel, cleanup, reduceSumAsMean, constantsWithoutBatchAxis, withoutTemperature, cleanup, checkOpencvForms);
  const graph = passes(built);
  const metadata = { ...graph.metadata, [META_DTYPE]: 'float32', [META_BATCH]: String(options.batch), [META_TARGET]: 'opencv' };
  return { ...graph, metadata };
}

/** Both graphs as exported (see exportGraph); both are held at once, so exportModel and
 * exportModelToDirectory build them one after the other instead. */
export function exportGraphs(w: GlowWeights, options: ExportOptions = {}): { encode: Graph; decode: Graph } {
  return { encode: exportGraph(w, 'encode', options), decode: exportGraph(w, 'decode', options) };
}

/** One graph's bytes as chunks (see modelChunks), and its side file's when its initializers go
 * there (see ExportOptions). */
export function graphChunks(
  graph: Graph, info: ModelInfo, file: string, options: Pick<ExportOptions, 'externalData' | 'inlineLimit'> = {},
): { model: Iterable<Uint8Array>; data?: Iterable<Uint8Array>; location?: string } {
  const mode = options.externalData ?? 'auto';
  if (mode === true || (mode === 'auto' && needsExternalData(graph, options.inlineLimit))) {
    const location = `${file}.data`;
    return { ...modelChunks(graph, info, { location }), location };
  }
  if (mode === false && needsExternalData(graph, options.inlineLimit)) {
    throw new Error(`${file}: the weights do not fit in one ONNX file (2 GiB): export with external data`);
  }
  return modelChunks(graph, info);
}

/** One graph's bytes, and its side file's when its initializers go there (see ExportOptions). */
export function serializeGraph(
  graph: Graph, info: ModelInfo, file: string, options: Pick<ExportOptions, 'externalData' | 'inlineLimit'> = {},
): { model: Uint8Array; data?: Uint8Array; location?: string } {
  const { model, data, location } = graphChunks(graph, info, file, options);
  return { model: concatChunks(model), ...(data ? { data: concatChunks(data), location } : {}) };
}

export const MODEL_INFO: Readonly<ModelInfo> = { producerName: PRODUCER, producerVersion: PRODUCER_VERSION };

/** Receives each file of a model directory as it is made: a name and its bytes in chunks. */
export type FileSink = (name: keyof ModelFiles, chunks: Iterable<Uint8Array>) => void;

/** Builds one graph, serialises it and hands its files to `sink`. A function of its own so
 * that nothing of the graph stays referenced (a local of a loop body can) while the next is
 * built. */
function exportGraphFiles(w: GlowWeights, kind: GraphKind, options: ExportOptions, sink: FileSink): { io: GlowJson['io'][GraphKind]; opset: number; location?: string } {
  const graph = exportGraph(w, kind, options);
  const file = `${kind}.onnx` as const;
  const { model, data, location } = graphChunks(graph, { ...MODEL_INFO, docString: `Glow ${kind}` }, file, options);
  sink(file, model);
  if (data) sink(`${file}.data`, data);
  return { io: ioOf(graph), opset: graph.opset, location };
}

/** Builds, serialises and hands to `sink` one graph at a time (encode, then decode, then
 * glow.json), so that only one graph's weights are in memory at once. The sink must consume the
 * chunks before it returns. Returns glow.json's content. */
export function exportFiles(w: GlowWeights, exportOptions: ExportOptions, provenance: Record<string, string>, sink: FileSink): GlowJson {
  const options = targetOptions(w, exportOptions);
  const encode = exportGraphFiles(w, 'encode', options, sink);
  const decode = exportGraphFiles(w, 'decode', options, sink);
  const externalData: Record<string, string> = {};
  if (encode.location) externalData['encode.onnx'] = encode.location;
  if (decode.location) externalData['decode.onnx'] = decode.location;
  const json: GlowJson = {
    formatVersion: FORMAT_VERSION,
    producer: PRODUCER,
    producerVersion: PRODUCER_VERSION,
    config: w.config,
    opset: encode.opset,
    folded: options.fold ?? true,
    dtype: options.dtype ?? 'float32',
    ...(options.target && options.target !== 'onnxruntime' ? { target: options.target } : {}),
    ...(options.batch !== undefined ? { batch: options.batch } : {}),
    ...(Object.keys(externalData).length ? { externalData } : {}),
    io: { encode: encode.io, decode: decode.io },
    provenance,
  };
  sink('glow.json', [new TextEncoder().encode(`${JSON.stringify(json, null, 2)}\n`)]);
  return json;
}

/** Builds both graphs and the description in memory; nothing touches the disk here, so a
 * failure leaves no partial model directory. */
export function exportModel(w: GlowWeights, options: ExportOptions = {}, provenance: Record<string, string> = {}): ModelFiles {
  const bytes: Partial<Record<keyof ModelFiles, Uint8Array>> = {};
  exportFiles(w, options, provenance, (name, chunks) => (bytes[name] = concatChunks(chunks)));
  // In this key order, as callers list them.
  return {
    'glow.json': new TextDecoder().decode(bytes['glow.json']),
    'encode.onnx': bytes['encode.onnx']!,
    'decode.onnx': bytes['decode.onnx']!,
    ...(bytes['encode.onnx.data'] ? { 'encode.onnx.data': bytes['encode.onnx.data'] } : {}),
    ...(bytes['decode.onnx.data'] ? { 'decode.onnx.data': bytes['decode.onnx.data'] } : {}),
  };
}
