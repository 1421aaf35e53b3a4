// Writes the README's command list from the command line's own usage text (src/cli/usage.ts), so
// that the two cannot drift apart: the block between the two markers below is `glow-onnx --help`,
// verbatim. test/cli/usage-docs.test.ts fails when the README's block is not what this writes.
//
//   node dist/scripts/docs-cli.js [--check]      (npm run docs:cli; --check: exit 1 if stale)

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { USAGE } from '../src/cli/usage.js';
import { writeFileAtomic } from '../src/io/files.js';
import { usageOnHelp } from '../support/script-usage.js';

export const BEGIN = '<!-- glow-onnx --help, written by `npm run docs:cli` from src/cli/usage.ts: edit it there -->';
export const END = '<!-- end of glow-onnx --help -->';

/** The README's command block for a usage text. */
export function usageBlock(usage: string = USAGE): string {
  return `${BEGIN}\n\n\`\`\`text\n${usage}\n\`\`\`\n\n${END}`;
}

/** The README's command block as it stands (markers included). */
export function readmeUsageBlock(readme: string): string {
  const begin = readme.indexOf(BEGIN);
  const end = readme.indexOf(END, begin);
  if (begin < 0 || end < 0) throw new Error(`README.md has lost the markers of its command list (${BEGIN} ... ${END})`);
  return readme.slice(begin, end + END.length);
}

const README = fileURLToPath(new URL('../../README.md', import.meta.url));

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  usageOnHelp(import.meta.url);
  const readme = readFileSync(README, 'utf8');
  const current = readmeUsageBlock(readme);
  const wanted = usageBlock();
  if (current === wanted) {
    console.log('README.md: the command list is the usage text');
  } else if (process.argv.includes('--check')) {
    console.error('README.md: the command list differs from src/cli/usage.ts (npm run docs:cli rewrites it)');
    process.exitCode = 1;
  } else {
    writeFileAtomic(README, readme.replace(current, () => wanted));
    console.log('README.md: command list rewritten from src/cli/usage.ts');
  }
}
