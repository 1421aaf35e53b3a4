// glow-onnx train and glow-onnx artifacts.

import cliProgress from 'cli-progress';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { serializeModel } from '../builder/serialize.js';
import { validateConfig } from '../glow/config.js';
import { exportModel } from '../glow/export.js';
import { importWeights } from '../glow/import/index.js';
import { paramSpecs } from '../glow/names.js';
import { buildOrtTrainingArtifacts } from '../train/ort-artifacts.js';
import { GlowWeights } from '../glow/model.js';
import { initWeights } from '../glow/params.js';
import { buildArtifactModels, DEFAULT_CLASS_WEIGHT } from '../train/graphs.js';
import { writeFilesAtomic } from '../io/files.js';
import { loadMnist } from '../runtime/mnist.js';
import { CHECKPOINT_FILE, initialCheckpoint, readTrainCheckpoint, TrainCheckpoint } from '../train/checkpoint.js';
import { train } from '../train/loop.js';
import { Dataset, StepReport, TrainHooks, TrainOptions } from '../train/run.js';
import { choice, integer, number, parse, readBytes, required, UsageError, Values } from './args.js';
import { isMnist, readImages } from './data.js';
import { CONFIG_FLAGS, configFlagValues, configFromFlags } from './flags.js';

function positive(values: Values, name: string): number | undefined {
  return number(values, name, (n) => Number.isFinite(n) && n > 0, 'a number > 0');
}

function fraction(values: Values, name: string): number | undefined {
  return number(values, name, (n) => n >= 0 && n < 1, 'a number in [0, 1)');
}

async function datasets(source: string, config: ReturnType<typeof configFromFlags>, testSource?: string): Promise<{ train: Dataset; test?: Dataset }> {
  if (isMnist(source)) {
    const [C, H, W] = config.imageShape;
    if (C !== 1 || H !== 28 || W !== 28) throw new UsageError(`MNIST needs imageShape [1, 28, 28], the config has [${config.imageShape}]`);
    return { train: loadMnist('train'), test: loadMnist('test') };
  }
  const train = await readImages([source], config);
  const test = testSource ? await readImages([testSource], config) : undefined;
  return { train, test };
}

function progressPrinter(): { onStep: (r: StepReport) => void; stop: () => void } {
  const started = Date.now();
  let lastLine = 0;
  if (!process.stderr.isTTY) {
    // Logs get a line every 30 s instead of a bar.
    return {
      onStep: (r) => {
        if (Date.now() - lastLine < 30000) return;
        lastLine = Date.now();
        console.error(`step ${r.step} epoch ${r.epoch} loss ${r.loss.toFixed(4)} bits/dim, ${r.imagesPerSecond.toFixed(0)} img/s, ${((Date.now() - started) / 60000).toFixed(1)} min`);
      },
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar({
    format: 'train [{bar}] step {value}{of} | epoch {epoch} | loss {loss} bits/dim | {rate} img/s | ETA {eta_formatted}',
    stream: process.stderr,
    hideCursor: true,
    etaBuffer: 50,
  }, cliProgress.Presets.shades_classic);
  let running = false;
  return {
    onStep: (r) => {
      if (!running) {
        bar.start(r.totalSteps ?? 0, r.step, { of: r.totalSteps ? `/${r.totalSteps}` : '', epoch: r.epoch, loss: '-', rate: '-' });
        running = true;
      }
      bar.update(r.step, { epoch: r.epoch, loss: r.loss.toFixed(4), rate: r.imagesPerSecond.toFixed(0) });
    },
    stop: () => running && bar.stop(),
  };
}

/** Trained weights keep their architecture; what may change leaves every weight in place and
 * is how a model is fine-tuned into a more stable one, in steps: the bounds of the affine scale
 * (--scale-floor, --scale-bound) and the split priors' constant scale. */
const RETUNABLE = { 'scale-floor': 'scaleFloor', 'scale-bound': 'scaleBound', 'constant-split-scale': 'constantSplitScale' } as const;

function withStoredConfig<T extends GlowWeights | TrainCheckpoint>(trained: T, values: Values): T {
  const ignored = ['config', ...Object.keys(CONFIG_FLAGS)].filter((flag) => !(flag in RETUNABLE) && values[flag] !== undefined);
  if (ignored.length) throw new UsageError(`--weights and --resume keep the stored config; drop ${ignored.map((f) => `--${f}`).join(', ')}`);
  const given = configFlagValues(values);
  const changes = Object.fromEntries(Object.values(RETUNABLE).filter((key) => key in given).map((key) => [key, given[key]]));
  if (!Object.keys(changes).length) return trained;
  const retuned = (w: GlowWeights): GlowWeights => ({ ...w, config: validateConfig({ ...w.config, ...changes }) });
  return ('state' in trained ? { ...trained, weights: retuned(trained.weights) } : retuned(trained)) as T;
}

const TRAIN_ENGINES = ['fused', 'ort-training'] as const;

export async function cmdTrain(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    data: { type: 'string' }, 'test-data': { type: 'string' }, out: { type: 'string' }, config: { type: 'string' }, ...CONFIG_FLAGS,
    weights: { type: 'string' }, epochs: { type: 'string' }, minutes: { type: 'string' }, 'batch-size': { type: 'string' }, lr: { type: 'string' },
    warmup: { type: 'string' }, clip: { type: 'string' }, ema: { type: 'string' }, 'weight-decay': { type: 'string' },
    'class-weight': { type: 'string' }, 'checkpoint-every': { type: 'string' }, seed: { type: 'string' }, 'init-batch': { type: 'string' },
    'eval-limit': { type: 'string' }, threads: { type: 'string' }, ep: { type: 'string' }, resume: { type: 'boolean' }, engine: { type: 'string' },
  });
  const engine = choice(values, 'engine', TRAIN_ENGINES) ?? 'fused';
  if (engine === 'ort-training') {
    const unsupported = ['resume', 'ep', 'warmup', 'clip', 'ema'].filter((flag) => values[flag] !== undefined);
    if (unsupported.length) throw new UsageError(`--engine ort-training has no ${unsupported.map((f) => `--${f}`).join(', ')} (ONNX Runtime's training API keeps the Adam moments to itself and its AdamW has no clipping, warm-up or averaging)`);
  }
  const ep = (values.ep as string | undefined) ?? 'cpu';
  if (ep !== 'cpu' && ep !== 'webgpu') throw new UsageError(`--ep must be cpu or webgpu (the train step's provider), got ${ep}`);
  const out = required(values, 'out');
  const data = (values.data as string | undefined) ?? 'mnist';
  const epochs = integer(values, 'epochs', 1);
  const minutes = positive(values, 'minutes');
  if (epochs === undefined && minutes === undefined) throw new UsageError('give a budget: --epochs N or --minutes M');
  const checkpointPath = join(out, CHECKPOINT_FILE);
  if (!values.resume && existsSync(checkpointPath)) throw new UsageError(`${checkpointPath} exists: pass --resume to continue that run, or choose another --out`);
  if (values.resume && !existsSync(checkpointPath)) throw new UsageError(`--resume: there is no run to continue in ${out} (no ${CHECKPOINT_FILE}); drop --resume to start one`);
  const trained = values.resume ? readTrainCheckpoint(readBytes(checkpointPath), checkpointPath)
    : values.weights ? importWeights(readBytes(values.weights as string), values.weights as string).weights : undefined;
  const start = trained ? withStoredConfig(trained, values) : initWeights(configFromFlags(values), integer(values, 'seed', 0) ?? 0);
  const config = 'state' in start ? start.weights.config : start.config;
  // A resumed run keeps its own settings unless a flag says otherwise.
  const stored = 'state' in start ? start.options : {};
  const pick = <T>(flag: T | undefined, key: keyof TrainOptions, fallback: T): T => flag ?? (stored[key] as T | undefined) ?? fallback;
  const options: TrainOptions = {
    out,
    batchSize: pick(integer(values, 'batch-size', 2), 'batchSize', 64),
    learningRate: pick(positive(values, 'lr'), 'learningRate', 1e-3),
    warmupSteps: pick(integer(values, 'warmup', 0), 'warmupSteps', 200),
    clipNorm: pick(number(values, 'clip', (n) => n >= 0, 'a number >= 0 (0: off)'), 'clipNorm', 50),
    emaDecay: pick(fraction(values, 'ema'), 'emaDecay', 0.999),
    weightDecay: pick(number(values, 'weight-decay', (n) => n >= 0, 'a number >= 0'), 'weightDecay', 0),
    classWeight: pick(number(values, 'class-weight', (n) => n >= 0, 'a number >= 0'), 'classWeight', DEFAULT_CLASS_WEIGHT),
    checkpointEvery: pick(integer(values, 'checkpoint-every', 1), 'checkpointEvery', 200),
    seed: pick(integer(values, 'seed', 0), 'seed', 0),
    // Weights given with --weights are trained (or initialised by glow-onnx init): their ActNorms stay.
    initBatch: pick(integer(values, 'init-batch', 0), 'initBatch', values.weights ? 0 : 256),
    evalLimit: pick(integer(values, 'eval-limit', 0), 'evalLimit', 10000),
    threads: pick(integer(values, 'threads', 1), 'threads', undefined),
    ep,
    epochs,
    minutes,
  };
  const sets = await datasets(data, config, values['test-data'] as string | undefined);
  const progress = progressPrinter();
  let stopRequested = false;
  const onSigint = () => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    console.error('\nstopping after this step and writing a checkpoint (Ctrl-C again to abort at once)');
  };
  process.on('SIGINT', onSigint);
  try {
    const hooks: TrainHooks = {
      onStep: progress.onStep,
      onEpoch: (r) => {
        progress.stop();
        const roundTrip = r.roundTrip
          ? `, round trip: ${r.roundTrip.failing} of ${r.roundTrip.count} images off by more than 1e-3 (max ${r.roundTrip.maxError.toExponential(1)})`
          : '';
        const evalLoss = r.evalLoss === undefined ? '' : `, eval loss ${r.evalLoss.toFixed(4)} (ONNX Runtime's eval step)`;
        console.error(`epoch ${r.epoch} (step ${r.step}): test ${r.testBpd?.toFixed(4) ?? '-'} bits/dim${evalLoss}${roundTrip}, samples ${r.samplePath}`);
      },
      shouldStop: () => stopRequested,
    };
    // Only this engine loads ONNX Runtime's training build.
    const result = engine === 'ort-training'
      ? await (await import('../train/ort-loop.js')).trainWithOrtTraining(start as GlowWeights, sets, { ...options, emaDecay: 0 }, hooks)
      : await train(start, sets, options, hooks);
    progress.stop();
    writeFilesAtomic(join(out, 'model'), { ...exportModel(result.weights, {}, { trainedSteps: String(result.steps) }) });
    const next = engine === 'ort-training' ? `ONNX Runtime's artifacts and trained checkpoint in ${join(out, 'ort-training')}`
      : `resume with: glow-onnx train --out ${out} --resume --data ${data} ${epochs ? `--epochs ${epochs}` : `--minutes ${minutes}`}`;
    console.log(`${result.stoppedEarly ? 'stopped' : 'finished'} at step ${result.steps}: weights in ${join(out, 'weights.safetensors')}, model in ${join(out, 'model')}, ${next}`);
    return result.stoppedEarly ? 130 : 0;
  } finally {
    progress.stop();
    process.off('SIGINT', onSigint);
  }
}

const ARTIFACT_FORMATS = ['portable', 'ort-training'] as const;

export async function cmdArtifacts(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    weights: { type: 'string' }, out: { type: 'string' }, opset: { type: 'string' }, 'class-weight': { type: 'string' }, format: { type: 'string' },
    lr: { type: 'string' }, 'weight-decay': { type: 'string' },
  });
  const out = required(values, 'out');
  const weightsPath = required(values, 'weights');
  const format = choice(values, 'format', ARTIFACT_FORMATS) ?? 'portable';
  if (format === 'portable' && (values.lr !== undefined || values['weight-decay'] !== undefined)) {
    throw new UsageError('--lr and --weight-decay go into the optimizer graph of --format ort-training only (the portable one takes them as inputs)');
  }
  const { weights } = importWeights(readBytes(weightsPath), weightsPath);
  const opset = integer(values, 'opset', 13);
  const lossOptions = { opset, classWeight: number(values, 'class-weight', (n) => n >= 0, 'a number >= 0') };
  let files: Record<string, Uint8Array>;
  if (format === 'ort-training') {
    files = buildOrtTrainingArtifacts(weights, {
      ...lossOptions,
      learningRate: positive(values, 'lr') ?? 1e-3,
      weightDecay: number(values, 'weight-decay', (n) => n >= 0, 'a number >= 0') ?? 0,
    });
  } else {
    files = { checkpoint: initialCheckpoint(weights) };
    for (const [name, graph] of Object.entries(buildArtifactModels(weights, lossOptions))) files[name] = serializeModel(graph);
  }
  writeFilesAtomic(out, files);
  const trainable = paramSpecs(weights.config).filter((s) => s.trainable).length;
  console.log(`wrote ${out}/{training_model.onnx, eval_model.onnx, optimizer_model.onnx, checkpoint} (${format}) for ${trainable} trainable tensors`);
}
