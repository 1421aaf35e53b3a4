// The commands that run an exported model, as processes on a temp folder.

import { expect } from 'chai';
import { Jimp } from 'jimp';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CONFIG } from '../../src/glow/config.js';
import { exportModel } from '../../src/glow/export.js';
import { writeFilesAtomic } from '../../src/io/files.js';
import { parseLatents } from '../../src/runtime/latents.js';
import { loadMnist } from '../../src/runtime/mnist.js';
import { randomParams } from '../../support/random-params.js';
import { cli, maxAbsDiff, writeGrayPng } from '../helpers.js';

function ok(r: ReturnType<typeof cli>): string {
  expect(r.code, r.stderr).to.equal(0);
  return r.stdout;
}

/** The cells of a PNG grid of 28x28 images drawn at scale 2 with 1-pixel gaps (and a 12-pixel
 * caption band above each when captioned), as 8-bit pixels: what the CLI's grids hold. */
async function gridCells(file: string, count: number, columns: number, captioned: boolean): Promise<number[][]> {
  const { bitmap } = await Jimp.read(file);
  const [cellW, cellH, top] = [57, 57 + (captioned ? 12 : 0), captioned ? 12 : 0];
  expect([bitmap.width, bitmap.height], file).to.deep.equal([columns * cellW + 1, Math.ceil(count / columns) * cellH + 1]);
  return Array.from({ length: count }, (_, i) => {
    const [x0, y0] = [(i % columns) * cellW + 1, Math.floor(i / columns) * cellH + 1 + top];
    return Array.from({ length: 784 }, (_, p) => bitmap.data[4 * ((y0 + 2 * Math.floor(p / 28)) * bitmap.width + x0 + 2 * (p % 28))]);
  });
}

function fails(r: ReturnType<typeof cli>, code: number, fragment: string): void {
  expect(r.code, r.stderr).to.equal(code);
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('running on'));
  expect(lines.at(-1)).to.contain(fragment);
}

describe('glow-onnx run commands', function () {
  this.timeout(120000);
  let dir: string;
  let model: string;
  let digits: string;
  const config = { ...DEFAULT_CONFIG, K: 1, hiddenChannels: 8 };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'glow-run-'));
    model = join(dir, 'model');
    writeFilesAtomic(model, { ...exportModel({ config, params: randomParams(config, 3, 0.5) }) });
    digits = join(dir, 'digits');
    mkdirSync(digits);
    const m = loadMnist('test', 3);
    for (let i = 0; i < 3; i++) {
      await writeGrayPng(join(digits, `d${i}.png`), m.pixels.subarray(i * 784, (i + 1) * 784), 28);
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('sample writes a deterministic PNG grid for a seed', async () => {
    const [a, b, c] = ['a.png', 'b.png', 'c.png'].map((f) => join(dir, f));
    ok(cli('sample', '--model', model, '--n', '6', '--columns', '3', '--seed', '5', '--out', a));
    ok(cli('sample', '--model', model, '--n', '6', '--columns', '3', '--seed', '5', '--out', b));
    ok(cli('sample', '--model', model, '--n', '6', '--columns', '3', '--seed', '6', '--out', c));
    expect(Buffer.compare(readFileSync(a), readFileSync(b))).to.equal(0);
    expect(Buffer.compare(readFileSync(a), readFileSync(c))).to.not.equal(0);
    const grid = await Jimp.read(a);
    // 3 x 2 cells of 28 px scaled x2, with 1 px gaps.
    expect([grid.bitmap.width, grid.bitmap.height]).to.deep.equal([3 * 57 + 1, 2 * 57 + 1]);
  });

  it('reconstruct, interpolate, encode/decode, direction, manipulate, eval: what each writes', async () => {
    const out = ok(cli('reconstruct', '--model', model, digits, '--out', join(dir, 'r.png')));
    expect(Number(/= (\S+),/.exec(out)![1])).to.be.below(1e-4);
    expect(out).to.contain(' 0 of 2352 pixels change level');
    // Pairs (image, decoded), captioned: the decoded digits are cells 1, 3 and 5.
    const reconstructed = (await gridCells(join(dir, 'r.png'), 6, 2, true)).filter((_, i) => i % 2 === 1);

    ok(cli('encode', '--model', model, digits, '--out', join(dir, 'l.safetensors')));
    const encoded = parseLatents(readFileSync(join(dir, 'l.safetensors')), 'l.safetensors', config);
    expect(encoded.n).to.equal(3);
    expect(JSON.parse(encoded.metadata.images)).to.deep.equal(['d0.png', 'd1.png', 'd2.png']);
    ok(cli('decode', '--model', model, join(dir, 'l.safetensors'), '--out', join(dir, 'd.png')));
    expect(await gridCells(join(dir, 'd.png'), 3, 2, false), 'the latents decode to the reconstructions').to.deep.equal(reconstructed);

    ok(cli('interpolate', '--model', model, join(digits, 'd0.png'), join(digits, 'd1.png'), '--steps', '4', '--out', join(dir, 'i.png')));
    const path = await gridCells(join(dir, 'i.png'), 4, 4, true);
    expect([path[0], path[3]], 'the ends of the path are the two reconstructions').to.deep.equal([reconstructed[0], reconstructed[1]]);
    expect(path[1], 'the path leaves its start').to.not.deep.equal(path[0]);

    // The mean latent of the images labelled 1 minus the mean of those labelled 0.
    const labels = join(dir, 'labels.txt');
    writeFileSync(labels, 'd0.png 1\nd1.png 0\nd2.png 0\n');
    ok(cli('direction', '--model', model, '--images', digits, '--labels', labels, '--out', join(dir, 'custom.safetensors')));
    const custom = parseLatents(readFileSync(join(dir, 'custom.safetensors')), 'custom.safetensors', config);
    expect(custom.n).to.equal(1);
    custom.latents.forEach((d, l) => {
      const size = d.length;
      const e = encoded.latents[l];
      const expected = Array.from(d, (_, k) => e[k] - (e[size + k] + e[2 * size + k]) / 2);
      expect(maxAbsDiff(d, expected), `eps_${l + 1}`).to.be.below(1e-6);
      expect(Math.max(...Array.from(d, Math.abs)), `eps_${l + 1} is not all zeros`).to.be.above(0.1);
    });
    ok(cli('direction', '--model', model, '--mnist-digit', '1', '--limit', '200', '--out', join(dir, 'one.safetensors')));
    expect(parseLatents(readFileSync(join(dir, 'one.safetensors')), 'one.safetensors', config).n).to.equal(1);

    ok(cli('manipulate', '--model', model, join(digits, 'd0.png'), '--direction', join(dir, 'custom.safetensors'), '--alpha=-1..1', '--steps', '3', '--out', join(dir, 'm.png')));
    const manipulated = await gridCells(join(dir, 'm.png'), 3, 3, true);
    expect(manipulated[1], 'alpha 0 is the reconstruction').to.deep.equal(reconstructed[0]);
    // d0 + (d0 - mean(d1, d2)) and d0 - (d0 - mean(d1, d2)): away from d0 both ways.
    expect(manipulated[0]).to.not.deep.equal(reconstructed[0]);
    expect(manipulated[2]).to.not.deep.equal(reconstructed[0]);

    const evaluation = ok(cli('eval', '--model', model, '--limit', '100'));
    expect(evaluation).to.match(/100 images of mnist-test: \d+\.\d{4} ± \d+\.\d{4} bits\/dim/);
  });

  it('execution providers: fallback is reported, strict mode refuses it', () => {
    const r = cli('sample', '--model', model, '--n', '2', '--ep', 'cuda,cpu', '--out', join(dir, 'fallback.png'));
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.contain('note: cuda unavailable');
    expect(r.stderr).to.contain('running on cpu');
    fails(cli('sample', '--model', model, '--ep', 'cuda,cpu', '--strict-ep', '--out', join(dir, 'strict.png')), 1, 'ONNXRUNTIME_NODE_INSTALL=cuda12');
    fails(cli('sample', '--model', model, '--ep', 'tpu', '--out', join(dir, 'x.png')), 2, '--ep tpu is not a provider');
    expect(existsSync(join(dir, 'strict.png'))).to.equal(false);
  });

  it('verify passes an invertible model, names the images a saturated coupling cannot invert, and passes them with a scale floor', () => {
    const seed1 = ok(cli('verify', model, '--limit', '8'));
    expect(seed1).to.match(/^8 images of mnist-test: bits\/dim \S+ ± \S+, round-trip max \|x - decode\(encode\(x\)\)\| = \S+ \(per image: median \S+, 99th percentile \S+, 99\.9th \S+\)$/m);
    // --seed draws other dequantisation noise: other inputs, other bits/dim.
    const bitsPerDim = (out: string) => /bits\/dim (\S+)/.exec(out)![1];
    expect(bitsPerDim(ok(cli('verify', model, '--limit', '8', '--seed', '2')))).to.not.equal(bitsPerDim(seed1));
    // A coupling scale of sigmoid(-198) underflows float32: encode multiplies that half by 0, so
    // no decode can recover it, and verify must say which images failed rather than pass.
    const config = { ...DEFAULT_CONFIG, K: 1, hiddenChannels: 8 };
    const params = randomParams(config, 3, 0.5);
    const bias = params.get('flow.layers.1.block.4.conv.bias')!;
    bias.data.fill(-200);
    const saturated = join(dir, 'saturated');
    writeFilesAtomic(saturated, { ...exportModel({ config, params }) });
    fails(cli('verify', saturated, '--limit', '8'), 1, '8 of 8 images do not round-trip within the float32 tolerance 0.001: mnist-test[0] (');
    // --max-failing N: up to N misses are named on stderr without failing; one more fails.
    fails(cli('verify', saturated, '--limit', '8', '--max-failing', '7'), 1, '(at most 7 allowed)');
    const allowed = cli('verify', saturated, '--limit', '8', '--max-failing', '8');
    expect(allowed.code, allowed.stderr).to.equal(0);
    expect(allowed.stderr).to.contain('note: 8 of 8 images do not round-trip within the float32 tolerance 0.001: mnist-test[0] (');
    // The same weights with a scale floor: decode divides by 0.1, not 0, and inverts.
    const floored = join(dir, 'floored');
    writeFilesAtomic(floored, { ...exportModel({ config: { ...config, scaleFloor: 0.1 }, params }) });
    ok(cli('verify', floored, '--limit', '8'));
  });

  it('bad input: one line, nonzero exit, nothing written', () => {
    const never = join(dir, 'never.png');
    fails(cli('sample', '--model', model, '--temperature=-1', '--out', never), 2, '--temperature must be a finite number >= 0');
    fails(cli('sample', '--model', model, '--temperature', '-1', '--out', never), 2, 'write --name=VALUE');
    fails(cli('sample', '--model', model, '--temperature', 'warm', '--out', never), 2, '--temperature must be a finite number >= 0');
    fails(cli('sample', '--model', join(dir, 'missing'), '--out', never), 1, 'ENOENT');
    fails(cli('sample', '--model', model, '--class', '2', '--out', never), 2, '--class needs a class-conditional model');
    fails(cli('manipulate', '--model', model, join(digits, 'd0.png'), '--out', never), 2, 'exactly one of --direction FILE and --attribute LABEL');
    fails(cli('reconstruct', '--model', model, join(dir, 'nothing.png'), '--out', never), 1, 'ENOENT');
    writeFileSync(join(dir, 'garbage.safetensors'), 'garbage');
    fails(cli('decode', '--model', model, join(dir, 'garbage.safetensors'), '--out', never), 1, 'garbage.safetensors');
    fails(cli('direction', '--model', model, '--images', digits, '--labels', join(dir, 'nolabels.txt'), '--out', never), 1, 'ENOENT');
    expect(existsSync(never)).to.equal(false);
  });
});
