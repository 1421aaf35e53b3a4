// Test utilities: run a builder Graph in onnxruntime-node CPU and compare arrays.

import { expect } from 'chai';
import { Jimp } from 'jimp';
import ort from 'onnxruntime-node';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Graph } from '../src/builder/graph.js';
import { serializeModel } from '../src/builder/serialize.js';
import { GlowConfig } from '../src/glow/config.js';
import { HostTensor } from '../src/math/tensor.js';
import { Rng } from '../src/math/rng.js';
import { adamFeeds, OptimizerOptions } from '../src/train/graphs.js';
import type { TrainCheckpoint } from '../src/train/checkpoint.js';
import type { Dataset } from '../src/train/run.js';

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

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Largest |a - b| / |b| elementwise (b is the reference); NaN counts as Infinity. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), 1e-30);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Largest |a - b| / max(1, |b|) elementwise: absolute below 1, relative above (b is the
 * reference); NaN counts as Infinity. */
export function maxScaledDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), 1);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
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

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/**
 * Points Dawn (onnxruntime's WebGPU) at Chromium's SwiftShader Vulkan driver unless the
 * environment already chose a driver, and gives Mesa's loader the runtime dir it wants. Must run
 * before the process's first WebGPU session: a failed adapter request sticks for the process.
 * Returns the driver the caller chose itself, if any.
 */
export function useSoftwareWebGpu(): string | undefined {
  const preset = process.env.VK_ICD_FILENAMES;
  process.env.VK_ICD_FILENAMES ??= SWIFTSHADER_ICD;
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = mkdtempSync(join(tmpdir(), 'glow-xdg-'));
    chmodSync(dir, 0o700);
    process.env.XDG_RUNTIME_DIR = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return preset;
}

export const WEBGPU_INSTALL_HELP = 'install the software Vulkan driver and loader with `apt-get install chromium libvulkan1` '
  + `(Debian's chromium ships ${SWIFTSHADER_ICD})`;

/** Why WebGPU cannot get a Vulkan driver here (with the command that installs one), or
 * undefined. `preset` is what useSoftwareWebGpu returned. */
export function webGpuDriverProblem(preset: string | undefined): string | undefined {
  const files = (process.env.VK_ICD_FILENAMES ?? '').split(':').filter(Boolean);
  const missing = files.filter((f) => !existsSync(f));
  if (!existsSync(SWIFTSHADER_ICD) && (preset === undefined || missing.length > 0)) {
    return `the WebGPU tests need a Vulkan driver: ${SWIFTSHADER_ICD} is missing; ${WEBGPU_INSTALL_HELP}`;
  }
  if (missing.length > 0) return `VK_ICD_FILENAMES names missing file(s) ${missing.join(', ')}; ${WEBGPU_INSTALL_HELP}`;
  return undefined;
}

/** RGB models, where ONNX Runtime's WebGPU provider gets convolutions wrong in its default layout
 * unless the export pads them (builder/passes/conv-channels.ts): the two sizes of issue 15,
 * class-conditional, affine with LU; hidden 18 makes the networks' last 3x3 conv a padded one
 * too. For the WebGPU tests in Node and in the page. */
export const RGB_CONFIGS: readonly GlowConfig[] = [
  {
    imageShape: [3, 16, 16], K: 2, L: 2, hiddenChannels: 12, coupling: 'affine', permutation: 'invconv',
    lu: true, learnTop: true, numClasses: 4, nBits: 5, actnormScale: 1,
  },
  {
    imageShape: [3, 32, 32], K: 2, L: 3, hiddenChannels: 18, coupling: 'affine', permutation: 'invconv',
    lu: true, learnTop: true, numClasses: 4, nBits: 5, actnormScale: 1,
  },
];
/** eps, bpd and decoded x of RGB_CONFIGS on WebGPU against the CPU provider: float32 rounding is
 * ~1e-6 there, the layout bug ~1. */
export const RGB_TOLERANCE = 1e-5;

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
