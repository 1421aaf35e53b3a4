// Debian's Chromium as the browser tests and scripts/page-timing.ts launch it.

import { existsSync } from 'node:fs';
import { Browser, chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
/** What makes WebGPU available in headless Debian Chromium here (navigator.gpu.requestAdapter()
 * returns SwiftShader's adapter): --enable-unsafe-webgpu; --no-sandbox because CI runs as root.
 * playwright adds --headless (the new headless mode in Chromium 156). */
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--no-sandbox',
  '--disable-gpu-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  // Containers often have a small /dev/shm.
  '--disable-dev-shm-usage',
];

/** Chromium with these arguments (all of CHROMIUM_ARGS by default), or a one-line error saying
 * how to install it. */
export function launchChromium(args: readonly string[] = CHROMIUM_ARGS): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser tests and scripts need Debian's Chromium; install it with \`apt-get install chromium\``);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: [...args], timeout: 60_000 });
}
