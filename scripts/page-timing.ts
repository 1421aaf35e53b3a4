// The page's time to its first sample grid (64 samples of the shipped model), in headless
// Chromium, on wasm and on WebGPU, served as a plain static host does (no COOP/COEP: wasm on one
// thread) and as npm run web serves it (cross-origin isolated: wasm on every core). Each case is
// a fresh browser context, timed from navigation to the first drawn grid.
//
//   npm run build && node dist/scripts/page-timing.js [--runs N]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.js';
import { buildWeb } from './web-build.js';
import { serveStatic } from './web-serve.js';
import { usageOnHelp } from '../support/script-usage.js';

async function main(runs: number): Promise<void> {
  const site = mkdtempSync(join(tmpdir(), 'glow-page-timing-'));
  try {
    await buildWeb({ outDir: site });
    const browser = await launchChromium();
    try {
      for (const isolated of [false, true]) {
        const server = await serveStatic({ root: site, isolated });
        try {
          for (const backend of ['wasm', 'webgpu']) {
            const times: number[] = [];
            for (let r = 0; r < runs; r++) {
              const context = await browser.newContext();
              const page = await context.newPage();
              const started = Date.now();
              await page.goto(`${server.url}?backend=${backend}`);
              await page.waitForFunction(() => (window as unknown as { glowTest: { gridRenders(): number } }).glowTest.gridRenders() > 0, undefined, { timeout: 300_000 });
              times.push(Date.now() - started);
              const check = await page.evaluate(() => ({ isolated: crossOriginIsolated, cores: navigator.hardwareConcurrency }));
              if (check.isolated !== isolated) throw new Error(`the page's crossOriginIsolated is ${check.isolated}, expected ${isolated}`);
              await context.close();
              if (r === 0) console.log(`${isolated ? 'COOP/COEP' : 'plain host'} ${backend}: ${check.cores} cores reported`);
            }
            console.log(`${isolated ? 'COOP/COEP' : 'plain host'} ${backend}: first grid after ${times.join(', ')} ms`);
          }
        } finally {
          await server.close();
        }
      }
    } finally {
      await browser.close();
    }
  } finally {
    rmSync(site, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  usageOnHelp(import.meta.url);
  const at = process.argv.indexOf('--runs');
  const runs = at >= 0 ? Number(process.argv[at + 1]) : 2;
  if (!Number.isInteger(runs) || runs < 1) {
    console.error('usage: node dist/scripts/page-timing.js [--runs N]');
    process.exit(2);
  }
  main(runs).catch((e) => {
    console.error(`page timing failed: ${(e as Error).message}`);
    process.exit(1);
  });
}
