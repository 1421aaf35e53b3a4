// glow-onnx/web's loader and image helpers, run in Node: onnxruntime-web's wasm backend runs
// here too (see test/runtime/wasm.test.ts), so the model-files path (picked files, ArrayBuffers,
// external data) and its one-line errors are checked without a browser. Loading by URL and
// WebGPU run in Chromium: test/web/page.test.ts and test/package/tarball.test.ts.

import { expect } from 'chai';
import { GlowConfig } from '../../src/glow/config.js';
import { exportModel } from '../../src/glow/export.js';
import { checkGraphPorts, ModelFileError, parseGlowJson } from '../../src/glow/contract.js';
import { sampleEps } from '../../src/runtime/generate.js';
import { env, loadGlowModel, pixelsToRgba, rgbaToPixels } from '../../src/web/index.js';
import { maxAbsDiff } from '../helpers.js';
import { randomImages, randomParams } from '../../support/random-params.js';

env.wasm.numThreads = 1;

const CONFIG: GlowConfig = {
  imageShape: [1, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};

describe('glow-onnx/web loadGlowModel (wasm, in Node)', function () {
  this.timeout(60_000);
  const files = exportModel({ config: CONFIG, params: randomParams(CONFIG, 3) }, { externalData: true });

  it('loads picked files with external data, as File objects or bytes by name, and round-trips', async () => {
    expect(Object.keys(files)).to.include('encode.onnx.data');
    const picked = Object.entries(files).map(([name, data]) => new File([data as BlobPart], name));
    for (const source of [picked, { ...files }]) {
      const { model, config, backend, dtype } = await loadGlowModel(source, { backend: 'wasm' });
      try {
        expect([backend, dtype, config]).to.deep.equal(['wasm', 'float32', CONFIG]);
        const x = Float32Array.from(randomImages(CONFIG, 3, 5).data);
        const encoded = await model.encode(x, [3, ...CONFIG.imageShape]);
        expect(maxAbsDiff(await model.decode(encoded.eps, 1), x)).to.be.below(1e-4);
        expect((await model.decode(sampleEps(CONFIG, 2, 0), 0.7)).length).to.equal(2 * 64);
      } finally {
        await model.release();
      }
    }
  });

  it('names what is wrong with a pick in one line', async () => {
    const { 'decode.onnx': _, ...noDecode } = files;
    const { 'encode.onnx.data': __, ...noSideFile } = files;
    const cases: [Record<string, string | Uint8Array>, RegExp][] = [
      [noDecode, /^a model needs glow.json, encode.onnx and decode.onnx together; missing: decode.onnx$/],
      [noSideFile, /^glow.json says encode.onnx keeps its weights in encode.onnx.data: pick that file too$/],
      [{ ...files, 'glow.json': '{"formatVersion": 1,' }, /^glow.json is not valid JSON \(.+\): is this a glow-onnx model directory\?$/],
      [{ ...files, 'encode.onnx': files['decode.onnx'], 'encode.onnx.data': files['decode.onnx.data']! }, /^onnxruntime-web could not open encode.onnx: |^encode.onnx is not a Glow encode graph/],
    ];
    for (const [source, message] of cases) {
      const error = await loadGlowModel(source, { backend: 'wasm' }).then(() => undefined, (e: Error) => e);
      expect(error?.message, String(message)).to.match(message);
      expect(error?.message).to.not.contain('\n');
    }
  });

  it('refuses a backend it does not know', async () => {
    const error = await loadGlowModel({ ...files }, { backend: 'webgl' as 'wasm' }).then(() => undefined, (e: Error) => e);
    expect(error?.message).to.equal('backend must be auto, webgpu or wasm, got "webgl"');
  });
});

describe('the model folder contract', () => {
  const json = (o: object) => JSON.stringify({ formatVersion: 1, config: CONFIG, ...o });

  it('reads glow.json: dtype, static batch and external data, and refuses what export never writes', () => {
    expect(parseGlowJson(json({ dtype: 'float16', batch: 4, externalData: { 'decode.onnx': 'decode.onnx.data' } }), 'glow.json'))
      .to.deep.equal({ config: CONFIG, dtype: 'float16', batch: 4, externalData: { 'decode.onnx': 'decode.onnx.data' } });
    const bad: [string, string][] = [
      ['{}', 'glow.json has no "config": it was not written by glow-onnx export'],
      [json({ formatVersion: 2 }), 'glow.json has format version 2; this glow-onnx reads version 1'],
      [json({ batch: 0 }), 'glow.json: batch must be a positive integer, got 0'],
      [json({ externalData: { 'encode.onnx': '../secret' } }), 'glow.json: externalData must map encode.onnx/decode.onnx to a file name beside them, got {"encode.onnx":"../secret"}'],
      [json({ config: { ...CONFIG, K: 0 } }), 'glow.json config: '],
    ];
    for (const [text, message] of bad) {
      expect(() => parseGlowJson(text, 'glow.json'), text).to.throw(ModelFileError, message);
    }
  });

  it('checks a graph\'s ports against its config', () => {
    const ports = (...names: string[]) => names.map((name) => ({ name }));
    const decodeInputs = [{ name: 'eps_1', shape: ['n', 2, 4, 4] }, { name: 'eps_2', shape: ['n', 8, 2, 2] }, { name: 'temperature' }];
    expect(() => checkGraphPorts(CONFIG, 'decode', 'decode.onnx', decodeInputs, ports('x'))).to.not.throw();
    expect(() => checkGraphPorts(CONFIG, 'encode', 'encode.onnx', ports('x'), ports('eps_1', 'logdet', 'log_px', 'bpd')))
      .to.throw(ModelFileError, 'encode.onnx does not match its config: missing output(s) eps_2 (it has eps_1, logdet, log_px, bpd)');
    expect(() => checkGraphPorts(CONFIG, 'decode', 'decode.onnx', [{ name: 'eps_1', shape: ['n', 4, 4, 4] }, ...decodeInputs.slice(1)], ports('x')))
      .to.throw(ModelFileError, 'decode.onnx: input eps_1 is [4, 4, 4] per example, its config needs [2, 4, 4]');
    expect(() => checkGraphPorts(CONFIG, 'decode', 'decode.onnx', decodeInputs, ports('y'))).to.throw(ModelFileError, 'is not a Glow decode graph (no x output)');
  });
});

describe('glow-onnx/web image helpers', () => {
  it('turn 8-bit CHW pixels into opaque RGBA and back, grey for one channel', () => {
    const rgb = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i * 10);
    const second = pixelsToRgba(rgb, [3, 2, 2], 1);
    expect([...second.subarray(0, 4)]).to.deep.equal([120, 160, 200, 255]);
    expect([...rgbaToPixels({ width: 2, height: 2, data: second }, 3)]).to.deep.equal([...rgb.subarray(12)]);
    const grey = pixelsToRgba(Uint8Array.of(0, 50, 100, 250), [1, 2, 2]);
    expect([...grey.subarray(4, 8)]).to.deep.equal([50, 50, 50, 255]);
    expect([...rgbaToPixels({ width: 2, height: 2, data: grey }, 1)]).to.deep.equal([0, 50, 100, 250]);
    expect(() => pixelsToRgba(rgb, [3, 2, 2], 2)).to.throw('image 2 is not in a batch of 2 images of 3x2x2');
    expect(() => rgbaToPixels({ width: 2, height: 2, data: grey }, 2)).to.throw('images with 2 channels are not supported (1 or 3)');
  });
});
