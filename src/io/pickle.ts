// A small pickle virtual machine (protocols 2 to 5) for the subset that state_dicts use. It never
// imports or runs anything named by the file: GLOBAL and STACK_GLOBAL resolve only through the
// caller's allow-list, to JavaScript stand-ins. A global outside the list becomes an inert
// PyOpaque placeholder (and so does anything built from it) so that the caller can refuse
// it with a precise message if, and only if, it needs that value; a checkpoint whose optimizer
// state holds, say, a numpy scalar can still yield its model weights.

import { CheckpointError } from './checkpoint-error.js';

export type PyValue =
  | null | boolean | number | bigint | string | Uint8Array
  | PyTuple | PyList | PyDict | PySet | PyGlobal | PyOpaque | PyHost;

export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

export class PyList {
  constructor(readonly items: PyValue[]) {}
}

export class PySet {
  constructor(readonly items: PyValue[], readonly frozen: boolean) {}
}

/** Keys that Python would hash equal map to one slot; other (unhashable-here) keys are kept apart. */
function slotKey(key: PyValue): unknown {
  if (typeof key === 'boolean') return Number(key);
  if (typeof key === 'bigint') return Number.isSafeInteger(Number(key)) ? Number(key) : `bigint:${key}`;
  return key;
}

/** A dict or OrderedDict: entries in insertion order, plus attributes set on it by BUILD. */
export class PyDict {
  private readonly slots = new Map<unknown, { key: PyValue; value: PyValue }>();
  /** Instance attributes from BUILD; torch stores `_metadata` on state_dict OrderedDicts this way. */
  readonly attributes = new Map<string, PyValue>();

  constructor(readonly typeName: 'dict' | 'OrderedDict' = 'dict') {}

  set(key: PyValue, value: PyValue): void {
    const slot = this.slots.get(slotKey(key));
    if (slot) slot.value = value;
    else this.slots.set(slotKey(key), { key, value });
  }

  get(key: PyValue): PyValue | undefined {
    return this.slots.get(slotKey(key))?.value;
  }

  has(key: PyValue): boolean {
    return this.slots.has(slotKey(key));
  }

  get size(): number {
    return this.slots.size;
  }

  *entries(): IterableIterator<[PyValue, PyValue]> {
    for (const { key, value } of this.slots.values()) yield [key, value];
  }

  keys(): PyValue[] {
    return [...this.slots.values()].map(({ key }) => key);
  }
}

/** Base class of the objects that allow-listed callables return (tensors, storages, ...). */
export abstract class PyHost {
  abstract readonly typeName: string;
  /** BUILD on this object; hosts that accept no state leave this undefined. */
  build?(state: PyValue, fail: (problem: string) => never): void;
}

export type PyCall = (args: PyValue[], fail: (problem: string) => never) => PyValue;

/**
 * An allow-listed global. `call` is the stand-in for calling it (REDUCE, NEWOBJ); globals
 * without one are only values (such as torch.FloatStorage inside a persistent id).
 */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string, readonly call?: PyCall) {}

  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/**
 * A global that is not on the allow-list, or anything made from one by REDUCE, NEWOBJ or BUILD.
 * Nothing was run to produce it; `global` names the refused global for error messages.
 */
export class PyOpaque {
  constructor(readonly global: string) {}
}

export interface UnpickleOptions {
  /** Names the pickle in error messages, e.g. "model.pt: archive/data.pkl". */
  source: string;
  /** The allow-list: returns a stand-in for module.name, or undefined to refuse it. */
  resolveGlobal: (module: string, name: string) => PyGlobal | undefined;
  /** BINPERSID: maps a persistent id to its object; without it persistent ids are an error. */
  persistentLoad?: (pid: PyValue, fail: (problem: string) => never) => PyValue;
}

// ---------------------------------------------------------------------------------------------
// Standard stand-ins that are safe to provide in any allow-list

function argCount(name: string, args: PyValue[], counts: number[], fail: (problem: string) => never): void {
  if (!counts.includes(args.length)) fail(`${name} called with ${args.length} arguments`);
}

function iterableItems(value: PyValue, what: string, fail: (problem: string) => never): PyValue[] {
  if (value instanceof PyList || value instanceof PyTuple || value instanceof PySet) return value.items;
  if (value instanceof PyDict) return value.keys();
  return fail(`${what} got ${describePy(value)}, not an iterable`);
}

const latin1Encodable = /^[\u0000-\u00ff]*$/;

const STANDARD_GLOBALS: Record<string, PyCall> = {
  'collections.OrderedDict': (args, fail) => {
    argCount('collections.OrderedDict', args, [0, 1], fail);
    const dict = new PyDict('OrderedDict');
    if (args.length === 1) {
      for (const pair of iterableItems(args[0], 'collections.OrderedDict', fail)) {
        if (!(pair instanceof PyTuple || pair instanceof PyList) || pair.items.length !== 2) {
          return fail(`collections.OrderedDict got ${describePy(pair)} where a (key, value) pair belongs`);
        }
        dict.set(pair.items[0], pair.items[1]);
      }
    }
    return dict;
  },
  'builtins.set': (args, fail) => {
    argCount('set', args, [0, 1], fail);
    return new PySet(args.length ? [...iterableItems(args[0], 'set', fail)] : [], false);
  },
  'builtins.frozenset': (args, fail) => {
    argCount('frozenset', args, [0, 1], fail);
    return new PySet(args.length ? [...iterableItems(args[0], 'frozenset', fail)] : [], true);
  },
  // Protocol 2 writes Python 3 bytes as _codecs.encode(text, 'latin1').
  '_codecs.encode': (args, fail) => {
    argCount('_codecs.encode', args, [1, 2], fail);
    const [text, encoding = 'utf-8'] = args;
    if (typeof text !== 'string') return fail(`_codecs.encode got ${describePy(text)}, not a str`);
    if (encoding === 'latin1' || encoding === 'latin-1' || encoding === 'iso-8859-1') {
      if (!latin1Encodable.test(text)) return fail('_codecs.encode got text outside latin1');
      return Uint8Array.from(text, (c) => c.charCodeAt(0));
    }
    if (encoding === 'utf-8' || encoding === 'utf8') return new TextEncoder().encode(text);
    return fail(`_codecs.encode with encoding ${describePy(encoding)} is not supported`);
  },
};

/** Python 2 names that protocol-2 pickles written by Python 3 use for builtins. */
const MODULE_ALIASES: Record<string, string> = { __builtin__: 'builtins' };

/** Stand-ins for collections.OrderedDict, set, frozenset and _codecs.encode; undefined for anything else. */
export function standardGlobal(module: string, name: string): PyGlobal | undefined {
  const canonical = `${MODULE_ALIASES[module] ?? module}.${name}`;
  const call = Object.hasOwn(STANDARD_GLOBALS, canonical) ? STANDARD_GLOBALS[canonical] : undefined;
  return call ? new PyGlobal(module, name, call) : undefined;
}

// ---------------------------------------------------------------------------------------------
// The machine

const OP = {
  MARK: 0x28, // (
  STOP: 0x2e, // .
  POP: 0x30, // 0
  POP_MARK: 0x31, // 1
  DUP: 0x32, // 2
  BINFLOAT: 0x47, // G
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  BININT2: 0x4d, // M
  NONE: 0x4e, // N
  BINPERSID: 0x51, // Q
  REDUCE: 0x52, // R
  BINSTRING: 0x54, // T
  SHORT_BINSTRING: 0x55, // U
  BINUNICODE: 0x58, // X
  EMPTY_LIST: 0x5d, // ]
  APPEND: 0x61, // a
  BUILD: 0x62, // b
  GLOBAL: 0x63, // c
  DICT: 0x64, // d
  APPENDS: 0x65, // e
  BINGET: 0x68, // h
  LONG_BINGET: 0x6a, // j
  LIST: 0x6c, // l
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  SETITEM: 0x73, // s
  TUPLE: 0x74, // t
  SETITEMS: 0x75, // u
  EMPTY_DICT: 0x7d, // }
  EMPTY_TUPLE: 0x29, // )
  BINBYTES: 0x42, // B
  SHORT_BINBYTES: 0x43, // C
  PROTO: 0x80,
  NEWOBJ: 0x81,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  EMPTY_SET: 0x8f,
  ADDITEMS: 0x90,
  FROZENSET: 0x91,
  NEWOBJ_EX: 0x92,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
  BYTEARRAY8: 0x96,
} as const;

const OPCODE_NAMES = new Map<number, string>(Object.entries(OP).map(([name, code]) => [code, name]));

/** Opcodes of protocols 0, 1 and 5 that state_dicts never need, named for a clearer refusal. */
const UNSUPPORTED_NAMES: Record<number, string> = {
  0x46: 'FLOAT', 0x49: 'INT', 0x4c: 'LONG', 0x50: 'PERSID', 0x53: 'STRING', 0x56: 'UNICODE',
  0x67: 'GET', 0x70: 'PUT', 0x69: 'INST', 0x6f: 'OBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4',
  0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

const HIGHEST_PROTOCOL = 5;
/** Module and attribute names: identifiers joined by dots (Unicode letters allowed, no controls or spaces). */
const GLOBAL_NAME = /^[\p{L}\p{N}_.<>]+$/u;
const utf8 = new TextDecoder('utf-8', { fatal: true });
const latin1 = new TextDecoder('latin1');

export function unpickle(bytes: Uint8Array, options: UnpickleOptions): PyValue {
  return new Machine(bytes, options).run();
}

/** One pickle of several written back to back (legacy torch.save files): the value and the
 * offset just past its STOP opcode. Error positions stay offsets into `bytes`. */
export function unpickleAt(bytes: Uint8Array, start: number, options: UnpickleOptions): { value: PyValue; end: number } {
  const machine = new Machine(bytes, options, start);
  const value = machine.run();
  return { value, end: machine.offset };
}

class Machine {
  private readonly view: DataView;
  private pos = 0;
  /** The byte offset of the opcode being executed, for error messages. */
  private at = 0;
  private stack: PyValue[] = [];
  private readonly metastack: PyValue[][] = [];
  private readonly memo = new Map<number, PyValue>();
  private readonly fail: (problem: string) => never = (problem) => {
    throw new CheckpointError(`${this.options.source}: ${problem} (pickle byte ${this.at})`);
  };

  constructor(private readonly bytes: Uint8Array, private readonly options: UnpickleOptions, start = 0) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = start;
  }

  get offset(): number {
    return this.pos;
  }

  run(): PyValue {
    for (;;) {
      this.at = this.pos;
      if (this.pos >= this.bytes.length) this.fail('pickle ends without a STOP opcode (truncated)');
      const op = this.bytes[this.pos++];
      if (op === OP.STOP) return this.pop();
      this.step(op);
    }
  }

  private step(op: number): void {
    switch (op) {
      case OP.PROTO: {
        const protocol = this.u8();
        if (protocol > HIGHEST_PROTOCOL) this.fail(`pickle protocol ${protocol} is not supported`);
        return;
      }
      case OP.FRAME: this.take(8); return; // frames only group opcodes for buffered reading
      case OP.MARK: this.metastack.push(this.stack); this.stack = []; return;
      case OP.POP: this.pop(); return;
      case OP.POP_MARK: this.popMark(); return;
      case OP.DUP: this.push(this.top()); return;

      case OP.NONE: this.push(null); return;
      case OP.NEWTRUE: this.push(true); return;
      case OP.NEWFALSE: this.push(false); return;
      case OP.BININT: this.push(this.view.getInt32(this.take(4), true)); return;
      case OP.BININT1: this.push(this.u8()); return;
      case OP.BININT2: this.push(this.view.getUint16(this.take(2), true)); return;
      case OP.LONG1: this.push(this.long(this.u8())); return;
      case OP.LONG4: this.push(this.long(this.length(this.view.getInt32(this.take(4), true), 'LONG4'))); return;
      case OP.BINFLOAT: this.push(this.view.getFloat64(this.take(8), false)); return;

      case OP.SHORT_BINUNICODE: this.push(this.text(this.u8())); return;
      case OP.BINUNICODE: this.push(this.text(this.view.getUint32(this.take(4), true))); return;
      case OP.BINUNICODE8: this.push(this.text(this.u64())); return;
      case OP.SHORT_BINSTRING: this.push(latin1.decode(this.slice(this.u8()))); return;
      case OP.BINSTRING: this.push(latin1.decode(this.slice(this.length(this.view.getInt32(this.take(4), true), 'BINSTRING')))); return;
      case OP.SHORT_BINBYTES: this.push(this.slice(this.u8())); return;
      case OP.BINBYTES: this.push(this.slice(this.view.getUint32(this.take(4), true))); return;
      case OP.BINBYTES8: this.push(this.slice(this.u64())); return;
      case OP.BYTEARRAY8: this.push(this.slice(this.u64())); return;

      case OP.EMPTY_TUPLE: this.push(new PyTuple([])); return;
      case OP.TUPLE1: this.push(new PyTuple(this.popN(1))); return;
      case OP.TUPLE2: this.push(new PyTuple(this.popN(2))); return;
      case OP.TUPLE3: this.push(new PyTuple(this.popN(3))); return;
      case OP.TUPLE: this.push(new PyTuple(this.popMark())); return;
      case OP.EMPTY_LIST: this.push(new PyList([])); return;
      case OP.LIST: this.push(new PyList(this.popMark())); return;
      case OP.APPEND: { const item = this.pop(); this.listOnTop('APPEND').items.push(item); return; }
      case OP.APPENDS: { const items = this.popMark(); appendAll(this.listOnTop('APPENDS').items, items); return; }
      case OP.EMPTY_DICT: this.push(new PyDict()); return;
      case OP.DICT: { const dict = new PyDict(); this.setItems(dict, this.popMark()); this.push(dict); return; }
      case OP.SETITEM: { const [key, value] = this.popN(2); this.dictOnTop('SETITEM').set(key, value); return; }
      case OP.SETITEMS: { const items = this.popMark(); this.setItems(this.dictOnTop('SETITEMS'), items); return; }
      case OP.EMPTY_SET: this.push(new PySet([], false)); return;
      case OP.ADDITEMS: {
        const items = this.popMark();
        const set = this.top();
        if (!(set instanceof PySet) || set.frozen) this.fail(`ADDITEMS on ${describePy(set)}, not a set`);
        appendAll(set.items, items);
        return;
      }
      case OP.FROZENSET: this.push(new PySet(this.popMark(), true)); return;

      case OP.BINPUT: this.memo.set(this.u8(), this.top()); return;
      case OP.LONG_BINPUT: this.memo.set(this.view.getUint32(this.take(4), true), this.top()); return;
      case OP.MEMOIZE: this.memo.set(this.memo.size, this.top()); return;
      case OP.BINGET: this.push(this.memoGet(this.u8())); return;
      case OP.LONG_BINGET: this.push(this.memoGet(this.view.getUint32(this.take(4), true))); return;

      case OP.GLOBAL: {
        const module = this.line('GLOBAL module');
        const name = this.line('GLOBAL name');
        this.push(this.resolve(module, name));
        return;
      }
      case OP.STACK_GLOBAL: {
        const [module, name] = this.popN(2);
        if (typeof module !== 'string' || typeof name !== 'string') {
          this.fail(`STACK_GLOBAL needs two str, got ${describePy(module)} and ${describePy(name)}`);
        }
        this.push(this.resolve(module, name));
        return;
      }
      case OP.REDUCE: {
        const [callable, args] = this.popN(2);
        this.push(this.call(callable, args, 'REDUCE'));
        return;
      }
      case OP.NEWOBJ: {
        const [cls, args] = this.popN(2);
        this.push(this.call(cls, args, 'NEWOBJ'));
        return;
      }
      case OP.NEWOBJ_EX: {
        const [cls, args, kwargs] = this.popN(3);
        if (cls instanceof PyOpaque) { this.push(cls); return; }
        if (!(kwargs instanceof PyDict) || kwargs.size > 0) this.fail(`NEWOBJ_EX with keyword arguments for ${describePy(cls)}`);
        this.push(this.call(cls, args, 'NEWOBJ_EX'));
        return;
      }
      case OP.BUILD: { const state = this.pop(); this.build(this.top(), state); return; }
      case OP.BINPERSID: {
        const pid = this.pop();
        if (!this.options.persistentLoad) this.fail('pickle has a persistent id but no loader was given');
        this.push(this.options.persistentLoad(pid, this.fail));
        return;
      }
      default: {
        const name = UNSUPPORTED_NAMES[op];
        this.fail(name
          ? `pickle opcode ${name} is not supported (only protocols 2 to 5 as torch.save writes them)`
          : `unknown pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
      }
    }
  }

  // -- stack

  private push(value: PyValue): void {
    this.stack.push(value);
  }

  private pop(): PyValue {
    if (this.stack.length === 0) this.fail(`${this.opName()} pops from an empty stack`);
    return this.stack.pop() as PyValue;
  }

  private top(): PyValue {
    if (this.stack.length === 0) this.fail(`${this.opName()} reads an empty stack`);
    return this.stack[this.stack.length - 1];
  }

  private popN(n: number): PyValue[] {
    if (this.stack.length < n) this.fail(`${this.opName()} needs ${n} stack items, found ${this.stack.length}`);
    return this.stack.splice(this.stack.length - n, n);
  }

  private popMark(): PyValue[] {
    const items = this.stack;
    const outer = this.metastack.pop();
    if (!outer) this.fail(`${this.opName()} without a MARK`);
    this.stack = outer;
    return items;
  }

  private opName(): string {
    return OPCODE_NAMES.get(this.bytes[this.at]) ?? 'opcode';
  }

  private listOnTop(op: string): PyList {
    const list = this.top();
    if (!(list instanceof PyList)) this.fail(`${op} on ${describePy(list)}, not a list`);
    return list;
  }

  private dictOnTop(op: string): PyDict {
    const dict = this.top();
    if (!(dict instanceof PyDict)) this.fail(`${op} on ${describePy(dict)}, not a dict`);
    return dict;
  }

  private setItems(dict: PyDict, items: PyValue[]): void {
    if (items.length % 2 !== 0) this.fail(`${this.opName()} has an odd number (${items.length}) of keys and values`);
    for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1]);
  }

  private memoGet(index: number): PyValue {
    if (!this.memo.has(index)) this.fail(`memo slot ${index} is read before it is written`);
    return this.memo.get(index) as PyValue;
  }

  // -- globals, calls, state

  private resolve(module: string, name: string): PyGlobal | PyOpaque {
    if (!GLOBAL_NAME.test(module) || !GLOBAL_NAME.test(name)) {
      this.fail(`global ${JSON.stringify(`${module}.${name}`.slice(0, DESCRIPTION_CHARS))} is not a dotted Python name`);
    }
    return this.options.resolveGlobal(module, name) ?? new PyOpaque(`${module}.${name}`);
  }

  private call(callable: PyValue, args: PyValue, op: string): PyValue {
    if (callable instanceof PyOpaque) return callable;
    if (!(args instanceof PyTuple)) this.fail(`${op} arguments are ${describePy(args)}, not a tuple`);
    if (!(callable instanceof PyGlobal)) this.fail(`${op} calls ${describePy(callable)}, which is not callable`);
    if (!callable.call) this.fail(`${op} calls ${callable.qualifiedName}, which is not a callable this reader knows`);
    return callable.call(args.items, this.fail);
  }

  private build(target: PyValue, state: PyValue): void {
    if (target instanceof PyOpaque) return;
    if (target instanceof PyHost && target.build) {
      target.build(state, this.fail);
      return;
    }
    if (target instanceof PyDict) {
      // Default object state: a dict of attributes, or (dict, slots) where either may be None.
      const parts = state instanceof PyTuple && state.items.length === 2 ? state.items : [state];
      for (const part of parts) {
        if (part === null) continue;
        if (!(part instanceof PyDict)) this.fail(`BUILD on a ${target.typeName} with state ${describePy(part)}`);
        for (const [key, value] of part.entries()) {
          if (typeof key !== 'string') this.fail(`BUILD attribute name ${describePy(key)} is not a str`);
          target.attributes.set(key, value);
        }
      }
      return;
    }
    this.fail(`BUILD on ${describePy(target)} is not supported`);
  }

  // -- reading bytes

  /** Advances past n bytes and returns where they start. */
  private take(n: number): number {
    const start = this.pos;
    if (n > this.bytes.length - start) {
      this.fail(`${this.opName()} needs ${n} bytes but the pickle ends after ${this.bytes.length - start} (truncated)`);
    }
    this.pos += n;
    return start;
  }

  private u8(): number {
    return this.bytes[this.take(1)];
  }

  private u64(): number {
    const start = this.take(8);
    const value = this.view.getUint32(start, true) + this.view.getUint32(start + 4, true) * 2 ** 32;
    if (!Number.isSafeInteger(value)) this.fail(`${this.opName()} length ${value} is beyond 2^53`);
    return value;
  }

  private length(value: number, op: string): number {
    if (value < 0) this.fail(`${op} has negative length ${value}`);
    return value;
  }

  private slice(n: number): Uint8Array {
    const start = this.take(n);
    return this.bytes.subarray(start, start + n);
  }

  private text(n: number): string {
    const bytes = this.slice(n);
    try {
      return utf8.decode(bytes);
    } catch {
      return this.fail(`${this.opName()} is not valid UTF-8`);
    }
  }

  /** Little-endian two's complement; a number when exact, else a bigint. */
  private long(n: number): number | bigint {
    const bytes = this.slice(n);
    if (n === 0) return 0;
    if (n <= 6) {
      let value = 0;
      for (let i = n - 1; i >= 0; i--) value = value * 256 + bytes[i];
      return bytes[n - 1] & 0x80 ? value - 2 ** (8 * n) : value;
    }
    let value = 0n;
    for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
    if (bytes[n - 1] & 0x80) value -= 1n << BigInt(8 * n);
    const asNumber = Number(value);
    return Number.isSafeInteger(asNumber) ? asNumber : value;
  }

  /** GLOBAL's text arguments: ASCII up to a newline. */
  private line(what: string): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) this.fail(`${what} has no terminating newline (truncated)`);
    const text = latin1.decode(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return text;
  }
}

/** push(...items) overflows the call stack for very long lists. */
function appendAll(target: PyValue[], items: PyValue[]): void {
  for (const item of items) target.push(item);
}

const DESCRIPTION_CHARS = 60;

/** A short, non-recursive description of a value for error messages. */
export function describePy(value: PyValue | undefined): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'None';
  switch (typeof value) {
    case 'boolean': return value ? 'True' : 'False';
    case 'number': return `${Number.isInteger(value) ? 'int' : 'float'} ${value}`;
    case 'bigint': return `int ${value}`;
    case 'string': {
      const shown = value.length > DESCRIPTION_CHARS ? `${value.slice(0, DESCRIPTION_CHARS)}...` : value;
      return `str ${JSON.stringify(shown)}`;
    }
  }
  if (value instanceof Uint8Array) return `bytes of length ${value.length}`;
  if (value instanceof PyTuple) return `a tuple of ${value.items.length}`;
  if (value instanceof PyList) return `a list of ${value.items.length}`;
  if (value instanceof PySet) return `a ${value.frozen ? 'frozenset' : 'set'} of ${value.items.length}`;
  if (value instanceof PyDict) return `a ${value.typeName} of ${value.size}`;
  if (value instanceof PyGlobal) return value.qualifiedName;
  if (value instanceof PyOpaque) return `a ${value.global} object`;
  return `a ${value.typeName}`;
}
