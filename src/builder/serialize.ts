// Graph -> ModelProto bytes through onnx-proto (protobufjs). Tensors are written as
// little-endian raw_data, attributes and metadata in a fixed order, so the same graph always
// gives the same bytes. modelChunks streams them (one initializer's data converted at a time),
// with the big initializers in a side file when asked (external-data.ts). The way back is
// parse.ts.

import onnxProto from 'onnx-proto';
import { ExternalDataOptions, externalLayout, externalTensorProto } from './external-data.js';
import { Attribute, Graph, GraphIO, ONNX_TYPE, Tensor, Value } from './graph.js';
import { tensorByteLength, tensorBytes } from './tensor-bytes.js';

const { onnx } = onnxProto;

export interface ModelInfo {
  producerName?: string;
  producerVersion?: string;
  modelVersion?: number;
  docString?: string;
}

/** The lowest IR version that carries each opset (onnx's versioning table). */
export function irVersionFor(opset: number): number {
  if (opset <= 13) return 7;
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  return 10;
}

// ---------------------------------------------------------------- tensors, attributes, value infos

function toTensorProto(name: string, t: Tensor): onnxProto.onnx.ITensorProto {
  return { name, dims: t.shape, dataType: ONNX_TYPE[t.dtype], rawData: tensorBytes(t) };
}

const A = onnx.AttributeProto.AttributeType;

function toAttributeProto(name: string, a: Attribute): onnxProto.onnx.IAttributeProto {
  switch (a.kind) {
    case 'int': return { name, type: A.INT, i: a.value };
    case 'float': return { name, type: A.FLOAT, f: a.value };
    case 'string': return { name, type: A.STRING, s: new TextEncoder().encode(a.value) };
    case 'ints': return { name, type: A.INTS, ints: a.value };
    case 'floats': return { name, type: A.FLOATS, floats: a.value };
    case 'tensor': return { name, type: A.TENSOR, t: toTensorProto('', a.value) };
  }
}

function toValueInfo(io: GraphIO | { value: Value; doc?: string }): onnxProto.onnx.IValueInfoProto {
  const v = io.value;
  const dims = v.shape?.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return {
    name: v.name,
    type: { tensorType: { elemType: ONNX_TYPE[v.dtype], shape: dims ? { dim: dims } : undefined } },
    docString: io.doc,
  };
}

// ---------------------------------------------------------------- model

/** The ModelProto with every initializer in it (inline, or as a reference into the side file). */
function buildModelProto(graph: Graph, info: ModelInfo, external?: ExternalDataOptions): onnxProto.onnx.ModelProto {
  const layout = external ? externalLayout(graph, external) : new Map();
  const initializers = [...graph.initializers].map(([v, t]) => {
    const place = layout.get(v);
    return place ? externalTensorProto(v.name, t, external!.location, place) : toTensorProto(v.name, t);
  });
  return modelProto(graph, info, initializers);
}

export function toModelProto(graph: Graph, info: ModelInfo = {}): onnxProto.onnx.ModelProto {
  return buildModelProto(graph, info);
}

function modelProto(graph: Graph, info: ModelInfo, initializers: onnxProto.onnx.ITensorProto[]): onnxProto.onnx.ModelProto {
  return onnx.ModelProto.create({ ...modelFields(info, graph), graph: graphProto(graph, initializers), ...modelTailFields(graph) });
}

// ModelProto and GraphProto fields, split around the ones that hold the initializers, so that
// modelChunks can write each part separately (protobuf writes fields in field-number order).

/** ModelProto fields 1 to 6, before the graph (7). */
function modelFields(info: ModelInfo, graph: Graph): onnxProto.onnx.IModelProto {
  return {
    irVersion: irVersionFor(graph.opset),
    producerName: info.producerName ?? 'glow-onnx',
    producerVersion: info.producerVersion ?? '',
    modelVersion: info.modelVersion ?? 1,
    docString: info.docString ?? '',
  };
}

/** ModelProto fields after the graph: opset_import (8), metadata_props (14). */
function modelTailFields(graph: Graph): onnxProto.onnx.IModelProto {
  return {
    opsetImport: [{ domain: '', version: graph.opset }],
    metadataProps: Object.keys(graph.metadata).sort().map((key) => ({ key, value: graph.metadata[key] })),
  };
}

/** GraphProto fields before the initializers (5): node (1), name (2). */
function graphHeadFields(graph: Graph): onnxProto.onnx.IGraphProto {
  const nodes = graph.nodes.map((n) => ({
    name: n.name,
    opType: n.op,
    domain: n.domain,
    input: n.inputs.map((v) => v?.name ?? ''),
    output: n.outputs.map((v) => v.name),
    attribute: Object.keys(n.attributes).sort().map((k) => toAttributeProto(k, n.attributes[k])),
  }));
  return { node: nodes, name: graph.name };
}

/** GraphProto fields after the initializers: doc_string (10), input, output, value_info (11-13). */
function graphTailFields(graph: Graph): onnxProto.onnx.IGraphProto {
  const outputNames = new Set(graph.outputs.map((io) => io.value.name));
  return {
    docString: graph.docString ?? '',
    input: graph.inputs.map(toValueInfo),
    output: graph.outputs.map(toValueInfo),
    // Intermediate types let onnx's strict shape inference check the builder's own inference.
    valueInfo: graph.nodes.flatMap((n) => n.outputs)
      .filter((v) => !outputNames.has(v.name) && v.shape)
      .map((value) => toValueInfo({ value })),
  };
}

function graphProto(graph: Graph, initializers: onnxProto.onnx.ITensorProto[]): onnxProto.onnx.IGraphProto {
  return { ...graphHeadFields(graph), initializer: initializers, ...graphTailFields(graph) };
}

// ---------------------------------------------------------------- streaming

function varint(n: number): number[] {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 0x80)) out.push((n % 0x80) | 0x80);
  out.push(n);
  return out;
}

/** The key and length of a length-delimited protobuf field. */
function fieldHeader(field: number, length: number): Uint8Array {
  return Uint8Array.from([...varint(field * 8 + 2), ...varint(length)]);
}

const MODEL_GRAPH_FIELD = 7;
const GRAPH_INITIALIZER_FIELD = 5;
const TENSOR_RAW_DATA_FIELD = 9;

/** A model's bytes as a sequence of chunks, and its side file's when `external` is given. The
 * chunks concatenate to exactly the bytes protobufjs encodes for the whole ModelProto
 * (toModelProto), but at most one initializer's data is converted at a time, so a model can be
 * written to disk without ever holding all its weights as bytes. Iterate each at most once, and
 * do not change the graph meanwhile. */
export function modelChunks(graph: Graph, info: ModelInfo = {}, external?: ExternalDataOptions): { model: Iterable<Uint8Array>; data?: Iterable<Uint8Array> } {
  const layout = external ? externalLayout(graph, external) : new Map<Value, { offset: number; length: number }>();
  // An initializer is field 5 of the GraphProto: key, length, TensorProto. An inline TensorProto
  // is its small fields (dims 1, data_type 2, name 8) followed by raw_data (9), the last field
  // set, so its length is known without converting the data.
  const initializerParts = [...graph.initializers].map(([v, t]) => {
    const place = layout.get(v);
    if (place) return { head: onnx.TensorProto.encode(externalTensorProto(v.name, t, external!.location, place)).finish(), t: undefined };
    const fields = onnx.TensorProto.encode({ name: v.name, dims: t.shape, dataType: ONNX_TYPE[t.dtype] }).finish();
    const length = tensorByteLength(t);
    return { head: Uint8Array.from([...fields, ...fieldHeader(TENSOR_RAW_DATA_FIELD, length)]), t, length };
  });
  const tensorLength = (p: (typeof initializerParts)[number]) => p.head.length + (p.t ? p.length! : 0);
  const graphHead = onnx.GraphProto.encode(graphHeadFields(graph)).finish();
  const graphTail = onnx.GraphProto.encode(graphTailFields(graph)).finish();
  let graphLength = graphHead.length + graphTail.length;
  for (const p of initializerParts) graphLength += fieldHeader(GRAPH_INITIALIZER_FIELD, tensorLength(p)).length + tensorLength(p);

  function* model(): Generator<Uint8Array> {
    yield onnx.ModelProto.encode(modelFields(info, graph)).finish();
    yield fieldHeader(MODEL_GRAPH_FIELD, graphLength);
    yield graphHead;
    for (const p of initializerParts) {
      yield fieldHeader(GRAPH_INITIALIZER_FIELD, tensorLength(p));
      yield p.head;
      if (p.t) yield tensorBytes(p.t);
    }
    yield graphTail;
    yield onnx.ModelProto.encode(modelTailFields(graph)).finish();
  }
  function* data(): Generator<Uint8Array> {
    let end = 0;
    for (const [v, t] of graph.initializers) {
      const place = layout.get(v);
      if (!place) continue;
      if (place.offset > end) yield new Uint8Array(place.offset - end);
      yield tensorBytes(t);
      end = place.offset + place.length;
    }
  }
  return { model: model(), ...(external ? { data: data() } : {}) };
}

/** The chunks joined into one array. */
export function concatChunks(chunks: Iterable<Uint8Array>): Uint8Array {
  const list = [...chunks];
  const out = new Uint8Array(list.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of list) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

export function serializeModel(graph: Graph, info: ModelInfo = {}): Uint8Array {
  return concatChunks(modelChunks(graph, info).model);
}

/** The model with its big initializers in a side file, to be written as external.location
 * beside the model file. */
export function serializeModelWithExternalData(graph: Graph, info: ModelInfo, external: ExternalDataOptions): { model: Uint8Array; data: Uint8Array } {
  const chunks = modelChunks(graph, info, external);
  return { model: concatChunks(chunks.model), data: concatChunks(chunks.data!) };
}
