// Data-dependent ActNorm initialisation, run by ONNX Runtime on one batch of images.

import { serializeModel } from '../builder/serialize.js';
import { buildActNormInit, GlowWeights } from '../glow/model.js';
import { createCpuSession, floatTensor, Feeds } from './session.js';

/** Returns new weights whose ActNorms normalise `x` (a dequantised batch [N, C, H, W]). */
export async function initActNorms(w: GlowWeights, x: Float32Array, y?: Float32Array): Promise<GlowWeights> {
  const [C, H, W] = w.config.imageShape;
  const n = x.length / (C * H * W);
  if (!Number.isInteger(n) || n < 2) throw new Error(`ActNorm initialisation needs a batch of at least 2 images of ${C}x${H}x${W}`);
  const session = await createCpuSession(serializeModel(buildActNormInit(w)));
  try {
    const feeds: Feeds = { x: floatTensor(x, [n, C, H, W]) };
    if (w.config.numClasses > 0) feeds.y = floatTensor(y ?? new Float32Array(n * w.config.numClasses), [n, w.config.numClasses]);
    const stats = await session.run(feeds);
    const params = new Map(w.params);
    for (const [name, t] of Object.entries(stats)) {
      params.set(name, { shape: [...t.dims], data: Float64Array.from(t.data as Float32Array) });
    }
    return { ...w, params };
  } finally {
    await session.release();
  }
}
