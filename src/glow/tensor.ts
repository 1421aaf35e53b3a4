// Host tensors: parameters live in float64 on the host so that folding is exact before the
// single cast to the graph's dtype.

export interface HostTensor {
  shape: number[];
  data: Float64Array;
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
