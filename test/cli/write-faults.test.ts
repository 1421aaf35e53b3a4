// Every file the CLI writes, under injected failures (test/fault-fs.ts): the disk filling up
// before the first byte, half-way and at the last byte, and a rename failing at each rename the
// command makes. The command must fail with one line and exit code 1, and every output must be
// either exactly as it was before (absent, or the older file) or exactly what a successful run
// writes: no half-written file, no temporary file, no empty folder, no mix of old and new files
// within one set. The commands run in this process (main()), so that fs can be patched.

import { expect } from 'chai';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '../../src/io/safetensors.js';
import { Faults, Io, snapshot, withFaults } from '../fault-fs.js';
import { cliInProcess, writeGrayPng } from '../helpers.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures', import.meta.url));

/** The failure points of a command that does `io` when nothing fails. */
function failurePoints(io: Io, renames: number[] | 'all'): Omit<Faults, 'under'>[] {
  // Near the end rather than at the last byte: a checkpoint records the run's elapsed time, so a
  // run can write a few bytes fewer than the one measured, and a budget of bytes - 1 then passes.
  const nearEnd = Math.max(1, io.bytes - 64);
  const budgets = [...new Set([0, io.bytes >> 1, nearEnd])].map((writeBudget) => ({ writeBudget }));
  const chosen = renames === 'all' ? Array.from({ length: io.renames }, (_, i) => i + 1) : renames.filter((r) => r <= io.renames);
  return [...budgets, ...chosen.map((failRename) => ({ failRename }))];
}

type Snapshot = Map<string, string>;

/** The entries of a snapshot that belong to a set of outputs (path prefixes). */
function part(s: Snapshot, prefixes: string[]): Snapshot {
  return new Map([...s].filter(([k]) => prefixes.some((p) => k.startsWith(p))));
}

interface Case {
  name: string;
  /** Leaves the state the command starts from in `root` (outputs of an earlier run, or nothing). */
  setup: (root: string) => void;
  args: (root: string) => string[];
  /** Outputs that must change together, as path prefixes under root; any other path stands
   * alone. */
  sets: string[][];
  /** Which renames to fail (all of them, unless a command is slow and makes many). */
  renames?: number[];
  /** Turns a file's snapshot into what must match, for files that hold a timing. */
  normalise?: (s: Snapshot) => Snapshot;
}

describe('glow-onnx under injected write failures: nothing partial, older files intact', function () {
  this.timeout(300000);
  let shared: string;
  let root: string;
  const model8 = ['--image-shape', '1,8,8', '--K', '1', '--L', '2', '--n-bits', '5'];
  const training = ['--batch-size', '8', '--eval-limit', '0', '--threads', '1'];

  before(async () => {
    shared = mkdtempSync(join(tmpdir(), 'glow-faults-shared-'));
    const images = join(shared, 'images');
    mkdirSync(images);
    for (let i = 0; i < 16; i++) {
      await writeGrayPng(join(images, `b${String(i).padStart(2, '0')}.png`), Array.from({ length: 64 }, (_, p) => (p * 37 + i * 11) % 256), 8);
    }
    writeFileSync(join(shared, 'labels.txt'), Array.from({ length: 16 }, (_, i) => `b${String(i).padStart(2, '0')}.png ${i % 2}`).join('\n'));
    for (const [name, hidden] of [['a', '4'], ['b', '6']]) {
      expect((await cliInProcess('init', '--out', join(shared, name), '--data', 'none', ...model8, '--hidden', hidden, '--seed', '1')).code).to.equal(0);
      const exported = await cliInProcess('export', '--weights', join(shared, name, 'weights.safetensors'), '--out', join(shared, name, 'model'), '--triton', join(shared, name, 'triton'));
      expect(exported.code, exported.stderr).to.equal(0);
    }
    const trained = await cliInProcess('train', '--data', images, '--out', join(shared, 'run'), '--epochs', '1', ...model8, '--hidden', '4', ...training);
    expect(trained.code, trained.stderr).to.equal(0);
  });
  after(() => rmSync(shared, { recursive: true, force: true }));
  beforeEach(() => (root = mkdtempSync(join(tmpdir(), 'glow-faults-'))));
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const fresh = () => {};
  const copy = (from: string, to: string) => (r: string) => cpSync(join(shared, from), join(r, to), { recursive: true });
  const weightsA = () => join(shared, 'a', 'weights.safetensors');
  const modelA = () => join(shared, 'a', 'model');
  const old = (name: string) => (r: string) => writeFileSync(join(r, name), 'an older file');

  /** Runs the command once to learn its I/O and what it writes, then at every failure point
   * from the same starting state. */
  async function expectNothingPartial(c: Case): Promise<number> {
    const normalise = c.normalise ?? ((s: Snapshot) => s);
    const reset = () => {
      rmSync(root, { recursive: true, force: true });
      mkdirSync(root);
      c.setup(root);
    };
    reset();
    const before = normalise(snapshot(root));
    const { result, io } = await withFaults({ under: root }, () => cliInProcess(...c.args(root)));
    expect(result.code, result.stderr).to.equal(0);
    const after = normalise(snapshot(root));
    expect(io.renames, 'the command renames its outputs into place').to.be.above(0);
    const points = failurePoints(io, c.renames ?? 'all');
    for (const point of points) {
      reset();
      const { result: failed } = await withFaults({ under: root, ...point }, () => cliInProcess(...c.args(root)));
      const label = `${c.name}, ${JSON.stringify(point)}`;
      expect(failed.code, `${label}: ${failed.stderr}`).to.equal(1);
      const errors = failed.stderr.trim().split('\n').filter((l) => l.startsWith('glow-onnx'));
      expect(errors, `${label}: ${failed.stderr}`).to.have.length(1);
      expect(errors[0]).to.match(point.failRename ? /EIO/ : /ENOSPC/);
      const got = normalise(snapshot(root));
      const keys = [...new Set([...before.keys(), ...after.keys(), ...got.keys()])];
      // A path in no declared set stands alone (a folder: only the folder itself).
      const sets: [string, (s: Snapshot) => Snapshot][] = [
        ...c.sets.map((set) => [set.join(' + '), (s: Snapshot) => part(s, set)] as [string, (s: Snapshot) => Snapshot]),
        ...keys.filter((k) => !c.sets.flat().some((p) => k.startsWith(p)))
          .map((k) => [k, (s: Snapshot) => new Map([...s].filter(([key]) => key === k))] as [string, (s: Snapshot) => Snapshot]),
      ];
      for (const [set, pick] of sets) {
        const now = pick(got);
        const whole = JSON.stringify([...now]) === JSON.stringify([...pick(before)]) || JSON.stringify([...now]) === JSON.stringify([...pick(after)]);
        expect(whole, `${label}: ${set} is neither as before nor as written by a successful run: ${[...now.keys()].join(', ') || 'nothing'}`).to.equal(true);
      }
    }
    return points.length;
  }

  it('init and import: weights.safetensors + config.json', async () => {
    const init = (r: string) => ['init', '--out', join(r, 'w'), '--data', 'none', ...model8, '--hidden', '4', '--seed', '2'];
    await expectNothingPartial({ name: 'init', setup: fresh, args: init, sets: [['w/']] });
    await expectNothingPartial({ name: 'init over an older model', setup: copy('b', 'w'), args: init, sets: [['w/']] });
    const pt = join(FIXTURES, 'glow-torch', 'y0ast_affine_lu_learntop.pt');
    await expectNothingPartial({ name: 'import', setup: fresh, args: (r) => ['import', pt, '--out', join(r, 'i')], sets: [['i/']] });
  });

  it('export: the model directory and the Triton repository', async () => {
    const exportA = (r: string) => ['export', '--weights', weightsA(), '--out', join(r, 'model'), '--triton', join(r, 'triton')];
    await expectNothingPartial({ name: 'export', setup: fresh, args: exportA, sets: [['model/'], ['triton/']] });
    await expectNothingPartial({
      name: 'export over an older model', setup: (r) => (copy('b/model', 'model')(r), copy('b/triton', 'triton')(r)), args: exportA, sets: [['model/'], ['triton/']],
    });
  });

  it('encode and direction: latents; sample: a PNG grid', async () => {
    const images = join(shared, 'images');
    const encode = (r: string) => ['encode', '--model', modelA(), images, '--out', join(r, 'l.safetensors')];
    await expectNothingPartial({ name: 'encode', setup: fresh, args: encode, sets: [] });
    await expectNothingPartial({ name: 'encode over older latents', setup: old('l.safetensors'), args: encode, sets: [] });
    const direction = (r: string) => ['direction', '--model', modelA(), '--images', images, '--labels', join(shared, 'labels.txt'), '--out', join(r, 'd', 'dir.safetensors')];
    await expectNothingPartial({ name: 'direction', setup: fresh, args: direction, sets: [] });
    const sample = (r: string) => ['sample', '--model', modelA(), '--n', '4', '--out', join(r, 'grid.png')];
    await expectNothingPartial({ name: 'sample', setup: fresh, args: sample, sets: [] });
    await expectNothingPartial({ name: 'sample over an older grid', setup: old('grid.png'), args: sample, sets: [] });
  });

  it('train --resume: checkpoint, weights + config, model directory, epoch samples', async () => {
    // A checkpoint records the run's elapsed time: compare everything else in it.
    const normalise = (s: Snapshot) => new Map([...s].map(([k, v]) => {
      if (!k.endsWith('checkpoint.safetensors')) return [k, v];
      try {
        const file = readSafetensors(Buffer.from(v, 'base64'));
        const state = JSON.parse(file.metadata['glow_onnx.train_state']);
        delete state.elapsedSeconds;
        return [k, JSON.stringify([{ ...file.metadata, 'glow_onnx.train_state': state }, [...file.tensors].map(([n, t]) => [n, t.shape, Array.from(t.data)])])];
      } catch {
        return [k, v];
      }
    }));
    // 16 images in batches of 8: one epoch is 2 steps. Renames: the epoch's sample grid (1), a
    // checkpoint at the epoch's end (2) and at the run's end (3), weights + config (4 to 7: each
    // older file set aside, then the new one moved in) and the model directory (8 to 13). Failing
    // them all takes long; these are each writer's first, its last, and the points between files
    // of a set.
    const points = await expectNothingPartial({
      name: 'train --resume',
      setup: copy('run', 'run'),
      args: (r) => ['train', '--data', join(shared, 'images'), '--out', join(r, 'run'), '--resume', '--epochs', '2', ...training],
      sets: [['run/weights.safetensors', 'run/config.json'], ['run/model/']],
      renames: [1, 2, 3, 5, 7, 10, 13],
      normalise,
    });
    expect(points).to.equal(10);
  });
});
