// Pixels between the browser's images and the model: 8-bit CHW arrays (what quantize returns
// and dequantize takes) to and from canvas ImageData (RGBA, row-major). 1-channel models see
// luminance; scaling to the model's size covers and centre-crops like the CLI's readImage.

import { checkImageChannels } from '../runtime/quantize.js';

/** Anything shaped like ImageData: RGBA bytes, row-major. */
export interface RgbaImage {
  width: number;
  height: number;
  data: ArrayLike<number>;
}

/** RGBA pixels (ImageData from a canvas of the model's width and height) -> 8-bit CHW. */
export function rgbaToPixels(image: RgbaImage, channels: number): Uint8Array {
  checkImageChannels(channels);
  const plane = image.width * image.height;
  if (image.data.length !== 4 * plane) throw new Error(`an RGBA image of ${image.width}x${image.height} has ${4 * plane} values, got ${image.data.length}`);
  const rgba = image.data;
  const out = new Uint8Array(channels * plane);
  for (let p = 0; p < plane; p++) {
    const [r, g, b] = [rgba[4 * p], rgba[4 * p + 1], rgba[4 * p + 2]];
    if (channels === 1) out[p] = Math.round(0.2126 * r + 0.7152 * g + 0.0722 * b);
    else for (let c = 0; c < 3; c++) out[c * plane + p] = rgba[4 * p + c];
  }
  return out;
}

/** Image `index` of a batch of 8-bit CHW images -> opaque RGBA bytes (grey for 1 channel). */
export function pixelsToRgba(pixels: Uint8Array, [channels, height, width]: readonly number[], index = 0): Uint8ClampedArray<ArrayBuffer> {
  checkImageChannels(channels);
  const plane = width * height;
  const base = index * channels * plane;
  if (!Number.isInteger(index) || index < 0 || base + channels * plane > pixels.length) {
    throw new Error(`image ${index} is not in a batch of ${pixels.length / (channels * plane)} images of ${channels}x${height}x${width}`);
  }
  const rgba = new Uint8ClampedArray(4 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) rgba[4 * p + c] = pixels[base + (channels === 1 ? 0 : c) * plane + p];
    rgba[4 * p + 3] = 255;
  }
  return rgba;
}

/** Image `index` of a batch as ImageData, for a canvas's putImageData. */
export function pixelsToImageData(pixels: Uint8Array, shape: readonly number[], index = 0): ImageData {
  return new ImageData(pixelsToRgba(pixels, shape, index), shape[2], shape[1]);
}

/** Any image the browser decodes (a File, a Blob, a fetched PNG) -> 8-bit CHW at the model's
 * [channels, height, width], scaled to cover and centre-cropped on black. */
export async function imagePixels(source: Blob | ImageBitmapSource, [channels, height, width]: readonly number[]): Promise<Uint8Array> {
  checkImageChannels(channels);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(source);
  } catch (e) {
    throw new Error(`cannot decode this image (${(e as Error).message || 'unknown format'})`);
  }
  // A worker has no document: an OffscreenCanvas there.
  const canvas = typeof document !== 'undefined' ? Object.assign(document.createElement('canvas'), { width, height }) : new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true }) as CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D | null;
  if (!ctx) throw new Error('this browser gives no 2-D canvas context');
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, width, height);
  const scale = Math.max(width / bitmap.width, height / bitmap.height);
  const w = bitmap.width * scale;
  const h = bitmap.height * scale;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, (width - w) / 2, (height - h) / 2, w, h);
  bitmap.close();
  return rgbaToPixels(ctx.getImageData(0, 0, width, height), channels);
}
