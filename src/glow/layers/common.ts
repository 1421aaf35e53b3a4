// Shared vocabulary of the layers: what a layer returns, and how it reaches its weights.

import { GraphBuilder, tensor, Value } from '../../builder/graph.js';
import { HostTensor, HostTensor64 } from '../../math/tensor.js';

/** A log-determinant: a host constant when it does not depend on the data, otherwise a
 * per-example Value of shape [N]. Constants are summed on the host into one number. */
export type LogDet = number | Value;

export interface FlowOutput {
  out: Value;
  logdet: LogDet;
}

/** Where a layer's checkpoint tensors come from: initializers when exporting, graph inputs
 * when training. */
export type ParamSource = (name: string) => Value;

/** Supplies the ActNorm at `prefix` (e.g. 'flow.layers.1.actnorm') for the input x it
 * normalises: its checkpoint tensors, or statistics of x during data-dependent initialisation. */
export type ActNormSource = (g: GraphBuilder, prefix: string, x: Value) => { bias: Value; logs: Value };

/** The ActNorm weights as the checkpoint holds them. */
export function checkpointActNorms(src: ParamSource): ActNormSource {
  return (_g, prefix) => ({ bias: src(`${prefix}.bias`), logs: src(`${prefix}.logs`) });
}

/** The model's host weights in float64, keyed by checkpoint name. */
export type HostParams = ReadonlyMap<string, HostTensor>;

/** A parameter as stored (float64, or float32 as read from a float32 checkpoint). */
export function storedParam(params: HostParams, name: string): HostTensor {
  const t = params.get(name);
  if (!t) throw new Error(`missing weight ${name}`);
  return t;
}

/** A parameter in float64, for folding (a transient copy when it is stored as float32). */
export function hostParam(params: HostParams, name: string): HostTensor64 {
  const t = storedParam(params, name);
  return t.data instanceof Float64Array ? (t as HostTensor64) : { shape: t.shape, data: Float64Array.from(t.data) };
}

/** Registers host float64 data as a float32 initializer under the current scope. */
export function weight(g: GraphBuilder, hint: string, shape: number[], data: ArrayLike<number>): Value {
  return g.constant(tensor('float32', shape, data), hint);
}

export function scalarConstant(g: GraphBuilder, value: number, hint = 'c'): Value {
  return g.constant(tensor('float32', [], [value]), hint);
}
