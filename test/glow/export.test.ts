// Streaming export (issue 7, item 4): the chunked serialiser gives protobufjs's exact bytes, and
// exportModelToDirectory writes exactly what exportModel returns, all or nothing.

import { expect } from 'chai';
import onnxProto from 'onnx-proto';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseModel } from '../../src/builder/parse.js';
import { concatChunks, modelChunks, toModelProto } from '../../src/builder/serialize.js';
import { DEFAULT_CONFIG, GlowConfig } from '../../src/glow/config.js';
import { exportModelToDirectory } from '../../src/glow/export-directory.js';
import { exportGraph, exportModel, ModelFiles } from '../../src/glow/export.js';
import { GlowWeights } from '../../src/glow/model.js';
import { HostTensor } from '../../src/math/tensor.js';
import { randomParams } from '../../support/random-params.js';

const config: GlowConfig = { ...DEFAULT_CONFIG, imageShape: [3, 8, 8], K: 2, L: 2, hiddenChannels: 16, nBits: 8 };
const weights: GlowWeights = { config, params: randomParams(config, 71) };

/** Params that throw on the get after `limit` gets: a failure in the middle of an export. */
class FailingParams extends Map<string, HostTensor> {
  gets = 0;
  constructor(params: ReadonlyMap<string, HostTensor>, readonly limit = Infinity) {
    super(params);
  }
  override get(name: string): HostTensor | undefined {
    if (++this.gets > this.limit) throw new Error('injected failure');
    return super.get(name);
  }
}

describe('streaming export', function () {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'glow-export-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('modelChunks concatenate to the bytes protobufjs encodes for the whole model', () => {
    for (const kind of ['encode', 'decode'] as const) {
      for (const options of [{}, { fold: false }, { dtype: 'float16' as const }]) {
        const graph = exportGraph(weights, kind, options);
        const expected = onnxProto.onnx.ModelProto.encode(toModelProto(graph, { producerName: 'p', docString: 'd' })).finish();
        expect(Buffer.from(concatChunks(modelChunks(graph, { producerName: 'p', docString: 'd' }).model)).equals(Buffer.from(expected)),
          `${kind} ${JSON.stringify(options)}`).to.equal(true);
      }
    }
  });

  it('modelChunks with external data parse back to the graph\'s initializers', () => {
    const graph = exportGraph(weights, 'encode');
    const { model, data } = modelChunks(graph, {}, { location: 'e.onnx.data' });
    const file = concatChunks(data!);
    const parsed = parseModel(concatChunks(model), 'e.onnx', { externalData: { 'e.onnx.data': file } });
    expect(parsed.externalData[0].location).to.equal('e.onnx.data');
    const byName = new Map([...parsed.graph.initializers].map(([v, t]) => [v.name, t]));
    expect(byName.size).to.equal(graph.initializers.size);
    for (const [v, t] of graph.initializers) expect([...byName.get(v.name)!.data], v.name).to.deep.equal([...Float32Array.from(t.data)]);
  });

  for (const externalData of [false, true]) {
    it(`exportModelToDirectory writes exportModel's bytes (externalData ${externalData})`, () => {
      const provenance = { origin: 'test' };
      const files = exportModel(weights, { externalData }, provenance);
      const out = join(dir, 'model');
      const result = exportModelToDirectory(weights, out, { externalData }, provenance);
      const names = Object.keys(files).sort();
      expect(readdirSync(out).sort()).to.deep.equal(names);
      expect(result.files.map((f) => f.name).sort()).to.deep.equal(names);
      expect(names.some((n) => n.endsWith('.data'))).to.equal(externalData);
      for (const name of names) {
        const expected = files[name as keyof ModelFiles]!;
        const bytes = readFileSync(join(out, name));
        expect(bytes.equals(typeof expected === 'string' ? Buffer.from(expected) : Buffer.from(expected)), name).to.equal(true);
        expect(result.files.find((f) => f.name === name)!.bytes).to.equal(bytes.length);
      }
      expect(result.json).to.deep.equal(JSON.parse(files['glow.json']));
    });
  }

  it('a failure after encode is written leaves no directory, and no staging directory, behind', () => {
    // As many parameter reads as the encode graph needs: the next one fails in decode's build,
    // after encode.onnx (and its side file) are written to the staging directory.
    const counter = new FailingParams(weights.params);
    exportGraph({ config, params: counter }, 'encode');
    for (const externalData of [false, true]) {
      const failing = new FailingParams(weights.params, counter.gets);
      const out = join(dir, 'model');
      expect(() => exportModelToDirectory({ config, params: failing }, out, { externalData })).to.throw('injected failure');
      expect(failing.gets).to.be.greaterThan(counter.gets);
      expect(existsSync(out)).to.equal(false);
      expect(readdirSync(dir)).to.deep.equal([]);
    }
  });

  it('into an existing directory: replaces the model files and keeps the rest; on failure changes nothing', () => {
    const out = join(dir, 'model');
    mkdirSync(out);
    writeFileSync(join(out, 'notes.txt'), 'mine');
    writeFileSync(join(out, 'glow.json'), 'old');
    const counter = new FailingParams(weights.params);
    exportGraph({ config, params: counter }, 'encode');
    expect(() => exportModelToDirectory({ config, params: new FailingParams(weights.params, counter.gets) }, out)).to.throw('injected failure');
    expect(readdirSync(out).sort()).to.deep.equal(['glow.json', 'notes.txt']);
    expect(readFileSync(join(out, 'glow.json'), 'utf8')).to.equal('old');
    expect(readdirSync(dir)).to.deep.equal(['model']);

    exportModelToDirectory(weights, out);
    expect(readdirSync(out).sort()).to.deep.equal(['decode.onnx', 'encode.onnx', 'glow.json', 'notes.txt']);
    expect(readFileSync(join(out, 'glow.json'), 'utf8')).to.equal(exportModel(weights)['glow.json']);
    expect(readdirSync(dir)).to.deep.equal(['model']);
  });
});

// An export is computed in float64 on the host (LU products, inverses, log-determinants, the
// float16 rounding) with no CPU-specific arithmetic, so its bytes are the same on every machine:
// the hashes below were taken on an AVX-512 CPU and reproduced with AVX-512 hidden (AVX2 only)
// and with AVX hidden (SSE4.2 only) under qemu (docs/design.md, "How it is tested").
describe('export bytes do not depend on the CPU', () => {
  const rgb: GlowConfig = { ...DEFAULT_CONFIG, imageShape: [3, 16, 16], K: 2, L: 2, hiddenChannels: 12, numClasses: 4, nBits: 8, scaleFloor: 0.1 };
  const rgbWeights: GlowWeights = { config: rgb, params: randomParams(rgb, 1515) };
  const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
  const EXPECTED: Record<string, Record<'encode.onnx' | 'decode.onnx', string>> = {
    folded: {
      'encode.onnx': '712792c458984302eff46a968c3d889789952e5195c0be9271270ebe76bd9db1',
      'decode.onnx': '4a72e1429b947c4ca24f07ab3c16de6fa1691a72b65005e980f99a4f9155991d',
    },
    literal: {
      'encode.onnx': '5cd2794bdda96a2eab48c4e1664eb3f2d686144660d45eae3137a31d571c3820',
      'decode.onnx': 'ddf98cb6084213edb25f8838afb140c3ca0046fa9f905063925b93b306c75213',
    },
    float16: {
      'encode.onnx': '10d2941f476e778145e06943fc989f51a2176e2ab664bbc8d73ce88ed00e256b',
      'decode.onnx': '6b66d8d83affb58e72f81125dd12fd8a8406ca5a9ac70e2497dd4abd5d019212',
    },
    // The floor as the layer's Less + Where: the folded export's bytes before the Max form.
    'floor as Where': {
      'encode.onnx': '824350a98e0bcf0716d38010fb584c713a32a3e85d2b68138a0d169a9086367d',
      'decode.onnx': '1e2a4f181bc286cbfe0449a30f611b955c261ac64141a9988f794b5e7b640993',
    },
  };
  const OPTIONS = { folded: {}, literal: { fold: false }, float16: { dtype: 'float16' as const }, 'floor as Where': { floorAsMax: false } };
  for (const [variant, options] of Object.entries(OPTIONS)) {
    it(`${variant}: the committed SHA-256 of an RGB class-conditional export`, () => {
      const files = exportModel(rgbWeights, options);
      for (const name of ['encode.onnx', 'decode.onnx'] as const) {
        expect(sha256(files[name]), `${variant} ${name}`).to.equal(EXPECTED[variant][name]);
      }
    });
  }
});
