// --batch N: every input, output and intermediate value of both graphs has a static shape
// (what TensorRT engines and WebGPU graph capture want), with the results of the dynamic graphs.

import { expect } from 'chai';
import ort from 'onnxruntime-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph } from '../../src/builder/graph.js';
import { parseModel } from '../../src/builder/parse.js';
import { serializeModel } from '../../src/builder/serialize.js';
import { GlowConfig } from '../../src/glow/config.js';
import { exportGraphs, exportModel } from '../../src/glow/export.js';
import { GlowWeights } from '../../src/glow/model.js';
import { writeFilesAtomic } from '../../src/io/files.js';
import { loadGlowRuntime } from '../../src/runtime/node.js';
import { Feeds, maxAbsDiff, runGraph } from '../helpers.js';
import { randomImages, randomOneHot, randomParams } from '../../support/random-params.js';

const config: GlowConfig = {
  imageShape: [2, 8, 8], K: 2, L: 3, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 3, nBits: 5, actnormScale: 1,
};
const BATCH = 3;

/** Every value a graph declares: inputs, outputs, initializers and node outputs. */
function allValues(graph: Graph) {
  return [...graph.inputs.map((io) => io.value), ...graph.outputs.map((io) => io.value), ...graph.initializers.keys(), ...graph.nodes.flatMap((n) => n.outputs)];
}

function writeDynamic(w: GlowWeights, dir: string): string {
  const out = join(dir, 'dynamic');
  writeFilesAtomic(out, { ...exportModel(w) });
  return out;
}

describe('static batch (--batch N)', function () {
  this.timeout(60_000);
  const w: GlowWeights = { config, params: randomParams(config, 21) };
  const dynamic = exportGraphs(w);
  const fixed = exportGraphs(w, { batch: BATCH });

  for (const kind of ['encode', 'decode'] as const) {
    it(`${kind}: inputs and outputs have batch ${BATCH}, and every value in the graph a static shape`, () => {
      const graph = parseModel(serializeModel(fixed[kind])).graph;
      for (const io of [...graph.inputs, ...graph.outputs]) {
        if (io.value.name === 'temperature') expect(io.value.shape).to.deep.equal([]);
        else expect(io.value.shape![0], io.value.name).to.equal(BATCH);
      }
      const symbolic = allValues(fixed[kind]).filter((v) => !v.shape || v.shape.some((d) => typeof d !== 'number'));
      expect(symbolic.map(String)).to.deep.equal([]);
      // ... where the dynamic graph has symbolic dimensions.
      expect(allValues(dynamic[kind]).some((v) => v.shape?.some((d) => typeof d === 'string'))).to.equal(true);
      expect(fixed[kind].metadata['glow_onnx.batch']).to.equal(String(BATCH));
      expect(dynamic[kind].metadata['glow_onnx.batch']).to.equal('dynamic');
    });
  }

  it('gives the results of the dynamic graphs, and onnxruntime refuses another batch size', async () => {
    const x = randomImages(config, BATCH, 22);
    const y = randomOneHot(config, BATCH, 23);
    const a = await runGraph(dynamic.encode, { x, y });
    const b = await runGraph(fixed.encode, { x, y });
    for (const name of Object.keys(a)) expect(maxAbsDiff(a[name].data, b[name].data), name).to.equal(0);
    const decodeFeeds: Feeds = { temperature: 0.7, y };
    for (let l = 1; l <= config.L; l++) decodeFeeds[`eps_${l}`] = b[`eps_${l}`];
    const da = await runGraph(dynamic.decode, decodeFeeds);
    const db = await runGraph(fixed.decode, decodeFeeds);
    expect(maxAbsDiff(da.x.data, db.x.data)).to.equal(0);
    let error: unknown;
    await runGraph(fixed.encode, { x: randomImages(config, 2, 1), y: randomOneHot(config, 2, 1) }).catch((e) => (error = e));
    expect(String(error)).to.match(/dimension|dims/i);
  });

  it('exports float16 static graphs too, and the runtime runs a static model in batches of its size', async () => {
    const files = exportModel(w, { batch: BATCH, dtype: 'float16' });
    expect(JSON.parse(files['glow.json']).batch).to.equal(BATCH);
    expect(JSON.parse(files['glow.json']).io.encode.inputs.x).to.deep.equal([BATCH, 2, 8, 8]);
    const session = await ort.InferenceSession.create(files['encode.onnx'], { logSeverityLevel: 3 });
    expect(session.inputNames).to.deep.equal(['x', 'y']);
    await session.release();
    const dir = mkdtempSync(join(tmpdir(), 'glow-static-'));
    try {
      writeFilesAtomic(dir, { ...exportModel(w, { batch: BATCH }) });
      const runtime = await loadGlowRuntime(dir, { batchSize: 64 });
      try {
        expect(runtime.model.batchSize).to.equal(BATCH);
        // Two full batches and a partial one, which the runtime pads to the static size.
        const n = 2 * BATCH + 1;
        const x = Float32Array.from(randomImages(config, n, 24).data);
        const y = Float32Array.from(randomOneHot(config, n, 25).data);
        const encoded = await runtime.model.encode(x, [n, ...config.imageShape], y);
        expect(encoded.bpd).to.have.length(n);
        const xr = await runtime.model.decode(encoded.eps, 1, y);
        expect(maxAbsDiff(xr, x)).to.be.below(1e-4);
        const dynamic = await loadGlowRuntime(writeDynamic(w, dir), {});
        const reference = await dynamic.model.encode(x, [n, ...config.imageShape], y);
        await dynamic.model.release();
        expect(maxAbsDiff(encoded.bpd, reference.bpd), 'padding does not change results').to.be.below(1e-5);
      } finally {
        await runtime.model.release();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a batch that is not a positive integer', () => {
    expect(() => exportGraphs(w, { batch: 0 })).to.throw(/batch must be a positive integer/);
    expect(() => exportGraphs(w, { batch: 2.5 })).to.throw(/batch must be a positive integer/);
  });
});
