// The README's command list is the command line's own usage text (src/cli/usage.ts), written into
// it by `npm run docs:cli`: a flag added to the usage text and not to the README fails here.

import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readmeUsageBlock, usageBlock } from '../../scripts/docs-cli.js';

const README = fileURLToPath(new URL('../../../README.md', import.meta.url));

describe('README command list (npm run docs:cli)', () => {
  it('is the usage text glow-onnx --help prints, verbatim', () => {
    const readme = readFileSync(README, 'utf8');
    expect(readmeUsageBlock(readme), 'README.md\'s command list is stale: run npm run docs:cli').to.equal(usageBlock());
  });

  it('is found between its markers, or the test says they are gone', () => {
    expect(() => readmeUsageBlock('# a README without the markers')).to.throw(/lost the markers of its command list/);
  });
});
