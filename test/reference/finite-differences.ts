// Shared by the tests that check log-determinants against brute-force Jacobians.

import { expect } from 'chai';
import { HostTensor } from '../../src/math/tensor.js';

/** log|det A| by Gaussian elimination with partial pivoting (A row-major n x n, copied). Written
 * here rather than taken from src/math/linalg.ts, so the check does not lean on the code it
 * checks. */
export function logAbsDet(A: Float64Array, n: number): number {
  const a = Float64Array.from(A);
  let s = 0;
  for (let col = 0; col < n; col++) {
    let p = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r * n + col]) > Math.abs(a[p * n + col])) p = r;
    const pivot = a[p * n + col];
    if (pivot === 0) return -Infinity;
    if (p !== col) for (let j = 0; j < n; j++) [a[col * n + j], a[p * n + j]] = [a[p * n + j], a[col * n + j]];
    s += Math.log(Math.abs(pivot));
    for (let r = col + 1; r < n; r++) {
      const factor = a[r * n + col] / pivot;
      if (factor !== 0) for (let j = col; j < n; j++) a[r * n + j] -= factor * a[col * n + j];
    }
  }
  return s;
}

/** Example 0 of a batch repeated `times` times along N (one row per finite-difference probe). */
export function repeatFirst(t: HostTensor, times: number): HostTensor {
  const per = t.data.length / t.shape[0];
  const data = new Float64Array(per * times);
  for (let r = 0; r < times; r++) data.set(t.data.subarray(0, per), r * per);
  return { shape: [times, ...t.shape.slice(1)], data };
}

export function expectClose(actual: number, expected: number, rel: number, what: string): void {
  const tol = rel * Math.max(1, Math.abs(expected));
  expect(Math.abs(actual - expected), `${what}: ${actual} vs ${expected}`).to.be.at.most(tol);
}
