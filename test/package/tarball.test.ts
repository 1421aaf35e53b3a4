// glow-onnx as its users get it: `npm pack`, then a fresh consumer project in a temporary folder
// outside the repository installs the tarball with npm and runs the README's examples
// (examples/), type-checks a strict TypeScript consumer, runs the command from node_modules/.bin
// and runs an esbuild bundle of a browser app in Chromium.
//
// Offline: the consumer's dependencies (the tarball's own and the onnxruntime peers) are the
// packages already installed in this repository, given to npm as local folders, so nothing is
// downloaded and the test does not depend on what npm's cache holds.

import { expect } from 'chai';
import { build } from 'esbuild';
import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Browser } from 'playwright-core';
import { ORT_FILES, repoRoot } from '../../scripts/web-build.js';
import { serveStatic, StaticServer } from '../../scripts/web-serve.js';
import { sampleEps } from '../../src/runtime/generate.js';
import { loadGlowRuntime } from '../../src/runtime/node.js';
import { SHIPPED_MODEL } from '../../src/runtime/shipped.js';
import { maxAbsDiff } from '../helpers.js';
import { launchChromium } from '../../scripts/chromium.js';

/** The README's bound for browser samples against onnxruntime-node's CPU provider. */
const TOLERANCE = 1e-5;
/** The packed size the README records, with room to grow; a tarball past it has picked up
 * files it should not ship. */
const MAX_TARBALL_BYTES = 9e6;

interface Packed {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string }[];
}

function run(command: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: 120_000 });
  if (result.error) throw result.error;
  return result;
}

/** stdout of a command that must succeed; its output in the failure message otherwise. */
function succeed(command: string, args: string[], cwd: string): string {
  const result = run(command, args, cwd);
  expect(result.status, `${command} ${args.join(' ')}:\n${result.stdout}\n${result.stderr}`).to.equal(0);
  return result.stdout;
}

describe('the packed tarball in a fresh consumer project', function () {
  this.timeout(180_000);
  const root = repoRoot();
  const modules = join(root, 'node_modules');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  let tmp: string;
  let consumer: string;
  let packed: Packed;

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'glow-onnx-pack-'));
    consumer = join(tmp, 'consumer');
    mkdirSync(consumer);
    // dist/ is built by `npm test`'s pretest; prepack would build it again.
    [packed] = JSON.parse(succeed('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], root)) as Packed[];
    install(consumer, [...Object.keys(pkg.peerDependencies), '@types/node']);
    for (const file of ['node.mjs', 'builder.mjs', 'consumer.ts', 'web-app.ts']) copyFileSync(join(root, 'examples', file), join(consumer, file));
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** A project in `dir` that installs the tarball and these of the repository's packages. */
  function install(dir: string, packages: string[]): void {
    const local = (name: string) => `file:${join(modules, name)}`;
    writeFileSync(join(dir, 'package.json'), JSON.stringify({
      name: 'consumer',
      private: true,
      type: 'module',
      dependencies: { 'glow-onnx': `file:${join(tmp, packed.filename)}`, ...Object.fromEntries(packages.map((name) => [name, local(name)])) },
      overrides: Object.fromEntries(Object.keys(pkg.dependencies).map((name) => [name, local(name)])),
    }, null, 2));
    succeed('npm', ['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], dir);
  }

  it('a browser project (glow-onnx with onnxruntime-web) gets no onnxruntime-node, and the command says what to install', () => {
    const browserOnly = join(tmp, 'browser-only');
    mkdirSync(browserOnly);
    install(browserOnly, ['onnxruntime-web']);
    expect(existsSync(join(browserOnly, 'node_modules', 'onnxruntime-web')), 'onnxruntime-web installed').to.equal(true);
    expect(existsSync(join(browserOnly, 'node_modules', 'onnxruntime-node')), 'onnxruntime-node installed').to.equal(false);
    const result = run('npx', ['--no-install', 'glow-onnx', 'sample', '--out', 'samples.png'], browserOnly);
    expect(result.status).to.equal(1);
    expect(result.stderr).to.equal('glow-onnx: the command runs on onnxruntime-node, which is not installed: npm install onnxruntime-node\n');
  });

  it('holds the entry points with declarations and source maps, the shipped model, README, LICENSE and CHANGELOG, and no tests', () => {
    console.log(`      ${packed.filename}: ${(packed.size / 1e6).toFixed(2)} MB packed, ${(packed.unpackedSize / 1e6).toFixed(2)} MB unpacked, ${packed.files.length} files`);
    const files = packed.files.map((f) => f.path);
    for (const entry of ['dist/src/index', 'dist/src/web/index', 'dist/src/builder/index']) {
      expect(files).to.include.members([`${entry}.js`, `${entry}.d.ts`, `${entry}.js.map`]);
    }
    expect(files).to.include.members(['README.md', 'LICENSE', 'CHANGELOG.md', 'package.json', 'models/mnist/glow.json', 'models/mnist/encode.onnx', 'models/mnist/decode.onnx',
      'models/mnist-stable/glow.json', 'models/mnist-stable/encode.onnx', 'models/mnist-stable/decode.onnx']);
    expect(files.filter((f) => /^dist\/(test|scripts|web)\/|^src\/|^test\//.test(f))).to.deep.equal([]);
    expect(packed.size).to.be.below(MAX_TARBALL_BYTES);
  });

  it('README shows the examples the consumer runs, as they are', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    for (const file of ['node.mjs', 'builder.mjs', 'web-app.ts']) {
      expect(readme.includes(readFileSync(join(root, 'examples', file), 'utf8')), `README.md lacks examples/${file} as it is`).to.equal(true);
    }
  });

  it('the Node example samples, encodes and decodes the shipped model', () => {
    const out = JSON.parse(succeed('node', ['node.mjs'], consumer));
    expect(out.provider).to.equal('cpu');
    expect(out.bitsPerDim).to.have.length(4);
    for (const b of out.bitsPerDim) expect(b).to.be.within(0, 8);
    expect(out.roundTrips).to.equal(true);
    expect(out.samePixels).to.equal(true);
  });

  it('the builder example builds and runs a two-op graph', () => {
    // relu([1, 2, 3] * [2, -1, 0.5]) and relu([-1, -2, -3] * [2, -1, 0.5]).
    expect(JSON.parse(succeed('node', ['builder.mjs'], consumer))).to.deep.equal({ dims: [2, 3], y: [2, 0, 1.5, 0, 2, 0] });
  });

  it('a strict TypeScript consumer of all three entries type-checks, and its wrong calls do not', () => {
    writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM', 'DOM.Iterable'],
        types: ['node'], noEmit: true, skipLibCheck: true,
      },
      files: ['consumer.ts', 'web-app.ts'],
    }));
    // Each wrong call carries @ts-expect-error: a declaration too loose to reject it fails the check.
    succeed('node', [join(modules, 'typescript', 'bin', 'tsc'), '-p', '.'], consumer);
  });

  it('npx glow-onnx sample writes a PNG from the installed package', () => {
    succeed('npx', ['--no-install', 'glow-onnx', 'sample', '--n', '4', '--out', 'samples.png'], consumer);
    expect([...readFileSync(join(consumer, 'samples.png')).subarray(0, 8)]).to.deep.equal([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  });

  describe('a browser app bundled by esbuild from glow-onnx/web', () => {
    let site: string;
    let server: StaticServer;
    let browser: Browser;
    let expected: Float32Array;

    before(async () => {
      site = join(tmp, 'site');
      await build({
        entryPoints: [join(consumer, 'web-app.ts')], outfile: join(site, 'app.js'), absWorkingDir: consumer,
        bundle: true, format: 'esm', platform: 'browser', target: 'es2022', logLevel: 'silent',
      });
      mkdirSync(join(site, 'ort'));
      for (const file of ORT_FILES) copyFileSync(join(consumer, 'node_modules', 'onnxruntime-web', 'dist', file), join(site, 'ort', file));
      writeFileSync(join(site, 'index.html'), '<!doctype html><meta charset="utf-8"><script type="module" src="app.js"></script>\n');
      cpSync(join(consumer, 'node_modules', 'glow-onnx', 'models', 'mnist'), join(site, 'model'), { recursive: true });
      server = await serveStatic({ root: site });
      browser = await launchChromium();
      const { model, config } = await loadGlowRuntime(SHIPPED_MODEL, { executionProviders: ['cpu'] });
      expected = await model.decode(sampleEps(config, 4, 1234), 0.7);
      await model.release();
    });

    after(async () => {
      await browser?.close();
      await server?.close();
    });

    for (const [query, backend] of [['?backend=wasm', 'wasm'], ['', 'webgpu']]) {
      it(`runs on ${backend} and samples what onnxruntime-node's CPU provider does for the same seed`, async () => {
        const page = await browser.newPage();
        // An app that throws fails the test now, not when the wait for its result times out.
        const failed = new Promise<never>((_, reject) => page.on('pageerror', (e) => reject(new Error(`the app failed: ${e.message}`))));
        failed.catch(() => {});
        try {
          const started = Date.now();
          await page.goto(`${server.url}${query}`);
          const done = page.waitForFunction(() => (window as unknown as { glowResult?: unknown }).glowResult, undefined, { timeout: 150_000 });
          const result = (await (await Promise.race([done, failed])).jsonValue()) as { backend: string; x: number[] };
          const diff = maxAbsDiff(Float32Array.from(result.x), expected);
          console.log(`      ${result.backend}: 4 samples after ${Date.now() - started} ms, max |dx| vs node cpu ${diff.toExponential(2)}`);
          expect(result.backend).to.equal(backend);
          expect(diff).to.be.at.most(TOLERANCE);
          expect(await page.locator('canvas').count()).to.equal(4);
        } finally {
          await page.close();
        }
      });
    }
  });
});
