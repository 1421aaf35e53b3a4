// --help for the scripts under scripts/: each one's opening comment says what it measures and
// how to run it, so that comment is its usage.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** When the command line has --help or -h, prints the opening comment of the script at
 * `scriptUrl` (its import.meta.url) and exits 0. */
export function usageOnHelp(scriptUrl: string): void {
  if (!process.argv.slice(2).some((arg) => arg === '--help' || arg === '-h')) return;
  const header = /^(?:\/\/.*\n)+/.exec(readFileSync(fileURLToPath(scriptUrl), 'utf8'))?.[0] ?? '';
  console.log(header.replace(/^\/\/ ?/gm, '').trim());
  process.exit(0);
}
