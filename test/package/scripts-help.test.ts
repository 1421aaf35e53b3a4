// Every runnable script under scripts/ answers --help with its usage and does nothing else: no
// benchmark starts, no file is rewritten, no server waits for requests.

import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPTS = fileURLToPath(new URL('../../scripts/', import.meta.url));
/** Modules the scripts import, with no command line of their own. */
const LIBRARIES = ['ab-timing.js', 'browser-ort.js', 'chromium.js', 'peak-memory.js'];

describe('scripts answer --help', function () {
  this.timeout(120_000);
  const scripts = readdirSync(SCRIPTS).filter((f) => f.endsWith('.js') && !LIBRARIES.includes(f));

  it('finds the scripts', () => {
    expect(scripts).to.include.members(['bench.js', 'compat-table.js', 'fp16-parity.js', 'web-serve.js']);
  });

  for (const script of scripts) {
    it(script, () => {
      const r = spawnSync(process.execPath, [join(SCRIPTS, script), '--help'], { encoding: 'utf8', timeout: 30_000 });
      expect(r.status, `${script} --help: ${r.stderr}`).to.equal(0);
      expect(r.stdout.trim(), `${script} --help printed nothing`).to.not.equal('');
      expect(r.stdout, script).to.match(/node dist\/scripts\/|npm run|usage/i);
    });
  }
});
