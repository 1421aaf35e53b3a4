// --dtype float16: the toFloat16 pass on small graphs, and Glow's float16 graphs against their
// float32 twins in onnxruntime-node's CPU provider (bits/dim, latents, round trip).

import { expect } from 'chai';
import ort from 'onnxruntime-node';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { float16Bits } from '../../src/math/half-precision.js';
import { evaluateGraph } from '../../src/builder/evaluate.js';
import { Graph, GraphBuilder, Node, ONNX_TYPE, SUPPORTED_OPSETS, Tensor, tensor } from '../../src/builder/graph.js';
import * as op from '../../src/builder/ops.js';
import { toFloat16 } from '../../src/builder/passes/index.js';
import { parseModel } from '../../src/builder/parse.js';
import { serializeModel } from '../../src/builder/serialize.js';
import { tensorByteLength, tensorBytes } from '../../src/builder/tensor-bytes.js';
import { GlowConfig } from '../../src/glow/config.js';
import { exportGraphs, exportModel } from '../../src/glow/export.js';
import { importWeights } from '../../src/glow/import/index.js';
import { buildEncode, GlowWeights } from '../../src/glow/model.js';
import { HostTensor } from '../../src/math/tensor.js';
import { writeFilesAtomic } from '../../src/io/files.js';
import { loadMnist } from '../../src/runtime/mnist.js';
import { dequantize } from '../../src/runtime/quantize.js';
import { CLI_BIN, maxAbsDiff, runGraph } from '../helpers.js';
import { randomImages, randomOneHot, randomParams, randomShuffles } from '../../support/random-params.js';
import { evaluateFloat16 } from '../../support/fp16-emulate.js';

/** x [2, 3] -> y = relu(x * w + b) [2, 3], s = ReduceSum(y * y, [1]) [2] * c. */
function smallGraph(): Graph {
  const g = new GraphBuilder('small');
  const x = g.input('x', 'float32', ['N', 3], 'input doc');
  const w = g.initializer('w', tensor('float32', [3], [0.1, 1 / 3, -2.5]));
  const b = g.initializer('b', tensor('float32', [3], [1 + 2 ** -11 + 2 ** -30, 0, 0.5]));
  const y = op.relu(g, op.add(g, op.mul(g, x, w), b));
  const s = op.mul(g, op.reduceSum(g, op.mul(g, y, y), [1], false), g.constant(tensor('float32', [], [1e5]), 'big'));
  // A weight read both by float16 compute (Mul with y) and float32 compute (the [3] reduction).
  const both = op.add(g, op.reduceSum(g, w, [0], false), s);
  g.output(y, 'y', 'output doc');
  g.output(both, 's');
  return g.build();
}

function feedsOf(feeds: Record<string, HostTensor>): Record<string, ort.Tensor> {
  return Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor('float32', Float32Array.from(v.data), v.shape)]));
}

async function run(graph: Graph, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  // Warnings silenced: ORT's constant folding reports every float16 op it has no CPU kernel for.
  const session = await ort.InferenceSession.create(serializeModel(graph), { logSeverityLevel: 3 });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

describe('toFloat16 pass', () => {
  const graph = smallGraph();
  const half = toFloat16(graph);

  it('keeps the interface: float32 inputs and outputs, same names, same docs', () => {
    expect(half.inputs.map((io) => `${io.value}|${io.doc}`)).to.deep.equal(graph.inputs.map((io) => `${io.value}|${io.doc}`));
    expect(half.outputs.map((io) => `${io.value}|${io.doc}`)).to.deep.equal(graph.outputs.map((io) => `${io.value}|${io.doc}`));
  });

  it('casts the input down once and float16 outputs back up', () => {
    const casts = half.nodes.filter((n) => n.op === 'Cast');
    const to = (n: Node) => (n.attributes.to as { value: number }).value;
    expect(casts.filter((n) => n.inputs[0]!.name === 'x').map(to)).to.deep.equal([ONNX_TYPE.float16]);
    const yCast = casts.find((n) => n.outputs[0].name === 'y')!;
    expect(to(yCast)).to.equal(ONNX_TYPE.float32);
    expect(yCast.inputs[0]!.dtype).to.equal('float16');
  });

  it('computes elementwise ops in float16 and per-example reductions and their sums in float32', () => {
    const byOp = (name: string) => half.nodes.filter((n) => n.op === name);
    for (const n of [...byOp('Relu'), ...byOp('Add').filter((a) => a.outputs[0].rank === 2)]) expect(n.outputs[0].dtype, n.name).to.equal('float16');
    for (const n of byOp('ReduceSum')) {
      expect(n.inputs[0]!.dtype, n.name).to.equal('float32');
      expect(n.outputs[0].dtype, n.name).to.equal('float32');
    }
    // 1e5 is beyond float16: it may only be read in float32.
    const big = [...half.initializers].find(([v]) => v.name.endsWith('big'))!;
    expect(big[0].dtype).to.equal('float32');
  });

  it('rounds every float16 weight once, from its float64 value, and keeps a float32 copy where float32 reads it', () => {
    const inits = new Map([...half.initializers].map(([v, t]) => [v.name, t]));
    // b[0] = 1 + 2^-11 + 2^-30: float64 -> float16 rounds up; float64 -> float32 -> float16 would
    // land on the tie 1 + 2^-11 and round to even (1).
    const b = inits.get('b')!;
    expect(b.dtype).to.equal('float16');
    const bits = new Uint16Array(tensorBytes(b).buffer.slice(0));
    expect(bits[0]).to.equal(float16Bits(1 + 2 ** -11 + 2 ** -30));
    expect(bits[0]).to.equal(0x3c01);
    expect(inits.get('w')!.dtype).to.equal('float32');
    expect(inits.get('w_float16')!.dtype).to.equal('float16');
  });

  it('serialises, parses back, and runs in onnxruntime-node within float16 precision of float32', async () => {
    const parsed = parseModel(serializeModel(half)).graph;
    expect(parsed.initializers.size).to.equal(half.initializers.size);
    const x = { shape: [2, 3], data: Float64Array.of(0.3, -1.2, 2, 1.5, 0.25, -0.7) };
    const a = await run(graph, feedsOf({ x }));
    const b = await run(half, feedsOf({ x }));
    expect(b.y.type).to.equal('float32');
    expect(b.s.type).to.equal('float32');
    const yMax = Math.max(...(a.y.data as Float32Array));
    expect(maxAbsDiff(a.y.data as Float32Array, b.y.data as Float32Array)).to.be.below(2 ** -10 * yMax * 2).and.above(0);
    expect(maxAbsDiff(a.s.data as Float32Array, b.s.data as Float32Array) / Math.max(...(a.s.data as Float32Array))).to.be.below(3e-3);
  });

  it('refuses a weight beyond float16 range that float16 compute would read', () => {
    const g = new GraphBuilder('range');
    const x = g.input('x', 'float32', [2, 2]);
    g.output(op.mul(g, x, g.constant(tensor('float32', [2], [1, 70000]), 'w')), 'y');
    expect(() => toFloat16(g.build())).to.throw(/70000 is beyond float16's range/);
  });

  it('turns a Cast to float32 inside float16 compute into a Cast to float16', () => {
    const g = new GraphBuilder('cast');
    const i = g.input('i', 'int64', [2, 3]);
    g.output(op.mul(g, op.cast(g, i, 'float32'), g.constant(tensor('float32', [3], [0.5, 1, 2]), 'w')), 'y');
    const h = toFloat16(g.build());
    const first = h.nodes[0];
    expect(first.op).to.equal('Cast');
    expect(first.attributes.to).to.deep.equal({ kind: 'int', value: ONNX_TYPE.float16 });
    expect(first.outputs[0].dtype).to.equal('float16');
    expect(h.outputs[0].value.dtype).to.equal('float32');
  });

  it('leaves non-float values and shape computations alone', () => {
    const g = new GraphBuilder('shapes');
    const x = g.input('x', 'float32', ['N', 4]);
    const shape = op.shapeOf(g, x);
    g.output(g.node('Reshape', [op.relu(g, x), shape], {}, [{ dtype: 'float32', shape: ['N', 4] }])[0], 'y');
    // A weight whose shape alone is read.
    g.output(op.shapeOf(g, g.initializer('c', tensor('float32', [5], [1, 2, 3, 4, 5]))), 'shape_of_c');
    const h = toFloat16(g.build());
    const [shapeOfX, shapeOfC] = h.nodes.filter((n) => n.op === 'Shape');
    expect(shapeOfX.inputs[0]!.name).to.equal('x');
    expect(String(shapeOfC.inputs[0])).to.equal('c: float32[5]');
    expect([...h.initializers.keys()].map(String)).to.include('c: float32[5]');
    expect(h.nodes.filter((n) => n.op === 'Cast')).to.have.length(2);
  });
});

interface Case {
  name: string;
  config: GlowConfig;
  fold?: boolean;
  /** Bounds, about 3x to 10x what was measured. */
  bpd: number;
  roundTrip: number;
}

const base: GlowConfig = {
  imageShape: [1, 28, 28], K: 4, L: 2, hiddenChannels: 32, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};

const CASES: Case[] = [
  { name: 'MNIST-shaped affine LU', config: base, bpd: 3e-4, roundTrip: 2e-2 },
  { name: 'class-conditional additive [3,16,16]', config: { ...base, imageShape: [3, 16, 16], coupling: 'additive', numClasses: 4 }, bpd: 5e-4, roundTrip: 3e-2 },
  { name: 'shuffle, plain prior, unfolded', config: { ...base, imageShape: [2, 8, 8], permutation: 'shuffle', learnTop: false }, fold: false, bpd: 5e-4, roundTrip: 3e-2 },
];

describe('float16 Glow graphs on the CPU provider', function () {
  this.timeout(60_000);
  const N = 8;

  for (const c of CASES) {
    it(`${c.name}: bits/dim within ${c.bpd}, round trip within ${c.roundTrip} of the input`, async () => {
      const w: GlowWeights = { config: c.config, params: randomParams(c.config, 11), shuffles: randomShuffles(c.config, 11) };
      const x = randomImages(c.config, N, 12);
      const y = c.config.numClasses ? randomOneHot(c.config, N, 13) : undefined;
      const feeds = feedsOf(y ? { x, y } : { x });
      const g32 = exportGraphs(w, { fold: c.fold });
      const g16 = exportGraphs(w, { fold: c.fold, dtype: 'float16' });
      expect(g16.encode.metadata['glow_onnx.dtype']).to.equal('float16');
      expect([...g16.encode.initializers.keys()].filter((v) => v.dtype === 'float16').length).to.be.above(10);
      const a = await run(g32.encode, feeds);
      const b = await run(g16.encode, feeds);
      const bpdError = maxAbsDiff(a.bpd.data as Float32Array, b.bpd.data as Float32Array);
      expect(bpdError).to.be.below(c.bpd);
      // float16 is really used: the latents differ from float32 by more than float32 rounding.
      expect(maxAbsDiff(a.eps_1.data as Float32Array, b.eps_1.data as Float32Array)).to.be.above(1e-4).and.below(2e-2);
      const decodeFeeds = (r: Record<string, ort.Tensor>) => {
        const f: Record<string, ort.Tensor> = { temperature: new ort.Tensor('float32', Float32Array.of(1), []) };
        for (let l = 1; l <= c.config.L; l++) f[`eps_${l}`] = r[`eps_${l}`];
        if (y) f.y = feeds.y;
        return f;
      };
      const x16 = await run(g16.decode, decodeFeeds(b));
      expect(x16.x.type).to.equal('float32');
      expect(maxAbsDiff(x16.x.data as Float32Array, x.data)).to.be.below(c.roundTrip);
    });
  }

  // The README's float16 figures for the two shipped models, on the first 16 test images
  // dequantised at bin centres, held at 2x; half an 8-bit bin is 1/512.
  const shippedInFloat16 = [
    { name: 'the shipped model (K 16, trained to 1.28 bits/dim)', dir: 'mnist', bpd: 4.0e-3, roundTrip: 1.9e-2 },
    { name: 'the stable model', dir: 'mnist-stable', bpd: 7.1e-3, roundTrip: 1.7e-2 },
  ];
  for (const shipped of shippedInFloat16) {
    it(`${shipped.name} is not safe in float16: bits/dim moves past 1e-3, the round trip past half an 8-bit bin`, async () => {
      const model = fileURLToPath(new URL(`../../../models/${shipped.dir}/`, import.meta.url));
      const w = importWeights(readFileSync(model + 'weights.safetensors'), 'weights.safetensors').weights;
      const digits = loadMnist('test', 16);
      const x: HostTensor = { shape: [16, 1, 28, 28], data: dequantize(digits.pixels, w.config.nBits, 'center') };
      const feeds = feedsOf({ x });
      const g32 = exportGraphs(w);
      const g16 = exportGraphs(w, { dtype: 'float16' });
      const a = await run(g32.encode, feeds);
      const b = await run(g16.encode, feeds);
      const bpdError = maxAbsDiff(a.bpd.data as Float32Array, b.bpd.data as Float32Array);
      const eps: Record<string, ort.Tensor> = { temperature: new ort.Tensor('float32', Float32Array.of(1), []) };
      for (let l = 1; l <= w.config.L; l++) eps[`eps_${l}`] = b[`eps_${l}`];
      const roundTrip = maxAbsDiff((await run(g16.decode, eps)).x.data as Float32Array, x.data);
      console.log(`      bits/dim ${bpdError.toExponential(1)}, round trip ${roundTrip.toExponential(1)}`);
      expect(bpdError).to.be.above(1e-3).and.below(2 * shipped.bpd);
      expect(roundTrip).to.be.above(1 / 512).and.below(2 * shipped.roundTrip);
    });
  }

  it('summing the log-det and likelihood terms in float16 instead would lose at least 5x more bits/dim precision', async () => {
    const w: GlowWeights = { config: base, params: randomParams(base, 11) };
    const feeds = feedsOf({ x: randomImages(base, N, 12) });
    const graph = buildEncode(w);
    const [a, kept, all] = [
      await run(graph, feeds), await run(toFloat16(graph), feeds), await run(toFloat16(graph, { keepFloat32: () => false }), feeds),
    ];
    const keptError = maxAbsDiff(a.bpd.data as Float32Array, kept.bpd.data as Float32Array);
    const allError = maxAbsDiff(a.bpd.data as Float32Array, all.bpd.data as Float32Array);
    expect(allError).to.be.above(5 * keptError);
  });

  it('exports float16 files whose weights take half the bytes, with float32 I/O', () => {
    const w: GlowWeights = { config: { ...base, hiddenChannels: 128 }, params: randomParams({ ...base, hiddenChannels: 128 }, 1) };
    const f32 = exportModel(w);
    const f16 = exportModel(w, { dtype: 'float16' });
    const weightBytes = (bytes: Uint8Array) => [...parseModel(bytes).graph.initializers.values()].reduce((a, t) => a + tensorByteLength(t), 0);
    expect(weightBytes(f16['encode.onnx']) / weightBytes(f32['encode.onnx'])).to.be.within(0.5, 0.51);
    expect(f16['encode.onnx'].length / f32['encode.onnx'].length).to.be.within(0.5, 0.6);
    expect(JSON.parse(f16['glow.json']).dtype).to.equal('float16');
    const parsed = parseModel(f16['encode.onnx']).graph;
    expect([...parsed.inputs, ...parsed.outputs].every((io) => io.value.dtype === 'float32')).to.equal(true);
  });

  it('with every op rounded to float16, as GPUs run it, bits/dim and the round trip stay close to float64', () => {
    const config: GlowConfig = { ...base, imageShape: [1, 8, 8], hiddenChannels: 16 };
    const w: GlowWeights = { config, params: randomParams(config, 14) };
    const x = { dtype: 'float32' as const, ...randomImages(config, 4, 15) };
    const exact = evaluateGraph(buildEncode(w), { x });
    const { encode, decode } = exportGraphs(w, { dtype: 'float16' });
    const half = evaluateFloat16(encode, { x });
    expect(maxAbsDiff(half.bpd.data, exact.bpd.data)).to.be.below(2e-3);
    expect(maxAbsDiff(half.eps_1.data, exact.eps_1.data)).to.be.above(1e-4);
    const feeds: Record<string, Tensor> = { temperature: { dtype: 'float32', shape: [], data: Float64Array.of(1) } };
    for (let l = 1; l <= config.L; l++) feeds[`eps_${l}`] = { ...half[`eps_${l}`], dtype: 'float32' };
    expect(maxAbsDiff(evaluateFloat16(decode, feeds).x.data, x.data)).to.be.below(2e-2);
  });

  it('float16 graphs at every opset give identical results', async () => {
    const config: GlowConfig = { ...base, imageShape: [2, 8, 8], numClasses: 3 };
    const w: GlowWeights = { config, params: randomParams(config, 16) };
    const feeds = feedsOf({ x: randomImages(config, 2, 17), y: randomOneHot(config, 2, 18) });
    const reference = await run(exportGraphs(w, { dtype: 'float16' }).encode, feeds);
    for (const opset of SUPPORTED_OPSETS) {
      const r = await run(exportGraphs(w, { dtype: 'float16', opset }).encode, feeds);
      expect(r.y_logits.data, `opset ${opset}`).to.deep.equal(reference.y_logits.data);
      expect(r.bpd.data, `opset ${opset}`).to.deep.equal(reference.bpd.data);
    }
  });

  it('verify accepts a float16 MNIST-shaped model whose round trip stays within half a quantisation bin', () => {
    const dir = mkdtempSync(join(tmpdir(), 'glow-fp16-verify-'));
    try {
      writeFilesAtomic(dir, { ...exportModel({ config: base, params: randomParams(base, 19) }, { dtype: 'float16' }) });
      const r = spawnSync(process.execPath, [CLI_BIN, 'verify', dir, '--data', 'mnist-test', '--limit', '16'], { encoding: 'utf8' });
      expect(r.status, r.stderr).to.equal(0);
      const error = Number(/max \|x - decode\(encode\(x\)\)\| = (\S+)/.exec(r.stdout)![1]);
      expect(error).to.be.above(1e-4).and.below(2 ** -(base.nBits + 1));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a float16 decode at T = 0 ignores eps, as the float32 one does', async () => {
    const w: GlowWeights = { config: base, params: randomParams(base, 2) };
    const { decode } = exportGraphs(w, { dtype: 'float16' });
    const eps = (seed: number) => Object.fromEntries(Array.from({ length: base.L }, (_, l) => [`eps_${l + 1}`, randomImages({ ...base, imageShape: decode.inputs[l].value.shape!.slice(1) as [number, number, number] }, 2, seed + l)]));
    const a = await runGraph(decode, { temperature: 0, ...eps(1) });
    const b = await runGraph(decode, { temperature: 0, ...eps(5) });
    expect(maxAbsDiff(a.x.data, b.x.data)).to.equal(0);
  });
});
