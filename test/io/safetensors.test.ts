import { bfloat16Value, float16Value } from '../../src/math/half-precision.js';
import { expect } from 'chai';
import {
  SafetensorsError, WritableTensor, readSafetensors, writeSafetensors,
} from '../../src/io/safetensors.js';
import { Rng } from '../../src/math/rng.js';

const encoder = new TextEncoder();

/** Builds a file byte by byte, without the writer, so tests can describe any header at all. */
function assemble(header: string, data: number[] = [], headerLength?: number): Uint8Array {
  const headerBytes = encoder.encode(header);
  const n = headerLength ?? headerBytes.length;
  const prefix = [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff, 0, 0, 0, 0];
  return Uint8Array.from([...prefix, ...headerBytes, ...data]);
}

/** Little-endian bytes of 16-bit words. */
function words16(...words: number[]): number[] {
  return words.flatMap((w) => [w & 0xff, w >>> 8]);
}

function headerOf(bytes: Uint8Array): string {
  const length = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
  return new TextDecoder().decode(bytes.subarray(8, 8 + length));
}

function expectSafetensorsError(bytes: Uint8Array, pattern: RegExp): void {
  let thrown: unknown;
  try {
    readSafetensors(bytes, 'bad.safetensors');
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'an error').to.be.instanceOf(SafetensorsError);
  const message = (thrown as Error).message;
  expect(message).to.match(/^bad\.safetensors: /);
  expect(message).to.match(pattern);
  expect(message).to.not.include('\n');
}

function validFile(): Uint8Array {
  return writeSafetensors([
    ['weight', { dtype: 'F32', shape: [2, 3], data: [1, -2, 0.5, 3.25, 1e-3, 7] }],
    ['bias', { dtype: 'F64', shape: [3], data: [0.1, 0.2, 0.3] }],
    ['step', { dtype: 'I64', shape: [], data: [12345] }],
    ['perm', { dtype: 'I32', shape: [4], data: [3, 1, 0, 2] }],
  ], { format: 'pt' });
}

describe('safetensors', () => {
  describe('round trip', () => {
    const cases: [string, WritableTensor, number[]][] = [
      ['F32', { dtype: 'F32', shape: [2, 3], data: [0.1, -1, 3.5, 1e-40, Infinity, -0] },
        [0.1, -1, 3.5, 1e-40, Infinity, -0].map(Math.fround)],
      ['F64', { dtype: 'F64', shape: [5], data: [0.1, -Number.MAX_VALUE, 5e-324, -Infinity, -0] },
        [0.1, -Number.MAX_VALUE, 5e-324, -Infinity, -0]],
      ['I64', { dtype: 'I64', shape: [2, 2], data: [2 ** 53, -(2 ** 53), 0, -7] }, [2 ** 53, -(2 ** 53), 0, -7]],
      ['I32', { dtype: 'I32', shape: [3], data: [2 ** 31 - 1, -(2 ** 31), 42] }, [2 ** 31 - 1, -(2 ** 31), 42]],
      ['U8', { dtype: 'U8', shape: [3], data: [0, 255, 1] }, [0, 255, 1]],
    ];
    for (const [dtype, tensor, expected] of cases) {
      it(`keeps ${dtype} values, shape and dtype`, () => {
        const { tensors } = readSafetensors(writeSafetensors([['t', tensor]]));
        const read = tensors.get('t')!;
        expect(read.dtype).to.equal(dtype);
        expect(read.shape).to.deep.equal(tensor.shape);
        expect(Array.from(read.data)).to.deep.equal(expected);
        // F32 stays float32 (half the memory, the same values); everything else is float64.
        expect(read.data).to.be.instanceOf(dtype === 'F32' ? Float32Array : Float64Array);
      });
    }

    it('keeps NaN', () => {
      const { tensors } = readSafetensors(writeSafetensors([['t', { dtype: 'F32', shape: [1], data: [NaN] }]]));
      expect(tensors.get('t')!.data[0]).to.be.NaN;
    });

    it('keeps scalars, empty tensors and several tensors in the given order', () => {
      const bytes = writeSafetensors([
        ['z', { dtype: 'F32', shape: [0, 4], data: [] }],
        ['10', { dtype: 'I32', shape: [], data: [1] }],
        ['2', { dtype: 'F64', shape: [1], data: [2] }],
        ['a', { dtype: 'I64', shape: [2], data: [3, 4] }],
      ]);
      const { tensors, metadata } = readSafetensors(bytes);
      // Integer-like names are the case where a JS object would have reordered the header.
      expect([...tensors.keys()]).to.deep.equal(['z', '10', '2', 'a']);
      expect(tensors.get('z')!.data).to.have.length(0);
      expect(tensors.get('10')!.shape).to.deep.equal([]);
      expect(Array.from(tensors.get('a')!.data)).to.deep.equal([3, 4]);
      expect(metadata).to.deep.equal({});
    });

    it('keeps metadata', () => {
      const metadata = { format: 'pt', 'glow.config': '{"K": 32, "L": 3}', note: 'ünïcödé ✓', '': '' };
      expect(readSafetensors(validFile()).metadata).to.deep.equal({ format: 'pt' });
      expect(readSafetensors(writeSafetensors([], metadata)).metadata).to.deep.equal(metadata);
    });

    it('reads from a view into a larger buffer', () => {
      const file = validFile();
      const larger = new Uint8Array(file.length + 13);
      larger.set(file, 5);
      const { tensors } = readSafetensors(larger.subarray(5, 5 + file.length));
      expect(Array.from(tensors.get('perm')!.data)).to.deep.equal([3, 1, 0, 2]);
    });
  });

  describe('writer layout', () => {
    it('is deterministic', () => {
      expect(validFile()).to.deep.equal(validFile());
    });

    it('puts __metadata__ first and pads the header with spaces to a multiple of 8', () => {
      const bytes = validFile();
      const header = headerOf(bytes);
      expect(header.length % 8).to.equal(0);
      expect(header.startsWith('{"__metadata__":{"format":"pt"},"weight":')).to.equal(true);
      expect(header.trimEnd().endsWith('}')).to.equal(true);
      expect(/^ *$/.test(header.slice(header.trimEnd().length))).to.equal(true);
    });

    it('lays tensors out contiguously in the given order, little-endian', () => {
      const bytes = writeSafetensors([
        ['a', { dtype: 'I32', shape: [1], data: [0x01020304] }],
        ['b', { dtype: 'F32', shape: [1], data: [1] }],
      ]);
      const header = headerOf(bytes);
      expect(JSON.parse(header)).to.deep.equal({
        a: { dtype: 'I32', shape: [1], data_offsets: [0, 4] },
        b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
      });
      expect(Array.from(bytes.subarray(8 + header.length))).to.deep.equal([4, 3, 2, 1, 0, 0, 0x80, 0x3f]);
    });

    it('refuses inconsistent tensors', () => {
      const write = (name: string, tensor: WritableTensor) => () => writeSafetensors([[name, tensor]]);
      expect(write('t', { dtype: 'F32', shape: [2, 2], data: [1, 2, 3] })).to.throw(SafetensorsError, 'has 3 values but shape [2, 2] needs 4');
      expect(write('t', { dtype: 'F32', shape: [-1], data: [] })).to.throw(SafetensorsError, 'not a list of non-negative integers');
      expect(write('t', { dtype: 'I32', shape: [1], data: [0.5] })).to.throw(SafetensorsError, 'element 0 is 0.5');
      expect(write('t', { dtype: 'I32', shape: [1], data: [2 ** 31] })).to.throw(SafetensorsError, 'not an integer in');
      expect(write('t', { dtype: 'I64', shape: [1], data: [2 ** 53 + 2] })).to.throw(SafetensorsError, 'not an integer in');
      expect(write('t', { dtype: 'U8', shape: [1], data: [256] })).to.throw(SafetensorsError, 'not an integer in');
      expect(write('t', { dtype: 'F16' as 'F32', shape: [1], data: [1] })).to.throw(SafetensorsError, 'unwritable dtype "F16"');
      expect(write('__metadata__', { dtype: 'F32', shape: [], data: [1] })).to.throw(SafetensorsError, 'cannot be named');
      const twice: WritableTensor = { dtype: 'F32', shape: [], data: [1] };
      expect(() => writeSafetensors([['t', twice], ['t', twice]])).to.throw(SafetensorsError, 'given twice');
    });
  });

  describe('hand-assembled files', () => {
    it('reads every dtype from bytes built by hand', () => {
      const header = JSON.stringify({
        __metadata__: { source: 'hand' },
        f32: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        i16: { dtype: 'I16', shape: [2], data_offsets: [8, 12] },
        i8: { dtype: 'I8', shape: [2], data_offsets: [12, 14] },
        u8: { dtype: 'U8', shape: [2], data_offsets: [14, 16] },
        f64: { dtype: 'F64', shape: [1], data_offsets: [16, 24] },
        i64: { dtype: 'I64', shape: [1], data_offsets: [24, 32] },
        flags: { dtype: 'BOOL', shape: [3], data_offsets: [32, 35] },
        empty: { dtype: 'F16', shape: [2, 0], data_offsets: [35, 35] },
      });
      const data = [
        0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc1, // F32 1, -10
        0xff, 0x7f, 0x00, 0x80, // I16 32767, -32768
        0xff, 0x80, // I8 -1, -128
        0xff, 0x80, // U8 255, 128
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0xbf, // F64 -1
        0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // I64 -2
        1, 0, 1, // BOOL
      ];
      const { tensors, metadata } = readSafetensors(assemble(header, data));
      const values = Object.fromEntries([...tensors].map(([name, t]) => [name, Array.from(t.data)]));
      expect(values).to.deep.equal({
        f32: [1, -10], i16: [32767, -32768], i8: [-1, -128], u8: [255, 128],
        f64: [-1], i64: [-2], flags: [1, 0, 1], empty: [],
      });
      expect(tensors.get('flags')!.dtype).to.equal('BOOL');
      expect(tensors.get('empty')!.shape).to.deep.equal([2, 0]);
      expect(metadata).to.deep.equal({ source: 'hand' });
    });

    it('decodes F16 exactly', () => {
      const expected: [number, number][] = [
        [0x3c00, 1], [0xc000, -2], [0x3800, 0.5], [0x7bff, 65504], [0x0001, 2 ** -24],
        [0x03ff, 1023 * 2 ** -24], [0x0400, 2 ** -14], [0x3555, 0.333251953125],
        [0x7c00, Infinity], [0xfc00, -Infinity], [0x8000, -0],
      ];
      const header = JSON.stringify({ h: { dtype: 'F16', shape: [expected.length + 1], data_offsets: [0, 2 * (expected.length + 1)] } });
      const bytes = assemble(header, words16(...expected.map(([bits]) => bits), 0x7e00));
      const read = readSafetensors(bytes).tensors.get('h')!;
      expect(read.dtype).to.equal('F16');
      expect(Array.from(read.data.subarray(0, expected.length))).to.deep.equal(expected.map(([, value]) => value));
      expect(read.data[expected.length]).to.be.NaN;
      expect(Object.is(float16Value(0x8000), -0)).to.equal(true);
    });

    it('decodes BF16 exactly', () => {
      const expected: [number, number][] = [
        [0x3f80, 1], [0xc000, -2], [0x3f00, 0.5], [0x4049, 3.140625], [0x0001, 2 ** -133],
        [0x0080, 2 ** -126], [0x7f7f, (2 - 2 ** -7) * 2 ** 127], [0x7f80, Infinity], [0xff80, -Infinity], [0x8000, -0],
      ];
      const header = JSON.stringify({ b: { dtype: 'BF16', shape: [expected.length + 1], data_offsets: [0, 2 * (expected.length + 1)] } });
      const bytes = assemble(header, words16(...expected.map(([bits]) => bits), 0x7fc0));
      const read = readSafetensors(bytes).tensors.get('b')!;
      expect(Array.from(read.data.subarray(0, expected.length))).to.deep.equal(expected.map(([, value]) => value));
      expect(read.data[expected.length]).to.be.NaN;
      expect(Object.is(bfloat16Value(0x8000), -0)).to.equal(true);
    });

    it('keeps header order for integer-like names and tolerates whitespace', () => {
      const header = ' {\n "3" : {"dtype":"U8","shape":[1],"data_offsets":[1,2]} ,\t"1":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}   ';
      const { tensors } = readSafetensors(assemble(header, [7, 9]));
      expect([...tensors.keys()]).to.deep.equal(['3', '1']);
      expect(tensors.get('3')!.data[0]).to.equal(9);
    });

    it('accepts extra fields in an entry and names with escapes', () => {
      const header = JSON.stringify({ 'a "quoted" \\ name': { dtype: 'U8', shape: [1], data_offsets: [0, 1], note: ['}', '"'] } });
      expect([...readSafetensors(assemble(header, [1])).tensors.keys()]).to.deep.equal(['a "quoted" \\ name']);
    });
  });

  describe('malformed files', () => {
    const entry = (dtype: unknown, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
    const file = (header: object, data: number[] = []) => assemble(JSON.stringify(header), data);

    const cases: [string, Uint8Array, RegExp][] = [
      ['an empty file', new Uint8Array(0), /0 bytes, shorter than the 8-byte header length/],
      ['a 7-byte file', new Uint8Array(7), /7 bytes, shorter/],
      ['a header length past the end', assemble('{}', [], 30), /header length 30 runs past the end of the 10-byte file/],
      ['a header length over 100 MB', assemble('{}', [], 200_000_000), /header length 200000000 exceeds the 100 MB limit/],
      ['a header length above 2^32', Uint8Array.from([2, 0, 0, 0, 1, 0, 0, 0, 0x7b, 0x7d]), /exceeds the 100 MB limit/],
      ['an empty header', assemble(''), /header is not valid JSON/],
      ['a truncated header', assemble('{"a": {"dtype"'), /header is not valid JSON/],
      ['invalid UTF-8', Uint8Array.from([2, 0, 0, 0, 0, 0, 0, 0, 0xc3, 0x28]), /header is not valid UTF-8/],
      ['a byte-order mark', assemble('\ufeff{}'), /header is not valid JSON/],
      ['a JSON array', assemble('[]'), /header JSON is not an object/],
      ['JSON null', assemble('null'), /header JSON is not an object/],
      ['a duplicate name', assemble('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', [1]), /header lists "a" twice/],
      ['an entry that is not an object', file({ a: 3 }), /tensor "a" is not an object/],
      ['an unknown dtype', file({ a: entry('F8_E4M3', [1], [0, 1]) }, [0]), /tensor "a" has unsupported dtype "F8_E4M3"/],
      ['a missing dtype', file({ a: { shape: [1], data_offsets: [0, 1] } }, [0]), /unsupported dtype undefined/],
      ['a negative dimension', file({ a: entry('U8', [-1], [0, 0]) }), /shape \[-1\] is not a list of non-negative integers/],
      ['a fractional dimension', file({ a: entry('U8', [1.5], [0, 1]) }, [0]), /not a list of non-negative integers/],
      ['a shape that is not a list', file({ a: entry('U8', '1', [0, 1]) }, [0]), /shape "1" is not a list/],
      ['a string dimension', file({ a: entry('U8', ['1'], [0, 1]) }, [0]), /not a list of non-negative integers/],
      ['a shape with too many elements', file({ a: entry('U8', [2 ** 30, 2 ** 30, 2 ** 30], [0, 1]) }, [0]), /more than 2\^53 elements/],
      ['three offsets', file({ a: entry('U8', [1], [0, 1, 2]) }, [0]), /data_offsets \[0,1,2\] is not an ordered \[begin, end\] pair/],
      ['reversed offsets', file({ a: entry('U8', [1], [1, 0]) }, [0]), /is not an ordered/],
      ['negative offsets', file({ a: entry('U8', [1], [-1, 0]) }, [0]), /is not an ordered/],
      ['offsets not matching the size', file({ a: entry('F32', [2], [0, 4]) }, [0, 0, 0, 0]), /tensor "a" spans 4 bytes but F32\[2\] needs 8/],
      ['offsets past the buffer', file({ a: entry('U8', [4], [0, 4]) }, [0, 0]), /tensor "a" ends at byte 4, past the 2-byte data buffer/],
      ['overlapping tensors', file({ a: entry('U8', [2], [0, 2]), b: entry('U8', [2], [1, 3]) }, [0, 0, 0]), /tensors "a" and "b" overlap at byte 1/],
      ['an empty tensor inside another', file({ a: entry('U8', [2], [0, 2]), b: entry('U8', [0], [1, 1]) }, [0, 0]), /overlap at byte 1/],
      ['a hole between tensors', file({ a: entry('U8', [1], [0, 1]), b: entry('U8', [1], [2, 3]) }, [0, 0, 0]), /unused bytes 1\.\.2 before tensor "b"/],
      ['a hole at the start', file({ a: entry('U8', [1], [1, 2]) }, [0, 0]), /unused bytes 0\.\.1/],
      ['trailing bytes', file({ a: entry('U8', [1], [0, 1]) }, [0, 0, 0]), /2 unused bytes after the last tensor/],
      ['data with no tensors', file({}, [0]), /1 unused bytes after the last tensor/],
      ['metadata that is not an object', file({ __metadata__: ['x'] }), /__metadata__ is not an object/],
      ['a metadata value that is not a string', file({ __metadata__: { epochs: 3 } }), /__metadata__ value for "epochs" is not a string/],
      ['an I64 beyond 2^53', file({ a: entry('I64', [1], [0, 8]) }, [1, 0, 0, 0, 0, 0, 0x20, 0]), /tensor "a" element 0 \(9007199254740993\) is beyond 2\^53/],
      ['an I64 below -2^53', file({ a: entry('I64', [2], [0, 16]) }, [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xdf, 0xff]), /element 1 \(-9007199254740993\) is beyond 2\^53/],
      ['a BOOL byte other than 0 or 1', file({ a: entry('BOOL', [2], [0, 2]) }, [1, 2]), /tensor "a" element 1 is byte 2, not a BOOL/],
    ];
    for (const [what, bytes, pattern] of cases) {
      it(`rejects ${what}`, () => expectSafetensorsError(bytes, pattern));
    }

    it('keeps messages short for huge or deeply nested header values', () => {
      const deep = '['.repeat(100_000) + ']'.repeat(100_000);
      expectSafetensorsError(assemble(`{"a":{"dtype":"U8","shape":${deep},"data_offsets":[0,0]}}`), /^.{0,200}$/);
      const long = JSON.stringify({ a: entry('U8', new Array(10_000).fill(-1), [0, 0]) });
      expectSafetensorsError(assemble(long), /^.{0,200}$/);
    });

    it('names the source in the message', () => {
      expect(() => readSafetensors(new Uint8Array(3))).to.throw(SafetensorsError, /^safetensors: file is 3 bytes/);
      expect(() => readSafetensors(new Uint8Array(3), 'model.safetensors')).to.throw(/^model\.safetensors: /);
    });
  });

  describe('fuzzing', () => {
    it('only ever succeeds or throws SafetensorsError on random and damaged bytes', () => {
      const rng = new Rng(2024);
      const valid = validFile();
      const headerLength = 8 + headerOf(valid).length;
      const outcomes = { ok: 0, rejected: 0 };
      for (let i = 0; i < 2000; i++) {
        const bytes = damaged(valid, headerLength, i % 4, rng);
        try {
          readSafetensors(bytes, 'fuzz');
          outcomes.ok++;
        } catch (error) {
          if (!(error instanceof SafetensorsError)) {
            throw new Error(`case ${i} threw ${String(error)} for bytes [${Array.from(bytes).join(',')}]`);
          }
          outcomes.rejected++;
        }
      }
      expect(outcomes.ok).to.be.greaterThan(0);
      expect(outcomes.rejected).to.be.greaterThan(0);
    });
  });
});

/** Kinds: 0 random bytes, 1 truncated, 2 bytes overwritten, 3 header text mutated. */
function damaged(valid: Uint8Array, headerEnd: number, kind: number, rng: Rng): Uint8Array {
  switch (kind) {
    case 0:
      return Uint8Array.from({ length: rng.int(64) }, () => rng.int(256));
    case 1:
      return valid.slice(0, rng.int(valid.length + 1));
    case 2: {
      const bytes = valid.slice();
      for (let k = rng.int(4); k >= 0; k--) bytes[rng.int(bytes.length)] = rng.int(256);
      return bytes;
    }
    default: {
      // Swapping in JSON punctuation and digits reaches deeper validation than random bytes do.
      const bytes = valid.slice();
      const alphabet = encoder.encode('{}[]",:0123456789-.e ');
      for (let k = rng.int(3); k >= 0; k--) bytes[8 + rng.int(headerEnd - 8)] = alphabet[rng.int(alphabet.length)];
      return bytes;
    }
  }
}
