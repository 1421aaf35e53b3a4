// The training state between steps, where the train step runs: host arrays on the CPU, GPU
// buffers on WebGPU.

import ort from 'onnxruntime-node';
import { GraphBuilder } from '../builder/graph.js';
import { serializeModel } from '../builder/serialize.js';
import { emaName, momentNames, updatedName } from './names.js';

/** The training state (parameters, Adam moments, averages) as ONNX Runtime tensors keyed by
 * graph input name: host arrays on the CPU, GPU buffers that never leave the device on WebGPU,
 * read back only for checkpoints, evaluation and the end of the run. */
export class DeviceState {
  private readback?: ort.InferenceSession;

  private constructor(private tensors: Map<string, ort.Tensor>, private readonly sessionOptions: ort.InferenceSession.SessionOptions) {}

  /** Each trainable tensor, its two moments and (with an EMA) its average, under their graph
   * input names; splitState is the inverse. */
  static fromHost(
    shapes: ReadonlyMap<string, number[]>, host: ReturnType<typeof splitState>, sessionOptions: ort.InferenceSession.SessionOptions,
    spectral: ReadonlyMap<string, number[]> = new Map(),
  ): DeviceState {
    const tensors = new Map<string, ort.Tensor>();
    for (const [name, shape] of spectral) tensors.set(name, new ort.Tensor('float32', host.spectral.get(name)!, shape));
    for (const [name, shape] of shapes) {
      const put = (key: string, data: Float32Array) => tensors.set(key, new ort.Tensor('float32', data, shape));
      put(name, host.params.get(name)!);
      put(momentNames(name).m, host.moments.get(momentNames(name).m)!);
      put(momentNames(name).v, host.moments.get(momentNames(name).v)!);
      if (host.ema) put(emaName(name), host.ema.get(name)!);
    }
    return new DeviceState(tensors, sessionOptions);
  }

  get location(): ort.Tensor.DataLocation {
    return this.tensors.values().next().value?.location ?? 'cpu';
  }

  feeds(): Record<string, ort.Tensor> {
    return Object.fromEntries(this.tensors);
  }

  /** Takes each `<name>.updated` output as the new `<name>` and frees the GPU buffers it replaces. */
  update(outputs: ort.InferenceSession.OnnxValueMapType): void {
    for (const [name, old] of this.tensors) {
      this.tensors.set(name, outputs[updatedName(name)] as ort.Tensor);
      if (old.location === 'gpu-buffer') old.dispose();
    }
  }

  /** Host copies of every tensor. onnxruntime-node cannot download a GPU tensor itself, so an
   * Identity graph on the same provider hands the buffers back as CPU outputs. */
  async toHost(): Promise<Map<string, Float32Array>> {
    if (this.location !== 'gpu-buffer') return new Map([...this.tensors].map(([k, t]) => [k, t.data as Float32Array]));
    if (!this.readback) {
      const g = new GraphBuilder('glow_state_readback');
      for (const [name, t] of this.tensors) g.output(g.node('Identity', [g.input(name, 'float32', [...t.dims])], {}, [{ dtype: 'float32', shape: [...t.dims] }])[0], `${name}.host`);
      this.readback = await ort.InferenceSession.create(serializeModel(g.build()), { ...this.sessionOptions, preferredOutputLocation: 'cpu' });
    }
    const out = await this.readback.run(this.feeds());
    return new Map([...this.tensors.keys()].map((k) => [k, (out[`${k}.host`] as ort.Tensor).data as Float32Array]));
  }

  async release(): Promise<void> {
    for (const t of this.tensors.values()) if (t.location === 'gpu-buffer') t.dispose();
    await this.readback?.release();
  }
}

/** Splits host state into parameters, moments, averages and power-iteration vectors. */
export function splitState(host: ReadonlyMap<string, Float32Array>, shapes: ReadonlyMap<string, number[]>, withEma: boolean, spectralNames: Iterable<string>): {
  params: Map<string, Float32Array>; moments: Map<string, Float32Array>; ema?: Map<string, Float32Array>; spectral: Map<string, Float32Array>;
} {
  const params = new Map([...shapes.keys()].map((n) => [n, host.get(n)!]));
  const moments = new Map([...shapes.keys()].flatMap((n) => [momentNames(n).m, momentNames(n).v].map((k) => [k, host.get(k)!] as const)));
  const ema = withEma ? new Map([...shapes.keys()].map((n) => [n, host.get(emaName(n))!])) : undefined;
  const spectral = new Map([...spectralNames].map((n) => [n, host.get(n)!]));
  return { params, moments, ema, spectral };
}

/** The tensors a model is made of at this point: the trained ones (or their averages) with the
 * power-iteration vectors of the same step. */
export function modelTensors(host: ReturnType<typeof splitState>): Map<string, Float32Array> {
  return new Map([...(host.ema ?? host.params), ...host.spectral]);
}
