// glow-onnx for Node: the portable core on onnxruntime-node, plus what needs a file system:
// model folders, export, PyTorch import, training, images through jimp and the MNIST data. The
// functions the CLI runs, with its validation and its one-line errors.

export * from './core.js';

export { loadGlowRuntime } from './runtime/node.js';
export type { GlowRuntime, RuntimeOptions } from './runtime/node.js';
export { PROVIDERS, ProviderError } from './runtime/providers.js';
export type { Placement, ProviderFailure, ProviderName, ProviderOptions } from './runtime/providers.js';
export { SHIPPED_MODEL, STABLE_MODEL } from './runtime/shipped.js';

export { exportModel, DTYPES } from './glow/export.js';
export type { ExportDType, ExportOptions, GlowJson, ModelFiles } from './glow/export.js';
export { exportModelToDirectory } from './glow/export-directory.js';
export { CheckpointError, importWeights } from './glow/import/index.js';
export type { Imported, ImportOptions } from './glow/import/index.js';
export type { Port } from './glow/import/ports.js';
export { checkpointBytes, initWeights, parseCheckpoint, WEIGHTS_FILE, WeightsError } from './glow/params.js';
export type { GlowWeights } from './glow/model.js';
export type { HostParams } from './glow/layers/common.js';
export type { HostData, HostTensor } from './math/tensor.js';
export type { LogScale } from './glow/layers/coupling.js';

export { readTrainCheckpoint, initialCheckpoint, CHECKPOINT_FILE } from './train/checkpoint.js';
export { train } from './train/loop.js';
export { TrainingError } from './train/run.js';
export type { TrainCheckpoint } from './train/checkpoint.js';
export type { Dataset, EpochReport, StepReport, TrainHooks, TrainOptions, TrainResult, TrainState } from './train/run.js';
export { initActNorms } from './runtime/init.js';
export { latentsBytes, parseLatents } from './runtime/latents.js';
export { readImage, writeGrid } from './runtime/images.js';
export type { GridOptions } from './runtime/images.js';
export { loadMnist } from './runtime/mnist.js';
export type { LabelledImages, MnistSplit } from './runtime/mnist.js';
