import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GlowConfig, latentShape } from '../../src/glow/config.js';
import { exportModel } from '../../src/glow/export.js';
import { GlowWeights } from '../../src/glow/model.js';
import { InputError } from '../../src/runtime/core.js';
import { attributeDirection, interpolate, manipulate, pick, sampleEps, stack } from '../../src/runtime/generate.js';
import { latentsBytes, parseLatents } from '../../src/runtime/latents.js';
import { GlowRuntime, loadGlowRuntime, ModelFileError } from '../../src/runtime/node.js';
import { writeFilesAtomic } from '../../src/io/files.js';
import { maxAbsDiff } from '../helpers.js';
import { randomImages, randomOneHot, randomParams } from '../../support/random-params.js';

const config: GlowConfig = {
  imageShape: [2, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};
const conditional: GlowConfig = { ...config, numClasses: 3 };

async function rejects(promise: Promise<unknown>, type: new (...a: never[]) => Error, fragment: string): Promise<void> {
  let error: unknown;
  await promise.catch((e) => (error = e));
  expect(error, `expected ${type.name}: ${fragment}`).to.be.instanceOf(type);
  expect((error as Error).message).to.contain(fragment);
}

function writeModel(dir: string, c: GlowConfig, seed: number): string {
  const w: GlowWeights = { config: c, params: randomParams(c, seed) };
  writeFilesAtomic(dir, { ...exportModel(w) });
  return dir;
}

describe('GlowModel (onnxruntime-node CPU)', function () {
  this.timeout(60000);
  let dir: string;
  let runtime: GlowRuntime;
  let conditionalRuntime: GlowRuntime;
  const x = Float32Array.from(randomImages(config, 7, 3).data);
  const shape = [7, 2, 8, 8];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'glow-core-'));
    runtime = await loadGlowRuntime(writeModel(join(dir, 'm'), config, 1), { batchSize: 3 });
    conditionalRuntime = await loadGlowRuntime(writeModel(join(dir, 'c'), conditional, 2));
  });
  after(async () => {
    await runtime.model.release();
    await conditionalRuntime.model.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it('batches without changing results, and inverts', async () => {
    const whole = await loadGlowRuntime(join(dir, 'm'), { batchSize: 64 });
    const a = await runtime.model.encode(x, shape);
    const b = await whole.model.encode(x, shape);
    a.eps.forEach((e, l) => expect(maxAbsDiff(e, b.eps[l]), `eps_${l + 1}`).to.be.below(1e-6));
    expect(maxAbsDiff(a.bpd, b.bpd)).to.be.below(1e-6);
    expect(runtime.providers).to.deep.equal({ encode: 'cpu', decode: 'cpu' });
    const progress: number[] = [];
    const xr = await runtime.model.decode(a.eps, 1, undefined, (done) => progress.push(done));
    expect(progress).to.deep.equal([3, 6, 7]);
    expect(maxAbsDiff(xr, x)).to.be.below(1e-4);
    await whole.model.release();
  });

  it('rejects bad images: shape, channels, size, NaN/Inf, range, empty batch', async () => {
    const m = runtime.model;
    await rejects(m.encode(x, [7, 2, 64]), InputError, 'must be 4-D');
    await rejects(m.encode(new Float32Array(7 * 3 * 64), [7, 3, 8, 8]), InputError, 'x has 3 channels, the model expects 2');
    await rejects(m.encode(new Float32Array(7 * 2 * 16 * 4), [7, 2, 16, 4]), InputError, 'x is 16x4, the model expects 8x8');
    await rejects(m.encode(x.slice(1), shape), InputError, 'shape [7, 2, 8, 8] needs 896');
    await rejects(m.encode(new Float32Array(0), [0, 2, 8, 8]), InputError, 'empty batch');
    for (const bad of [NaN, Infinity, -Infinity]) {
      const copy = x.slice();
      copy[100] = bad;
      await rejects(m.encode(copy, shape), InputError, 'non-finite value');
    }
    const outOfRange = x.slice();
    outOfRange[5] = 1.7;
    await rejects(m.encode(outOfRange, shape), InputError, 'outside [-0.5, 0.5)');
  });

  it('rejects bad latents, temperatures and labels', async () => {
    const m = runtime.model;
    const eps = sampleEps(config, 4, 0);
    await rejects(m.decode(eps.slice(0, 1), 1), InputError, 'expected 2 latents');
    await rejects(m.decode([eps[0], eps[1].slice(1)], 1), InputError, 'eps_2 has');
    await rejects(m.decode([eps[0].slice(3), eps[1]], 1), InputError, 'not a positive multiple');
    for (const t of [NaN, -0.5, Infinity]) await rejects(m.decode(eps, t), InputError, 'temperature must be a finite number >= 0');
    const nanEps = [eps[0].slice(), eps[1]];
    nanEps[0][0] = NaN;
    await rejects(m.decode(nanEps, 1), InputError, 'eps_1 holds a non-finite value');
    await rejects(m.decode(eps, 1, new Float32Array(12)), InputError, 'not class-conditional');
    await rejects(conditionalRuntime.model.decode(eps, 1), InputError, 'pass y, one-hot [N, 3]');
    await rejects(conditionalRuntime.model.decode(eps, 1, new Float32Array(5)), InputError, 'y has 5 values, expected 4 x 3');
  });

  it('class-conditional models take y', async () => {
    const y = Float32Array.from(randomOneHot(conditional, 7, 4).data);
    const enc = await conditionalRuntime.model.encode(x, shape, y);
    expect(enc.yLogits).to.have.length(21);
    const xr = await conditionalRuntime.model.decode(enc.eps, 1, y);
    expect(maxAbsDiff(xr, x)).to.be.below(1e-4);
  });

  it('refuses missing, truncated, foreign and mismatched model files with one clear error', async () => {
    await rejects(loadGlowRuntime(join(dir, 'nowhere')), ModelFileError, 'ENOENT');
    const broken = join(dir, 'broken');
    writeModel(broken, config, 1);
    const truncated = join(dir, 'truncated.onnx');
    writeFileSync(truncated, new Uint8Array(exportModel({ config, params: randomParams(config, 1) })['encode.onnx'].slice(0, 5000)));
    await rejects(loadGlowRuntime({ encode: truncated, decode: join(broken, 'decode.onnx') }), ModelFileError, 'is not an ONNX model');
    const text = join(dir, 'text.onnx');
    writeFileSync(text, 'hello');
    await rejects(loadGlowRuntime({ encode: text, decode: join(broken, 'decode.onnx') }), ModelFileError, 'text.onnx');
    await rejects(loadGlowRuntime({ encode: join(broken, 'decode.onnx'), decode: join(broken, 'decode.onnx') }), ModelFileError, 'is not a Glow encode graph');
    await rejects(loadGlowRuntime({ encode: join(dir, 'c', 'encode.onnx'), decode: join(broken, 'decode.onnx') }), ModelFileError, 'different models');
  });
});

describe('generation helpers', () => {
  it('samples the same eps for the same seed, standard normal', () => {
    const a = sampleEps(config, 50, 7);
    const b = sampleEps(config, 50, 7);
    const c = sampleEps(config, 50, 8);
    expect(maxAbsDiff(a[0], b[0])).to.equal(0);
    expect(maxAbsDiff(a[0], c[0])).to.be.above(0);
    const all = a.flatMap((e) => [...e]);
    const mean = all.reduce((s, v) => s + v, 0) / all.length;
    const variance = all.reduce((s, v) => s + (v - mean) ** 2, 0) / all.length;
    expect(mean).to.be.closeTo(0, 0.05);
    expect(variance).to.be.closeTo(1, 0.05);
    expect(a.map((e) => e.length)).to.deep.equal([1, 2].map((l) => 50 * latentShape(config, l).reduce((p, q) => p * q, 1)));
  });

  it('interpolates from a to b at every level, ends included', () => {
    const [a, b] = [pick(config, sampleEps(config, 2, 1), 0), pick(config, sampleEps(config, 2, 1), 1)];
    const path = interpolate(config, a, b, 5);
    expect(maxAbsDiff(pick(config, path, 0)[1], a[1])).to.equal(0);
    expect(maxAbsDiff(pick(config, path, 4)[0], b[0])).to.be.below(1e-7);
    const mid = pick(config, path, 2);
    expect(maxAbsDiff(mid[0], a[0].map((v, k) => (v + b[0][k]) / 2))).to.be.below(1e-6);
  });

  it('computes attribute directions as mean(with) - mean(without) and applies them', () => {
    const items = [0, 1, 2, 3].map((i) => sampleEps(config, 1, 10 + i));
    const batch = stack(config, items);
    const direction = attributeDirection(config, batch, [true, false, true, false]);
    const expected = items[0][0].map((v, k) => (v + items[2][0][k]) / 2 - (items[1][0][k] + items[3][0][k]) / 2);
    expect(maxAbsDiff(direction[0], expected)).to.be.below(1e-6);
    const moved = manipulate(config, items[1], direction, [0, 2]);
    expect(maxAbsDiff(pick(config, moved, 0)[0], items[1][0])).to.equal(0);
    expect(maxAbsDiff(pick(config, moved, 1)[1], items[1][1].map((v, k) => v + 2 * direction[1][k]))).to.be.below(1e-6);
    expect(() => attributeDirection(config, batch, [true, true, true, true])).to.throw('with and without');
  });

  it("stores latents with their config and refuses another model's", () => {
    const eps = sampleEps(config, 3, 2);
    const bytes = latentsBytes(config, eps, 3);
    const back = parseLatents(bytes, 'l.safetensors', config);
    expect(back.n).to.equal(3);
    back.latents.forEach((e, l) => expect(maxAbsDiff(e, eps[l])).to.equal(0));
    expect(() => parseLatents(bytes, 'l.safetensors', { ...config, K: 3 })).to.throw('latents of another model');
  });
});
