// An NVIDIA Triton Inference Server model repository (onnxruntime backend) for a Glow model:
//
//   DIR/glow_encode/config.pbtxt    DIR/glow_encode/1/model.onnx
//   DIR/glow_decode/config.pbtxt    DIR/glow_decode/1/model.onnx
//
// With external data, model.onnx is a directory holding model.onnx and model.onnx.data (Triton's
// layout for ONNX models made of several files).
//
// Triton batches requests itself (max_batch_size > 0): it concatenates the requests' tensors
// along a leading batch dimension that every input and output must have, and config.pbtxt
// states each tensor's shape without it. Every tensor of encode has one. decode's temperature
// is a scalar in the ordinary model, which a batch of requests could not share, so the Triton
// decode takes one temperature per example, shape [N] (config: dims [1] reshaped to [], the
// same convention as the per-example outputs logdet, log_px and bpd).

import { DType, Graph, GraphIO } from '../builder/graph.js';
import { exportGraphs, ExportOptions, MODEL_INFO, serializeGraph } from './export.js';
import { GlowWeights } from './model.js';

export const TRITON_MODELS = { encode: 'glow_encode', decode: 'glow_decode' } as const;
export const TRITON_DEVICES = ['cpu', 'gpu'] as const;
export type TritonDevice = (typeof TRITON_DEVICES)[number];

export interface TritonOptions extends Omit<ExportOptions, 'batch' | 'temperature'> {
  /** Largest batch Triton forms from queued requests (default 64). */
  maxBatchSize?: number;
  /** Model instances per device (default 1). */
  instances?: number;
  /** Where the instances run (default 'gpu'). */
  device?: TritonDevice;
  /** How long a request may wait for others to batch with (default 100 µs). */
  maxQueueDelayMicroseconds?: number;
}

const TRITON_TYPES: Readonly<Record<DType, string>> = {
  float32: 'TYPE_FP32', float16: 'TYPE_FP16', float64: 'TYPE_FP64', int64: 'TYPE_INT64', int32: 'TYPE_INT32', bool: 'TYPE_BOOL',
};

function positiveInteger(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${what} must be a positive integer, got ${value}`);
  return value;
}

/** preferred_batch_size: a quarter, a half and all of max_batch_size. */
export function preferredBatchSizes(maxBatchSize: number): number[] {
  return [...new Set([maxBatchSize / 4, maxBatchSize / 2, maxBatchSize].map(Math.floor).filter((n) => n >= 1))];
}

function tensorEntry(io: GraphIO): string {
  const v = io.value;
  if (!v.shape || v.shape.length === 0) throw new Error(`Triton needs a batch dimension on ${v.name}, which has shape [${v.shape?.join(', ') ?? '?'}]`);
  const dims = v.shape.slice(1).map((d) => (typeof d === 'number' ? d : -1));
  const lines = [
    '  {',
    `    name: ${JSON.stringify(v.name)}`,
    `    data_type: ${TRITON_TYPES[v.dtype]}`,
    // A batch-only tensor [N] is [N, 1] to clients (dims cannot be empty) and [N] to the model.
    dims.length ? `    dims: [ ${dims.join(', ')} ]` : '    dims: [ 1 ]',
    ...(dims.length ? [] : ['    reshape: { shape: [ ] }']),
    '  }',
  ];
  return lines.join('\n');
}

/** config.pbtxt of one model, from its graph's inputs and outputs. */
export function tritonConfig(name: string, graph: Graph, options: TritonOptions = {}): string {
  const maxBatch = positiveInteger(options.maxBatchSize ?? 64, 'max batch size');
  const instances = positiveInteger(options.instances ?? 1, 'instance count');
  const delay = options.maxQueueDelayMicroseconds ?? 100;
  if (!Number.isSafeInteger(delay) || delay < 0) throw new Error(`max queue delay must be an integer >= 0, got ${delay}`);
  const device = options.device ?? 'gpu';
  if (!TRITON_DEVICES.includes(device)) throw new Error(`Triton device must be ${TRITON_DEVICES.join(' or ')}, got ${device}`);
  for (const io of [...graph.inputs, ...graph.outputs]) {
    if (typeof io.value.shape?.[0] === 'number') throw new Error(`${name}: ${io.value.name} has a static batch; Triton needs the dynamic one`);
  }
  return [
    `# ${graph.docString ?? name}, exported by ${MODEL_INFO.producerName} ${MODEL_INFO.producerVersion}`,
    `name: ${JSON.stringify(name)}`,
    'platform: "onnxruntime_onnx"',
    `max_batch_size: ${maxBatch}`,
    'input [',
    graph.inputs.map(tensorEntry).join(',\n'),
    ']',
    'output [',
    graph.outputs.map(tensorEntry).join(',\n'),
    ']',
    'dynamic_batching {',
    `  preferred_batch_size: [ ${preferredBatchSizes(maxBatch).join(', ')} ]`,
    `  max_queue_delay_microseconds: ${delay}`,
    '}',
    'instance_group [',
    '  {',
    `    count: ${instances}`,
    `    kind: ${device === 'gpu' ? 'KIND_GPU' : 'KIND_CPU'}`,
    '  }',
    ']',
    '',
  ].join('\n');
}

/** Every file of the repository, by path relative to its root; nothing is written here. */
export function tritonRepository(w: GlowWeights, options: TritonOptions = {}): Record<string, Uint8Array | string> {
  const { encode, decode } = exportGraphs(w, { ...options, batch: undefined, temperature: 'per-example' });
  const files: Record<string, Uint8Array | string> = {};
  for (const [kind, graph] of [['encode', encode], ['decode', decode]] as const) {
    const name = TRITON_MODELS[kind];
    files[`${name}/config.pbtxt`] = tritonConfig(name, graph, options);
    const { model, data, location } = serializeGraph(graph, { ...MODEL_INFO, docString: `Glow ${kind} for Triton` }, 'model.onnx', options);
    if (data) {
      files[`${name}/1/model.onnx/model.onnx`] = model;
      files[`${name}/1/model.onnx/${location}`] = data;
    } else {
      files[`${name}/1/model.onnx`] = model;
    }
  }
  return files;
}
