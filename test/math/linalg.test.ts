import { expect } from 'chai';
import {
  Matrix, identity, inverse, inverseFromLU, logAbsDet, luDecompose, matmul, matrix,
  qrDecompose, randomOrthogonal, solveLowerTriangular, solveUpperTriangular, transpose,
} from '../../src/math/linalg.js';
import { Rng } from '../../src/math/rng.js';

function randomMatrix(rows: number, cols: number, rng: Rng): Matrix {
  return matrix(rows, cols, rng.fillNormal(new Float64Array(rows * cols)));
}

function at(m: Matrix, i: number, j: number): number {
  return m.data[i * m.cols + j];
}

function maxAbsDifference(a: Matrix, b: Matrix): number {
  expect([a.rows, a.cols]).to.deep.equal([b.rows, b.cols]);
  return a.data.reduce((worst, x, i) => Math.max(worst, Math.abs(x - b.data[i])), 0);
}

function expectClose(actual: Matrix, expected: Matrix, tolerance: number): void {
  expect(maxAbsDifference(actual, expected)).to.be.at.most(tolerance);
}

function expectUpperTriangular(m: Matrix): void {
  for (let i = 0; i < m.rows; i++) {
    for (let j = 0; j < Math.min(i, m.cols); j++) expect(at(m, i, j), `(${i}, ${j})`).to.equal(0);
  }
}

function expectUnitLowerTriangular(m: Matrix): void {
  for (let i = 0; i < m.rows; i++) {
    expect(at(m, i, i)).to.equal(1);
    for (let j = i + 1; j < m.cols; j++) expect(at(m, i, j), `(${i}, ${j})`).to.equal(0);
  }
}

function expectPermutation(p: Matrix): void {
  for (let i = 0; i < p.rows; i++) {
    const row = Array.from({ length: p.cols }, (_, j) => at(p, i, j));
    const column = Array.from({ length: p.rows }, (_, j) => at(p, j, i));
    for (const line of [row, column]) {
      expect(line.filter((x) => x === 1)).to.have.length(1);
      expect(line.every((x) => x === 0 || x === 1)).to.equal(true);
    }
  }
}

/** Independent of LU: Laplace expansion along the first row. */
function cofactorDeterminant(m: Matrix): number {
  const n = m.rows;
  if (n === 1) return m.data[0];
  let det = 0;
  for (let j = 0; j < n; j++) {
    const minor = matrix(n - 1, n - 1);
    for (let i = 1; i < n; i++) {
      for (let k = 0, c = 0; k < n; k++) if (k !== j) minor.data[(i - 1) * (n - 1) + c++] = at(m, i, k);
    }
    det += (j % 2 === 0 ? 1 : -1) * at(m, 0, j) * cofactorDeterminant(minor);
  }
  return det;
}

const SIZES = [1, 2, 3, 5, 8, 16, 48];

describe('linalg', () => {
  describe('basics', () => {
    it('multiplies and transposes', () => {
      const a = matrix(2, 3, [1, 2, 3, 4, 5, 6]);
      const b = matrix(3, 2, [7, 8, 9, 10, 11, 12]);
      expect(Array.from(matmul(a, b).data)).to.deep.equal([58, 64, 139, 154]);
      expect(Array.from(transpose(a).data)).to.deep.equal([1, 4, 2, 5, 3, 6]);
      expect(matmul(identity(2), a)).to.deep.equal(a);
    });

    it('rejects mismatched shapes', () => {
      expect(() => matmul(matrix(2, 3), matrix(2, 3))).to.throw('cannot multiply 2x3 by 2x3');
      expect(() => matrix(2, 2, [1, 2, 3])).to.throw('needs 4 elements');
    });
  });

  describe('luDecompose', () => {
    const rng = new Rng(1);
    for (const n of SIZES) {
      it(`reconstructs a random ${n}x${n} matrix as P L U`, () => {
        const a = randomMatrix(n, n, rng);
        const { p, l, u } = luDecompose(a);
        expectPermutation(p);
        expectUnitLowerTriangular(l);
        expectUpperTriangular(u);
        expectClose(matmul(p, matmul(l, u)), a, 1e-12);
      });
    }

    it('pivots on a zero leading entry', () => {
      const a = matrix(3, 3, [0, 2, 1, 1, 0, 0, 0, 0, 3]);
      const { p, l, u } = luDecompose(a);
      expect(p).to.not.deep.equal(identity(3));
      expectClose(matmul(p, matmul(l, u)), a, 0);
    });

    it('pivots on the largest entry so that |L| <= 1', () => {
      const a = matrix(2, 2, [1e-20, 1, 1, 1]);
      const { p, l, u } = luDecompose(a);
      expect(Array.from(p.data)).to.deep.equal([0, 1, 1, 0]);
      expect(l.data.every((x) => Math.abs(x) <= 1)).to.equal(true);
      expectClose(matmul(p, matmul(l, u)), a, 1e-15);
    });

    it('reports a singular matrix with its size', () => {
      expect(() => luDecompose(matrix(3, 3, [1, 2, 3, 2, 4, 6, 0, 1, 1]))).to.throw(/matrix is singular \(3x3/);
      expect(() => luDecompose(matrix(2, 2))).to.throw(/matrix is singular \(2x2/);
    });

    it('rejects non-square and non-finite input', () => {
      expect(() => luDecompose(matrix(2, 3))).to.throw('must be square, got 2x3');
      expect(() => luDecompose(matrix(2, 2, [1, NaN, 0, 1]))).to.throw('non-finite');
    });
  });

  describe('triangular solves', () => {
    const rng = new Rng(2);

    it('solves L X = B for several right-hand sides', () => {
      const { l } = luDecompose(randomMatrix(6, 6, rng));
      const b = randomMatrix(6, 3, rng);
      expectClose(matmul(l, solveLowerTriangular(l, b, true)), b, 1e-12);
    });

    it('ignores the stored diagonal when unitDiagonal is set', () => {
      const l = matrix(2, 2, [5, 0, 2, 7]);
      const b = matrix(2, 1, [1, 4]);
      expect(Array.from(solveLowerTriangular(l, b, true).data)).to.deep.equal([1, 2]);
      expectClose(matmul(l, solveLowerTriangular(l, b, false)), b, 1e-15);
    });

    it('solves U X = B for several right-hand sides', () => {
      const { u } = luDecompose(randomMatrix(6, 6, rng));
      const b = randomMatrix(6, 4, rng);
      expectClose(matmul(u, solveUpperTriangular(u, b)), b, 1e-10);
    });

    it('rejects a zero diagonal and mismatched right-hand sides', () => {
      expect(() => solveUpperTriangular(matrix(2, 2, [1, 1, 0, 0]), matrix(2, 1))).to.throw('triangular matrix is singular');
      expect(() => solveLowerTriangular(identity(3), matrix(2, 1), true)).to.throw('right-hand side has 2 rows');
    });
  });

  describe('inverse', () => {
    const rng = new Rng(3);
    for (const n of SIZES) {
      it(`inverts a random ${n}x${n} matrix`, () => {
        const a = randomMatrix(n, n, rng);
        const aInverse = inverse(a);
        expectClose(matmul(aInverse, a), identity(n), 1e-10);
        expectClose(matmul(a, aInverse), identity(n), 1e-10);
      });

      it(`inverseFromLU agrees with inverse for ${n}x${n}`, () => {
        const a = randomMatrix(n, n, rng);
        const { p, l, u } = luDecompose(a);
        const expected = inverse(a);
        expectClose(inverseFromLU(p, l, u), expected, 1e-12 * Math.max(1, ...expected.data.map(Math.abs)));
      });
    }

    it('inverts a product of factors that did not come from luDecompose', () => {
      const p = matrix(3, 3, [0, 0, 1, 1, 0, 0, 0, 1, 0]);
      const l = matrix(3, 3, [1, 0, 0, 0.5, 1, 0, -2, 0.25, 1]);
      const u = matrix(3, 3, [2, 1, -1, 0, -3, 4, 0, 0, 0.5]);
      expectClose(matmul(inverseFromLU(p, l, u), matmul(p, matmul(l, u))), identity(3), 1e-13);
    });

    it('refuses a singular matrix', () => {
      expect(() => inverse(matrix(2, 2, [1, 2, 2, 4]))).to.throw('matrix is singular');
    });
  });

  describe('logAbsDet', () => {
    const rng = new Rng(4);
    for (const n of [1, 2, 3, 4, 5]) {
      it(`matches the cofactor expansion for ${n}x${n}`, () => {
        const a = randomMatrix(n, n, rng);
        expect(logAbsDet(a)).to.be.closeTo(Math.log(Math.abs(cofactorDeterminant(a))), 1e-12);
      });
    }

    it('is exact on a diagonal matrix', () => {
      expect(logAbsDet(matrix(3, 3, [2, 0, 0, 0, -4, 0, 0, 0, 0.5]))).to.be.closeTo(Math.log(4), 1e-15);
    });

    it('is 0 for an orthogonal matrix', () => {
      expect(logAbsDet(randomOrthogonal(12, rng))).to.be.closeTo(0, 1e-12);
    });

    it('refuses a singular matrix', () => {
      expect(() => logAbsDet(matrix(2, 2, [1, 2, 2, 4]))).to.throw('matrix is singular');
    });
  });

  describe('qrDecompose', () => {
    const rng = new Rng(5);
    for (const [rows, cols] of [[1, 1], [2, 2], [4, 4], [7, 7], [32, 32], [6, 3], [3, 6]]) {
      it(`factors a random ${rows}x${cols} matrix`, () => {
        const a = randomMatrix(rows, cols, rng);
        const { q, r } = qrDecompose(a);
        expectClose(matmul(transpose(q), q), identity(rows), 1e-12);
        expectUpperTriangular(r);
        expectClose(matmul(q, r), a, 1e-12);
      });
    }

    it('follows the LAPACK sign convention', () => {
      const { q, r } = qrDecompose(matrix(2, 2, [3, 1, 4, 2]));
      expect(at(r, 0, 0)).to.be.closeTo(-5, 1e-15);
      expect(at(r, 1, 1)).to.be.closeTo(0.4, 1e-15);
      expectClose(q, matrix(2, 2, [-0.6, -0.8, -0.8, 0.6]), 1e-15);
    });

    it('leaves an already triangular column alone', () => {
      const a = matrix(2, 2, [2, 1, 0, 3]);
      const { q, r } = qrDecompose(a);
      expect(q).to.deep.equal(identity(2));
      expect(r).to.deep.equal(a);
    });
  });

  describe('randomOrthogonal', () => {
    it('is orthogonal and reproducible from the seed', () => {
      const q = randomOrthogonal(24, new Rng(6));
      expectClose(matmul(transpose(q), q), identity(24), 1e-12);
      expect(randomOrthogonal(24, new Rng(6))).to.deep.equal(q);
      expect(randomOrthogonal(24, new Rng(7))).to.not.deep.equal(q);
    });
  });
});
