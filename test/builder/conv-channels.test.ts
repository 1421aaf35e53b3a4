// The WebGPU channel-padding pass on the CPU: the padded graph computes what the original does,
// pads only the convolutions webgpuMiscomputes names, shares one Pad per input, keeps weight
// names, and is on by default at export for RGB models while leaving 1-channel ones alone. Whether
// it fixes WebGPU is test/runtime/webgpu-conv-sweep.test.ts's business.

import { expect } from 'chai';
import { GraphBuilder, tensor } from '../../src/builder/graph.js';
import * as op from '../../src/builder/ops.js';
import { padConvChannels, paddedChannels, webgpuMiscomputes } from '../../src/builder/passes/index.js';
import { GlowConfig } from '../../src/glow/config.js';
import { exportGraph, exportModel } from '../../src/glow/export.js';
import { HostTensor } from '../../src/math/tensor.js';
import { maxAbsDiff, runGraph } from '../helpers.js';
import { randomParams, Rng } from '../../support/random-params.js';

function random(shape: number[], rng: Rng): HostTensor {
  return { shape, data: Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()) };
}

const RGB: GlowConfig = {
  imageShape: [3, 8, 8], K: 2, L: 2, hiddenChannels: 18, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 3, nBits: 5, actnormScale: 1,
};

describe('padConvChannels (the WebGPU channel padding pass)', () => {
  it('names the kernels above 1x1 with a multiple of 3 input channels that is not a multiple of 4, 3 excepted', () => {
    const named = Array.from({ length: 30 }, (_, i) => i + 1).filter((c) => webgpuMiscomputes(c, [3, 3]));
    expect(named).to.deep.equal([6, 9, 15, 18, 21, 27, 30]);
    expect(webgpuMiscomputes(6, [2, 2])).to.equal(true);
    expect(webgpuMiscomputes(6, [1, 1])).to.equal(false);
    expect(paddedChannels(6, [3, 3])).to.equal(7);
    expect(paddedChannels(7, [3, 3])).to.equal(7);
  });

  it('gives the same outputs with zero channels added, one Pad per input, weights under their own names', async () => {
    const rng = new Rng(3);
    const g = new GraphBuilder('convs');
    const x = g.input('x', 'float32', ['N', 6, 5, 5]);
    const wIn = g.input('w_in', 'float32', [4, 6, 3, 3]);
    const x12 = g.input('x12', 'float32', ['N', 12, 5, 5]);
    const init = (name: string, shape: number[]) => g.initializer(name, tensor('float32', shape, random(shape, rng).data));
    g.output(op.conv(g, x, init('w_a', [5, 6, 3, 3]), init('b_a', [5]), { pads: op.samePads(3) }), 'a');
    g.output(op.conv(g, x, wIn, undefined, { pads: op.samePads(3) }), 'b');
    g.output(op.conv(g, x, init('w_c', [5, 6, 1, 1]), undefined), 'c');
    g.output(op.conv(g, x12, init('w_d', [5, 12, 3, 3]), undefined, { pads: op.samePads(3) }), 'd');
    g.output(op.conv(g, x, init('w_e', [3, 6, 2, 2]), undefined, { strides: [2, 2] }), 'e');
    const graph = g.build();
    const padded = padConvChannels(graph);

    const pads = padded.nodes.filter((n) => n.op === 'Pad');
    expect(pads.map((n) => n.inputs[0]!.name).sort(), 'one Pad for x (shared by three convs), one for the weight input').to.deep.equal(['w_in', 'x']);
    const convs = padded.nodes.filter((n) => n.op === 'Conv');
    expect(convs.map((n) => n.inputs[0]!.shape![1])).to.deep.equal([7, 7, 6, 12, 7]);
    const weights = new Map([...padded.initializers].map(([v, t]) => [v.name, t.shape]));
    expect(weights.get('w_a')).to.deep.equal([5, 7, 3, 3]);
    expect(weights.get('w_e')).to.deep.equal([3, 7, 2, 2]);
    expect(weights.get('w_c')).to.deep.equal([5, 6, 1, 1]);
    // Every Pad comes before its first reader.
    for (const p of pads) expect(padded.nodes.indexOf(p)).to.be.below(padded.nodes.findIndex((n) => n.inputs.includes(p.outputs[0])));

    const feeds = { x: random([2, 6, 5, 5], rng), w_in: random([4, 6, 3, 3], rng), x12: random([2, 12, 5, 5], rng) };
    const [before, after] = [await runGraph(graph, feeds), await runGraph(padded, feeds)];
    for (const name of ['a', 'b', 'c', 'd', 'e']) {
      const scale = Math.max(...Array.from(before[name].data, Math.abs));
      expect(maxAbsDiff(after[name].data, before[name].data) / scale, name).to.be.below(1e-6);
    }
  });

  it('returns a graph with nothing to pad as it is', () => {
    const g = new GraphBuilder('nothing');
    const x = g.input('x', 'float32', ['N', 4, 5, 5]);
    g.output(op.conv(g, x, g.initializer('w', tensor('float32', [2, 4, 3, 3], new Float64Array(72))), undefined), 'y');
    const graph = g.build();
    expect(padConvChannels(graph)).to.equal(graph);
  });

  it('is applied at export: RGB graphs get Pads (folded and not, float16 too), webgpuConvPadding: false leaves them out', () => {
    const w = { config: RGB, params: randomParams(RGB, 4) };
    for (const fold of [true, false]) {
      for (const dtype of ['float32', 'float16'] as const) {
        for (const kind of ['encode', 'decode'] as const) {
          const pads = (on: boolean) => exportGraph(w, kind, { fold, dtype, webgpuConvPadding: on }).nodes.filter((n) => n.op === 'Pad').length;
          expect(pads(true), `${kind} fold=${fold} ${dtype}`).to.be.above(0);
          expect(pads(false), `${kind} fold=${fold} ${dtype}, off`).to.equal(0);
        }
      }
    }
    // After the pass no Conv of the exported graphs is one the provider gets wrong.
    for (const kind of ['encode', 'decode'] as const) {
      for (const n of exportGraph(w, kind).nodes.filter((n) => n.op === 'Conv')) {
        const [x, weight] = n.inputs;
        expect(webgpuMiscomputes(x!.shape![1] as number, weight!.shape!.slice(2) as [number, number]), `${kind} ${n.name}`).to.equal(false);
      }
    }
  });

  it('leaves a 1-channel model byte for byte as it was', () => {
    const config: GlowConfig = { ...RGB, imageShape: [1, 8, 8], hiddenChannels: 16, numClasses: 0 };
    const w = { config, params: randomParams(config, 5) };
    const [on, off] = [exportModel(w), exportModel(w, { webgpuConvPadding: false })];
    expect(Buffer.from(on['encode.onnx']).equals(Buffer.from(off['encode.onnx']))).to.equal(true);
    expect(Buffer.from(on['decode.onnx']).equals(Buffer.from(off['decode.onnx']))).to.equal(true);
  });
});
