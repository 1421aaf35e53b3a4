// glow-onnx/builder: the ONNX graph builder under the Glow exporter, for any graph: values and
// nodes (graph.ts), shape-checked ops, passes, a reference evaluator, serialisation to and from
// ModelProto bytes, and reverse-mode autodiff. Portable: no platform module is imported.

export * from './graph.js';
export * as ops from './ops.js';
export * from './passes/index.js';
export { canEvaluate, evaluateGraph, evaluateNode } from './evaluate.js';
export {
  concatChunks, modelChunks, needsExternalData, OnnxFormatError, parseModel, PROTOBUF_LIMIT, readModelSummary, serializeModel,
  serializeModelWithExternalData, tensorBytes,
} from './serialize.js';
export type { ExternalDataOptions, ExternalDataSource, ModelInfo, ModelSummary, ParsedModel, ParseOptions } from './serialize.js';
export * from './autodiff/index.js';
