// Test utilities: run a builder Graph in onnxruntime-node CPU and compare arrays.

import { expect } from 'chai';
import { Jimp } from 'jimp';
import ort from 'onnxruntime-node';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Graph } from '../src/builder/graph.js';
import { serializeModel } from '../src/builder/serialize.js';
import { HostTensor } from '../src/math/tensor.js';
import { Rng } from '../src/math/rng.js';
import { adamFeeds, OptimizerOptions } from '../src/train/graphs.js';
import type { TrainCheckpoint } from '../src/train/checkpoint.js';
import type { Dataset } from '../src/train/run.js';

export { maxAbsDiff, maxRelDiff, maxScaledDiff } from '../support/compare.js';
export { RGB_CONFIGS, RGB_TOLERANCE } from '../support/rgb-configs.js';
export { SWIFTSHADER_ICD, useSoftwareWebGpu, WEBGPU_INSTALL_HELP, webGpuDriverProblem } from '../support/webgpu.js';

/** The built CLI entry point. */
export const CLI_BIN = fileURLToPath(new URL('../src/cli/bin.js', import.meta.url));

/** Runs `glow-onnx ARGS...` as a process and returns what it wrote. */
export function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs `glow-onnx ARGS...` in this process (no start-up cost; fs patches apply): the exit code
 * and what it printed. */
export async function cliInProcess(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { main } = await import('../src/cli/main.js');
  const { log, error } = console;
  let stdout = '';
  let stderr = '';
  console.log = (...parts: unknown[]) => (stdout += `${parts.join(' ')}\n`);
  console.error = (...parts: unknown[]) => (stderr += `${parts.join(' ')}\n`);
  try {
    return { code: await main(args), stdout, stderr };
  } finally {
    Object.assign(console, { log, error });
  }
}

/** Writes 8-bit grey pixels (row-major, width x height) as a PNG, as a user's image would arrive. */
export async function writeGrayPng(path: string, pixels: ArrayLike<number>, width: number, height = width): Promise<void> {
  const img = new Jimp({ width, height, color: 0x000000ff });
  for (let p = 0; p < width * height; p++) img.bitmap.data.set([pixels[p], pixels[p], pixels[p], 255], 4 * p);
  writeFileSync(path, await img.getBuffer('image/png'));
}

export type Feeds = Record<string, HostTensor | number>;

export async function runGraph(graph: Graph, feeds: Feeds): Promise<Record<string, HostTensor>> {
  const session = await ort.InferenceSession.create(serializeModel(graph));
  try {
    const input: Record<string, ort.Tensor> = {};
    for (const [name, v] of Object.entries(feeds)) {
      input[name] = typeof v === 'number' ? new ort.Tensor('float32', Float32Array.of(v), []) : new ort.Tensor('float32', Float32Array.from(v.data), v.shape);
    }
    const result = await session.run(input);
    const out: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(result)) out[name] = { shape: [...t.dims], data: Float64Array.from(t.data as Float32Array) };
    return out;
  } finally {
    await session.release();
  }
}

/** The optimizer graphs' scalar inputs at Adam step `step` (from 1), as onnxruntime-node tensors. */
export function adamScalars(step: number, learningRate: number, options: OptimizerOptions = {}): Record<string, ort.Tensor> {
  return Object.fromEntries(Object.entries(adamFeeds(step, learningRate, options)).map(([k, v]) => [k, new ort.Tensor('float32', Float32Array.of(v), [])]));
}

const bytesOf = (t: Float32Array) => Buffer.from(t.buffer, t.byteOffset, t.byteLength);

/** Bit for bit: parameters, Adam moments, moving averages and the loop state (all but the clock). */
export function expectSameCheckpoint(actual: TrainCheckpoint, expected: TrainCheckpoint): void {
  const { elapsedSeconds: _actualClock, ...state } = actual.state;
  const { elapsedSeconds: _expectedClock, ...expectedState } = expected.state;
  expect(state).to.deep.equal(expectedState);
  for (const part of ['params', 'moments', 'ema'] as const) {
    expect([...(actual[part]?.keys() ?? [])].sort(), part).to.deep.equal([...(expected[part]?.keys() ?? [])].sort());
    for (const [name, t] of expected[part] ?? []) expect(bytesOf(actual[part]!.get(name)!).equals(bytesOf(t)), `${part} ${name}`).to.equal(true);
  }
}

/** Blurry blobs, dimmer in later channels: learnable, unlike noise, so losses move. */
export function blobDataset(count: number, seed: number, channels = 1): Dataset {
  const rng = new Rng(seed);
  const plane = 64;
  const pixels = new Uint8Array(count * channels * plane);
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    const [cy, cx] = [1 + rng.int(6), 1 + rng.int(6)];
    labels[n] = rng.int(3);
    for (let c = 0; c < channels; c++) {
      for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++) {
        pixels[(n * channels + c) * plane + i * 8 + j] = Math.min(255, Math.round(255 / (1 + c) * Math.exp(-((i - cy) ** 2 + (j - cx) ** 2) / 4) + 20 * rng.uniform()));
      }
    }
  }
  return { pixels, labels, count };
}

/** The JSON fixtures in a folder (sorted by name), with every {shape, data} object as a float64
 * tensor: outputs recorded by a port's own code. */
export function readJsonFixtures<T>(dir: string): T[] {
  const tensors = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(tensors);
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (Array.isArray(o.shape) && Array.isArray(o.data)) return { shape: o.shape, data: Float64Array.from(o.data as number[]) };
      return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, tensors(x)]));
    }
    return v;
  };
  return readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => tensors(JSON.parse(readFileSync(join(dir, f), 'utf8'))) as T);
}
