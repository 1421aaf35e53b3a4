// Graph <-> ModelProto bytes through onnx-proto (protobufjs). Tensors are written as
// little-endian raw_data, attributes and metadata in a fixed order, so the same graph always
// gives the same bytes. Initializers can also go to a side file (ONNX external data): the
// model then holds each tensor's location, offset and length, and stays small whatever the
// size of the weights (a ModelProto cannot pass protobuf's 2 GiB).

import onnxProto from 'onnx-proto';
import { float16Bits, float16Value } from '../math/half-precision.js';
import { Attribute, Dim, dtypeOfCode, Graph, GraphIO, Node, ONNX_TYPE, Tensor, Value } from './graph.js';
import { size } from '../math/tensor.js';

export { float16Bits, float16Value };

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


export class OnnxFormatError extends Error {
  override name = 'OnnxFormatError';

  /** Names read from a damaged file can hold any byte: control characters are written as
   * escapes, so the message stays one line. */
  constructor(message: string) {
    super(message.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  }
}

// ---------------------------------------------------------------- tensors

export function tensorBytes(t: Tensor): Uint8Array {
  const n = t.data.length;
  switch (t.dtype) {
    case 'float32':
      // Compactly stored data is already these bytes: a view, not a copy (the writers consume it
      // before anything could change the tensor).
      if (t.data instanceof Float32Array) return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      return new Uint8Array(Float32Array.from(t.data).buffer);
    case 'float64':
      return new Uint8Array(Float64Array.from(t.data).buffer);
    case 'float16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = float16Bits(t.data[i]);
      return new Uint8Array(out.buffer);
    }
    case 'int64': {
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) out[i] = BigInt(t.data[i]);
      return new Uint8Array(out.buffer);
    }
    case 'int32':
      return new Uint8Array(Int32Array.from(t.data).buffer);
    case 'bool':
      return Uint8Array.from(t.data, (v) => (v ? 1 : 0));
  }
}

function toTensorProto(name: string, t: Tensor): onnxProto.onnx.ITensorProto {
  return { name, dims: t.shape, dataType: ONNX_TYPE[t.dtype], rawData: tensorBytes(t) };
}

const ITEM_SIZE: Readonly<Record<Tensor['dtype'], number>> = { float32: 4, float64: 8, float16: 2, int64: 8, int32: 4, bool: 1 };

/** Bytes of a tensor's raw data. */
export function tensorByteLength(t: Tensor): number {
  return t.data.length * ITEM_SIZE[t.dtype];
}

/** The size a ModelProto cannot reach: protobuf messages are limited to 2 GiB - 1. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;
/** Room kept below PROTOBUF_LIMIT for everything but the initializers' data (nodes, value_info,
 * names, metadata: a few megabytes even for very deep models). */
const STRUCTURE_HEADROOM = 64 * 2 ** 20;

/** Whether the graph's initializers are too big for one ModelProto (limit: for tests). */
export function needsExternalData(graph: Graph, limit = PROTOBUF_LIMIT): boolean {
  let bytes = 0;
  for (const t of graph.initializers.values()) bytes += tensorByteLength(t);
  return bytes > limit - STRUCTURE_HEADROOM;
}

export interface ExternalDataOptions {
  /** The side file's name, relative to the model file's directory: e.g. 'encode.onnx.data'. */
  location: string;
  /** Initializers of fewer bytes stay inside the model (default 1024, as onnx's own converter). */
  sizeThreshold?: number;
}

/** Offsets are multiples of 64 bytes (SIMD loads); tensors of 1 MiB or more start on a 64 KiB
 * boundary, the mmap granularity of every platform, so that runtimes can map them in place. */
const ALIGN = 64;
const LARGE_TENSOR = 2 ** 20;
const LARGE_ALIGN = 2 ** 16;

function checkLocation(location: string, where: string): void {
  const parts = location.split(/[\\/]/);
  if (location === '' || location.includes('\0') || /^([\\/]|[A-Za-z]:)/.test(location) || parts.some((p) => p === '..' || p === '')) {
    throw new OnnxFormatError(`${where}: external data location ${JSON.stringify(location)} must be a relative path inside the model's directory`);
  }
}

function numbersOf(list: unknown[] | null | undefined): number[] {
  return (list ?? []).map((v) => Number(v));
}

/** The side files of a model with external data: their bytes by location, or a function that
 * reads one (e.g. from the model's directory). */
export type ExternalDataSource = Readonly<Record<string, Uint8Array>> | ((location: string) => Uint8Array);

/** The raw bytes of an external tensor: checked location, offset and length. */
function externalBytes(p: onnxProto.onnx.ITensorProto, byteLength: number, where: string, source: ExternalDataSource | undefined): Uint8Array {
  const entries = new Map((p.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = entries.get('location');
  if (location === undefined) throw new OnnxFormatError(`${where}: external tensor ${p.name} names no location`);
  checkLocation(location, where);
  const offsetOf = (key: string): number | undefined => {
    const text = entries.get(key);
    if (text === undefined) return undefined;
    const v = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(v)) throw new OnnxFormatError(`${where}: external tensor ${p.name} has invalid ${key} ${JSON.stringify(text)}`);
    return v;
  };
  const offset = offsetOf('offset') ?? 0;
  const length = offsetOf('length') ?? byteLength;
  if (length !== byteLength) {
    throw new OnnxFormatError(`${where}: external tensor ${p.name} has length ${length}, its shape needs ${byteLength} bytes`);
  }
  if (!source) {
    throw new OnnxFormatError(`${where}: tensor ${p.name} is stored in the external file ${location}: give its bytes or the model's directory`);
  }
  let file: Uint8Array;
  if (typeof source === 'function') {
    file = source(location);
  } else {
    if (!Object.hasOwn(source, location)) throw new OnnxFormatError(`${where}: tensor ${p.name} is stored in ${location}, which was not given`);
    file = source[location];
  }
  if (offset + length > file.length) {
    throw new OnnxFormatError(`${where}: external tensor ${p.name} reads bytes ${offset} to ${offset + length} of ${location}, which has ${file.length}`);
  }
  return file.subarray(offset, offset + length);
}

export function fromTensorProto(p: onnxProto.onnx.ITensorProto, where: string, external?: ExternalDataSource): Tensor {
  const dtype = dtypeOfCode(p.dataType ?? 0);
  if (!dtype) throw new OnnxFormatError(`${where}: tensor ${p.name} has unsupported data type ${p.dataType}`);
  const shape = numbersOf(p.dims);
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new OnnxFormatError(`${where}: tensor ${p.name} has invalid dims [${shape.join(', ')}]`);
  }
  const n = size(shape);
  const itemSize = ITEM_SIZE[dtype];
  if (!Number.isSafeInteger(n * itemSize)) throw new OnnxFormatError(`${where}: tensor ${p.name} has invalid dims [${shape.join(', ')}]`);
  const raw = p.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL ? externalBytes(p, n * itemSize, where, external) : p.rawData;
  const stored = raw && raw.length > 0 ? raw.length / itemSize : [p.floatData, p.doubleData, p.int64Data, p.int32Data].reduce((m, l) => Math.max(m, l?.length ?? 0), 0);
  // Checked before allocating, so a corrupt shape cannot ask for gigabytes.
  if (n !== stored) {
    throw new OnnxFormatError(`${where}: tensor ${p.name} holds ${stored} values, its shape [${shape.join(', ')}] needs ${n}`);
  }
  const data = new Float64Array(n);
  if (raw && raw.length > 0) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < n; i++) {
      switch (dtype) {
        case 'float32': data[i] = view.getFloat32(4 * i, true); break;
        case 'float64': data[i] = view.getFloat64(8 * i, true); break;
        case 'float16': data[i] = float16Value(view.getUint16(2 * i, true)); break;
        case 'int64': data[i] = Number(view.getBigInt64(8 * i, true)); break;
        case 'int32': data[i] = view.getInt32(4 * i, true); break;
        case 'bool': data[i] = view.getUint8(i); break;
      }
    }
  } else {
    const typed = dtype === 'float32' ? p.floatData : dtype === 'float64' ? p.doubleData
      : dtype === 'int64' ? p.int64Data : p.int32Data;
    const values = numbersOf(typed as unknown[]);
    if (values.length !== n) {
      throw new OnnxFormatError(`${where}: tensor ${p.name} has ${values.length} values, shape [${shape}] needs ${n}`);
    }
    if (dtype === 'float16') for (let i = 0; i < n; i++) data[i] = float16Value(values[i]);
    else data.set(values);
  }
  return { dtype, shape, data };
}

// ---------------------------------------------------------------- attributes

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

function fromAttributeProto(p: onnxProto.onnx.IAttributeProto, where: string): Attribute {
  switch (p.type) {
    case A.INT: return { kind: 'int', value: Number(p.i) };
    case A.FLOAT: return { kind: 'float', value: p.f ?? 0 };
    case A.STRING: return { kind: 'string', value: new TextDecoder().decode(p.s ?? new Uint8Array()) };
    case A.INTS: return { kind: 'ints', value: numbersOf(p.ints) };
    case A.FLOATS: return { kind: 'floats', value: numbersOf(p.floats) };
    case A.TENSOR:
      if (!p.t) throw new OnnxFormatError(`${where}: tensor attribute ${p.name} holds no tensor`);
      return { kind: 'tensor', value: fromTensorProto(p.t, where) };
    default: throw new OnnxFormatError(`${where}: attribute ${p.name} has unsupported type ${p.type}`);
  }
}

// ---------------------------------------------------------------- value infos

function toValueInfo(io: GraphIO | { value: Value; doc?: string }): onnxProto.onnx.IValueInfoProto {
  const v = io.value;
  const dims = v.shape?.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return {
    name: v.name,
    type: { tensorType: { elemType: ONNX_TYPE[v.dtype], shape: dims ? { dim: dims } : undefined } },
    docString: io.doc,
  };
}

function fromValueInfo(p: onnxProto.onnx.IValueInfoProto, where: string): GraphIO {
  const tt = p.type?.tensorType;
  const dtype = dtypeOfCode(tt?.elemType ?? 0);
  if (!dtype) throw new OnnxFormatError(`${where}: value ${p.name} is not a tensor of a supported type`);
  const shape: Dim[] | undefined = tt?.shape
    ? (tt.shape.dim ?? []).map((d) => (d.dimParam ? d.dimParam : d.dimValue != null ? Number(d.dimValue) : '?'))
    : undefined;
  return { value: new Value(p.name ?? '', dtype, shape), doc: p.docString || undefined };
}

// ---------------------------------------------------------------- model

/** Where each initializer of at least sizeThreshold bytes lies in the side file, in graph order. */
function externalLayout(graph: Graph, external: ExternalDataOptions): Map<Value, { offset: number; length: number }> {
  checkLocation(external.location, 'external data');
  const threshold = external.sizeThreshold ?? 1024;
  const placed = new Map<Value, { offset: number; length: number }>();
  let end = 0;
  for (const [v, t] of graph.initializers) {
    const length = tensorByteLength(t);
    if (length < threshold) continue;
    const align = length >= LARGE_TENSOR ? LARGE_ALIGN : ALIGN;
    const offset = Math.ceil(end / align) * align;
    end = offset + length;
    placed.set(v, { offset, length });
  }
  return placed;
}

/** An initializer stored in the side file: its place there instead of its data. */
function externalTensorProto(name: string, t: Tensor, location: string, place: { offset: number; length: number }): onnxProto.onnx.ITensorProto {
  return {
    name,
    dims: t.shape,
    dataType: ONNX_TYPE[t.dtype],
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      { key: 'location', value: location },
      { key: 'offset', value: String(place.offset) },
      { key: 'length', value: String(place.length) },
    ],
  };
}

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

export interface ParsedModel {
  graph: Graph;
  info: Required<ModelInfo>;
  irVersion: number;
  /** The side files the initializers were read from: tensors and bytes in each. */
  externalData: { location: string; tensors: number; bytes: number }[];
}

export interface ParseOptions {
  /** Where tensors stored as external data are read from. */
  externalData?: ExternalDataSource;
}

export interface ModelSummary {
  inputs: GraphIO[];
  outputs: GraphIO[];
  metadata: Record<string, string>;
  opset: number;
  /** The side files that hold external initializers, checked to lie inside the model's directory. */
  externalData: string[];
}

function decodeModel(bytes: Uint8Array, where: string): onnxProto.onnx.ModelProto {
  let model: onnxProto.onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new OnnxFormatError(`${where} is not an ONNX model (protobuf decoding failed: ${(e as Error).message})`);
  }
  const g = model.graph;
  if (!g || (!g.node?.length && !g.output?.length)) throw new OnnxFormatError(`${where} is not an ONNX model (it has no graph)`);
  return model;
}

function externalLocations(tensors: onnxProto.onnx.ITensorProto[], where: string): string[] {
  const locations = new Set<string>();
  for (const t of tensors) {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const location = (t.externalData ?? []).find((e) => e.key === 'location')?.value;
    if (location === undefined || location === null) throw new OnnxFormatError(`${where}: external tensor ${t.name} names no location`);
    checkLocation(location, where);
    locations.add(location);
  }
  return [...locations];
}

/** Inputs, outputs and metadata without converting any tensor data: cheap even for big models. */
export function readModelSummary(bytes: Uint8Array, where = 'model'): ModelSummary {
  const model = decodeModel(bytes, where);
  const g = model.graph!;
  const initializerNames = new Set((g.initializer ?? []).map((t) => t.name));
  const metadata: Record<string, string> = {};
  for (const m of model.metadataProps ?? []) metadata[m.key ?? ''] = m.value ?? '';
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return {
    inputs: (g.input ?? []).filter((p) => !initializerNames.has(p.name ?? '')).map((p) => fromValueInfo(p, where)),
    outputs: (g.output ?? []).map((p) => fromValueInfo(p, where)),
    metadata,
    opset: Number(opset?.version ?? 0),
    externalData: externalLocations(g.initializer ?? [], where),
  };
}

/** Reads ModelProto bytes back into a Graph; every malformed input is an OnnxFormatError. */
export function parseModel(bytes: Uint8Array, where = 'model', options: ParseOptions = {}): ParsedModel {
  const model = decodeModel(bytes, where);
  const g = model.graph!;
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  if (!opset) throw new OnnxFormatError(`${where} imports no default-domain opset`);

  const values = new Map<string, Value>();
  const initializers = new Map<Value, Tensor>();
  const external = new Map<string, { tensors: number; bytes: number }>();
  for (const t of g.initializer ?? []) {
    const tensor = fromTensorProto(t, where, options.externalData);
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
      const location = (t.externalData ?? []).find((e) => e.key === 'location')!.value ?? '';
      const entry = external.get(location) ?? { tensors: 0, bytes: 0 };
      entry.tensors++;
      entry.bytes += tensorByteLength(tensor);
      external.set(location, entry);
    }
    const v = new Value(t.name ?? '', tensor.dtype, tensor.shape);
    values.set(v.name, v);
    initializers.set(v, tensor);
  }
  const inputs = (g.input ?? []).filter((p) => !values.has(p.name ?? '')).map((p) => fromValueInfo(p, where));
  for (const io of inputs) values.set(io.value.name, io.value);
  const declaredOutputs = (g.output ?? []).map((p) => fromValueInfo(p, where));
  const declaredTypes = new Map([...(g.valueInfo ?? []).map((p) => fromValueInfo(p, where)), ...declaredOutputs]
    .map((io) => [io.value.name, io.value]));

  const lookup = (name: string, node: string): Value => {
    const v = values.get(name);
    if (!v) throw new OnnxFormatError(`${where}: node ${node} reads ${name}, which nothing produces`);
    return v;
  };
  const nodes = (g.node ?? []).map((p) => {
    const nodeName = p.name ?? '';
    const inputs = (p.input ?? []).map((name) => (name === '' ? undefined : lookup(name, nodeName)));
    const outputs = (p.output ?? []).map((name) => {
      // Without a declared type an output is assumed to share its first input's dtype.
      const v = declaredTypes.get(name) ?? new Value(name, inputs[0]?.dtype ?? 'float32', undefined);
      values.set(name, v);
      return v;
    });
    const attributes: Record<string, Attribute> = {};
    for (const a of p.attribute ?? []) attributes[a.name ?? ''] = fromAttributeProto(a, where);
    return new Node(p.opType ?? '', nodeName, inputs, outputs, attributes, p.domain ?? '');
  });
  const outputs = declaredOutputs.map((io) => ({ value: lookup(io.value.name, 'graph output'), doc: io.doc }));
  const metadata: Record<string, string> = {};
  for (const m of model.metadataProps ?? []) metadata[m.key ?? ''] = m.value ?? '';
  return {
    graph: {
      name: g.name ?? '',
      opset: Number(opset.version),
      inputs,
      outputs,
      nodes,
      initializers,
      metadata,
      docString: g.docString || undefined,
    },
    info: {
      producerName: model.producerName ?? '',
      producerVersion: model.producerVersion ?? '',
      modelVersion: Number(model.modelVersion ?? 0),
      docString: model.docString ?? '',
    },
    irVersion: Number(model.irVersion ?? 0),
    externalData: [...external].map(([location, e]) => ({ location, ...e })),
  };
}
