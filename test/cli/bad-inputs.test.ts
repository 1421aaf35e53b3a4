// Bad inputs to the CLI: each must end in one error line on stderr, exit code 2 for a wrong
// command line or 1 for anything else (a bad file), and write nothing. main() runs in this
// process (a process per case costs a second of start-up); the last test runs a few of the
// cases as real processes.

import { expect } from 'chai';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CONFIG, GlowConfig } from '../../src/glow/config.js';
import { exportModel } from '../../src/glow/export.js';
import { checkpointBytes } from '../../src/glow/params.js';
import { writeFilesAtomic } from '../../src/io/files.js';
import { latentsBytes } from '../../src/runtime/latents.js';
import { loadMnist } from '../../src/runtime/mnist.js';
import { randomParams } from '../../support/random-params.js';
import { snapshot } from '../fault-fs.js';
import { cli, cliInProcess, writeGrayPng } from '../helpers.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures', import.meta.url));

describe('glow-onnx refuses bad inputs: one line, exit code 2 or 1, nothing written', function () {
  this.timeout(120000);
  let dir: string;
  /** Every output a case names goes here; it must stay empty. */
  let outs: string;
  const at = (...parts: string[]) => join(dir, ...parts);

  /** Runs the command and checks its refusal: `code`, one error line naming the command and
   * holding `fragment` (status lines such as "running on cpu" aside), and `outs` untouched. */
  async function refuses(args: string[], code: 1 | 2, fragment: string, watched = outs, run: typeof cliInProcess = cliInProcess): Promise<void> {
    const before = snapshot(watched);
    const r = await run(...args);
    const label = args.join(' ');
    expect(r.code, `${label}: ${r.stderr}`).to.equal(code);
    const errors = r.stderr.trim().split('\n').filter((l) => !l.startsWith('running on') && !l.startsWith('note:'));
    expect(errors, `${label}: ${r.stderr}`).to.have.length(1);
    expect(errors[0], label).to.match(new RegExp(`^glow-onnx ${args[0]}: `));
    expect(errors[0], label).to.contain(fragment);
    expect(snapshot(watched), `${label} wrote something`).to.deep.equal(before);
  }

  const config: GlowConfig = { ...DEFAULT_CONFIG, K: 1, hiddenChannels: 8 };
  const other: GlowConfig = { ...config, hiddenChannels: 4 };
  const conditional: GlowConfig = { ...config, numClasses: 3 };
  const latents = (c: GlowConfig, n: number) => latentsBytes(c, [new Float32Array(n * 2 * 14 * 14), new Float32Array(n * 8 * 7 * 7)], n);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'glow-bad-'));
    outs = at('outs');
    mkdirSync(outs);
    for (const [name, c] of [['model', config], ['other', other], ['conditional', conditional]] as const) {
      writeFilesAtomic(at(name), { ...exportModel({ config: c, params: randomParams(c, 3, 0.5) }) });
    }
    mkdirSync(at('digits'));
    const m = loadMnist('test', 3);
    for (let i = 0; i < 3; i++) {
      await writeGrayPng(at('digits', `d${i}.png`), m.pixels.subarray(i * 784, (i + 1) * 784), 28);
    }
    writeFileSync(at('other.safetensors'), latents(other, 1));
    writeFileSync(at('three.safetensors'), latents(config, 3));
    mkdirSync(at('empty'));
    writeFileSync(at('empty', 'readme.txt'), 'no images here');
    writeFileSync(at('corrupt.png'), 'not a PNG at all');
    const png = readFileSync(at('digits', 'd0.png'));
    writeFileSync(at('truncated.png'), png.subarray(0, png.length >> 1));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('malformed --alpha, --class out of range', async () => {
    const manipulate = ['manipulate', '--model', at('model'), at('digits', 'd0.png'), '--attribute', '1', '--out', join(outs, 'm.png')];
    await refuses([...manipulate, '--alpha', 'abc'], 2, '--alpha must be a number or a range A..B, got abc');
    await refuses([...manipulate, '--alpha', '1..2..3'], 2, '--alpha 1..2..3 is not a range A..B');
    await refuses([...manipulate, '--alpha='], 2, '--alpha must be a number or a range A..B');
    const sample = ['sample', '--model', at('conditional'), '--n', '2', '--out', join(outs, 's.png')];
    await refuses([...sample, '--class', '3'], 2, '--class must be in 0..2');
    await refuses([...sample, '--class=-1'], 2, '--class must be an integer >= 0, got -1');
    await refuses([...sample, '--class', 'two'], 2, '--class must be an integer >= 0, got two');
  });

  it('import: bad --image-shape, --permutation or --shuffles', async () => {
    const out = ['--out', join(outs, 'imported')];
    const reverse = join(FIXTURES, 'glow-torch', 'y0ast_reverse_additive.pt');
    await refuses(['import', reverse, '--permutation', 'reverse', '--image-shape', '1,28', ...out], 2, '--image-shape must be C,H,W, got 1,28');
    await refuses(['import', reverse, '--permutation', 'reverse', '--image-shape', 'a,b,c', ...out], 2, '--image-shape must be C,H,W, got a,b,c');
    await refuses(['import', reverse, '--permutation', 'reverse', '--image-shape', '1,6,6', ...out], 2, 'multiples of 2^L');
    await refuses(['import', reverse, '--permutation', 'invconv', ...out], 2, '--permutation must be reverse or shuffle');
    const shuffle = ['import', join(FIXTURES, 'glow-torch', 'y0ast_shuffle_affine.pt'), '--permutation', 'shuffle', ...out];
    for (const [name, text, fragment] of [['broken.json', '{"flow.layers.1": [0,', 'broken.json is not valid JSON'], ['null.json', 'null', 'null.json must be a JSON object'], ['list.json', '[[0, 1]]', 'list.json must be a JSON object']]) {
      writeFileSync(at(name), text);
      await refuses([...shuffle, '--shuffles', at(name)], 1, fragment);
    }
  });

  it('images: a damaged file with an image extension, a folder without images, bad label files', async () => {
    const encode = (source: string) => ['encode', '--model', at('model'), source, '--out', join(outs, 'l.safetensors')];
    await refuses(encode(at('corrupt.png')), 1, 'corrupt.png: cannot read image: not a PNG, JPEG or BMP file');
    await refuses(encode(at('truncated.png')), 1, 'truncated.png: cannot read image');
    await refuses(encode(at('empty')), 1, 'empty holds no .png/.jpg/.bmp images');
    await refuses(['eval', '--model', at('model'), '--data', at('empty')], 1, 'holds no .png/.jpg/.bmp images');
    await refuses(['train', '--data', at('empty'), '--out', join(outs, 'run'), '--epochs', '1', '--image-shape', '1,8,8', '--K', '1', '--hidden', '4'], 1, 'holds no .png/.jpg/.bmp images');
    const direction = (labels: string) => ['direction', '--model', at('model'), '--images', at('digits'), '--labels', labels, '--out', join(outs, 'dir.safetensors')];
    writeFileSync(at('malformed.txt'), 'd0.png 1\nd1.png maybe\nd2.png 0\n');
    await refuses(direction(at('malformed.txt')), 1, 'malformed.txt:2: expected "<image name> <0|1>", got "d1.png maybe"');
    writeFileSync(at('partial.txt'), '# d2.png has none\nd0.png 1\nd1.png 0\n');
    await refuses(direction(at('partial.txt')), 1, 'partial.txt has no label for d2.png');
  });

  it('latents or a direction of another model', async () => {
    await refuses(['decode', '--model', at('model'), at('other.safetensors'), '--out', join(outs, 'd.png')], 1, 'other.safetensors holds latents of another model');
    const manipulate = ['manipulate', '--model', at('model'), at('digits', 'd0.png'), '--out', join(outs, 'm.png'), '--direction'];
    await refuses([...manipulate, at('other.safetensors')], 1, 'other.safetensors holds latents of another model');
    await refuses([...manipulate, at('three.safetensors')], 1, 'three.safetensors holds 3 latents, a direction is one');
  });

  it('train --resume with no checkpoint, a damaged one, or one that is not a training checkpoint', async () => {
    const resume = (out: string) => ['train', '--data', at('digits'), '--out', out, '--resume', '--epochs', '1'];
    await refuses(resume(join(outs, 'nothing')), 2, '--resume: there is no run to continue');
    for (const [name, bytes, fragment] of [
      ['damaged', Buffer.from('garbage, not safetensors'), 'checkpoint.safetensors: '],
      ['weights', checkpointBytes({ config, params: randomParams(config, 1) }), 'is not a training checkpoint'],
    ] as const) {
      const run = at('runs', name);
      mkdirSync(run, { recursive: true });
      writeFileSync(join(run, 'checkpoint.safetensors'), bytes);
      await refuses(resume(run), 1, fragment, at('runs'));
    }
  });

  it('a model folder whose glow.json is missing, not JSON, of another version or of another model', async () => {
    const cases: [string, string | undefined, string][] = [
      ['missing', undefined, 'has no glow.json: not a model directory written by glow-onnx export'],
      ['not-json', '{"formatVersion": 1,', 'glow.json is not valid JSON'],
      ['version', JSON.stringify({ formatVersion: 99, config }), 'glow.json has format version 99'],
      ['bad-config', JSON.stringify({ formatVersion: 1, config: { ...config, K: 0 } }), 'glow.json config: invalid Glow config'],
      ['another', readFileSync(at('other', 'glow.json'), 'utf8'), 'glow.json describes another model'],
    ];
    for (const [name, json, fragment] of cases) {
      cpSync(at('model'), at('models', name), { recursive: true });
      if (json === undefined) rmSync(at('models', name, 'glow.json'));
      else writeFileSync(at('models', name, 'glow.json'), json);
      await refuses(['sample', '--model', at('models', name), '--n', '1', '--out', join(outs, 'g.png')], 1, fragment);
    }
    copyFileSync(at('model', 'glow.json'), at('models', 'missing', 'glow.json'));
    expect((await cliInProcess('sample', '--model', at('models', 'missing'), '--n', '1', '--out', join(outs, 'g.png'))).code, 'the same folder with its glow.json back').to.equal(0);
  });

  it('as processes: the same refusals on stderr and in the exit code', async () => {
    const asProcess = async (...args: string[]) => cli(...args) as { code: number; stdout: string; stderr: string };
    await refuses(['sample', '--model', at('conditional'), '--class', '3', '--out', join(outs, 's.png')], 2, '--class must be in 0..2', outs, asProcess);
    await refuses(['encode', '--model', at('model'), at('corrupt.png'), '--out', join(outs, 'l.safetensors')], 1, 'cannot read image', outs, asProcess);
    await refuses(['train', '--data', at('digits'), '--out', join(outs, 'nothing'), '--resume', '--epochs', '1'], 2, '--resume: there is no run to continue', outs, asProcess);
  });
});
