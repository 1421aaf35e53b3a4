// Round trip and bits/dim of a model directory on a batch of images.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { GlowConfig } from '../glow/config.js';
import { createCpuSession, Feeds, floatTensor } from './session.js';

export interface VerifyReport {
  meanBpd: number;
  bpdStdErr: number;
  maxRoundTripError: number;
}

export async function verifyModel(dir: string, config: GlowConfig, x: Float32Array, y?: Float32Array, batchSize = 64): Promise<VerifyReport> {
  const [C, H, W] = config.imageShape;
  const D = C * H * W;
  const n = x.length / D;
  const encode = await createCpuSession(readFileSync(join(dir, 'encode.onnx')));
  const decode = await createCpuSession(readFileSync(join(dir, 'decode.onnx')));
  const bpd: number[] = [];
  let maxError = 0;
  try {
    for (let start = 0; start < n; start += batchSize) {
      const count = Math.min(batchSize, n - start);
      const xb = x.subarray(start * D, (start + count) * D);
      const feeds: Feeds = { x: floatTensor(xb, [count, C, H, W]) };
      const yb = y ? floatTensor(y.subarray(start * config.numClasses, (start + count) * config.numClasses), [count, config.numClasses]) : undefined;
      if (yb) feeds.y = yb;
      const enc = await encode.run(feeds);
      bpd.push(...(enc.bpd.data as Float32Array));
      const decFeeds: Feeds = { temperature: new ort.Tensor('float32', Float32Array.of(1), []) };
      for (let l = 1; l <= config.L; l++) decFeeds[`eps_${l}`] = enc[`eps_${l}`];
      if (yb) decFeeds.y = yb;
      const xr = (await decode.run(decFeeds)).x.data as Float32Array;
      for (let i = 0; i < xr.length; i++) maxError = Math.max(maxError, Math.abs(xr[i] - xb[i]));
    }
  } finally {
    await encode.release();
    await decode.release();
  }
  const mean = bpd.reduce((a, b) => a + b, 0) / bpd.length;
  const variance = bpd.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, bpd.length - 1);
  return { meanBpd: mean, bpdStdErr: Math.sqrt(variance / bpd.length), maxRoundTripError: maxError };
}
