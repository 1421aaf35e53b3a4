// The official ONNX checker (Debian's python3-onnx 1.12, full_check: strict shape inference
// against the value_info the serializer writes) on the Glow encode/decode models of several
// configurations at opsets 13, 15 and 17 (onnx 1.12 knows opsets up to 17). All models are
// checked in a single python invocation, because python3 + onnx start slowly.

import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../../src/builder/graph.js';
import * as op from '../../src/builder/ops.js';
import { serializeModel } from '../../src/builder/serialize.js';
import { GlowConfig } from '../../src/glow/config.js';
import { buildDecode, buildEncode, GlowWeights } from '../../src/glow/model.js';
import { randomParams, randomShuffles } from '../../support/random-params.js';
import { PYTHON } from '../../support/python.js';
import { checkOnnx, INSTALL } from '../interop/onnx-checker.js';

const OPSETS = [13, 15, 17];

const base: GlowConfig = {
  imageShape: [2, 8, 8], K: 2, L: 2, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};

const variants: [string, Partial<GlowConfig>][] = [
  ['affine-lu-learntop', {}],
  ['additive', { coupling: 'additive' }],
  ['plain-invconv', { lu: false }],
  ['reverse', { permutation: 'reverse' }],
  ['shuffle', { permutation: 'shuffle' }],
  ['no-learntop', { learnTop: false }],
  ['class-conditional', { numClasses: 3 }],
  ['additive-class-conditional-no-learntop', { coupling: 'additive', numClasses: 2, learnTop: false, lu: false }],
  ['L3', { L: 3, imageShape: [1, 8, 8] }],
];

interface ModelFile {
  path: string;
  label: string;
  opset: number;
}

describe('ONNX checker (python3-onnx, full_check) on Glow models', function () {
  this.timeout(60000);
  let dir: string;
  const files: ModelFile[] = [];
  let brokenPath = '';
  /** path -> 'OK' or the checker's message; or the reason the checker could not run. */
  let results: Map<string, string> | undefined;
  let setupError: string | undefined;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'glow-onnx-checker-'));
    for (const [label, variant] of variants) {
      const config = { ...base, ...variant };
      const model: GlowWeights = { config, params: randomParams(config, 5), shuffles: randomShuffles(config, 5) };
      for (const opset of OPSETS) {
        for (const fold of [true, false]) {
          for (const [kind, build] of [['encode', buildEncode], ['decode', buildDecode]] as const) {
            const name = `${label}.fold-${fold}.opset${opset}.${kind}`;
            const path = join(dir, `${name}.onnx`);
            writeFileSync(path, serializeModel(build(model, { fold, opset })));
            files.push({ path, label: name, opset });
          }
        }
      }
    }
    // A model whose value_info contradicts shape inference: the checker must reject it.
    const g = new GraphBuilder('broken', { opset: 17 });
    const x = g.input('x', 'float32', [1, 3]);
    const wrong = g.node('Relu', [x], {}, [{ dtype: 'float32', shape: [1, 4] }])[0];
    g.output(op.identity(g, wrong), 'y');
    brokenPath = join(dir, 'broken.onnx');
    writeFileSync(brokenPath, serializeModel(g.build()));

    try {
      results = checkOnnx([...files.map((f) => f.path), brokenPath], 50_000);
    } catch (e) {
      setupError = (e as Error).message;
    }
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const checked = (): Map<string, string> => {
    if (!results) expect.fail(setupError ?? `the checker did not run; ${INSTALL}`);
    return results;
  };

  it(`${PYTHON} can import onnx and runs scripts/check_onnx.py`, () => {
    checked();
  });

  it('rejects a model whose value_info contradicts shape inference (the check is strict)', () => {
    const result = checked().get(brokenPath);
    expect(result, 'no line for broken.onnx').to.be.a('string');
    expect(result).not.to.equal('OK');
    expect(result).to.match(/shape/i);
  });

  for (const opset of OPSETS) {
    it(`every Glow encode/decode model at opset ${opset} passes check_model(full_check=True)`, () => {
      const r = checked();
      const mine = files.filter((f) => f.opset === opset);
      expect(mine.length).to.equal(variants.length * 4);
      const missing = mine.filter((f) => !r.has(f.path)).map((f) => f.label);
      expect(missing, 'models the checker printed no line for').to.deep.equal([]);
      const failed = mine.filter((f) => r.get(f.path) !== 'OK').map((f) => `${f.label}: ${r.get(f.path)}`);
      expect(failed, `${failed.length} of ${mine.length} models failed:\n${failed.join('\n')}\n`).to.deep.equal([]);
    });
  }
});
