// The atomic writers under injected failures: a disk that fills part-way through a file, and a
// rename that fails, at every rename a write makes. Nothing half-written may remain, and what
// was there before must be left as it was.

import { expect } from 'chai';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeDirectoryAtomic, writeFileAtomic, writeFilesAtomic } from '../../src/io/files.js';
import { Faults, snapshot, withFaults } from '../fault-fs.js';

/** Failure points for a write that does `io` when nothing fails: a full disk before the first
 * byte, half-way and at the last byte, and a failed rename at each of its renames. */
function failurePoints(io: { bytes: number; renames: number }): Omit<Faults, 'under'>[] {
  const budgets = [...new Set([0, io.bytes >> 1, io.bytes - 1])].map((writeBudget) => ({ writeBudget }));
  return [...budgets, ...Array.from({ length: io.renames }, (_, i) => ({ failRename: i + 1 }))];
}

describe('atomic writers under injected failures', () => {
  let root: string;
  beforeEach(() => (root = mkdtempSync(join(tmpdir(), 'glow-files-'))));
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** Runs `write` once to learn its I/O, then at every failure point against the state `setup`
   * leaves in `root`: each must throw and leave that state exactly as it was. */
  async function expectAllOrNothing(setup: () => void, write: () => void): Promise<void> {
    setup();
    const { io } = await withFaults({ under: root }, async () => write());
    expect(io.renames, 'the write renames').to.be.above(0);
    const points = failurePoints(io);
    for (const point of points) {
      rmSync(root, { recursive: true, force: true });
      mkdirSync(root);
      setup();
      const before = snapshot(root);
      let error: unknown;
      await withFaults({ under: root, ...point }, async () => write()).catch((e) => (error = e));
      expect(error, JSON.stringify(point)).to.be.instanceOf(Error);
      expect(snapshot(root), `${JSON.stringify(point)}: ${(error as Error).message}`).to.deep.equal(before);
    }
  }

  const files = () => ({ 'weights.safetensors': new Uint8Array(1000).fill(7), 'config.json': '{"K": 1}\n', 'glow/1/model.onnx': new Uint8Array(300).fill(9), 'glow/config.pbtxt': 'name: "glow"\n' });

  it('writeFileAtomic: no file and no folder made for it when the write fails', async () => {
    await expectAllOrNothing(() => {}, () => writeFileAtomic(join(root, 'a', 'b', 'grid.png'), new Uint8Array(5000).fill(1)));
  });

  it('writeFileAtomic: the file it replaces survives intact', async () => {
    await expectAllOrNothing(() => writeFileSync(join(root, 'grid.png'), 'old'), () => writeFileAtomic(join(root, 'grid.png'), new Uint8Array(5000).fill(1)));
  });

  it('writeFilesAtomic: no directory, not even an empty one, when a new set fails', async () => {
    await expectAllOrNothing(() => {}, () => writeFilesAtomic(join(root, 'new', 'run'), files()));
  });

  it('writeFilesAtomic: a set replacing an older one is all new or all old, never a mix, and other files stay', async () => {
    await expectAllOrNothing(() => {
      mkdirSync(join(root, 'run', 'glow', '1'), { recursive: true });
      writeFileSync(join(root, 'run', 'weights.safetensors'), 'old weights');
      writeFileSync(join(root, 'run', 'config.json'), 'old config');
      writeFileSync(join(root, 'run', 'glow', '1', 'model.onnx'), 'old model');
      writeFileSync(join(root, 'run', 'checkpoint.safetensors'), 'not part of the set');
    }, () => writeFilesAtomic(join(root, 'run'), files()));
  });

  it('writeDirectoryAtomic: a fill that throws leaves an existing directory as it was', async () => {
    await expectAllOrNothing(() => {
      mkdirSync(join(root, 'model'));
      writeFileSync(join(root, 'model', 'glow.json'), 'old');
    }, () => writeDirectoryAtomic(join(root, 'model'), (staging) => {
      writeFileSync(join(staging, 'glow.json'), 'new');
      writeFileSync(join(staging, 'encode.onnx'), new Uint8Array(100));
    }));
    writeFileSync(join(root, 'model', 'glow.json'), 'old');
    const before = snapshot(root);
    expect(() => writeDirectoryAtomic(join(root, 'model'), (staging) => {
      writeFileSync(join(staging, 'glow.json'), 'new');
      throw new Error('export failed');
    })).to.throw('export failed');
    expect(snapshot(root)).to.deep.equal(before);
  });

  it('a write that succeeds replaces the set and leaves nothing temporary', () => {
    mkdirSync(join(root, 'run'));
    writeFileSync(join(root, 'run', 'config.json'), 'old');
    writeFileSync(join(root, 'run', 'other'), 'stays');
    writeFilesAtomic(join(root, 'run'), files());
    expect([...snapshot(root).keys()].sort()).to.deep.equal(['run/', 'run/config.json', 'run/glow/', 'run/glow/1/', 'run/glow/1/model.onnx', 'run/glow/config.pbtxt', 'run/other', 'run/weights.safetensors']);
    expect(snapshot(root).get('run/config.json')).to.equal(Buffer.from('{"K": 1}\n').toString('base64'));
  });
});
