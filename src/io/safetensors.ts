// The safetensors container: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
// describing each tensor's dtype, shape and byte range, then the tensors' bytes. Reading is
// strict (checkpoints come from outside), writing is deterministic (exports are compared by bytes).

import { bfloat16Value, float16Value } from '../math/half-precision.js';
import { size } from '../math/tensor.js';

export type SafeDtype = 'F32' | 'F64' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';
export type WritableDtype = 'F32' | 'F64' | 'I64' | 'I32' | 'U8';

export interface SafeTensor {
  /** The dtype stored in the file; data holds the values as float32 for F32, else float64. */
  dtype: SafeDtype;
  shape: number[];
  data: Float64Array | Float32Array;
}

export interface WritableTensor {
  dtype: WritableDtype;
  shape: number[];
  data: ArrayLike<number>;
}

export interface SafetensorsFile {
  /** In the order the header lists them. */
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

const METADATA_KEY = '__metadata__';
/** The reference implementation's limit, which keeps a corrupt length from allocating gigabytes. */
const MAX_HEADER_BYTES = 100_000_000;
const LENGTH_PREFIX_BYTES = 8;
const TWO_POW_32 = 2 ** 32;
const TWO_POW_53 = 2 ** 53;

const BYTES_PER_ELEMENT: Record<SafeDtype, number> = {
  F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

type Fail = (problem: string) => never;

function isDtype(value: unknown): value is SafeDtype {
  return typeof value === 'string' && Object.hasOwn(BYTES_PER_ELEMENT, value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isCountList(value: unknown): value is number[] {
  return Array.isArray(value) && value.every(isCount);
}

const DESCRIPTION_CHARS = 80;

/** A short one-line rendering of a header value for error messages; headers can be huge or deeply nested. */
function describe(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = `<${typeof value}>`;
  }
  return text.length > DESCRIPTION_CHARS ? `${text.slice(0, DESCRIPTION_CHARS)}...` : text;
}

/** Product of the dimensions, or NaN once it leaves the safe-integer range. */
function elementCount(shape: readonly number[]): number {
  const count = size(shape);
  return Number.isSafeInteger(count) ? count : NaN;
}

// ---------------------------------------------------------------------------------------------
// Reading

interface TensorEntry {
  name: string;
  dtype: SafeDtype;
  shape: number[];
  begin: number;
  end: number;
}

export function readSafetensors(bytes: Uint8Array, sourceName = 'safetensors'): SafetensorsFile {
  const fail: Fail = (problem) => {
    throw new SafetensorsError(`${sourceName}: ${problem}`);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { headerLength, metadata, entries } = readHeader(bytes, view, fail);
  const bufferStart = LENGTH_PREFIX_BYTES + headerLength;
  requireExactCoverage(entries, bytes.byteLength - bufferStart, fail);
  const tensors = new Map<string, SafeTensor>();
  for (const entry of entries) {
    const data = decodeTensor(entry, view, bufferStart + entry.begin, fail);
    tensors.set(entry.name, { dtype: entry.dtype, shape: entry.shape, data });
  }
  return { tensors, metadata };
}

/** The metadata alone: the header is read and checked, no tensor is decoded (a cheap look at
 * what a big file is). */
export function readSafetensorsMetadata(bytes: Uint8Array, sourceName = 'safetensors'): Record<string, string> {
  const fail: Fail = (problem) => {
    throw new SafetensorsError(`${sourceName}: ${problem}`);
  };
  return readHeader(bytes, new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), fail).metadata;
}

function readHeader(bytes: Uint8Array, view: DataView, fail: Fail): { headerLength: number; metadata: Record<string, string>; entries: TensorEntry[] } {
  const headerLength = readHeaderLength(view, fail);
  const headerText = decodeHeaderText(bytes.subarray(LENGTH_PREFIX_BYTES, LENGTH_PREFIX_BYTES + headerLength), fail);
  const header = parseHeader(headerText, fail);
  let metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  for (const key of topLevelKeys(headerText, fail)) {
    if (key === METADATA_KEY) metadata = parseMetadata(header[key], fail);
    else entries.push(parseEntry(key, header[key], fail));
  }
  return { headerLength, metadata, entries };
}

function readHeaderLength(view: DataView, fail: Fail): number {
  if (view.byteLength < LENGTH_PREFIX_BYTES) {
    fail(`file is ${view.byteLength} bytes, shorter than the 8-byte header length`);
  }
  const length = view.getUint32(0, true) + view.getUint32(4, true) * TWO_POW_32;
  if (length > MAX_HEADER_BYTES) fail(`header length ${length} exceeds the ${MAX_HEADER_BYTES / 1e6} MB limit`);
  if (LENGTH_PREFIX_BYTES + length > view.byteLength) {
    fail(`header length ${length} runs past the end of the ${view.byteLength}-byte file`);
  }
  return length;
}

function decodeHeaderText(headerBytes: Uint8Array, fail: Fail): string {
  try {
    // ignoreBOM keeps a byte-order mark in the text, where JSON.parse then rejects it.
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    fail('header is not valid UTF-8');
  }
}

function parseHeader(text: string, fail: Fail): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    fail(`header is not valid JSON (${(error as Error).message.replace(/\s+/g, ' ')})`);
  }
  if (!isPlainObject(parsed)) fail('header JSON is not an object');
  return parsed;
}

/**
 * The header's keys in written order, which JSON.parse does not keep for integer-like names.
 * The text is known to be a valid JSON object here, so skipping values only has to track
 * strings and bracket depth.
 */
function topLevelKeys(text: string, fail: Fail): string[] {
  const keys: string[] = [];
  const seen = new Set<string>();
  let i = skipWhitespace(text, text.indexOf('{') + 1);
  while (text[i] === '"') {
    const keyEnd = endOfString(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    if (seen.has(key)) fail(`header lists ${describe(key)} twice`);
    seen.add(key);
    keys.push(key);
    const colon = skipWhitespace(text, keyEnd);
    i = skipWhitespace(text, endOfValue(text, skipWhitespace(text, colon + 1)));
    if (text[i] === ',') i = skipWhitespace(text, i + 1);
  }
  return keys;
}

function skipWhitespace(text: string, i: number): number {
  while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  return i;
}

/** i is at an opening quote; returns the index just past the closing quote. */
function endOfString(text: string, i: number): number {
  let j = i + 1;
  while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
  return j + 1;
}

function endOfValue(text: string, i: number): number {
  if (text[i] === '"') return endOfString(text, i);
  if (text[i] === '{' || text[i] === '[') return endOfContainer(text, i);
  let j = i;
  while (j < text.length && !',}] \t\n\r'.includes(text[j])) j++;
  return j;
}

function endOfContainer(text: string, i: number): number {
  let depth = 0;
  let j = i;
  for (;;) {
    const c = text[j];
    if (c === '"') {
      j = endOfString(text, j);
      continue;
    }
    if (c === '{' || c === '[') depth++;
    if (c === '}' || c === ']') depth--;
    j++;
    if (depth === 0) return j;
  }
}

function parseMetadata(value: unknown, fail: Fail): Record<string, string> {
  if (!isPlainObject(value)) fail(`${METADATA_KEY} is not an object`);
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== 'string') fail(`${METADATA_KEY} value for ${describe(key)} is not a string`);
  }
  return value as Record<string, string>;
}

function parseEntry(name: string, value: unknown, fail: Fail): TensorEntry {
  const where = `tensor ${describe(name)}`;
  if (!isPlainObject(value)) fail(`${where} is not an object`);
  const { dtype, shape, data_offsets: offsets } = value;
  if (!isDtype(dtype)) fail(`${where} has unsupported dtype ${describe(dtype)}`);
  if (!isCountList(shape)) fail(`${where} shape ${describe(shape)} is not a list of non-negative integers`);
  if (!isCountList(offsets) || offsets.length !== 2 || offsets[0] > offsets[1]) {
    fail(`${where} data_offsets ${describe(offsets)} is not an ordered [begin, end] pair`);
  }
  const [begin, end] = offsets;
  const count = elementCount(shape);
  if (Number.isNaN(count)) fail(`${where} shape ${describe(shape)} has more than 2^53 elements`);
  const expectedBytes = count * BYTES_PER_ELEMENT[dtype];
  if (end - begin !== expectedBytes) {
    fail(`${where} spans ${end - begin} bytes but ${dtype}${describe(shape)} needs ${expectedBytes}`);
  }
  return { name, dtype, shape, begin, end };
}

/** The reference format requires the tensors to tile the byte buffer without overlap or gaps. */
function requireExactCoverage(entries: readonly TensorEntry[], bufferBytes: number, fail: Fail): void {
  const byPosition = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: TensorEntry | undefined;
  for (const entry of byPosition) {
    if (entry.end > bufferBytes) {
      fail(`tensor ${describe(entry.name)} ends at byte ${entry.end}, past the ${bufferBytes}-byte data buffer`);
    }
    if (entry.begin < covered) {
      fail(`tensors ${describe(previous?.name)} and ${describe(entry.name)} overlap at byte ${entry.begin}`);
    }
    if (entry.begin > covered) {
      fail(`data buffer has unused bytes ${covered}..${entry.begin} before tensor ${describe(entry.name)}`);
    }
    covered = entry.end;
    previous = entry;
  }
  if (covered !== bufferBytes) fail(`data buffer has ${bufferBytes - covered} unused bytes after the last tensor`);
}

type Reject = (offset: number, problem: string) => never;

/** Float32 tensors stay Float32Array (the same values in half the memory); others are float64. */
function decodeTensor(entry: TensorEntry, view: DataView, start: number, fail: Fail): Float64Array | Float32Array {
  const out = entry.dtype === 'F32' ? new Float32Array(elementCount(entry.shape)) : new Float64Array(elementCount(entry.shape));
  const step = BYTES_PER_ELEMENT[entry.dtype];
  const reject: Reject = (offset, problem) =>
    fail(`tensor ${describe(entry.name)} element ${(offset - start) / step} ${problem}`);
  const read = elementReader(entry.dtype, view, reject);
  for (let i = 0; i < out.length; i++) out[i] = read(start + i * step);
  return out;
}

function elementReader(dtype: SafeDtype, view: DataView, reject: Reject): (offset: number) => number {
  switch (dtype) {
    case 'F64': return (o) => view.getFloat64(o, true);
    case 'F32': return (o) => view.getFloat32(o, true);
    case 'F16': return (o) => float16Value(view.getUint16(o, true));
    case 'BF16': return (o) => bfloat16Value(view.getUint16(o, true));
    case 'I64': return (o) => int64ToNumber(view.getBigInt64(o, true), o, reject);
    case 'I32': return (o) => view.getInt32(o, true);
    case 'I16': return (o) => view.getInt16(o, true);
    case 'I8': return (o) => view.getInt8(o);
    case 'U8': return (o) => view.getUint8(o);
    case 'BOOL': return (o) => boolByteToNumber(view.getUint8(o), o, reject);
  }
}

const INT64_EXACT_LIMIT = BigInt(TWO_POW_53);

/** Integers beyond 2^53 would silently lose digits as float64. */
function int64ToNumber(value: bigint, offset: number, reject: Reject): number {
  if (value > INT64_EXACT_LIMIT || value < -INT64_EXACT_LIMIT) {
    reject(offset, `(${value}) is beyond 2^53 and cannot be read exactly`);
  }
  return Number(value);
}

function boolByteToNumber(byte: number, offset: number, reject: Reject): number {
  if (byte > 1) reject(offset, `is byte ${byte}, not a BOOL (0 or 1)`);
  return byte;
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Serialises tensors in the given order, contiguously, with "__metadata__" first in the header
 * when metadata is given. The header is padded with spaces to a multiple of 8 bytes, as the
 * reference writer does, so the data buffer starts 8-byte aligned.
 */
export function writeSafetensors(
  tensors: Iterable<[string, WritableTensor]>,
  metadata?: Record<string, string>,
): Uint8Array {
  // Built as text rather than one object so that integer-like tensor names keep their place.
  const headerParts: string[] = [];
  if (metadata !== undefined) headerParts.push(headerPart(METADATA_KEY, checkedMetadata(metadata)));
  const layout: { tensor: WritableTensor; begin: number }[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const [name, tensor] of tensors) {
    checkWritable(name, tensor, names);
    names.add(name);
    const end = offset + elementCount(tensor.shape) * BYTES_PER_ELEMENT[tensor.dtype];
    headerParts.push(headerPart(name, { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, end] }));
    layout.push({ tensor, begin: offset });
    offset = end;
  }
  const header = paddedHeader(`{${headerParts.join(',')}}`);
  const out = new Uint8Array(LENGTH_PREFIX_BYTES + header.length + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, header.length, true);
  out.set(header, LENGTH_PREFIX_BYTES);
  for (const { tensor, begin } of layout) encodeTensor(tensor, view, LENGTH_PREFIX_BYTES + header.length + begin);
  return out;
}

function headerPart(key: string, value: object): string {
  return `${JSON.stringify(key)}:${JSON.stringify(value)}`;
}

const WRITABLE_DTYPES: readonly string[] = ['F32', 'F64', 'I64', 'I32', 'U8'] satisfies WritableDtype[];

const INTEGER_RANGES: Partial<Record<WritableDtype, [number, number]>> = {
  I32: [-(2 ** 31), 2 ** 31 - 1],
  I64: [-TWO_POW_53, TWO_POW_53],
  U8: [0, 255],
};

function writeError(problem: string): SafetensorsError {
  return new SafetensorsError(`writeSafetensors: ${problem}`);
}

function checkedMetadata(metadata: Record<string, string>): Record<string, string> {
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') throw writeError(`metadata value for ${describe(key)} is not a string`);
  }
  return metadata;
}

function checkWritable(name: string, tensor: WritableTensor, earlierNames: ReadonlySet<string>): void {
  const where = `tensor ${describe(name)}`;
  if (name === METADATA_KEY) throw writeError(`a tensor cannot be named ${METADATA_KEY}`);
  if (earlierNames.has(name)) throw writeError(`${where} is given twice`);
  if (!WRITABLE_DTYPES.includes(tensor.dtype)) throw writeError(`${where} has unwritable dtype ${describe(tensor.dtype)}`);
  if (!isCountList(tensor.shape)) {
    throw writeError(`${where} shape ${describe(tensor.shape)} is not a list of non-negative integers`);
  }
  const count = elementCount(tensor.shape);
  if (tensor.data.length !== count) {
    throw writeError(`${where} has ${tensor.data.length} values but shape [${tensor.shape.join(', ')}] needs ${count}`);
  }
  const range = INTEGER_RANGES[tensor.dtype];
  if (range) requireIntegersIn(tensor.data, range, `${where} (${tensor.dtype})`);
}

function requireIntegersIn(data: ArrayLike<number>, [low, high]: [number, number], where: string): void {
  for (let i = 0; i < data.length; i++) {
    const value = data[i];
    if (!Number.isInteger(value) || value < low || value > high) {
      throw writeError(`${where} element ${i} is ${value}, not an integer in [${low}, ${high}]`);
    }
  }
}

function paddedHeader(json: string): Uint8Array {
  const encoded = new TextEncoder().encode(json);
  const padding = (LENGTH_PREFIX_BYTES - (encoded.length % LENGTH_PREFIX_BYTES)) % LENGTH_PREFIX_BYTES;
  const padded = new Uint8Array(encoded.length + padding).fill(0x20);
  padded.set(encoded);
  return padded;
}

function encodeTensor(tensor: WritableTensor, view: DataView, start: number): void {
  const { data } = tensor;
  const step = BYTES_PER_ELEMENT[tensor.dtype];
  const write = elementWriter(tensor.dtype, view);
  for (let i = 0; i < data.length; i++) write(start + i * step, data[i]);
}

function elementWriter(dtype: WritableDtype, view: DataView): (offset: number, value: number) => void {
  switch (dtype) {
    case 'F64': return (o, v) => view.setFloat64(o, v, true);
    // setFloat32 rounds to nearest even, exactly as Math.fround does.
    case 'F32': return (o, v) => view.setFloat32(o, v, true);
    case 'I64': return (o, v) => view.setBigInt64(o, BigInt(v), true);
    case 'U8': return (o, v) => view.setUint8(o, v);
    case 'I32': return (o, v) => view.setInt32(o, v, true);
  }
}
