// External data: initializers in a side file (encode.onnx.data), written when asked or when a
// graph would pass protobuf's 2 GiB, and read back by parseModel, inspect, loadGlowRuntime
// (onnxruntime-node) and onnxruntime-web.

import { expect } from 'chai';
import onnxProto from 'onnx-proto';
import ort from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needsExternalData, PROTOBUF_LIMIT } from '../../src/builder/external-data.js';
import { parseModel } from '../../src/builder/parse.js';
import { serializeModel, serializeModelWithExternalData } from '../../src/builder/serialize.js';
import { OnnxFormatError, tensorByteLength } from '../../src/builder/tensor-bytes.js';
import { GraphBuilder, tensor } from '../../src/builder/graph.js';
import * as op from '../../src/builder/ops.js';
import { GlowConfig } from '../../src/glow/config.js';
import { exportGraphs, exportModel } from '../../src/glow/export.js';
import { GlowWeights } from '../../src/glow/model.js';
import { writeFilesAtomic } from '../../src/io/files.js';
import { inspectModel } from '../../src/runtime/inspect.js';
import { loadGlowRuntime } from '../../src/runtime/node.js';
import { CLI_BIN, maxAbsDiff } from '../helpers.js';
import { randomImages, randomParams } from '../../support/random-params.js';

const { onnx } = onnxProto;
ortWeb.env.wasm.numThreads = 1;

const config: GlowConfig = {
  imageShape: [1, 16, 16], K: 2, L: 2, hiddenChannels: 32, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};
const w: GlowWeights = { config, params: randomParams(config, 31) };

function expectFormatError(f: () => unknown, pattern: RegExp): void {
  let error: unknown;
  try {
    f();
  } catch (e) {
    error = e;
  }
  expect(error, `expected an OnnxFormatError matching ${pattern}`).to.be.instanceOf(OnnxFormatError);
  expect((error as Error).message).to.match(pattern);
  expect((error as Error).message).not.to.contain('\n');
}

/** The model's initializers as TensorProtos, to inspect or tamper with. */
function decoded(bytes: Uint8Array) {
  return onnx.ModelProto.decode(bytes);
}

describe('external data', function () {
  this.timeout(60_000);
  const { encode } = exportGraphs(w);
  const inline = serializeModel(encode);
  const { model, data } = serializeModelWithExternalData(encode, {}, { location: 'encode.onnx.data' });
  let dir: string;

  before(() => (dir = mkdtempSync(join(tmpdir(), 'glow-external-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('moves every initializer of 1 KiB or more to the side file, aligned, and keeps the small ones inline', () => {
    const proto = decoded(model);
    const external = proto.graph!.initializer!.filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
    const internal = proto.graph!.initializer!.filter((t) => t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL);
    expect(external.length).to.be.above(5);
    expect(internal.every((t) => t.rawData!.length < 1024)).to.equal(true);
    let end = 0;
    for (const t of external) {
      const info = Object.fromEntries(t.externalData!.map((e) => [e.key, e.value]));
      expect(info.location).to.equal('encode.onnx.data');
      const offset = Number(info.offset);
      const length = Number(info.length);
      expect(offset % 64, t.name!).to.equal(0);
      expect(offset).to.be.at.least(end);
      expect(t.rawData?.length ?? 0).to.equal(0);
      end = offset + length;
    }
    expect(data.length).to.equal(end);
    expect(model.length + 0.9 * data.length).to.be.below(inline.length);
  });

  it('starts tensors of 1 MiB or more on a 64 KiB boundary (mmap granularity)', () => {
    const g = new GraphBuilder('big');
    const x = g.input('x', 'float32', [300_000]);
    const small = g.initializer('small', tensor('float32', [300], new Float64Array(300).fill(1)));
    const big = g.initializer('big', tensor('float32', [300_000], new Float64Array(300_000).fill(2)));
    g.output(op.add(g, op.mul(g, x, big), op.reduceSum(g, small, [0], true)), 'y');
    const out = serializeModelWithExternalData(g.build(), {}, { location: 'big.onnx.data' });
    const offsets = Object.fromEntries(decoded(out.model).graph!.initializer!.filter((t) => t.dataLocation === 1)
      .map((t) => [t.name, Number(t.externalData!.find((e) => e.key === 'offset')!.value)]));
    expect(offsets).to.deep.equal({ small: 0, big: 65536 });
    expect(out.data.length).to.equal(65536 + 1_200_000);
  });

  it('parses back to the same graph when given the side file, and is deterministic', () => {
    const a = parseModel(inline).graph;
    const parsed = parseModel(model, 'encode.onnx', { externalData: { 'encode.onnx.data': data } });
    const b = parsed.graph;
    expect([...b.initializers.keys()].map(String)).to.deep.equal([...a.initializers.keys()].map(String));
    const tensorsA = [...a.initializers.values()];
    [...b.initializers.values()].forEach((t, i) => expect(maxAbsDiff(t.data, tensorsA[i].data)).to.equal(0));
    const bytes = [...decoded(model).graph!.initializer!].filter((t) => t.dataLocation === 1);
    expect(parsed.externalData).to.deep.equal([{
      location: 'encode.onnx.data', tensors: bytes.length,
      bytes: [...b.initializers].filter(([v]) => bytes.some((t) => t.name === v.name)).reduce((s, [, t]) => s + tensorByteLength(t), 0),
    }]);
    const again = serializeModelWithExternalData(encode, {}, { location: 'encode.onnx.data' });
    expect(Buffer.compare(again.model, model)).to.equal(0);
    expect(Buffer.compare(again.data, data)).to.equal(0);
  });

  it('refuses, with one clean line, a missing side file, a short one, bad offsets and locations outside the directory', () => {
    expectFormatError(() => parseModel(model, 'encode.onnx'), /stored in the external file encode\.onnx\.data/);
    expectFormatError(() => parseModel(model, 'encode.onnx', { externalData: {} }), /encode\.onnx\.data, which was not given/);
    expectFormatError(() => parseModel(model, 'encode.onnx', { externalData: { 'encode.onnx.data': data.subarray(0, data.length - 1) } }), /reads bytes .* of encode\.onnx\.data, which has/);
    const tamper = (f: (entries: onnxProto.onnx.IStringStringEntryProto[]) => void) => {
      const proto = decoded(model);
      const t = proto.graph!.initializer!.find((x) => x.dataLocation === 1)!;
      f(t.externalData!);
      return onnx.ModelProto.encode(proto).finish();
    };
    const source = { externalData: { 'encode.onnx.data': data } };
    for (const location of ['../secret', '/etc/passwd', 'a/../../b', 'C:evil', '']) {
      const bytes = tamper((e) => (e.find((x) => x.key === 'location')!.value = location));
      expectFormatError(() => parseModel(bytes, 'm', source), /must be a relative path inside the model's directory/);
    }
    expectFormatError(() => parseModel(tamper((e) => (e.find((x) => x.key === 'offset')!.value = '-4')), 'm', source), /invalid offset "-4"/);
    expectFormatError(() => parseModel(tamper((e) => (e.find((x) => x.key === 'length')!.value = '12')), 'm', source), /has length 12, its shape needs/);
    expectFormatError(() => parseModel(tamper((e) => e.splice(0, e.length)), 'm', source), /names no location/);
  });

  it('exportModel writes side files when asked, or when a graph would pass the size limit (auto)', () => {
    const asked = exportModel(w, { externalData: true });
    expect(Object.keys(asked).sort()).to.deep.equal(['decode.onnx', 'decode.onnx.data', 'encode.onnx', 'encode.onnx.data', 'glow.json']);
    expect(JSON.parse(asked['glow.json']).externalData).to.deep.equal({ 'encode.onnx': 'encode.onnx.data', 'decode.onnx': 'decode.onnx.data' });
    const again = exportModel(w, { externalData: true });
    for (const name of Object.keys(asked) as (keyof typeof asked)[]) {
      expect(Buffer.compare(Buffer.from(asked[name]!), Buffer.from(again[name]!)), `${name} is byte-identical when exported again`).to.equal(0);
    }
    expect(Object.keys(exportModel(w)).sort()).to.deep.equal(['decode.onnx', 'encode.onnx', 'glow.json']);
    expect(JSON.parse(exportModel(w)['glow.json']).externalData).to.equal(undefined);
    // The automatic switch, with the 2 GiB limit scaled down: weights of ~50 KB and a limit 64 MiB + 10 KB.
    const limit = 64 * 2 ** 20 + 10_000;
    expect(needsExternalData(encode, limit)).to.equal(true);
    expect(needsExternalData(encode)).to.equal(false);
    expect(PROTOBUF_LIMIT).to.equal(2 ** 31 - 1);
    expect(Object.keys(exportModel(w, { inlineLimit: limit }))).to.include('encode.onnx.data');
    expect(() => exportModel(w, { externalData: false, inlineLimit: limit })).to.throw(/do not fit in one ONNX file/);
  });

  it('loadGlowRuntime (onnxruntime-node) runs a model directory with external data, float16 too', async () => {
    const x = Float32Array.from(randomImages(config, 4, 32).data);
    const shape = [4, ...config.imageShape];
    const results = [];
    for (const [name, options] of [['inline', {}], ['external', { externalData: true }], ['external-f16', { externalData: true, dtype: 'float16' }]] as const) {
      const modelDir = join(dir, name);
      writeFilesAtomic(modelDir, { ...exportModel(w, options) });
      const runtime = await loadGlowRuntime(modelDir);
      try {
        const encoded = await runtime.model.encode(x, shape);
        const xr = await runtime.model.decode(encoded.eps, 1);
        results.push({ bpd: encoded.bpd, roundTrip: maxAbsDiff(xr, x), dtype: runtime.dtype });
      } finally {
        await runtime.model.release();
      }
    }
    expect(maxAbsDiff(results[0].bpd, results[1].bpd)).to.equal(0);
    expect(results[1].roundTrip).to.be.below(1e-4);
    expect(results[2].dtype).to.equal('float16');
    expect(maxAbsDiff(results[0].bpd, results[2].bpd)).to.be.within(1e-7, 1e-3);
    // Without its side file the model cannot load, and the error names the file.
    rmSync(join(dir, 'external', 'decode.onnx.data'));
    let error: unknown;
    await loadGlowRuntime(join(dir, 'external')).catch((e) => (error = e));
    expect(String(error)).to.match(/cannot read .*decode\.onnx\.data: ENOENT/);
  });

  it('onnxruntime-web (wasm) runs it with the side file given as externalData', async () => {
    const x = randomImages(config, 2, 33);
    const reference = await (await ort.InferenceSession.create(inline)).run({ x: new ort.Tensor('float32', Float32Array.from(x.data), x.shape) });
    const session = await ortWeb.InferenceSession.create(model, { executionProviders: ['wasm'], externalData: [{ path: 'encode.onnx.data', data }] });
    try {
      const r = await session.run({ x: new ortWeb.Tensor('float32', Float32Array.from(x.data), x.shape) });
      expect(maxAbsDiff(r.bpd.data as Float32Array, reference.bpd.data as Float32Array)).to.be.below(1e-5);
    } finally {
      await session.release();
    }
  });

  it('inspect (library and CLI) reads the side file beside the model', () => {
    const modelDir = join(dir, 'inspect');
    writeFilesAtomic(modelDir, { ...exportModel(w, { externalData: true }) });
    const text = inspectModel(readFileSync(join(modelDir, 'encode.onnx')), 'encode.onnx', { externalData: { 'encode.onnx.data': readFileSync(join(modelDir, 'encode.onnx.data')) } });
    expect(text).to.match(/external data: \d+ initializers, [\d,]+ bytes in encode\.onnx\.data/);
    const cli = spawnSync(process.execPath, [CLI_BIN, 'inspect', join(modelDir, 'decode.onnx')], { encoding: 'utf8' });
    expect(cli.status, cli.stderr).to.equal(0);
    expect(cli.stdout).to.match(/external data: \d+ initializers, [\d,]+ bytes in decode\.onnx\.data/);
    writeFileSync(join(modelDir, 'decode.onnx.data'), new Uint8Array(10));
    const broken = spawnSync(process.execPath, [CLI_BIN, 'inspect', join(modelDir, 'decode.onnx')], { encoding: 'utf8' });
    expect(broken.status).to.equal(1);
    expect(broken.stderr.trim().split('\n')).to.have.length(1);
    expect(broken.stderr).to.match(/decode\.onnx\.data, which has 10/);
  });
});
