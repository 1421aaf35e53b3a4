// Checks every shipped model's test makes: its files are the export of its own weights, its
// bits/dim on the full MNIST test set as `glow-onnx eval` prints it, and the misses of each set
// as `glow-onnx verify --stress` tabulates them.

import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { exportModel, type GlowJson } from '../../src/glow/export.js';
import { importWeights } from '../../src/glow/import/index.js';
import { GlowWeights } from '../../src/glow/model.js';
import { cli } from '../helpers.js';

/** Fails unless config.json, glow.json and both graphs in `dir` are what exporting its weights
 * writes, byte for byte (not a stale export); returns the weights. */
export function expectOwnExport(dir: string): GlowWeights {
  const { weights } = importWeights(readFileSync(`${dir}/weights.safetensors`), 'weights.safetensors');
  const shipped = JSON.parse(readFileSync(`${dir}/glow.json`, 'utf8')) as GlowJson;
  expect(JSON.parse(readFileSync(`${dir}/config.json`, 'utf8'))).to.deep.equal(weights.config);
  const files = exportModel(weights, {}, shipped.provenance);
  expect(JSON.parse(files['glow.json'])).to.deep.equal(shipped);
  expect(Buffer.compare(files['encode.onnx'], readFileSync(`${dir}/encode.onnx`))).to.equal(0, 'encode.onnx is stale');
  expect(Buffer.compare(files['decode.onnx'], readFileSync(`${dir}/decode.onnx`))).to.equal(0, 'decode.onnx is stale');
  return weights;
}

/** Mean bits/dim over all 10,000 MNIST test images, from `glow-onnx eval`. */
export function fullTestSetBitsPerDim(dir: string): number {
  const r = cli('eval', '--model', dir, '--data', 'mnist-test', '--limit', '10000');
  expect(r.code, r.stderr).to.equal(0);
  const match = /^10000 images of mnist-test: (\d+\.\d+) ± (\d+\.\d+) bits\/dim/m.exec(r.stdout);
  expect(match, r.stdout).to.not.equal(null);
  return Number(match![1]);
}

/** Images and misses of each set in `glow-onnx verify --stress`'s closing table, by set name. */
export function stressTable(stdout: string): Map<string, { images: number; misses: number }> {
  return new Map([...stdout.matchAll(/^(\S+) +(\d+) +(\d+) +\S+ +\S+ +\S+$/gm)].map((m) => [m[1], { images: Number(m[2]), misses: Number(m[3]) }]));
}
