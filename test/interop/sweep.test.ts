// The robustness sweep: 200 random valid configs, each exported as a user would (exportModel,
// written to a model directory) in a random variant (opset 13 to 20, folded or not, float32 or
// float16, dynamic or static batch, inline or external data), loaded back with loadGlowRuntime,
// round-tripped in onnxruntime-node, and every file at opset <= 17 checked by onnx's
// check_model(full_check=True) in one python call.

import { expect } from 'chai';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SUPPORTED_OPSETS } from '../../src/builder/graph.js';
import { Coupling, GlowConfig, Permutation, validateConfig } from '../../src/glow/config.js';
import { ExportOptions, exportModel } from '../../src/glow/export.js';
import { writeFilesAtomic } from '../../src/io/files.js';
import { loadGlowRuntime } from '../../src/runtime/node.js';
import { Rng, randomImages, randomOneHot, randomParams, randomShuffles } from '../../support/random-params.js';
import { CHECKER_MAX_OPSET, checkerFailures } from './onnx-checker.js';

const COUNT = 200;

function randomConfig(rng: Rng, index: number): GlowConfig {
  const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)];
  const L = 1 + rng.int(3);
  const f = 2 ** L;
  return validateConfig({
    imageShape: [1 + rng.int(3), f * (1 + rng.int(2)), f * (1 + rng.int(2))],
    K: 1 + rng.int(3),
    L,
    hiddenChannels: 2 + rng.int(7),
    coupling: pick<Coupling>(['affine', 'additive']),
    permutation: (['invconv', 'shuffle', 'reverse'] as Permutation[])[index % 3],
    lu: rng.next() < 0.5,
    learnTop: rng.next() < 0.7,
    numClasses: rng.next() < 0.3 ? 1 + rng.int(4) : 0,
    nBits: 1 + rng.int(8),
    actnormScale: pick([1, 0.5, 2]),
  });
}

function randomVariant(rng: Rng): ExportOptions {
  const fold = rng.next() < 0.8;
  return {
    opset: SUPPORTED_OPSETS[rng.int(SUPPORTED_OPSETS.length)],
    fold,
    // Unfolded float16 graphs are left to fp16.test.ts: onnxruntime logs a warning for every
    // float16 weight computation its CPU constant folding has no kernel for.
    dtype: fold && rng.next() < 0.25 ? 'float16' : 'float32',
    batch: rng.next() < 0.2 ? 1 + rng.int(3) : undefined,
    externalData: rng.next() < 0.2 ? true : 'auto',
  };
}

interface Item {
  config: GlowConfig;
  options: ExportOptions;
  dir: string;
}

describe(`robustness sweep: ${COUNT} random configs exported, checked and round-tripped`, function () {
  this.timeout(120_000);
  const rng = new Rng(20_241_128);
  let root: string;
  const items: Item[] = [];

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'glow-sweep-'));
    for (let i = 0; i < COUNT; i++) {
      const config = randomConfig(rng, i);
      const options = randomVariant(rng);
      const dir = join(root, `m${i}`);
      writeFilesAtomic(dir, { ...exportModel({ config, params: randomParams(config, 500 + i), shuffles: randomShuffles(config, 500 + i) }, options) });
      items.push({ config, options, dir });
    }
  });
  after(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('covers every option and variant', () => {
    const seen = (f: (i: Item) => unknown) => new Set(items.map(f)).size;
    expect(items).to.have.length(COUNT);
    expect(seen((i) => i.config.coupling)).to.equal(2);
    expect(seen((i) => i.config.permutation)).to.equal(3);
    expect(seen((i) => `${i.config.lu}${i.config.learnTop}${i.config.numClasses > 0}`)).to.equal(8);
    expect(seen((i) => i.config.L)).to.equal(3);
    expect(seen((i) => i.options.opset)).to.equal(SUPPORTED_OPSETS.length);
    expect(seen((i) => `${i.options.dtype}${i.options.fold}${i.options.batch !== undefined}${i.options.externalData}`)).to.be.at.least(10);
  });

  it('every model round-trips in onnxruntime-node (float32 within 1e-4, float16 within 2e-2) with finite bits/dim', async () => {
    const failures: string[] = [];
    for (const [i, { config, options, dir }] of items.entries()) {
      const n = options.batch ?? 2;
      const x = Float32Array.from(randomImages(config, n, 900 + i).data);
      const y = config.numClasses ? Float32Array.from(randomOneHot(config, n, 950 + i).data) : undefined;
      const runtime = await loadGlowRuntime(dir);
      try {
        const encoded = await runtime.model.encode(x, [n, ...config.imageShape], y);
        const xr = await runtime.model.decode(encoded.eps, 1, y);
        let error = 0;
        for (let k = 0; k < x.length; k++) error = Math.max(error, Math.abs(x[k] - xr[k]) || (Number.isNaN(xr[k]) ? Infinity : 0));
        // Measured: at most 1.5e-6 (float32) and 3.6e-3 (float16) over this sweep.
        const bound = options.dtype === 'float16' ? 2e-2 : 1e-4;
        if (!(error <= bound) || !encoded.bpd.every(Number.isFinite)) {
          failures.push(`m${i} ${JSON.stringify(options)} ${JSON.stringify(config)}: round trip ${error}, bpd ${encoded.bpd}`);
        }
      } finally {
        await runtime.model.release();
      }
    }
    expect(failures, failures.join('\n')).to.deep.equal([]);
  });

  it(`every file at opset <= ${CHECKER_MAX_OPSET} passes check_model(full_check=True)`, () => {
    const paths = items.filter((i) => i.options.opset! <= CHECKER_MAX_OPSET)
      .flatMap((i) => readdirSync(i.dir).filter((f) => f.endsWith('.onnx')).map((f) => join(i.dir, f)));
    expect(paths.length).to.be.above(COUNT);
    const failures = checkerFailures(paths);
    expect(failures, `${failures.length} of ${paths.length} failed:\n${failures.slice(0, 20).join('\n')}\n`).to.deep.equal([]);
  });
});
