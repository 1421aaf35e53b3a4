// Reads PyTorch checkpoints without running anything from the file, in both of torch.save's
// formats: the ZIP archive of torch >= 1.6 (<archive>/data.pkl and one <archive>/data/<key>
// record per storage) and the legacy stream of older torch (five pickles back to back, then
// the raw storages). The object pickle goes through a pickle VM whose globals are JavaScript
// stand-ins for a short allow-list of torch functions. Also dispatches between those formats
// and safetensors.

import { bfloat16Value, float16Value } from '../math/half-precision.js';
import { CheckpointError } from './checkpoint-error.js';
import {
  PyDict, PyGlobal, PyHost, PyList, PyOpaque, PyTuple, PyValue, describePy, standardGlobal, unpickle, unpickleAt,
} from './pickle.js';
import { ZipArchive, looksLikeZip } from './zip.js';
import { SafeDtype, SafetensorsError, readSafetensors } from './safetensors.js';

export type TorchDtype =
  | 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

export interface TorchTensor {
  dtype: TorchDtype;
  shape: number[];
  /** The values in row-major order of `shape`, widened to float64 (exact for every dtype here). */
  data: Float64Array;
}

/** The advice every refusal of pickled code ends with. */
export const RESAVE_HINT =
  're-save the weights with a recent torch as a state_dict (torch.save(model.state_dict(), path)) or as safetensors';

const ITEM_BYTES: Record<TorchDtype, number> = {
  float64: 8, int64: 8, float32: 4, int32: 4, float16: 2, bfloat16: 2, int16: 2, int8: 1, uint8: 1, bool: 1,
};

/** torch.<Name>Storage -> element type; persistent ids name one of these for every storage. */
const STORAGE_DTYPES: Record<string, TorchDtype> = {
  FloatStorage: 'float32', DoubleStorage: 'float64', HalfStorage: 'float16', BFloat16Storage: 'bfloat16',
  LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8', ByteStorage: 'uint8',
  BoolStorage: 'bool', UntypedStorage: 'uint8',
};

/** Keys under which training scripts commonly wrap a state_dict, in the order they are tried. */
// 'graph' is where chaiyujin/glow-pytorch's trainer keeps the weights.
const WRAPPER_KEYS = ['model', 'state_dict', 'model_state', 'model_state_dict', 'graph'];

/** Expanded (stride-0) views may hold more elements than their storage, but not without bound. */
const MAX_EXPANDED_ELEMENTS = 2 ** 24;

type Fail = (problem: string) => never;

// ---------------------------------------------------------------------------------------------
// What the allow-listed globals build

/** A storage named by a persistent id: ('storage', torch.<T>Storage, key, location, numel),
 * plus view metadata in legacy files. */
class StorageRef extends PyHost {
  readonly typeName = 'torch storage';
  constructor(
    readonly key: string,
    readonly dtype: TorchDtype | undefined,
    readonly storageType: string,
    readonly numel: number,
    /** The storage type is a global outside the allow-list. */
    readonly refused = false,
    /** Legacy storage views: where this storage starts in the record of `key`, in elements. */
    readonly start = 0,
  ) {
    super();
  }
}

/** torch._utils._rebuild_tensor_v2's result: a strided view of a storage, decoded on demand. */
class TensorRef extends PyHost {
  readonly typeName = 'torch.Tensor';
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {
    super();
  }
}

/** A tensor the file describes in a way this reader cannot decode; an error only if it is used. */
class UnreadableTensor extends PyHost {
  readonly typeName = 'torch.Tensor';
  constructor(readonly problem: string) {
    super();
  }
}

/** A global that only serves as a value (storage types, tensor classes), never called. */
class Marker extends PyGlobal {}

function isTensor(value: PyValue | undefined): value is TensorRef | UnreadableTensor {
  return value instanceof TensorRef || value instanceof UnreadableTensor;
}

function isCount(value: PyValue): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function countTuple(value: PyValue): number[] | undefined {
  if (!(value instanceof PyTuple) || !value.items.every(isCount)) return undefined;
  return value.items as number[];
}

function rebuildTensor(args: PyValue[]): PyValue {
  if (args.length < 4) return new UnreadableTensor(`_rebuild_tensor_v2 got ${args.length} arguments`);
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) return new UnreadableTensor(`its storage is ${describePy(storage)}`);
  if (!isCount(offset)) return new UnreadableTensor(`its storage offset is ${describePy(offset)}`);
  const shape = countTuple(size);
  if (!shape) return new UnreadableTensor(`its size is ${describePy(size)}, not a tuple of non-negative ints`);
  const strides = countTuple(stride);
  if (!strides || strides.length !== shape.length) {
    return new UnreadableTensor(`its stride ${describePy(stride)} does not match its ${shape.length}-d size`);
  }
  return new TensorRef(storage, offset, shape, strides);
}

/** Parameters are tensors with a flag; only the data matters here. */
function rebuildParameter(args: PyValue[]): PyValue {
  const data = args[0];
  if (isTensor(data) || data instanceof PyOpaque) return data;
  return new UnreadableTensor(`torch._utils._rebuild_parameter got ${describePy(data)}`);
}

const TENSOR_CLASSES = new Set(['torch.Tensor', 'torch._tensor.Tensor', 'torch.nn.parameter.Parameter']);

/** _rebuild_from_type_v2(func, type, args, state): plain tensors and parameters only. */
function rebuildFromType(args: PyValue[], fail: Fail): PyValue {
  const [func, type, funcArgs] = args;
  if (type instanceof PyOpaque) return type;
  if (!(type instanceof Marker) || !TENSOR_CLASSES.has(type.qualifiedName)) {
    return new UnreadableTensor(`it is rebuilt as ${describePy(type)}, not a plain tensor`);
  }
  if (func instanceof PyOpaque) return func;
  if (!(func instanceof PyGlobal) || !func.call || !(funcArgs instanceof PyTuple)) {
    return new UnreadableTensor(`_rebuild_from_type_v2 got ${describePy(func)} and ${describePy(funcArgs)}`);
  }
  return func.call(funcArgs.items, fail);
}

const TORCH_CALLS: Record<string, (args: PyValue[], fail: Fail) => PyValue> = {
  'torch._utils._rebuild_tensor_v2': rebuildTensor,
  'torch._utils._rebuild_parameter': rebuildParameter,
  'torch._utils._rebuild_parameter_with_state': rebuildParameter,
  'torch._tensor._rebuild_from_type_v2': rebuildFromType,
  'torch.Size': (args, fail) => {
    const [dims] = args;
    if (args.length === 0) return new PyTuple([]);
    if (args.length > 1 || !(dims instanceof PyTuple || dims instanceof PyList)) {
      return fail(`torch.Size got ${args.map((a) => describePy(a)).join(', ')}`);
    }
    return new PyTuple([...dims.items]);
  },
};

function resolveTorchGlobal(module: string, name: string): PyGlobal | undefined {
  const standard = standardGlobal(module, name);
  if (standard) return standard;
  const qualified = `${module}.${name}`;
  if (Object.hasOwn(TORCH_CALLS, qualified)) return new PyGlobal(module, name, TORCH_CALLS[qualified]);
  if ((module === 'torch' || module === 'torch.storage') && /^_?[A-Za-z0-9]*Storage$/.test(name)) {
    return new Marker(module, name);
  }
  if (TENSOR_CLASSES.has(qualified)) return new Marker(module, name);
  // Other torch rebuild functions (quantized, sparse, meta, nested tensors, ...) are known and
  // harmless but not supported; say so instead of calling them arbitrary code.
  if (module === 'torch._utils' && name.startsWith('_rebuild_')) {
    return new PyGlobal(module, name, () => new UnreadableTensor(`it is stored with ${qualified}, which this reader does not support (quantized, sparse or other special tensors)`));
  }
  return undefined;
}

function storageRef(type: PyValue, key: PyValue, numel: PyValue, fail: Fail): StorageRef {
  if (typeof key !== 'string') fail(`persistent id storage key is ${describePy(key)}, not a str`);
  if (!isCount(numel)) fail(`persistent id for storage ${JSON.stringify(key)} has size ${describePy(numel)}`);
  if (type instanceof PyOpaque) return new StorageRef(key, undefined, type.global, numel, true);
  if (!(type instanceof Marker)) fail(`persistent id for storage ${JSON.stringify(key)} has type ${describePy(type)}`);
  const dtype = Object.hasOwn(STORAGE_DTYPES, type.name.replace(/^_/, '')) ? STORAGE_DTYPES[type.name.replace(/^_/, '')] : undefined;
  return new StorageRef(key, dtype, type.qualifiedName, numel);
}

function persistentLoad(pid: PyValue, fail: Fail): PyValue {
  if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
    fail(`persistent id ${describePy(pid)} is not a ('storage', type, key, location, numel) tuple`);
  }
  const [, type, key, , numel] = pid.items;
  return storageRef(type, key, numel, fail);
}

/** Legacy ids: ('storage', type, key, location, numel, view) with view None or (view key,
 * offset, size); ('module', class, source file, source) for a pickled nn.Module. */
function legacyPersistentLoad(storages: Map<string, StorageRef>): (pid: PyValue, fail: Fail) => PyValue {
  return (pid: PyValue, fail: Fail): PyValue => {
    if (pid instanceof PyTuple && pid.items[0] === 'module') {
      const type = pid.items[1];
      const global = type instanceof PyOpaque ? type.global : describePy(type);
      return new PyOpaque(global);
    }
    if (!(pid instanceof PyTuple) || pid.items.length !== 6 || pid.items[0] !== 'storage') {
      fail(`persistent id ${describePy(pid)} is not a ('storage', type, key, location, numel, view) tuple`);
    }
    const [, type, key, , numel, view] = pid.items;
    const root = storageRef(type, key, numel, fail);
    const known = storages.get(root.key);
    if (known && (known.numel !== root.numel || known.storageType !== root.storageType)) {
      fail(`storage ${JSON.stringify(root.key)} is described twice, differently`);
    }
    if (!known) storages.set(root.key, root);
    if (view === null) return root;
    const parts = view instanceof PyTuple ? view.items : [];
    const [, start, size] = parts;
    if (parts.length !== 3 || !isCount(start) || !isCount(size) || start + size > root.numel) {
      fail(`storage ${JSON.stringify(root.key)} has view ${describePy(view)}, not (key, offset, size) within its ${root.numel} elements`);
    }
    return new StorageRef(root.key, root.dtype, root.storageType, size, root.refused, start);
  };
}

// ---------------------------------------------------------------------------------------------
// Reading an archive

/** Where a checkpoint keeps its storages' bytes, and how it words its errors. */
interface StorageRecords {
  fail: Fail;
  /** The bytes of storage `key`, or a refusal naming the record. */
  read(key: string, fail: Fail): { bytes: Uint8Array; name: string };
  littleEndian: boolean;
  /** Says what an opaque root object is (a TorchScript archive, a pickled module, ...). */
  describeOpaqueRoot(global: string): string;
}

/** Either torch.save format: ZIP archive (torch >= 1.6) or legacy stream. */
export function readTorchCheckpoint(bytes: Uint8Array, source: string): Map<string, TorchTensor> {
  if (isLegacyTorch(bytes)) return readLegacyTorch(bytes, source);
  if (!looksLikeZip(bytes)) diagnoseNotZip(bytes, source);
  const zip = new ZipArchive(bytes, source);
  const prefix = archivePrefix(zip);
  const pickleName = `${prefix}data.pkl`;
  const root = unpickle(zip.read(pickleName), {
    source: `${source}: ${pickleName}`,
    resolveGlobal: resolveTorchGlobal,
    persistentLoad,
  });
  const torchScript = zip.has(`${prefix}constants.pkl`) || zip.names().some((name) => name.startsWith(`${prefix}code/`));
  return stateDictTensors(root, {
    fail: (problem) => zip.fail(problem),
    littleEndian: readByteOrder(zip, prefix),
    read(key, fail) {
      const name = `${prefix}data/${key}`;
      if (!zip.has(name)) fail(`its storage record ${JSON.stringify(name)} is missing`);
      return { bytes: zip.read(name), name };
    },
    describeOpaqueRoot: (global) => (torchScript ? 'a TorchScript archive (torch.jit.save)' : `a pickled ${global} object`),
  });
}

/** The legacy protocol version, the second pickle of every legacy file. */
const LEGACY_PROTOCOL = 1001;
/** The first pickle of a legacy file: torch's magic number. */
const LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6cn;
/** Storage types whose tensors are refused when read, sized so that the records after them can
 * still be found. */
const UNREADABLE_ITEM_BYTES: Record<string, number> = {
  ComplexFloatStorage: 8, ComplexDoubleStorage: 16, QInt8Storage: 1, QUInt8Storage: 1, QInt32Storage: 4,
};
/** Each legacy storage record starts with its element count as a little-endian int64. */
const RECORD_HEADER_BYTES = 8;

/**
 * The pre-1.6 format (torch.save(..., _use_new_zipfile_serialization=False)): pickles of the
 * magic number, the protocol version and a system-info dict; the object pickle, whose storages
 * are persistent ids; a pickle of the storage keys; then, in that key order, each storage as
 * an int64 element count and its raw bytes.
 */
function readLegacyTorch(bytes: Uint8Array, source: string): Map<string, TorchTensor> {
  const fail: Fail = (problem) => {
    throw new CheckpointError(`${source}: ${problem}`);
  };
  let pos = 0;
  const storages = new Map<string, StorageRef>();
  const next = (what: string, resolveGlobal = standardGlobal, load?: (pid: PyValue, fail: Fail) => PyValue): PyValue => {
    const { value, end } = unpickleAt(bytes, pos, { source: `${source}: legacy ${what} pickle`, resolveGlobal, persistentLoad: load });
    pos = end;
    return value;
  };
  const magic = next('magic number');
  if (typeof magic !== 'bigint' || magic !== LEGACY_MAGIC_NUMBER) fail(`legacy torch.save magic number is ${describePy(magic)}, not torch's`);
  const protocol = next('protocol version');
  if (protocol !== LEGACY_PROTOCOL) fail(`legacy torch.save protocol version is ${describePy(protocol)}, not ${LEGACY_PROTOCOL}`);
  const sysInfo = next('system info');
  if (!(sysInfo instanceof PyDict)) fail(`legacy torch.save system info is ${describePy(sysInfo)}, not a dict`);
  const littleEndian = sysInfo.get('little_endian');
  if (littleEndian !== true) {
    fail(littleEndian === false
      ? 'is a big-endian legacy torch.save file, which this reader does not support; re-save it with torch >= 1.6 or as safetensors'
      : `legacy torch.save system info has little_endian ${describePy(littleEndian)}`);
  }
  const root = next('object', resolveTorchGlobal, legacyPersistentLoad(storages));
  const keys = next('storage keys');
  if (!(keys instanceof PyList) || !keys.items.every((k): k is string => typeof k === 'string')) {
    fail(`legacy torch.save storage keys are ${describePy(keys)}, not a list of str`);
  }
  const records = new Map<string, Uint8Array>();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const key of keys.items as string[]) {
    const storage = storages.get(key);
    if (!storage) fail(`legacy torch.save lists storage ${JSON.stringify(key)}, which no tensor uses`);
    if (records.has(key)) fail(`legacy torch.save lists storage ${JSON.stringify(key)} twice`);
    if (bytes.length - pos < RECORD_HEADER_BYTES) fail(`storage ${JSON.stringify(key)} starts past the end of the file (truncated)`);
    const numel = view.getBigInt64(pos, true);
    if (numel !== BigInt(storage.numel)) fail(`storage ${JSON.stringify(key)} holds ${numel} elements, but its tensors say ${storage.numel}`);
    const itemBytes = storage.dtype ? ITEM_BYTES[storage.dtype] : UNREADABLE_ITEM_BYTES[storage.storageType.replace(/^torch\./, '')];
    // Without the element size the records that follow cannot be found.
    if (!itemBytes) fail(`storage ${JSON.stringify(key)} is a ${storage.storageType}, whose element size this reader does not know`);
    const size = storage.numel * itemBytes;
    if (bytes.length - pos - RECORD_HEADER_BYTES < size) {
      fail(`storage ${JSON.stringify(key)} needs ${size} bytes but the file ends after ${bytes.length - pos - RECORD_HEADER_BYTES} (truncated)`);
    }
    records.set(key, bytes.subarray(pos + RECORD_HEADER_BYTES, pos + RECORD_HEADER_BYTES + size));
    pos += RECORD_HEADER_BYTES + size;
  }
  return stateDictTensors(root, {
    fail,
    littleEndian,
    read(key, fail) {
      const record = records.get(key);
      if (!record) return fail(`its storage ${JSON.stringify(key)} is missing from the legacy storage keys`);
      return { bytes: record, name: `storage ${JSON.stringify(key)}` };
    },
    describeOpaqueRoot: (global) => `a pickled ${global} object`,
  });
}

function stateDictTensors(root: PyValue, records: StorageRecords): Map<string, TorchTensor> {
  const { fail } = records;
  const stateDict = selectStateDict(root, records);
  const tensors = new Map<string, TorchTensor>();
  for (const [key, value] of stateDict.entries()) {
    const where = `key ${keyName(key)}`;
    if (typeof key !== 'string') return fail(`state_dict ${where} is not a str`);
    if (isTensor(value)) {
      tensors.set(key, decodeTensor(value, records, (problem) => fail(`${where}: ${problem}`)));
    } else if (key === '_metadata' && value instanceof PyDict) {
      continue; // module versions, as torch keeps them; not weights
    } else if (value instanceof PyOpaque) {
      fail(`${where} holds a pickled ${value.global} object; loading it would run arbitrary code from the file (refused global ${value.global}); ${RESAVE_HINT}`);
    } else {
      fail(`${where} is ${describePy(value)}, not a tensor`);
    }
  }
  return tensors;
}

/** torch names the archive folder after the file's stem (older) or "archive" (newer). */
function archivePrefix(zip: ZipArchive): string {
  const candidates = zip.names().filter((name) => /^([^/]*\/)?data\.pkl$/.test(name));
  if (candidates.length === 1) return candidates[0].slice(0, -'data.pkl'.length);
  if (candidates.length === 0) {
    const shown = zip.names().slice(0, 5).map((name) => JSON.stringify(name)).join(', ');
    zip.fail(`is a ZIP archive without <archive>/data.pkl, so not a torch.save checkpoint (entries: ${shown || 'none'})`);
  }
  zip.fail(`holds ${candidates.length} data.pkl entries (${candidates.map((name) => JSON.stringify(name)).join(', ')}); expected one`);
}

/** torch >= 2.1 records the byte order of the storages; older files are little-endian. */
function readByteOrder(zip: ZipArchive, prefix: string): boolean {
  const name = `${prefix}byteorder`;
  if (!zip.has(name)) return true;
  const text = new TextDecoder().decode(zip.read(name)).trim();
  if (text === 'little') return true;
  if (text === 'big') return false;
  return zip.fail(`${name} says ${JSON.stringify(text.slice(0, 20))}, not "little" or "big"`);
}

function selectStateDict(root: PyValue, records: StorageRecords): PyDict {
  if (root instanceof PyOpaque) {
    const what = records.describeOpaqueRoot(root.global);
    records.fail(`the checkpoint is ${what}, not a state_dict; loading it would run arbitrary code from the file (refused global ${root.global}); ${RESAVE_HINT}`);
  }
  if (!(root instanceof PyDict)) {
    records.fail(`the checkpoint holds ${describePy(root)}, not a state_dict (a dict of tensors); ${RESAVE_HINT}`);
  }
  const values = [...root.entries()];
  if (root.size === 0 || values.some(([, value]) => isTensor(value))) return root;

  const wrapped = values.filter(([key]) => typeof key === 'string' && WRAPPER_KEYS.includes(key));
  const withTensors = wrapped.find(([, value]) => value instanceof PyDict && [...value.entries()].some(([, v]) => isTensor(v)));
  if (withTensors) return withTensors[1] as PyDict;
  const empty = wrapped.find(([, value]) => value instanceof PyDict && value.size === 0);
  if (empty) return empty[1] as PyDict;

  const opaqueWrapper = wrapped.find(([, value]) => value instanceof PyOpaque);
  if (opaqueWrapper) {
    const global = (opaqueWrapper[1] as PyOpaque).global;
    records.fail(`key ${keyName(opaqueWrapper[0])} holds a pickled ${global} object, not a state_dict; loading it would run arbitrary code from the file (refused global ${global}); ${RESAVE_HINT}`);
  }
  const keys = values.slice(0, 8).map(([key]) => keyName(key)).join(', ');
  const opaque = values.find(([, value]) => value instanceof PyOpaque);
  const note = opaque
    ? `; key ${keyName(opaque[0])} holds a pickled ${(opaque[1] as PyOpaque).global} object, which would need arbitrary code to load; ${RESAVE_HINT}`
    : '';
  return records.fail(`found no state_dict: the top-level dict holds no tensors and none under ${WRAPPER_KEYS.join('/')} (keys: ${keys}${values.length > 8 ? ', ...' : ''})${note}`);
}

function keyName(key: PyValue): string {
  return typeof key === 'string' ? JSON.stringify(key) : describePy(key);
}

// ---------------------------------------------------------------------------------------------
// Decoding storages

function decodeTensor(tensor: TensorRef | UnreadableTensor, records: StorageRecords, fail: Fail): TorchTensor {
  if (tensor instanceof UnreadableTensor) fail(`cannot read the tensor: ${tensor.problem}`);
  const { storage, offset, shape, stride } = tensor;
  if (!storage.dtype) {
    const why = storage.refused
      ? `its storage type ${storage.storageType} is not a torch storage type (refused global ${storage.storageType}); ${RESAVE_HINT}`
      : `its element type ${storage.storageType} is not supported`;
    fail(`cannot read the tensor: ${why}`);
  }
  const dtype = storage.dtype;
  const numel = shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(numel)) fail(`shape [${shape.join(', ')}] has more than 2^53 elements`);
  if (numel === 0) return { dtype, shape: [...shape], data: new Float64Array(0) };
  if (numel > storage.numel && numel > MAX_EXPANDED_ELEMENTS) {
    fail(`shape [${shape.join(', ')}] has ${numel} elements but its storage only ${storage.numel}`);
  }
  let last = offset;
  for (let d = 0; d < shape.length; d++) last += (shape[d] - 1) * stride[d];
  if (last >= storage.numel) {
    fail(`view (offset ${offset}, shape [${shape.join(', ')}], stride [${stride.join(', ')}]) reaches element ${last} of a ${storage.numel}-element storage`);
  }
  const { bytes: record, name: recordName } = records.read(storage.key, fail);
  const itemBytes = ITEM_BYTES[dtype];
  if (record.length < (storage.start + storage.numel) * itemBytes) {
    fail(`storage record ${JSON.stringify(recordName)} is ${record.length} bytes, too short for ${storage.start + storage.numel} ${dtype} elements`);
  }
  const view = new DataView(record.buffer, record.byteOffset + storage.start * itemBytes, record.byteLength - storage.start * itemBytes);
  const read = elementReader(dtype, view, records.littleEndian, fail);
  const out = new Float64Array(numel);
  if (isContiguous(shape, stride)) {
    for (let i = 0; i < numel; i++) out[i] = read(offset + i);
    return { dtype, shape: [...shape], data: out };
  }
  // Walk the view in row-major order with an odometer over the indices.
  const index = new Array<number>(shape.length).fill(0);
  let element = offset;
  for (let i = 0; i < numel; i++) {
    out[i] = read(element);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++index[d] < shape[d]) {
        element += stride[d];
        break;
      }
      element -= stride[d] * (shape[d] - 1);
      index[d] = 0;
    }
  }
  return { dtype, shape: [...shape], data: out };
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expected) return false;
    expected *= shape[d];
  }
  return true;
}

const INT64_EXACT_LIMIT = 2n ** 53n;

/** Reads element i (not byte i) of a storage. */
function elementReader(dtype: TorchDtype, view: DataView, le: boolean, fail: Fail): (i: number) => number {
  switch (dtype) {
    case 'float64': return (i) => view.getFloat64(i * 8, le);
    case 'float32': return (i) => view.getFloat32(i * 4, le);
    case 'float16': return (i) => float16Value(view.getUint16(i * 2, le));
    case 'bfloat16': return (i) => bfloat16Value(view.getUint16(i * 2, le));
    case 'int64': return (i) => {
      const value = view.getBigInt64(i * 8, le);
      if (value > INT64_EXACT_LIMIT || value < -INT64_EXACT_LIMIT) {
        fail(`int64 storage element ${i} (${value}) is beyond 2^53 and cannot be read exactly as a number`);
      }
      return Number(value);
    };
    case 'int32': return (i) => view.getInt32(i * 4, le);
    case 'int16': return (i) => view.getInt16(i * 2, le);
    case 'int8': return (i) => view.getInt8(i);
    case 'uint8': return (i) => view.getUint8(i);
    case 'bool': return (i) => {
      const byte = view.getUint8(i);
      if (byte > 1) fail(`bool storage element ${i} is byte ${byte}, not 0 or 1`);
      return byte;
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Format dispatch

const LEGACY_MAGIC = [0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PICKLE_PROTO = 0x80;

function looksLikePickle(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === PICKLE_PROTO && bytes[1] >= 2 && bytes[1] <= 5;
}

function isLegacyTorch(bytes: Uint8Array): boolean {
  return looksLikePickle(bytes) && LEGACY_MAGIC.every((byte, i) => bytes[2 + i] === byte);
}

const SAFETENSORS_MAX_HEADER = 100_000_000;

function looksLikeSafetensors(bytes: Uint8Array): boolean {
  if (bytes.length < 10) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
  return length >= 2 && length <= SAFETENSORS_MAX_HEADER && 8 + length <= bytes.length && bytes[8] === 0x7b;
}

function diagnoseNotZip(bytes: Uint8Array, source: string): never {
  if (looksLikePickle(bytes)) {
    throw new CheckpointError(`${source}: is a bare pickle, not a torch.save file (neither a ZIP archive nor the legacy format, which starts with torch's magic number); ${RESAVE_HINT}`);
  }
  if (looksLikeSafetensors(bytes)) {
    throw new CheckpointError(`${source}: is a safetensors file, not a torch.save archive; read it with readWeightsFile`);
  }
  const head = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new CheckpointError(`${source}: is neither a torch.save ZIP archive nor a safetensors file (starts with ${head || 'nothing'})`);
}

const SAFE_TO_TORCH: Record<SafeDtype, TorchDtype> = {
  F32: 'float32', F64: 'float64', F16: 'float16', BF16: 'bfloat16', I64: 'int64', I32: 'int32',
  I16: 'int16', I8: 'int8', U8: 'uint8', BOOL: 'bool',
};

/** A torch.save checkpoint (either format) or a safetensors file, told apart by their first bytes. */
export function readWeightsFile(bytes: Uint8Array, source: string): Map<string, TorchTensor> {
  if (looksLikeZip(bytes) || isLegacyTorch(bytes)) return readTorchCheckpoint(bytes, source);
  if (looksLikeSafetensors(bytes)) {
    let file;
    try {
      file = readSafetensors(bytes, source);
    } catch (error) {
      if (error instanceof SafetensorsError) throw new CheckpointError(error.message, { cause: error });
      throw error;
    }
    return new Map([...file.tensors].map(([name, t]) => [name, { dtype: SAFE_TO_TORCH[t.dtype], shape: t.shape, data: Float64Array.from(t.data) }]));
  }
  return diagnoseNotZip(bytes, source);
}
