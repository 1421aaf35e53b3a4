// The model folder's contract, checked the same way wherever a model is loaded (the Node layer
// reads the files from disk, the web layer fetches them or takes the user's picks): glow.json as
// glow-onnx export writes it, and each graph's inputs and outputs. Imports nothing platform
// specific, so the browser bundle takes it.

import { GlowConfig, latentShape, validateConfig } from './config.js';

/** The glow.json format this glow-onnx writes and reads. */
export const FORMAT_VERSION = 1;

/** The graphs of a model folder, in the order they are loaded. */
export const GRAPH_FILES = ['encode.onnx', 'decode.onnx'] as const;
export type GraphFile = (typeof GRAPH_FILES)[number];

/** A model file that cannot be used: unreadable, not what glow-onnx export writes, or at odds
 * with the rest of its folder. */
export class ModelFileError extends Error {
  override name = 'ModelFileError';
}

/** An error's message, or its name when it has none, or the thrown value itself. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message || e.name : String(e);
}

/** What a loader needs from glow.json; fields that older exports lack are optional. */
export interface ModelDescription {
  config: GlowConfig;
  /** Weights and compute precision ('float32' when glow.json does not say). */
  dtype: string;
  /** The static batch size of every input and output, when exported with one. */
  batch?: number;
  /** Side file of each .onnx whose initializers are external data. */
  externalData: Partial<Record<GraphFile, string>>;
}

/** glow.json's text, checked: `where` names it in errors. */
export function parseGlowJson(text: string, where: string): ModelDescription {
  let json: { formatVersion?: unknown; config?: unknown; dtype?: unknown; batch?: unknown; externalData?: unknown };
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ModelFileError(`${where} is not valid JSON (${messageOf(e)}): is this a glow-onnx model directory?`);
  }
  if (typeof json !== 'object' || json === null || !('config' in json)) {
    throw new ModelFileError(`${where} has no "config": it was not written by glow-onnx export`);
  }
  if (json.formatVersion !== FORMAT_VERSION) {
    throw new ModelFileError(`${where} has format version ${JSON.stringify(json.formatVersion)}; this glow-onnx reads version ${FORMAT_VERSION}`);
  }
  const config = configFrom(json.config, `${where} config`);
  const batch = json.batch;
  if (batch !== undefined && !(Number.isInteger(batch) && (batch as number) > 0)) {
    throw new ModelFileError(`${where}: batch must be a positive integer, got ${JSON.stringify(batch)}`);
  }
  const externalData: ModelDescription['externalData'] = {};
  if (json.externalData !== undefined) {
    const entries = typeof json.externalData === 'object' && json.externalData !== null ? Object.entries(json.externalData) : [];
    for (const [graph, file] of entries) {
      // A plain file name beside the graph; nothing that would leave the model folder.
      if (!(GRAPH_FILES as readonly string[]).includes(graph) || typeof file !== 'string' || !/^[\w.-]+$/.test(file) || file.startsWith('.')) {
        throw new ModelFileError(`${where}: externalData must map encode.onnx/decode.onnx to a file name beside them, got ${JSON.stringify(json.externalData)}`);
      }
      externalData[graph as GraphFile] = file;
    }
  }
  return { config, dtype: typeof json.dtype === 'string' ? json.dtype : 'float32', batch: batch as number | undefined, externalData };
}

/** A config read from a model's files: a file that holds a bad one is a bad model file, not a
 * bad command line, which a bare ConfigError would say. */
export function configFrom(raw: unknown, where: string): GlowConfig {
  try {
    return validateConfig(raw);
  } catch (e) {
    throw new ModelFileError(`${where}: ${messageOf(e)}`);
  }
}

/** The same config, whatever order its keys were stored in. */
export function sameConfig(a: GlowConfig, b: GlowConfig): boolean {
  const canonical = (c: GlowConfig) => JSON.stringify(Object.entries(c).sort(([x], [y]) => (x < y ? -1 : 1)));
  return canonical(a) === canonical(b);
}

/** An input or output of a graph; the shape when the loader knows it (leading batch included). */
export interface GraphPort {
  name: string;
  shape?: readonly (number | string)[];
}

/**
 * Checks that a graph has the I/O of a Glow `kind` graph of this config, so that a wrong or mixed
 * up file fails on load, in one line naming it, instead of on its first run. Latent shapes are
 * compared where the ports carry them.
 */
export function checkGraphPorts(config: GlowConfig, kind: 'encode' | 'decode', file: string, inputs: readonly GraphPort[], outputs: readonly GraphPort[]): void {
  // x is the image: encode's input, decode's output.
  const images = kind === 'encode' ? inputs : outputs;
  if (!images.some((p) => p.name === 'x')) {
    throw new ModelFileError(`${file} is not a Glow ${kind} graph (no x ${kind === 'encode' ? 'input' : 'output'})`);
  }
  const eps = Array.from({ length: config.L }, (_, l) => `eps_${l + 1}`);
  const y = config.numClasses > 0 ? ['y'] : [];
  const expect = (what: string, have: readonly GraphPort[], want: string[]) => {
    const missing = want.filter((n) => !have.some((p) => p.name === n));
    if (missing.length) {
      throw new ModelFileError(`${file} does not match its config: missing ${what} ${missing.join(', ')} (it has ${have.map((p) => p.name).join(', ') || 'none'})`);
    }
  };
  if (kind === 'encode') {
    expect('input(s)', inputs, ['x', ...y]);
    expect('output(s)', outputs, [...eps, 'logdet', 'log_px', 'bpd']);
  } else {
    // temperature is optional: a decode without it (export --target opencv) takes eps that
    // GlowModel has already scaled.
    expect('input(s)', inputs, [...eps, ...y]);
    eps.forEach((name, l) => {
      const shape = inputs.find((p) => p.name === name)?.shape?.slice(1);
      if (shape && shape.join() !== latentShape(config, l + 1).join()) {
        throw new ModelFileError(`${file}: input ${name} is [${shape.join(', ')}] per example, its config needs [${latentShape(config, l + 1).join(', ')}]`);
      }
    });
  }
}

/** The static batch of a graph's image port, or undefined when the batch is dynamic. */
export function staticBatchOf(kind: 'encode' | 'decode', inputs: readonly GraphPort[], outputs: readonly GraphPort[]): number | undefined {
  const batch = (kind === 'encode' ? inputs : outputs).find((p) => p.name === 'x')?.shape?.[0];
  return typeof batch === 'number' ? batch : undefined;
}
