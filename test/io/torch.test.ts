import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CheckpointError } from '../../src/io/checkpoint-error.js';
import { PyDict, PyList, PyOpaque, PySet, PyTuple, PyValue, standardGlobal, unpickle } from '../../src/io/pickle.js';
import { TorchTensor, readTorchCheckpoint, readWeightsFile } from '../../src/io/torch.js';
import { crc32, readZip, readZipEntries } from '../../src/io/zip.js';
import { writeSafetensors } from '../../src/io/safetensors.js';

// Fixtures come from scripts/make_torch_pickle_fixtures.py (Debian's python3-torch).
const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/torch-io/', import.meta.url));

function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(FIXTURES + name));
}

interface ExpectedTensor {
  name: string;
  dtype: string;
  shape: number[];
  values: (number | string)[];
}

interface Expected {
  torch_version: string;
  readable: Record<string, ExpectedTensor[]>;
  unreadable: string[];
}

const expected = JSON.parse(readFileSync(FIXTURES + 'expected.json', 'utf8')) as Expected;

function expectedValue(value: number | string): number {
  if (value === 'nan') return NaN;
  if (value === 'inf') return Infinity;
  if (value === '-inf') return -Infinity;
  return value as number;
}

/** Exact comparison: NaN equals NaN, and -0 differs from 0. */
function expectSameTensors(actual: Map<string, TorchTensor>, want: ExpectedTensor[], file: string): void {
  expect([...actual.keys()], `${file} keys`).to.deep.equal(want.map((t) => t.name));
  for (const tensor of want) {
    const got = actual.get(tensor.name)!;
    const where = `${file} ${tensor.name}`;
    expect(got.dtype, `${where} dtype`).to.equal(tensor.dtype);
    expect(got.shape, `${where} shape`).to.deep.equal(tensor.shape);
    expect(got.data).to.be.instanceOf(Float64Array);
    expect(got.data.length, `${where} length`).to.equal(tensor.values.length);
    tensor.values.forEach((value, i) => {
      const want = expectedValue(value);
      if (!Object.is(got.data[i], want)) expect.fail(`${where}[${i}] is ${got.data[i]}, expected ${want}`);
    });
  }
}

function thrownBy(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  return undefined;
}

function expectCheckpointError(action: () => unknown, source: string, ...patterns: RegExp[]): string {
  const error = thrownBy(action);
  expect(error, 'a CheckpointError').to.be.instanceOf(CheckpointError);
  const message = (error as Error).message;
  expect(message.startsWith(`${source}: `), `"${message}" starts with the file name`).to.equal(true);
  expect(message).to.not.include('\n');
  for (const pattern of patterns) expect(message).to.match(pattern);
  return message;
}

// ---------------------------------------------------------------------------------------------
// Helpers that build archives and pickles byte by byte

const encoder = new TextEncoder();

function u16(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff];
}

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

/** A stored (uncompressed) ZIP with correct CRCs, the way torch lays one out minus the padding. */
function storedZip(entries: [string, Uint8Array][], comment = ''): Uint8Array {
  const out: number[] = [];
  const central: number[] = [];
  for (const [name, data] of entries) {
    const nameBytes = [...encoder.encode(name)];
    const crc = crc32(data);
    const offset = out.length;
    out.push(...u32(0x04034b50), ...u16(20), ...u16(0), ...u16(0), ...u16(0), ...u16(0), ...u32(crc),
      ...u32(data.length), ...u32(data.length), ...u16(nameBytes.length), ...u16(0), ...nameBytes);
    for (const byte of data) out.push(byte);
    central.push(...u32(0x02014b50), ...u16(20), ...u16(20), ...u16(0), ...u16(0), ...u16(0), ...u16(0), ...u32(crc),
      ...u32(data.length), ...u32(data.length), ...u16(nameBytes.length), ...u16(0), ...u16(0), ...u16(0), ...u16(0),
      ...u32(0), ...u32(offset), ...nameBytes);
  }
  const directoryOffset = out.length;
  out.push(...central);
  const commentBytes = [...encoder.encode(comment)];
  out.push(...u32(0x06054b50), ...u16(0), ...u16(0), ...u16(entries.length), ...u16(entries.length),
    ...u32(central.length), ...u32(directoryOffset), ...u16(commentBytes.length), ...commentBytes);
  return Uint8Array.from(out);
}

/** Emits protocol-2 opcodes, as torch.save writes them. */
class PickleWriter {
  private readonly out: number[] = [0x80, 2];

  op(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }

  mark(): this { return this.op(0x28); }
  tuple(): this { return this.op(0x74); }
  emptyTuple(): this { return this.op(0x29); }
  emptyDict(): this { return this.op(0x7d); }
  emptyList(): this { return this.op(0x5d); }
  setItems(): this { return this.op(0x75); }
  setItem(): this { return this.op(0x73); }
  append(): this { return this.op(0x61); }
  reduce(): this { return this.op(0x52); }
  newObj(): this { return this.op(0x81); }
  build(): this { return this.op(0x62); }
  persId(): this { return this.op(0x51); }
  bool(value: boolean): this { return this.op(value ? 0x88 : 0x89); }

  str(text: string): this {
    const bytes = encoder.encode(text);
    return this.op(0x58, ...u32(bytes.length), ...bytes);
  }

  int(value: number): this {
    return this.op(0x4a, ...u32(value >>> 0));
  }

  global(module: string, name: string): this {
    return this.op(0x63, ...encoder.encode(`${module}\n${name}\n`));
  }

  ints(values: number[]): this {
    this.mark();
    for (const value of values) this.int(value);
    return this.tuple();
  }

  /** torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict());
   * `legacyView` writes the sixth item of a legacy persistent id (None: no view). */
  tensor(view: TensorView, rebuild = true, legacyView?: (w: this) => void): this {
    if (rebuild) this.global('torch._utils', '_rebuild_tensor_v2');
    this.mark();
    this.mark().str('storage').global(...view.storageType).str(view.key).str('cpu').int(view.numel);
    if (legacyView) legacyView(this);
    this.tuple().persId();
    this.int(view.offset).ints(view.shape).ints(view.stride).bool(false);
    this.global('collections', 'OrderedDict').emptyTuple().reduce();
    this.tuple();
    return rebuild ? this.reduce() : this;
  }

  bytes(): Uint8Array {
    return Uint8Array.from([...this.out, 0x2e]);
  }
}

interface TensorView {
  storageType: [string, string];
  key: string;
  numel: number;
  offset: number;
  shape: number[];
  stride: number[];
}

function floatView(numel: number, shape = [numel], stride = [1], offset = 0, key = '0'): TensorView {
  return { storageType: ['torch', 'FloatStorage'], key, numel, offset, shape, stride };
}

function float32Bytes(values: number[], littleEndian = true): Uint8Array {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  values.forEach((v, i) => view.setFloat32(i * 4, v, littleEndian));
  return bytes;
}

/** An archive/ checkpoint holding one pickle and the given storage records. */
function archive(pickle: Uint8Array, records: Record<string, Uint8Array> = {}, extra: [string, Uint8Array][] = []): Uint8Array {
  return storedZip([
    ['archive/data.pkl', pickle],
    ...Object.entries(records).map(([key, data]): [string, Uint8Array] => [`archive/data/${key}`, data]),
    ['archive/version', encoder.encode('3\n')],
    ...extra,
  ]);
}

/** A one-entry state_dict {name: <tensor>} whose value is written by `value`. */
function oneEntry(name: string, value: (w: PickleWriter) => void): Uint8Array {
  const w = new PickleWriter().emptyDict().mark().str(name);
  value(w);
  return w.setItems().bytes();
}

/** A legacy torch.save stream: magic number, protocol, system info, the object pickle, the
 * storage keys, then each storage's int64 element count and bytes. `object` writes tensors
 * with legacy persistent ids (six items: w.tensor(view, true, (v) => v.op(0x4e)) for no view). */
function legacyFile(
  object: Uint8Array, storages: [string, Uint8Array][], { littleEndian = true, protocol = 1001 } = {},
): Uint8Array {
  const magic = new PickleWriter().op(0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19).bytes();
  const version = new PickleWriter().int(protocol).bytes();
  const sysInfo = new PickleWriter().emptyDict().mark().str('protocol_version').int(1001).str('little_endian').bool(littleEndian).setItems().bytes();
  const keys = new PickleWriter().emptyList().mark();
  for (const [key] of storages) keys.str(key);
  const parts = [magic, version, sysInfo, object, keys.op(0x65).bytes()];
  for (const [, data] of storages) {
    const count = new Uint8Array(8);
    new DataView(count.buffer).setBigInt64(0, BigInt(data.length / 4), true);
    parts.push(count, data);
  }
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!.map((h) => parseInt(h, 16)));
}

/** Small deterministic generator (mulberry32) for the fuzz tests. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------

describe('torch checkpoint import', () => {
  describe('fixtures written by torch.save', () => {
    it(`were generated (torch ${expected.torch_version}) and are all present`, () => {
      expect(Object.keys(expected.readable)).to.include.members(['plain.pt', 'module.pt', 'checkpoint.pt']);
      for (const name of [...Object.keys(expected.readable), ...expected.unreadable]) {
        expect(fixture(name).length, name).to.be.greaterThan(0);
      }
    });

    for (const [name, tensors] of Object.entries(expected.readable)) {
      it(`${name}: every tensor matches torch exactly`, () => {
        expectSameTensors(readTorchCheckpoint(fixture(name), name), tensors, name);
      });
      it(`${name}: readWeightsFile dispatches to the torch reader`, () => {
        expectSameTensors(readWeightsFile(fixture(name), name), tensors, name);
      });
    }

    it('plain.pt: views of one storage are independent arrays with the right offsets', () => {
      const tensors = readTorchCheckpoint(fixture('plain.pt'), 'plain.pt');
      expect([...tensors.get('shared_slice')!.data]).to.deep.equal([2, 3, 4]);
      expect([...tensors.get('shared_strided')!.data]).to.deep.equal([1, 4, 7]);
      expect([...tensors.get('transposed')!.data]).to.deep.equal([0, 3, 1, 4, 2, 5]);
      expect(tensors.get('shared_slice')!.data.buffer).to.not.equal(tensors.get('shared_full')!.data.buffer);
      expect(tensors.get('scalar')!.shape).to.deep.equal([]);
      expect(tensors.get('empty_2d')!.shape).to.deep.equal([2, 0, 3]);
    });

    it('module.pt: the OrderedDict\'s _metadata attribute is not a tensor, and num_batches_tracked is', () => {
      const tensors = readTorchCheckpoint(fixture('module.pt'), 'module.pt');
      expect(tensors.has('_metadata')).to.equal(false);
      expect(tensors.get('norm.num_batches_tracked')).to.deep.include({ dtype: 'int64', shape: [] });
    });

    it('checkpoint.pt: picks the wrapped state_dict and ignores epoch, optimizer state and an argparse.Namespace', () => {
      const tensors = readTorchCheckpoint(fixture('checkpoint.pt'), 'checkpoint.pt');
      expect([...tensors.keys()]).to.deep.equal(expected.readable['module.pt'].map((t) => t.name));
    });

    const unreadable: [string, RegExp[]][] = [
      ['legacy_module.pt', [/pickled __main__\.TinyNet object/, /arbitrary code/, /state_dict\(\)/]],
      ['plain_pickle.pkl', [/bare pickle/, /neither a ZIP archive nor the legacy format/, /safetensors/]],
      ['custom_class.pt', [/pickled __main__\.TinyNet object/, /arbitrary code/, /torch\.save\(model\.state_dict\(\), path\)/, /safetensors/]],
      ['wrapped_module.pt', [/key "model" holds a pickled __main__\.TinyNet object/, /arbitrary code/, /state_dict\(\)/]],
      ['config_object.pt', [/key "config" holds a pickled __main__\.Config object/, /refused global __main__\.Config/]],
      ['numpy_value.pt', [/key "mean" holds a pickled numpy\.core\.multiarray\._reconstruct object/, /arbitrary code/]],
      ['int64_beyond_2_53.pt', [/key "big"/, /9007199254740993/, /beyond 2\^53/]],
      ['complex.pt', [/key "z"/, /torch\.ComplexFloatStorage is not supported/]],
    ];
    for (const [name, patterns] of unreadable) {
      it(`${name}: CheckpointError naming the file and the problem`, () => {
        expect(expected.unreadable).to.include(name);
        expectCheckpointError(() => readTorchCheckpoint(fixture(name), name), name, ...patterns);
        expectCheckpointError(() => readWeightsFile(fixture(name), name), name, ...patterns);
      });
    }
  });

  describe('readWeightsFile', () => {
    it('reads safetensors and converts the dtypes', () => {
      const bytes = writeSafetensors([
        ['w', { dtype: 'F32', shape: [2, 2], data: [1, 2, 3, 4.5] }],
        ['n', { dtype: 'I64', shape: [], data: [7] }],
      ]);
      const tensors = readWeightsFile(bytes, 'model.safetensors');
      expect([...tensors.keys()]).to.deep.equal(['w', 'n']);
      expect(tensors.get('w')).to.deep.include({ dtype: 'float32', shape: [2, 2] });
      expect([...tensors.get('w')!.data]).to.deep.equal([1, 2, 3, 4.5]);
      expect(tensors.get('n')).to.deep.include({ dtype: 'int64', shape: [] });
    });

    it('turns safetensors errors into CheckpointErrors', () => {
      const bytes = writeSafetensors([['w', { dtype: 'F32', shape: [4], data: [1, 2, 3, 4] }]]);
      expectCheckpointError(() => readWeightsFile(bytes.subarray(0, bytes.length - 2), 'cut.safetensors'), 'cut.safetensors', /unused|past|needs|bytes/);
    });

    it('readTorchCheckpoint points a safetensors file to readWeightsFile', () => {
      const bytes = writeSafetensors([['w', { dtype: 'F32', shape: [1], data: [1] }]]);
      expectCheckpointError(() => readTorchCheckpoint(bytes, 'w.safetensors'), 'w.safetensors', /is a safetensors file/);
    });

    it('refuses anything else, naming the first bytes', () => {
      expectCheckpointError(() => readWeightsFile(encoder.encode('hello world'), 'notes.txt'), 'notes.txt', /neither a torch\.save ZIP archive nor a safetensors file/, /68 65 6c 6c/);
      expectCheckpointError(() => readWeightsFile(new Uint8Array(0), 'empty.pt'), 'empty.pt', /neither/);
    });
  });

  describe('legacy (pre-1.6) torch.save files', () => {
    it('legacy_chaiyujin.pkg: chaiyujin\'s {global_step, graph, optim} wrapper gives the same tensors as the ZIP file of that model', () => {
      const legacy = readTorchCheckpoint(fixture('legacy_chaiyujin.pkg'), 'legacy_chaiyujin.pkg');
      const zip = readTorchCheckpoint(new Uint8Array(readFileSync(`${FIXTURES}../glow-torch/chaiyujin_affine_lu_learntop.pt`)), 'zip.pt');
      expect([...legacy.keys()]).to.deep.equal([...zip.keys()]);
      for (const [name, t] of zip) {
        expect(legacy.get(name)!.shape, name).to.deep.equal(t.shape);
        expect(Buffer.from(legacy.get(name)!.data.buffer).equals(Buffer.from(t.data.buffer)), name).to.equal(true);
      }
    });

    it('reads storage views (torch 0.4\'s view metadata) and refuses views outside their storage', () => {
      const view = (start: number, size: number) => legacyFile(
        oneEntry('w', (w) => w.tensor(floatView(5, [size]), true, (v) => v.mark().str('0').int(start).int(size).tuple())),
        [['0', float32Bytes([1, 2, 3, 4, 5])]],
      );
      expect([...readTorchCheckpoint(view(2, 3), 'view.pt').get('w')!.data]).to.deep.equal([3, 4, 5]);
      expectCheckpointError(() => readTorchCheckpoint(view(3, 3), 'view.pt'), 'view.pt', /not \(key, offset, size\) within its 5 elements/);
    });

    it('refuses damaged and unsupported legacy files in one line', () => {
      const good = () => legacyFile(oneEntry('w', (w) => w.tensor(floatView(2), true, (v) => v.op(0x4e))), [['0', float32Bytes([1, 2])]]);
      expect([...readWeightsFile(good(), 'ok.pt').get('w')!.data]).to.deep.equal([1, 2]);
      const cases: [Uint8Array, RegExp][] = [
        [good().subarray(0, good().length - 1), /needs 8 bytes but the file ends after 7 \(truncated\)/],
        [legacyFile(oneEntry('w', (w) => w.tensor(floatView(2), true, (v) => v.op(0x4e))), [['0', float32Bytes([1, 2])]], { littleEndian: false }), /big-endian legacy/],
        [legacyFile(oneEntry('w', (w) => w.tensor(floatView(2), true, (v) => v.op(0x4e))), [['0', float32Bytes([1, 2])]], { protocol: 1000 }), /protocol version is int 1000, not 1001/],
        [legacyFile(oneEntry('w', (w) => w.tensor(floatView(2), true, (v) => v.op(0x4e))), [['0', float32Bytes([1, 2, 3])]]), /storage "0" holds 3 elements, but its tensors say 2/],
        [legacyFile(oneEntry('w', (w) => w.tensor(floatView(2), true, (v) => v.op(0x4e))), [['1', float32Bytes([1, 2])]]), /lists storage "1", which no tensor uses/],
        [legacyFile(oneEntry('w', (w) => w.tensor(floatView(2), true, (v) => v.op(0x4e))), []), /key "w": its storage "0" is missing from the legacy storage keys/],
      ];
      for (const [bytes, pattern] of cases) expectCheckpointError(() => readWeightsFile(bytes, 'bad.pt'), 'bad.pt', pattern);
    });
  });

  describe('crafted archives', () => {
    it('reads big-endian storages when byteorder says so', () => {
      const pickle = oneEntry('w', (w) => w.tensor(floatView(3)));
      const bytes = archive(pickle, { 0: float32Bytes([1.5, -2, 0.25], false) }, [['archive/byteorder', encoder.encode('big')]]);
      expect([...readTorchCheckpoint(bytes, 'be.pt').get('w')!.data]).to.deep.equal([1.5, -2, 0.25]);
      const odd = archive(pickle, { 0: float32Bytes([1, 2, 3]) }, [['archive/byteorder', encoder.encode('middle')]]);
      expectCheckpointError(() => readTorchCheckpoint(odd, 'odd.pt'), 'odd.pt', /byteorder says "middle"/);
    });

    it('accepts an archive folder of any name and a state_dict wrapped under model_state_dict', () => {
      const w = new PickleWriter().emptyDict().mark().str('epoch').int(5).str('model_state_dict').emptyDict().mark().str('w');
      w.tensor(floatView(2)).setItems().setItems();
      const bytes = storedZip([['my_run-7/data.pkl', w.bytes()], ['my_run-7/data/0', float32Bytes([3, 4])]]);
      const tensors = readTorchCheckpoint(bytes, 'run.pth');
      expect([...tensors.keys()]).to.deep.equal(['w']);
      expect([...tensors.get('w')!.data]).to.deep.equal([3, 4]);
    });

    it('unwraps _rebuild_from_type_v2 for plain tensors and refuses tensor subclasses', () => {
      const wrapped = (type: [string, string]) => oneEntry('w', (w) => {
        w.global('torch._tensor', '_rebuild_from_type_v2').mark().global('torch._utils', '_rebuild_tensor_v2')
          .global(...type).tensor(floatView(2), false).emptyDict().tuple().reduce();
      });
      const plain = archive(wrapped(['torch._tensor', 'Tensor']), { 0: float32Bytes([5, 6]) });
      expect([...readTorchCheckpoint(plain, 'v2.pt').get('w')!.data]).to.deep.equal([5, 6]);
      const subclass = archive(wrapped(['__main__', 'MyTensor']), { 0: float32Bytes([5, 6]) });
      expectCheckpointError(() => readTorchCheckpoint(subclass, 'sub.pt'), 'sub.pt', /key "w" holds a pickled __main__\.MyTensor object/, /arbitrary code/);
    });

    it('reads torch.nn.Parameter via _rebuild_parameter_with_state', () => {
      const pickle = oneEntry('p', (w) => {
        w.global('torch._utils', '_rebuild_parameter_with_state').mark().tensor(floatView(1)).bool(true)
          .global('collections', 'OrderedDict').emptyTuple().reduce().emptyDict().tuple().reduce();
      });
      expect([...readTorchCheckpoint(archive(pickle, { 0: float32Bytes([9]) }), 'p.pt').get('p')!.data]).to.deep.equal([9]);
    });

    it('names the key when a tensor cannot be read', () => {
      const missing = archive(oneEntry('w', (w) => w.tensor(floatView(2))));
      expectCheckpointError(() => readTorchCheckpoint(missing, 'm.pt'), 'm.pt', /key "w"/, /storage record "archive\/data\/0" is missing/);
      const pastEnd = archive(oneEntry('w', (w) => w.tensor(floatView(4, [2, 2], [2, 1], 1))), { 0: float32Bytes([1, 2, 3, 4]) });
      expectCheckpointError(() => readTorchCheckpoint(pastEnd, 'v.pt'), 'v.pt', /key "w"/, /reaches element 4 of a 4-element storage/);
      const short = archive(oneEntry('w', (w) => w.tensor(floatView(4))), { 0: float32Bytes([1, 2]) });
      expectCheckpointError(() => readTorchCheckpoint(short, 's.pt'), 's.pt', /key "w"/, /8 bytes, too short for 4 float32/);
      const quantized = archive(oneEntry('q', (w) => w.global('torch._utils', '_rebuild_qtensor').mark().tuple().reduce()));
      expectCheckpointError(() => readTorchCheckpoint(quantized, 'q.pt'), 'q.pt', /key "q"/, /_rebuild_qtensor, which this reader does not support/);
      const badBool = archive(oneEntry('b', (w) => w.tensor({ ...floatView(2), storageType: ['torch', 'BoolStorage'] })), { 0: Uint8Array.of(1, 7) });
      expectCheckpointError(() => readTorchCheckpoint(badBool, 'b.pt'), 'b.pt', /key "b"/, /byte 7, not 0 or 1/);
      const foreignStorage = archive(oneEntry('w', (w) => w.tensor({ ...floatView(1), storageType: ['numpy', 'float32'] })), { 0: float32Bytes([1]) });
      expectCheckpointError(() => readTorchCheckpoint(foreignStorage, 'f.pt'), 'f.pt', /key "w"/, /refused global numpy\.float32/);
    });

    it('refuses non-tensor values in a state_dict but skips _metadata', () => {
      const w = new PickleWriter().emptyDict().mark().str('w').tensor(floatView(1)).str('_metadata').emptyDict()
        .str('note').str('hello').setItems();
      expectCheckpointError(() => readTorchCheckpoint(archive(w.bytes(), { 0: float32Bytes([1]) }), 'n.pt'), 'n.pt', /key "note" is str "hello", not a tensor/);
      const ok = new PickleWriter().emptyDict().mark().str('w').tensor(floatView(1)).str('_metadata').emptyDict().setItems();
      expect([...readTorchCheckpoint(archive(ok.bytes(), { 0: float32Bytes([1]) }), 'ok.pt').keys()]).to.deep.equal(['w']);
    });

    it('explains what it found when there is no state_dict', () => {
      const list = new PickleWriter().emptyList().tensor(floatView(1)).append().bytes();
      expectCheckpointError(() => readTorchCheckpoint(archive(list), 'l.pt'), 'l.pt', /holds a list of 1, not a state_dict/);
      const noWeights = new PickleWriter().emptyDict().mark().str('epoch').int(3).str('lr').int(1).setItems().bytes();
      expectCheckpointError(() => readTorchCheckpoint(archive(noWeights), 'e.pt'), 'e.pt', /found no state_dict/, /keys: "epoch", "lr"\)$/);
      const onlyObject = new PickleWriter().emptyDict().mark().str('net').global('__main__', 'Net').emptyTuple().newObj()
        .emptyDict().build().setItems().bytes();
      expectCheckpointError(() => readTorchCheckpoint(archive(onlyObject), 'o.pt'), 'o.pt', /found no state_dict/,
        /key "net" holds a pickled __main__\.Net object, which would need arbitrary code/, /torch\.save\(model\.state_dict\(\), path\)/);
      const intKey = new PickleWriter().emptyDict().mark().int(0).tensor(floatView(1)).setItems().bytes();
      expectCheckpointError(() => readTorchCheckpoint(archive(intKey, { 0: float32Bytes([1]) }), 'i.pt'), 'i.pt', /key int 0 is not a str/);
      const empty = new PickleWriter().global('collections', 'OrderedDict').emptyTuple().reduce().bytes();
      expect(readTorchCheckpoint(archive(empty), 'empty.pt').size).to.equal(0);
    });

    it('recognises a TorchScript archive', () => {
      const pickle = new PickleWriter().global('__torch__', 'Net').emptyTuple().newObj().emptyDict().build().bytes();
      const bytes = archive(pickle, {}, [['archive/code/__torch__.py', encoder.encode('class Net: ...')]]);
      expectCheckpointError(() => readTorchCheckpoint(bytes, 'scripted.pt'), 'scripted.pt', /TorchScript archive/, /refused global __torch__\.Net/);
    });

    it('refuses a ZIP that is not a torch.save archive', () => {
      const bytes = storedZip([['weights.bin', Uint8Array.of(1, 2, 3)]]);
      expectCheckpointError(() => readTorchCheckpoint(bytes, 'x.zip'), 'x.zip', /without <archive>\/data\.pkl/, /"weights\.bin"/);
    });
  });

  describe('zip reader', () => {
    it('returns views into the input for stored entries', () => {
      const bytes = fixture('plain.pt');
      const entries = readZipEntries(bytes, 'plain.pt');
      expect([...entries.keys()]).to.include.members(['plain/data.pkl', 'plain/version']);
      for (const data of entries.values()) expect(data.buffer).to.equal(bytes.buffer);
    });

    it('handles an archive comment and deflated entries', () => {
      const stored = readZipEntries(fixture('plain.pt'), 'plain.pt');
      const deflated = readZipEntries(fixture('plain_deflated.pt'), 'plain_deflated.pt');
      expect([...deflated.keys()]).to.deep.equal([...stored.keys()]);
      for (const [name, data] of stored) expect(Buffer.from(deflated.get(name)!).equals(Buffer.from(data)), name).to.equal(true);
      const commented = storedZip([['a', Uint8Array.of(1)]], 'PK\u0005\u0006 looks like an end record');
      expect([...readZipEntries(commented, 'c.zip').get('a')!]).to.deep.equal([1]);
    });

    it('reads ZIP64 sizes and offsets', () => {
      const zip = readZip(fixture('plain_zip64.pt'), 'plain_zip64.pt');
      expect(zip.names()[0]).to.equal('archive/data.pkl');
      expect(zip.entry('archive/data.pkl')!.localHeaderOffset).to.equal(0);
    });

    it('refuses unsupported methods, encryption, bad CRCs and truncation with CheckpointError', () => {
      const base = storedZip([['a', Uint8Array.of(1, 2, 3)]]);
      const centralAt = base.length - 22 - 46 - 1;
      const method = base.slice();
      method[centralAt + 10] = 12; // bzip2
      expectCheckpointError(() => readZip(method, 'm.zip').read('a'), 'm.zip', /compression method 12/);
      const encrypted = base.slice();
      encrypted[centralAt + 8] = 1;
      expectCheckpointError(() => readZip(encrypted, 'e.zip').read('a'), 'e.zip', /encrypted/);
      const crc = base.slice();
      crc[31] ^= 0xff; // first data byte (header 30 + name 1)
      expectCheckpointError(() => readZip(crc, 'crc.zip').read('a'), 'crc.zip', /CRC-32/);
      expectCheckpointError(() => readZip(base.subarray(0, base.length - 1), 't.zip'), 't.zip', /end-of-central-directory/);
      expectCheckpointError(() => readZip(base.subarray(0, 10), 's.zip'), 's.zip', /too short/);
      expectCheckpointError(() => readZip(base, 'n.zip').read('b'), 'n.zip', /no entry "b"/);
    });
  });

  describe('pickle VM', () => {
    // pickle.dumps of one dict at protocols 2 to 5 (Python 3.11), covering every value opcode
    // the VM knows: protocol 2 writes bytes as _codecs.encode(..., 'latin1') and sets via REDUCE.
    const PICKLES: Record<number, string> = {
      2: '80027d71002858010000006171015d7102284b014afeffffff47400c0000000000004e88896558010000006271034b014b024b038771045801000000637105635f636f646563730a656e636f64650a710658020000007879710758060000006c6174696e31710886710952710a5803000000626967710b8a0900000000000000004058030000006e6567710c8a060000000000ff58020000006934710d4a6079feff58020000006932710e4d60ea580100000073710f635f5f6275696c74696e5f5f0a7365740a71105d7111284b014b0265857112527113580200000066737114635f5f6275696c74696e5f5f0a66726f7a656e7365740a71155d71164b036185711752711858010000007571195805000000c3bc6ec3af711a58020000006f64711b63636f6c6c656374696f6e730a4f726465726564446963740a711c2952711d58010000006b711e4b0173580100000065711f2958010000006c71205d7121580600000073686172656471225d71234b07616823867124752e',
      3: '80037d71002858010000006171015d7102284b014afeffffff47400c0000000000004e88896558010000006271034b014b024b038771045801000000637105430278797106580300000062696771078a0900000000000000004058030000006e656771088a060000000000ff5802000000693471094a6079feff58020000006932710a4d60ea580100000073710b636275696c74696e730a7365740a710c5d710d284b014b026585710e52710f580200000066737110636275696c74696e730a66726f7a656e7365740a71115d71124b036185711352711458010000007571155805000000c3bc6ec3af711658020000006f64711763636f6c6c656374696f6e730a4f726465726564446963740a71182952711958010000006b711a4b0173580100000065711b2958010000006c711c5d711d5806000000736861726564711e5d711f4b0761681f867120752e',
      4: '800495d2000000000000007d94288c0161945d94284b014afeffffff47400c0000000000004e8889658c0162944b014b024b0387948c01639443027879948c03626967948a090000000000000000408c036e6567948a060000000000ff8c026934944a6079feff8c026932944d60ea8c0173948f94284b014b02908c02667394284b0391948c0175948c05c3bc6ec3af948c026f64948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c016b944b01738c016594298c016c945d948c06736861726564945d944b0761681b8694752e',
      5: '800595d2000000000000007d94288c0161945d94284b014afeffffff47400c0000000000004e8889658c0162944b014b024b0387948c01639443027879948c03626967948a090000000000000000408c036e6567948a060000000000ff8c026934944a6079feff8c026932944d60ea8c0173948f94284b014b02908c02667394284b0391948c0175948c05c3bc6ec3af948c026f64948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c016b944b01738c016594298c016c945d948c06736861726564945d944b0761681b8694752e',
    };
    const options = { source: 'test.pkl', resolveGlobal: standardGlobal };

    for (const [protocol, hex] of Object.entries(PICKLES)) {
      it(`decodes a protocol ${protocol} pickle written by CPython`, () => {
        const root = unpickle(fromHex(hex), options);
        expect(root).to.be.instanceOf(PyDict);
        const dict = root as PyDict;
        const items = (key: string) => (dict.get(key) as PyList | PyTuple | PySet).items;
        expect(items('a')).to.deep.equal([1, -2, 3.5, null, true, false]);
        expect(dict.get('b')).to.be.instanceOf(PyTuple);
        expect(items('b')).to.deep.equal([1, 2, 3]);
        expect([...(dict.get('c') as Uint8Array)]).to.deep.equal([0x78, 0x79]);
        expect(dict.get('big')).to.equal(2n ** 70n);
        expect(dict.get('neg')).to.equal(-(2 ** 40));
        expect(dict.get('i4')).to.equal(-100000);
        expect(dict.get('i2')).to.equal(60000);
        expect(items('s')).to.have.members([1, 2]);
        expect((dict.get('fs') as PySet).frozen).to.equal(true);
        expect(dict.get('u')).to.equal('ünï');
        const ordered = dict.get('od') as PyDict;
        expect(ordered.typeName).to.equal('OrderedDict');
        expect(ordered.get('k')).to.equal(1);
        expect(items('e')).to.deep.equal([]);
        const [first, second] = items('shared');
        expect(first).to.equal(second); // the memo keeps identity
      });
    }

    it('never calls a global outside the allow-list: it becomes an inert placeholder', () => {
      const w = new PickleWriter().global('os', 'system').mark().str('echo pwned').tuple().reduce();
      const value: PyValue = unpickle(w.bytes(), options);
      expect(value).to.be.instanceOf(PyOpaque);
      expect((value as PyOpaque).global).to.equal('os.system');
      const built = new PickleWriter().global('__main__', 'Thing').emptyTuple().newObj().emptyDict().build().bytes();
      expect((unpickle(built, options) as PyOpaque).global).to.equal('__main__.Thing');
    });

    it('reports malformed pickles as CheckpointError with the byte offset', () => {
      expectCheckpointError(() => unpickle(Uint8Array.of(0x80, 2, 0x4e), options), 'test.pkl', /ends without a STOP/);
      expectCheckpointError(() => unpickle(Uint8Array.of(0x80, 2, 0x2e), options), 'test.pkl', /STOP pops from an empty stack/);
      expectCheckpointError(() => unpickle(Uint8Array.of(0x80, 2, 0x68, 5, 0x2e), options), 'test.pkl', /memo slot 5/);
      expectCheckpointError(() => unpickle(Uint8Array.of(0x80, 2, 0xff, 0x2e), options), 'test.pkl', /unknown pickle opcode 0xff \(pickle byte 2\)/);
      expectCheckpointError(() => unpickle(Uint8Array.of(0x80, 2, 0x49, 0x31, 0x0a, 0x2e), options), 'test.pkl', /opcode INT is not supported/);
      expectCheckpointError(() => unpickle(Uint8Array.of(0x80, 2, 0x58, 9, 0, 0, 0, 0x61), options), 'test.pkl', /truncated/);
      expectCheckpointError(() => unpickle(Uint8Array.of(0x80, 2, 0x74, 0x2e), options), 'test.pkl', /TUPLE without a MARK/);
      expectCheckpointError(() => unpickle(Uint8Array.of(0x80, 6, 0x4e, 0x2e), options), 'test.pkl', /protocol 6/);
      expectCheckpointError(() => unpickle(Uint8Array.of(0x80, 2, 0x4e, 0x51, 0x2e), options), 'test.pkl', /persistent id/);
      // STACK_GLOBAL takes any strings; names that are not Python names are refused, and the
      // message stays on one line.
      const odd = Uint8Array.of(0x80, 4, 0x8c, 3, 0x6f, 0x0a, 0x73, 0x8c, 1, 0x78, 0x93, 0x2e);
      expectCheckpointError(() => unpickle(odd, options), 'test.pkl', /global "o\\ns\.x" is not a dotted Python name/);
    });
  });

  describe('fuzzing', function () {
    this.timeout(20_000);

    /** Only CheckpointError may escape; anything else (TypeError, RangeError, ...) is a bug. */
    function readOrRefuse(bytes: Uint8Array, label: string): 'read' | 'refused' {
      try {
        readWeightsFile(bytes, 'fuzz.pt');
        return 'read';
      } catch (error) {
        if (!(error instanceof CheckpointError)) {
          throw new Error(`${label}: ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`);
        }
        expect(error.message.startsWith('fuzz.pt: '), error.message).to.equal(true);
        expect(error.message, label).to.not.include('\n');
        return 'refused';
      }
    }

    function mutate(bytes: Uint8Array, random: () => number, { region = [0, bytes.length] } = {}): Uint8Array {
      const out = bytes.slice();
      const flips = 1 + Math.floor(random() * 4);
      for (let i = 0; i < flips; i++) {
        const at = region[0] + Math.floor(random() * (region[1] - region[0]));
        out[at] = random() < 0.5 ? out[at] ^ (1 << Math.floor(random() * 8)) : Math.floor(random() * 256);
      }
      return out;
    }

    it('random truncations and byte flips of whole files read or throw CheckpointError', () => {
      const random = rng(1);
      const counts = { read: 0, refused: 0 };
      for (const name of ['plain.pt', 'module.pt', 'plain_deflated.pt', 'plain_zip64.pt']) {
        const bytes = fixture(name);
        for (let i = 0; i < 60; i++) {
          const cut = bytes.subarray(0, Math.floor(random() * bytes.length));
          counts[readOrRefuse(cut, `${name} cut to ${cut.length}`)]++;
          // Flips concentrated on the ZIP structures at the end, then anywhere.
          const tail = mutate(bytes, random, { region: [Math.max(0, bytes.length - 400), bytes.length] });
          counts[readOrRefuse(tail, `${name} tail flip ${i}`)]++;
          counts[readOrRefuse(mutate(bytes, random), `${name} flip ${i}`)]++;
        }
      }
      expect(counts.refused).to.be.greaterThan(0);
    });

    it('mutated data.pkl and storages (with valid CRCs) read or throw CheckpointError', () => {
      const random = rng(2);
      const counts = { read: 0, refused: 0 };
      for (const name of ['plain.pt', 'module.pt', 'checkpoint.pt']) {
        const zip = readZip(fixture(name), name);
        const entries = zip.names().map((entry): [string, Uint8Array] => [entry, zip.read(entry)]);
        const pickleIndex = entries.findIndex(([entry]) => entry.endsWith('/data.pkl'));
        for (let i = 0; i < 150; i++) {
          const copy = entries.map(([entry, data]): [string, Uint8Array] => [entry, data]);
          if (i % 3 === 2) {
            const storages = copy.map((_, k) => k).filter((k) => copy[k][0].includes('/data/') && copy[k][1].length > 0);
            const k = storages[Math.floor(random() * storages.length)];
            copy[k] = [copy[k][0], mutate(copy[k][1], random)];
          } else if (i % 3 === 1) {
            const pickle = copy[pickleIndex][1];
            copy[pickleIndex] = [copy[pickleIndex][0], pickle.subarray(0, Math.floor(random() * pickle.length))];
          } else {
            copy[pickleIndex] = [copy[pickleIndex][0], mutate(copy[pickleIndex][1], random)];
          }
          counts[readOrRefuse(storedZip(copy), `${name} mutation ${i}`)]++;
        }
      }
      expect(counts.read).to.be.greaterThan(0);
      expect(counts.refused).to.be.greaterThan(0);
    });
  });
});
