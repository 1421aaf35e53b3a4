// Training artifacts in the form ONNX Runtime's own on-device training (TrainingSession, the
// training builds up to 1.19) loads, as opposed to the portable standard-op set of graphs.ts:
//   training_model.onnx   x (, y), every parameter, lazy_reset_grad, <p>_grad.accumulation.buffer
//                         -> loss, <p>_grad.accumulation.out. ORT tells parameters from data by
//                         their presence in the checkpoint and gradient buffers by their suffix;
//                         InPlaceAccumulatorV2 (com.microsoft) adds each gradient into the buffer
//                         ORT feeds, or overwrites it after lazy_reset_grad.
//   eval_model.onnx       x (, y), every parameter -> loss, bpd
//   optimizer_model.onnx  learning_rate, step, params, gradients, first_order_moments,
//                         second_order_moments (sequences, the names ORT binds) -> updated_flag,
//                         one AdamWOptimizer (com.microsoft) node
//   checkpoint            ODTC flatbuffer: trainable and frozen parameters, the Glow config as a
//                         string property so that a trained checkpoint can be read back alone.
// The forward and backward are the ones glow-onnx trains with (graphs.ts).

import onnxProto from 'onnx-proto';
import { Graph, GraphBuilder } from '../builder/graph.js';
import { padConvChannels } from '../builder/passes/index.js';
import { toModelProto } from '../builder/serialize.js';
import { GlowConfig } from '../glow/config.js';
import { GlowWeights } from '../glow/model.js';
import { paramSpecs } from '../glow/names.js';
import { ortTrainingCheckpoint } from '../glow/odtc-weights.js';
import { buildEvalModel, buildTrainingModel, LossOptions, OptimizerOptions, refuseSpectralArtifacts } from './graphs.js';
import { gradAccumulatedName, gradBufferName, gradName, LAZY_RESET_GRAD } from './names.js';

const { onnx } = onnxProto;

const MICROSOFT = 'com.microsoft';

export const ORT_TRAINING_FILES = ['training_model.onnx', 'eval_model.onnx', 'optimizer_model.onnx', 'checkpoint'] as const;
export type OrtTrainingFile = typeof ORT_TRAINING_FILES[number];

export interface OrtOptimizerOptions extends Omit<OptimizerOptions, 'clipNorm'> {
  /** The rate every step uses: ORT's JavaScript API cannot set the rate it feeds, so the graph
   * carries its own. */
  learningRate: number;
}

/** Frozen tensors (LU p and sign_s, prior_h) become graph inputs like the trained ones, so that
 * the checkpoint, not a copy baked into each graph, is where every weight lives. Parameters
 * follow the data inputs in paramSpecs order: ORT lays out getContiguousParameters in graph
 * input order, and this makes it the order glow-onnx names tensors in. */
function parametersAsInputs(graph: Graph, config: GlowConfig): Graph {
  const specs = paramSpecs(config);
  const frozen = new Set(specs.filter((s) => !s.trainable).map((s) => s.name));
  const moved = [...graph.initializers.keys()].filter((v) => frozen.has(v.name)).map((value) => ({ value, doc: 'frozen parameter (checkpoint)' }));
  const initializers = new Map([...graph.initializers].filter(([v]) => !frozen.has(v.name)));
  const all = new Map([...graph.inputs, ...moved].map((io) => [io.value.name, io]));
  const params = specs.flatMap((s) => all.get(s.name) ?? []);
  const data = graph.inputs.filter((io) => !params.includes(io));
  return { ...graph, inputs: [...data, ...params], initializers };
}

function withMicrosoftOps(graph: Graph): Uint8Array {
  const proto = toModelProto(graph);
  proto.opsetImport.push({ domain: MICROSOFT, version: 1 });
  return onnx.ModelProto.encode(proto).finish();
}

function trainingModel(w: GlowWeights, options: LossOptions): Uint8Array {
  const graph = parametersAsInputs(padConvChannels(buildTrainingModel(w, options)), w.config);
  const grads = new Map(graph.outputs.map((io) => [io.value.name, io.value]));
  const g = GraphBuilder.extend({ ...graph, outputs: graph.outputs.filter((io) => io.value.name === 'loss') });
  const reset = g.input(LAZY_RESET_GRAD, 'bool', [1], 'true: overwrite the gradient buffers instead of adding to them');
  for (const spec of paramSpecs(w.config).filter((s) => s.trainable)) {
    const grad = grads.get(gradName(spec.name));
    if (!grad) throw new Error(`the training graph has no gradient for ${spec.name}`);
    const buffer = g.input(gradBufferName(spec.name), 'float32', spec.shape);
    const [done] = g.node('InPlaceAccumulatorV2', [buffer, grad, reset], {}, [{ dtype: 'bool', shape: [1] }], gradAccumulatedName(spec.name), MICROSOFT);
    g.output(done, gradAccumulatedName(spec.name));
  }
  return withMicrosoftOps(g.build('Glow training model (ONNX Runtime on-device training)'));
}

const floatType = (shape?: number[]) => ({ tensorType: { elemType: 1, shape: shape && { dim: shape.map((dimValue) => ({ dimValue })) } } });
const sequenceType = () => ({ sequenceType: { elemType: floatType() } });

/** One AdamWOptimizer node in PyTorch's AdamW mode (adam_mode 0, bias-corrected): the same
 * update as glow-onnx's own Adam (graphs.ts) without clipping. */
function optimizerModel(options: OrtOptimizerOptions, opset: number): Uint8Array {
  const o = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0, ...options };
  const f = (name: string, value: number) => ({ name, type: onnx.AttributeProto.AttributeType.FLOAT, f: value });
  const i = (name: string, value: number) => ({ name, type: onnx.AttributeProto.AttributeType.INT, i: value });
  const sequences = ['params', 'gradients', 'first_order_moments', 'second_order_moments'];
  const graph = {
    name: 'glow_ort_optimizer',
    node: [
      { name: 'rate', opType: 'Constant', output: ['rate'], attribute: [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: { dims: [1], dataType: 1, floatData: [o.learningRate] } }] },
      {
        name: 'adamw', opType: 'AdamWOptimizer', domain: MICROSOFT,
        input: ['rate', 'step', ...sequences], output: ['updated_flag'],
        attribute: [f('alpha', o.beta1), f('beta', o.beta2), f('epsilon', o.epsilon), f('weight_decay', o.weightDecay), i('adam_mode', 0), i('correct_bias', 1)],
      },
    ],
    input: [
      // Bound by name; its value is ORT's, which JavaScript cannot set: the graph uses `rate`.
      { name: 'learning_rate', type: floatType([1]) },
      { name: 'step', type: { tensorType: { elemType: 7, shape: { dim: [{ dimValue: 1 }] } } } },
      ...sequences.map((name) => ({ name, type: sequenceType() })),
    ],
    output: [{ name: 'updated_flag', type: { tensorType: { elemType: 9, shape: { dim: [{ dimValue: 1 }] } } } }],
  };
  const model = onnx.ModelProto.create({
    irVersion: 8, producerName: 'glow-onnx', graph,
    opsetImport: [{ domain: '', version: opset }, { domain: MICROSOFT, version: 1 }],
  });
  return onnx.ModelProto.encode(model).finish();
}

/** The four files of ORT's on-device training, in memory. */
export function buildOrtTrainingArtifacts(w: GlowWeights, options: LossOptions & OrtOptimizerOptions): Record<OrtTrainingFile, Uint8Array> {
  refuseSpectralArtifacts(w, 'ONNX Runtime training');
  const eval_ = parametersAsInputs(padConvChannels(buildEvalModel(w, options)), w.config);
  return {
    'training_model.onnx': trainingModel(w, options),
    'eval_model.onnx': withMicrosoftOps(eval_),
    'optimizer_model.onnx': optimizerModel(options, eval_.opset),
    checkpoint: ortTrainingCheckpoint(w),
  };
}

