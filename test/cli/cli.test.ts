// The glow-onnx command as a user runs it: a real process on a temp folder.

import { expect } from 'chai';
import { Jimp } from 'jimp';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseModel } from '../../src/builder/parse.js';
import { COMMAND_NAMES } from '../../src/cli/main.js';
import { commandUsage, USAGE } from '../../src/cli/usage.js';
import { cli, cliInProcess } from '../helpers.js';

function expectOneLineError(r: ReturnType<typeof cli>, code: number, ...fragments: string[]): void {
  expect(r.code, r.stderr).to.equal(code);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).to.have.length(1);
  for (const f of fragments) expect(lines[0]).to.contain(f);
}

describe('glow-onnx CLI', function () {
  this.timeout(60000);
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'glow-cli-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('init (ActNorms from MNIST) -> export -> inspect -> verify', () => {
    const run = join(dir, 'run');
    const init = cli('init', '--out', run, '--K', '2', '--hidden', '16', '--init-batch', '64', '--seed', '3');
    expect(init.code, init.stderr).to.equal(0);
    expect(init.stderr).to.contain('ActNorms initialised from 64 images of mnist');
    const exp = cli('export', '--weights', join(run, 'weights.safetensors'), '--out', join(run, 'model'), '--opset', '15');
    expect(exp.code, exp.stderr).to.equal(0);
    expect(readdirSync(join(run, 'model')).sort()).to.deep.equal(['decode.onnx', 'encode.onnx', 'glow.json']);
    const json = JSON.parse(readFileSync(join(run, 'model', 'glow.json'), 'utf8'));
    expect(json.opset).to.equal(15);
    expect(json.config.K).to.equal(2);
    expect(json.io.encode.outputs.eps_1).to.deep.equal(['N', 2, 14, 14]);
    expect(parseModel(readFileSync(join(run, 'model', 'encode.onnx'))).graph.metadata['glow_onnx.config']).to.equal(JSON.stringify(json.config));
    const inspect = cli('inspect', join(run, 'model', 'decode.onnx'));
    expect(inspect.code).to.equal(0);
    expect(inspect.stdout).to.match(/inputs:\n {2}eps_1: float32\[N, 2, 14, 14\]/);
    expect(inspect.stdout).to.match(/Conv +\d+/);
    expect(inspect.stdout).to.contain('"hiddenChannels":16');
    const verify = cli('verify', join(run, 'model'), '--limit', '32');
    expect(verify.code, verify.stderr).to.equal(0);
    const error = Number(/max \|x - decode\(encode\(x\)\)\| = (\S+)/.exec(verify.stdout)![1]);
    expect(error).to.be.below(1e-4);
    const bpd = Number(/bits\/dim (\S+)/.exec(verify.stdout)![1]);
    // An untrained model: only finite and of the right order (5 bits would be uniform).
    expect(bpd).to.be.within(1, 10);
  });

  it('init takes its ActNorm batch from a folder of images (resized, RGB)', async () => {
    const images = join(dir, 'images');
    mkdirSync(images);
    for (let i = 0; i < 4; i++) {
      const img = new Jimp({ width: 12 + i, height: 10, color: 0x102030ff + i * 0x20100000 });
      img.setPixelColor(0xffffffff, i, i);
      writeFileSync(join(images, `img${i}.png`), await img.getBuffer('image/png'));
    }
    writeFileSync(join(images, 'notes.txt'), 'not an image');
    const r = cli('init', '--out', join(dir, 'folder'), '--data', images, '--image-shape', '3,8,8', '--K', '1', '--hidden', '4');
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.contain(`ActNorms initialised from 4 images of ${images}`);
    expectOneLineError(cli('init', '--out', join(dir, 'folder2'), '--data', join(dir, 'empty-nowhere'), '--image-shape', '3,8,8'), 1, 'ENOENT');
  });

  it('exports the same weights to byte-identical files', () => {
    const run = join(dir, 'det');
    expect(cli('init', '--out', run, '--data', 'none', '--image-shape', '3,8,8', '--K', '1', '--L', '2', '--hidden', '4').code).to.equal(0);
    for (const out of ['a', 'b']) expect(cli('export', '--weights', join(run, 'weights.safetensors'), '--out', join(run, out), '--no-fold').code).to.equal(0);
    for (const f of ['encode.onnx', 'decode.onnx', 'glow.json']) {
      expect(Buffer.compare(readFileSync(join(run, 'a', f)), readFileSync(join(run, 'b', f))), f).to.equal(0);
    }
  });

  it('every command answers --help and -h with its own usage, exit code 0, and writes nothing', async () => {
    const all = await cliInProcess('--help');
    expect(all.code).to.equal(0);
    expect(all.stdout).to.equal(`${USAGE}\n`);
    // Every command main runs, not only those the usage text lists.
    expect(COMMAND_NAMES).to.include.members(['init', 'import', 'export', 'inspect', 'sample', 'verify', 'diagnose', 'train', 'artifacts']);
    for (const command of COMMAND_NAMES) {
      for (const flag of ['--help', '-h']) {
        const r = await cliInProcess(command, '--out', join(dir, 'help-out'), flag);
        expect(r.code, `${command} ${flag}: ${r.stderr}`).to.equal(0);
        expect(r.stdout, `${command} ${flag}`).to.equal(`${commandUsage(command)}\n`);
        expect(r.stdout, `${command} ${flag}`).to.match(new RegExp(`^usage: glow-onnx ${command} `));
      }
    }
    // The same through the installed command (bin.js), as a user types it.
    const r = cli('export', '-h');
    expect([r.code, r.stdout], r.stderr).to.deep.equal([0, `${commandUsage('export')}\n`]);
    expect(existsSync(join(dir, 'help-out'))).to.equal(false);
  });

  it('lists every command it runs in its usage text, and no command it does not run', () => {
    const listed = [...USAGE.matchAll(/^ {2}([a-z]+) {2,}/gm)].map((m) => m[1]);
    expect([...listed].sort()).to.deep.equal([...COMMAND_NAMES].sort());
  });

  it('lists in its usage text every flag each command takes', async () => {
    // Each command hands its flags to node:util's parseArgs first; the flags are read there, on
    // a command line that parseArgs then refuses, so that no command runs.
    const util = createRequire(import.meta.url)('node:util') as typeof import('node:util');
    const parseArgs = util.parseArgs;
    const seen: { flags?: string[] } = {};
    util.parseArgs = ((config: Parameters<typeof parseArgs>[0]) => {
      seen.flags = Object.keys(config?.options ?? {});
      return parseArgs(config);
    }) as typeof parseArgs;
    syncBuiltinESMExports();
    const groups = USAGE.slice(USAGE.indexOf('\nruntime flags:'));
    const unlisted: string[] = [];
    try {
      for (const command of COMMAND_NAMES) {
        delete seen.flags;
        const r = await cliInProcess(command, '--no-such-flag');
        expect(r.code, `${command}: ${r.stderr}`).to.equal(2);
        const flags = seen.flags as string[] | undefined; // set by the patched parseArgs
        if (!flags) throw new Error(`${command} did not hand its flags to parseArgs`);
        const lines = USAGE.split('\n');
        const at = lines.findIndex((l) => new RegExp(`^  ${command}\\s`).test(l));
        const section = lines.slice(0, at).reverse().find((l) => /^\S.*:$/.test(l)) ?? '';
        const listed = `${commandUsage(command)}\n${section}\n${groups}`;
        unlisted.push(...flags.filter((flag) => !new RegExp(`--${flag}\\b`).test(listed)).map((flag) => `${command} --${flag}`));
      }
    } finally {
      util.parseArgs = parseArgs;
      syncBuiltinESMExports();
    }
    expect(unlisted, 'flags the usage text (src/cli/usage.ts) does not list').to.deep.equal([]);
  });

  it('rejects bad command lines with one line and exit code 2', () => {
    expectOneLineError(cli('frobnicate'), 2, "unknown command 'frobnicate'");
    expectOneLineError(cli('init'), 2, '--out is required');
    expectOneLineError(cli('init', '--out', join(dir, 'x'), '--bogus'), 2, "Unknown option '--bogus'");
    expectOneLineError(cli('init', '--out', join(dir, 'x'), '--K', '0', '--data', 'none'), 2, 'K must be a positive integer');
    expectOneLineError(cli('init', '--out', join(dir, 'x'), '--image-shape', '1,30,30', '--data', 'none'), 2, 'multiples of 2^L');
    expectOneLineError(cli('init', '--out', join(dir, 'x'), '--lu', 'maybe'), 2, '--lu must be true or false');
    expectOneLineError(cli('init', '--out', join(dir, 'x'), '--image-shape', '3,8,8', '--data', 'mnist'), 2, 'MNIST needs a model of imageShape [1, 28, 28]');
    expectOneLineError(cli('export', '--weights', 'w'), 2, '--out is required');
    expectOneLineError(cli('export', '--weights', 'w', '--out', join(dir, 'y'), '--opset', '12'), 2, '--opset 12 is not supported');
    expectOneLineError(cli('inspect'), 2, 'expected 1 argument');
    expect(existsSync(join(dir, 'x')), 'nothing written on failure').to.equal(false);
    expect(existsSync(join(dir, 'y')), 'nothing written on failure').to.equal(false);
  });

  it('rejects bad files with one line, exit code 1, and writes nothing', () => {
    const garbage = join(dir, 'garbage.bin');
    writeFileSync(garbage, Buffer.from('definitely not a model'));
    const out = join(dir, 'never');
    expectOneLineError(cli('export', '--weights', join(dir, 'missing.safetensors'), '--out', out), 1, 'cannot read', 'ENOENT');
    expectOneLineError(cli('export', '--weights', garbage, '--out', out), 1, garbage);
    expectOneLineError(cli('inspect', garbage), 1, 'is not an ONNX model');
    expectOneLineError(cli('inspect', join(dir, 'nope.onnx')), 1, 'ENOENT');
    const badConfig = join(dir, 'bad.json');
    writeFileSync(badConfig, '{"K": 2,');
    expectOneLineError(cli('init', '--out', out, '--config', badConfig), 1, 'is not valid JSON');
    expectOneLineError(cli('verify', join(dir, 'nowhere')), 1, 'ENOENT');
    expect(existsSync(out)).to.equal(false);
  });
});
