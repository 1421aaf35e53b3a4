// Dense float64 linear algebra for folding Glow's invertible 1x1 convolutions on the host.
// Matrices are small (channel counts), so clarity wins over blocking or SIMD tricks.

export interface Matrix {
  rows: number;
  cols: number;
  /** Row-major: element (i, j) is data[i * cols + j]. */
  data: Float64Array;
}

/** Anything that draws standard-normal samples, e.g. an Rng from rng.ts. */
export interface NormalSource {
  normal(): number;
}

export function matrix(rows: number, cols: number, data?: ArrayLike<number>): Matrix {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new Error(`matrix dimensions must be non-negative integers, got ${rows}x${cols}`);
  }
  if (data && data.length !== rows * cols) {
    throw new Error(`matrix ${rows}x${cols} needs ${rows * cols} elements but got ${data.length}`);
  }
  return { rows, cols, data: data ? Float64Array.from(data) : new Float64Array(rows * cols) };
}

export function identity(n: number): Matrix {
  const m = matrix(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

export function transpose(m: Matrix): Matrix {
  const t = matrix(m.cols, m.rows);
  for (let i = 0; i < m.rows; i++) {
    for (let j = 0; j < m.cols; j++) t.data[j * m.rows + i] = m.data[i * m.cols + j];
  }
  return t;
}

export function matmul(a: Matrix, b: Matrix): Matrix {
  if (a.cols !== b.rows) {
    throw new Error(`cannot multiply ${a.rows}x${a.cols} by ${b.rows}x${b.cols}`);
  }
  const c = matrix(a.rows, b.cols);
  // i-k-j order walks both b and c along rows, which keeps the inner loop contiguous.
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const aik = a.data[i * a.cols + k];
      for (let j = 0; j < b.cols; j++) c.data[i * b.cols + j] += aik * b.data[k * b.cols + j];
    }
  }
  return c;
}

function requireSquare(m: Matrix, what: string): number {
  if (m.rows !== m.cols) throw new Error(`${what} must be square, got ${m.rows}x${m.cols}`);
  return m.rows;
}

function swapRows(m: Matrix, r1: number, r2: number): void {
  const c = m.cols;
  for (let j = 0; j < c; j++) {
    const tmp = m.data[r1 * c + j];
    m.data[r1 * c + j] = m.data[r2 * c + j];
    m.data[r2 * c + j] = tmp;
  }
}

function pivotRow(work: Matrix, column: number): number {
  const n = work.rows;
  let best = column;
  for (let i = column + 1; i < n; i++) {
    if (Math.abs(work.data[i * n + column]) > Math.abs(work.data[best * n + column])) best = i;
  }
  return best;
}

/**
 * LU decomposition with partial pivoting in torch.lu_unpack's convention: A = P L U with P a
 * permutation matrix, L unit lower triangular and U upper triangular.
 */
export function luDecompose(a: Matrix): { p: Matrix; l: Matrix; u: Matrix } {
  const n = requireSquare(a, 'LU input');
  if (!a.data.every(Number.isFinite)) throw new Error(`matrix ${n}x${n} has a non-finite entry`);
  const work = matrix(n, n, a.data);
  // rowOf[i] is the row of A that ended up in row i of L U, i.e. A[rowOf[i]] = (L U)[i].
  const rowOf = Array.from({ length: n }, (_, i) => i);
  for (let k = 0; k < n; k++) {
    const best = pivotRow(work, k);
    swapRows(work, k, best);
    [rowOf[k], rowOf[best]] = [rowOf[best], rowOf[k]];
    const pivot = work.data[k * n + k];
    // Finite input can still overflow during elimination, hence the finiteness check here too.
    if (pivot === 0 || !Number.isFinite(pivot)) {
      throw new Error(`matrix is singular (${n}x${n}, pivot ${pivot} in column ${k})`);
    }
    for (let i = k + 1; i < n; i++) {
      const factor = work.data[i * n + k] / pivot;
      work.data[i * n + k] = factor;
      for (let j = k + 1; j < n; j++) work.data[i * n + j] -= factor * work.data[k * n + j];
    }
  }
  return { p: permutationMatrix(rowOf), l: unitLowerPart(work), u: upperPart(work) };
}

function permutationMatrix(rowOf: number[]): Matrix {
  const n = rowOf.length;
  const p = matrix(n, n);
  for (let i = 0; i < n; i++) p.data[rowOf[i] * n + i] = 1;
  return p;
}

function unitLowerPart(packed: Matrix): Matrix {
  const n = packed.rows;
  const l = identity(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) l.data[i * n + j] = packed.data[i * n + j];
  }
  return l;
}

function upperPart(packed: Matrix): Matrix {
  const n = packed.rows;
  const u = matrix(n, n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) u.data[i * n + j] = packed.data[i * n + j];
  }
  return u;
}

function requireSolvable(t: Matrix, b: Matrix, what: string): number {
  const n = requireSquare(t, what);
  if (b.rows !== n) throw new Error(`${what} is ${n}x${n} but right-hand side has ${b.rows} rows`);
  return n;
}

function diagonalOf(t: Matrix, i: number): number {
  const d = t.data[i * t.cols + i];
  if (d === 0) throw new Error(`triangular matrix is singular (${t.rows}x${t.cols}, zero at diagonal ${i})`);
  return d;
}

/** Solves L X = B by forward substitution; with unitDiagonal the stored diagonal of L is ignored. */
export function solveLowerTriangular(l: Matrix, b: Matrix, unitDiagonal: boolean): Matrix {
  const n = requireSolvable(l, b, 'lower triangular matrix');
  const m = b.cols;
  const x = matrix(n, m, b.data);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < i; k++) {
      const lik = l.data[i * n + k];
      for (let j = 0; j < m; j++) x.data[i * m + j] -= lik * x.data[k * m + j];
    }
    if (!unitDiagonal) {
      const d = diagonalOf(l, i);
      for (let j = 0; j < m; j++) x.data[i * m + j] /= d;
    }
  }
  return x;
}

/** Solves U X = B by back substitution. */
export function solveUpperTriangular(u: Matrix, b: Matrix): Matrix {
  const n = requireSolvable(u, b, 'upper triangular matrix');
  const m = b.cols;
  const x = matrix(n, m, b.data);
  for (let i = n - 1; i >= 0; i--) {
    for (let k = i + 1; k < n; k++) {
      const uik = u.data[i * n + k];
      for (let j = 0; j < m; j++) x.data[i * m + j] -= uik * x.data[k * m + j];
    }
    const d = diagonalOf(u, i);
    for (let j = 0; j < m; j++) x.data[i * m + j] /= d;
  }
  return x;
}

/**
 * (P L U)^-1 = U^-1 L^-1 P^T, by two triangular solves against P^T. L's diagonal is used as
 * stored, so a non-unit lower factor works too.
 */
export function inverseFromLU(p: Matrix, l: Matrix, u: Matrix): Matrix {
  return solveUpperTriangular(u, solveLowerTriangular(l, transpose(p), false));
}

export function inverse(a: Matrix): Matrix {
  const { p, l, u } = luDecompose(a);
  return inverseFromLU(p, l, u);
}

/** log|det A|; P and L contribute |det| = 1, so only U's diagonal matters. */
export function logAbsDet(a: Matrix): number {
  const { u } = luDecompose(a);
  let sum = 0;
  for (let i = 0; i < u.rows; i++) sum += Math.log(Math.abs(u.data[i * u.cols + i]));
  return sum;
}

/**
 * Full QR decomposition A = Q R (Q is rows x rows orthogonal, R is rows x cols upper triangular)
 * by Householder reflections. Signs follow LAPACK's geqrf, which torch.linalg.qr calls:
 * r_kk = -sign(a_kk) * |column|, and a column already zero below the diagonal gets no
 * reflection. No sign normalisation is applied afterwards.
 */
export function qrDecompose(a: Matrix): { q: Matrix; r: Matrix } {
  const r = matrix(a.rows, a.cols, a.data);
  const q = identity(a.rows);
  const steps = Math.min(a.rows - 1, a.cols);
  for (let k = 0; k < steps; k++) {
    const v = householderVector(r, k);
    if (v) {
      reflectRowsFrom(r, v, k);
      reflectColumnsFrom(q, v, k);
    }
  }
  clearBelowDiagonal(r);
  return { q, r };
}

/** The reflections zero these entries only up to rounding; R is triangular by construction. */
function clearBelowDiagonal(m: Matrix): void {
  for (let i = 1; i < m.rows; i++) {
    for (let j = 0; j < Math.min(i, m.cols); j++) m.data[i * m.cols + j] = 0;
  }
}

/** Unit vector v such that (I - 2 v v^T) zeroes column k of m below the diagonal; null if already zero. */
function householderVector(m: Matrix, k: number): Float64Array | null {
  const length = m.rows - k;
  const v = new Float64Array(length);
  let tailSquared = 0;
  for (let i = 0; i < length; i++) {
    v[i] = m.data[(k + i) * m.cols + k];
    if (i > 0) tailSquared += v[i] * v[i];
  }
  if (tailSquared === 0) return null;
  const head = v[0];
  const columnNorm = Math.sqrt(head * head + tailSquared);
  // Moving head away from zero avoids cancellation; this also fixes r_kk's sign as LAPACK does.
  v[0] = head >= 0 ? head + columnNorm : head - columnNorm;
  const vNorm = Math.sqrt(v[0] * v[0] + tailSquared);
  for (let i = 0; i < length; i++) v[i] /= vNorm;
  return v;
}

/** m[k:, :] -= 2 v (v^T m[k:, :]) */
function reflectRowsFrom(m: Matrix, v: Float64Array, k: number): void {
  for (let j = 0; j < m.cols; j++) {
    let dot = 0;
    for (let i = 0; i < v.length; i++) dot += v[i] * m.data[(k + i) * m.cols + j];
    for (let i = 0; i < v.length; i++) m.data[(k + i) * m.cols + j] -= 2 * dot * v[i];
  }
}

/** m[:, k:] -= 2 (m[:, k:] v) v^T */
function reflectColumnsFrom(m: Matrix, v: Float64Array, k: number): void {
  for (let i = 0; i < m.rows; i++) {
    let dot = 0;
    for (let j = 0; j < v.length; j++) dot += m.data[i * m.cols + k + j] * v[j];
    for (let j = 0; j < v.length; j++) m.data[i * m.cols + k + j] -= 2 * dot * v[j];
  }
}

/**
 * Q of the QR decomposition of an n x n standard-normal matrix drawn in row-major order, like
 * torch.linalg.qr(torch.randn(n, n))[0] (same sign convention, different random stream).
 */
export function randomOrthogonal(n: number, rng: NormalSource): Matrix {
  const gaussian = matrix(n, n);
  for (let i = 0; i < gaussian.data.length; i++) gaussian.data[i] = rng.normal();
  return qrDecompose(gaussian).q;
}
