// Host tensors. Folding computes in float64 so that the only rounding is the single cast to the
// graph's dtype. Parameters read from a float32 checkpoint may stay float32 in memory (half the
// size of a big model while it is exported): hostParam hands every fold float64 data.

export type HostData = Float64Array | Float32Array;

export interface HostTensor {
  shape: number[];
  data: HostData;
}

export interface HostTensor64 extends HostTensor {
  data: Float64Array;
}

/** The sum of the values (reduce is not callable on a union of typed arrays). */
export function sum(values: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < values.length; i++) total += values[i];
  return total;
}

export function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function hostTensor(shape: number[], data?: ArrayLike<number>): HostTensor {
  const n = size(shape);
  if (data && data.length !== n) {
    throw new Error(`tensor data has ${data.length} elements but shape [${shape.join(', ')}] needs ${n}`);
  }
  return { shape: [...shape], data: data ? Float64Array.from(data) : new Float64Array(n) };
}

export function zeros(shape: number[]): HostTensor {
  return hostTensor(shape);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
