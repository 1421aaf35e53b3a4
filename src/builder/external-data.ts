// ONNX external data: initializers kept in a side file beside the model, which then holds each
// tensor's location, offset and length and stays small whatever the size of the weights (a
// ModelProto cannot pass protobuf's 2 GiB). Where the writer places tensors in the side file,
// and how the parser finds and checks them there.

import onnxProto from 'onnx-proto';
import { Graph, ONNX_TYPE, Tensor, Value } from './graph.js';
import { OnnxFormatError, tensorByteLength } from './tensor-bytes.js';

const { onnx } = onnxProto;

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

/** The side files of a model with external data: their bytes by location, or a function that
 * reads one (e.g. from the model's directory). */
export type ExternalDataSource = Readonly<Record<string, Uint8Array>> | ((location: string) => Uint8Array);

/** The raw bytes of an external tensor: checked location, offset and length. */
export function externalBytes(p: onnxProto.onnx.ITensorProto, byteLength: number, where: string, source: ExternalDataSource | undefined): Uint8Array {
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

/** Where each initializer of at least sizeThreshold bytes lies in the side file, in graph order. */
export function externalLayout(graph: Graph, external: ExternalDataOptions): Map<Value, { offset: number; length: number }> {
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
export function externalTensorProto(name: string, t: Tensor, location: string, place: { offset: number; length: number }): onnxProto.onnx.ITensorProto {
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

/** The side files a model's initializers name, each checked to lie inside the model's directory. */
export function externalLocations(tensors: onnxProto.onnx.ITensorProto[], where: string): string[] {
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
