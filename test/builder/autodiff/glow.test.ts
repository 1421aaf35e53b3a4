// The gradient of a whole Glow loss: the literal encode graph (every checkpoint tensor an
// initializer under its own name), loss = mean bpd over the batch, differentiated with respect
// to every trainable checkpoint tensor and checked element by element against central finite
// differences in float64 (all elements of small tensors, a random subset of bigger ones).
// Random non-trivial parameters: the paper's initialisation zeroes whole gradients.

import { expect } from 'chai';
import { addGradients } from '../../../src/builder/autodiff/index.js';
import { Graph, GraphBuilder, Tensor, Value } from '../../../src/builder/graph.js';
import * as op from '../../../src/builder/ops.js';
import { GlowConfig } from '../../../src/glow/config.js';
import { HostTensor } from '../../../src/math/tensor.js';
import { buildEncode } from '../../../src/glow/model.js';
import { buildEvalModel, buildTrainingModel } from '../../../src/train/graphs.js';
import { normalisedConvs, paramSpecs, spectralVectors, splitPrefix } from '../../../src/glow/names.js';
import { effectiveWeight, spectralFactor } from '../../../src/glow/layers/networks.js';
import { maxAbsDiff, runGraph } from '../../helpers.js';
import { refEncode } from '../../reference/glow64.js';
import { randomImages, randomOneHot, randomParams, randomShuffles, Rng } from '../../../support/random-params.js';
import { evaluateGraph as evaluate } from '../../../src/builder/evaluate.js';

const STEP = 1e-6;
const REL = 1e-5;
/** Central differences of a loss of order 1 carry ~1e-10 of float64 rounding: below this, an
 * absolute difference passes whatever the relative one. The rounding grows with the loss
 * (eps·|loss|/STEP: 2.4e-8 at a loss of 106, which one class-conditional draw reaches), so the
 * bound is at least 8 times that. */
const ABS = 1e-8;
const absBound = (loss: number) => Math.max(ABS, 8 * Number.EPSILON * Math.abs(loss) / STEP);
/** Tensors up to this size are checked in full; bigger ones on SAMPLES random elements. */
const SMALL = 16;
const SAMPLES = 10;
/** Conv weights 3x the default spread (std 0.15), the loss staying of order 10. */
const SCALE = 3;

interface Case {
  name: string;
  config: GlowConfig;
  batch: number;
  opset?: number;
  /** Adds a class term mean(y * y_logits) to the loss, which alone reaches project_class.*;
   * without it, mean bpd does not depend on those tensors and their gradients are zeros. */
  classTerm?: boolean;
  /** Conv weight spread, instead of SCALE. */
  scale?: number;
}

const base: Omit<GlowConfig, 'imageShape' | 'K' | 'L' | 'hiddenChannels'> = {
  coupling: 'affine', permutation: 'invconv', lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};

const CASES: Case[] = [
  {
    name: '[1,4,4] K=2 L=2 hidden 4, affine, LU, learnTop',
    config: { ...base, imageShape: [1, 4, 4], K: 2, L: 2, hiddenChannels: 4 },
    batch: 2,
  },
  {
    // Near the typical scale sigmoid(2) = 0.88, so the floor binds on part of the elements only.
    name: '[1,4,4] K=2 L=2 hidden 4, affine, LU, learnTop, scaleFloor 0.88',
    config: { ...base, imageShape: [1, 4, 4], K: 2, L: 2, hiddenChannels: 4, scaleFloor: 0.88 },
    batch: 2,
  },
  {
    // rosinality's ZeroConv2d: every Conv2dZeros pads with ones (a Pad node before the conv).
    name: '[3,4,4] K=1 L=2 hidden 3, affine, LU, learnTop, zerosPadValue 1',
    config: { ...base, imageShape: [3, 4, 4], K: 1, L: 2, hiddenChannels: 3, zerosPadValue: 1 },
    batch: 2,
    // The padded ones add whole kernels to the zero convs' outputs: at SCALE the loss is in the
    // thousands of bits/dim and central differences lose the 1e-5 to rounding.
    scale: 1,
  },
  {
    // rosinality's --no_lu: plain 1x1 convolutions below, LU on top. Trainable: the top level's
    // L, U and log_s; a plain W is held fixed (names.ts).
    name: '[2,4,4] K=2 L=2 hidden 3, affine, lu [false, true] (plain level 1, LU level 2), learnTop',
    config: { ...base, imageShape: [2, 4, 4], K: 2, L: 2, hiddenChannels: 3, lu: [false, true] },
    batch: 2,
  },
  {
    // Random unit u, v estimate sigma at a fraction of the largest singular value; at 0.1 the
    // normalisation binds on some convs and not on others (checked below), so both branches of
    // its Where carry gradients.
    name: '[2,4,4] K=2 L=2 hidden 4, affine, LU, learnTop, scaleBound 0.5, lipschitz 0.1, constantSplitScale',
    config: { ...base, imageShape: [2, 4, 4], K: 2, L: 2, hiddenChannels: 4, scaleBound: 0.5, lipschitz: 0.1, constantSplitScale: true },
    batch: 2,
  },
  {
    name: '[2,4,4] K=1 L=2 hidden 3, additive, reverse, class-conditional (2 classes)',
    config: { ...base, imageShape: [2, 4, 4], K: 1, L: 2, hiddenChannels: 3, coupling: 'additive', permutation: 'reverse', lu: false, learnTop: false, numClasses: 2 },
    batch: 3,
  },
  {
    name: '[2,4,4] K=2 L=1 hidden 4, affine, shuffle, learnTop, class-conditional (2 classes), opset 18, class term in the loss',
    config: { ...base, imageShape: [2, 4, 4], K: 2, L: 1, hiddenChannels: 4, permutation: 'shuffle', numClasses: 2 },
    batch: 2,
    opset: 18,
    classTerm: true,
  },
];

interface Prepared {
  graph: Graph;
  withGrads: Graph;
  params: Value[];
  feeds: Record<string, Tensor>;
}

/** The encode graph with loss = mean bpd over the batch. */
function withMeanBpd(encode: Graph): Graph {
  const g = GraphBuilder.extend(encode);
  const bpd = encode.outputs.find((io) => io.value.name === 'bpd')!.value;
  g.output(op.reduceMean(g, bpd, [0], false), 'loss');
  return g.build();
}

function prepare(c: Case, seed: number): Prepared {
  const { config } = c;
  // prior_h random too: with the PyTorch zero buffer, learn_top_fn.conv.weight gets no gradient.
  const params = randomParams(config, seed, c.scale ?? SCALE, { priorHStd: 0.5 });
  // With 3-4 hidden channels and small weights, the ActNorm biases decide the ReLUs: a block
  // whose biases happen to be all negative passes no gradient at all. Positive biases keep most
  // units alive (the convolutions still switch some off).
  for (const [name, t] of params) {
    if (/block\.[02]\.actnorm\.bias$/.test(name)) params.set(name, { ...t, data: t.data.map((b) => Math.abs(b) + 0.05) });
  }
  const encode = buildEncode({ config, params, shuffles: randomShuffles(config, seed + 1) }, { fold: false, opset: c.opset });
  const g = GraphBuilder.extend(encode);
  const output = (name: string) => encode.outputs.find((io) => io.value.name === name)!.value;
  let loss = op.reduceMean(g, output('bpd'), [0], false);
  if (c.classTerm) {
    const y = encode.inputs.find((io) => io.value.name === 'y')!.value;
    loss = op.add(g, loss, op.reduceMean(g, op.mul(g, output('y_logits'), y), [0, 1], false));
  }
  g.output(loss, 'loss');
  const graph = g.build();
  const trainable = new Set(paramSpecs(config).filter((s) => s.trainable).map((s) => s.name));
  const wrt = [...graph.initializers.keys()].filter((v) => trainable.has(v.name));
  const feeds: Record<string, Tensor> = { x: { dtype: 'float32', ...randomImages(config, c.batch, seed + 2) } };
  if (config.numClasses > 0) feeds.y = { dtype: 'float32', ...randomOneHot(config, c.batch, seed + 3) };
  return { graph, withGrads: addGradients(graph, loss, wrt), params: wrt, feeds };
}

/** project_class.* feeds y_logits only, not bpd. */
function isUnreached(c: Case, v: Value): boolean {
  return !c.classTerm && v.name.startsWith('project_class.');
}

function lossWith(p: Prepared, v: Value, k: number, delta: number): number {
  const t = p.graph.initializers.get(v)!;
  const data = Float64Array.from(t.data);
  data[k] += delta;
  const initializers = new Map(p.graph.initializers).set(v, { ...t, data });
  return evaluate({ ...p.graph, initializers }, p.feeds).loss.data[0];
}

describe('autodiff: the gradient of a whole Glow loss (literal encode graph, mean bpd)', function () {
  this.timeout(60_000);

  for (const [index, c] of CASES.entries()) {
    describe(c.name, () => {
      const seed = 40 + 10 * index;
      let p: Prepared;
      let grads: Record<string, Tensor>;

      before(() => {
        p = prepare(c, seed);
        grads = evaluate(p.withGrads, p.feeds);
      });

      it('has a gradient output for every trainable checkpoint tensor', () => {
        const trainable = paramSpecs(c.config).filter((s) => s.trainable);
        expect(p.params.map((v) => v.name).sort()).to.deep.equal(trainable.map((s) => s.name).sort());
        for (const s of trainable) expect(grads[`${s.name}_grad`].shape, s.name).to.deep.equal(s.shape);
      });

      if (c.config.lipschitz !== undefined) {
        it('the spectral normalisation binds on some convs and not on others', () => {
          const params = new Map([...p.graph.initializers].map(([v, t]) => [v.name, { shape: t.shape, data: Float64Array.from(t.data) }]));
          const factors = normalisedConvs(c.config).map((block) => {
            const { u, v } = spectralVectors(block);
            return spectralFactor(effectiveWeight(params, block), params.get(u)!.data, params.get(v)!.data, c.config.lipschitz!);
          });
          expect(factors.some((f) => f < 0.9), 'binds').to.equal(true);
          expect(factors.some((f) => f === 1), 'free').to.equal(true);
        });
      }

      if (c.config.constantSplitScale) {
        it('the split prior\'s weights into its log-scale channels get no gradient, the others do', () => {
          const grad = grads[`${splitPrefix(c.config, 0)}.conv.conv.weight_grad`];
          const perOut = grad.data.length / grad.shape[0];
          const rowMax = (o: number) => Math.max(...Array.from(grad.data.subarray(o * perOut, (o + 1) * perOut), Math.abs));
          for (let o = 0; o < grad.shape[0]; o++) {
            if (o % 2) expect(rowMax(o), `log-scale row ${o}`).to.equal(0);
            else expect(rowMax(o), `mean row ${o}`).to.be.above(1e-6);
          }
        });
      }

      it('every gradient matches float64 finite differences (relative 1e-5)', () => {
        const rng = new Rng(seed + 5);
        let checked = 0;
        let worstRel = 0;
        let worstAbs = 0;
        const abs = absBound(grads.loss.data[0]);
        for (const v of p.params) {
          const grad = grads[`${v.name}_grad`].data;
          const n = grad.length;
          const elements = n <= SMALL ? Array.from({ length: n }, (_, k) => k) : Array.from({ length: SAMPLES }, () => rng.int(n));
          const largest = Math.max(...Array.from(grad, Math.abs));
          if (isUnreached(c, v)) {
            expect(largest, `${v.name}_grad: the loss does not depend on it`).to.equal(0);
          } else {
            expect(largest, `${v.name}_grad is all zeros`).to.be.above(1e-6);
          }
          for (const k of elements) {
            const fd = (lossWith(p, v, k, STEP) - lossWith(p, v, k, -STEP)) / (2 * STEP);
            const err = Math.abs(fd - grad[k]);
            const rel = err / Math.max(Math.abs(fd), Math.abs(grad[k]), 1e-300);
            worstAbs = Math.max(worstAbs, err);
            if (Math.abs(fd) > 1e-3) worstRel = Math.max(worstRel, rel);
            expect(err <= abs || rel <= REL, `${v.name}[${k}]: autodiff ${grad[k]} vs finite differences ${fd}`).to.equal(true);
            checked++;
          }
        }
        console.log(`      ${checked} elements of ${p.params.length} tensors: max |error| ${worstAbs.toExponential(1)}, `
          + `max relative error ${worstRel.toExponential(1)} (where |gradient| > 1e-3), loss ${grads.loss.data[0].toFixed(3)}`);
      });

      if (!c.classTerm) {
        it('the training model (network ActNorms folded into the convs, in the graph) has the same loss and gradients', () => {
          const weights = { config: c.config, params: new Map([...p.graph.initializers].map(([v, t]) => [v.name, { shape: t.shape, data: Float64Array.from(t.data) }])), shuffles: randomShuffles(c.config, seed + 1) };
          const training = buildTrainingModel(weights, { opset: c.opset, classWeight: 0 });
          expect(training.nodes.filter((n) => n.op === 'Conv' && n.inputs[2] !== undefined).length, 'convs with a bias').to.be.above(0);
          const feeds: Record<string, Tensor> = { ...p.feeds };
          for (const v of p.params) feeds[v.name] = p.graph.initializers.get(v)!;
          const out = evaluate(training, feeds);
          expect(out.loss.data[0]).to.be.closeTo(grads.loss.data[0], 1e-12 * Math.abs(grads.loss.data[0]));
          for (const v of p.params) {
            const expected = grads[`${v.name}_grad`].data;
            const scale = Math.max(1e-12, ...Array.from(expected, Math.abs));
            const worst = Math.max(...Array.from(out[`${v.name}_grad`].data, (g, k) => Math.abs(g - expected[k])));
            expect(worst / scale, v.name).to.be.below(1e-9);
          }
        });
      }

      it('the gradient with respect to the input x, in the folded graph too', () => {
        const folded = buildEncode({ config: c.config, params: randomParams(c.config, seed), shuffles: randomShuffles(c.config, seed + 1) }, { opset: c.opset });
        for (const graph of [p.graph, withMeanBpd(folded)]) {
          const x = graph.inputs.find((io) => io.value.name === 'x')!.value;
          const loss = graph.outputs.find((io) => io.value.name === 'loss')!.value;
          const dx = evaluate(addGradients(graph, loss, [x]), p.feeds).x_grad;
          expect(dx.shape).to.deep.equal(p.feeds.x.shape);
          const lossAt = (k: number, delta: number) => {
            const data = Float64Array.from(p.feeds.x.data);
            data[k] += delta;
            return evaluate(graph, { ...p.feeds, x: { ...p.feeds.x, data } }).loss.data[0];
          };
          for (let k = 0; k < dx.data.length; k++) {
            const fd = (lossAt(k, STEP) - lossAt(k, -STEP)) / (2 * STEP);
            const err = Math.abs(fd - dx.data[k]);
            expect(err <= ABS || err <= REL * Math.abs(fd), `x[${k}] (${graph === p.graph ? 'literal' : 'folded'}): autodiff ${dx.data[k]} vs ${fd}`).to.equal(true);
          }
        }
      });

      it('onnxruntime (float32) computes the same gradients within 1e-4 relative', async () => {
        const feeds = Object.fromEntries(Object.entries(p.feeds).map(([k, t]) => [k, { shape: t.shape, data: Float64Array.from(t.data) }]));
        const out = await runGraph(p.withGrads, feeds);
        for (const v of p.params) {
          const name = `${v.name}_grad`;
          const ref = grads[name].data;
          const scale = Math.max(...Array.from(ref, Math.abs), 1e-12);
          const diff = Math.max(...Array.from(ref, (r, i) => Math.abs(r - out[name].data[i])));
          expect(diff / scale, `${name}: max |diff| ${diff}, scale ${scale}`).to.be.at.most(1e-4);
        }
      });
    });
  }
});

describe('autodiff: the training loss with the class cross-entropy (classWeight > 0)', function () {
  this.timeout(60_000);
  const config: GlowConfig = { ...base, imageShape: [2, 4, 4], K: 1, L: 2, hiddenChannels: 3, numClasses: 3 };
  const classWeight = 0.5;
  const seed = 90;
  const batch = 3;
  const trainable = paramSpecs(config).filter((s) => s.trainable);
  const feedsOf = (params: Map<string, HostTensor>): Record<string, Tensor> => {
    const feeds: Record<string, Tensor> = {
      x: { dtype: 'float32', ...randomImages(config, batch, seed + 2) },
      y: { dtype: 'float32', ...randomOneHot(config, batch, seed + 3) },
    };
    for (const s of trainable) feeds[s.name] = { dtype: 'float32', ...params.get(s.name)! };
    return feeds;
  };
  /** Mean bits/dim plus classWeight times the mean cross-entropy, in float64 from the reference's
   * bpd and y_logits, with log-sum-exp written out here. */
  const expectedLoss = (params: Map<string, HostTensor>, feeds: Record<string, Tensor>): number => {
    const ref = refEncode({ config, params }, feeds.x, feeds.y);
    const C = config.numClasses;
    let crossEntropy = 0;
    for (let n = 0; n < batch; n++) {
      const logits = Array.from(ref.yLogits!.data.subarray(n * C, (n + 1) * C));
      const top = Math.max(...logits);
      const logSum = top + Math.log(logits.reduce((a, l) => a + Math.exp(l - top), 0));
      logits.forEach((l, k) => (crossEntropy -= feeds.y.data[n * C + k] * (l - logSum)));
    }
    return ref.bpd.reduce((a, b) => a + b, 0) / batch + (classWeight * crossEntropy) / batch;
  };

  it('every gradient matches float64 finite differences of the loss', () => {
    const params = randomParams(config, seed, SCALE, { priorHStd: 0.5 });
    const feeds = feedsOf(params);
    const w = { config, params };
    const grads = evaluate(buildTrainingModel(w, { classWeight }), feeds);
    const evalModel = buildEvalModel(w, { classWeight });
    expect(grads.loss.data[0]).to.be.closeTo(expectedLoss(params, feeds), 1e-9 * Math.abs(grads.loss.data[0]));
    // The class term moves the gradients: without it, project_class.* get none.
    const withoutClass = evaluate(buildTrainingModel(w, { classWeight: 0 }), feeds);
    expect(withoutClass['project_class.linear.weight_grad'].data.every((v) => v === 0)).to.equal(true);
    const rng = new Rng(seed + 5);
    for (const s of trainable) {
      const grad = grads[`${s.name}_grad`].data;
      expect(Math.max(...Array.from(grad, Math.abs)), `${s.name}_grad is all zeros`).to.be.above(1e-6);
      const elements = grad.length <= SMALL ? Array.from({ length: grad.length }, (_, k) => k) : Array.from({ length: 4 }, () => rng.int(grad.length));
      for (const k of elements) {
        const lossAt = (delta: number) => {
          const data = Float64Array.from(feeds[s.name].data);
          data[k] += delta;
          return evaluate(evalModel, { ...feeds, [s.name]: { ...feeds[s.name], data } }).loss.data[0];
        };
        const fd = (lossAt(STEP) - lossAt(-STEP)) / (2 * STEP);
        const err = Math.abs(fd - grad[k]);
        expect(err <= ABS || err <= REL * Math.max(Math.abs(fd), Math.abs(grad[k])), `${s.name}[${k}]: autodiff ${grad[k]} vs finite differences ${fd}`).to.equal(true);
      }
    }
  });

  it('logits far beyond exp\'s float32 range: finite loss and gradients, the loss as in float64', async () => {
    const params = randomParams(config, seed, SCALE, { priorHStd: 0.5 });
    // Logits of order 1000 (float32 exp overflows past 88): exp(logits) alone would give Inf and
    // then NaN for the loss and every gradient.
    params.set('project_class.linear.bias', { shape: [3], data: Float64Array.of(1000, -700, 400) });
    const feeds = feedsOf(params);
    const ref = refEncode({ config, params }, feeds.x, feeds.y);
    expect(Math.max(...Array.from(ref.yLogits!.data, Math.abs))).to.be.above(300);
    const expected = expectedLoss(params, feeds);
    const hostFeeds = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, { shape: t.shape, data: Float64Array.from(t.data) }]));
    const training = buildTrainingModel({ config, params }, { classWeight });
    const out = await runGraph(training, hostFeeds);
    const exact = evaluate(training, feeds);
    expect(out.loss.data[0]).to.be.closeTo(expected, 1e-6 * Math.abs(expected));
    for (const s of trainable) {
      const name = `${s.name}_grad`;
      expect(out[name].data.every(Number.isFinite), name).to.equal(true);
      const scale = Math.max(...Array.from(exact[name].data, Math.abs), 1e-12);
      expect(maxAbsDiff(out[name].data, exact[name].data) / scale, name).to.be.at.most(1e-4);
    }
  });
});
