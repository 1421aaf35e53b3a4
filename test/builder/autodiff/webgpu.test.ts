// Gradient graphs on onnxruntime-node's WebGPU execution provider (SwiftShader on machines
// without a GPU, as test/runtime/webgpu.test.ts): every rule case and a Glow loss give the same
// gradients as the CPU provider, and the heavy ops of the backward pass (Conv for weight
// gradients, MatMul, Where) really run on WebGPU.
//
// Dawn reads VK_ICD_FILENAMES at the first WebGPU session of the process, so it is set here, at
// import, before any test runs.

import { expect } from 'chai';
import ort from 'onnxruntime-node';
import { SWIFTSHADER_ICD, useSoftwareWebGpu } from '../../helpers.js';
import { existsSync } from 'node:fs';
import { addGradients } from '../../../src/builder/autodiff/index.js';
import { Graph, GraphBuilder } from '../../../src/builder/graph.js';
import * as op from '../../../src/builder/ops.js';
import { serializeModel } from '../../../src/builder/serialize.js';
import { GlowConfig } from '../../../src/glow/config.js';
import { buildEncode } from '../../../src/glow/model.js';
import { paramSpecs } from '../../../src/glow/names.js';
import { createSession, profilePlacement } from '../../../src/runtime/providers.js';
import { randomImages, randomOneHot, randomParams } from '../../../support/random-params.js';
import { CASES, prepare } from './cases.js';

const presetIcd = useSoftwareWebGpu();

const WEBGPU = 'WebGpuExecutionProvider';
const CPU = 'CPUExecutionProvider';
/** Ops that must never fall back to the CPU: the compute of the backward pass. */
const HEAVY = ['Conv', 'ConvTranspose', 'MatMul', 'Gemm', 'Where', 'Greater', 'ReduceSum', 'Transpose', 'Expand'];

type Feeds = Record<string, ort.Tensor>;

async function runOn(provider: 'webgpu' | 'cpu', model: Uint8Array, feeds: Feeds): Promise<Record<string, Float32Array>> {
  const { session } = await createSession(model, { executionProviders: [provider], strict: true });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, Float32Array.from(t.data as Float32Array)]));
  } finally {
    await session.release();
  }
}

/** max |a - b| / max |b| per output, the worst over outputs. */
function worstRelative(a: Record<string, Float32Array>, b: Record<string, Float32Array>, names: string[]): number {
  let worst = 0;
  for (const name of names) {
    const scale = Math.max(1e-6, ...Array.from(b[name], Math.abs));
    const diff = Math.max(0, ...Array.from(b[name], (v, i) => Math.abs(v - a[name][i])));
    worst = Math.max(worst, diff / scale);
  }
  return worst;
}

function gradNames(graph: Graph): string[] {
  return graph.outputs.map((io) => io.value.name).filter((n) => n.endsWith('_grad'));
}

describe('autodiff on the WebGPU execution provider (onnxruntime-node)', function () {
  this.timeout(120_000);

  before(() => {
    // CI installs the driver: a missing one is a failure, never a skip.
    if (!existsSync(SWIFTSHADER_ICD) && presetIcd === undefined) {
      throw new Error(`no Vulkan driver: ${SWIFTSHADER_ICD} is missing; apt-get install chromium libvulkan1`);
    }
  });

  it('every rule case: WebGPU gradients equal CPU gradients (1e-4 relative)', async () => {
    for (const [index, c] of CASES.entries()) {
      const p = prepare(c, 100 + index);
      const withGrads = addGradients(p.graph, p.loss, p.wrt);
      // float64 outputs (the Cast case) and float64 ops are CPU-only on WebGPU: compare all the same.
      const model = serializeModel(withGrads);
      const feeds: Feeds = Object.fromEntries(Object.entries(p.feeds).map(([k, t]) => [k, new ort.Tensor('float32', Float32Array.from(t.data), t.shape)]));
      const [gpu, cpu] = [await runOn('webgpu', model, feeds), await runOn('cpu', model, feeds)];
      expect(worstRelative(gpu, cpu, gradNames(withGrads)), c.name).to.be.at.most(1e-4);
    }
  });

  it('a Glow loss ([3,8,8] K=2 L=2 hidden 8, LU, learnTop, 2 classes): same gradients, backward compute on WebGPU', async () => {
    const config: GlowConfig = {
      imageShape: [3, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
      lu: true, learnTop: true, numClasses: 2, nBits: 5, actnormScale: 1,
    };
    const encode = buildEncode({ config, params: randomParams(config, 7, 3, { priorHStd: 0.5 }) }, { fold: false });
    const g = GraphBuilder.extend(encode);
    const bpd = encode.outputs.find((io) => io.value.name === 'bpd')!.value;
    const loss = g.output(op.reduceMean(g, bpd, [0], false), 'loss');
    const graph = g.build();
    const trainable = new Set(paramSpecs(config).filter((s) => s.trainable).map((s) => s.name));
    const withGrads = addGradients(graph, loss, [...graph.initializers.keys()].filter((v) => trainable.has(v.name)));
    const model = serializeModel(withGrads);
    const N = 4;
    const feeds: Feeds = {
      x: new ort.Tensor('float32', Float32Array.from(randomImages(config, N, 8).data), [N, ...config.imageShape]),
      y: new ort.Tensor('float32', Float32Array.from(randomOneHot(config, N, 9).data), [N, config.numClasses]),
    };
    const [gpu, cpu] = [await runOn('webgpu', model, feeds), await runOn('cpu', model, feeds)];
    const worst = worstRelative(gpu, cpu, gradNames(withGrads));
    const placement = await profilePlacement(model, 'webgpu', feeds);
    const describe = (ops: Record<string, number> = {}) => Object.entries(ops).sort().map(([o, n]) => `${o}x${n}`).join(' ');
    console.log(`      worst relative difference ${worst.toExponential(2)}; on CPU: ${describe(placement.byProvider[CPU])}`);
    expect(worst).to.be.at.most(1e-4);
    const onCpu = placement.byProvider[CPU] ?? {};
    const onGpu = placement.byProvider[WEBGPU] ?? {};
    expect(HEAVY.filter((o) => onCpu[o]), 'heavy ops on the CPU').to.deep.equal([]);
    // Plain convolutions take their input gradient as a Conv with the flipped kernel.
    expect(onGpu.Conv, 'Conv and its gradients on WebGPU').to.be.above(0);
    expect(onGpu.MatMul ?? onGpu.FusedMatMul, 'weight gradients (MatMul) on WebGPU').to.be.above(0);
    // What stays on the CPU is the batch-size arithmetic of the ReduceMean over the symbolic batch.
    expect(Object.values(onCpu).reduce((a, b) => a + b, 0), 'nodes on the CPU').to.be.at.most(8);
  });
});
