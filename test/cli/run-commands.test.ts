// The commands that run an exported model, as processes on a temp folder.

import { expect } from 'chai';
import { Jimp } from 'jimp';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CONFIG } from '../../src/glow/config.js';
import { exportModel } from '../../src/glow/export.js';
import { writeFilesAtomic } from '../../src/runtime/files.js';
import { loadMnist } from '../../src/runtime/mnist.js';
import { randomParams } from '../reference/random-params.js';
import { cli } from '../helpers.js';

function ok(r: ReturnType<typeof cli>): string {
  expect(r.code, r.stderr).to.equal(0);
  return r.stdout;
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

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'glow-run-'));
    model = join(dir, 'model');
    const config = { ...DEFAULT_CONFIG, K: 1, hiddenChannels: 8 };
    writeFilesAtomic(model, { ...exportModel({ config, params: randomParams(config, 3, 0.5) }) });
    digits = join(dir, 'digits');
    mkdirSync(digits);
    const m = loadMnist('test', 3);
    for (let i = 0; i < 3; i++) {
      const img = new Jimp({ width: 28, height: 28, color: 0x000000ff });
      for (let p = 0; p < 784; p++) img.bitmap.data.set([m.pixels[i * 784 + p], m.pixels[i * 784 + p], m.pixels[i * 784 + p], 255], 4 * p);
      writeFileSync(join(digits, `d${i}.png`), await img.getBuffer('image/png'));
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

  it('reconstruct, interpolate, encode/decode, direction, manipulate, eval', async () => {
    const out = ok(cli('reconstruct', '--model', model, digits, '--out', join(dir, 'r.png')));
    expect(Number(/= (\S+),/.exec(out)![1])).to.be.below(1e-4);
    expect(out).to.contain(' 0 of 2352 pixels change level');
    ok(cli('interpolate', '--model', model, join(digits, 'd0.png'), join(digits, 'd1.png'), '--steps', '4', '--out', join(dir, 'i.png')));
    expect((await Jimp.read(join(dir, 'i.png'))).bitmap.width).to.equal(4 * 57 + 1);
    ok(cli('encode', '--model', model, digits, '--out', join(dir, 'l.safetensors')));
    ok(cli('decode', '--model', model, join(dir, 'l.safetensors'), '--out', join(dir, 'd.png')));
    ok(cli('direction', '--model', model, '--mnist-digit', '1', '--limit', '200', '--out', join(dir, 'one.safetensors')));
    ok(cli('manipulate', '--model', model, join(digits, 'd0.png'), '--direction', join(dir, 'one.safetensors'), '--alpha=-1..1', '--steps', '3', '--out', join(dir, 'm.png')));
    const labels = join(dir, 'labels.txt');
    writeFileSync(labels, 'd0.png 1\nd1.png 0\nd2.png 0\n');
    ok(cli('direction', '--model', model, '--images', digits, '--labels', labels, '--out', join(dir, 'custom.safetensors')));
    const evaluation = ok(cli('eval', '--model', model, '--limit', '100'));
    expect(evaluation).to.match(/100 images of mnist-test: \d+\.\d{4} ± \d+\.\d{4} bits\/dim/);
    for (const f of ['r.png', 'i.png', 'd.png', 'm.png']) expect(existsSync(join(dir, f)), f).to.equal(true);
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
