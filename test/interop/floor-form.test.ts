// The default export writes the affine coupling's scale floor as Max(s, f) (builder/passes/
// floor.ts), not the layer's Where(Less(s, f), f, s): more runtimes read it, and ONNX Runtime
// computes the same bytes with it. Both forms exported from the same weights and run in ONNX
// Runtime's CPU provider, float32 and float16: every output (eps, logdet, log p(x), bits/dim,
// decoded x) equal bit for bit, on the shipped model over many test images and on RGB models
// whose floor binds often. And what each candidate form gives for NaN and infinities there.

import { expect } from 'chai';
import ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GraphBuilder, tensor } from '../../src/builder/graph.js';
import * as op from '../../src/builder/ops.js';
import { toFloat16 } from '../../src/builder/passes/index.js';
import { serializeModel } from '../../src/builder/serialize.js';
import { GlowConfig, latentShape } from '../../src/glow/config.js';
import { ExportDType, exportGraph, ExportOptions, GraphKind } from '../../src/glow/export.js';
import { importWeights } from '../../src/glow/import/index.js';
import { GlowWeights } from '../../src/glow/model.js';
import { Rng } from '../../src/math/rng.js';
import { loadMnist } from '../../src/runtime/mnist.js';
import { dequantize } from '../../src/runtime/quantize.js';
import { RGB_CONFIGS } from '../helpers.js';
import { randomImages, randomOneHot, randomParams, randomShuffles } from '../../support/random-params.js';

const MODEL = fileURLToPath(new URL('../../../models/mnist/', import.meta.url));
/** Shipped-model test images compared, in batches of BATCH. */
const IMAGES = 1000;
const BATCH = 250;

type Feeds = Record<string, ort.Tensor>;
type Outputs = Record<string, Float32Array>;

async function session(w: GlowWeights, kind: GraphKind, options: ExportOptions): Promise<ort.InferenceSession> {
  const graph = exportGraph(w, kind, options);
  const ops = new Set(graph.nodes.map((n) => n.op));
  // The comparison means something only if the two graphs differ in the floor's form.
  expect(ops.has('Max'), `${kind} ${JSON.stringify(options)}: Max`).to.equal(options.floorAsMax !== false && !!w.config.scaleFloor);
  return ort.InferenceSession.create(serializeModel(graph));
}

async function run(s: ort.InferenceSession, feeds: Feeds): Promise<Outputs> {
  const out = await s.run(feeds);
  return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array]));
}

/** Names of the outputs whose bytes differ (NaN compares by its bits, as it should here). */
function differing(a: Outputs, b: Outputs): string[] {
  expect(Object.keys(a).sort()).to.deep.equal(Object.keys(b).sort());
  return Object.keys(a).filter((k) => Buffer.compare(Buffer.from(a[k].buffer, a[k].byteOffset, a[k].byteLength), Buffer.from(b[k].buffer, b[k].byteOffset, b[k].byteLength)) !== 0);
}

const tensorOf = (data: Float32Array, shape: number[]) => new ort.Tensor('float32', data, shape);

function gaussianEps(config: GlowConfig, n: number, rng: Rng, scale: number): Feeds {
  return Object.fromEntries(Array.from({ length: config.L }, (_, i) => {
    const shape = [n, ...latentShape(config, i + 1)];
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let k = 0; k < data.length; k++) data[k] = rng.normal() * scale;
    return [`eps_${i + 1}`, tensorOf(data, shape)];
  }));
}

/** Encodes each batch with both forms, then decodes the latents (at temperatures 1 and 0.7) and
 * wide gaussian latents with both; returns the outputs that differ, labelled. */
async function compareForms(w: GlowWeights, dtype: ExportDType, batches: Feeds[]): Promise<string[]> {
  const [encMax, encWhere, decMax, decWhere] = await Promise.all([
    session(w, 'encode', { dtype }), session(w, 'encode', { dtype, floorAsMax: false }),
    session(w, 'decode', { dtype }), session(w, 'decode', { dtype, floorAsMax: false }),
  ]);
  const rng = new Rng(3);
  const found: string[] = [];
  try {
    for (const [b, feeds] of batches.entries()) {
      const encoded = await run(encMax, feeds);
      found.push(...differing(encoded, await run(encWhere, feeds)).map((k) => `batch ${b} encode ${k}`));
      const n = feeds.x.dims[0];
      const y: Feeds = feeds.y ? { y: feeds.y } : {};
      const latents = Object.fromEntries(Object.keys(encoded).filter((k) => k.startsWith('eps_')).map((k) => [k, tensorOf(encoded[k], [n, ...latentShape(w.config, Number(k.slice(4)))])]));
      for (const [label, eps, t] of [['encoded eps', latents, 1], ['encoded eps', latents, 0.7], ['gaussian eps x2', gaussianEps(w.config, n, rng, 2), 1]] as const) {
        const decodeFeeds: Feeds = { ...eps, ...y, temperature: tensorOf(Float32Array.of(t), []) };
        found.push(...differing(await run(decMax, decodeFeeds), await run(decWhere, decodeFeeds)).map((k) => `batch ${b} decode ${label} T=${t} ${k}`));
      }
    }
  } finally {
    await Promise.all([encMax, encWhere, decMax, decWhere].map((s) => s.release()));
  }
  return found;
}

describe('the scale floor as Max computes what Less + Where did, bit for bit, in ONNX Runtime', function () {
  this.timeout(600_000);

  for (const dtype of ['float32', 'float16'] as const) {
    it(`${dtype}: the shipped model on ${IMAGES} MNIST test images (encode, decode of their latents and of wide ones)`, async () => {
      const { weights } = importWeights(readFileSync(MODEL + 'weights.safetensors'), 'weights.safetensors');
      expect(weights.config.scaleFloor).to.be.above(0);
      const { pixels } = loadMnist('test', IMAGES);
      const x = dequantize(pixels, weights.config.nBits, 'center');
      const D = 28 * 28;
      const batches = Array.from({ length: IMAGES / BATCH }, (_, b) => ({ x: tensorOf(x.slice(b * BATCH * D, (b + 1) * BATCH * D), [BATCH, 1, 28, 28]) }));
      expect(await compareForms(weights, dtype, batches)).to.deep.equal([]);
    });

    it(`${dtype}: RGB models (16x16x3, 32x32x3, class-conditional) whose floor binds often`, async () => {
      for (const [i, base] of RGB_CONFIGS.entries()) {
        // Random weights put the scales near sigmoid(2) = 0.88: a floor there binds on many
        // pixels (checked below) and not on the others, so both branches are compared.
        const config: GlowConfig = { ...base, scaleFloor: 0.88 };
        const w: GlowWeights = { config, params: randomParams(config, 60 + i), shuffles: randomShuffles(config, 60 + i) };
        const n = 16;
        const x = randomImages(config, n, 70 + i);
        const feeds = { x: tensorOf(Float32Array.from(x.data), x.shape), y: tensorOf(Float32Array.from(randomOneHot(config, n, 80 + i).data), [n, config.numClasses]) };
        expect(await compareForms(w, dtype, [feeds]), config.imageShape.join('x')).to.deep.equal([]);
        // The floor binds: without it the same weights encode differently.
        const unfloored = await session({ ...w, config: { ...config, scaleFloor: 0 } }, 'encode', { dtype });
        const floored = await session(w, 'encode', { dtype });
        try {
          expect(differing(await run(floored, feeds), await run(unfloored, feeds))).to.include('bpd');
        } finally {
          await unfloored.release();
          await floored.release();
        }
      }
    });
  }

  // Why Max and not Clip: on ONNX Runtime's CPU provider Max keeps NaN as NaN and +inf as +inf,
  // as Where(Less) does; Clip(s, f) with no max clamps +inf to the largest float32.
  it('NaN and infinities: Max(s, f) gives what Where(Less(s, f), f, s) gives; Clip(s, f) turns +inf finite', async () => {
    const s = Float32Array.of(NaN, Infinity, -Infinity, 0.1, 0.22, 0.5, -0, 0);
    const results: Record<string, number[]> = {};
    for (const dtype of ['float32', 'float16'] as const) {
      for (const form of ['Where', 'Max', 'Clip'] as const) {
        const g = new GraphBuilder('floor', { opset: 17 });
        const v = g.input('s', 'float32', [s.length]);
        const f = g.constant(tensor('float32', [], [0.22]), 'floor');
        const y = form === 'Where' ? op.where(g, op.less(g, v, f), f, v) : g.node(form, [v, f], {}, [{ dtype: 'float32', shape: v.shape }])[0];
        g.output(y, 'y');
        const graph = dtype === 'float16' ? toFloat16(g.build()) : g.build();
        const sess = await ort.InferenceSession.create(serializeModel(graph));
        results[`${dtype} ${form}`] = Array.from((await sess.run({ s: tensorOf(s, [s.length]) })).y.data as Float32Array);
        await sess.release();
      }
      const where = results[`${dtype} Where`];
      expect(where.slice(0, 3)).to.deep.equal([NaN, Infinity, Math.fround(0.22)]);
      expect(results[`${dtype} Max`], `${dtype} Max`).to.deep.equal(where);
      expect(results[`${dtype} Clip`][1], `${dtype} Clip(+inf)`).to.equal(3.4028234663852886e38);
    }
  });
});
