// The fuzzing half of test/interop/fuzz.test.ts, in a worker thread so that the test can stop a
// reader that hangs (a synchronous loop cannot be interrupted from the thread it runs on).
//
// For every file reader, from valid seed files: truncations, random byte changes (with values
// that break length fields: 0x00, 0x7f, 0x80, 0xff), spliced random runs, and random buffers.
// Each case must return or throw a clean error: one of the project's own error classes, with a
// one-line message. Anything else (a plain Error, TypeError, RangeError, SyntaxError from
// JSON.parse, an allocation failure, a multi-line message) is reported back with the case that
// produced it.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import { parseModel, readModelSummary } from '../../src/builder/parse.js';
import { OnnxFormatError } from '../../src/builder/tensor-bytes.js';
import { ConfigError, GlowConfig } from '../../src/glow/config.js';
import { exportModel } from '../../src/glow/export.js';
import { paramSpecs } from '../../src/glow/names.js';
import { CheckpointError, importWeights } from '../../src/glow/import/index.js';
import { readWeightsFile } from '../../src/io/torch.js';
import { checkpointBytes, parseCheckpoint, WeightsError } from '../../src/glow/params.js';
import { readSafetensors, SafetensorsError, WritableTensor, writeSafetensors } from '../../src/io/safetensors.js';
import { InputError } from '../../src/runtime/core.js';
import { inspectModel } from '../../src/runtime/inspect.js';
import { latentsBytes, parseLatents } from '../../src/runtime/latents.js';
import { initialCheckpoint, readTrainCheckpoint } from '../../src/train/checkpoint.js';
import { TrainingError } from '../../src/train/run.js';
import { Rng, randomParams } from '../../support/random-params.js';

export interface FuzzRequest {
  reader: string;
  seed: number;
  /** Mutations per seed file (truncations and random buffers come on top). */
  mutations: number;
}

export type FuzzMessage =
  | { type: 'progress'; done: number; label: string }
  | { type: 'problem'; label: string; problem: string }
  | { type: 'done'; cases: number; thrown: number; maxMs: number; slowest: string };

/** The errors the readers may throw: a reader's own, never one the language or a library raised
 * on the reader's behalf. Checked by class, not by name. */
export const CLEAN_ERRORS: (new (message: string) => Error)[] = [
  OnnxFormatError, CheckpointError, SafetensorsError, WeightsError, ConfigError, TrainingError, InputError,
];

/** Why the thrown value is not a clean error, or undefined when it is one. */
export function uncleanReason(e: unknown): string | undefined {
  if (!(e instanceof Error)) return `threw a non-Error ${typeof e}: ${String(e).slice(0, 200)}`;
  const kind = e.constructor.name;
  if (!CLEAN_ERRORS.some((c) => e instanceof c)) return `${kind}: ${e.message.slice(0, 300)}`;
  if (!e.message || /[\r\n]/.test(e.message)) return `${kind} with a message that is not one line: ${JSON.stringify(e.message.slice(0, 300))}`;
  return undefined;
}

function fixturesDir(): string {
  for (const rel of ['../../../test/fixtures', '../../test/fixtures']) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    try {
      readdirSync(path);
      return path;
    } catch {
      // try the next
    }
  }
  return join(process.cwd(), 'test', 'fixtures');
}

/** A plain Uint8Array: cases() mutates seed.slice(), which for a Buffer is a view of the seed,
 * so every mutation would pile up in the seed itself. */
function fixtureBytes(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}

const config: GlowConfig = {
  imageShape: [1, 8, 8], K: 1, L: 2, hiddenChannels: 4, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 2, nBits: 5, actnormScale: 1,
};

interface Reader {
  seeds: () => Uint8Array[];
  read: (bytes: Uint8Array) => unknown;
}

function readers(): Record<string, Reader> {
  const weights = { config, params: randomParams(config, 1) };
  const model = exportModel(weights, { externalData: true });
  const inline = exportModel(weights, { dtype: 'float16', fold: false });
  const data = model['encode.onnx.data']!;
  const fixtures = fixturesDir();
  const ptFiles = ['glow-torch', 'torch-io'].flatMap((d) => readdirSync(join(fixtures, d))
    .filter((f) => /\.(pt|pkl)$/.test(f)).sort().map((f) => fixtureBytes(join(fixtures, d, f))));
  // Legacy torch.save files: a state_dict with views, chaiyujin's wrapper with optimizer state,
  // and one its own trainer wrote.
  const legacyFiles = ['torch-io/legacy_plain.pt', 'torch-io/legacy_chaiyujin.pkg', 'chaiyujin/chaiyujin_real_additive_plain_gray.pkg']
    .map((f) => fixtureBytes(join(fixtures, f)));
  const native = checkpointBytes(weights);
  const latents = latentsBytes(config, [new Float32Array(2 * 2 * 4 * 4).fill(0.5), new Float32Array(2 * 8 * 2 * 2).fill(-1)], 2);
  // A checkpoint as a run writes it: with weight averages and the run's options.
  const initial = readSafetensors(initialCheckpoint(weights, 3));
  const averaged = writeSafetensors([
    ...[...initial.tensors].map(([name, t]) => [name, { dtype: 'F32', shape: t.shape, data: t.data }] as [string, WritableTensor]),
    ...paramSpecs(config).filter((s) => s.trainable)
      .map((s) => [`ema.${s.name}`, { dtype: 'F32', shape: s.shape, data: initial.tensors.get(s.name)!.data }] as [string, WritableTensor]),
  ], { ...initial.metadata, 'glow_onnx.train_options': JSON.stringify({ batchSize: 8, learningRate: 1e-3, seed: 3 }) });
  const onnxSeeds = () => [inline['encode.onnx'], inline['decode.onnx'], model['encode.onnx']];
  const external = { 'encode.onnx.data': data, 'decode.onnx.data': model['decode.onnx.data']! };
  return {
    inspect: { seeds: onnxSeeds, read: (b) => inspectModel(b, 'fuzz.onnx', { externalData: external }) },
    readModelSummary: { seeds: onnxSeeds, read: (b) => readModelSummary(b, 'fuzz.onnx') },
    'parseModel(external data)': { seeds: () => [data], read: (b) => parseModel(model['encode.onnx'], 'encode.onnx', { externalData: { 'encode.onnx.data': b } }) },
    readSafetensors: { seeds: () => [native, latents], read: (b) => readSafetensors(b, 'fuzz.safetensors') },
    parseCheckpoint: { seeds: () => [native], read: (b) => parseCheckpoint(b, 'fuzz.safetensors') },
    parseLatents: { seeds: () => [latents], read: (b) => parseLatents(b, 'fuzz.safetensors', config) },
    importWeights: { seeds: () => [native, ...ptFiles], read: (b) => importWeights(b, 'fuzz.pt') },
    'readWeightsFile(legacy torch.save)': { seeds: () => legacyFiles, read: (b) => readWeightsFile(b, 'fuzz.pt') },
    readTrainCheckpoint: { seeds: () => [initialCheckpoint(weights, 3), averaged], read: (b) => readTrainCheckpoint(b, 'checkpoint.safetensors') },
  };
}

const NASTY = [0x00, 0x7f, 0x80, 0xff];

/** Deterministic cases from one seed file. */
function* cases(seed: Uint8Array, rng: Rng, mutations: number): Generator<[string, Uint8Array]> {
  const n = seed.length;
  const cuts = new Set<number>([0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 64, n - 1, n - 2, n >> 1]);
  for (let k = 0; k < 24; k++) cuts.add(rng.int(n));
  for (const c of [...cuts].filter((c) => c >= 0 && c < n).sort((a, b) => a - b)) yield [`truncated to ${c} bytes`, seed.slice(0, c)];
  for (let k = 0; k < mutations; k++) {
    const bytes = seed.slice();
    const changes = [1, 2, 4, 16][k % 4];
    // Half the cases change bytes near the start, where headers and length fields are.
    const span = k % 2 === 0 ? Math.min(n, 256) : n;
    const at: number[] = [];
    for (let c = 0; c < changes; c++) {
      const i = rng.int(span);
      bytes[i] = rng.next() < 0.5 ? NASTY[rng.int(NASTY.length)] : rng.int(256);
      at.push(i);
    }
    yield [`bytes ${at.join(',')} changed`, bytes];
  }
  for (let k = 0; k < 4; k++) {
    const a = rng.int(n);
    const run = Uint8Array.from({ length: 1 + rng.int(64) }, () => rng.int(256));
    const out = new Uint8Array(n - Math.min(run.length, n - a) + run.length);
    out.set(seed.subarray(0, a));
    out.set(run, a);
    out.set(seed.subarray(Math.min(n, a + run.length)), a + run.length);
    yield [`random run of ${run.length} at ${a}`, out];
  }
}

function randomBuffers(rng: Rng): [string, Uint8Array][] {
  return [0, 1, 8, 9, 100, 4096].map((len) => [`${len} random bytes`, Uint8Array.from({ length: len }, () => rng.int(256))]);
}

function run(request: FuzzRequest): void {
  const reader = readers()[request.reader];
  if (!reader) throw new Error(`no reader ${request.reader}`);
  const rng = new Rng(request.seed);
  let done = 0;
  let thrown = 0;
  let maxMs = 0;
  let slowest = '';
  const post = (m: FuzzMessage) => parentPort!.postMessage(m);
  const all: [string, Uint8Array][] = [...randomBuffers(rng)];
  reader.seeds().forEach((seed, s) => {
    for (const [label, bytes] of cases(seed, rng, request.mutations)) all.push([`seed ${s}: ${label}`, bytes]);
  });
  for (const [label, bytes] of all) {
    // Posted before the case runs: if it hangs, the test knows which one.
    post({ type: 'progress', done, label });
    const t0 = performance.now();
    try {
      reader.read(bytes);
    } catch (e) {
      thrown++;
      const reason = uncleanReason(e);
      if (reason) post({ type: 'problem', label, problem: reason });
    }
    const ms = performance.now() - t0;
    if (ms > maxMs) {
      maxMs = ms;
      slowest = label;
    }
    done++;
  }
  post({ type: 'done', cases: done, thrown, maxMs, slowest });
}

if (parentPort && workerData) run(workerData as FuzzRequest);
