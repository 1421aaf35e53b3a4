// glow-onnx/builder: the ONNX graph builder under the Glow exporter, for any graph: values and
// nodes (graph.ts), shape-checked ops, passes, a reference evaluator, serialisation to and from
// ModelProto bytes, and reverse-mode autodiff. Portable: no platform module is imported.

export * from './graph.js';
export * as ops from './ops.js';
export * from './passes/index.js';
export { canEvaluate, evaluateGraph, evaluateNode } from './evaluate.js';
export { needsExternalData, PROTOBUF_LIMIT } from './external-data.js';
export { parseModel, readModelSummary } from './parse.js';
export { concatChunks, modelChunks, serializeModel, serializeModelWithExternalData } from './serialize.js';
export { OnnxFormatError, tensorBytes } from './tensor-bytes.js';
export type { ExternalDataOptions, ExternalDataSource } from './external-data.js';
export type { ModelSummary, ParsedModel, ParseOptions } from './parse.js';
export type { ModelInfo } from './serialize.js';
export * from './autodiff/index.js';
