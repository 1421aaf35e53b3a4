// glow-onnx import / export --weights FILE.pt, as a user runs them.

import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '../../src/io/safetensors.js';
import { cli } from '../helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const fixture = (name: string) => join(ROOT, 'test/fixtures', name);

function fails(r: ReturnType<typeof cli>, fragments: string[]): void {
  expect(r.code, r.stderr).to.equal(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).to.have.length(1);
  for (const f of fragments) expect(lines[0]).to.contain(f);
}

describe('glow-onnx import', function () {
  this.timeout(60000);
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'glow-import-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('turns a chaiyujin .pt into a native checkpoint with y0ast names, then exports it', () => {
    const out = join(dir, 'native');
    const r = cli('import', fixture('glow-torch/chaiyujin_affine_lu_learntop.pt'), '--out', out);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('imported a chaiyujin checkpoint');
    expect(r.stderr).to.contain('n_bits is not stored in PyTorch checkpoints: assuming 8');
    const file = readSafetensors(readFileSync(join(out, 'weights.safetensors')));
    expect([...file.tensors.keys()]).to.include('learn_top_fn.conv.weight').and.to.include('flow.layers.1.invconv.lower');
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).nBits).to.equal(8);
    const exp = cli('export', '--weights', join(out, 'weights.safetensors'), '--out', join(dir, 'model'));
    expect(exp.code, exp.stderr).to.equal(0);
  });

  it('takes a legacy chaiyujin .pkg ({global_step, graph, optim}) as the ZIP file of the same model', () => {
    const r = cli('import', fixture('torch-io/legacy_chaiyujin.pkg'), '--out', join(dir, 'legacy'));
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('imported a chaiyujin checkpoint');
    expect(cli('import', fixture('glow-torch/chaiyujin_affine_lu_learntop.pt'), '--out', join(dir, 'zip')).code).to.equal(0);
    const zip = readFileSync(join(dir, 'zip', 'weights.safetensors'));
    expect(readFileSync(join(dir, 'legacy', 'weights.safetensors')).equals(zip)).to.equal(true);
  });

  it('exports a rosinality checkpoint given its image size, and names --image-shape without it', () => {
    const pt = fixture('rosinality/rosinality_affine_lu.pt');
    fails(cli('import', pt, '--out', join(dir, 'never')), ['rosinality_affine_lu.pt', 'pass --image-shape 3,H,W']);
    const r = cli('export', '--weights', pt, '--image-shape', '3,16,16', '--out', join(dir, 'ros'));
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.contain('assuming 5, its train.py default');
    const json = JSON.parse(readFileSync(join(dir, 'ros', 'glow.json'), 'utf8'));
    expect(json.provenance.origin).to.equal('rosinality');
    expect(json.config.zerosPadValue).to.equal(1);
    const back = cli('import', pt, '--image-shape', '3,16,16', '--to', 'rosinality', '--out', join(dir, 'ros-back'));
    expect(back.code, back.stderr).to.equal(0);
    expect(back.stdout).to.contain("rosinality's Glow(3, 2, 2, affine=True, conv_lu=True)").and.to.contain('strict=True');
    expect(readSafetensors(readFileSync(join(dir, 'ros-back', 'rosinality.safetensors'))).tensors.has('blocks.1.prior.conv.weight')).to.equal(true);
    fails(cli('import', fixture('glow-torch/y0ast_affine_lu_learntop.pt'), '--n-bits', '5', '--to', 'rosinality', '--out', join(dir, 'never')), ['cannot write a rosinality state_dict', 'pads with ones']);
  });

  it('export takes a .pt directly, with the overrides a PyTorch file needs', () => {
    const r = cli('export', '--weights', fixture('glow-torch/y0ast_reverse_additive.pt'), '--permutation', 'reverse', '--n-bits', '3', '--out', join(dir, 'rev'));
    expect(r.code, r.stderr).to.equal(0);
    const json = JSON.parse(readFileSync(join(dir, 'rev', 'glow.json'), 'utf8'));
    expect(json.config.permutation).to.equal('reverse');
    expect(json.config.nBits).to.equal(3);
    expect(json.provenance.origin).to.equal('y0ast');
  });

  it('gives one precise line for every file it cannot take, and writes nothing', () => {
    const out = join(dir, 'never');
    fails(cli('import', fixture('glow-torch/y0ast_shuffle_affine.pt'), '--out', out), ['no 1x1 convolutions', '--permutation']);
    fails(cli('import', fixture('glow-torch/y0ast_shuffle_affine.pt'), '--permutation', 'shuffle', '--out', out), ['shuffle permutations are not stored', '--shuffles FILE']);
    const badShuffles = join(dir, 'shuffles.json');
    writeFileSync(badShuffles, JSON.stringify({ 'flow.layers.1': [0, 0, 1, 2, 3, 4, 5, 6] }));
    fails(cli('import', fixture('glow-torch/y0ast_shuffle_affine.pt'), '--permutation', 'shuffle', '--shuffles', badShuffles, '--out', out), ['is not a permutation']);
    fails(cli('import', fixture('torch-io/legacy_module.pt'), '--out', out), ['legacy_module.pt', 'pickled __main__.TinyNet object']);
    fails(cli('import', fixture('torch-io/custom_class.pt'), '--out', out), ['custom_class.pt', 'torch.save(model.state_dict()']);
    fails(cli('import', fixture('torch-io/plain.pt'), '--out', out), ['not those of a y0ast, chaiyujin or rosinality Glow state_dict']);
    fails(cli('import', fixture('torch-io/plain_pickle.pkl'), '--out', out), ['plain_pickle.pkl']);
    fails(cli('import', join(dir, 'missing.pt'), '--out', out), ['ENOENT']);
    expect(existsSync(out)).to.equal(false);
  });
});
