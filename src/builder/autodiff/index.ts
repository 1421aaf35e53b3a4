// Reverse-mode automatic differentiation of builder graphs, emitted as standard ONNX ops (no
// training or contrib domain), so that gradient graphs run wherever inference graphs do
// (onnxruntime CPU and WebGPU).
//
//   const withGrads = addGradients(graph, loss, [w1, w2]);   // outputs w1_grad, w2_grad
//
// `loss` must be a floating-point scalar (shape []) of the graph; `wrt` are graph inputs or
// initializers (any floating-point value works). A wrt value the loss does not depend on gets a
// gradient of zeros of its shape (an Expand of a scalar zero). The input graph is not modified.

export { addGradients, MissingGradientError } from './engine.js';
export type { GradientOptions } from './engine.js';
export { RULES, UnsupportedGradientError } from './rules.js';
export type { GradientRule, RuleContext } from './rules.js';
