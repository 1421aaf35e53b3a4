// ONNX Runtime's on-device-training checkpoint (ODTC): a FlatBuffer with schema
// ort_training_checkpoint.fbs, tensors as in ort.fbs. Written and read here by hand instead of
// through the `flatbuffers` package: the format needs five small tables, and the reader must check
// every offset anyway so that a damaged file ends in one line of ours, not in ORT's abort code.
//
// Only what glow-onnx needs is supported: float32 tensors, the property bag, and optionally one
// optimizer group (the layout ORT's Adam uses: moments `momentum0`, `momentum1` per parameter).

import { size as elementCount } from '../math/tensor.js';

/** The one version the training build glow-onnx drives (onnxruntime-web 1.19.2) reads. */
export const ODTC_VERSION = 2;
const IDENTIFIER = 'ODTC';
const FLOAT = 1;

export class OdtcError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OdtcError';
  }
}

export interface OdtcTensor {
  name: string;
  dims: number[];
  data: Float32Array;
}

export interface OdtcOptimizerGroup {
  name: string;
  step: number;
  initialLearningRate: number;
  /** Per parameter, its moments in ORT's order (momentum0 = first order, momentum1 = second). */
  states: { param: string; momentums: OdtcTensor[] }[];
}

export interface OdtcCheckpoint {
  version: number;
  trainable: OdtcTensor[];
  frozen: OdtcTensor[];
  optimizerGroups: OdtcOptimizerGroup[];
  ints: Record<string, number>;
  floats: Record<string, number>;
  strings: Record<string, string>;
}

export function isOdtc(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && String.fromCharCode(...bytes.subarray(4, 8)) === IDENTIFIER;
}

// ---------------------------------------------------------------- contract

/** What ORT 1.19.2 would otherwise refuse with a bare status code, or accept and misbehave on:
 * checked on both sides, so that neither a file we write nor one we read gets past it. */
export function checkOdtc(c: OdtcCheckpoint, source: string): void {
  if (c.version !== ODTC_VERSION) {
    throw new OdtcError(`${source}: ODTC checkpoint version ${c.version} is not supported (ONNX Runtime 1.19's training build reads version ${ODTC_VERSION} only)`);
  }
  const seen = new Set<string>();
  for (const t of [...c.trainable, ...c.frozen, ...c.optimizerGroups.flatMap((g) => g.states.flatMap((s) => s.momentums))]) {
    if (!t.name) throw new OdtcError(`${source}: a tensor has no name`);
    if (t.dims.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new OdtcError(`${source}: ${t.name} has dims [${t.dims}]`);
    if (t.data.length !== elementCount(t.dims)) throw new OdtcError(`${source}: ${t.name} holds ${t.data.length} values, its dims [${t.dims}] need ${elementCount(t.dims)}`);
  }
  for (const t of [...c.trainable, ...c.frozen]) {
    if (seen.has(t.name)) throw new OdtcError(`${source}: parameter ${t.name} appears twice`);
    seen.add(t.name);
  }
  const trainable = new Map(c.trainable.map((t) => [t.name, t]));
  for (const g of c.optimizerGroups) {
    for (const s of g.states) {
      const param = trainable.get(s.param);
      if (!param) throw new OdtcError(`${source}: optimizer group ${g.name} has state for ${s.param}, which is no trainable parameter`);
      for (const m of s.momentums) {
        if (m.dims.join() !== param.dims.join()) throw new OdtcError(`${source}: ${s.param}'s ${m.name} is [${m.dims}], the parameter [${param.dims}]`);
      }
    }
  }
}

// ---------------------------------------------------------------- writer

/** A table field: a scalar stored inline, or an object written after the table. */
type Field =
  | { kind: 'i32' | 'f32'; value: number }
  | { kind: 'i64'; value: number }
  | { kind: 'bool'; value: boolean }
  | { kind: 'ref'; write: () => number }
  | undefined;

const FIELD_SIZE = { i64: 8, i32: 4, f32: 4, ref: 4, bool: 1 } as const;

/** Lays objects out front to back: each table before the objects it points to, so that every
 * offset is a forward (unsigned) one as FlatBuffers requires. */
class Writer {
  private buf = new Uint8Array(1 << 12);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < this.length + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  /** Pads so that the next write, `before` bytes in, lands on a multiple of `align`. */
  align(align: number, before = 0): void {
    while ((this.length + before) % align) this.reserve(1);
  }

  private patchOffset(slot: number, target: number): void {
    this.view.setUint32(slot, target - slot, true);
  }

  header(identifier: string): number {
    const root = this.reserve(8);
    for (let i = 0; i < 4; i++) this.buf[root + 4 + i] = identifier.charCodeAt(i);
    return root;
  }

  setRoot(slot: number, target: number): void {
    this.patchOffset(slot, target);
  }

  table(fields: Field[]): number {
    // Widest fields first, so that one 8-byte aligned table start aligns them all.
    const order = fields.map((f, i) => i).filter((i) => fields[i]).sort((a, b) => FIELD_SIZE[fields[b]!.kind] - FIELD_SIZE[fields[a]!.kind]);
    const offsets = new Array<number>(fields.length).fill(0);
    let inline = 4;
    for (const i of order) {
      const size = FIELD_SIZE[fields[i]!.kind];
      inline = Math.ceil(inline / size) * size;
      offsets[i] = inline;
      inline += size;
    }
    const vtableSize = 4 + 2 * fields.length;
    this.align(2);
    const vtable = this.reserve(vtableSize);
    this.view.setUint16(vtable, vtableSize, true);
    this.view.setUint16(vtable + 2, inline, true);
    offsets.forEach((o, i) => this.view.setUint16(vtable + 4 + 2 * i, o, true));
    this.align(8);
    const table = this.reserve(inline);
    this.view.setInt32(table, table - vtable, true);
    const children: [number, () => number][] = [];
    fields.forEach((f, i) => {
      if (!f) return;
      const at = table + offsets[i];
      if (f.kind === 'i32') this.view.setInt32(at, f.value, true);
      else if (f.kind === 'f32') this.view.setFloat32(at, f.value, true);
      else if (f.kind === 'i64') this.view.setBigInt64(at, BigInt(f.value), true);
      else if (f.kind === 'bool') this.buf[at] = f.value ? 1 : 0;
      else if (f.kind === 'ref') children.push([at, f.write]);
    });
    for (const [slot, write] of children) this.patchOffset(slot, write());
    return table;
  }

  string(s: string): number {
    const bytes = new TextEncoder().encode(s);
    this.align(4);
    const at = this.reserve(4 + bytes.length + 1);
    this.view.setUint32(at, bytes.length, true);
    this.buf.set(bytes, at + 4);
    return at;
  }

  /** A vector of scalars; its elements aligned to `align`. */
  bytes(data: Uint8Array, align: number): number {
    this.align(Math.max(4, align), 4);
    const at = this.reserve(4 + data.length);
    this.view.setUint32(at, data.length, true);
    this.buf.set(data, at + 4);
    return at;
  }

  int64s(values: readonly number[]): number {
    this.align(8, 4);
    const at = this.reserve(4 + 8 * values.length);
    this.view.setUint32(at, values.length, true);
    values.forEach((v, i) => this.view.setBigInt64(at + 4 + 8 * i, BigInt(v), true));
    return at;
  }

  /** A vector of offsets to objects written after it. */
  refs(writers: (() => number)[]): number {
    this.align(4);
    const at = this.reserve(4 + 4 * writers.length);
    this.view.setUint32(at, writers.length, true);
    writers.forEach((write, i) => this.patchOffset(at + 4 + 4 * i, write()));
    return at;
  }

  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

const ref = (write: () => number): Field => ({ kind: 'ref', write });

function tensorFields(w: Writer, t: OdtcTensor): Field[] {
  const raw = new Uint8Array(t.data.length * 4);
  const view = new DataView(raw.buffer);
  t.data.forEach((v, i) => view.setFloat32(4 * i, v, true));
  // Tensor: name, doc_string, dims, data_type, raw_data.
  return [ref(() => w.string(t.name)), undefined, ref(() => w.int64s(t.dims)), { kind: 'i32', value: FLOAT }, ref(() => w.bytes(raw, 16))];
}

function tensors(w: Writer, list: readonly OdtcTensor[]): Field {
  return ref(() => w.refs(list.map((t) => () => w.table(tensorFields(w, t)))));
}

function properties<T>(w: Writer, record: Record<string, T>, value: (v: T) => Field): Field {
  const names = Object.keys(record).sort();
  return ref(() => w.refs(names.map((name) => () => w.table([ref(() => w.string(name)), value(record[name])]))));
}

/** The checkpoint's bytes, after checking it against the contract (checkOdtc). */
export function writeOdtc(c: OdtcCheckpoint): Uint8Array {
  checkOdtc(c, 'checkpoint');
  const w = new Writer();
  const root = w.header(IDENTIFIER);
  const group = (g: OdtcOptimizerGroup) => () => w.table([
    ref(() => w.string(g.name)),
    { kind: 'i64', value: g.step },
    { kind: 'f32', value: g.initialLearningRate },
    ref(() => w.refs(g.states.map((s) => () => w.table([ref(() => w.string(s.param)), tensors(w, s.momentums)])))),
  ]);
  const checkpoint = w.table([
    { kind: 'i32', value: c.version },
    // ModuleState: requires_grad_params, frozen_params, is_nominal_state, has_external_data.
    ref(() => w.table([tensors(w, c.trainable), tensors(w, c.frozen), undefined, undefined])),
    c.optimizerGroups.length ? ref(() => w.refs(c.optimizerGroups.map(group))) : undefined,
    ref(() => w.table([
      properties(w, c.ints, (v) => ({ kind: 'i64', value: v })),
      properties(w, c.floats, (v) => ({ kind: 'f32', value: v })),
      properties(w, c.strings, (v) => ref(() => w.string(v))),
    ])),
  ]);
  w.setRoot(root, checkpoint);
  return w.result();
}

// ---------------------------------------------------------------- reader

class Reader {
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array, private readonly source: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(what: string): never {
    throw new OdtcError(`${this.source}: not a readable ODTC checkpoint (${what})`);
  }

  private check(at: number, size: number, what: string): void {
    if (!Number.isInteger(at) || at < 0 || at + size > this.bytes.length) this.fail(`${what} lies outside the file`);
  }

  u32(at: number, what: string): number {
    this.check(at, 4, what);
    return this.view.getUint32(at, true);
  }

  /** The object an offset field points to. */
  follow(at: number, what: string): number {
    return at + this.u32(at, what);
  }

  /** Field `index` of the table at `table`: its position, or undefined when absent. */
  field(table: number, index: number, what: string): number | undefined {
    this.check(table, 4, what);
    const vtable = table - this.view.getInt32(table, true);
    this.check(vtable, 4, `${what}'s vtable`);
    const vtableSize = this.view.getUint16(vtable, true);
    const tableSize = this.view.getUint16(vtable + 2, true);
    if (4 + 2 * index + 2 > vtableSize) return undefined;
    this.check(vtable, vtableSize, `${what}'s vtable`);
    const offset = this.view.getUint16(vtable + 4 + 2 * index, true);
    if (!offset) return undefined;
    if (offset >= tableSize) this.fail(`${what} field ${index} lies past its table`);
    this.check(table + offset, 1, what);
    return table + offset;
  }

  i32(at: number | undefined, what: string, fallback = 0): number {
    if (at === undefined) return fallback;
    this.check(at, 4, what);
    return this.view.getInt32(at, true);
  }

  bool(at: number | undefined, what: string): boolean {
    if (at === undefined) return false;
    this.check(at, 1, what);
    return this.bytes[at] !== 0;
  }

  f32(at: number | undefined, what: string): number {
    if (at === undefined) return 0;
    this.check(at, 4, what);
    return this.view.getFloat32(at, true);
  }

  i64(at: number | undefined, what: string): number {
    if (at === undefined) return 0;
    this.check(at, 8, what);
    const v = this.view.getBigInt64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) this.fail(`${what} is ${v}`);
    return Number(v);
  }

  /** A vector's element count and the position of its first element. */
  vector(at: number, elementSize: number, what: string): { count: number; start: number } {
    const start = this.follow(at, what);
    const count = this.u32(start, what);
    this.check(start + 4, count * elementSize, what);
    return { count, start: start + 4 };
  }

  string(at: number | undefined, what: string): string {
    if (at === undefined) return '';
    const { count, start } = this.vector(at, 1, what);
    return new TextDecoder('utf-8', { fatal: false }).decode(this.bytes.subarray(start, start + count));
  }

  tables(at: number | undefined, what: string): number[] {
    if (at === undefined) return [];
    const { count, start } = this.vector(at, 4, what);
    return Array.from({ length: count }, (_, i) => this.follow(start + 4 * i, what));
  }

  tensor(table: number, what: string): OdtcTensor {
    const name = this.string(this.field(table, 0, what), `${what} name`);
    const label = name || what;
    const dimsAt = this.field(table, 2, label);
    const dims: number[] = [];
    if (dimsAt !== undefined) {
      const { count, start } = this.vector(dimsAt, 8, `${label} dims`);
      for (let i = 0; i < count; i++) dims.push(this.i64(start + 8 * i, `${label} dims`));
    }
    const type = this.i32(this.field(table, 3, label), `${label} data type`);
    if (type !== FLOAT) throw new OdtcError(`${this.source}: ${label} has data type ${type}; glow-onnx reads float32 (1) only`);
    const rawAt = this.field(table, 4, label);
    if (rawAt === undefined) throw new OdtcError(`${this.source}: ${label} has no raw data (external data is not supported)`);
    const { count, start } = this.vector(rawAt, 1, `${label} data`);
    if (count % 4) this.fail(`${label} holds ${count} bytes, not whole float32 values`);
    const data = new Float32Array(count / 4);
    for (let i = 0; i < data.length; i++) data[i] = this.view.getFloat32(start + 4 * i, true);
    return { name, dims, data };
  }
}

/** Reads and checks a checkpoint (checkOdtc): whatever it returns, ORT 1.19.2 accepts. */
export function readOdtc(bytes: Uint8Array, source: string): OdtcCheckpoint {
  const r = new Reader(bytes, source);
  if (!isOdtc(bytes)) throw new OdtcError(`${source}: not an ODTC checkpoint (no "${IDENTIFIER}" file identifier)`);
  const root = r.follow(0, 'root');
  const version = r.i32(r.field(root, 0, 'checkpoint'), 'version');
  // The version first: a future layout may place everything else differently.
  if (version !== ODTC_VERSION) checkOdtc({ version, trainable: [], frozen: [], optimizerGroups: [], ints: {}, floats: {}, strings: {} }, source);
  const moduleAt = r.field(root, 1, 'checkpoint');
  if (moduleAt === undefined) throw new OdtcError(`${source}: the ODTC checkpoint has no module state`);
  const module = r.follow(moduleAt, 'module state');
  const list = (index: number, what: string) => {
    const at = r.field(module, index, 'module state');
    if (at === undefined) throw new OdtcError(`${source}: the ODTC checkpoint has no ${what} list`);
    return r.tables(at, what).map((t) => r.tensor(t, `a ${what} tensor`));
  };
  const trainable = list(0, 'trainable parameter');
  const frozen = list(1, 'frozen parameter');
  if (r.bool(r.field(module, 2, 'module state'), 'is_nominal_state')) throw new OdtcError(`${source}: a nominal checkpoint holds no parameter values`);
  const optimizerGroups = r.tables(r.field(root, 2, 'checkpoint'), 'optimizer groups').map((g): OdtcOptimizerGroup => ({
    name: r.string(r.field(g, 0, 'optimizer group'), 'optimizer group name'),
    step: r.i64(r.field(g, 1, 'optimizer group'), 'optimizer step'),
    initialLearningRate: r.f32(r.field(g, 2, 'optimizer group'), 'initial learning rate'),
    states: r.tables(r.field(g, 3, 'optimizer group'), 'optimizer states').map((s) => ({
      param: r.string(r.field(s, 0, 'optimizer state'), 'optimizer state name'),
      momentums: r.tables(r.field(s, 1, 'optimizer state'), 'momentums').map((t) => r.tensor(t, 'a momentum')),
    })),
  }));
  const bag = r.field(root, 3, 'checkpoint');
  const props = <T>(index: number, read: (at: number | undefined, what: string) => T): Record<string, T> => {
    if (bag === undefined) return {};
    const table = r.follow(bag, 'property bag');
    return Object.fromEntries(r.tables(r.field(table, index, 'property bag'), 'properties').map((p) => {
      const name = r.string(r.field(p, 0, 'property'), 'property name');
      return [name, read(r.field(p, 1, name), name)];
    }));
  };
  const c: OdtcCheckpoint = {
    version, trainable, frozen, optimizerGroups,
    ints: props(0, (at, what) => r.i64(at, what)),
    floats: props(1, (at, what) => r.f32(at, what)),
    strings: props(2, (at, what) => r.string(at, what)),
  };
  checkOdtc(c, source);
  return c;
}
