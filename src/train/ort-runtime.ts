// ONNX Runtime's training build (onnxruntime-web 1.19.2, the last with TrainingSession), installed
// under the alias onnxruntime-training-web and loaded only by whoever asks for it. Its package
// export `./training` refuses Node, so the dist file is imported by path.

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import { OrtTrainingFile } from './ort-artifacts.js';
import { readOdtc } from '../io/odtc.js';

export const TRAINING_PACKAGE = 'onnxruntime-training-web';
const INSTALL = `npm install ${TRAINING_PACKAGE}@npm:onnxruntime-web@1.19.2`;

/** The part of 1.19.2's TrainingSession glow-onnx uses (onnxruntime-common 1.30 no longer
 * declares it). */
export interface TrainingSession {
  readonly trainingInputNames: readonly string[];
  readonly evalInputNames: readonly string[];
  readonly evalOutputNames: readonly string[];
  runTrainStep(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  runOptimizerStep(): Promise<void>;
  lazyResetGrad(): Promise<void>;
  runEvalStep(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  getContiguousParameters(trainableOnly: boolean): Promise<Tensor>;
  loadParametersBuffer(buffer: Uint8Array, trainableOnly: boolean): Promise<void>;
  release(): Promise<void>;
}

export interface TrainingBuild {
  TrainingSession: { create(files: object, options?: InferenceSession.SessionOptions): Promise<TrainingSession> };
  Tensor: typeof import('onnxruntime-common').Tensor;
  env: { wasm: { numThreads?: number } };
}

export class OrtTrainingUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OrtTrainingUnavailable';
  }
}

const builds = new Map<string, Promise<TrainingBuild>>();

/** The training build, from the package installed as `pkg` (the alias glow-onnx depends on; a
 * test names one that is absent). */
export function loadTrainingBuild(pkg = TRAINING_PACKAGE): Promise<TrainingBuild> {
  let build = builds.get(pkg);
  if (build) return build;
  build = (async () => {
    let main: string;
    try {
      main = createRequire(import.meta.url).resolve(pkg);
    } catch {
      throw new OrtTrainingUnavailable(`ONNX Runtime's training build is not installed: ${INSTALL}`);
    }
    const module = await import(pathToFileURL(join(dirname(main), 'ort.training.wasm.min.mjs')).href).catch((e: Error) => {
      throw new OrtTrainingUnavailable(`${pkg} has no training build (${e.message.split('\n')[0]}): ${INSTALL}`);
    });
    if (!module.TrainingSession) throw new OrtTrainingUnavailable(`${pkg} has no TrainingSession: ${INSTALL}`);
    // One thread, no workers: the only setup checked in Node here.
    module.env.wasm.numThreads = 1;
    return module as TrainingBuild;
  })();
  builds.set(pkg, build);
  return build;
}

/** A TrainingSession over the four artifacts, after checking the checkpoint here: ORT answers a
 * checkpoint it cannot read with a bare status number. */
export async function createOrtTrainingSession(files: Record<OrtTrainingFile, Uint8Array>, source = 'checkpoint'): Promise<TrainingSession> {
  readOdtc(files.checkpoint, source);
  const ort = await loadTrainingBuild();
  return ort.TrainingSession.create({
    checkpointState: files.checkpoint,
    trainModel: files['training_model.onnx'],
    evalModel: files['eval_model.onnx'],
    optimizerModel: files['optimizer_model.onnx'],
  });
}

/** runEvalStep with the eval model's output names: 1.19.2 names the results by the training
 * model's outputs instead (`loss`, then `undefined`), in the eval model's order. */
export async function runEvalStep(session: TrainingSession, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const results = Object.values(await session.runEvalStep(feeds));
  if (results.length !== session.evalOutputNames.length) throw new Error(`the eval step gave ${results.length} outputs, the eval model has ${session.evalOutputNames.length}`);
  return Object.fromEntries(session.evalOutputNames.map((name, i) => [name, results[i]]));
}
