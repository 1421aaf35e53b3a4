// Batches of 8-bit CHW images laid out as one RGBA grid (1-pixel gaps on a dark background, the
// layout of the Node CLI's PNG grids), drawn into a canvas at native size; CSS scales it up
// with crisp pixels.

export interface GridLayout {
  /** [channels, height, width] of one image. */
  shape: readonly [number, number, number];
  columns: number;
}

const GAP = 1;
const BACKGROUND = 0x20;

export function gridSize(count: number, { shape, columns }: GridLayout): { width: number; height: number } {
  const [, h, w] = shape;
  const cols = Math.min(columns, count);
  const rows = Math.ceil(count / columns);
  return { width: cols * (w + GAP) + GAP, height: rows * (h + GAP) + GAP };
}

/** RGBA pixels of the grid; `images` holds `count` CHW images back to back. */
export function gridRgba(images: Uint8Array, count: number, layout: GridLayout): { width: number; height: number; data: Uint8ClampedArray<ArrayBuffer> } {
  const [channels, h, w] = layout.shape;
  const size = channels * h * w;
  if (images.length !== count * size) throw new Error(`grid: ${images.length} values are not ${count} images of ${channels}x${h}x${w}`);
  const { width, height } = gridSize(count, layout);
  const data = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < data.length; i += 4) {
    data[i] = data[i + 1] = data[i + 2] = BACKGROUND;
    data[i + 3] = 255;
  }
  for (let n = 0; n < count; n++) {
    const x0 = (n % layout.columns) * (w + GAP) + GAP;
    const y0 = Math.floor(n / layout.columns) * (h + GAP) + GAP;
    const base = n * size;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const dst = ((y0 + y) * width + x0 + x) * 4;
        const p = y * w + x;
        for (let c = 0; c < 3; c++) data[dst + c] = images[base + (channels === 1 ? 0 : c) * h * w + p];
      }
    }
  }
  return { width, height, data };
}

/** Draws the grid into `canvas` (resizing it) and sets its CSS width to `zoom` times (the
 * height follows; max-width shrinks a wide grid to fit). */
export function drawGrid(canvas: HTMLCanvasElement, images: Uint8Array, count: number, layout: GridLayout, zoom: number): void {
  const { width, height, data } = gridRgba(images, count, layout);
  canvas.width = width;
  canvas.height = height;
  canvas.style.width = `${width * zoom}px`;
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('this browser gives no 2-D canvas context');
  ctx.putImageData(new ImageData(data, width, height), 0, 0);
}
