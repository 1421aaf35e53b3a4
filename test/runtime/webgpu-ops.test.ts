// The other ops that RGB models hand to ONNX Runtime's WebGPU provider, checked for the class of
// bug the Conv has (right in NCHW, wrong in the default NHWC layout): the coupling's Split into
// 6 + 6 channels, the squeeze (Reshape-Transpose-Reshape) and unsqueeze (DepthToSpace) at 3 and
// 12 channels, ConvTranspose (the input gradient of a Conv with fewer
// than 8 input channels in training graphs) for 1..64 output channels, and a whole training
// graph of an RGB Glow. Each against the CPU provider, in both layouts. (SpaceToDepth, which the
// graphs do not use, has no WebGPU kernel in ONNX Runtime 1.30: it runs on the CPU.)

import { expect } from 'chai';
import ort from 'onnxruntime-node';
import { GraphBuilder, tensor, Value } from '../../src/builder/graph.js';
import * as op from '../../src/builder/ops.js';
import { serializeModel } from '../../src/builder/serialize.js';
import { GlowConfig } from '../../src/glow/config.js';
import * as squeeze from '../../src/glow/layers/squeeze.js';
import { buildArtifactModels, buildTrainingModel } from '../../src/train/graphs.js';
import { profilePlacement } from '../../src/runtime/providers.js';
import { WEBGPU_EP } from '../../src/runtime/session-options.js';
import { useSoftwareWebGpu, webGpuDriverProblem } from '../helpers.js';
import { randomImages, randomOneHot, randomParams, Rng } from '../../support/random-params.js';

const presetIcd = useSoftwareWebGpu();

type Feeds = Record<string, ort.Tensor>;
type Outputs = Record<string, Float32Array>;
const LAYOUTS: [string, ort.InferenceSession.ExecutionProviderConfig][] = [['default', 'webgpu'], ['NCHW', WEBGPU_EP]];

async function run(model: Uint8Array, feeds: Feeds, ep: ort.InferenceSession.ExecutionProviderConfig): Promise<Outputs> {
  const session = await ort.InferenceSession.create(model, { executionProviders: [ep], graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array]));
  } finally {
    await session.release();
  }
}

/** max |a - b| / max(|b|, floor) per output. */
function relativeErrors(a: Outputs, b: Outputs, floor = 1e-3): Record<string, number> {
  return Object.fromEntries(Object.keys(b).map((k) => {
    const scale = Math.max(floor, ...Array.from(b[k], Math.abs));
    let m = 0;
    for (let i = 0; i < b[k].length; i++) {
      const d = Math.abs(a[k][i] - b[k][i]);
      m = Number.isNaN(d) ? Infinity : Math.max(m, d);
    }
    return [k, m / scale];
  }));
}

/** Each layout's outputs against the CPU's, as relative errors; `ops` must run on WebGPU (a
 * CPU fallback would make the comparison say nothing about the provider). */
async function byLayout(model: Uint8Array, feeds: Feeds, ops: string[] = []): Promise<Record<string, Record<string, number>>> {
  const { byProvider } = await profilePlacement(model, 'webgpu', feeds);
  for (const o of ops) expect(byProvider.CPUExecutionProvider?.[o], `${o} on the CPU`).to.equal(undefined);
  for (const o of ops) expect(byProvider.WebGpuExecutionProvider?.[o], `${o} on WebGPU`).to.be.above(0);
  const cpu = await run(model, feeds, 'cpu');
  const result: Record<string, Record<string, number>> = {};
  for (const [layout, ep] of LAYOUTS) result[layout] = relativeErrors(await run(model, feeds, ep), cpu);
  return result;
}

function randomTensor(shape: number[], rng: Rng): ort.Tensor {
  return new ort.Tensor('float32', Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()), shape);
}

const worst = (errors: Record<string, number>) => Math.max(...Object.values(errors));

describe('WebGPU: the other ops of RGB models, default and NCHW layout', function () {
  this.timeout(300_000);
  before(() => {
    const problem = webGpuDriverProblem(presetIcd);
    if (problem) throw new Error(problem);
  });

  it('Split 12 -> 6 + 6, squeeze and unsqueeze at 3 and 12 channels: exact copies in both layouts', async () => {
    const g = new GraphBuilder('copies');
    const rng = new Rng(1);
    const feeds: Feeds = {};
    const input = (name: string, shape: number[]) => {
      feeds[name] = randomTensor(shape, rng);
      return g.input(name, 'float32', ['N', ...shape.slice(1)]);
    };
    const [a, b] = op.split(g, input('h', [2, 12, 8, 8]), [6, 6], 1);
    g.output(a, 'split_a');
    g.output(b, 'split_b');
    for (const c of [3, 12]) {
      const x = input(`x${c}`, [2, c, 16, 16]);
      g.output(squeeze.encode(g, x), `squeeze_${c}`);
      g.output(squeeze.decode(g, input(`z${c}`, [2, 4 * c, 8, 8])), `unsqueeze_${c}`);
    }
    const errors = await byLayout(serializeModel(g.build()), feeds, ['Split', 'Transpose', 'DepthToSpace']);
    console.log(`      worst relative error: ${Object.entries(errors).map(([l, e]) => `${l} ${worst(e).toExponential(1)}`).join(', ')}`);
    for (const [layout, e] of Object.entries(errors)) for (const [name, v] of Object.entries(e)) expect(v, `${layout}: ${name}`).to.equal(0);
  });

  it('ConvTranspose 3x3 with 1..64 output channels (weight an input, as in training graphs): right in both layouts', async () => {
    const g = new GraphBuilder('conv_transpose');
    const rng = new Rng(2);
    const feeds: Feeds = {};
    const M = 16;
    const dy = g.input('dy', 'float32', ['N', M, 8, 8]);
    feeds.dy = randomTensor([2, M, 8, 8], rng);
    for (let c = 1; c <= 64; c++) {
      const w: Value = g.input(`w_${c}`, 'float32', [M, c, 3, 3]);
      feeds[w.name] = randomTensor([M, c, 3, 3], rng);
      g.output(op.convTranspose(g, dy, w, undefined, { pads: op.samePads(3) }), `dx_${c}`);
    }
    // And with a constant weight, where the provider may prepack it.
    for (const c of [3, 6, 9, 12]) {
      const w = g.initializer(`k_${c}`, tensor('float32', [M, c, 3, 3], Array.from({ length: M * c * 9 }, () => rng.normal())));
      g.output(op.convTranspose(g, dy, w, undefined, { pads: op.samePads(3) }), `dx_const_${c}`);
    }
    const errors = await byLayout(serializeModel(g.build()), feeds, ['ConvTranspose']);
    const wrong = (e: Record<string, number>) => Object.entries(e).filter(([, v]) => v > 1e-5).map(([k, v]) => `${k} ${v.toExponential(1)}`);
    console.log(`      ${Object.entries(errors).map(([l, e]) => `${l}: worst ${worst(e).toExponential(1)}, wrong: ${wrong(e).join(', ') || 'none'}`).join('; ')}`);
    for (const [layout, e] of Object.entries(errors)) expect(wrong(e), layout).to.deep.equal([]);
  });

  it('the training graph (loss and every gradient) of an RGB Glow: right in NCHW, where the project trains, and in the default layout as `artifacts` writes it (padded)', async () => {
    const config: GlowConfig = {
      imageShape: [3, 8, 8], K: 1, L: 2, hiddenChannels: 18, coupling: 'affine', permutation: 'invconv',
      lu: true, learnTop: true, numClasses: 4, nBits: 5, actnormScale: 1,
    };
    const w = { config, params: randomParams(config, 11) };
    const graph = buildTrainingModel(w);
    const feeds: Feeds = {};
    for (const { value } of graph.inputs) {
      const t = value.name === 'x' ? randomImages(config, 4, 12) : value.name === 'y' ? randomOneHot(config, 4, 13) : w.params.get(value.name)!;
      feeds[value.name] = new ort.Tensor('float32', Float32Array.from(t.data), t.shape);
    }
    const convTransposes = graph.nodes.filter((n) => n.op === 'ConvTranspose').length;
    const model = serializeModel(graph);
    const cpu = await run(model, feeds, 'cpu');
    const errors: Record<string, Record<string, number>> = {};
    for (const [layout, ep] of LAYOUTS) errors[layout] = relativeErrors(await run(model, feeds, ep), cpu);
    // What `glow-onnx artifacts` writes: padded like exports (the weights are graph inputs here,
    // padded by a Pad node).
    errors['default, padded'] = relativeErrors(await run(serializeModel(buildArtifactModels(w)['training_model.onnx']), feeds, 'webgpu'), cpu);
    const above = (e: Record<string, number>) => Object.entries(e).filter(([, v]) => v > 1e-4).length;
    console.log(`      ${convTransposes} ConvTranspose; ${Object.entries(errors).map(([l, e]) => `${l}: worst ${worst(e).toExponential(1)}, `
      + `${above(e)} of ${Object.keys(e).length} outputs above 1e-4`).join('; ')}`);
    expect(convTransposes, 'the graph has the ConvTranspose this checks').to.be.above(0);
    for (const layout of ['NCHW', 'default, padded']) for (const [name, v] of Object.entries(errors[layout])) expect(v, `${layout}: ${name}`).to.be.below(1e-4);
  });
});
