// GlowRuntime for Node: a model directory (or the two .onnx files) on onnxruntime-node, with
// execution providers in the user's priority order.

import ort from 'onnxruntime-node';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readModelSummary } from '../builder/serialize.js';
import { GlowConfig, latentShape, validateConfig } from '../glow/config.js';
import { FORMAT_VERSION } from '../glow/export.js';
import { GlowModel } from './core.js';
import { createSession, Placement, profilePlacement, ProviderFailure, ProviderName, ProviderOptions } from './providers.js';

export interface RuntimeOptions extends ProviderOptions {
  batchSize?: number;
}

export interface GlowRuntime {
  model: GlowModel;
  config: GlowConfig;
  /** Weights and compute precision of the graphs ('float32' or 'float16'; I/O is float32). */
  dtype: string;
  /** The provider each graph's session runs on, and what failed before it. */
  providers: { encode: ProviderName; decode: ProviderName };
  failures: ProviderFailure[];
  /** Where ONNX Runtime puts each node of a graph on its provider, from one profiled run with
   * these feeds: shows the ops that fell back to the CPU. */
  placement(graph: 'encode' | 'decode', feeds: Record<string, ort.Tensor>): Promise<Placement>;
}

export class ModelFileError extends Error {
  override name = 'ModelFileError';
}

function readFile(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ModelFileError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** A config read from a model's files: a file that holds a bad one is a bad model file (exit
 * code 1), not a bad command line, which a bare ConfigError would say. */
function configFrom(read: () => unknown, where: string): GlowConfig {
  try {
    return validateConfig(read());
  } catch (e) {
    throw new ModelFileError(`${where}: ${(e as Error).message}`);
  }
}

/** The same config, whatever order its keys were stored in. */
function sameConfig(a: GlowConfig, b: GlowConfig): boolean {
  const canonical = (c: GlowConfig) => JSON.stringify(Object.entries(c).sort(([x], [y]) => (x < y ? -1 : 1)));
  return canonical(a) === canonical(b);
}

/** A model directory's glow.json must be there, be one glow-onnx export wrote, and describe the
 * model its graphs hold: a folder that is not a model, or one whose files were mixed, fails here
 * in one line instead of running. */
function checkGlowJson(dir: string, config: GlowConfig, graph: string): void {
  const path = join(dir, 'glow.json');
  if (!existsSync(path)) throw new ModelFileError(`${dir} has no glow.json: not a model directory written by glow-onnx export`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(readFile(path)));
  } catch (e) {
    if (e instanceof ModelFileError) throw e;
    throw new ModelFileError(`${path} is not valid JSON (${(e as Error).message})`);
  }
  const { formatVersion, config: stored } = (typeof json === 'object' && json !== null ? json : {}) as { formatVersion?: unknown; config?: unknown };
  if (formatVersion !== FORMAT_VERSION) {
    throw new ModelFileError(`${path} has format version ${JSON.stringify(formatVersion)}; this glow-onnx reads version ${FORMAT_VERSION}`);
  }
  if (!sameConfig(configFrom(() => stored, `${path} config`), config)) {
    throw new ModelFileError(`${path} describes another model than ${graph} (their configs differ)`);
  }
}

/** The config embedded in a graph, after checking that the graph has the contract's I/O, and
 * the side files its external initializers are in (read from beside the .onnx file). */
function configOf(bytes: Uint8Array, path: string, kind: 'encode' | 'decode'): { config: GlowConfig; externalData: { path: string; data: Uint8Array }[]; batch?: number; dtype: string } {
  let summary;
  try {
    summary = readModelSummary(bytes, path);
  } catch (e) {
    throw new ModelFileError((e as Error).message);
  }
  const externalData = summary.externalData.map((location) => ({ path: location, data: readFile(join(dirname(path), location)) }));
  const raw = summary.metadata['glow_onnx.config'];
  if (!raw) throw new ModelFileError(`${path} carries no glow_onnx.config metadata: it was not exported by glow-onnx`);
  const config = configFrom(() => JSON.parse(raw), `${path} metadata glow_onnx.config`);
  // x is the image: encode's input, decode's output.
  const images = kind === 'encode' ? summary.inputs : summary.outputs;
  if (!images.some((io) => io.value.name === 'x')) {
    throw new ModelFileError(`${path} is not a Glow ${kind} graph (no x ${kind === 'encode' ? 'input' : 'output'})`);
  }
  if (kind === 'decode') {
    for (let l = 1; l <= config.L; l++) {
      const io = summary.inputs.find((i) => i.value.name === `eps_${l}`);
      const shape = io?.value.shape?.slice(1);
      if (!io || shape?.join() !== latentShape(config, l).join()) throw new ModelFileError(`${path}: input eps_${l} does not match its config`);
    }
  }
  // A model exported with a static batch (--batch) runs in batches of exactly that size.
  const batch = images.find((io) => io.value.name === 'x')!.value.shape?.[0];
  return { config, externalData, batch: typeof batch === 'number' ? batch : undefined, dtype: summary.metadata['glow_onnx.dtype'] ?? 'float32' };
}

export async function loadGlowRuntime(
  source: string | { encode: string; decode: string }, options: RuntimeOptions = {},
): Promise<GlowRuntime> {
  const paths = typeof source === 'string' ? { encode: join(source, 'encode.onnx'), decode: join(source, 'decode.onnx') } : source;
  const encodeBytes = readFile(paths.encode);
  const decodeBytes = readFile(paths.decode);
  const { config, externalData: encodeData, batch, dtype } = configOf(encodeBytes, paths.encode, 'encode');
  const { config: decodeConfig, externalData: decodeData } = configOf(decodeBytes, paths.decode, 'decode');
  if (!sameConfig(config, decodeConfig)) {
    throw new ModelFileError(`${paths.encode} and ${paths.decode} belong to different models (their configs differ)`);
  }
  if (typeof source === 'string') checkGlowJson(source, config, paths.encode);
  const encode = await createSession(encodeBytes, { ...options, externalData: encodeData });
  let decode;
  try {
    decode = await createSession(decodeBytes, { ...options, externalData: decodeData });
  } catch (e) {
    await encode.session.release();
    throw e;
  }
  return {
    model: new GlowModel(config, encode.session, decode.session, ort, batch ?? options.batchSize, batch !== undefined),
    config,
    dtype,
    providers: { encode: encode.provider, decode: decode.provider },
    failures: [...encode.failures, ...decode.failures],
    placement: (graph, feeds) => graph === 'encode'
      ? profilePlacement(encodeBytes, encode.provider, feeds, { ...options, externalData: encodeData })
      : profilePlacement(decodeBytes, decode.provider, feeds, { ...options, externalData: decodeData }),
  };
}
