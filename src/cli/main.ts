// The glow-onnx command. Every failure ends in one line on stderr and a nonzero exit code:
// 2 for a wrong command line, 1 for anything else.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, ParseArgsConfig } from 'node:util';
import { SUPPORTED_OPSETS } from '../builder/graph.js';
import { ConfigError, DEFAULT_CONFIG, GlowConfig, validateConfig } from '../glow/config.js';
import { exportModel, GlowJson } from '../glow/export.js';
import { checkpointBytes, initWeights, parseCheckpoint, WEIGHTS_FILE } from '../glow/params.js';
import { writeFileAtomic, writeFilesAtomic } from '../runtime/files.js';
import { listImages, readImage } from '../runtime/images.js';
import { initActNorms } from '../runtime/init.js';
import { inspectModel } from '../runtime/inspect.js';
import { loadMnist } from '../runtime/mnist.js';
import { dequantize } from '../runtime/quantize.js';
import { Rng } from '../glow/rng.js';
import { verifyModel } from '../runtime/verify.js';

export class UsageError extends Error {
  override name = 'UsageError';
}

const USAGE = `usage: glow-onnx <command> [options]

commands:
  init     --out DIR [--config FILE] [config flags] [--seed N] [--data mnist|DIR|none] [--init-batch N]
           random paper-style model; ActNorms initialised from a batch of data
  export   --weights FILE --out DIR [--config FILE] [--opset N] [--no-fold]
           writes glow.json, encode.onnx and decode.onnx
  inspect  FILE.onnx
           inputs, outputs, op histogram, parameter count, config
  verify   DIR [--data mnist|DIR] [--limit N]
           encode -> decode round trip and bits/dim on test images

config flags: --image-shape C,H,W --K N --L N --hidden N --coupling additive|affine
  --permutation invconv|shuffle|reverse --lu true|false --learn-top true|false
  --classes N --n-bits N --actnorm-scale X`;

type Options = NonNullable<ParseArgsConfig['options']>;

function parse(argv: string[], options: Options, positionals = 0) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: positionals > 0, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]);
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(`expected ${positionals} argument(s), got ${parsed.positionals.length}`);
  }
  return parsed as { values: Record<string, string | boolean | undefined>; positionals: string[] };
}

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

function integer(value: string | boolean | undefined, name: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got ${value}`);
  return n;
}

function readJson(path: string): unknown {
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message})`);
  }
}

function readBytes(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const CONFIG_FLAGS: Options = {
  'image-shape': { type: 'string' }, K: { type: 'string' }, L: { type: 'string' }, hidden: { type: 'string' },
  coupling: { type: 'string' }, permutation: { type: 'string' }, lu: { type: 'string' }, 'learn-top': { type: 'string' },
  classes: { type: 'string' }, 'n-bits': { type: 'string' }, 'actnorm-scale': { type: 'string' },
};

function bool(value: string | boolean | undefined, name: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (value === 'true' || value === 'false') return value === 'true';
  throw new UsageError(`--${name} must be true or false, got ${value}`);
}

/** Defaults, then --config FILE, then individual flags; validated as a whole. */
function configFromFlags(values: Record<string, string | boolean | undefined>): GlowConfig {
  const base = { ...DEFAULT_CONFIG, ...(values.config ? (readJson(values.config as string) as object) : {}) };
  const flags: Partial<Record<keyof GlowConfig, unknown>> = {
    imageShape: values['image-shape'] === undefined ? undefined : String(values['image-shape']).split(',').map(Number),
    K: values.K === undefined ? undefined : Number(values.K),
    L: values.L === undefined ? undefined : Number(values.L),
    hiddenChannels: values.hidden === undefined ? undefined : Number(values.hidden),
    coupling: values.coupling,
    permutation: values.permutation,
    lu: bool(values.lu, 'lu'),
    learnTop: bool(values['learn-top'], 'learn-top'),
    numClasses: values.classes === undefined ? undefined : Number(values.classes),
    nBits: values['n-bits'] === undefined ? undefined : Number(values['n-bits']),
    actnormScale: values['actnorm-scale'] === undefined ? undefined : Number(values['actnorm-scale']),
  };
  const merged: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) merged[k] = v;
  return validateConfig(merged);
}

/** A batch of 8-bit CHW images (and labels where known) for ActNorm init or verification. */
async function loadImages(source: string, config: GlowConfig, limit: number): Promise<{ pixels: Uint8Array; labels?: Uint8Array; count: number }> {
  const [C, H, W] = config.imageShape;
  if (source === 'mnist' || source === 'mnist-test' || source === 'mnist-train') {
    if (C !== 1 || H !== 28 || W !== 28) throw new UsageError(`--data mnist needs imageShape [1, 28, 28], the model has [${config.imageShape}]`);
    const m = loadMnist(source === 'mnist-test' ? 'test' : 'train', limit);
    return { pixels: m.pixels, labels: m.labels, count: m.count };
  }
  const files = listImages(source).slice(0, limit);
  const pixels = new Uint8Array(files.length * C * H * W);
  for (let i = 0; i < files.length; i++) pixels.set(await readImage(files[i], config.imageShape), i * C * H * W);
  return { pixels, count: files.length };
}

function oneHot(labels: Uint8Array | undefined, count: number, classes: number): Float32Array | undefined {
  if (classes === 0) return undefined;
  const y = new Float32Array(count * classes);
  if (labels) labels.forEach((l, i) => l < classes && (y[i * classes + l] = 1));
  return y;
}

async function cmdInit(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    out: { type: 'string' }, config: { type: 'string' }, seed: { type: 'string' }, data: { type: 'string' },
    'init-batch': { type: 'string' }, ...CONFIG_FLAGS,
  });
  const out = required(values, 'out');
  const config = configFromFlags(values);
  const seed = integer(values.seed, 'seed', 0) ?? 0;
  const data = (values.data as string | undefined) ?? (config.imageShape.join() === '1,28,28' ? 'mnist' : 'none');
  let weights = initWeights(config, seed);
  if (data !== 'none') {
    const batch = await loadImages(data, config, integer(values['init-batch'], 'init-batch', 2) ?? 256);
    const x = dequantize(batch.pixels, config.nBits, new Rng(seed + 1));
    weights = await initActNorms(weights, x, oneHot(batch.labels, batch.count, config.numClasses));
    console.error(`ActNorms initialised from ${batch.count} images of ${data}`);
  }
  writeFilesAtomic(out, { [WEIGHTS_FILE]: checkpointBytes(weights), 'config.json': `${JSON.stringify(config, null, 2)}\n` });
  console.log(`wrote ${join(out, WEIGHTS_FILE)} and ${join(out, 'config.json')}`);
}

async function cmdExport(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    weights: { type: 'string' }, out: { type: 'string' }, config: { type: 'string' }, opset: { type: 'string' },
    'no-fold': { type: 'boolean' },
  });
  const weightsPath = required(values, 'weights');
  const out = required(values, 'out');
  const opset = integer(values.opset, 'opset', 1);
  if (opset !== undefined && !SUPPORTED_OPSETS.includes(opset)) {
    throw new UsageError(`--opset ${opset} is not supported (${SUPPORTED_OPSETS[0]} to ${SUPPORTED_OPSETS.at(-1)})`);
  }
  const configOverride = values.config ? validateConfig(readJson(values.config as string)) : undefined;
  const weights = parseCheckpoint(readBytes(weightsPath), weightsPath, configOverride);
  const files = exportModel(weights, { fold: !values['no-fold'], opset }, { weights: weightsPath });
  writeFilesAtomic(out, files as unknown as Record<string, Uint8Array | string>);
  const json = JSON.parse(files['glow.json']) as GlowJson;
  console.log(`wrote ${out}/{glow.json, encode.onnx (${files['encode.onnx'].length} bytes), decode.onnx (${files['decode.onnx'].length} bytes)} at opset ${json.opset}${json.folded ? '' : ', unfolded'}`);
}

async function cmdInspect(argv: string[]): Promise<void> {
  const { positionals } = parse(argv, {}, 1);
  console.log(inspectModel(readBytes(positionals[0]), positionals[0]));
}

async function cmdVerify(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { data: { type: 'string' }, limit: { type: 'string' } }, 1);
  const dir = positionals[0];
  const json = readJson(join(dir, 'glow.json')) as GlowJson;
  const config = validateConfig(json.config);
  const limit = integer(values.limit, 'limit', 1) ?? 256;
  const data = (values.data as string | undefined) ?? 'mnist-test';
  const batch = await loadImages(data, config, limit);
  const report = await verifyModel(dir, config, dequantize(batch.pixels, config.nBits, new Rng(1)), oneHot(batch.labels, batch.count, config.numClasses));
  console.log(`${batch.count} images of ${data}: bits/dim ${report.meanBpd.toFixed(4)} ± ${report.bpdStdErr.toFixed(4)}, `
    + `round-trip max |x - decode(encode(x))| = ${report.maxRoundTripError.toExponential(2)}`);
  if (!(report.maxRoundTripError < 1e-3)) throw new Error(`round trip error ${report.maxRoundTripError} is too large: the model does not invert`);
}

const COMMANDS: Record<string, (argv: string[]) => Promise<void>> = {
  init: cmdInit, export: cmdExport, inspect: cmdInspect, verify: cmdVerify,
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  const run = COMMANDS[command];
  try {
    if (!run) throw new UsageError(`unknown command '${command}' (commands: ${Object.keys(COMMANDS).join(', ')})`);
    await run(rest);
    return 0;
  } catch (e) {
    const err = e as Error;
    console.error(`glow-onnx ${command}: ${err.message.split('\n')[0]}`);
    return err instanceof UsageError || err instanceof ConfigError ? 2 : 1;
  }
}
