// The README's runtime table is scripts/compat-table.ts's output: this reruns every row (the
// WebGPU ones on SwiftShader, the browser ones in headless Chromium) and checks the README's rows
// against it: the same runtimes, versions, yes/no cells and export profiles, and errors within a
// small factor of the README's figures (float32 kernels round differently on other CPUs; the
// float64 reference does not).

import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatError, formatTable, measure, parseTable, Row, ROW_KEYS } from '../../scripts/compat-table.js';

const README = fileURLToPath(new URL('../../../README.md', import.meta.url));
/** How far above the README's figure a rerun may land (another CPU's float32 rounding). */
const FACTOR = 4;

function readmeTable(): string[][] {
  const text = readFileSync(README, 'utf8');
  const m = /<!-- compat-table:begin -->\n([\s\S]*?)\n<!-- compat-table:end -->/.exec(text);
  if (!m) throw new Error('README.md has no compat-table markers');
  return parseTable(m[1]);
}

describe('the README runtime table is what scripts/compat-table.ts measures', function () {
  this.timeout(600_000);

  it('same rows, versions and yes/no cells; errors within a small factor of the README figures', async () => {
    const rows: Row[] = await measure(ROW_KEYS);
    for (const r of rows) expect(r.failure, r.runtime).to.equal(undefined);
    const readme = readmeTable();
    const measured = parseTable(formatTable(rows)).slice(0, rows.length);
    for (const cells of measured) {
      const row = readme.find((c) => c[0] === cells[0]);
      expect(row, `README row for ${cells[0]}`).to.not.equal(undefined);
      // runtime, version, encode, decode, export profile: as measured.
      expect([0, 1, 2, 3, 5].map((i) => row![i]), cells[0]).to.deep.equal([0, 1, 2, 3, 5].map((i) => cells[i]));
      const error = rows.find((r) => r.runtime === cells[0])!.error;
      if (error === undefined) expect(row![4]).to.equal(formatError(undefined));
      else expect(error, `${cells[0]}: measured ${error.toExponential(2)}, README ${row![4]}`).to.be.at.most(FACTOR * Number(row![4]));
    }
    // The README lists nothing the script does not print: the measured rows and the untested
    // runtimes, in the script's order.
    expect(readme.map((c) => c[0])).to.deep.equal(parseTable(formatTable(rows)).map((c) => c[0]));
    for (const c of readme.filter((c) => c[2] === 'untested')) expect(c).to.deep.equal([c[0], '—', 'untested', 'untested', '—', '—']);
  });
});
