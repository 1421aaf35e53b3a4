// ONNX Runtime's own on-device training (the 1.19.2 training build) on the artifacts of
// `artifacts --format ort-training`: they load, one step agrees with glow-onnx's Adam, and the
// ODTC checkpoint round-trips through our writer and reader and is refused when ORT could not
// read it.

import { expect } from 'chai';
import ort from 'onnxruntime-node';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serializeModel } from '../../src/builder/serialize.js';
import { GlowConfig } from '../../src/glow/config.js';
import { GlowWeights } from '../../src/glow/model.js';
import { paramSpecs } from '../../src/glow/names.js';
import { buildOrtTrainingArtifacts } from '../../src/train/ort-artifacts.js';
import { ortTrainingCheckpoint, weightsFromOdtc } from '../../src/glow/odtc-weights.js';
import { checkpointBytes, initWeights } from '../../src/glow/params.js';
import { Rng } from '../../src/math/rng.js';
import { buildFusedTrainStep, momentNames, updatedName } from '../../src/train/graphs.js';
import { OdtcCheckpoint, OdtcError, ODTC_VERSION, readOdtc, writeOdtc } from '../../src/io/odtc.js';
import { createOrtTrainingSession, loadTrainingBuild } from '../../src/train/ort-runtime.js';
import { ORT_TRAINING_DIR, trainWithOrtTraining } from '../../src/train/ort-loop.js';
import { EpochReport } from '../../src/train/run.js';
import { blobDataset, cli, maxAbsDiff, maxRelDiff } from '../helpers.js';

const config: GlowConfig = {
  imageShape: [1, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 3, nBits: 5, actnormScale: 1,
};

/** Initial weights moved off their zeros and ones, so that every gradient is far from 0 and
 * Adam's first step (lr * g / (|g| + eps)) is not decided by rounding. */
function perturbed(c: GlowConfig, seed: number): GlowWeights {
  const w = initWeights(c, seed);
  const rng = new Rng(seed + 1);
  const params = new Map(w.params);
  for (const spec of paramSpecs(c).filter((s) => s.trainable)) {
    const t = params.get(spec.name)!;
    params.set(spec.name, { shape: t.shape, data: Float64Array.from(t.data, (v) => v + 0.05 * rng.normal()) });
  }
  return { ...w, params };
}

function batch(rng: Rng, n: number, c: GlowConfig): { x: Float32Array; y: Float32Array } {
  const size = c.imageShape.reduce((a, b) => a * b, 1);
  return {
    x: new Float32Array(n * size).map(() => rng.uniform() - 0.5),
    y: Float32Array.from({ length: n * c.numClasses }, (_, i) => (i % c.numClasses === Math.floor(i / c.numClasses) % c.numClasses ? 1 : 0)),
  };
}

describe('ORT on-device training artifacts (--format ort-training)', function () {
  this.timeout(300000);

  it('load in TrainingSession with the contract ORT binds by name', async () => {
    const w = perturbed(config, 1);
    const session = await createOrtTrainingSession(buildOrtTrainingArtifacts(w, { learningRate: 1e-3 }));
    try {
      expect(session.trainingInputNames).to.deep.equal(['x', 'y']);
      expect(session.evalOutputNames).to.include('loss');
      // Parameters come back in glow-onnx's order, frozen ones (LU p, sign_s, prior_h) after none.
      const all = (await session.getContiguousParameters(false)).data as Float32Array;
      const expected = paramSpecs(config).flatMap((s) => Array.from(w.params.get(s.name)!.data, Math.fround));
      expect(Array.from(all)).to.deep.equal(expected);
    } finally {
      await session.release();
    }
  });

  it('one step matches glow-onnx\'s own Adam step (no clipping) from the same weights and batch', async () => {
    const w = perturbed(config, 2);
    const { x, y } = batch(new Rng(5), 4, config);
    const lr = 1e-2;
    const ortTraining = await loadTrainingBuild();
    const session = await createOrtTrainingSession(buildOrtTrainingArtifacts(w, { learningRate: lr, epsilon: 1e-3 }));
    let ortLoss: number;
    let ortParams: Float32Array;
    try {
      const out = await session.runTrainStep({ x: new ortTraining.Tensor('float32', x, [4, 1, 8, 8]), y: new ortTraining.Tensor('float32', y, [4, 3]) });
      ortLoss = (out.loss.data as Float32Array)[0];
      await session.runOptimizerStep();
      ortParams = (await session.getContiguousParameters(true)).data as Float32Array;
    } finally {
      await session.release();
    }

    const trainable = paramSpecs(config).filter((s) => s.trainable);
    const feeds: Record<string, ort.Tensor> = {
      x: new ort.Tensor('float32', x, [4, 1, 8, 8]), y: new ort.Tensor('float32', y, [4, 3]),
      learning_rate: new ort.Tensor('float32', Float32Array.of(lr), []), step: new ort.Tensor('float32', Float32Array.of(1), []),
    };
    for (const s of trainable) {
      const n = s.shape.reduce((a, b) => a * b, 1);
      feeds[s.name] = new ort.Tensor('float32', Float32Array.from(w.params.get(s.name)!.data), s.shape);
      feeds[momentNames(s.name).m] = new ort.Tensor('float32', new Float32Array(n), s.shape);
      feeds[momentNames(s.name).v] = new ort.Tensor('float32', new Float32Array(n), s.shape);
    }
    const fused = await ort.InferenceSession.create(serializeModel(buildFusedTrainStep(w, { clipNorm: 0, epsilon: 1e-3 })));
    const ours = await fused.run(feeds);
    await fused.release();
    const oursParams = Float32Array.from(trainable.flatMap((s) => Array.from(ours[updatedName(s.name)].data as Float32Array)));
    expect(Math.abs(ortLoss - (ours.loss.data as Float32Array)[0])).to.be.below(1e-5 * Math.abs(ortLoss));
    // The step moved the parameters far more than the tolerance.
    const before = Float32Array.from(trainable.flatMap((s) => Array.from(w.params.get(s.name)!.data)));
    expect(maxRelDiff(oursParams, before)).to.be.above(1e-2);
    // Per tensor, relative to its largest value: a parameter that the step takes near 0 has no
    // relative error of its own worth the name.
    let offset = 0;
    for (const s of trainable) {
      const n = s.shape.reduce((a, b) => a * b, 1);
      const [theirs, mine, was] = [ortParams, oursParams, before].map((v) => v.subarray(offset, offset + n));
      const scale = Math.max(...Array.from(mine, Math.abs));
      expect(maxAbsDiff(theirs, mine), s.name).to.be.at.most(1e-5 * scale);
      // The step itself, looser: glow-onnx rounds 1 - beta2^t to float32 (0.00099998713 for
      // t = 1), which scales its first step by 1 + 6.5e-6; the rest is the parameters' rounding.
      // (A tensor whose gradient is 0, learn_top's conv on a zero prior_h, must not move at all.)
      const step = (v: Float32Array) => Float64Array.from(v, (x, i) => x - was[i]);
      expect(maxAbsDiff(step(theirs), step(mine)), s.name).to.be.at.most(1e-4 * Math.max(...Array.from(step(mine), Math.abs)));
      offset += n;
    }
  });

  it('a trained checkpoint reads back as the model ORT trained (weights.safetensors, then an export)', async () => {
    const w = perturbed(config, 3);
    const ortTraining = await loadTrainingBuild();
    const session = await createOrtTrainingSession(buildOrtTrainingArtifacts(w, { learningRate: 1e-2 }));
    let trained: Float32Array;
    try {
      const { x, y } = batch(new Rng(6), 4, config);
      await session.runTrainStep({ x: new ortTraining.Tensor('float32', x, [4, 1, 8, 8]), y: new ortTraining.Tensor('float32', y, [4, 3]) });
      await session.runOptimizerStep();
      trained = (await session.getContiguousParameters(true)).data as Float32Array;
    } finally {
      await session.release();
    }
    let offset = 0;
    const params = new Map(w.params);
    for (const s of paramSpecs(config).filter((p) => p.trainable)) {
      const n = s.shape.reduce((a, b) => a * b, 1);
      params.set(s.name, { shape: s.shape, data: Float64Array.from(trained.subarray(offset, offset + n)) });
      offset += n;
    }
    const after: GlowWeights = { ...w, params };
    const dir = mkdtempSync(join(tmpdir(), 'glow-odtc-'));
    try {
      const file = join(dir, 'checkpoint');
      const bytes = ortTrainingCheckpoint(after);
      // What ORT itself loads, not only what our reader accepts.
      const reloaded = await createOrtTrainingSession({ ...buildOrtTrainingArtifacts(w, { learningRate: 1e-2 }), checkpoint: bytes });
      expect(Array.from((await reloaded.getContiguousParameters(true)).data as Float32Array)).to.deep.equal(Array.from(trained));
      await reloaded.release();
      writeFileSync(file, bytes);
      const imported = cli('import', file, '--out', join(dir, 'model'));
      expect(imported.code, imported.stderr).to.equal(0);
      expect(Buffer.compare(readFileSync(join(dir, 'model', 'weights.safetensors')), Buffer.from(checkpointBytes(after)))).to.equal(0);
      const exported = cli('export', '--weights', file, '--out', join(dir, 'export'));
      expect(exported.code, exported.stderr).to.equal(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the command writes the four files, and refuses an unknown --format in one line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'glow-ort-artifacts-'));
    try {
      const weights = join(dir, 'w.safetensors');
      writeFileSync(weights, checkpointBytes(initWeights({ ...config, numClasses: 0, K: 1, L: 1 }, 4)));
      const ok = cli('artifacts', '--weights', weights, '--out', join(dir, 'a'), '--format', 'ort-training');
      expect(ok.code, ok.stderr).to.equal(0);
      const c = readOdtc(readFileSync(join(dir, 'a', 'checkpoint')), 'checkpoint');
      expect(c.frozen.map((t) => t.name).filter((n) => /invconv\.(p|sign_s)$/.test(n))).to.have.length(2);
      const bad = cli('artifacts', '--weights', weights, '--out', join(dir, 'b'), '--format', 'ort');
      expect(bad.code).to.equal(2);
      expect(bad.stderr.trim().split('\n')).to.deep.equal(['glow-onnx artifacts: --format must be portable or ort-training, got ort']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('train --engine ort-training', function () {
  this.timeout(600000);

  it('a few hundred TrainingSession steps lower the test bits/dim, and the run ends in weights ORT can reload', async () => {
    const out = mkdtempSync(join(tmpdir(), 'glow-ort-train-'));
    try {
      const reports: EpochReport[] = [];
      const small: GlowConfig = { ...config, K: 1, learnTop: false };
      const result = await trainWithOrtTraining(initWeights(small, 8), { train: blobDataset(240, 1), test: blobDataset(32, 2) }, {
        out, batchSize: 8, learningRate: 2e-3, warmupSteps: 0, emaDecay: 0, checkpointEvery: 1000, seed: 3, initBatch: 32, evalLimit: 32, epochs: 7,
      }, { onEpoch: (r) => reports.push(r) });
      expect(result.steps).to.equal(210);
      expect(reports).to.have.length(7);
      expect(reports.at(-1)!.testBpd!).to.be.below(reports[0].testBpd! - 0.1);
      const back = weightsFromOdtc(readFileSync(join(out, ORT_TRAINING_DIR, 'checkpoint')), 'checkpoint');
      expect(Buffer.compare(Buffer.from(checkpointBytes(back)), readFileSync(join(out, 'weights.safetensors')))).to.equal(0);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

describe('ODTC checkpoints', () => {
  const sample: OdtcCheckpoint = {
    version: ODTC_VERSION,
    trainable: [{ name: 'a', dims: [2, 3], data: Float32Array.of(1, -2, 3.5, 0, 1e-30, -7) }, { name: 'empty', dims: [0], data: new Float32Array(0) }],
    frozen: [{ name: 'b', dims: [], data: Float32Array.of(42) }],
    optimizerGroups: [{ name: 'group0', step: 7, initialLearningRate: 0.5, states: [{ param: 'a', momentums: [{ name: 'momentum0', dims: [2, 3], data: new Float32Array(6).fill(0.25) }, { name: 'momentum1', dims: [2, 3], data: new Float32Array(6).fill(2) }] }] }],
    ints: { epoch: 3, big: 2 ** 40 }, floats: { best: 1.5 }, strings: { note: 'héllo' },
  };

  it('round-trip through the writer and the reader, byte for byte on rewrite', () => {
    const bytes = writeOdtc(sample);
    const back = readOdtc(bytes, 'sample');
    expect(back).to.deep.equal(sample);
    expect(Buffer.compare(Buffer.from(writeOdtc(back)), Buffer.from(bytes))).to.equal(0);
  });

  it('an unknown version is refused with our one-line message, before ORT sees the bytes', async () => {
    const bytes = writeOdtc(sample);
    // The version is the root table's first field: patch it where the reader finds it.
    const view = new DataView(bytes.buffer);
    const root = view.getUint32(0, true);
    const vtable = root - view.getInt32(root, true);
    view.setInt32(root + view.getUint16(vtable + 4, true), 3, true);
    const message = 'bad: ODTC checkpoint version 3 is not supported (ONNX Runtime 1.19\'s training build reads version 2 only)';
    expect(() => readOdtc(bytes, 'bad')).to.throw(OdtcError, message);
    expect(() => writeOdtc({ ...sample, version: 3 })).to.throw(OdtcError, /version 3 is not supported/);
    const w = initWeights({ ...config, K: 1, L: 1 }, 7);
    const files = buildOrtTrainingArtifacts(w, { learningRate: 1e-3 });
    const good = files.checkpoint;
    const gv = new DataView(good.buffer, good.byteOffset);
    const groot = gv.getUint32(0, true);
    gv.setInt32(groot + gv.getUint16(groot - gv.getInt32(groot, true) + 4, true), 3, true);
    let error: Error | undefined;
    await createOrtTrainingSession(files, 'bad').catch((e: Error) => { error = e; });
    expect(error?.message).to.equal(message);
  });

  it('damaged files end in one line naming the file', () => {
    const bytes = writeOdtc(sample);
    for (const cut of [8, 40, bytes.length - 3]) {
      expect(() => readOdtc(bytes.subarray(0, cut), 'cut')).to.throw(OdtcError, /^cut: /);
    }
    expect(() => readOdtc(Uint8Array.from([0, 0, 0, 0, 0x4f, 0x44, 0x54, 0x43]), 'zero')).to.throw(OdtcError, /^zero: /);
    expect(() => readOdtc(new Uint8Array(16), 'junk')).to.throw(OdtcError, 'junk: not an ODTC checkpoint (no "ODTC" file identifier)');
    expect(() => writeOdtc({ ...sample, frozen: [{ name: 'a', dims: [1], data: Float32Array.of(1) }] })).to.throw(OdtcError, 'checkpoint: parameter a appears twice');
  });

  it('a checkpoint without our config is refused by the weights reader in one line', () => {
    const bytes = writeOdtc({ ...sample, strings: {} });
    expect(() => weightsFromOdtc(bytes, 'foreign')).to.throw(/^foreign carries no Glow config in its string properties: pass --config FILE$/);
  });
});
