// OpenCV's DNN module (4.6, Debian's python3-opencv: the library C++ users link) runs the graphs
// of `export --target opencv`, encode and decode, on the shipped model and on RGB models, and
// matches ONNX Runtime on the default export. Run through scripts/opencv_run.py in one python
// process. A missing python3-opencv fails the test with the install command.

import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { latentShape } from '../../src/glow/config.js';
import { exportModelToDirectory } from '../../src/glow/export-directory.js';
import { exportGraph, GraphKind, targetOptions } from '../../src/glow/export.js';
import { importWeights } from '../../src/glow/import/index.js';
import { GlowWeights } from '../../src/glow/model.js';
import { Rng } from '../../src/math/rng.js';
import { HostTensor } from '../../src/math/tensor.js';
import { loadMnist } from '../../src/runtime/mnist.js';
import { loadGlowRuntime } from '../../src/runtime/node.js';
import { dequantize } from '../../src/runtime/quantize.js';
import { cli, maxAbsDiff, maxScaledDiff, RGB_CONFIGS, runGraph } from '../helpers.js';
import { randomImages, randomOneHot, randomParams, randomShuffles } from '../../support/random-params.js';
import { runOpencv } from '../../support/opencv.js';

const MODEL = fileURLToPath(new URL('../../../models/mnist/', import.meta.url));
/** OpenCV against ONNX Runtime, relative to max(1, |value|): bits/dim and log p(x) are in the
 * thousands on the RGB models' random images, where 1e-4 absolute is below float32's spacing. */
const TOLERANCE = 1e-4;
const BATCH = 2;
const TEMPERATURE = 0.7;

function gaussian(shape: number[], rng: Rng, scale = 1): HostTensor {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * scale;
  return { shape, data };
}

interface Case {
  label: string;
  kind: GraphKind;
  /** Inputs of the default graph. */
  feeds: Record<string, HostTensor | number>;
  /** Inputs of the OpenCV graph (eps pre-scaled by the temperature). */
  opencvFeeds: Record<string, HostTensor>;
  weights: GlowWeights;
}

function cases(label: string, w: GlowWeights, x: HostTensor): Case[] {
  const rng = new Rng(7);
  const eps = Object.fromEntries(Array.from({ length: w.config.L }, (_, i) => [`eps_${i + 1}`, gaussian([BATCH, ...latentShape(w.config, i + 1)], rng)]));
  const scaled = Object.fromEntries(Object.entries(eps).map(([k, t]) => [k, { shape: t.shape, data: Float32Array.from(t.data, (v) => v * TEMPERATURE) }]));
  const y: Record<string, HostTensor> = w.config.numClasses ? { y: randomOneHot(w.config, BATCH, 5) } : {};
  return [
    { label, kind: 'encode', feeds: { x, ...y }, opencvFeeds: { x, ...y }, weights: w },
    { label, kind: 'decode', feeds: { ...eps, ...y, temperature: TEMPERATURE }, opencvFeeds: { ...scaled, ...y }, weights: w },
  ];
}

describe('OpenCV DNN 4.6 runs `export --target opencv` like ONNX Runtime runs the default export', function () {
  this.timeout(120_000);

  it(`encode and decode of the shipped model and of RGB models (16x16x3, 32x32x3) within ${TOLERANCE}`, async () => {
    const shipped = importWeights(readFileSync(MODEL + 'weights.safetensors'), 'weights.safetensors').weights;
    const digits = loadMnist('test', BATCH);
    const all = [
      ...cases('mnist', shipped, { shape: [BATCH, 1, 28, 28], data: dequantize(digits.pixels, shipped.config.nBits, 'center') }),
      // Class-conditional, affine with LU, no scale floor (the shipped model has one).
      ...RGB_CONFIGS.flatMap((config, i) => {
        const w: GlowWeights = { config, params: randomParams(config, 40 + i), shuffles: randomShuffles(config, 40 + i) };
        return cases(`rgb${config.imageShape[1]}`, w, randomImages(config, BATCH, 9 + i));
      }),
    ];
    const expected: Record<string, HostTensor>[] = [];
    const onnxruntime: Record<string, HostTensor>[] = [];
    const jobs = [];
    for (const c of all) {
      const graph = exportGraph(c.weights, c.kind, { target: 'opencv', batch: BATCH });
      expected.push(await runGraph(exportGraph(c.weights, c.kind), c.feeds));
      // The OpenCV graph is ONNX that ONNX Runtime runs too, to the same outputs.
      onnxruntime.push(await runGraph(graph, c.opencvFeeds));
      jobs.push({ graph, feeds: c.opencvFeeds });
    }
    const results = runOpencv(jobs);
    const failures = results.flatMap((r, i) => (r instanceof Error ? [`${all[i].label} ${all[i].kind}: ${r.message}`] : []));
    expect(failures, failures.join('\n')).to.deep.equal([]);
    const errors: string[] = [];
    for (const [i, result] of results.entries()) {
      for (const [name, got] of Object.entries(result as Record<string, Float32Array>)) {
        const want = expected[i][name].data;
        if (got.length !== want.length) { errors.push(`${all[i].label} ${all[i].kind} ${name}: OpenCV returned ${got.length} values, expected ${want.length}`); continue; }
        const opencvError = maxScaledDiff(got, want);
        const ortError = maxScaledDiff(onnxruntime[i][name].data, want);
        if (!(opencvError <= TOLERANCE) || !(ortError <= TOLERANCE)) {
          errors.push(`${all[i].label} ${all[i].kind} ${name}: OpenCV ${opencvError.toExponential(2)}, ONNX Runtime on the OpenCV graph ${ortError.toExponential(2)}`);
        }
      }
    }
    expect(errors, errors.join('\n')).to.deep.equal([]);
  });

  it("the project's runtime decodes an OpenCV export at a temperature like the shipped model (eps scaled on the host)", async () => {
    const shipped = importWeights(readFileSync(MODEL + 'weights.safetensors'), 'weights.safetensors').weights;
    const out = mkdtempSync(join(tmpdir(), 'glow-opencv-dir-'));
    try {
      exportModelToDirectory(shipped, out, { target: 'opencv' }, {});
      const rng = new Rng(11);
      const eps = Array.from({ length: shipped.config.L }, (_, i) => gaussian([3, ...latentShape(shipped.config, i + 1)], rng).data as Float32Array);
      const opencv = await loadGlowRuntime(out);
      const reference = await loadGlowRuntime(MODEL);
      try {
        const got = await opencv.model.decode(eps, TEMPERATURE);
        const want = await reference.model.decode(eps, TEMPERATURE);
        expect(maxAbsDiff(got, want)).to.be.below(TOLERANCE);
      } finally {
        await opencv.model.release();
        await reference.model.release();
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('export --target opencv writes a static batch of 1 and says so in glow.json; an unknown target is one line', () => {
    const out = mkdtempSync(join(tmpdir(), 'glow-opencv-cli-'));
    try {
      const r = cli('export', '--weights', MODEL + 'weights.safetensors', '--out', join(out, 'm'), '--target', 'opencv');
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/for opencv, float32, batch 1/);
      const json = JSON.parse(readFileSync(join(out, 'm', 'glow.json'), 'utf8'));
      expect([json.target, json.batch, Object.keys(json.io.decode.inputs)]).to.deep.equal(['opencv', 1, ['eps_1', 'eps_2']]);
      const bad = cli('export', '--weights', MODEL + 'weights.safetensors', '--out', join(out, 'n'), '--target', 'tvm');
      expect([bad.code, bad.stderr.trim()]).to.deep.equal([2, 'glow-onnx export: --target must be onnxruntime or opencv, got tvm']);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('refuses at export, saying why, what OpenCV 4.6 cannot run', () => {
    const config = RGB_CONFIGS[0];
    const w: GlowWeights = { config, params: randomParams(config, 3), shuffles: randomShuffles(config, 3) };
    expect(() => targetOptions(w, { target: 'opencv', dtype: 'float16' })).to.throw(/float16 is not supported: OpenCV 4.6 rejects FLOAT16/);
    expect(() => targetOptions(w, { target: 'opencv', opset: 18 })).to.throw(/opset 18: OpenCV 4.6 needs ReduceMean's axes as an attribute/);
    expect(() => targetOptions(w, { target: 'opencv', temperature: 'per-example' })).to.throw(/per-example temperature is not supported/);
    expect(() => targetOptions(w, { target: 'opencv', fold: false })).to.throw(/unfolded graphs are not supported/);
    const additive: GlowWeights = { ...w, config: { ...config, coupling: 'additive' } };
    expect(() => targetOptions(additive, { target: 'opencv' })).to.throw(/additive couplings are not supported: their log-det is a constant broadcast/);
    expect(targetOptions(w, { target: 'opencv' }).batch).to.equal(1);
  });
});

