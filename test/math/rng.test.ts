import { expect } from 'chai';
import { Rng } from '../../src/math/rng.js';

const DRAWS = 100_000;

function draws(count: number, next: () => number): Float64Array {
  return Float64Array.from({ length: count }, next);
}

function mean(values: Float64Array): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function variance(values: Float64Array): number {
  const m = mean(values);
  return values.reduce((a, b) => a + (b - m) ** 2, 0) / (values.length - 1);
}

describe('Rng', () => {
  describe('reference values', () => {
    // Expected values come from the authors' C code (xoshiro128starstar.c, splitmix64.c).
    it('produces the xoshiro128** stream of state [1, 2, 3, 4]', () => {
      const rng = Rng.fromState([1, 2, 3, 4, 0, 0]);
      expect(Array.from({ length: 6 }, () => rng.nextUint32())).to.deep.equal([
        11520, 0, 5927040, 70819200, 2031721883, 1637235492,
      ]);
    });

    it('seeds from two splitmix64 outputs, low word first', () => {
      // splitmix64 seeded with 0 starts 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4.
      expect(new Rng(0).state().slice(0, 4)).to.deep.equal([0x7b1dcdaf, 0xe220a839, 0xa1b965f4, 0x6e789e6a]);
    });

    it('produces the reference stream for seed 42', () => {
      const rng = new Rng(42);
      expect(Array.from({ length: 4 }, () => rng.nextUint32())).to.deep.equal([
        1776835114, 4165204688, 17111135, 2317295270,
      ]);
    });
  });

  describe('seeding', () => {
    it('repeats the stream for the same seed', () => {
      const a = new Rng(1234);
      const b = new Rng(1234);
      expect(draws(100, () => a.uniform())).to.deep.equal(draws(100, () => b.uniform()));
      expect(draws(101, () => a.normal())).to.deep.equal(draws(101, () => b.normal()));
    });

    it('gives different streams for different seeds', () => {
      const streams = [0, 1, 2, 2 ** 32, 2 ** 53 - 1, -1].map((seed) => {
        const rng = new Rng(seed);
        return Array.from({ length: 4 }, () => rng.nextUint32()).join(',');
      });
      expect(new Set(streams).size).to.equal(streams.length);
    });

    it('treats a number and the equal bigint as the same seed', () => {
      expect(new Rng(2 ** 40 + 7).state()).to.deep.equal(new Rng(2n ** 40n + 7n).state());
      expect(new Rng(-1).state()).to.deep.equal(new Rng(2n ** 64n - 1n).state());
    });

    it('rejects seeds that are not exact integers', () => {
      expect(() => new Rng(1.5)).to.throw('rng seed must be a safe integer');
      expect(() => new Rng(2 ** 60)).to.throw('rng seed must be a safe integer');
    });
  });

  describe('uniform', () => {
    const values = draws(DRAWS, (() => { const rng = new Rng(10); return () => rng.uniform(); })());

    it('stays in [0, 1)', () => {
      expect(values.every((x) => x >= 0 && x < 1)).to.equal(true);
    });

    it('has mean 1/2 and variance 1/12', () => {
      // Five standard errors: sqrt(1/12 / n) for the mean, sqrt((1/80 - 1/144) / n) for the variance.
      expect(mean(values)).to.be.closeTo(0.5, 5 * Math.sqrt(1 / 12 / DRAWS));
      expect(variance(values)).to.be.closeTo(1 / 12, 5 * Math.sqrt((1 / 80 - 1 / 144) / DRAWS));
    });

    it('uses more than 32 bits', () => {
      const rng = new Rng(11);
      const scaled = draws(1000, () => rng.uniform() * 2 ** 32);
      expect(scaled.some((x) => !Number.isInteger(x))).to.equal(true);
    });

    it('fills a range', () => {
      const out = new Rng(12).fillUniform(new Float64Array(DRAWS), -3, 5);
      expect(out.every((x) => x >= -3 && x < 5)).to.equal(true);
      expect(mean(out)).to.be.closeTo(1, 5 * 8 * Math.sqrt(1 / 12 / DRAWS));
    });
  });

  describe('normal', () => {
    const values = draws(DRAWS, (() => { const rng = new Rng(20); return () => rng.normal(); })());

    it('has mean 0 and standard deviation 1', () => {
      expect(mean(values)).to.be.closeTo(0, 5 / Math.sqrt(DRAWS));
      expect(Math.sqrt(variance(values))).to.be.closeTo(1, 5 * Math.sqrt(0.5 / DRAWS));
    });

    it('puts about 68.27% of draws within one standard deviation', () => {
      const p = 0.682689;
      const within = values.filter((x) => Math.abs(x) < 1).length / DRAWS;
      expect(within).to.be.closeTo(p, 5 * Math.sqrt((p * (1 - p)) / DRAWS));
    });

    it('fills with a mean and standard deviation, rounding into float32', () => {
      const out = new Rng(21).fillNormal(new Float32Array(DRAWS), 3, 0.5);
      expect(mean(Float64Array.from(out))).to.be.closeTo(3, 5 * 0.5 / Math.sqrt(DRAWS));
      expect(Math.sqrt(variance(Float64Array.from(out)))).to.be.closeTo(0.5, 5 * 0.5 * Math.sqrt(0.5 / DRAWS));
    });

    it('fillNormal continues the same stream as normal()', () => {
      const a = new Rng(22);
      const b = new Rng(22);
      expect(Array.from(a.fillNormal(new Float64Array(7)))).to.deep.equal(Array.from({ length: 7 }, () => b.normal()));
    });
  });

  describe('integers and permutations', () => {
    it('draws int(n) uniformly in [0, n)', () => {
      const rng = new Rng(30);
      const counts = new Array<number>(6).fill(0);
      for (let i = 0; i < 60_000; i++) counts[rng.int(6)]++;
      const sd = Math.sqrt(60_000 * (1 / 6) * (5 / 6));
      for (const count of counts) expect(count).to.be.closeTo(10_000, 5 * sd);
    });

    it('covers the full 32-bit range', () => {
      const rng = new Rng(31);
      expect(rng.int(1)).to.equal(0);
      const big = draws(1000, () => rng.int(2 ** 32));
      expect(big.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32)).to.equal(true);
      expect(big.some((x) => x >= 2 ** 31)).to.equal(true);
    });

    it('rejects bad bounds', () => {
      const rng = new Rng(32);
      for (const n of [0, -1, 2.5, 2 ** 32 + 1]) expect(() => rng.int(n)).to.throw('rng int bound');
    });

    it('returns a permutation', () => {
      const rng = new Rng(33);
      for (const n of [0, 1, 2, 10, 1000]) {
        const perm = rng.permutation(n);
        expect([...perm].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: n }, (_, i) => i));
      }
    });

    it('shuffles in place with every position reachable', () => {
      const rng = new Rng(34);
      const orders = new Set<string>();
      for (let i = 0; i < 200; i++) {
        const array = ['a', 'b', 'c'];
        expect(rng.shuffle(array)).to.equal(array);
        orders.add(array.join(''));
      }
      expect(orders.size).to.equal(6);
    });
  });

  describe('state', () => {
    it('resumes mid-stream with a cached Box–Muller value', () => {
      const rng = new Rng(40);
      rng.uniform();
      rng.normal(); // leaves the pair's second value cached
      const saved = rng.state();
      expect(saved[4]).to.equal(1);
      const expected = [rng.normal(), rng.normal(), rng.uniform(), rng.int(1000), rng.normal()];
      const resumed = Rng.fromState(JSON.parse(JSON.stringify(saved)) as number[]);
      expect([resumed.normal(), resumed.normal(), resumed.uniform(), resumed.int(1000), resumed.normal()]).to.deep.equal(expected);
    });

    it('resumes without a cached value', () => {
      const rng = new Rng(41);
      rng.normal();
      rng.normal();
      const saved = rng.state();
      expect(saved[4]).to.equal(0);
      const resumed = Rng.fromState(saved);
      expect(draws(5, () => resumed.normal())).to.deep.equal(draws(5, () => rng.normal()));
    });

    it('does not share state with the saved copy', () => {
      const rng = new Rng(42);
      const saved = rng.state();
      rng.uniform();
      expect(Rng.fromState(saved).state()).to.deep.equal(new Rng(42).state());
    });

    it('rejects malformed states', () => {
      expect(() => Rng.fromState([1, 2, 3])).to.throw('rng state must have 6 numbers');
      expect(() => Rng.fromState([1, 2, 3, 2 ** 32, 0, 0])).to.throw('unsigned 32-bit');
      expect(() => Rng.fromState([0, 0, 0, 0, 0, 0])).to.throw('must not all be zero');
      expect(() => Rng.fromState([1, 2, 3, 4, 2, 0])).to.throw('cached normal');
      expect(() => Rng.fromState([1, 2, 3, 4, 1, NaN])).to.throw('cached normal');
    });
  });
});
