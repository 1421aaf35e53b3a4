// GlowRuntime for Node: a model directory (or the two .onnx files) on onnxruntime-node, with
// execution providers in the user's priority order.

import ort from 'onnxruntime-node';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { GraphIO } from '../builder/graph.js';
import { readModelSummary } from '../builder/parse.js';
import { GlowConfig } from '../glow/config.js';
import { checkGraphPorts, configFrom, ModelFileError, parseGlowJson, sameConfig, staticBatchOf } from '../glow/contract.js';
import { GlowModel } from './core.js';
import { createSession, Placement, profilePlacement, ProviderFailure, ProviderName, ProviderOptions } from './providers.js';
import { META_CONFIG, META_DTYPE } from '../glow/metadata.js';

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

export { ModelFileError };

function readFile(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ModelFileError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** A model directory's glow.json must be there, be one glow-onnx export wrote, and describe the
 * model its graphs hold: a folder that is not a model, or one whose files were mixed, fails here
 * in one line instead of running. */
function checkGlowJson(dir: string, config: GlowConfig, graph: string): void {
  const path = join(dir, 'glow.json');
  if (!existsSync(path)) throw new ModelFileError(`${dir} has no glow.json: not a model directory written by glow-onnx export`);
  const description = parseGlowJson(new TextDecoder().decode(readFile(path)), path);
  if (!sameConfig(description.config, config)) {
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
  const raw = summary.metadata[META_CONFIG];
  if (!raw) throw new ModelFileError(`${path} carries no ${META_CONFIG} metadata: it was not exported by glow-onnx`);
  const where = `${path} metadata ${META_CONFIG}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (e) {
    throw new ModelFileError(`${where}: ${(e as Error).message}`);
  }
  const config = configFrom(parsed, where);
  const ports = (list: GraphIO[]) => list.map((io) => ({ name: io.value.name, shape: io.value.shape }));
  const [inputs, outputs] = [ports(summary.inputs), ports(summary.outputs)];
  checkGraphPorts(config, kind, path, inputs, outputs);
  return { config, externalData, batch: staticBatchOf(kind, inputs, outputs), dtype: summary.metadata[META_DTYPE] ?? 'float32' };
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
    model: new GlowModel(config, encode.session, decode.session, ort, batch ?? options.batchSize, batch !== undefined, dtype),
    config,
    dtype,
    providers: { encode: encode.provider, decode: decode.provider },
    failures: [...encode.failures, ...decode.failures],
    placement: (graph, feeds) => graph === 'encode'
      ? profilePlacement(encodeBytes, encode.provider, feeds, { ...options, externalData: encodeData })
      : profilePlacement(decodeBytes, decode.provider, feeds, { ...options, externalData: decodeData }),
  };
}
