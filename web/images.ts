// Image files -> 8-bit CHW pixels at the model's shape, in the browser: scaled to cover and
// centre-cropped like the CLI's readImage (jimp cover), luminance for 1-channel models.

export interface BuiltinImage {
  file: string;
  label: number;
  name: string;
}

export async function imagePixels(source: Blob, [channels, height, width]: readonly number[]): Promise<Uint8Array> {
  if (channels !== 1 && channels !== 3) throw new Error(`images with ${channels} channels are not supported (1 or 3)`);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(source);
  } catch (e) {
    throw new Error(`cannot decode this image (${(e as Error).message || 'unknown format'})`);
  }
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!ctx) throw new Error('this browser gives no 2-D canvas context');
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, width, height);
  const scale = Math.max(width / bitmap.width, height / bitmap.height);
  const w = bitmap.width * scale;
  const h = bitmap.height * scale;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, (width - w) / 2, (height - h) / 2, w, h);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const plane = width * height;
  const out = new Uint8Array(channels * plane);
  for (let p = 0; p < plane; p++) {
    const [r, g, b] = [rgba[4 * p], rgba[4 * p + 1], rgba[4 * p + 2]];
    if (channels === 1) out[p] = Math.round(0.2126 * r + 0.7152 * g + 0.0722 * b);
    else for (let c = 0; c < 3; c++) out[c * plane + p] = rgba[4 * p + c];
  }
  return out;
}

/** The test images that the build writes next to the page (images/index.json), or none. */
export async function builtinImages(base: string): Promise<BuiltinImage[]> {
  try {
    const response = await fetch(new URL('images/index.json', base));
    if (!response.ok) return [];
    const list = (await response.json()) as BuiltinImage[];
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}
