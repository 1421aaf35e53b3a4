// The official ONNX checker (python3-onnx, full_check: strict shape inference against the
// value_info the serializer writes from the builder's inferred shapes) on gradient graphs: every
// rule case up to opset 17 (onnx 1.12 knows no later opset) and Glow losses at opsets 13, 15, 17.
// One python invocation for all models, as test/builder/checker.test.ts does.

import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addGradients } from '../../../src/builder/autodiff/index.js';
import { Graph, GraphBuilder } from '../../../src/builder/graph.js';
import * as op from '../../../src/builder/ops.js';
import { serializeModel } from '../../../src/builder/serialize.js';
import { GlowConfig } from '../../../src/glow/config.js';
import { buildEncode } from '../../../src/glow/model.js';
import { paramSpecs } from '../../../src/glow/names.js';
import { randomParams, randomShuffles } from '../../../support/random-params.js';
import { CASES, prepare } from './cases.js';
import { CHECKER_MAX_OPSET, checkOnnx } from '../../interop/onnx-checker.js';

const GLOW: GlowConfig[] = [
  { imageShape: [3, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv', lu: true, learnTop: true, numClasses: 2, nBits: 5, actnormScale: 1 },
  { imageShape: [2, 4, 4], K: 1, L: 2, hiddenChannels: 4, coupling: 'additive', permutation: 'shuffle', lu: false, learnTop: false, numClasses: 0, nBits: 5, actnormScale: 1 },
];

/** Mean bpd of the literal encode graph, differentiated with respect to x and every trainable tensor. */
function glowGradients(config: GlowConfig, opset: number): Graph {
  const encode = buildEncode({ config, params: randomParams(config, 1), shuffles: randomShuffles(config, 2) }, { fold: false, opset });
  const g = GraphBuilder.extend(encode);
  const bpd = encode.outputs.find((io) => io.value.name === 'bpd')!.value;
  const loss = g.output(op.reduceMean(g, bpd, [0], false), 'loss');
  const graph = g.build();
  const trainable = new Set(paramSpecs(config).filter((s) => s.trainable).map((s) => s.name));
  const x = graph.inputs.find((io) => io.value.name === 'x')!.value;
  return addGradients(graph, loss, [x, ...[...graph.initializers.keys()].filter((v) => trainable.has(v.name))]);
}

describe('ONNX checker (python3-onnx, full_check) on gradient graphs', function () {
  this.timeout(60_000);
  let dir: string;
  const files = new Map<string, string>(); // path -> label

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'glow-onnx-autodiff-checker-'));
    const write = (label: string, graph: Graph) => {
      const path = join(dir, `${files.size}.onnx`);
      writeFileSync(path, serializeModel(graph));
      files.set(path, label);
    };
    CASES.forEach((c, i) => {
      if ((c.opset ?? CHECKER_MAX_OPSET) > CHECKER_MAX_OPSET) return;
      const p = prepare(c, 100 + i);
      write(c.name, addGradients(p.graph, p.loss, p.wrt));
    });
    for (const [i, config] of GLOW.entries()) {
      for (const opset of [13, 15, 17]) write(`Glow ${i} opset ${opset}`, glowGradients(config, opset));
    }
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every gradient graph passes check_model(full_check=True)', () => {
    const results = checkOnnx([...files.keys()], 50_000);
    const failed = [...files].filter(([path]) => results.get(path) !== 'OK').map(([path, label]) => `${label}: ${results.get(path)}`);
    expect(failed, failed.join('\n')).to.deep.equal([]);
    expect(files.size).to.be.above(CASES.length);
  });
});
