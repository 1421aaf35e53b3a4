// ModelProto bytes -> Graph through onnx-proto, every malformed input an OnnxFormatError naming
// the file; tensors stored as external data are read from the side files the caller gives.

import onnxProto from 'onnx-proto';
import { float16Value } from '../math/half-precision.js';
import { size } from '../math/tensor.js';
import { externalBytes, ExternalDataSource, externalLocations } from './external-data.js';
import { Attribute, Dim, dtypeOfCode, Graph, GraphIO, Node, Tensor, Value } from './graph.js';
import type { ModelInfo } from './serialize.js';
import { ITEM_SIZE, OnnxFormatError, tensorByteLength } from './tensor-bytes.js';

const { onnx } = onnxProto;

// ---------------------------------------------------------------- tensors, attributes, value infos

function numbersOf(list: unknown[] | null | undefined): number[] {
  return (list ?? []).map((v) => Number(v));
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

const A = onnx.AttributeProto.AttributeType;

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
