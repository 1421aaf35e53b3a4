// ONNX Runtime sessions for the exported graphs.

import ort from 'onnxruntime-node';
import { HostTensor } from '../math/tensor.js';
import { sessionOptions } from './session-options.js';

export type Feeds = Record<string, ort.Tensor>;

export async function createCpuSession(model: Uint8Array, threads?: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model, sessionOptions('cpu', { threads }));
}

export function floatTensor(data: Float32Array, shape: number[]): ort.Tensor {
  return new ort.Tensor('float32', data, shape);
}

export function toHost(t: ort.Tensor): HostTensor {
  return { shape: [...t.dims], data: Float64Array.from(t.data as Float32Array) };
}
