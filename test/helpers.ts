// Test utilities: run a builder Graph in onnxruntime-node CPU and compare arrays.

import ort from 'onnxruntime-node';
import { Graph } from '../src/builder/graph.js';
import { serializeModel } from '../src/builder/serialize.js';
import { HostTensor } from '../src/glow/tensor.js';

export type Feeds = Record<string, HostTensor | number>;

export async function runGraph(graph: Graph, feeds: Feeds): Promise<Record<string, HostTensor>> {
  const session = await ort.InferenceSession.create(serializeModel(graph));
  try {
    const input: Record<string, ort.Tensor> = {};
    for (const [name, v] of Object.entries(feeds)) {
      input[name] = typeof v === 'number' ? new ort.Tensor('float32', Float32Array.of(v), []) : new ort.Tensor('float32', Float32Array.from(v.data), v.shape);
    }
    const result = await session.run(input);
    const out: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(result)) out[name] = { shape: [...t.dims], data: Float64Array.from(t.data as Float32Array) };
    return out;
  } finally {
    await session.release();
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}
