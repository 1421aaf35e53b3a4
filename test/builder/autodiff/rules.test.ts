// Every gradient rule against central finite differences in float64: a tiny graph f -> out,
// loss = ReduceSum(out * R) with a fixed random R (so that every output element matters), the
// gradient graph from addGradients run by the float64 interpreter, then the same gradient graph
// in onnxruntime-node (float32), which proves the emitted ops are ONNX that ORT accepts.

import { expect } from 'chai';
import { addGradients, MissingGradientError, RULES, UnsupportedGradientError } from '../../../src/builder/autodiff/index.js';
import { attr, Graph, GraphBuilder, tensor, Tensor } from '../../../src/builder/graph.js';
import * as op from '../../../src/builder/ops.js';
import { runGraph } from '../../helpers.js';
import { CASES, lossWith, Prepared, prepare, valueData } from './cases.js';
import { evaluateGraph as evaluate } from '../../../src/builder/evaluate.js';

const STEP = 1e-6;
const REL = 1e-6;
const ABS = 1e-8;
const ORT_REL = 1e-4;

/** Checks the gradients in float64 against finite differences; returns them. */
function checkAgainstFiniteDifferences(p: Prepared, withGrads: Graph): Record<string, Tensor> {
  const results = evaluate(withGrads, p.feeds);
  for (const v of p.wrt) {
    const grad = results[`${v.name}_grad`];
    const data = valueData(p, v);
    expect(grad.shape, `shape of ${v.name}_grad`).to.deep.equal(data.shape);
    for (let k = 0; k < data.data.length; k++) {
      const fd = (lossWith(p, v, k, STEP) - lossWith(p, v, k, -STEP)) / (2 * STEP);
      const ad = grad.data[k];
      const err = Math.abs(fd - ad);
      expect(err <= ABS || err <= REL * Math.max(Math.abs(fd), Math.abs(ad)),
        `${v.name}[${k}]: autodiff ${ad} vs finite differences ${fd}`).to.equal(true);
    }
  }
  return results;
}

async function checkInOnnxRuntime(p: Prepared, withGrads: Graph, reference: Record<string, Tensor>): Promise<void> {
  const feeds = Object.fromEntries(Object.entries(p.feeds).map(([k, t]) => [k, { shape: t.shape, data: Float64Array.from(t.data) }]));
  const out = await runGraph(withGrads, feeds);
  for (const v of p.wrt) {
    const name = `${v.name}_grad`;
    const ref = reference[name].data;
    const scale = Math.max(...Array.from(ref, Math.abs), 1e-3);
    const diff = Math.max(...Array.from(ref, (r, i) => Math.abs(r - out[name].data[i])));
    expect(out[name].shape, `ORT shape of ${name}`).to.deep.equal(reference[name].shape);
    expect(diff / scale, `ORT vs float64 for ${name} (max |diff| ${diff}, scale ${scale})`).to.be.at.most(ORT_REL);
  }
}

// ---------------------------------------------------------------- tests

describe('autodiff rules: gradients against float64 finite differences, then onnxruntime', function () {
  this.timeout(60_000);

  for (const [index, c] of CASES.entries()) {
    it(c.name, async () => {
      const p = prepare(c, 100 + index);
      const withGrads = addGradients(p.graph, p.loss, p.wrt);
      const reference = checkAgainstFiniteDifferences(p, withGrads);
      await checkInOnnxRuntime(p, withGrads, reference);
    });
  }

  it('covers every rule in the table', () => {
    const covered = new Set(CASES.flatMap((c) => c.ops));
    expect(Object.keys(RULES).filter((op) => !covered.has(op))).to.deep.equal([]);
  });

  it('does not modify the input graph, and names outputs as asked', () => {
    const p = prepare(CASES[0], 1);
    const before = { nodes: p.graph.nodes.length, outputs: p.graph.outputs.length, initializers: p.graph.initializers.size };
    const out = addGradients(p.graph, p.loss, p.wrt, { outputNames: (v) => `d_${v.name}` });
    expect({ nodes: p.graph.nodes.length, outputs: p.graph.outputs.length, initializers: p.graph.initializers.size }).to.deep.equal(before);
    expect(out.outputs.map((io) => io.value.name)).to.deep.equal(['out', 'loss', 'd_x', 'd_b']);
  });

  it('a missing rule raises MissingGradientError naming the op and the node', () => {
    const g = new GraphBuilder('missing');
    const x = g.initializer('x', tensor('float32', [3], [0.5, 1.5, 2.5]));
    const floor = g.node('Floor', [x], {}, [{ dtype: 'float32', shape: [3] }])[0];
    const loss = op.reduceSum(g, op.mul(g, floor, x), [0], false);
    g.output(loss, 'loss');
    expect(() => addGradients(g.build(), loss, [x])).to.throw(MissingGradientError, /Floor \(node Floor\)/);
  });

  it('attributes or inputs a rule does not support raise UnsupportedGradientError', () => {
    const g = new GraphBuilder('unsupported');
    const x = g.initializer('x', tensor('float32', [2, 3], [1, 2, 3, 4, 5, 6]));
    const idx = g.input('idx', 'int64', [2]);
    const y = g.node('Gather', [x, idx], { axis: attr.int(1) }, [{ dtype: 'float32', shape: [2, 2] }])[0];
    const loss = op.reduceSum(g, y, [0, 1], false);
    g.output(loss, 'loss');
    expect(() => addGradients(g.build(), loss, [x])).to.throw(UnsupportedGradientError, /Gather node Gather: indices \(input 1\) must be a constant/);
  });

  it('an op without a rule off the path to the loss is fine', () => {
    const g = new GraphBuilder('off_path');
    const x = g.initializer('x', tensor('float32', [3], [0.5, 1.5, 2.5]));
    const c = g.initializer('c', tensor('float32', [3], [1, 2, 3]));
    const floor = g.node('Floor', [c], {}, [{ dtype: 'float32', shape: [3] }])[0];
    const loss = op.reduceSum(g, op.mul(g, floor, op.mul(g, x, x)), [0], false);
    g.output(loss, 'loss');
    const grads = evaluate(addGradients(g.build(), loss, [x]), {});
    expect(Array.from(grads.x_grad.data)).to.deep.equal([1, 6, 15]);
  });

  it('GraphBuilder.extend continues a graph: everything kept, no name handed out twice', () => {
    const g = new GraphBuilder('base', { opset: 15 });
    g.metadata = { k: 'v' };
    const x = g.input('x', 'float32', ['N', 2]);
    const w = g.initializer('Mul', tensor('float32', [2], [1, 2])); // an initializer named like a node
    g.output(op.mul(g, x, w), 'y');
    const base = g.build();
    const e = GraphBuilder.extend(base);
    const z = e.output(op.mul(e, op.exp(e, base.outputs[0].value), w), 'z');
    const extended = e.build();
    expect({ name: extended.name, opset: extended.opset, metadata: extended.metadata }).to.deep.equal({ name: 'base', opset: 15, metadata: { k: 'v' } });
    expect(extended.inputs).to.deep.equal(base.inputs);
    expect(extended.outputs.map((io) => io.value.name)).to.deep.equal(['y', 'z']);
    expect(extended.nodes.slice(0, base.nodes.length)).to.deep.equal(base.nodes);
    const names = [...extended.initializers.keys(), ...extended.nodes.flatMap((n) => n.outputs)].map((v) => v.name);
    expect(new Set(names).size, names.join(', ')).to.equal(names.length);
    expect(() => e.input('x', 'float32', [1])).to.throw(/already used/);
    expect(base.nodes.length, 'the base graph is untouched').to.equal(2);
    expect(Array.from(evaluate(extended, { x: tensor('float32', [1, 2], [0, 1]) }).z.data)).to.deep.equal([1, 2 * Math.exp(2)]);
    expect(z.name).to.equal('z');
  });

  it('rejects a loss that is not a scalar', () => {
    const g = new GraphBuilder('not_scalar');
    const x = g.initializer('x', tensor('float32', [3], [1, 2, 3]));
    const y = op.exp(g, x);
    g.output(y, 'y');
    expect(() => addGradients(g.build(), y, [x])).to.throw(/scalar/);
  });
});
