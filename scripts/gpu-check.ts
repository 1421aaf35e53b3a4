// Parity check of the GPU execution providers against onnxruntime-node's CPU provider, for a
// machine with GPU libraries (or here, WebGPU through SwiftShader).
//
//   node dist/scripts/gpu-check.js [--model DIR] [--ep cuda,tensorrt,webgpu]
//
// Default model: a random MNIST-shaped Glow ([1,28,28], K=2, L=2, hidden 32, affine, LU,
// learnTop) built in memory with non-trivial weights; no files needed. Default providers:
// tensorrt, cuda, webgpu. Each provider is tried on its own (strict mode: no fallback) and
// reported as `provider: OK` or `provider: UNAVAILABLE (reason)`; for each available one a batch
// of 8 goes through encode and decode there and on the CPU, and the script prints the max abs
// error of eps, bpd and the decoded x against the CPU, and where ONNX Runtime placed the nodes.
//
// WebGPU without a GPU: run with VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
// (Debian: apt-get install chromium libvulkan1). The script never sets it itself, so that a real
// GPU's driver is used where there is one.
//
// Exit code: 0 every available provider matched within 1e-3; 1 some available provider did
// not (or failed while running); 2 no requested provider was available; 3 usage error or a
// model directory that cannot be read.

import ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { GlowConfig, latentShape } from '../src/glow/config.js';
import { exportModel } from '../src/glow/export.js';
import { Encoded, GlowModel } from '../src/runtime/core.js';
import { loadGlowRuntime } from '../src/runtime/node.js';
import { createSession, Placement, profilePlacement, ProviderError, ProviderName, PROVIDERS } from '../src/runtime/providers.js';
import { randomImages, randomOneHot, randomParams } from '../support/random-params.js';

const TOLERANCE = 1e-3;
const BATCH = 8;
const DEFAULT_EPS: ProviderName[] = ['tensorrt', 'cuda', 'webgpu'];
const USAGE = 'usage: node dist/scripts/gpu-check.js [--model DIR] [--ep cuda,tensorrt,webgpu]';

const MNIST_CONFIG: GlowConfig = {
  imageShape: [1, 28, 28], K: 2, L: 2, hiddenChannels: 32, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};

interface Source {
  label: string;
  config: GlowConfig;
  encode: Uint8Array;
  decode: Uint8Array;
  dir?: string;
}

class Usage extends Error {}

function parseCommandLine(argv: string[]): { model?: string; eps: ProviderName[] } {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { model: { type: 'string' }, ep: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (e) {
    throw new Usage((e as Error).message.split('\n')[0]);
  }
  if (values.help) throw new Usage('');
  const eps = values.ep === undefined ? DEFAULT_EPS : values.ep.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (eps.length === 0) throw new Usage('--ep needs at least one provider');
  const unknown = eps.filter((p) => !PROVIDERS.includes(p as ProviderName));
  if (unknown.length) throw new Usage(`unknown provider(s) ${unknown.join(', ')} (known: ${PROVIDERS.join(', ')})`);
  return { model: values.model, eps: [...new Set(eps)] as ProviderName[] };
}

/** A model on one provider (strict: that provider or an error). */
async function open(source: Source, provider: ProviderName): Promise<GlowModel> {
  if (source.dir) {
    const runtime = await loadGlowRuntime(source.dir, { executionProviders: [provider], strict: true });
    return runtime.model;
  }
  const encode = await createSession(source.encode, { executionProviders: [provider], strict: true });
  try {
    const decode = await createSession(source.decode, { executionProviders: [provider], strict: true });
    return new GlowModel(source.config, encode.session, decode.session, ort);
  } catch (e) {
    await encode.session.release();
    throw e;
  }
}

async function loadSource(dir: string | undefined): Promise<Source> {
  if (!dir) {
    const config = MNIST_CONFIG;
    const files = exportModel({ config, params: randomParams(config, 1234) });
    return { label: 'random MNIST-shaped model in memory ([1,28,28] K=2 L=2 hidden 32, affine, LU, learnTop)', config, encode: files['encode.onnx'], decode: files['decode.onnx'] };
  }
  // loadGlowRuntime checks the directory (both graphs, their embedded configs, the I/O contract).
  let runtime;
  try {
    runtime = await loadGlowRuntime(dir, { executionProviders: ['cpu'] });
  } catch (e) {
    throw new Usage(`--model ${dir}: ${why(e)}`);
  }
  await runtime.model.release();
  return { label: dir, config: runtime.config, encode: readFileSync(join(dir, 'encode.onnx')), decode: readFileSync(join(dir, 'decode.onnx')), dir };
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), 1e-30));
  return m;
}

function placementLine(p: Placement): string {
  return Object.entries(p.byProvider)
    .map(([provider, ops]) => {
      const total = Object.values(ops).reduce((a, b) => a + b, 0);
      return `${provider} ${total} nodes (${Object.entries(ops).sort().map(([op, n]) => `${op} ${n}`).join(', ')})`;
    })
    .join('; ');
}

function why(e: unknown): string {
  if (e instanceof ProviderError) return e.failures.map((f) => f.reason).join('; ');
  return String((e as Error)?.message ?? e).split('\n')[0];
}

async function main(argv: string[]): Promise<number> {
  let args;
  let source: Source;
  try {
    args = parseCommandLine(argv);
    source = await loadSource(args.model);
  } catch (e) {
    if (!(e instanceof Usage)) throw e;
    if (!e.message) {
      console.log(USAGE);
      return 0;
    }
    console.error(`gpu-check: ${e.message}`);
    console.error(USAGE);
    return 3;
  }
  const { config } = source;
  console.log(`model: ${source.label}`);
  console.log(`batch ${BATCH}, tolerance ${TOLERANCE} (max abs error against onnxruntime-node CPU)`);

  // The same inputs for every provider; the CPU results are the reference.
  const x = Float32Array.from(randomImages(config, BATCH, 7).data);
  const y = config.numClasses ? Float32Array.from(randomOneHot(config, BATCH, 8).data) : undefined;
  const xShape = [BATCH, ...config.imageShape];
  const cpu = await open(source, 'cpu');
  let ref: Encoded;
  let refX: Float32Array;
  try {
    ref = await cpu.encode(x, xShape, y);
    refX = await cpu.decode(ref.eps, 1, y);
  } finally {
    await cpu.release();
  }
  const encFeeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, xShape) };
  const decFeeds: Record<string, ort.Tensor> = { temperature: new ort.Tensor('float32', Float32Array.of(1), []) };
  ref.eps.forEach((e, l) => (decFeeds[`eps_${l + 1}`] = new ort.Tensor('float32', e, [BATCH, ...latentShape(config, l + 1)])));
  if (y) encFeeds.y = decFeeds.y = new ort.Tensor('float32', y, [BATCH, config.numClasses]);

  let available = 0;
  let mismatched = 0;
  for (const provider of args.eps) {
    let model: GlowModel;
    const t0 = Date.now();
    try {
      model = await open(source, provider);
    } catch (e) {
      console.log(`${provider}: UNAVAILABLE (${why(e)})`);
      continue;
    }
    available++;
    console.log(`${provider}: OK (sessions in ${Date.now() - t0} ms)`);
    try {
      const t1 = Date.now();
      const enc = await model.encode(x, xShape, y);
      // Decode the CPU's latents, so that the decode error is decode's alone.
      const back = await model.decode(ref.eps, 1, y);
      const seconds = ((Date.now() - t1) / 1000).toFixed(1);
      const errors: Record<string, number> = {
        eps: Math.max(...ref.eps.map((e, l) => maxAbs(enc.eps[l], e))),
        bpd: maxAbs(enc.bpd, ref.bpd),
        x: maxAbs(back, refX),
      };
      const ok = Object.values(errors).every((v) => v <= TOLERANCE);
      if (!ok) mismatched++;
      console.log(`  max abs error vs cpu: ${Object.entries(errors).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`
        + ` (logdet rel ${maxRel(enc.logdet, ref.logdet).toExponential(2)}; encode+decode ${seconds} s) -> ${ok ? 'MATCH' : 'MISMATCH'}`);
      for (const [graph, bytes, feeds] of [['encode', source.encode, encFeeds], ['decode', source.decode, decFeeds]] as const) {
        console.log(`  ${graph} placement: ${placementLine(await profilePlacement(bytes, provider, feeds))}`);
      }
    } catch (e) {
      mismatched++;
      console.log(`  FAILED while running: ${why(e)}`);
    } finally {
      await model.release();
    }
  }
  const code = available === 0 ? 2 : mismatched > 0 ? 1 : 0;
  console.log(available === 0
    ? 'result: no requested provider was available (exit 2)'
    : `result: ${available - mismatched}/${available} available provider(s) matched the CPU within ${TOLERANCE} (exit ${code})`);
  return code;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e) => {
    console.error(`gpu-check: ${(e as Error)?.stack ?? e}`);
    process.exitCode = 1;
  },
);
