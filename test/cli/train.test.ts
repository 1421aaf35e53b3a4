// glow-onnx train and artifacts as processes: an image-folder dataset, Ctrl-C, resume.

import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importWeights } from '../../src/glow/import/index.js';
import { CHECKPOINT_FILE, readTrainCheckpoint } from '../../src/train/checkpoint.js';
import { cli, CLI_BIN, expectSameCheckpoint, writeGrayPng } from '../helpers.js';

/** Starts `train --out OUT FLAGS...`, sends Ctrl-C once its first checkpoint exists (polled every
 * pollMs), and returns how it exited and what it wrote. */
async function interruptAtFirstCheckpoint(out: string, flags: string[], pollMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI_BIN, 'train', '--out', out, '--minutes', '10', ...flags]);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 120000;
  while (!existsSync(join(out, 'checkpoint.safetensors')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, pollMs));
  expect(existsSync(join(out, 'checkpoint.safetensors')), `no checkpoint within 2 minutes: ${stderr}`).to.equal(true);
  child.kill('SIGINT');
  return { code: await exited, stdout, stderr };
}

describe('glow-onnx train', function () {
  this.timeout(300000);
  let dir: string;
  let images: string;
  const model = ['--image-shape', '1,8,8', '--K', '1', '--L', '2', '--hidden', '4', '--n-bits', '5', '--batch-size', '8', '--eval-limit', '0', '--threads', '1'];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'glow-train-cli-'));
    images = join(dir, 'images');
    mkdirSync(images);
    for (let i = 0; i < 40; i++) {
      const blob = Array.from({ length: 64 }, (_, p) => Math.round(255 * Math.exp(-(((p >> 3) - (i % 6) - 1) ** 2 + ((p & 7) - 3) ** 2) / 3)));
      await writeGrayPng(join(images, `b${String(i).padStart(2, '0')}.png`), blob, 8);
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('survives Ctrl-C with a checkpoint, then resumes', async () => {
    const out = join(dir, 'run');
    const { code, stdout, stderr } = await interruptAtFirstCheckpoint(out, ['--data', images, '--checkpoint-every', '2', ...model], 200);
    expect(code, stderr).to.equal(130);
    expect(stderr).to.contain('stopping after this step and writing a checkpoint');
    expect(stdout).to.match(/stopped at step \d+/);
    expect(readdirSync(out).sort()).to.include.members(['checkpoint.safetensors', 'config.json', 'model', 'weights.safetensors']);
    expect(readdirSync(out).filter((f) => f.endsWith('.tmp')), 'no temporary files left').to.deep.equal([]);

    const again = cli('train', '--data', images, '--out', out, '--minutes', '1', ...model);
    expect(again.code).to.equal(2);
    expect(again.stderr).to.contain('pass --resume to continue that run');
    // 40 images in batches of 8: 5 steps an epoch. Ask for at least one epoch past the stop,
    // however far the interrupted run got before the signal arrived.
    const stoppedAt = Number(/stopped at step (\d+)/.exec(stdout)![1]);
    const epochs = Math.floor(stoppedAt / 5) + 2;
    const resumed = cli('train', '--data', images, '--out', out, '--resume', '--epochs', String(epochs), '--threads', '1', '--eval-limit', '0');
    expect(resumed.code, resumed.stderr).to.equal(0);
    expect(resumed.stdout).to.contain(`finished at step ${5 * epochs}`);
    const verify = cli('verify', join(out, 'model'), '--data', images, '--limit', '8');
    expect(verify.code, verify.stderr).to.equal(0);
  });

  it('a run stopped mid-epoch by Ctrl-C and resumed with --resume ends bit for bit where an uninterrupted run ends', async () => {
    // Batches of 2: 20 steps an epoch, and a checkpoint after every step, so that the signal sent
    // on the first checkpoint stops the run inside its first epoch.
    const flags = ['--data', images, '--checkpoint-every', '1', '--seed', '5', ...model.map((f, i) => (model[i - 1] === '--batch-size' ? '2' : f))];
    const out = join(dir, 'stopped');
    const { code, stdout, stderr } = await interruptAtFirstCheckpoint(out, flags, 20);
    expect(code, stderr).to.equal(130);
    const stoppedAt = Number(/stopped at step (\d+)/.exec(stdout)![1]);
    expect(stoppedAt % 20, `stopped at step ${stoppedAt}, not mid-epoch`).to.not.equal(0);
    const epochs = String(Math.floor(stoppedAt / 20) + 2);
    const resumed = cli('train', '--out', out, '--resume', '--epochs', epochs, '--data', images, '--threads', '1', '--eval-limit', '0');
    expect(resumed.code, resumed.stderr).to.equal(0);
    const straight = cli('train', '--out', join(dir, 'straight'), '--epochs', epochs, ...flags);
    expect(straight.code, straight.stderr).to.equal(0);
    const checkpoint = (run: string) => readTrainCheckpoint(readFileSync(join(dir, run, CHECKPOINT_FILE)), run);
    expect(checkpoint('straight').state.step).to.equal(20 * Number(epochs));
    expectSameCheckpoint(checkpoint('stopped'), checkpoint('straight'));
    expect(readFileSync(join(out, 'weights.safetensors')).equals(readFileSync(join(dir, 'straight', 'weights.safetensors'))), 'weights.safetensors').to.equal(true);
  });

  it('fine-tunes trained weights: --weights keeps their ActNorms and config, --scale-floor adds a floor', () => {
    const config = model.slice(0, 10);
    const training = model.slice(10);
    // --data none: every ActNorm is the identity, which a data-dependent init would not leave.
    expect(cli('init', '--out', join(dir, 'start'), '--data', 'none', ...config).code).to.equal(0);
    const start = join(dir, 'start', 'weights.safetensors');
    const refused = cli('train', '--data', images, '--out', join(dir, 'tuned'), '--weights', start, '--epochs', '1', '--K', '2', ...training);
    expect(refused.code).to.equal(2);
    expect(refused.stderr).to.contain('--weights and --resume keep the stored config; drop --K');

    const out = join(dir, 'tuned');
    const r = cli('train', '--data', images, '--out', out, '--weights', start, '--scale-floor', '0.3', '--epochs', '1', '--lr', '1e-9', '--ema', '0', ...training);
    expect(r.code, r.stderr).to.equal(0);
    const tuned = importWeights(readFileSync(join(out, 'weights.safetensors')), 'tuned').weights;
    expect(tuned.config).to.deep.equal({ ...importWeights(readFileSync(start), 'start').weights.config, scaleFloor: 0.3 });
    const actnorms = [...tuned.params].filter(([name]) => /^flow\.layers\.\d+\.actnorm\.(bias|logs)$/.test(name));
    expect(actnorms.length).to.be.above(0);
    for (const [name, t] of actnorms) expect(Math.max(...Array.from(t.data, Math.abs)), name).to.be.below(1e-6);
  });

  it('fine-tunes a bounded model into a tighter bound with --scale-bound and constant split scales; refuses a bound on a floored model', () => {
    const config = model.slice(0, 10);
    const training = model.slice(10);
    expect(cli('init', '--out', join(dir, 'bounded'), '--data', 'none', ...config, '--scale-bound', '0.5').code).to.equal(0);
    const start = join(dir, 'bounded', 'weights.safetensors');
    const out = join(dir, 'tightened');
    const r = cli('train', '--data', images, '--out', out, '--weights', start, '--scale-bound', '0.7', '--constant-split-scale', 'true', '--epochs', '1', '--lr', '1e-9', '--ema', '0', ...training);
    expect(r.code, r.stderr).to.equal(0);
    const tuned = importWeights(readFileSync(join(out, 'weights.safetensors')), 'tuned').weights;
    expect(tuned.config).to.deep.equal({ ...importWeights(readFileSync(start), 'start').weights.config, scaleBound: 0.7, constantSplitScale: true });

    expect(cli('init', '--out', join(dir, 'floored'), '--data', 'none', ...config, '--scale-floor', '0.2').code).to.equal(0);
    const refused = cli('train', '--data', images, '--out', join(dir, 'both'), '--weights', join(dir, 'floored', 'weights.safetensors'), '--scale-bound', '0.7', '--epochs', '1', ...training);
    expect(refused.code).to.equal(2);
    expect(refused.stderr).to.contain('scaleBound and scaleFloor are two bounds of the same scale');
  });

  it('--engine ort-training trains in ONNX Runtime\'s TrainingSession and exports the result; refuses what that API cannot do', () => {
    const out = join(dir, 'ort');
    const refused = cli('train', '--data', images, '--out', out, '--epochs', '1', '--engine', 'ort-training', '--ema', '0.9', ...model);
    expect(refused.code).to.equal(2);
    expect(refused.stderr.trim().split('\n')).to.have.length(1);
    expect(refused.stderr).to.contain('--engine ort-training has no --ema');
    const r = cli('train', '--data', images, '--out', out, '--epochs', '2', '--engine', 'ort-training', ...model);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/finished at step 10:/);
    expect(readdirSync(out).sort()).to.include.members(['config.json', 'model', 'ort-training', 'weights.safetensors']);
    expect(readdirSync(join(out, 'ort-training')).sort()).to.deep.equal(['checkpoint', 'eval_model.onnx', 'optimizer_model.onnx', 'training_model.onnx']);
  });

  it('refuses a run without a budget, and writes training artifacts', () => {
    const r = cli('train', '--data', images, '--out', join(dir, 'none'), ...model);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.contain('give a budget');
    const badProvider = cli('train', '--data', images, '--out', join(dir, 'none'), '--epochs', '1', '--ep', 'cuda', ...model);
    expect(badProvider.code).to.equal(2);
    expect(badProvider.stderr).to.contain('--ep must be cpu or webgpu');
    expect(existsSync(join(dir, 'none'))).to.equal(false);
    expect(cli('init', '--out', join(dir, 'init'), '--data', 'none', ...model.slice(0, 10)).code).to.equal(0);
    const a = cli('artifacts', '--weights', join(dir, 'init', 'weights.safetensors'), '--out', join(dir, 'artifacts'));
    expect(a.code, a.stderr).to.equal(0);
    expect(readdirSync(join(dir, 'artifacts')).sort()).to.deep.equal(['checkpoint', 'eval_model.onnx', 'optimizer_model.onnx', 'training_model.onnx']);
  });
});
