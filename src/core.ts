// The portable core that every entry point shares (glow-onnx, glow-onnx/web): GlowModel over
// whichever onnxruntime package the platform layer gives it, generation, quantisation and the
// model folder's contract. Nothing here imports a platform module.

export { ConfigError, DEFAULT_CONFIG, dimensions, latentShape, validateConfig } from './glow/config.js';
export type { Coupling, GlowConfig, Permutation } from './glow/config.js';
export { Rng } from './math/rng.js';
export type { RngSeed } from './math/rng.js';
export { checkGraphPorts, FORMAT_VERSION, GRAPH_FILES, ModelFileError, parseGlowJson, sameConfig } from './glow/contract.js';
export type { GraphFile, GraphPort, ModelDescription } from './glow/contract.js';
export { GlowModel, InputError } from './runtime/core.js';
export type { Encoded, ImageEdit, Progress, Reconstruction, TensorFactory } from './runtime/core.js';
export { attributeDirection, interpolate, manipulate, meanAndStdErr, oneHotRows, pick, sampleEps, stack } from './runtime/generate.js';
export type { Latents } from './runtime/generate.js';
export { checkRoundTrip, dequantize, quantize, roundTripTolerance } from './runtime/quantize.js';
export type { RoundTrip } from './runtime/quantize.js';
export { WEBGPU_EP } from './runtime/session-options.js';
