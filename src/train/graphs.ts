// Training artifacts in ONNX Runtime's on-device-training file layout, built from standard ONNX
// ops only (onnxruntime-node/-web 1.30 have no training ops), so any runtime can drive them;
// ort-artifacts.ts builds the variant ORT's own TrainingSession loads:
//   training_model.onnx   x (, y), trainable parameters -> loss, <param>_grad
//   eval_model.onnx       x (, y), trainable parameters -> loss, bpd
//   optimizer_model.onnx  learning_rate, bias_correction1, bias_correction2 (adamFeeds), per
//                         parameter p: p, p_grad, p.exp_avg, p.exp_avg_sq
//                         -> p.updated, p.exp_avg.updated, p.exp_avg_sq.updated (Adam)
// and the fused train step (forward, backward and Adam in one graph), which the loop uses.

import { addGradients } from '../builder/autodiff/index.js';
import { Graph, GraphBuilder, Value } from '../builder/graph.js';
import * as op from '../builder/ops.js';
import { chain, cleanup, padConvChannels, toposort } from '../builder/passes/index.js';
import { scalarConstant } from '../glow/layers/common.js';
import { GlowWeights, trainableEncode } from '../glow/model.js';
import { paramSpecs } from '../glow/names.js';
import { size } from '../math/tensor.js';
import { emaName, gradName, momentNames, updatedName } from './names.js';

export interface OptimizerOptions {
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Decoupled weight decay (AdamW); 0 by default. */
  weightDecay?: number;
  /** Gradients are scaled so that their global norm is at most this; 0 turns clipping off. */
  clipNorm?: number;
}

export interface LossOptions {
  /** Weight of the class cross-entropy for class-conditional models (the paper's y_logits loss). */
  classWeight?: number;
  opset?: number;
}

const DEFAULT_OPTIMIZER: Required<OptimizerOptions> = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0, clipNorm: 50 };
export const DEFAULT_CLASS_WEIGHT = 0.01;

interface LossGraph {
  g: GraphBuilder;
  loss: Value;
  bpd: Value;
  params: Map<string, Value>;
  spectralUpdates: Map<string, Value>;
}

/** Forward pass and loss: mean bits/dim, plus the weighted class cross-entropy when the model is
 * class-conditional. */
function lossGraph(w: GlowWeights, options: LossOptions & { spectralState?: boolean }): LossGraph {
  const { g, values, trainable, spectralUpdates } = trainableEncode(w, { opset: options.opset, spectralState: options.spectralState });
  const params = new Map<string, Value>();
  for (const io of g.build().inputs) if (trainable.includes(io.value.name)) params.set(io.value.name, io.value);
  const loss = g.scope('loss', () => {
    const bpdMean = op.reduceMean(g, values.bpd, [0], false);
    if (!values.yLogits) return bpdMean;
    const y = g.build().inputs.find((io) => io.value.name === 'y')!.value;
    // log softmax = shifted - log(sum(exp(shifted))) with shifted = logits - max(logits): exp
    // never overflows, and the largest term is exp(0) = 1, so the Log never sees 0. The gradient
    // through the max is zero analytically (the shift cancels); its rule sends it there anyway.
    const shifted = op.sub(g, values.yLogits, op.reduceMax(g, values.yLogits, [1], true));
    const logSoftmax = op.sub(g, shifted, op.log(g, op.reduceSum(g, op.exp(g, shifted), [1], true)));
    const crossEntropy = op.neg(g, op.reduceMean(g, op.reduceSum(g, op.mul(g, y, logSoftmax), [1], false), [0], false));
    return op.add(g, bpdMean, op.mul(g, crossEntropy, scalarConstant(g, options.classWeight ?? DEFAULT_CLASS_WEIGHT, 'class_weight')));
  });
  return { g, loss, bpd: values.bpd, params, spectralUpdates };
}

function sorted(graph: Graph): Graph {
  return chain(toposort, cleanup)(graph);
}

export function buildEvalModel(w: GlowWeights, options: LossOptions = {}): Graph {
  const { g, loss, bpd } = lossGraph(w, options);
  g.output(loss, 'loss', 'mean bits/dim (+ weighted class cross-entropy)');
  g.output(bpd, 'bpd', 'bits/dim per example');
  return sorted(g.build('Glow eval model'));
}

function withGradients(w: GlowWeights, options: LossOptions & { spectralState?: boolean }): { graph: Graph; params: Map<string, Value> } {
  const { g, loss, params, spectralUpdates } = lossGraph(w, options);
  const lossOut = g.output(loss, 'loss', 'mean bits/dim (+ weighted class cross-entropy)');
  for (const [name, value] of spectralUpdates) g.output(value, updatedName(name), 'power-iteration vector for the next step');
  const graph = addGradients(g.build('Glow training model'), lossOut, [...params.values()], { outputNames: (v) => gradName(v.name) });
  return { graph: sorted(graph), params };
}

export function buildTrainingModel(w: GlowWeights, options: LossOptions = {}): Graph {
  return withGradients(w, options).graph;
}

interface AdamSlot {
  name: string;
  param: Value;
  grad: Value;
  m: Value;
  v: Value;
}

function elementwise(g: GraphBuilder, opType: 'Min' | 'Max', a: Value, b: Value): Value {
  return g.node(opType, [a, b], {}, [{ dtype: a.dtype, shape: op.broadcastShapes(a.shape, b.shape) }])[0];
}

interface AdamScalars {
  learningRate: Value;
  /** 1 - beta1^t and 1 - beta2^t, fed by adamFeeds. */
  correction1: Value;
  correction2: Value;
}

/** Adam with bias correction (and decoupled weight decay), after scaling all gradients by
 * min(1, clip / global norm). Registers the updated tensors as outputs. */
function adam(g: GraphBuilder, slots: AdamSlot[], { learningRate, correction1, correction2 }: AdamScalars, options: OptimizerOptions): void {
  const o = { ...DEFAULT_OPTIMIZER, ...options };
  const c = (value: number, hint: string) => scalarConstant(g, value, hint);
  g.scope('adam', () => {
    let scale: Value | undefined;
    if (o.clipNorm > 0) {
      const squares = slots.map((s) => op.reduceSum(g, op.mul(g, s.grad, s.grad), s.grad.shape!.map((_, i) => i), false));
      const norm = op.sqrt(g, op.sum(g, squares));
      scale = elementwise(g, 'Min', c(1, 'one'), op.div(g, c(o.clipNorm, 'clip_norm'), op.add(g, norm, c(1e-6, 'tiny'))));
      g.output(norm, 'grad_norm', 'global gradient norm before clipping');
    }
    const stepSize = op.div(g, learningRate, correction1);
    for (const s of slots) {
      g.scope(s.name, () => {
        const grad = scale ? op.mul(g, s.grad, scale) : s.grad;
        const m = op.add(g, op.mul(g, s.m, c(o.beta1, 'beta1')), op.mul(g, grad, c(1 - o.beta1, 'one_minus_beta1')));
        const v = op.add(g, op.mul(g, s.v, c(o.beta2, 'beta2')), op.mul(g, op.mul(g, grad, grad), c(1 - o.beta2, 'one_minus_beta2')));
        const denominator = op.add(g, op.sqrt(g, op.div(g, v, correction2)), c(o.epsilon, 'epsilon'));
        let param = op.sub(g, s.param, op.mul(g, stepSize, op.div(g, m, denominator)));
        if (o.weightDecay > 0) param = op.sub(g, param, op.mul(g, op.mul(g, learningRate, c(o.weightDecay, 'weight_decay')), s.param));
        g.output(param, updatedName(s.name));
        g.output(m, updatedName(momentNames(s.name).m));
        g.output(v, updatedName(momentNames(s.name).v));
      });
    }
  });
}

function optimizerInputs(g: GraphBuilder): AdamScalars {
  return {
    learningRate: g.input('learning_rate', 'float32', [], 'learning rate of this step'),
    correction1: g.input('bias_correction1', 'float32', [], '1 - beta1^step, step counted from 1'),
    correction2: g.input('bias_correction2', 'float32', [], '1 - beta2^step, step counted from 1'),
  };
}

/** The scalar inputs of the optimizer and fused-step graphs at Adam step `step` (from 1). The
 * bias corrections are computed here in float64, not in the graph: in float32, 1 - 0.999^1 is
 * 1 - 0.99900001 = 0.00099998713 against a (1 - beta2) of 0.001, which shrinks the first step by
 * 6.7e-6 of itself; fed as inputs they are exact to float32 rounding on every provider, WebGPU
 * (no float64) included. */
export function adamFeeds(step: number, learningRate: number, options: OptimizerOptions = {}): Record<'learning_rate' | 'bias_correction1' | 'bias_correction2', number> {
  const o = { ...DEFAULT_OPTIMIZER, ...options };
  return { learning_rate: learningRate, bias_correction1: -Math.expm1(step * Math.log(o.beta1)), bias_correction2: -Math.expm1(step * Math.log(o.beta2)) };
}

/** The optimizer alone, for parameters of the given shapes. */
export function buildOptimizerModel(shapes: ReadonlyMap<string, number[]>, options: OptimizerOptions & { opset?: number } = {}): Graph {
  const g = new GraphBuilder('glow_optimizer', { opset: options.opset });
  const scalars = optimizerInputs(g);
  const slots = [...shapes].map(([name, shape]) => ({
    name,
    param: g.input(name, 'float32', shape),
    grad: g.input(gradName(name), 'float32', shape),
    m: g.input(momentNames(name).m, 'float32', shape),
    v: g.input(momentNames(name).v, 'float32', shape),
  }));
  adam(g, slots, scalars, options);
  return sorted(g.build('Adam'));
}

/** Training graphs that ONNX Runtime's TrainingSession or another runtime's own loop drive have
 * no slot for state that is neither a parameter nor a moment: spectral normalisation's
 * power-iteration vectors would stay frozen there, and sigma with them. */
export function refuseSpectralArtifacts(w: GlowWeights, what: string): void {
  if (w.config.lipschitz !== undefined) {
    throw new Error(`${what}: a model with lipschitz (spectral normalisation) trains only with the fused train step (glow-onnx train), which carries its power-iteration vectors from step to step`);
  }
}

/** The graphs `glow-onnx artifacts` hands out. Like exported models, the training and eval graphs
 * get the Conv channel padding (builder/passes/conv-channels.ts), so that whoever runs them on
 * WebGPU gets right numbers with the provider's default layout too. */
export function buildArtifactModels(w: GlowWeights, options: LossOptions = {}): Record<'training_model.onnx' | 'eval_model.onnx' | 'optimizer_model.onnx', Graph> {
  refuseSpectralArtifacts(w, 'training artifacts');
  const shapes = new Map(paramSpecs(w.config).filter((s) => s.trainable).map((s) => [s.name, s.shape]));
  return {
    'training_model.onnx': padConvChannels(buildTrainingModel(w, options)),
    'eval_model.onnx': padConvChannels(buildEvalModel(w, options)),
    'optimizer_model.onnx': buildOptimizerModel(shapes, { opset: options.opset }),
  };
}

/** Forward, backward and Adam in one graph: one session run per step and no gradient ever
 * leaves the runtime. Outputs loss, grad_norm and the updated parameters and moments; with
 * `ema`, also the updated moving averages (inputs ema_decay and ema.<param>), so that a loop on a
 * GPU never needs the parameters on the host between checkpoints. */
export function buildFusedTrainStep(w: GlowWeights, options: LossOptions & OptimizerOptions & { ema?: boolean } = {}): Graph {
  const { graph, params } = withGradients(w, { ...options, spectralState: true });
  const g = GraphBuilder.extend({ ...graph, outputs: graph.outputs.filter((io) => io.value.name === 'loss' || !io.value.name.endsWith('_grad')) });
  const grads = new Map(graph.outputs.map((io) => [io.value.name, io.value]));
  const scalars = optimizerInputs(g);
  const slots = [...params].map(([name, param]) => ({
    name,
    param,
    grad: grads.get(gradName(name))!,
    m: g.input(momentNames(name).m, 'float32', param.shape!),
    v: g.input(momentNames(name).v, 'float32', param.shape!),
  }));
  adam(g, slots, scalars, options);
  if (options.ema) {
    const decay = g.input('ema_decay', 'float32', [], 'weight of the old average this step');
    const freshWeight = op.sub(g, scalarConstant(g, 1, 'one'), decay);
    const updated = new Map(g.build().outputs.map((io) => [io.value.name, io.value]));
    g.scope('ema', () => {
      for (const [name, param] of params) {
        const average = g.input(emaName(name), 'float32', param.shape!);
        g.output(op.add(g, op.mul(g, average, decay), op.mul(g, updated.get(updatedName(name))!, freshWeight)), updatedName(emaName(name)));
      }
    });
  }
  return sorted(g.build('Glow train step: forward, backward, Adam'));
}

/** Zero moments for every trainable parameter. */
export function zeroMoments(shapes: ReadonlyMap<string, number[]>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of shapes) {
    const n = size(shape);
    out.set(momentNames(name).m, new Float32Array(n));
    out.set(momentNames(name).v, new Float32Array(n));
  }
  return out;
}

