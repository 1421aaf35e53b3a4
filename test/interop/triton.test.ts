// export --triton DIR: the model repository's layout, config.pbtxt (read back with a small parser
// for the text-format subset it uses) against the models' own inputs and outputs, and the
// properties Triton's dynamic batching relies on, checked in onnxruntime-node.

import { expect } from 'chai';
import ort from 'onnxruntime-node';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { GraphIO } from '../../src/builder/graph.js';
import { parseModel } from '../../src/builder/parse.js';
import { GlowConfig } from '../../src/glow/config.js';
import { checkpointBytes } from '../../src/glow/params.js';
import { exportGraphs } from '../../src/glow/export.js';
import { GlowWeights } from '../../src/glow/model.js';
import { HostTensor } from '../../src/math/tensor.js';
import { preferredBatchSizes, tritonConfig, TritonOptions, tritonRepository } from '../../src/glow/triton.js';
import { cli, maxAbsDiff, runGraph } from '../helpers.js';
import { randomImages, randomOneHot, randomParams } from '../../support/random-params.js';

// ---------------------------------------------------------------- protobuf text format (subset)

type PbValue = number | string | PbMessage;
/** Every field as the list of its values (repeated fields and [lists] alike). */
interface PbMessage { [field: string]: PbValue[] }

/** Parses fields `name: scalar`, `name: [ ... ]`, `name { ... }` / `name: { ... }`, with
 * numbers, "strings", enum identifiers and # comments. Throws on anything else. */
function parsePbtxt(text: string): PbMessage {
  const tokens = text.replace(/#[^\n]*/g, '').match(/"(?:[^"\\]|\\.)*"|[{}[\]:,]|[^\s{}[\]:,"]+/g) ?? [];
  let i = 0;
  const peek = () => tokens[i];
  const next = () => {
    if (i >= tokens.length) throw new Error('unexpected end of config.pbtxt');
    return tokens[i++];
  };
  const scalar = (t: string): PbValue => {
    if (t.startsWith('"')) return JSON.parse(t) as string;
    if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t);
    if (/^[A-Za-z_]\w*$/.test(t)) return t;
    throw new Error(`unexpected token ${t}`);
  };
  const value = (): PbValue => (peek() === '{' ? (next(), message('}')) : scalar(next()));
  function message(end: string | undefined): PbMessage {
    const m: PbMessage = {};
    while (peek() !== end) {
      const name = next();
      if (!/^[A-Za-z_]\w*$/.test(name)) throw new Error(`expected a field name, got ${name}`);
      if (peek() === ':') next();
      const values = (m[name] ??= []);
      if (peek() === '[') {
        next();
        while (peek() !== ']') {
          values.push(value());
          if (peek() === ',') next();
        }
        next();
      } else {
        values.push(value());
      }
      if (peek() === ',') next();
    }
    if (end) next();
    return m;
  }
  return message(undefined);
}

const one = (m: PbMessage, field: string): PbValue => {
  expect(m[field], `field ${field}`).to.have.length(1);
  return m[field][0];
};

// ---------------------------------------------------------------- tests

const config: GlowConfig = {
  imageShape: [2, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 3, nBits: 5, actnormScale: 1,
};
const w: GlowWeights = { config, params: randomParams(config, 41) };

function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String).filter((f) => statSync(join(dir, f)).isFile()).map((f) => relative(dir, join(dir, f))).sort();
}

/** A tensor entry of config.pbtxt against the model's value: name, type, dims without the batch. */
function expectEntry(entry: PbMessage, io: GraphIO): void {
  expect(one(entry, 'name')).to.equal(io.value.name);
  expect(one(entry, 'data_type')).to.equal('TYPE_FP32');
  const shape = io.value.shape!;
  expect(shape[0], `${io.value.name} has the batch dimension first`).to.equal('N');
  if (shape.length === 1) {
    expect(entry.dims).to.deep.equal([1]);
    // The model's [N] is [N, 1] to clients: reshape to no dimensions beyond the batch.
    expect(one(entry, 'reshape')).to.deep.equal({ shape: [] });
  } else {
    expect(entry.dims).to.deep.equal(shape.slice(1));
    expect(entry.reshape).to.equal(undefined);
  }
}

describe('Triton model repository (export --triton)', function () {
  this.timeout(60_000);

  it('parsePbtxt reads the text format subset (and rejects what it does not know)', () => {
    const m = parsePbtxt('# c\nname: "a \\"b\\""\nn: 3\nl: [ 1, 2 ]\nk: KIND_GPU\ns { t: [ ] }\ng [ { c: 1 }, { c: 2 } ]\n');
    expect(m).to.deep.equal({ name: ['a "b"'], n: [3], l: [1, 2], k: ['KIND_GPU'], s: [{ t: [] }], g: [{ c: [1] }, { c: [2] }] });
    expect(() => parsePbtxt('a: {')).to.throw(/unexpected end/);
    expect(() => parsePbtxt('a: ?')).to.throw(/unexpected token/);
  });

  it('lays out glow_encode and glow_decode with config.pbtxt and version 1', () => {
    expect(Object.keys(tritonRepository(w)).sort()).to.deep.equal([
      'glow_decode/1/model.onnx', 'glow_decode/config.pbtxt', 'glow_encode/1/model.onnx', 'glow_encode/config.pbtxt',
    ]);
    // Byte-identical when exported again.
    const [a, b] = [tritonRepository(w, { externalData: true, dtype: 'float16' }), tritonRepository(w, { externalData: true, dtype: 'float16' })];
    for (const name of Object.keys(a)) expect(Buffer.compare(Buffer.from(a[name]), Buffer.from(b[name])), name).to.equal(0);
    expect(Object.keys(tritonRepository(w, { externalData: true })).sort()).to.deep.equal([
      'glow_decode/1/model.onnx/model.onnx', 'glow_decode/1/model.onnx/model.onnx.data', 'glow_decode/config.pbtxt',
      'glow_encode/1/model.onnx/model.onnx', 'glow_encode/1/model.onnx/model.onnx.data', 'glow_encode/config.pbtxt',
    ]);
  });

  it('preferred batch sizes are a quarter, a half and all of max_batch_size, each at least 1 and listed once', () => {
    const expected: [number, number[]][] = [[1, [1]], [2, [1, 2]], [3, [1, 3]], [4, [1, 2, 4]], [6, [1, 3, 6]], [8, [2, 4, 8]], [10, [2, 5, 10]], [64, [16, 32, 64]]];
    for (const [max, sizes] of expected) expect(preferredBatchSizes(max), `max ${max}`).to.deep.equal(sizes);
  });

  // The preferred sizes are literals here: comparing with preferredBatchSizes would test the function against itself.
  const cases: [TritonOptions, number[]][] = [
    [{}, [16, 32, 64]],
    [{ maxBatchSize: 8, instances: 2, device: 'cpu', dtype: 'float16', opset: 13 }, [2, 4, 8]],
  ];
  for (const [options, preferred] of cases) {
    it(`config.pbtxt matches each model's inputs and outputs (${JSON.stringify(options)})`, () => {
      const repo = tritonRepository(w, options);
      for (const name of ['glow_encode', 'glow_decode']) {
        const pb = parsePbtxt(repo[`${name}/config.pbtxt`] as string);
        const graph = parseModel(repo[`${name}/1/model.onnx`] as Uint8Array).graph;
        expect(graph.opset).to.equal(options.opset ?? 17);
        expect(one(pb, 'name')).to.equal(name);
        expect(one(pb, 'platform')).to.equal('onnxruntime_onnx');
        const max = options.maxBatchSize ?? 64;
        expect(one(pb, 'max_batch_size')).to.equal(max);
        expect((pb.input as PbMessage[]).map((e) => one(e, 'name'))).to.deep.equal(graph.inputs.map((io) => io.value.name));
        expect((pb.output as PbMessage[]).map((e) => one(e, 'name'))).to.deep.equal(graph.outputs.map((io) => io.value.name));
        (pb.input as PbMessage[]).forEach((e, k) => expectEntry(e, graph.inputs[k]));
        (pb.output as PbMessage[]).forEach((e, k) => expectEntry(e, graph.outputs[k]));
        const batching = one(pb, 'dynamic_batching') as PbMessage;
        expect(batching.preferred_batch_size).to.deep.equal(preferred);
        expect(one(batching, 'max_queue_delay_microseconds')).to.equal(100);
        const group = pb.instance_group as PbMessage[];
        expect(group).to.have.length(1);
        expect(one(group[0], 'count')).to.equal(options.instances ?? 1);
        expect(one(group[0], 'kind')).to.equal(options.device === 'cpu' ? 'KIND_CPU' : 'KIND_GPU');
      }
      const decode = parseModel(repo['glow_decode/1/model.onnx'] as Uint8Array).graph;
      expect(decode.inputs.map((io) => `${io.value.name}[${io.value.shape}]`)).to.deep.equal(['eps_1[N,4,4,4]', 'eps_2[N,16,2,2]', 'temperature[N]', 'y[N,3]']);
    });
  }

  it('refuses static shapes and bad settings', () => {
    const { decode } = exportGraphs(w, { batch: 2, temperature: 'per-example' });
    expect(() => tritonConfig('glow_decode', decode)).to.throw(/static batch/);
    expect(() => tritonConfig('glow_decode', exportGraphs(w).decode)).to.throw(/batch dimension on temperature/);
    const dyn = exportGraphs(w, { temperature: 'per-example' }).decode;
    expect(() => tritonConfig('d', dyn, { maxBatchSize: 0 })).to.throw(/max batch size must be a positive integer/);
    expect(() => tritonConfig('d', dyn, { device: 'tpu' as 'gpu' })).to.throw(/device must be cpu or gpu/);
  });

  it('decode takes one temperature per example: a batch of requests equals each request alone', async () => {
    const repo = tritonRepository(w);
    const triton = parseModel(repo['glow_decode/1/model.onnx'] as Uint8Array).graph;
    const plain = exportGraphs(w).decode;
    const eps = (await runGraph(exportGraphs(w).encode, { x: randomImages(config, 3, 42), y: randomOneHot(config, 3, 43) }));
    const y = randomOneHot(config, 3, 44);
    const temperatures = [0, 0.6, 1];
    const batched = await runGraph(triton, {
      eps_1: eps.eps_1, eps_2: eps.eps_2, y, temperature: { shape: [3], data: Float64Array.from(temperatures) },
    });
    const size = batched.x.data.length / 3;
    for (let n = 0; n < 3; n++) {
      const row = (t: HostTensor) => ({ shape: [1, ...t.shape.slice(1)], data: Float64Array.from(t.data).slice(n * (t.data.length / 3), (n + 1) * (t.data.length / 3)) });
      const alone = await runGraph(plain, { eps_1: row(eps.eps_1), eps_2: row(eps.eps_2), y: row(y), temperature: temperatures[n] });
      expect(maxAbsDiff(alone.x.data, batched.x.data.slice(n * size, (n + 1) * size)), `example ${n}`).to.be.below(1e-6);
    }
  });

  it('encode: a batch of two requests gives each request its own results (what dynamic batching assumes)', async () => {
    const encode = parseModel(tritonRepository(w)['glow_encode/1/model.onnx'] as Uint8Array).graph;
    const x = randomImages(config, 4, 45);
    const y = randomOneHot(config, 4, 46);
    const whole = await runGraph(encode, { x, y });
    const half = (t: HostTensor, k: number) => ({ shape: [2, ...t.shape.slice(1)], data: Float64Array.from(t.data).slice(k * t.data.length / 2, (k + 1) * t.data.length / 2) });
    for (const k of [0, 1]) {
      const part = await runGraph(encode, { x: half(x, k), y: half(y, k) });
      for (const name of Object.keys(part)) {
        expect(maxAbsDiff(part[name].data, half(whole[name], k).data), name).to.be.below(1e-5);
      }
    }
  });

  it('a repository with external data loads from its path, as the Triton backend loads it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'glow-triton-ext-'));
    try {
      const repo = tritonRepository(w, { externalData: true });
      for (const [name, data] of Object.entries(repo)) {
        mkdirSync(dirname(join(dir, name)), { recursive: true });
        writeFileSync(join(dir, name), data);
      }
      const session = await ort.InferenceSession.create(join(dir, 'glow_encode/1/model.onnx/model.onnx'));
      expect(session.inputNames).to.deep.equal(['x', 'y']);
      await session.release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the CLI writes the repository beside the model directory, and rejects bad flags with exit code 2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'glow-triton-cli-'));
    try {
      const weights = join(dir, 'weights.safetensors');
      writeFileSync(weights, checkpointBytes(w));
      const ok = cli('export', '--weights', weights, '--out', join(dir, 'model'), '--triton', join(dir, 'triton'),
        '--triton-max-batch', '16', '--triton-instances', '2', '--triton-device', 'cpu', '--dtype', 'float16');
      expect(ok.code, ok.stderr).to.equal(0);
      expect(listFiles(join(dir, 'triton'))).to.deep.equal(['glow_decode/1/model.onnx', 'glow_decode/config.pbtxt', 'glow_encode/1/model.onnx', 'glow_encode/config.pbtxt']);
      const pb = parsePbtxt(readFileSync(join(dir, 'triton', 'glow_encode', 'config.pbtxt'), 'utf8'));
      expect(one(pb, 'max_batch_size')).to.equal(16);
      expect((one(pb, 'dynamic_batching') as PbMessage).preferred_batch_size).to.deep.equal([4, 8, 16]);
      expect(one((pb.instance_group as PbMessage[])[0], 'count')).to.equal(2);
      expect(parseModel(readFileSync(join(dir, 'triton', 'glow_encode', '1', 'model.onnx'))).graph.metadata['glow_onnx.dtype']).to.equal('float16');
      expect(existsSync(join(dir, 'model', 'encode.onnx'))).to.equal(true);
      for (const [args, message] of [
        [['--triton-device', 'tpu', '--triton', join(dir, 't2')], '--triton-device must be cpu or gpu'],
        [['--triton-max-batch', '4'], 'need --triton DIR'],
        [['--dtype', 'bfloat16'], '--dtype must be float32 or float16'],
        [['--batch', '0'], '--batch must be an integer >= 1'],
      ] as const) {
        const r = cli('export', '--weights', weights, '--out', join(dir, 'never'), ...args);
        expect(r.code, r.stderr).to.equal(2);
        expect(r.stderr).to.contain(message);
      }
      expect(existsSync(join(dir, 'never'))).to.equal(false);
      expect(existsSync(join(dir, 't2'))).to.equal(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
