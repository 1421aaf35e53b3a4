// glow-onnx/web: the portable core on onnxruntime-web, for pages and workers. Its whole module
// graph is browser-safe: no node: import (test/web/entry.test.ts bundles it to check).

export * from '../core.js';
export { loadGlowModel, webgpuProblem } from './load.js';
export type { Backend, BackendChoice, LoadedModel, LoadOptions, LoadPhase, ModelFileData, ModelSource } from './load.js';
export { imagePixels, pixelsToImageData, pixelsToRgba, rgbaToPixels } from './images.js';
export type { RgbaImage } from './images.js';
// The onnxruntime-web instance the models run on, for its settings (env.wasm.wasmPaths: where a
// bundled app serves the .wasm files; env.wasm.numThreads).
export { env } from 'onnxruntime-web';
