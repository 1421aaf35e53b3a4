// Commands that make and describe models: init, export, inspect.

import { basename, dirname, join } from 'node:path';
import { SUPPORTED_OPSETS } from '../builder/graph.js';
import { DEFAULT_CONFIG, GlowConfig, validateConfig } from '../glow/config.js';
import { exportModelToDirectory } from '../glow/export-directory.js';
import { DTYPES, ExportDType, ExportOptions, ExportTarget, TARGETS } from '../glow/export.js';
import { importWeights, ImportOptions } from '../glow/import/index.js';
import { toRosinality } from '../glow/import/rosinality.js';
import { writeSafetensors } from '../glow/safetensors.js';
import { checkpointBytes, initWeights, shufflesFrom, WEIGHTS_FILE } from '../glow/params.js';
import { Rng } from '../glow/rng.js';
import { writeFilesAtomic } from '../runtime/files.js';
import { initActNorms } from '../runtime/init.js';
import { TRITON_DEVICES, TritonDevice, TritonOptions, tritonRepository } from '../glow/triton.js';
import { inspectModel } from '../runtime/inspect.js';
import { dequantize } from '../runtime/quantize.js';
import { bool, choice, integer, Options, parse, readBytes, readJson, required, UsageError, Values } from './args.js';
import { loadImages, oneHot } from './data.js';

export const CONFIG_FLAGS: Options = {
  'image-shape': { type: 'string' }, K: { type: 'string' }, L: { type: 'string' }, hidden: { type: 'string' },
  coupling: { type: 'string' }, permutation: { type: 'string' }, lu: { type: 'string' }, 'learn-top': { type: 'string' },
  classes: { type: 'string' }, 'n-bits': { type: 'string' }, 'actnorm-scale': { type: 'string' },
  'scale-floor': { type: 'string' }, 'scale-bound': { type: 'string' }, lipschitz: { type: 'string' },
};

/** Defaults, then --config FILE, then individual flags; validated as a whole. */
export function configFromFlags(values: Values): GlowConfig {
  const merged: Record<string, unknown> = { ...DEFAULT_CONFIG, ...(values.config ? (readJson(values.config as string) as object) : {}) };
  const numeric = (name: string) => (values[name] === undefined ? undefined : Number(values[name]));
  const flags: Record<string, unknown> = {
    imageShape: values['image-shape'] === undefined ? undefined : String(values['image-shape']).split(',').map(Number),
    K: numeric('K'),
    L: numeric('L'),
    hiddenChannels: numeric('hidden'),
    coupling: values.coupling,
    permutation: values.permutation,
    lu: bool(values, 'lu'),
    learnTop: bool(values, 'learn-top'),
    numClasses: numeric('classes'),
    nBits: numeric('n-bits'),
    actnormScale: numeric('actnorm-scale'),
    scaleFloor: numeric('scale-floor'),
    scaleBound: numeric('scale-bound'),
    lipschitz: numeric('lipschitz'),
  };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) merged[k] = v;
  return validateConfig(merged);
}

export async function cmdInit(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    out: { type: 'string' }, config: { type: 'string' }, seed: { type: 'string' }, data: { type: 'string' },
    'init-batch': { type: 'string' }, ...CONFIG_FLAGS,
  });
  const out = required(values, 'out');
  const config = configFromFlags(values);
  const seed = integer(values, 'seed', 0) ?? 0;
  const data = (values.data as string | undefined) ?? (config.imageShape.join() === '1,28,28' ? 'mnist' : 'none');
  let weights = initWeights(config, seed);
  if (data !== 'none') {
    const batch = await loadImages(data, config, integer(values, 'init-batch', 2) ?? 256);
    const x = dequantize(batch.pixels, config.nBits, new Rng(seed + 1));
    weights = await initActNorms(weights, x, oneHot(batch.labels, batch.count, config.numClasses));
    console.error(`ActNorms initialised from ${batch.count} images of ${data}`);
  }
  writeFilesAtomic(out, { [WEIGHTS_FILE]: checkpointBytes(weights), 'config.json': `${JSON.stringify(config, null, 2)}\n` });
  console.log(`wrote ${join(out, WEIGHTS_FILE)} and ${join(out, 'config.json')}`);
}

export function opsetFlag(values: Values): number | undefined {
  const opset = integer(values, 'opset', 1);
  if (opset !== undefined && !SUPPORTED_OPSETS.includes(opset)) {
    throw new UsageError(`--opset ${opset} is not supported (${SUPPORTED_OPSETS[0]} to ${SUPPORTED_OPSETS.at(-1)})`);
  }
  return opset;
}

const IMPORT_FLAGS: Options = {
  'n-bits': { type: 'string' }, 'image-shape': { type: 'string' }, permutation: { type: 'string' }, shuffles: { type: 'string' },
};

function importFlags(values: Values): ImportOptions {
  const permutation = values.permutation as string | undefined;
  if (permutation !== undefined && permutation !== 'reverse' && permutation !== 'shuffle') {
    throw new UsageError(`--permutation must be reverse or shuffle (1x1 convolutions are found in the file), got ${permutation}`);
  }
  let imageShape: [number, number, number] | undefined;
  if (values['image-shape'] !== undefined) {
    const dims = String(values['image-shape']).split(',').map(Number);
    if (dims.length !== 3 || !dims.every((d) => Number.isInteger(d) && d > 0)) throw new UsageError(`--image-shape must be C,H,W, got ${values['image-shape']}`);
    imageShape = dims as [number, number, number];
  }
  const shuffles = values.shuffles === undefined ? undefined : shufflesFrom(readJson(values.shuffles as string), values.shuffles as string);
  return { nBits: integer(values, 'n-bits', 1), imageShape, permutation, shuffles };
}

/** Weights from any supported file, with the overrides the command line gives. */
function loadWeights(values: Values, path: string) {
  const imported = importWeights(readBytes(path), path, importFlags(values));
  for (const note of imported.notes) console.error(`note: ${note}`);
  if (values.config) return { ...imported, weights: { ...imported.weights, config: validateConfig(readJson(values.config as string)) } };
  return imported;
}

/** What `import --to rosinality` writes: its state_dict names, loadable with strict=True. */
const ROSINALITY_FILE = 'rosinality.safetensors';

export async function cmdImport(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { out: { type: 'string' }, to: { type: 'string' }, ...IMPORT_FLAGS }, 1);
  const out = required(values, 'out');
  const to = choice(values, 'to', ['native', 'rosinality'] as const) ?? 'native';
  const { weights, origin } = loadWeights(values, positionals[0]);
  if (to === 'rosinality') {
    const { tensors, args } = toRosinality(weights);
    writeFilesAtomic(out, { [ROSINALITY_FILE]: writeSafetensors(tensors, { 'rosinality.args': JSON.stringify(args) }) });
    const call = `Glow(${args.in_channel}, ${args.n_flow}, ${args.n_block}, affine=${args.affine ? 'True' : 'False'}, conv_lu=${args.conv_lu ? 'True' : 'False'})`;
    console.log(`wrote ${join(out, ROSINALITY_FILE)} from a ${origin} checkpoint: load it into rosinality's ${call} (filter_size ${args.filter_size}) `
      + 'with load_state_dict(safetensors.torch.load_file(path), strict=True)');
    return;
  }
  writeFilesAtomic(out, { [WEIGHTS_FILE]: checkpointBytes(weights), 'config.json': `${JSON.stringify(weights.config, null, 2)}\n` });
  console.log(`imported a ${origin} checkpoint (${JSON.stringify(weights.config)}) into ${join(out, WEIGHTS_FILE)}`);
}

export async function cmdExport(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    weights: { type: 'string' }, out: { type: 'string' }, config: { type: 'string' }, opset: { type: 'string' },
    'no-fold': { type: 'boolean' }, dtype: { type: 'string' }, batch: { type: 'string' }, 'external-data': { type: 'boolean' },
    triton: { type: 'string' }, 'triton-max-batch': { type: 'string' }, 'triton-instances': { type: 'string' },
    'triton-device': { type: 'string' }, target: { type: 'string' }, ...IMPORT_FLAGS,
  });
  const weightsPath = required(values, 'weights');
  const out = required(values, 'out');
  const options: ExportOptions = {
    fold: !values['no-fold'],
    opset: opsetFlag(values),
    dtype: choice<ExportDType>(values, 'dtype', DTYPES),
    batch: integer(values, 'batch', 1),
    externalData: values['external-data'] ? true : 'auto',
    target: choice<ExportTarget>(values, 'target', TARGETS),
  };
  if (values.triton && options.target === 'opencv') throw new UsageError('--triton writes ONNX Runtime graphs; it cannot be combined with --target opencv');
  const triton: TritonOptions = {
    ...options,
    maxBatchSize: integer(values, 'triton-max-batch', 1),
    instances: integer(values, 'triton-instances', 1),
    device: choice<TritonDevice>(values, 'triton-device', TRITON_DEVICES),
  };
  if (!values.triton && (triton.maxBatchSize !== undefined || triton.instances !== undefined || triton.device !== undefined)) {
    throw new UsageError('--triton-max-batch, --triton-instances and --triton-device need --triton DIR');
  }
  const { weights, origin } = loadWeights(values, weightsPath);
  // The Triton repository is built in memory first, so that a failure there writes nothing.
  const repository = values.triton ? tritonRepository(weights, triton) : undefined;
  // Streamed to disk one graph at a time (all or nothing): big models never sit in memory whole.
  const { json, files } = exportModelToDirectory(weights, out, options, { weights: basename(weightsPath), origin });
  const sizes = files.filter(({ name }) => name !== 'glow.json').map(({ name, bytes }) => `${name} (${bytes} bytes)`);
  const variant = [json.target ? `for ${json.target}` : '', json.dtype, json.batch ? `batch ${json.batch}` : '', json.folded ? '' : 'unfolded'].filter(Boolean).join(', ');
  console.log(`wrote ${out}/{glow.json, ${sizes.join(', ')}} at opset ${json.opset}, ${variant}`);
  if (repository) {
    writeFilesAtomic(values.triton as string, repository);
    console.log(`wrote a Triton model repository to ${values.triton}: ${Object.keys(repository).sort().join(', ')}`);
  }
}

export async function cmdInspect(argv: string[]): Promise<void> {
  const { positionals } = parse(argv, {}, 1);
  const path = positionals[0];
  // External data lies beside the model, under the name the model gives it.
  const externalData = (location: string) => readBytes(join(dirname(path), location));
  console.log(inspectModel(readBytes(path), path, { externalData }));
}
