// One-hot class rows have one definition (oneHotRows); its callers differ only in what a label
// the model has no class for becomes: an error for generation, a row of zeros for training data
// and for images read by the CLI (unlabelled images, or labels past the model's classes).

import { expect } from 'chai';
import { oneHot } from '../../src/cli/data.js';
import { oneHotRows } from '../../src/runtime/generate.js';
import { labelsOf } from '../../src/train/run.js';

describe('one-hot class rows', () => {
  it('oneHotRows: row i of class labels[i]; an unknown class is an error, or a zero row when asked', () => {
    expect(Array.from(oneHotRows(3, [2, 0]))).to.deep.equal([0, 0, 1, 1, 0, 0]);
    expect(() => oneHotRows(3, [3])).to.throw('class 3 is not in 0..2');
    expect(() => oneHotRows(3, [undefined])).to.throw('is not in 0..2');
    expect(Array.from(oneHotRows(3, [3, undefined, 1], true))).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 1, 0]);
  });

  it('labelsOf: rows in epoch order, zeros for a label past the classes', () => {
    const data = { pixels: new Uint8Array(4), labels: Uint8Array.of(0, 1, 5, 2), count: 4 };
    expect(Array.from(labelsOf(data, 1, 3, 3, [3, 2, 1, 0])!)).to.deep.equal([0, 0, 0, 0, 1, 0, 1, 0, 0]);
    expect(labelsOf(data, 0, 2, 0)).to.equal(undefined);
  });

  it('the CLI: zero rows for unlabelled images and labels past the classes', () => {
    expect(Array.from(oneHot(Uint8Array.of(1, 7), 3, 2)!)).to.deep.equal([0, 1, 0, 0, 0, 0]);
    expect(Array.from(oneHot(undefined, 2, 2)!)).to.deep.equal([0, 0, 0, 0]);
    expect(oneHot(undefined, 2, 0)).to.equal(undefined);
  });
});
