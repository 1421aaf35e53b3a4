// Builds the browser page (web/) into a static folder that any static host can serve:
//   index.html, style.css, main.js + worker.js (esbuild bundles, with source maps),
//   ort/ (onnxruntime-web's JSEP .wasm and its loader .mjs), images/ (MNIST test digits as PNGs
//   + index.json) and models/ (a copy of the repository's models/ folder when it exists).
// Every URL in the page is relative, so the folder works under any path.
//
//   node dist/scripts/web-build.js [--out DIR]      (npm run build:web; default dist/web)

import { build } from 'esbuild';
import { Jimp } from 'jimp';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadMnist } from '../src/runtime/mnist.js';
import { usageOnHelp } from '../support/script-usage.js';

/** onnxruntime-web files the plain `onnxruntime-web` import (JSEP: WebGPU + wasm) loads at run time. */
export const ORT_FILES = ['ort-wasm-simd-threaded.jsep.wasm', 'ort-wasm-simd-threaded.jsep.mjs'];

export interface WebBuildOptions {
  /** Output folder; emptied first. Default: dist/web in the repository. */
  outDir?: string;
  /** Minify the bundles (default true). */
  minify?: boolean;
  /** Copy the repository's models/ folder when it exists (default true). */
  copyModels?: boolean;
  /** MNIST test digits written as built-in images (default 10: the first of each class). */
  images?: number;
  log?: (line: string) => void;
}

export interface WebBuildResult {
  outDir: string;
  files: string[];
  modelsCopied: boolean;
  ms: number;
}

/** The repository root: the nearest folder above this file with glow-onnx's package.json. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'glow-onnx') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the glow-onnx repository root above the build script');
    dir = up;
  }
}

async function writeDigits(outDir: string, count: number): Promise<void> {
  const mnist = loadMnist('test', 1000);
  const picked: number[] = [];
  // The first test digit of each class, then further ones in order.
  for (let label = 0; label < 10 && picked.length < count; label++) {
    const i = Array.from(mnist.labels).indexOf(label);
    if (i >= 0) picked.push(i);
  }
  for (let i = 0; picked.length < count && i < mnist.count; i++) if (!picked.includes(i)) picked.push(i);
  const dir = join(outDir, 'images');
  mkdirSync(dir, { recursive: true });
  const { width, height } = mnist;
  const index = [];
  for (const i of picked) {
    const image = new Jimp({ width, height, color: 0x000000ff });
    for (let p = 0; p < width * height; p++) {
      const v = mnist.pixels[i * width * height + p];
      image.bitmap.data.set([v, v, v, 255], 4 * p);
    }
    const file = `mnist-test-${i}.png`;
    writeFileSync(join(dir, file), await image.getBuffer('image/png'));
    index.push({ file, label: mnist.labels[i], name: `MNIST test #${i} (digit ${mnist.labels[i]})` });
  }
  writeFileSync(join(dir, 'index.json'), `${JSON.stringify(index, null, 2)}\n`);
}

export async function buildWeb(options: WebBuildOptions = {}): Promise<WebBuildResult> {
  const started = Date.now();
  const root = repoRoot();
  const outDir = resolve(options.outDir ?? join(root, 'dist', 'web'));
  const log = options.log ?? (() => {});
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });

  await build({
    entryPoints: { main: join(root, 'web', 'main.ts'), worker: join(root, 'web', 'worker.ts') },
    outdir: outDir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022', 'chrome113', 'firefox121', 'safari17'],
    minify: options.minify ?? true,
    sourcemap: 'linked',
    logLevel: 'silent',
    absWorkingDir: root,
  });
  for (const file of ['index.html', 'style.css']) copyFileSync(join(root, 'web', file), join(outDir, file));

  const ortDist = dirname(createRequire(import.meta.url).resolve('onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm', { paths: [root] }));
  mkdirSync(join(outDir, 'ort'), { recursive: true });
  for (const file of ORT_FILES) copyFileSync(join(ortDist, file), join(outDir, 'ort', file));

  await writeDigits(outDir, options.images ?? 10);

  const models = join(root, 'models');
  const modelsCopied = (options.copyModels ?? true) && existsSync(models);
  if (modelsCopied) cpSync(models, join(outDir, 'models'), { recursive: true });
  else log('note: no models/ folder in the repository: the page\'s default model (models/mnist/) will be missing; pick one with ?model=URL or "Open files…"');

  const files = ['index.html', 'style.css', 'main.js', 'worker.js', ...ORT_FILES.map((f) => `ort/${f}`), 'images/index.json'];
  const result = { outDir, files, modelsCopied, ms: Date.now() - started };
  log(`built the page into ${relative(process.cwd(), outDir) || '.'} in ${result.ms} ms${modelsCopied ? ' (with models/)' : ''}`);
  return result;
}

function isMain(): boolean {
  return !!process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
}

if (isMain()) {
  usageOnHelp(import.meta.url);
  const args = process.argv.slice(2);
  const at = args.indexOf('--out');
  const outDir = at >= 0 ? args[at + 1] : undefined;
  if (at >= 0 && !outDir) {
    console.error('usage: node dist/scripts/web-build.js [--out DIR]');
    process.exit(2);
  }
  buildWeb({ outDir, log: (line) => console.error(line) }).catch((e) => {
    console.error(`web build failed: ${(e as Error).message}`);
    process.exit(1);
  });
}
