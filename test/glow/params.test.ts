import { expect } from 'chai';
import { configFromFlags } from '../../src/cli/flags.js';
import { DEFAULT_CONFIG, GlowConfig, validateConfig } from '../../src/glow/config.js';
import { identity, matmul, matrix, transpose } from '../../src/math/linalg.js';
import { buildDecode, buildEncode, trainableEncode } from '../../src/glow/model.js';
import { paramSpecs, stepPrefix } from '../../src/glow/names.js';
import { checkpointBytes, CONV_WEIGHT_STD, initWeights, parseCheckpoint, WeightsError } from '../../src/glow/params.js';
import { Rng } from '../../src/math/rng.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { HostTensor } from '../../src/math/tensor.js';
import { maxAbsDiff, runGraph } from '../helpers.js';
import { refDecode, refEncode } from '../reference/glow64.js';

const small: GlowConfig = { ...DEFAULT_CONFIG, imageShape: [2, 8, 8], K: 2, L: 2, hiddenChannels: 16 };

function expectThrows(f: () => unknown, type: new (...a: never[]) => Error, ...fragments: string[]): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected an error').to.be.instanceOf(type);
  for (const fragment of fragments) expect((caught as Error).message).to.contain(fragment);
}

describe('paper initialisation', () => {
  const w = initWeights({ ...small, hiddenChannels: 64 }, 3);
  const C = 8;
  const prefix = stepPrefix(w.config, 0, 1);
  const get = (name: string) => w.params.get(name)!;

  it('builds an orthogonal 1x1 conv from its LU factors', () => {
    const l = matrix(C, C, get(`${prefix}.invconv.lower`).data);
    const u = matrix(C, C, get(`${prefix}.invconv.upper`).data);
    const logS = get(`${prefix}.invconv.log_s`).data;
    const signS = get(`${prefix}.invconv.sign_s`).data;
    for (let i = 0; i < C; i++) {
      expect(l.data[i * C + i]).to.equal(1);
      for (let j = 0; j <= i; j++) expect(u.data[i * C + j], 'upper keeps only the strict upper triangle').to.equal(0);
      u.data[i * C + i] = signS[i] * Math.exp(logS[i]);
    }
    const W = matmul(matrix(C, C, get(`${prefix}.invconv.p`).data), matmul(l, u));
    expect(maxAbsDiff(matmul(W, transpose(W)).data, identity(C).data)).to.be.below(1e-12);
  });

  it('zero-initialises the last coupling conv, the priors and the ActNorms, N(0, 0.05) elsewhere', () => {
    for (const spec of paramSpecs(w.config)) {
      const data = get(spec.name).data;
      if (/block\.[02]\.conv\.weight$/.test(spec.name)) continue;
      if (spec.name.includes('.invconv.')) continue;
      expect(data.every((v) => v === 0), spec.name).to.equal(true);
    }
    const conv = Array.from(get(`${prefix}.block.2.conv.weight`).data);
    const mean = conv.reduce((a, b) => a + b, 0) / conv.length;
    const std = Math.sqrt(conv.reduce((a, b) => a + (b - mean) ** 2, 0) / conv.length);
    expect(std).to.be.closeTo(CONV_WEIGHT_STD, 0.003);
    expect(mean).to.be.closeTo(0, 0.003);
  });

  it('gives a finite bpd on uniform noise that matches the float64 reference; T = 0 decodes the prior means', async () => {
    const rng = new Rng(9);
    const x: HostTensor = { shape: [4, 2, 8, 8], data: new Float64Array(4 * 128).map(() => rng.uniform() - 0.5) };
    const enc = await runGraph(buildEncode(w), { x });
    const ref = refEncode({ config: w.config, params: w.params as Map<string, HostTensor> }, x);
    expect(enc.bpd.data.every(Number.isFinite)).to.equal(true);
    expect(maxAbsDiff(enc.bpd.data, ref.bpd)).to.be.below(1e-4);
    const eps: Record<string, HostTensor> = {};
    ref.eps.forEach((e, i) => (eps[`eps_${i + 1}`] = { shape: e.shape, data: e.data.map(() => 7) }));
    const atZero = await runGraph(buildDecode(w), { ...eps, temperature: 0 });
    const zeroEps = ref.eps.map((e) => ({ shape: e.shape, data: new Float64Array(e.data.length) }));
    const means = refDecode({ config: w.config, params: w.params as Map<string, HostTensor> }, zeroEps, 1);
    expect(maxAbsDiff(atZero.x.data, means.data)).to.be.below(1e-5);
  });

  it('draws a fresh permutation per step for shuffle models', () => {
    const s = initWeights({ ...small, permutation: 'shuffle' }, 1).shuffles!;
    expect(s.size).to.equal(small.K * small.L);
    const orders = [...s.values()].map((p) => p.join());
    expect(new Set(orders).size).to.be.greaterThan(1);
  });
});

describe('native checkpoint', () => {
  it('round-trips weights (float32), config and shuffle orders, in state_dict names and order', () => {
    for (const config of [small, { ...small, permutation: 'shuffle' as const, lu: false, numClasses: 3 }]) {
      const w = initWeights(config, 5);
      const bytes = checkpointBytes(w);
      const file = readSafetensors(bytes);
      expect([...file.tensors.keys()]).to.deep.equal(paramSpecs(config).map((s) => s.name));
      expect([...file.tensors.values()].every((t) => t.dtype === 'F32')).to.equal(true);
      const back = parseCheckpoint(bytes, 'test');
      expect(back.config).to.deep.equal(config);
      for (const [name, t] of w.params) expect(maxAbsDiff(back.params.get(name)!.data, Float32Array.from(t.data)), name).to.equal(0);
      if (config.permutation === 'shuffle') expect([...back.shuffles!]).to.deep.equal([...w.shuffles!]);
      expect(Buffer.compare(checkpointBytes(back), bytes), 'deterministic bytes').to.equal(0);
    }
  });

  it('lists every missing, unexpected and mismatched key in one error', () => {
    const w = initWeights(small, 1);
    const params = new Map(w.params);
    params.delete('prior_h');
    params.delete(`${stepPrefix(small, 0, 0)}.actnorm.bias`);
    params.set('surprise', { shape: [1], data: new Float64Array(1) });
    params.set(`${stepPrefix(small, 1, 0)}.block.0.conv.weight`, { shape: [1, 2], data: new Float64Array(2) });
    expectThrows(() => checkpointBytes({ ...w, params }), WeightsError, 'missing keys (2)', 'prior_h', 'unexpected keys (1): surprise', 'shape mismatches (1)');
  });

  it('refuses NaN/Inf weights and singular 1x1 convolutions', () => {
    const w = initWeights(small, 1);
    const nan = new Map(w.params);
    const name = `${stepPrefix(small, 0, 0)}.block.0.conv.weight`;
    nan.set(name, { ...nan.get(name)!, data: nan.get(name)!.data.map((v, i) => (i === 3 ? NaN : v)) });
    expectThrows(() => checkpointBytes({ ...w, params: nan }), WeightsError, 'non-finite', name);
    const plain = initWeights({ ...small, lu: false }, 1);
    const singular = new Map(plain.params);
    const wName = `${stepPrefix(small, 1, 1)}.invconv.weight`;
    singular.set(wName, { shape: [16, 16], data: new Float64Array(256) });
    expectThrows(() => checkpointBytes({ ...plain, params: singular }), WeightsError, 'singular', wName);
  });

  it('needs a config and, for shuffle models, the channel orders', () => {
    const w = initWeights({ ...small, permutation: 'shuffle' }, 1);
    const bytes = checkpointBytes({ ...w, shuffles: undefined, config: { ...w.config, permutation: 'reverse' } });
    expectThrows(() => parseCheckpoint(bytes, 'file.safetensors', w.config), WeightsError, 'shuffle permutations are not stored');
  });
});

describe('config validation', () => {
  it('explains every problem', () => {
    expectThrows(() => validateConfig({ ...small, K: 0, coupling: 'spline', imageShape: [1, 6, 8] }), Error,
      'K must be a positive integer', "coupling must be 'additive' or 'affine'");
    expectThrows(() => validateConfig({ ...small, imageShape: [1, 6, 8] }), Error, 'multiples of 2^L = 4');
    expectThrows(() => validateConfig({ ...small, extra: 1 }), Error, 'unknown key(s) extra');
    expectThrows(() => validateConfig({ K: 1 }), Error, 'missing imageShape');
    expectThrows(() => validateConfig([]), Error, 'JSON object');
  });

  it('scaleFloor is optional, written only when set, and bounded', () => {
    expect(validateConfig(small)).to.not.have.property('scaleFloor');
    expect(validateConfig({ ...small, scaleFloor: 0 })).to.not.have.property('scaleFloor');
    expect(validateConfig({ ...small, scaleFloor: 0.15 }).scaleFloor).to.equal(0.15);
    for (const bad of [-0.1, 1, 1e-40, '0.1', Number.NaN]) {
      expectThrows(() => validateConfig({ ...small, scaleFloor: bad }), Error, 'scaleFloor must be 0 (no floor) or a number in [2^-126, 1)');
    }
    expectThrows(() => validateConfig({ ...small, coupling: 'additive', scaleFloor: 0.1 }), Error, 'an "additive" coupling has none');
  });

  it('lu is one flag or one per level; a list that agrees everywhere is stored as the flag', () => {
    expect(validateConfig({ ...small, lu: [false, true] }).lu).to.deep.equal([false, true]);
    expect(validateConfig({ ...small, lu: [true, true] }).lu).to.equal(true);
    expect(validateConfig({ ...small, lu: [false, false] }).lu).to.equal(false);
    expectThrows(() => validateConfig({ ...small, lu: [true] }), Error, 'lu lists 1 level(s) but the model has L = 2: give one true/false per level');
    for (const bad of ['true', [true, 1], null, {}]) {
      expectThrows(() => validateConfig({ ...small, lu: bad }), Error, 'lu must be true, false or a list of them (one per level)');
    }
  });

  it('--lu takes one flag or one per level, with one-line errors', () => {
    expect(configFromFlags({ L: '2', lu: 'false,true' }).lu).to.deep.equal([false, true]);
    expect(configFromFlags({ L: '2', lu: 'true,true' }).lu).to.equal(true);
    expect(configFromFlags({ lu: 'false' }).lu).to.equal(false);
    expectThrows(() => configFromFlags({ L: '2', lu: 'false,yes' }), Error, '--lu must be true, false or one of them per level (false,false,true), got false,yes');
    expectThrows(() => configFromFlags({ L: '2', lu: 'false,true,true' }), Error, 'lu lists 3 level(s) but the model has L = 2');
  });

  it('a mixed lu has LU tensors on its LU levels and a plain W elsewhere; training takes L, U, log_s and holds W', () => {
    const mixed = validateConfig({ ...small, lu: [false, true] });
    const specs = new Map(paramSpecs(mixed).map((s) => [s.name, s]));
    for (let k = 0; k < mixed.K; k++) {
      const plain = `${stepPrefix(mixed, 0, k)}.invconv`;
      const lu = `${stepPrefix(mixed, 1, k)}.invconv`;
      expect(specs.get(`${plain}.weight`)?.trainable, plain).to.equal(false);
      expect(specs.has(`${plain}.lower`)).to.equal(false);
      for (const n of ['lower', 'upper', 'log_s']) expect(specs.get(`${lu}.${n}`)?.trainable, `${lu}.${n}`).to.equal(true);
      for (const n of ['p', 'sign_s']) expect(specs.get(`${lu}.${n}`)?.trainable, `${lu}.${n}`).to.equal(false);
      expect(specs.has(`${lu}.weight`)).to.equal(false);
    }
    // Initialised as the paper does, per level: W orthogonal either way, the LU level's from its factors.
    const w = initWeights(mixed, 3);
    const bytes = checkpointBytes(w);
    expect(parseCheckpoint(bytes, 'mixed.safetensors').config.lu).to.deep.equal([false, true]);
    const { g, trainable } = trainableEncode(w);
    const inputs = g.build().inputs.map((io) => io.value.name);
    expect(inputs).to.include(`${stepPrefix(mixed, 1, 0)}.invconv.lower`).and.not.include(`${stepPrefix(mixed, 0, 0)}.invconv.weight`);
    expect(trainable.length).to.equal([...specs.values()].filter((s) => s.trainable).length);
    expectThrows(() => trainableEncode(initWeights({ ...small, lu: false }, 3)), Error, 'train with lu: true');
  });

  it('scaleBound and lipschitz are optional, written only when set, and checked', () => {
    expect(validateConfig(small)).to.not.have.property('scaleBound');
    expect(validateConfig(small)).to.not.have.property('lipschitz');
    const both = validateConfig({ ...small, coupling: 'affine', scaleBound: 0.5, lipschitz: 0.9 });
    expect([both.scaleBound, both.lipschitz]).to.deep.equal([0.5, 0.9]);
    for (const bad of [0, 1, 1e-4, '0.5', Number.NaN]) {
      expectThrows(() => validateConfig({ ...small, coupling: 'affine', scaleBound: bad }), Error, 'scaleBound must be a number in [0.001, 1)');
    }
    expectThrows(() => validateConfig({ ...small, coupling: 'additive', scaleBound: 0.5 }), Error, 'an "additive" coupling has none');
    expectThrows(() => validateConfig({ ...small, coupling: 'affine', scaleBound: 0.5, scaleFloor: 0.2 }), Error, 'give one');
    for (const bad of [0, -1, Infinity, '1']) {
      expectThrows(() => validateConfig({ ...small, lipschitz: bad }), Error, 'lipschitz must be a finite number > 0');
    }
  });

  it('constantSplitScale is optional, written only when true, and needs a split', () => {
    expect(validateConfig({ ...small, constantSplitScale: false })).to.not.have.property('constantSplitScale');
    expect(validateConfig({ ...small, L: 2, constantSplitScale: true }).constantSplitScale).to.equal(true);
    for (const bad of [1, 'true', null]) {
      expectThrows(() => validateConfig({ ...small, constantSplitScale: bad }), Error, 'constantSplitScale must be true or false');
    }
    expectThrows(() => validateConfig({ ...small, L: 1, constantSplitScale: true }), Error, 'a model with L = 1 has no split');
  });

  it('zerosPadValue is optional, written only when 1, and 0 or 1', () => {
    expect(validateConfig({ ...small, zerosPadValue: 0 })).to.not.have.property('zerosPadValue');
    expect(validateConfig({ ...small, zerosPadValue: 1 }).zerosPadValue).to.equal(1);
    for (const bad of [0.5, -1, '1', null]) {
      expectThrows(() => validateConfig({ ...small, zerosPadValue: bad }), Error, "zerosPadValue must be 0 (zero padding) or 1 (rosinality's ZeroConv2d)");
    }
  });
});
