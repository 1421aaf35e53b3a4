// A model directory: glow.json (config, I/O description, format version, opset, provenance),
// encode.onnx and decode.onnx. Each .onnx also carries the config in its metadata.

import { Graph } from '../builder/graph.js';
import { serializeModel } from '../builder/serialize.js';
import { GlowConfig, latentShape } from './config.js';
import { buildDecode, buildEncode, BuildOptions, GlowWeights } from './model.js';

export const FORMAT_VERSION = 1;
export const PRODUCER = 'glow-onnx';
export const PRODUCER_VERSION = '0.1.0';

export interface ModelFiles {
  'glow.json': string;
  'encode.onnx': Uint8Array;
  'decode.onnx': Uint8Array;
}

export interface GlowJson {
  formatVersion: number;
  producer: string;
  producerVersion: string;
  config: GlowConfig;
  opset: number;
  folded: boolean;
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

/** Builds both graphs and the description in memory; nothing touches the disk here, so a
 * failure leaves no partial model directory. */
export function exportModel(w: GlowWeights, options: BuildOptions = {}, provenance: Record<string, string> = {}): ModelFiles {
  const encode = buildEncode(w, options);
  const decode = buildDecode(w, options);
  const info = { producerName: PRODUCER, producerVersion: PRODUCER_VERSION };
  const json: GlowJson = {
    formatVersion: FORMAT_VERSION,
    producer: PRODUCER,
    producerVersion: PRODUCER_VERSION,
    config: w.config,
    opset: encode.opset,
    folded: options.fold ?? true,
    io: { encode: ioOf(encode), decode: ioOf(decode) },
    provenance,
  };
  return {
    'glow.json': `${JSON.stringify(json, null, 2)}\n`,
    'encode.onnx': serializeModel(encode, { ...info, docString: 'Glow encode' }),
    'decode.onnx': serializeModel(decode, { ...info, docString: 'Glow decode' }),
  };
}

export function latentShapes(config: GlowConfig): [number, number, number][] {
  return Array.from({ length: config.L }, (_, i) => latentShape(config, i + 1));
}
