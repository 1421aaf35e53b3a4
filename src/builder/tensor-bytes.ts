// A tensor's data as ONNX stores it (raw_data: little-endian, float16 as its bits), and the
// error every malformed ONNX file raises, shared by the writer, the external-data layout and the
// parser.

import { float16Bits } from '../math/half-precision.js';
import { Tensor } from './graph.js';

export class OnnxFormatError extends Error {
  override name = 'OnnxFormatError';

  /** Names read from a damaged file can hold any byte: control characters are written as
   * escapes, so the message stays one line. */
  constructor(message: string) {
    super(message.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  }
}

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

/** Bytes per element of each dtype. */
export const ITEM_SIZE: Readonly<Record<Tensor['dtype'], number>> = { float32: 4, float64: 8, float16: 2, int64: 8, int32: 4, bool: 1 };

/** Bytes of a tensor's raw data. */
export function tensorByteLength(t: Tensor): number {
  return t.data.length * ITEM_SIZE[t.dtype];
}
