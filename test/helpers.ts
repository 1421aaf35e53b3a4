// Test utilities: run a builder Graph in onnxruntime-node CPU and compare arrays.

import ort from 'onnxruntime-node';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Graph } from '../src/builder/graph.js';
import { serializeModel } from '../src/builder/serialize.js';
import { HostTensor } from '../src/glow/tensor.js';

/** The built CLI entry point. */
export const CLI_BIN = fileURLToPath(new URL('../src/cli/bin.js', import.meta.url));

/** Runs `glow-onnx ARGS...` as a process and returns what it wrote. */
export function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs `glow-onnx ARGS...` in this process (no start-up cost; fs patches apply): the exit code
 * and what it printed on stderr. */
export async function cliInProcess(...args: string[]): Promise<{ code: number; stderr: string }> {
  const { main } = await import('../src/cli/main.js');
  const { log, error } = console;
  let stderr = '';
  console.log = () => {};
  console.error = (...parts: unknown[]) => (stderr += `${parts.join(' ')}\n`);
  try {
    return { code: await main(args), stderr };
  } finally {
    Object.assign(console, { log, error });
  }
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

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
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
