// Images in and out through jimp: files -> 8-bit CHW arrays at the model's size, and
// CHW arrays -> PNG grids.

import { Jimp, loadFont } from 'jimp';
import { SANS_8_WHITE } from 'jimp/fonts';
import { readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { checkImageChannels } from './quantize.js';

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.bmp']);

/** Reads an image, resizes and centre-crops it to width x height, and returns 8-bit CHW pixels
 * (1 channel: luminance; 3 channels: RGB). */
export async function readImage(path: string, [channels, height, width]: readonly number[]): Promise<Uint8Array> {
  checkImageChannels(channels);
  let image;
  try {
    image = await Jimp.read(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code) throw new Error(`cannot read ${path}: ${code}`);
    throw new Error(`${path}: cannot read image: not a PNG, JPEG or BMP file, or a damaged one (${(e as Error).message})`);
  }
  image.cover({ w: width, h: height });
  if (channels === 1) image.greyscale();
  const rgba = image.bitmap.data;
  const out = new Uint8Array(channels * height * width);
  for (let c = 0; c < channels; c++) {
    for (let p = 0; p < height * width; p++) out[c * height * width + p] = rgba[4 * p + c];
  }
  return out;
}

export function listImages(dir: string): string[] {
  if (!statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
  const files = readdirSync(dir).filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort();
  if (!files.length) throw new Error(`${dir} holds no .png/.jpg/.bmp images`);
  return files.map((f) => join(dir, f));
}

export interface GridOptions {
  columns: number;
  /** Integer upscaling so that small images stay visible. */
  scale?: number;
  /** One caption per image, printed above it. */
  captions?: string[];
}

const CAPTION_HEIGHT = 12;

/** Writes images (each 8-bit CHW) as a PNG grid with a 1-pixel gap. */
export async function writeGrid(path: string, images: Uint8Array[], [channels, height, width]: readonly number[], options: GridOptions): Promise<void> {
  const { columns, scale = 1, captions } = options;
  const rows = Math.ceil(images.length / columns);
  const top = captions ? CAPTION_HEIGHT : 0;
  const cellW = Math.max(width * scale, captions ? 40 : 0) + 1;
  const cellH = height * scale + top + 1;
  const grid = new Jimp({ width: columns * cellW + 1, height: rows * cellH + 1, color: 0x202020ff });
  const data = grid.bitmap.data;
  const gridWidth = grid.bitmap.width;
  const font = captions ? await loadFont(SANS_8_WHITE) : undefined;
  images.forEach((img, index) => {
    const x0 = (index % columns) * cellW + 1;
    const y0 = Math.floor(index / columns) * cellH + 1;
    if (font && captions?.[index]) grid.print({ font, x: x0, y: y0, text: captions[index], maxWidth: cellW - 1 });
    for (let y = 0; y < height * scale; y++) {
      for (let x = 0; x < width * scale; x++) {
        const src = Math.floor(y / scale) * width + Math.floor(x / scale);
        const dst = 4 * ((y0 + top + y) * gridWidth + x0 + x);
        for (let c = 0; c < 3; c++) data[dst + c] = img[(channels === 1 ? 0 : c) * height * width + src];
        data[dst + 3] = 255;
      }
    }
  });
  writeFileAtomic(path, await grid.getBuffer('image/png'));
}
