// A model directory: glow.json (config, I/O description, format version, opset, provenance),
// encode.onnx and decode.onnx, and their external data files (encode.onnx.data,
// decode.onnx.data) when the weights are stored beside the graphs. Each .onnx also carries the
// config in its metadata.

import { Graph } from '../builder/graph.js';
import { toFloat16 } from '../builder/passes/index.js';
import { ModelInfo, needsExternalData, serializeModel, serializeModelWithExternalData } from '../builder/serialize.js';
import { GlowConfig, latentShape } from './config.js';
import { buildDecode, buildEncode, BuildOptions, GlowWeights } from './model.js';

export const FORMAT_VERSION = 1;
export const PRODUCER = 'glow-onnx';
export const PRODUCER_VERSION = '0.1.0';

export const DTYPES = ['float32', 'float16'] as const;
export type ExportDType = (typeof DTYPES)[number];

export interface ExportOptions extends BuildOptions {
  /** Weights and compute precision. Graph inputs and outputs stay float32 either way; float16
   * graphs keep the log-det and log-likelihood sums in float32 (see passes/float16.ts). */
  dtype?: ExportDType;
  /** Initializers in a side file beside each graph: true always, false never, 'auto' (default)
   * when a graph would not fit in one ModelProto (2 GiB). */
  externalData?: boolean | 'auto';
  /** The size 'auto' compares with; default PROTOBUF_LIMIT (lower it only to test). */
  inlineLimit?: number;
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

/** The encode and decode graphs as exported: built, converted to float16 compute when asked,
 * with the export options in their metadata. */
export function exportGraphs(w: GlowWeights, options: ExportOptions = {}): { encode: Graph; decode: Graph } {
  const dtype = options.dtype ?? 'float32';
  if (!DTYPES.includes(dtype)) throw new Error(`dtype must be ${DTYPES.join(' or ')}, got ${dtype}`);
  const finish = (graph: Graph): Graph => {
    const converted = dtype === 'float16' ? toFloat16(graph) : graph;
    const metadata = { ...converted.metadata, 'glow_onnx.dtype': dtype, 'glow_onnx.batch': String(options.batch ?? 'dynamic') };
    return { ...converted, metadata };
  };
  return { encode: finish(buildEncode(w, options)), decode: finish(buildDecode(w, options)) };
}

/** One graph's bytes, and its side file's when its initializers go there (see ExportOptions). */
export function serializeGraph(
  graph: Graph, info: ModelInfo, file: string, options: Pick<ExportOptions, 'externalData' | 'inlineLimit'> = {},
): { model: Uint8Array; data?: Uint8Array; location?: string } {
  const mode = options.externalData ?? 'auto';
  if (mode === true || (mode === 'auto' && needsExternalData(graph, options.inlineLimit))) {
    const location = `${file}.data`;
    return { ...serializeModelWithExternalData(graph, info, { location }), location };
  }
  if (mode === false && needsExternalData(graph, options.inlineLimit)) {
    throw new Error(`${file}: the weights do not fit in one ONNX file (2 GiB): export with external data`);
  }
  return { model: serializeModel(graph, info) };
}

export const MODEL_INFO: Readonly<ModelInfo> = { producerName: PRODUCER, producerVersion: PRODUCER_VERSION };

/** Builds both graphs and the description in memory; nothing touches the disk here, so a
 * failure leaves no partial model directory. */
export function exportModel(w: GlowWeights, options: ExportOptions = {}, provenance: Record<string, string> = {}): ModelFiles {
  const { encode, decode } = exportGraphs(w, options);
  const enc = serializeGraph(encode, { ...MODEL_INFO, docString: 'Glow encode' }, 'encode.onnx', options);
  const dec = serializeGraph(decode, { ...MODEL_INFO, docString: 'Glow decode' }, 'decode.onnx', options);
  const externalData: Record<string, string> = {};
  if (enc.location) externalData['encode.onnx'] = enc.location;
  if (dec.location) externalData['decode.onnx'] = dec.location;
  const json: GlowJson = {
    formatVersion: FORMAT_VERSION,
    producer: PRODUCER,
    producerVersion: PRODUCER_VERSION,
    config: w.config,
    opset: encode.opset,
    folded: options.fold ?? true,
    dtype: options.dtype ?? 'float32',
    ...(options.batch !== undefined ? { batch: options.batch } : {}),
    ...(Object.keys(externalData).length ? { externalData } : {}),
    io: { encode: ioOf(encode), decode: ioOf(decode) },
    provenance,
  };
  return {
    'glow.json': `${JSON.stringify(json, null, 2)}\n`,
    'encode.onnx': enc.model,
    'decode.onnx': dec.model,
    ...(enc.data ? { 'encode.onnx.data': enc.data } : {}),
    ...(dec.data ? { 'decode.onnx.data': dec.data } : {}),
  };
}

export function latentShapes(config: GlowConfig): [number, number, number][] {
  return Array.from({ length: config.L }, (_, i) => latentShape(config, i + 1));
}
