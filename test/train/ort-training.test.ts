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
import { buildOrtTrainingArtifacts, ORT_TRAINING_FILES, OrtTrainingFile } from '../../src/train/ort-artifacts.js';
import { ortTrainingCheckpoint, weightsFromOdtc } from '../../src/glow/odtc-weights.js';
import { checkpointBytes, initWeights } from '../../src/glow/params.js';
import { Rng } from '../../src/math/rng.js';
import { buildEvalModel, buildFusedTrainStep } from '../../src/train/graphs.js';
import { momentNames, updatedName } from '../../src/train/names.js';
import { OdtcCheckpoint, OdtcError, ODTC_VERSION, readOdtc, writeOdtc } from '../../src/io/odtc.js';
import { createOrtTrainingSession, loadTrainingBuild, OrtTrainingUnavailable, runEvalStep } from '../../src/train/ort-runtime.js';
import { ORT_TRAINING_DIR, trainWithOrtTraining } from '../../src/train/ort-loop.js';
import { loadMnist } from '../../src/runtime/mnist.js';
import { dequantize } from '../../src/runtime/quantize.js';
import { EpochReport, initialiseActNorms, labelsOf, TrainOptions } from '../../src/train/run.js';
import { adamScalars, cli, maxRelDiff } from '../helpers.js';

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

  it('every kind of config glow-onnx trains loads, and its train step gives the loss of glow-onnx\'s eval model', async () => {
    const variants: Partial<GlowConfig>[] = [
      { coupling: 'additive', permutation: 'shuffle' },
      { permutation: 'reverse', numClasses: 0, learnTop: false, constantSplitScale: true },
      { imageShape: [3, 8, 8], scaleFloor: 0.2, zerosPadValue: 1 },
    ];
    const ortTraining = await loadTrainingBuild();
    for (const variant of variants) {
      const c: GlowConfig = { ...config, K: 1, ...variant };
      const w = perturbed(c, 4);
      const { x, y } = batch(new Rng(7), 2, c);
      const files = buildOrtTrainingArtifacts(w, { learningRate: 1e-3 });
      const session = await createOrtTrainingSession(files);
      let loss: number;
      try {
        const feeds: Record<string, InstanceType<typeof ortTraining.Tensor>> = { x: new ortTraining.Tensor('float32', x, [2, ...c.imageShape]) };
        if (c.numClasses) feeds.y = new ortTraining.Tensor('float32', y, [2, c.numClasses]);
        loss = ((await session.runTrainStep(feeds)).loss.data as Float32Array)[0];
      } finally {
        await session.release();
      }
      const evalFeeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, [2, ...c.imageShape]) };
      if (c.numClasses) evalFeeds.y = new ort.Tensor('float32', y, [2, c.numClasses]);
      for (const s of paramSpecs(c).filter((p) => p.trainable)) evalFeeds[s.name] = new ort.Tensor('float32', Float32Array.from(w.params.get(s.name)!.data), s.shape);
      const evaluation = await ort.InferenceSession.create(serializeModel(buildEvalModel(w)));
      const expected = ((await evaluation.run(evalFeeds)).loss.data as Float32Array)[0];
      await evaluation.release();
      expect(loss, JSON.stringify(variant)).to.be.closeTo(expected, 1e-5 * Math.abs(expected));
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
      x: new ort.Tensor('float32', x, [4, 1, 8, 8]), y: new ort.Tensor('float32', y, [4, 3]), ...adamScalars(1, lr, { epsilon: 1e-3 }),
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
    const before = Float32Array.from(trainable.flatMap((s) => Array.from(w.params.get(s.name)!.data)));
    // The step moved the parameters far more than the tolerance.
    expect(maxRelDiff(oursParams, before)).to.be.above(1e-2);
    // Per element within 1e-5 of the updated value. Where the step takes a parameter near 0, the
    // two runtimes' differences in the step itself (their gradients' rounding: up to 7.2e-7 of
    // the step measured where |updated| < |step|) are amplified by |step| / |updated|, without
    // limit; so the bound never falls below 1e-5 of a quarter of the step. The old bias
    // correction cannot hide in that floor: 1 - beta2^t rounded to float32 (0.00099998713 for
    // t = 1) shrank every first step by 6.7e-6 of itself, 2.7 times the floor.
    let offset = 0;
    let worst = 0;
    for (const s of trainable) {
      const n = s.shape.reduce((a, b) => a * b, 1);
      for (let i = offset; i < offset + n; i++) {
        const error = Math.abs(ortParams[i] - oursParams[i]);
        const bound = 1e-5 * Math.max(Math.abs(oursParams[i]), 0.25 * Math.abs(oursParams[i] - before[i]));
        // A tensor whose gradient is 0 (learn_top's conv on a zero prior_h) must not move at all.
        const ratio = error === 0 ? 0 : error / bound;
        expect(ratio, `${s.name}[${i - offset}]: ORT ${ortParams[i]}, glow-onnx ${oursParams[i]}, from ${before[i]}`).to.be.at.most(1);
        worst = Math.max(worst, ratio);
      }
      offset += n;
    }
    console.log(`      worst parameter error ${worst.toFixed(2)} of the bound`);
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

  it('200 TrainingSession steps on MNIST lower the eval loss, and the run ends in weights ORT can reload', async () => {
    const out = mkdtempSync(join(tmpdir(), 'glow-ort-train-'));
    try {
      const mnist: GlowConfig = { imageShape: [1, 28, 28], K: 1, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv', lu: true, learnTop: false, numClasses: 10, nBits: 8, actnormScale: 1 };
      const [train, test] = [loadMnist('train', 1600), loadMnist('test', 64)];
      const options: TrainOptions = {
        out, batchSize: 8, learningRate: 1e-3, warmupSteps: 0, emaDecay: 0, checkpointEvery: 1000, seed: 3, initBatch: 64, evalLimit: 64, epochs: 1,
      };
      const reports: EpochReport[] = [];
      const initial = initWeights(mnist, 8);
      const result = await trainWithOrtTraining(initial, { train, test }, options, { onEpoch: (r) => reports.push(r) });
      expect(result.steps).to.equal(200);
      expect(reports).to.have.length(1);

      // ORT's own eval step on the test images with the dequantisation noise of the run's
      // evaluation: the start (the ActNorm init the run began from) against the checkpoint the
      // run saved.
      const x = new Float32Array(dequantize(test.pixels, mnist.nBits, new Rng(options.seed + 7)));
      const y = labelsOf(test, 0, test.count, mnist.numClasses)!;
      const ortTraining = await loadTrainingBuild();
      const evaluation = async (checkpoint: Uint8Array) => {
        const dir = join(out, ORT_TRAINING_DIR);
        const files = Object.fromEntries(ORT_TRAINING_FILES.map((f) => [f, f === 'checkpoint' ? checkpoint : readFileSync(join(dir, f))])) as Record<OrtTrainingFile, Uint8Array>;
        const session = await createOrtTrainingSession(files);
        try {
          const outputs = await runEvalStep(session, { x: new ortTraining.Tensor('float32', x, [test.count, 1, 28, 28]), y: new ortTraining.Tensor('float32', y, [test.count, 10]) });
          const bpd = outputs.bpd.data as Float32Array;
          return { loss: (outputs.loss.data as Float32Array)[0], bpd: bpd.reduce((a, b) => a + b, 0) / bpd.length };
        } finally {
          await session.release();
        }
      };
      const before = await evaluation(ortTrainingCheckpoint(await initialiseActNorms(initial, train, options)));
      const after = await evaluation(readFileSync(join(out, ORT_TRAINING_DIR, 'checkpoint')));
      console.log(`      eval loss ${before.loss.toFixed(3)} -> ${after.loss.toFixed(3)} after 200 steps; test bits/dim ${after.bpd.toFixed(4)} (ORT's eval step), the run's report ${(Math.abs(reports[0].testBpd! / after.bpd - 1)).toExponential(1)} off`);
      expect(after.loss).to.be.below(before.loss - 0.5);
      // The run's report (the exported model in onnxruntime-node) says what ORT's eval graph says.
      expect(reports[0].testBpd!).to.be.closeTo(after.bpd, 1e-5 * after.bpd);
      // The engine's own eval-step loss, batch by batch, is the eval model's over the same images.
      expect(reports[0].evalLoss!).to.be.closeTo(after.loss, 1e-5 * after.loss);
      const back = weightsFromOdtc(readFileSync(join(out, ORT_TRAINING_DIR, 'checkpoint')), 'checkpoint');
      expect(Buffer.compare(Buffer.from(checkpointBytes(back)), readFileSync(join(out, 'weights.safetensors')))).to.equal(0);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

describe('ONNX Runtime\'s training build', () => {
  const install = 'npm install onnxruntime-training-web@npm:onnxruntime-web@1.19.2';
  const failure = (pkg: string) => loadTrainingBuild(pkg).then(() => new Error(`${pkg} loaded`), (e: Error) => e);

  it('absent, it is one line saying how to install it', async () => {
    const e = await failure('glow-onnx-absent-training-build');
    expect(e).to.be.instanceOf(OrtTrainingUnavailable);
    expect(e.message).to.equal(`ONNX Runtime's training build is not installed: ${install}`);
  });

  it('a package without it (onnxruntime-web 1.30 dropped it) is one line saying how to install it', async () => {
    const e = await failure('onnxruntime-web');
    expect(e).to.be.instanceOf(OrtTrainingUnavailable);
    expect(e.message).to.satisfy((m: string) => m.startsWith('onnxruntime-web has no training build (') && m.endsWith(`): ${install}`) && !m.includes('\n'), e.message);
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
