// Which convolutions ONNX Runtime's WebGPU provider gets wrong, and whether the export pass
// (builder/passes/conv-channels.ts) covers them. For every input channel count 1..64 and every
// kernel form the exported graphs use, one Conv in each of the forms a graph can hand it to the
// provider: folded (weight and bias initializers), literal (--no-fold: weight initializer, the
// ActNorm after the Conv) and training (weight a graph input). All 64 Convs of one kernel and
// form share a model, so a sweep is a few sessions, not hundreds. Each is run on the CPU provider
// and on WebGPU with the provider's default layout (NHWC) and with the project's options (NCHW).
//
// Fails when a wrong case is not one the pass pads, or when a padded graph is still wrong, so a
// new ONNX Runtime that breaks other channel counts shows up here.

import { expect } from 'chai';
import ort from 'onnxruntime-node';
import { Graph, GraphBuilder, tensor, Value } from '../../src/builder/graph.js';
import * as op from '../../src/builder/ops.js';
import { padConvChannels, webgpuMiscomputes } from '../../src/builder/passes/index.js';
import { serializeModel } from '../../src/builder/serialize.js';
import { WEBGPU_EP } from '../../src/runtime/session-options.js';
import { useSoftwareWebGpu, webGpuDriverProblem } from '../helpers.js';
import { Rng } from '../../support/random-params.js';

const presetIcd = useSoftwareWebGpu();

const CHANNELS = Array.from({ length: 64 }, (_, i) => i + 1);
const OUT_CHANNELS = 16;
const SIZE = 8;
const BATCH = 2;
/** Far above float32 rounding of these sums (~1e-6), far below what the bug does (~1). */
const WRONG = 1e-4;

interface Kernel { name: string; size: number; stride: number }
type Form = 'folded' | 'literal' | 'training';
const FORMS: Form[] = ['folded', 'literal', 'training'];
/** The kernels of the exported and training graphs, in the forms each appears in. */
const KERNELS: (Kernel & { forms: Form[] })[] = [
  { name: '1x1', size: 1, stride: 1, forms: FORMS },
  { name: '3x3', size: 3, stride: 1, forms: FORMS },
  // The folded graphs' first mix of a level: squeeze + ActNorm + 1x1 conv as one 2x2 conv of stride 2.
  { name: '2x2/2', size: 2, stride: 2, forms: ['folded'] },
];

function sweepGraph(kernel: Kernel, form: Form, rng: Rng): { graph: Graph; feeds: Record<string, ort.Tensor> } {
  const g = new GraphBuilder(`sweep_${form}`);
  const feeds: Record<string, ort.Tensor> = {};
  const random = (shape: number[], std: number) => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal(0, std));
    return { shape, data };
  };
  const pads = kernel.stride === 1 ? op.samePads(kernel.size) : undefined;
  for (const c of CHANNELS) {
    const xs = random([BATCH, c, SIZE, SIZE], 1);
    const x = g.input(`x_${c}`, 'float32', ['N', c, SIZE, SIZE]);
    feeds[x.name] = new ort.Tensor('float32', xs.data, xs.shape);
    const ws = random([OUT_CHANNELS, c, kernel.size, kernel.size], 1 / Math.sqrt(c * kernel.size * kernel.size));
    let w: Value;
    if (form === 'training') {
      w = g.input(`w_${c}`, 'float32', ws.shape);
      feeds[w.name] = new ort.Tensor('float32', ws.data, ws.shape);
    } else {
      w = g.initializer(`w_${c}`, tensor('float32', ws.shape, ws.data));
    }
    const bias = form === 'literal' ? undefined : g.initializer(`b_${c}`, tensor('float32', [OUT_CHANNELS], random([OUT_CHANNELS], 0.1).data));
    let y = op.conv(g, x, w, bias, { pads, strides: [kernel.stride, kernel.stride] });
    if (form === 'literal') {
      const shift = g.initializer(`actnorm_bias_${c}`, tensor('float32', [1, OUT_CHANNELS, 1, 1], random([OUT_CHANNELS], 0.1).data));
      y = op.add(g, y, shift);
    }
    g.output(y, `y_${c}`);
  }
  return { graph: g.build(), feeds };
}

async function run(model: Uint8Array, feeds: Record<string, ort.Tensor>, ep: ort.InferenceSession.ExecutionProviderConfig): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(model, { executionProviders: [ep], graphOptimizationLevel: 'all' });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array]));
  } finally {
    await session.release();
  }
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) || (Number.isNaN(a[i] - b[i]) ? Infinity : 0));
  return m;
}

describe('WebGPU Conv sweep: input channels 1..64, kernels 1x1, 3x3, 2x2/2, default and NCHW layout, and the padding pass', function () {
  this.timeout(300_000);
  let started = 0;
  before(() => {
    started = Date.now();
    const problem = webGpuDriverProblem(presetIcd);
    if (problem) throw new Error(problem);
  });
  after(() => console.log(`      sweep took ${((Date.now() - started) / 1000).toFixed(1)} s`));

  for (const [k, kernel] of KERNELS.entries()) {
    for (const form of kernel.forms) {
      it(`${kernel.name}, ${form}: wrong only where the pass pads, right after it, right in NCHW`, async () => {
        const { graph, feeds } = sweepGraph(kernel, form, new Rng(10 * k + FORMS.indexOf(form)));
        const model = serializeModel(graph);
        const cpu = await run(model, feeds, 'cpu');
        const errors = async (m: Uint8Array, ep: ort.InferenceSession.ExecutionProviderConfig) => {
          const gpu = await run(m, feeds, ep);
          return new Map(CHANNELS.map((c) => [c, maxDiff(gpu[`y_${c}`], cpu[`y_${c}`])]));
        };
        const wrong = (e: Map<number, number>) => [...e].filter(([, d]) => d > WRONG);
        const describe = (e: Map<number, number>) => wrong(e).map(([c, d]) => `${c} (${d.toExponential(1)})`).join(', ') || 'none';
        const worstRight = (e: Map<number, number>) => Math.max(...[...e.values()].filter((d) => d <= WRONG)).toExponential(1);
        const defaults = await errors(model, 'webgpu');
        const nchw = await errors(model, WEBGPU_EP);
        const padded = padConvChannels(graph);
        const covered = CHANNELS.filter((c) => webgpuMiscomputes(c, [kernel.size, kernel.size]));
        const afterPass = covered.length ? await errors(serializeModel(padded), 'webgpu') : defaults;
        console.log(`      wrong in the default layout: ${describe(defaults)}; NCHW: ${describe(nchw)} (worst right case ${worstRight(nchw)}); `
          + `default layout after the pass: ${describe(afterPass)} (worst ${[...afterPass.values()].reduce((a, b) => Math.max(a, b), 0).toExponential(1)})`);
        expect(wrong(nchw).map(([c]) => c), 'wrong in NCHW (the project\'s own sessions)').to.deep.equal([]);
        expect(wrong(defaults).map(([c]) => c).filter((c) => !covered.includes(c)), 'wrong in the default layout but not padded by the pass').to.deep.equal([]);
        expect(wrong(afterPass).map(([c]) => c), 'wrong in the default layout after the pass').to.deep.equal([]);
        if (covered.length) expect(padded, 'the pass changed nothing').to.not.equal(graph);
        const needless = covered.filter((c) => (defaults.get(c) ?? 0) <= WRONG);
        if (needless.length) console.log(`      padded but right without it (has ONNX Runtime fixed it?): ${needless.join(', ')}`);
      });
    }
  }
});
