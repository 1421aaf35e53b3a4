// The generic graph builder: deterministic scoped names, shape inference of the op helpers,
// explicit attributes, opset-dependent forms, ModelProto round trips (and robustness of the
// reader against damaged bytes), float16 conversion, the passes, and the Glow graphs built on
// top of it running identically at every supported opset.

import { expect } from 'chai';
import onnxProto from 'onnx-proto';
import {
  attr, Attribute, DType, Graph, GraphBuilder, Node, Shape, SUPPORTED_OPSETS, Tensor, tensor, Value,
} from '../../src/builder/graph.js';
import * as op from '../../src/builder/ops.js';
import { chain, cleanup, foldConstants, Pass, toposort } from '../../src/builder/passes/index.js';
import { float16Bits, float16Value } from '../../src/math/half-precision.js';
import { parseModel } from '../../src/builder/parse.js';
import { irVersionFor, serializeModel } from '../../src/builder/serialize.js';
import { OnnxFormatError } from '../../src/builder/tensor-bytes.js';
import { GlowConfig } from '../../src/glow/config.js';
import { buildDecode, buildEncode, GlowWeights } from '../../src/glow/model.js';
import { HostTensor } from '../../src/math/tensor.js';
import { Feeds, maxAbsDiff, runGraph } from '../helpers.js';
import { randomImages, randomOneHot, randomParams, randomShuffles, Rng } from '../../support/random-params.js';

const { onnx } = onnxProto;

// ---------------------------------------------------------------- helpers

const glowBase: GlowConfig = {
  imageShape: [2, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};

function glowWeights(variant: Partial<GlowConfig> = {}, seed = 7): GlowWeights {
  const config = { ...glowBase, ...variant };
  return { config, params: randomParams(config, seed), shuffles: randomShuffles(config, seed) };
}

/** Runs fn and returns the message of what it threw; fails if it did not throw. */
function thrownMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  expect.fail('expected an error');
}

function normals(rng: Rng, n: number, std = 1): number[] {
  return Array.from({ length: n }, () => rng.normal(0, std));
}

/** Every problem that makes a graph "not folded": Exp reading an initializer, a matrix
 * inverse or determinant, any op outside the default domain. */
function foldViolations(graph: Graph): string[] {
  const initializerNames = new Set([...graph.initializers.keys()].map((v) => v.name));
  const problems: string[] = [];
  for (const n of graph.nodes) {
    if (n.domain !== '' && n.domain !== 'ai.onnx') problems.push(`${n.name}: ${n.domain}::${n.op} is outside the default domain`);
    if (n.op === 'Inverse' || n.op === 'Det' || n.op === 'MatrixInverse') problems.push(`${n.name}: ${n.op}`);
    if (n.op === 'Exp') {
      for (const v of n.inputs) if (v && initializerNames.has(v.name)) problems.push(`${n.name}: Exp of initializer ${v.name}`);
    }
  }
  return problems;
}

/** Checks that every node reads only values available before it. */
function assertSorted(graph: Graph): void {
  const available = new Set<Value>([...graph.inputs.map((io) => io.value), ...graph.initializers.keys()]);
  for (const n of graph.nodes) {
    for (const v of n.inputs) if (v) expect(available.has(v), `${n.name} reads ${v.name} before it is produced`).to.equal(true);
    n.outputs.forEach((v) => available.add(v));
  }
}

function nodeSignature(n: Node): string {
  return `${n.op}|${n.name}|${n.domain}|${n.inputs.map((v) => v?.name ?? '').join(',')}|${n.outputs.map(String).join(',')}`;
}

function allValueNames(graph: Graph): string[] {
  return [
    ...graph.inputs.map((io) => io.value.name),
    ...[...graph.initializers.keys()].map((v) => v.name),
    ...graph.nodes.flatMap((n) => n.outputs.map((v) => v.name)),
  ];
}

function duplicates(names: string[]): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const n of names) (seen.has(n) ? dup : seen).add(n);
  return [...dup];
}

// ---------------------------------------------------------------- names

describe('builder: names', () => {
  it('scopes names and numbers repeats deterministically', () => {
    const g = new GraphBuilder('t');
    const x = g.input('x', 'float32', ['N', 3]);
    const a = g.scope('enc', () => g.scope('blk', () => op.add(g, x, x)));
    const b = g.scope('enc', () => g.scope('blk', () => op.add(g, x, x)));
    const c = g.scope('enc', () => g.constant(tensor('float32', [], [1]), 'w'));
    const d = g.scope('enc', () => g.constant(tensor('float32', [], [1]), 'w'));
    const e = op.add(g, x, x);
    expect([a.name, b.name, c.name, d.name, e.name]).to.deep.equal(['enc/blk/Add', 'enc/blk/Add_1', 'enc/w', 'enc/w_1', 'Add']);
    const graph = g.build();
    expect(graph.nodes.map((n) => n.name)).to.deep.equal(['enc/blk/Add', 'enc/blk/Add_1', 'Add']);
  });

  it('a scope is closed even when its body throws', () => {
    const g = new GraphBuilder('t');
    const x = g.input('x', 'float32', [2]);
    expect(() => g.scope('bad', () => { throw new Error('boom'); })).to.throw('boom');
    expect(op.relu(g, x).name).to.equal('Relu');
  });

  it('building the same Glow graphs twice gives the same names and byte-identical models', () => {
    for (const variant of [{}, { numClasses: 3, coupling: 'additive' as const }]) {
      for (const fold of [true, false]) {
        for (const build of [buildEncode, buildDecode]) {
          const g1 = build(glowWeights(variant), { fold });
          const g2 = build(glowWeights(variant), { fold });
          expect(g1.nodes.map(nodeSignature)).to.deep.equal(g2.nodes.map(nodeSignature));
          expect([...g1.initializers.keys()].map(String)).to.deep.equal([...g2.initializers.keys()].map(String));
          expect(Buffer.from(serializeModel(g1)).equals(Buffer.from(serializeModel(g2))), `${build.name} fold=${fold}`).to.equal(true);
        }
      }
    }
  });

  it('Glow graphs have unique value names and unique node names', () => {
    for (const variant of [{}, { numClasses: 3 }, { permutation: 'shuffle' as const, L: 3, imageShape: [1, 8, 8] as [number, number, number] }]) {
      for (const fold of [true, false]) {
        for (const build of [buildEncode, buildDecode]) {
          const graph = build(glowWeights(variant), { fold });
          expect(duplicates(allValueNames(graph)), 'duplicate value names').to.deep.equal([]);
          expect(duplicates(graph.nodes.map((n) => n.name)), 'duplicate node names').to.deep.equal([]);
        }
      }
    }
  });

  it('names made through constant/node never collide, even with hints that look generated', () => {
    const g = new GraphBuilder('t');
    const x = g.input('x', 'float32', [4]);
    const names: string[] = [x.name];
    const k = () => tensor('float32', [], [0]);
    for (const hint of ['w', 'w', 'w_1', 'w_1', 'w_2', 'w', 'Add', 'Add_1', 'x', 'x_1']) names.push(g.constant(k(), hint).name);
    for (let i = 0; i < 3; i++) names.push(op.add(g, x, x).name);
    g.scope('s', () => {
      for (const hint of ['w', 'w']) names.push(g.constant(k(), hint).name);
      names.push(op.add(g, x, x).name);
    });
    names.push(...op.split(g, x, [2, 2], 0).map((v) => v.name));
    names.push(...op.split(g, x, [1, 3], 0).map((v) => v.name));
    expect(duplicates(names)).to.deep.equal([]);
    const graph = g.build();
    expect(duplicates(allValueNames(graph))).to.deep.equal([]);
    expect(duplicates(graph.nodes.map((n) => n.name))).to.deep.equal([]);
  });

  it('freshName never hands out the same name twice', () => {
    const g = new GraphBuilder('t');
    const names = ['a', 'a', 'a_1', 'a_1', 'b'].map((h) => g.freshName(h));
    g.scope('s', () => names.push(g.freshName('a'), g.freshName('a')));
    expect(duplicates(names), `freshName returned ${names.join(', ')}`).to.deep.equal([]);
  });

  it('registering a name twice throws and names it', () => {
    const g = new GraphBuilder('t');
    g.initializer('w', tensor('float32', [2], [1, 2]));
    expect(thrownMessage(() => g.initializer('w', tensor('float32', [2], [3, 4])))).to.match(/\bw\b.*already used/);
    g.input('x', 'float32', [2]);
    expect(() => g.initializer('x', tensor('float32', [2], [3, 4]))).to.throw(/x.*already used/);
    expect(() => g.input('w', 'float32', [2])).to.throw(/w.*already used/);
  });

  it('an initializer whose data does not fill its shape is rejected with its name', () => {
    const g = new GraphBuilder('t');
    expect(() => g.initializer('short', { dtype: 'float32', shape: [2, 3], data: new Float64Array(5) })).to.throw(/short.*5.*\[2, 3\]/);
  });

  it('supports opsets 13..20 and rejects 12 and 21 with a clear message', () => {
    expect(SUPPORTED_OPSETS).to.deep.equal([13, 14, 15, 16, 17, 18, 19, 20]);
    for (const opset of SUPPORTED_OPSETS) expect(new GraphBuilder('t', { opset }).opset).to.equal(opset);
    for (const opset of [12, 21]) {
      const message = thrownMessage(() => new GraphBuilder('t', { opset }));
      expect(message).to.include(`opset ${opset}`);
      expect(message).to.match(/not supported/);
      expect(message).to.include('13').and.include('20');
    }
  });
});

// ---------------------------------------------------------------- shape inference

describe('builder: shape inference of the op helpers', () => {
  let g: GraphBuilder;
  const w = (shape: number[], hint = 'w') => g.constant(tensor('float32', shape, new Float64Array(shape.reduce((a, b) => a * b, 1))), hint);
  const input = (name: string, shape: Shape, dtype: DType = 'float32') => g.input(name, dtype, shape);
  beforeEach(() => {
    g = new GraphBuilder('shapes');
  });

  it('conv: pads, strides, dilations, group, symbolic batch', () => {
    const x = input('x', ['N', 4, 9, 9]);
    expect(op.conv(g, x, w([6, 4, 3, 3]), undefined).shape).to.deep.equal(['N', 6, 7, 7]);
    expect(op.conv(g, x, w([6, 4, 3, 3]), w([6]), { pads: op.samePads(3) }).shape).to.deep.equal(['N', 6, 9, 9]);
    expect(op.conv(g, x, w([6, 2, 3, 3]), undefined, { pads: [1, 1, 1, 1], strides: [2, 2], group: 2 }).shape).to.deep.equal(['N', 6, 5, 5]);
    expect(op.conv(g, x, w([8, 1, 3, 3]), undefined, { group: 4, dilations: [2, 2] }).shape).to.deep.equal(['N', 8, 5, 5]);
    // asymmetric pads [top, left, bottom, right], rectangular kernel and strides
    expect(op.conv(g, x, w([2, 4, 3, 1]), undefined, { pads: [0, 1, 2, 3], strides: [1, 3] }).shape).to.deep.equal(['N', 2, 9, 5]);
    expect(op.conv(g, x, w([5, 4, 1, 1]), undefined).shape).to.deep.equal(['N', 5, 9, 9]);
  });

  it('conv: channel and bias mismatches name the values', () => {
    const x = input('img', ['N', 4, 9, 9]);
    const message = thrownMessage(() => op.conv(g, x, w([6, 3, 3, 3], 'kernel'), undefined));
    expect(message).to.include('img').and.include('kernel').and.include('4');
    expect(() => op.conv(g, x, w([6, 4, 3, 3]), undefined, { group: 2 })).to.throw(/img.*channels/);
    expect(() => op.conv(g, x, w([6, 4, 3, 3]), w([5], 'b'))).to.throw(/\bb\b/);
    expect(() => op.conv(g, input('flat', ['N', 4]), w([6, 4, 3, 3]), undefined)).to.throw(/flat/);
  });

  it('matmul and gemm', () => {
    expect(op.matmul(g, input('a', ['N', 3, 4]), w([4, 5])).shape).to.deep.equal(['N', 3, 5]);
    expect(op.matmul(g, input('b', [2, 1, 3, 4]), w([5, 4, 6])).shape).to.deep.equal([2, 5, 3, 6]);
    expect(() => op.matmul(g, input('p', [3, 4]), input('q', [5, 6]))).to.throw(/p.*q/);
    const y = input('y', ['N', 8]);
    expect(op.gemm(g, y, w([10, 8]), w([10]), { transB: true }).shape).to.deep.equal(['N', 10]);
    expect(op.gemm(g, y, w([8, 10]), undefined).shape).to.deep.equal(['N', 10]);
    expect(op.gemm(g, w([8, 3]), w([8, 10]), undefined, { transA: true }).shape).to.deep.equal([3, 10]);
  });

  it('reshape with 0 and -1 on static shapes', () => {
    const x = input('x', [2, 3, 4]);
    expect(op.reshape(g, x, [0, -1]).shape).to.deep.equal([2, 12]);
    expect(op.reshape(g, x, [-1, 4]).shape).to.deep.equal([6, 4]);
    expect(op.reshape(g, x, [0, 0, 2, 2]).shape).to.deep.equal([2, 3, 2, 2]);
    expect(op.reshape(g, x, [24]).shape).to.deep.equal([24]);
    const n = input('n', ['N', 4, 6]);
    expect(op.reshape(g, n, [0, 2, 2, 6]).shape).to.deep.equal(['N', 2, 2, 6]);
  });

  it('reshape infers -1 next to a symbolic batch dimension copied by 0', () => {
    const n = input('n', ['N', 4, 6]);
    expect(op.reshape(g, n, [0, -1]).shape).to.deep.equal(['N', 24]);
    expect(op.reshape(g, n, [0, -1, 3]).shape).to.deep.equal(['N', 8, 3]);
  });

  it('impossible reshapes throw and name the value', () => {
    const x = input('src', [2, 3, 4]);
    const accepted: string[] = [];
    for (const target of [[5, 5], [5, -1], [-1, -1], [7, 0, -1]]) {
      try {
        const y = op.reshape(g, x, target);
        accepted.push(`[${target}] -> [${y.shape}]`);
      } catch (e) {
        expect((e as Error).message, `[${target}]`).to.include('src');
      }
    }
    expect(accepted, 'impossible reshapes of src [2, 3, 4] that did not throw').to.deep.equal([]);
  });

  it('transpose, concat, split, gather, depthToSpace', () => {
    const x = input('x', ['N', 2, 3, 4]);
    expect(op.transpose(g, x, [0, 2, 3, 1]).shape).to.deep.equal(['N', 3, 4, 2]);
    expect(op.transpose(g, input('x6', [1, 2, 3, 4, 5, 6]), [0, 1, 3, 5, 2, 4]).shape).to.deep.equal([1, 2, 4, 6, 3, 5]);
    const a = input('a', ['N', 2, 4]);
    const b = input('b', ['N', 3, 4]);
    expect(op.concat(g, [a, b], 1).shape).to.deep.equal(['N', 5, 4]);
    expect(op.concat(g, [a, a, a], -1).shape).to.deep.equal(['N', 2, 12]);
    const s = input('s', ['N', 6, 4]);
    expect(op.split(g, s, [2, 4], 1).map((v) => v.shape)).to.deep.equal([['N', 2, 4], ['N', 4, 4]]);
    expect(op.split(g, s, [1, 1, 2], -1).map((v) => v.shape)).to.deep.equal([['N', 6, 1], ['N', 6, 1], ['N', 6, 2]]);
    expect(op.gather(g, input('gx', ['N', 5, 3]), [4, 0, 2], 1).shape).to.deep.equal(['N', 3, 3]);
    expect(op.gather(g, input('gy', [7]), [1, 2], 0).shape).to.deep.equal([2]);
    expect(op.depthToSpace(g, input('d', ['N', 8, 3, 5]), 2, 'CRD').shape).to.deep.equal(['N', 2, 6, 10]);
    expect(op.depthToSpace(g, input('d3', [1, 18, 2, 2]), 3, 'DCR').shape).to.deep.equal([1, 2, 6, 6]);
  });

  it('split sizes that do not add up throw and name the value', () => {
    const s = input('halves', ['N', 6, 4]);
    const message = thrownMessage(() => op.split(g, s, [2, 3], 1));
    expect(message).to.include('halves').and.include('6');
  });

  it('concat of values that differ off the concat axis throws and names them', () => {
    const a = input('left', [1, 2, 3]);
    const b = input('right', [1, 4, 5]);
    expect(() => op.concat(g, [a, b], 1)).to.throw(/left|right/);
  });

  it('depthToSpace of channels not divisible by blocksize^2 throws and names the value', () => {
    expect(() => op.depthToSpace(g, input('odd', [1, 6, 2, 2]), 2, 'CRD')).to.throw(/odd/);
  });

  it('reduceSum and reduceMean with keepdims on and off', () => {
    const x = input('x', ['N', 3, 4, 5]);
    for (const reduce of [op.reduceSum, op.reduceMean]) {
      expect(reduce(g, x, [2, 3], true).shape).to.deep.equal(['N', 3, 1, 1]);
      expect(reduce(g, x, [2, 3], false).shape).to.deep.equal(['N', 3]);
      expect(reduce(g, x, [1, 2, 3], false).shape).to.deep.equal(['N']);
      expect(reduce(g, x, [-1], false).shape).to.deep.equal(['N', 3, 4]);
      expect(reduce(g, x, [-1], true).shape).to.deep.equal(['N', 3, 4, 1]);
    }
    expect(() => op.reduceSum(g, x, [4], true)).to.throw(/axis 4/);
  });

  it('broadcasting, including the symbolic batch N', () => {
    const cases: [Shape, Shape, Shape][] = [
      [['N', 1, 4], [3, 1], ['N', 3, 4]],
      [['N', 3], ['N', 3], ['N', 3]],
      [['N', 3], [1], ['N', 3]],
      [['N', 3, 1, 1], [3, 5, 5], ['N', 3, 5, 5]],
      [[], ['N', 2], ['N', 2]],
      [['N', 1], [1, 7], ['N', 7]],
      [[2, 1, 3], [4, 1], [2, 4, 3]],
    ];
    cases.forEach(([sa, sb, expected], i) => {
      const a = input(`a${i}`, sa);
      const b = input(`b${i}`, sb);
      for (const f of [op.add, op.sub, op.mul, op.div]) {
        expect(f(g, a, b).shape, `${sa} . ${sb}`).to.deep.equal(expected);
        expect(f(g, b, a).shape, `${sb} . ${sa}`).to.deep.equal(expected);
      }
    });
    expect(op.sum(g, [input('s1', ['N', 1]), input('s2', [1, 3]), input('s3', [3])]).shape).to.deep.equal(['N', 3]);
  });

  it('non-broadcastable shapes and mixed dtypes throw and name the values', () => {
    const a = input('lhs', [2, 3]);
    const b = input('rhs', [4, 3]);
    const message = thrownMessage(() => op.add(g, a, b));
    expect(message).to.include('lhs').and.include('rhs');
    expect(() => op.mul(g, input('p', ['N', 3]), input('q', [2]))).to.throw(/p.*q/);
    expect(() => op.add(g, input('f', [2]), input('i', [2], 'int64'))).to.throw(/f.*i/);
  });

  it('unary ops, cast and identity keep shapes; cast changes the dtype', () => {
    const x = input('x', ['N', 2]);
    for (const f of [op.exp, op.log, op.neg, op.sigmoid, op.relu, op.sqrt, op.abs, op.identity]) {
      const y = f(g, x);
      expect([y.dtype, y.shape]).to.deep.equal(['float32', ['N', 2]]);
    }
    const c = op.cast(g, x, 'float16');
    expect([c.dtype, c.shape]).to.deep.equal(['float16', ['N', 2]]);
  });
});

// ---------------------------------------------------------------- attributes and opset forms

describe('builder: attributes and opset-dependent forms', () => {
  const attrsOf = (g: GraphBuilder, v: Value) => g.build().nodes.find((n) => n.outputs.includes(v))!;

  it('Conv carries dilations, group, kernel_shape, pads and strides even at their defaults', () => {
    const g = new GraphBuilder('t');
    const x = g.input('x', 'float32', ['N', 2, 5, 5]);
    const y = op.conv(g, x, g.constant(tensor('float32', [3, 2, 3, 1], new Float64Array(18))), undefined);
    const node = attrsOf(g, y);
    expect(node.attributes).to.deep.equal({
      dilations: attr.ints([1, 1]), group: attr.int(1), kernel_shape: attr.ints([3, 1]), pads: attr.ints([0, 0, 0, 0]), strides: attr.ints([1, 1]),
    });
    // and they reach the proto
    g.output(y, 'y');
    const proto = onnx.ModelProto.decode(serializeModel(g.build()));
    const conv = proto.graph!.node!.find((n) => n.opType === 'Conv')!;
    expect(conv.attribute!.map((a) => a.name)).to.deep.equal(['dilations', 'group', 'kernel_shape', 'pads', 'strides']);
  });

  it('other ops write their attributes explicitly', () => {
    const g = new GraphBuilder('t');
    const x = g.input('x', 'float32', ['N', 4, 2, 2]);
    const keys = (v: Value) => Object.keys(attrsOf(g, v).attributes).sort();
    expect(keys(op.gemm(g, g.input('m', 'float32', ['N', 3]), g.constant(tensor('float32', [5, 3], new Float64Array(15))), undefined, { transB: true })))
      .to.deep.equal(['alpha', 'beta', 'transA', 'transB']);
    expect(keys(op.transpose(g, x, [0, 2, 3, 1]))).to.deep.equal(['perm']);
    expect(keys(op.concat(g, [x, x], 1))).to.deep.equal(['axis']);
    expect(keys(op.split(g, x, [2, 2], 1)[0])).to.deep.equal(['axis']);
    expect(keys(op.gather(g, x, [1, 0], 1))).to.deep.equal(['axis']);
    expect(attrsOf(g, op.depthToSpace(g, x, 2, 'CRD')).attributes).to.deep.equal({ blocksize: attr.int(2), mode: attr.string('CRD') });
    expect(attrsOf(g, op.cast(g, x, 'float16')).attributes).to.deep.equal({ to: attr.int(10) });
  });

  it('reduceMean uses the axes attribute below opset 18 and an input from 18; reduceSum always an input', () => {
    for (const opset of SUPPORTED_OPSETS) {
      const g = new GraphBuilder('t', { opset });
      const x = g.input('x', 'float32', ['N', 3, 4]);
      const mean = attrsOf(g, op.reduceMean(g, x, [1, -1], false));
      const graph = g.build();
      if (opset < 18) {
        expect(mean.inputs, `opset ${opset}`).to.have.length(1);
        expect(mean.attributes.axes, `opset ${opset}`).to.deep.equal(attr.ints([1, -1]));
      } else {
        expect(mean.inputs, `opset ${opset}`).to.have.length(2);
        expect(mean.attributes, `opset ${opset}`).not.to.have.property('axes');
        const axes = graph.initializers.get(mean.inputs[1]!)!;
        expect([axes.dtype, Array.from(axes.data)]).to.deep.equal(['int64', [1, -1]]);
      }
      expect(mean.attributes.keepdims).to.deep.equal(attr.int(0));
      const sum = attrsOf(g, op.reduceSum(g, x, [2], true));
      expect(sum.inputs, `opset ${opset}`).to.have.length(2);
      expect(sum.attributes, `opset ${opset}`).not.to.have.property('axes');
      expect(sum.attributes.keepdims).to.deep.equal(attr.int(1));
      expect(sum.attributes.noop_with_empty_axes).to.deep.equal(attr.int(0));
      const axes = g.build().initializers.get(sum.inputs[1]!)!;
      expect([axes.dtype, Array.from(axes.data)]).to.deep.equal(['int64', [2]]);
    }
  });

  it('split takes its sizes as an int64 input at every opset', () => {
    for (const opset of SUPPORTED_OPSETS) {
      const g = new GraphBuilder('t', { opset });
      const node = attrsOf(g, op.split(g, g.input('x', 'float32', ['N', 6]), [2, 4], 1)[0]);
      expect(node.inputs).to.have.length(2);
      expect(Array.from(g.build().initializers.get(node.inputs[1]!)!.data)).to.deep.equal([2, 4]);
    }
  });

  it('Reshape writes allowzero only where its opset defines it (Reshape-14 and later)', () => {
    for (const opset of SUPPORTED_OPSETS) {
      const g = new GraphBuilder('t', { opset });
      const node = attrsOf(g, op.reshape(g, g.input('x', 'float32', ['N', 6]), [0, 2, 3]));
      if (opset < 14) expect(node.attributes, `opset ${opset}`).not.to.have.property('allowzero');
      else expect(node.attributes.allowzero, `opset ${opset}`).to.deep.equal(attr.int(0));
    }
  });
});

// ---------------------------------------------------------------- float16

describe('builder: float16 conversion', () => {
  it('known values', () => {
    const cases: [number, number][] = [
      [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [65504, 0x7bff], [2 ** -14, 0x0400], [6.1e-5, 0x03ff],
      [2 ** -24, 0x0001], [0, 0x0000], [-0, 0x8000], [0.1, 0x2e66], [-65504, 0xfbff],
      [65520, 0x7c00], [1e6, 0x7c00], [-1e6, 0xfc00], [Infinity, 0x7c00], [-Infinity, 0xfc00], [1e-10, 0x0000],
    ];
    for (const [x, bits] of cases) expect(float16Bits(x), `float16Bits(${x})`).to.equal(bits);
    const nan = float16Bits(NaN);
    expect(nan & 0x7c00).to.equal(0x7c00);
    expect(nan & 0x03ff).not.to.equal(0);
  });

  it('rounds ties to even, in the normal and the subnormal range', () => {
    const cases: [number, number][] = [
      [1 + 2 ** -11, 0x3c00], // halfway 1 .. 1+2^-10: even is 1
      [1 + 3 * 2 ** -11, 0x3c02], // halfway 1+2^-10 (odd) .. 1+2^-9
      [2049, 0x6800], [2051, 0x6802], [-2049, 0xe800],
      [65519, 0x7bff], // just below the overflow tie
      [2 ** -25, 0x0000], // halfway 0 .. smallest subnormal: even is 0
      [3 * 2 ** -25, 0x0002], // halfway 1 .. 2 subnormal ulps
      [1.5 * 2 ** -25, 0x0001],
      [2 ** -14 - 2 ** -25, 0x0400], // halfway largest subnormal (odd) .. smallest normal
    ];
    for (const [x, bits] of cases) expect(float16Bits(x), `float16Bits(${x})`).to.equal(bits);
    // just off a tie goes to the nearer neighbour
    expect(float16Bits(Math.fround(1 + 2 ** -11 + 2 ** -20))).to.equal(0x3c01);
    expect(float16Bits(Math.fround(1 + 2 ** -11 - 2 ** -20))).to.equal(0x3c00);
  });

  it('rounds a float64 just above a tie up (no double rounding through float32)', () => {
    // 1 + 2^-11 + 2^-40 is closer to 1 + 2^-10 than to 1; a detour through float32 makes it an exact tie.
    expect(float16Bits(1 + 2 ** -11 + 2 ** -40)).to.equal(0x3c01);
    expect(float16Bits(2 ** -25 + 2 ** -60)).to.equal(0x0001);
  });

  it('float16Value decodes known bits', () => {
    const cases: [number, number][] = [
      [0x3c00, 1], [0xc000, -2], [0x3800, 0.5], [0x7bff, 65504], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24],
      [0x0400, 2 ** -14], [0x7c00, Infinity], [0xfc00, -Infinity], [0x0000, 0],
    ];
    for (const [bits, x] of cases) expect(float16Value(bits), `float16Value(0x${bits.toString(16)})`).to.equal(x);
    expect(Object.is(float16Value(0x8000), -0)).to.equal(true);
    expect(float16Value(0x7e00)).to.be.NaN;
    expect(float16Value(0xfe01)).to.be.NaN;
  });

  it('float16Bits(float16Value(h)) === h for every non-NaN half', () => {
    const bad: string[] = [];
    for (let h = 0; h < 0x10000; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (!isNaN && float16Bits(float16Value(h)) !== h) bad.push(h.toString(16));
    }
    expect(bad.slice(0, 10)).to.deep.equal([]);
  });
});

// ---------------------------------------------------------------- serialize / parse

function storedValue(dtype: DType, v: number): number {
  if (dtype === 'float32') return Math.fround(v);
  if (dtype === 'float16') return float16Value(float16Bits(v));
  if (dtype === 'bool') return v ? 1 : 0;
  return v;
}

/** A graph that exercises every dtype, attribute kind, symbolic dims, docs and metadata. */
function richGraph(opset: number): Graph {
  const rng = new Rng(42);
  const g = new GraphBuilder('rich', { opset });
  g.metadata = { 'z.last': 'z', 'a.first': '{"json": [1, 2]}', unicode: 'ß → ✓' };
  const init = (name: string, dtype: DType, shape: number[], data: number[]) => g.initializer(name, tensor(dtype, shape, data));
  const x = g.input('x', 'float32', ['N', 4, 'H', 6], 'pixels, NCHW');
  const ids = g.input('ids', 'int64', ['N'], 'class ids');
  const flag = g.input('flag', 'bool', []);
  const w = init('conv.weight', 'float32', [6, 2, 3, 3], normals(rng, 108));
  const b = init('conv.bias', 'float32', [6], normals(rng, 6, 0.1));
  init('f64', 'float64', [2, 3], [Math.PI, -1e-300, 1e300, 1 / 3, -0, 5e-324]);
  init('i64', 'int64', [5], [0, -1, 2 ** 40, -(2 ** 50), 2 ** 53 - 1]);
  init('i32', 'int32', [4], [0, -1, 2147483647, -2147483648]);
  init('f16', 'float16', [2, 4], [1, -2, 0.5, 65504, 2 ** -24, 0.1, -1 / 3, 1000.5]);
  init('bools', 'bool', [3], [1, 0, 1]);
  init('scalar', 'float32', [], [2.5]);
  init('empty', 'int64', [0], []);
  const c = op.conv(g, x, w, b, { pads: [1, 1, 1, 1], group: 2, strides: [1, 2] });
  const r = op.relu(g, c);
  const maxv = init('clip.max', 'float32', [], [6]);
  const clipped = g.node('Clip', [r, undefined, maxv], {}, [{ dtype: 'float32', shape: r.shape }])[0];
  const k = g.node('Constant', [], { value: attr.tensor(tensor('float32', [2], [1.5, -2.25])) }, [{ dtype: 'float32', shape: [2] }])[0];
  const custom = g.node('Custom', [clipped, k], {
    f: attr.float(0.1), i: attr.int(-7), big: attr.int(2 ** 40), s: attr.string('héllo ✓'), fs: attr.floats([0.5, -1.25, 0.1]),
    is: attr.ints([-1, 0, 2 ** 40]), t16: attr.tensor(tensor('float16', [3], [1, 0.1, -65504])), ti: attr.tensor(tensor('int64', [2], [-5, 7])),
  }, [{ dtype: 'float32', shape: ['N', 'C_out', 'H', 3] }], undefined, 'com.example')[0];
  const unknown = g.node('Opaque', [custom], {}, [{ dtype: 'float32', shape: undefined }])[0];
  const half = op.cast(g, r, 'float16');
  const d2s = op.depthToSpace(g, op.gather(g, r, [0, 1, 2, 3], 1), 2, 'CRD');
  g.output(clipped, 'y', 'clipped activations');
  g.output(unknown, 'u');
  g.output(half, 'h16', 'half precision');
  g.output(d2s, 'd2s', 'depth to space');
  g.output(op.cast(g, ids, 'float32'), 'ids_f');
  g.output(flag, 'flag_out');
  return g.build('a graph doc string');
}

function normalizeTensor(t: Tensor) {
  return { dtype: t.dtype, shape: [...t.shape], data: Array.from(t.data) };
}

function normalizeAttribute(a: Attribute, stored: boolean): unknown {
  switch (a.kind) {
    case 'float': return { kind: a.kind, value: stored ? Math.fround(a.value) : a.value };
    case 'floats': return { kind: a.kind, value: stored ? a.value.map(Math.fround) : a.value };
    case 'tensor': {
      const t = normalizeTensor(a.value);
      return { kind: a.kind, value: stored ? { ...t, data: t.data.map((v) => storedValue(t.dtype, v)) } : t };
    }
    default: return a;
  }
}

function nodeSummary(n: Node, stored: boolean) {
  const attributes: Record<string, unknown> = {};
  for (const k of Object.keys(n.attributes).sort()) attributes[k] = normalizeAttribute(n.attributes[k], stored);
  return {
    op: n.op, name: n.name, domain: n.domain, inputs: n.inputs.map((v) => v?.name ?? null),
    outputs: n.outputs.map((v) => ({ name: v.name, dtype: v.dtype, shape: v.shape })), attributes,
  };
}

const ioSummary = (ios: Graph['inputs']) => ios.map((io) => ({ name: io.value.name, dtype: io.value.dtype, shape: io.value.shape, doc: io.doc }));

describe('builder: serialize / parse', () => {
  const info = { producerName: 'builder.test', producerVersion: '1.2.3', modelVersion: 42, docString: 'model doc' };

  for (const opset of [13, 17, 18, 20]) {
    it(`round trips every part of a model at opset ${opset}, and re-serializes to the same bytes`, () => {
      const graph = richGraph(opset);
      const bytes = serializeModel(graph, info);
      const parsed = parseModel(bytes);
      const p = parsed.graph;
      expect(parsed.irVersion).to.equal(irVersionFor(opset));
      expect(parsed.info).to.deep.equal(info);
      expect(p.opset).to.equal(opset);
      expect(p.name).to.equal('rich');
      expect(p.docString).to.equal('a graph doc string');
      expect(p.metadata).to.deep.equal(graph.metadata);
      expect(ioSummary(p.inputs)).to.deep.equal(ioSummary(graph.inputs));
      expect(ioSummary(p.outputs)).to.deep.equal(ioSummary(graph.outputs));
      expect(p.nodes.map((n) => nodeSummary(n, false))).to.deep.equal(graph.nodes.map((n) => nodeSummary(n, true)));
      const initializers = new Map([...p.initializers].map(([v, t]) => {
        expect([v.dtype, v.shape], v.name).to.deep.equal([t.dtype, t.shape]);
        return [v.name, normalizeTensor(t)];
      }));
      const expected = new Map([...graph.initializers].map(([v, t]) => {
        const n = normalizeTensor(t);
        return [v.name, { ...n, data: n.data.map((d) => storedValue(t.dtype, d)) }];
      }));
      expect(initializers).to.deep.equal(expected);
      // a few values spelled out, independently of the writer
      expect(initializers.get('i64')!.data).to.deep.equal([0, -1, 2 ** 40, -(2 ** 50), 2 ** 53 - 1]);
      expect(initializers.get('i32')!.data).to.deep.equal([0, -1, 2147483647, -2147483648]);
      expect(initializers.get('f16')!.data.slice(0, 5)).to.deep.equal([1, -2, 0.5, 65504, 2 ** -24]);
      expect(initializers.get('f64')!.data).to.deep.equal([Math.PI, -1e-300, 1e300, 1 / 3, -0, 5e-324]);
      expect(initializers.get('bools')).to.deep.equal({ dtype: 'bool', shape: [3], data: [1, 0, 1] });
      expect(initializers.get('scalar')).to.deep.equal({ dtype: 'float32', shape: [], data: [2.5] });
      expect(initializers.get('empty')).to.deep.equal({ dtype: 'int64', shape: [0], data: [] });
      // node inputs are the very Values the reader made for initializers and inputs
      const known = new Set<Value>([...p.initializers.keys(), ...p.inputs.map((io) => io.value), ...p.nodes.flatMap((n) => n.outputs)]);
      for (const n of p.nodes) for (const v of n.inputs) if (v) expect(known.has(v), `${n.name} input ${v.name}`).to.equal(true);
      const again = serializeModel(p, parsed.info);
      expect(Buffer.from(again).equals(Buffer.from(bytes)), 're-serialized bytes differ').to.equal(true);
    });
  }

  it('maps opsets to the lowest IR version that carries them', () => {
    expect([13, 14, 17, 18, 19, 20].map(irVersionFor)).to.deep.equal([7, 8, 8, 8, 9, 9]);
  });

  it('writes value_info for intermediate values with a known shape', () => {
    const graph = richGraph(17);
    const proto = onnx.ModelProto.decode(serializeModel(graph));
    const valueInfo = new Set(proto.graph!.valueInfo!.map((v) => v.name));
    const outputs = new Set(graph.outputs.map((io) => io.value.name));
    for (const v of graph.nodes.flatMap((n) => n.outputs)) {
      expect(valueInfo.has(v.name), v.name).to.equal(!outputs.has(v.name) && v.shape !== undefined);
    }
  });

  it('empty, garbage and truncated bytes throw OnnxFormatError', () => {
    const bytes = serializeModel(richGraph(17));
    const rng = new Rng(3);
    const garbage = Uint8Array.from({ length: 1000 }, () => rng.int(256));
    const cases: [string, Uint8Array][] = [
      ['empty', new Uint8Array(0)],
      ['text', new TextEncoder().encode('this is not an onnx model\n')],
      ['garbage', garbage],
      ['zeros', new Uint8Array(64)],
      ['0xff', new Uint8Array(64).fill(0xff)],
      ['half', bytes.slice(0, bytes.length >> 1)],
      ['all but one byte', bytes.slice(0, bytes.length - 1)],
    ];
    for (const [what, b] of cases) expect(() => parseModel(b), what).to.throw(OnnxFormatError);
  });

  it('a node reading a value nothing produces is an OnnxFormatError naming it', () => {
    const m = onnx.ModelProto.create({
      irVersion: 8, opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'g', node: [{ opType: 'Relu', name: 'n', input: ['ghost'], output: ['y'] }],
        output: [{ name: 'y', type: { tensorType: { elemType: 1, shape: { dim: [] } } } }],
      },
    });
    expect(() => parseModel(onnx.ModelProto.encode(m).finish())).to.throw(OnnxFormatError, /ghost/);
  });

  it('a model without a default-domain opset import is an OnnxFormatError', () => {
    const bytes = serializeModel(richGraph(17));
    const m = onnx.ModelProto.decode(bytes);
    m.opsetImport = [onnx.OperatorSetIdProto.create({ domain: 'com.example', version: 1 })];
    expect(() => parseModel(onnx.ModelProto.encode(m).finish())).to.throw(OnnxFormatError);
  });

  it('a tensor attribute without its tensor is an OnnxFormatError', () => {
    const m = onnx.ModelProto.create({
      irVersion: 8, opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'g', node: [{ opType: 'Constant', name: 'n', output: ['y'], attribute: [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR }] }],
        output: [{ name: 'y', type: { tensorType: { elemType: 1, shape: { dim: [] } } } }],
      },
    });
    expect(() => parseModel(onnx.ModelProto.encode(m).finish())).to.throw(OnnxFormatError);
  });

  it('initializers with impossible dims (huge, negative) are an OnnxFormatError', () => {
    const wrong: string[] = [];
    for (const dims of [[1e12], [-3], [2 ** 20, 2 ** 20, 2 ** 20]]) {
      const m = onnx.ModelProto.create({
        irVersion: 8, opsetImport: [{ domain: '', version: 17 }],
        graph: {
          name: 'g', initializer: [{ name: 'w', dims, dataType: 1, rawData: new Uint8Array(4) }],
          node: [{ opType: 'Identity', name: 'n', input: ['w'], output: ['y'] }],
          output: [{ name: 'y', type: { tensorType: { elemType: 1 } } }],
        },
      });
      try {
        parseModel(onnx.ModelProto.encode(m).finish());
        wrong.push(`dims [${dims}]: parsed`);
      } catch (e) {
        if (!(e instanceof OnnxFormatError)) wrong.push(`dims [${dims}]: ${(e as Error).constructor.name}: ${(e as Error).message}`);
      }
    }
    expect(wrong).to.deep.equal([]);
  });

  it('fuzz: truncations and byte flips either parse or throw OnnxFormatError, never anything else', function () {
    this.timeout(20000);
    const problems: string[] = [];
    // The rich model: 300 truncations, 300 bit flips, 200 multi-byte edits.
    problems.push(...fuzzParse(serializeModel(richGraph(17), info), 20240601, { truncations: 300, flips: 300, edits: 200 }));
    // A small dense model, so that edits often land in tensor headers and attributes.
    problems.push(...fuzzParse(serializeModel(smallGraph()), 77, { truncations: 100, flips: 400, edits: 1500 }));
    expect(problems.slice(0, 10), `${problems.length} problems`).to.deep.equal([]);
  });
});

/** Mutates a model and checks that parseModel either reads it or throws OnnxFormatError. */
function fuzzParse(model: Uint8Array, seed: number, counts: { truncations: number; flips: number; edits: number }): string[] {
  // a plain Uint8Array copy: serializeModel may hand out a Node Buffer, whose slice() is a view
  const bytes = new Uint8Array(model);
  expect(() => parseModel(bytes)).not.to.throw();
  const rng = new Rng(seed);
  const wrong: string[] = [];
  let parsed = 0;
  let rejected = 0;
  let slowest = 0;
  const attempt = (what: string, b: Uint8Array) => {
    const t0 = Date.now();
    try {
      parseModel(b);
      parsed++;
    } catch (e) {
      if (e instanceof OnnxFormatError) rejected++;
      else wrong.push(`${what}: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    }
    slowest = Math.max(slowest, Date.now() - t0);
  };
  for (let i = 0; i < counts.truncations; i++) {
    const n = rng.int(bytes.length);
    attempt(`truncated to ${n} of ${bytes.length} bytes`, bytes.slice(0, n));
  }
  for (let i = 0; i < counts.flips; i++) {
    const b = bytes.slice();
    const pos = rng.int(b.length);
    const bit = rng.int(8);
    b[pos] ^= 1 << bit;
    attempt(`bit ${bit} of byte ${pos} flipped`, b);
  }
  for (let i = 0; i < counts.edits; i++) {
    const b = bytes.slice();
    const edits: string[] = [];
    for (let j = 1 + rng.int(3); j > 0; j--) {
      const pos = rng.int(b.length);
      b[pos] = rng.int(256);
      edits.push(`${pos}=${b[pos]}`);
    }
    attempt(`bytes set ${edits.join(',')}`, b);
  }
  const total = counts.truncations + counts.flips + counts.edits;
  expect(parsed + rejected + wrong.length).to.equal(total);
  expect(rejected, 'damaged models rejected').to.be.above(total / 10);
  expect(() => parseModel(bytes), 'the original is untouched').not.to.throw();
  expect(slowest, 'slowest parse (ms)').to.be.below(2000);
  return wrong;
}

/** A small model whose bytes are mostly tensor headers and attributes. */
function smallGraph(): Graph {
  const g = new GraphBuilder('small');
  const x = g.input('x', 'float32', ['N', 4, 'H', 6]);
  const w = g.initializer('w', tensor('float32', [6, 2, 3, 3], new Float64Array(108)));
  const c = op.conv(g, x, w, undefined, { group: 2 });
  const k = g.node('Constant', [], { value: attr.tensor(tensor('float32', [2], [1, 2])) }, [{ dtype: 'float32', shape: [2] }])[0];
  const custom = g.node('Custom', [c, k], { f: attr.float(0.1), fs: attr.floats([1, 2]), s: attr.string('x') }, [{ dtype: 'float32', shape: undefined }])[0];
  g.output(custom, 'y');
  return g.build();
}

// ---------------------------------------------------------------- passes

/** x [N, 3]: y = x * exp(logs * 3) (the chain logs -> Mul -> Exp is initializer-only), z = exp(x),
 * plus a dead branch and an unused initializer. */
function foldableGraph() {
  const g = new GraphBuilder('fold');
  const x = g.input('x', 'float32', ['N', 3]);
  const logsData = [0.1234567890123, -0.3, 0.271828182845];
  const logs = g.initializer('logs', tensor('float32', [3], logsData));
  const three = g.constant(tensor('float32', [], [3]), 'three');
  const e = op.exp(g, op.mul(g, logs, three));
  const y = op.mul(g, x, e);
  const z = op.exp(g, x);
  op.add(g, x, g.constant(tensor('float32', [3], [1, 2, 3]), 'dead_const'));
  g.constant(tensor('float32', [2], [1, 2]), 'unused');
  g.output(y, 'y');
  g.output(z, 'z');
  return { graph: g.build(), logsData };
}

function snapshot(graph: Graph) {
  return { nodes: [...graph.nodes], initializers: [...graph.initializers], inputs: [...graph.inputs], outputs: [...graph.outputs] };
}

function expectUnchanged(graph: Graph, before: ReturnType<typeof snapshot>) {
  expect(graph.nodes.length).to.equal(before.nodes.length);
  graph.nodes.forEach((n, i) => expect(n).to.equal(before.nodes[i]));
  expect(graph.initializers.size).to.equal(before.initializers.length);
  before.initializers.forEach(([v, t]) => expect(graph.initializers.get(v)).to.equal(t));
  expect(graph.outputs.map((io) => io.value)).to.deep.equal(before.outputs.map((io) => io.value));
  expect(graph.inputs.map((io) => io.value)).to.deep.equal(before.inputs.map((io) => io.value));
}

describe('builder: passes', () => {
  it('toposort orders a shuffled node list and leaves its input alone', () => {
    const sorted = buildEncode(glowWeights({ numClasses: 3 }), { fold: false });
    const rng = new Rng(9);
    const order = rng.permutation(sorted.nodes.length);
    const shuffled: Graph = { ...sorted, nodes: order.map((i) => sorted.nodes[i]) };
    const before = snapshot(shuffled);
    const result = toposort(shuffled);
    expectUnchanged(shuffled, before);
    assertSorted(result);
    const all = new Set(sorted.nodes);
    expect(result.nodes.every((n) => all.has(n))).to.equal(true);
    expect(result.nodes).to.have.length(sorted.nodes.length);
  });

  it('toposort is a no-op on a sorted graph', () => {
    const sorted = buildDecode(glowWeights(), { fold: true });
    const result = toposort(sorted);
    expect(result.nodes).to.have.length(sorted.nodes.length);
    result.nodes.forEach((n, i) => expect(n, `node ${i}`).to.equal(sorted.nodes[i]));
    expect(result.initializers).to.equal(sorted.initializers);
  });

  it('toposort reports a cycle and a dangling input by name', () => {
    const x = new Value('x', 'float32', [2]);
    const a = new Value('a_out', 'float32', [2]);
    const b = new Value('b_out', 'float32', [2]);
    const base: Graph = { name: 'cyclic', opset: 17, inputs: [{ value: x }], outputs: [{ value: b }], nodes: [], initializers: new Map(), metadata: {} };
    const cyclic = { ...base, nodes: [new Node('Add', 'node_a', [x, b], [a], {}), new Node('Relu', 'node_b', [a], [b], {})] };
    const message = thrownMessage(() => toposort(cyclic));
    expect(message).to.include('cyclic').and.match(/cycle/).and.match(/node_a|node_b/).and.match(/a_out|b_out/);
    const ghost = new Value('ghost', 'float32', [2]);
    const dangling = { ...base, name: 'dangling', nodes: [new Node('Relu', 'reader', [ghost], [b], {})] };
    expect(() => toposort(dangling)).to.throw(/reader.*ghost/);
  });

  it('cleanup removes dead nodes and unused initializers, and leaves its input alone', () => {
    const { graph } = foldableGraph();
    const before = snapshot(graph);
    const result = cleanup(graph);
    expectUnchanged(graph, before);
    expect(result.nodes.map((n) => n.op)).to.deep.equal(['Mul', 'Exp', 'Mul', 'Exp', 'Identity', 'Identity']);
    expect([...result.initializers.keys()].map((v) => v.name).sort()).to.deep.equal(['logs', 'three']);
    expect(result.inputs).to.deep.equal(graph.inputs);
    expect(result.outputs).to.deep.equal(graph.outputs);
  });

  it('foldConstants folds an initializer-only chain to its exact float64 value and leaves data alone', () => {
    const { graph, logsData } = foldableGraph();
    const before = snapshot(graph);
    const folded = foldConstants(graph);
    expectUnchanged(graph, before);
    // folding alone keeps the now unused initializers for cleanup
    expect(folded.nodes.map((n) => n.op)).to.deep.equal(['Mul', 'Exp', 'Add', 'Identity', 'Identity']);
    const result = cleanup(folded);
    expect(result.nodes.map((n) => n.op)).to.deep.equal(['Mul', 'Exp', 'Identity', 'Identity']);
    expect(result.initializers.size).to.equal(1);
    const [[value, t]] = [...result.initializers];
    expect(result.nodes[0].inputs[1]).to.equal(value);
    expect(result.nodes[0].inputs[0]).to.equal(graph.inputs[0].value);
    expect(result.nodes[1].inputs[0]).to.equal(graph.inputs[0].value);
    expect([t.dtype, t.shape, value.dtype, value.shape]).to.deep.equal(['float32', [3], 'float32', [3]]);
    expect(Array.from(t.data)).to.deep.equal(logsData.map((l) => Math.exp(l * 3)));
    expect(foldViolations(result)).to.deep.equal([]);
    expect(foldViolations(foldConstants({ ...graph, nodes: graph.nodes.slice(0, 1) }))).to.deep.equal([]);
  });

  it('chain composes passes left to right and chain(toposort, foldConstants, cleanup) folds', () => {
    const calls: string[] = [];
    const tag = (name: string): Pass => (g) => {
      calls.push(`${name}<${g.name}`);
      return { ...g, name: `${g.name}.${name}` };
    };
    const out = chain(tag('a'), tag('b'), tag('c'))(foldableGraph().graph);
    expect(calls).to.deep.equal(['a<fold', 'b<fold.a', 'c<fold.a.b']);
    expect(out.name).to.equal('fold.a.b.c');
    expect(chain()(foldableGraph().graph).name).to.equal('fold');

    const { graph, logsData } = foldableGraph();
    const before = snapshot(graph);
    const shuffled: Graph = { ...graph, nodes: [...graph.nodes].reverse() };
    const result = chain(toposort, foldConstants, cleanup)(shuffled);
    expectUnchanged(graph, before);
    expect(result.nodes.map((n) => n.op).sort()).to.deep.equal(['Exp', 'Identity', 'Identity', 'Mul']);
    expect([...result.initializers.values()].map((t) => Array.from(t.data))).to.deep.equal([logsData.map((l) => Math.exp(l * 3))]);
  });

  it('the folded graph computes the same as the unfolded one in onnxruntime', async () => {
    const { graph } = foldableGraph();
    const x: HostTensor = { shape: [2, 3], data: Float64Array.from([0.5, -1, 2, 3, 0.25, -0.75]) };
    const plain = await runGraph(cleanup(graph), { x });
    const folded = await runGraph(chain(foldConstants, cleanup)(graph), { x });
    expect(maxAbsDiff(folded.y.data, plain.y.data)).to.be.below(1e-6);
    expect(maxAbsDiff(folded.z.data, plain.z.data)).to.equal(0);
  });
});

// ---------------------------------------------------------------- Glow at every opset

describe('builder: Glow encode/decode at every supported opset', function () {
  this.timeout(30000);
  const variants: [string, Partial<GlowConfig>][] = [
    ['affine LU learnTop', {}],
    ['additive plain class-conditional', { coupling: 'additive', lu: false, numClasses: 3, learnTop: false }],
  ];
  const N = 2;
  const baselineOpset = 17;

  for (const [label, variant] of variants) {
    describe(label, () => {
      const model = glowWeights(variant, 13);
      const { config } = model;
      const x = randomImages(config, N, 21);
      const y = config.numClasses ? randomOneHot(config, N, 4) : undefined;
      let encBase: Record<string, HostTensor>;
      let decBase: Record<string, HostTensor>;
      const decodeFeeds = (eps: Record<string, HostTensor>): Feeds => {
        const feeds: Feeds = { temperature: 0.7 };
        for (let l = 1; l <= config.L; l++) feeds[`eps_${l}`] = eps[`eps_${l}`];
        if (y) feeds.y = y;
        return feeds;
      };

      // Bit for bit (README: "every opset gives identical results"): each opset only changes how an
      // op is written (an attribute or an input), never which kernel runs, so nothing may differ.
      const expectSameOutputs = async (enc: Graph, dec: Graph, encRef: Record<string, HostTensor>, decRef: Record<string, HostTensor>) => {
        const encOut = await runGraph(enc, y ? { x, y } : { x });
        expect(Object.keys(encOut).sort()).to.deep.equal(Object.keys(encRef).sort());
        for (const k of Object.keys(encRef)) {
          expect(encOut[k].shape, k).to.deep.equal(encRef[k].shape);
          expect(maxAbsDiff(encOut[k].data, encRef[k].data), `${enc.name} at opset ${enc.opset}: ${k}`).to.equal(0);
        }
        const decOut = await runGraph(dec, decodeFeeds(encRef));
        expect(decOut.x.shape).to.deep.equal([N, ...config.imageShape]);
        expect(maxAbsDiff(decOut.x.data, decRef.x.data), `${dec.name} at opset ${dec.opset}: x`).to.equal(0);
      };

      before(async () => {
        encBase = await runGraph(buildEncode(model, { opset: baselineOpset }), y ? { x, y } : { x });
        decBase = await runGraph(buildDecode(model, { opset: baselineOpset }), decodeFeeds(encBase));
      });

      for (const opset of SUPPORTED_OPSETS) {
        it(`opset ${opset}: same outputs as opset ${baselineOpset}, folded graph clean`, async () => {
          const enc = buildEncode(model, { opset });
          const dec = buildDecode(model, { opset });
          for (const graph of [enc, dec]) {
            expect(graph.opset).to.equal(opset);
            expect(foldViolations(graph), `${graph.name} at opset ${opset}`).to.deep.equal([]);
          }
          await expectSameOutputs(enc, dec, encBase, decBase);
        });
      }

      it('unfolded graphs: the same outputs at every opset', async () => {
        const encUnfolded = await runGraph(buildEncode(model, { opset: baselineOpset, fold: false }), y ? { x, y } : { x });
        const decUnfolded = await runGraph(buildDecode(model, { opset: baselineOpset, fold: false }), decodeFeeds(encUnfolded));
        for (const opset of SUPPORTED_OPSETS) {
          await expectSameOutputs(buildEncode(model, { opset, fold: false }), buildDecode(model, { opset, fold: false }), encUnfolded, decUnfolded);
        }
      });

      it('the unfolded graph does have Exp on initializers (the scan is not vacuous)', () => {
        expect(foldViolations(buildEncode(model, { fold: false })).length).to.be.above(0);
      });

      it('folded encode: each squeeze is inside a stride-2 Conv and the log-det uses Log, not Softplus', () => {
        const opsOf = (graph: Graph) => graph.nodes.map((n) => n.op);
        const folded = buildEncode(model);
        expect(opsOf(folded)).to.not.include.members(['Transpose', 'Softplus']);
        const strided = folded.nodes.filter((n) => n.op === 'Conv' && String(n.attributes.strides?.value) === '2,2');
        expect(strided.length).to.equal(config.L);
        const literal = opsOf(buildEncode(model, { fold: false }));
        expect(literal).to.include('Transpose');
        if (config.coupling === 'affine') expect(literal).to.include('Softplus');
      });
    });
  }
});
