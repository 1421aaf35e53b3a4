// rosinality/glow-pytorch checkpoints, written and evaluated by that repository's own model.py
// (test/fixtures/rosinality/README.md says how): imported, exported and run in
// onnxruntime-node, they must reproduce its log-likelihood, logdet, latents and reverse.

import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointError, importWeights } from '../../../src/glow/import/index.js';
import { toRosinality } from '../../../src/glow/import/rosinality.js';
import { readWeightsFile } from '../../../src/io/torch.js';
import { GlowConfig } from '../../../src/glow/config.js';
import { buildDecode, buildEncode } from '../../../src/glow/model.js';
import { stepPrefix } from '../../../src/glow/names.js';
import { checkpointBytes } from '../../../src/glow/params.js';
import { WritableTensor, writeSafetensors } from '../../../src/io/safetensors.js';
import { HostTensor } from '../../../src/math/tensor.js';
import { Feeds, maxAbsDiff, readJsonFixtures, runGraph } from '../../helpers.js';
import { refDecode, refEncode } from '../../reference/glow64.js';
import { PYTHON } from '../../../support/python.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const FIXTURES = join(ROOT, 'test/fixtures/rosinality');

/** The bounds docs/design.md states ("Imported checkpoints against their ports"): float32 ONNX
 * Runtime against model.py in float64. */
const LATENT_BOUND = 1e-4;
const BPD_BOUND = 1e-4;
const LOGDET_RELATIVE_BOUND = 1e-5;
/** The float64 references against model.py in float64: only the fixtures' 10 significant digits. */
const FLOAT64_BOUND = 1e-7;
/** The same through the native checkpoint, whose folded weights (log|scale|, the signs folded into the 1x1 convs)
 * are rounded to float32. */
const NATIVE_CHECKPOINT_BOUND = 1e-5;

interface Fixture {
  case: string;
  checkpoint: string;
  rosinality: { affine: boolean; conv_lu: boolean; filter_size: number; img_size: number; n_bits: number; n_flow: number; n_block: number };
  stateDict: { name: string; shape: number[]; dtype: string }[];
  inputs: { x: HostTensor };
  encode: { eps: HostTensor[]; logdet: HostTensor; log_px: HostTensor; bpd: HostTensor };
  decode: { name: string; temperature: number; eps: HostTensor[]; x: HostTensor }[];
}

const fixtures = readJsonFixtures<Fixture>(FIXTURES);

function imageShape(f: Fixture): [number, number, number] {
  return [3, f.rosinality.img_size, f.rosinality.img_size];
}

function importFixture(f: Fixture, overrides: { imageShape?: [number, number, number]; nBits?: number } = { imageShape: imageShape(f) }) {
  return importWeights(readFileSync(join(FIXTURES, f.checkpoint)), f.checkpoint, overrides);
}

function relative(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return maxAbsDiff(a, b) / Math.max(1, ...Array.from(b, Math.abs));
}

function thrown(action: () => unknown): Error {
  try {
    action();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

describe('rosinality/glow-pytorch checkpoints (fixtures from its own model.py)', function () {
  this.timeout(120000);

  it('cover affine and additive, LU and --no_lu (mixed), DataParallel names, both torch.save formats', () => {
    const has = (p: (f: Fixture) => boolean) => fixtures.some(p);
    expect(has((f) => f.rosinality.affine && f.rosinality.conv_lu), 'affine+LU').to.equal(true);
    expect(has((f) => f.rosinality.affine && !f.rosinality.conv_lu), 'affine+no LU').to.equal(true);
    expect(has((f) => !f.rosinality.affine && !f.rosinality.conv_lu), 'additive+no LU').to.equal(true);
    expect(has((f) => f.stateDict.every((t) => t.name.startsWith('module.'))), 'module. names').to.equal(true);
    expect(has((f) => f.stateDict.some((t) => t.dtype === 'uint8')), 'uint8 initialized buffers').to.equal(true);
    const formats = fixtures.map((f) => readFileSync(join(FIXTURES, f.checkpoint))[0]);
    expect(formats, 'a ZIP (PK) and a legacy (pickle) file').to.include.members([0x50, 0x80]);
  });

  for (const f of fixtures) {
    describe(f.case, () => {
      it('infers the config from the tensors and --image-shape, notes what it assumed', () => {
        const { weights, origin, notes } = importFixture(f);
        expect(origin).to.equal('rosinality');
        expect(weights.config).to.deep.equal({
          imageShape: imageShape(f), K: f.rosinality.n_flow, L: f.rosinality.n_block, hiddenChannels: f.rosinality.filter_size,
          coupling: f.rosinality.affine ? 'affine' : 'additive', permutation: 'invconv',
          // Its Glow never passes conv_lu to the last block: --no_lu leaves the top level LU.
          lu: f.rosinality.conv_lu || [...Array<boolean>(f.rosinality.n_block - 1).fill(false), true],
          learnTop: true, numClasses: 0, nBits: f.rosinality.n_bits, actnormScale: 1, zerosPadValue: 1,
        });
        expect(notes.join('\n')).to.match(/assuming 5/);
        if (!f.rosinality.conv_lu) expect(notes.join('\n')).to.match(/mixes plain and LU/);
      });

      it('keeps the LU factors where model.py has InvConv2dLU and a plain W elsewhere', () => {
        const { weights } = importFixture(f);
        const file = readWeightsFile(readFileSync(join(FIXTURES, f.checkpoint)), f.checkpoint);
        for (let b = 0; b < f.rosinality.n_block; b++) {
          const lu = f.rosinality.conv_lu || b === f.rosinality.n_block - 1;
          for (let k = 0; k < f.rosinality.n_flow; k++) {
            const dst = stepPrefix(weights.config, b, k);
            const src = `${f.stateDict[0].name.startsWith('module.') ? 'module.' : ''}blocks.${b}.flows.${k}.invconv`;
            expect(weights.params.has(`${dst}.invconv.lower`), `${dst} LU`).to.equal(lu);
            expect(weights.params.has(`${dst}.invconv.weight`), `${dst} plain`).to.equal(!lu);
            if (!lu) continue;
            // The factors as the file stores them (float32 widened), not refactored from P L U.
            expect(Array.from(weights.params.get(`${dst}.invconv.lower`)!.data)).to.deep.equal(Array.from(file.get(`${src}.w_l`)!.data));
            expect(Array.from(weights.params.get(`${dst}.invconv.log_s`)!.data)).to.deep.equal(Array.from(file.get(`${src}.w_s`)!.data));
          }
        }
      });

      it('the float64 reference reproduces model.py, and only with the padding of ones', () => {
        const { weights } = importFixture(f);
        const model = { config: weights.config, params: new Map(weights.params) };
        const ref = refEncode(model, f.inputs.x);
        ref.eps.forEach((e, l) => expect(maxAbsDiff(e.data, f.encode.eps[l].data), `eps_${l + 1}`).to.be.below(FLOAT64_BOUND));
        expect(maxAbsDiff(ref.bpd, f.encode.bpd.data), 'bpd').to.be.below(FLOAT64_BOUND);
        for (const d of f.decode) expect(maxAbsDiff(refDecode(model, d.eps, d.temperature).data, d.x.data), d.name).to.be.below(FLOAT64_BOUND);
        const zeroPadded = refEncode({ ...model, config: { ...weights.config, zerosPadValue: 0 } }, f.inputs.x);
        expect(maxAbsDiff(zeroPadded.bpd, f.encode.bpd.data), 'zero padding is another model').to.be.above(1e-3);
      });

      for (const fold of [true, false]) {
        it(`export reproduces model.py's forward and reverse in onnxruntime-node (fold=${fold})`, async () => {
          const { weights } = importFixture(f);
          const enc = await runGraph(buildEncode(weights, { fold }), { x: f.inputs.x });
          f.encode.eps.forEach((e, l) => expect(maxAbsDiff(enc[`eps_${l + 1}`].data, e.data), `eps_${l + 1}`).to.be.below(LATENT_BOUND));
          expect(maxAbsDiff(enc.bpd.data, f.encode.bpd.data), 'bpd').to.be.below(BPD_BOUND);
          expect(relative(enc.log_px.data, f.encode.log_px.data), 'log_px').to.be.below(LOGDET_RELATIVE_BOUND);
          expect(relative(enc.logdet.data, f.encode.logdet.data), 'logdet').to.be.below(LOGDET_RELATIVE_BOUND);
          const decoder = buildDecode(weights, { fold });
          for (const d of f.decode) {
            const feeds: Feeds = { temperature: d.temperature };
            d.eps.forEach((e, l) => (feeds[`eps_${l + 1}`] = e));
            expect(maxAbsDiff((await runGraph(decoder, feeds)).x.data, d.x.data), `reverse ${d.name} (T=${d.temperature})`).to.be.below(LATENT_BOUND);
          }
        });
      }
    });
  }

  it('the native checkpoint of an imported model loads into the PyTorch reference (strict) and gives model.py\'s outputs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'glow-rosinality-'));
    try {
      for (const f of fixtures) {
        const checkpoint = join(dir, `${f.case}.safetensors`);
        writeFileSync(checkpoint, checkpointBytes(importFixture(f).weights));
        writeFileSync(join(dir, 'inputs.json'), JSON.stringify({ x: { shape: f.inputs.x.shape, data: Array.from(f.inputs.x.data) } }));
        const r = spawnSync(PYTHON, [join(ROOT, 'scripts/torch_reference/check_native.py'), checkpoint, join(dir, 'inputs.json')], { encoding: 'utf8', cwd: ROOT });
        expect(r.status, `${f.case}: ${r.stderr}`).to.equal(0);
        const out = JSON.parse(r.stdout) as { eps: HostTensor[]; bpd: HostTensor };
        expect(maxAbsDiff(out.bpd.data, f.encode.bpd.data), `${f.case} bpd`).to.be.below(NATIVE_CHECKPOINT_BOUND);
        out.eps.forEach((e, l) => expect(maxAbsDiff(e.data, f.encode.eps[l].data), `${f.case} eps_${l + 1}`).to.be.below(NATIVE_CHECKPOINT_BOUND));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const f of fixtures) {
    it(`${f.case}: --to rosinality gives model.py's own names, shapes, dtypes and order back, and imports to the same model`, () => {
      const { weights } = importFixture(f);
      const { tensors: back, args } = toRosinality(weights);
      expect(back.map(([name, t]) => ({ name, shape: t.shape, dtype: t.dtype === 'U8' ? 'uint8' : 'float32' })))
        .to.deep.equal(f.stateDict.map((t) => ({ ...t, name: t.name.replace(/^module\./, '') })));
      // LU blocks (the top one of a --no_lu model too) get their factors back as imported, not
      // refactored from P L U: the same float32 values.
      const file = new Map([...readWeightsFile(readFileSync(join(FIXTURES, f.checkpoint)), f.checkpoint)].map(([n, t]) => [n.replace(/^module\./, ''), t]));
      const written = new Map(back);
      for (const [name, t] of file) {
        if (!/\.invconv\.(w_l|w_s|w_p)$/.test(name)) continue;
        expect(Array.from(written.get(name)!.data, Math.fround), name).to.deep.equal(Array.from(t.data));
      }
      expect(args).to.deep.equal({
        in_channel: 3, n_flow: f.rosinality.n_flow, n_block: f.rosinality.n_block, affine: f.rosinality.affine,
        conv_lu: f.rosinality.conv_lu, filter_size: f.rosinality.filter_size,
      });
      const again = importWeights(writeSafetensors(back), 'back.safetensors', { imageShape: imageShape(f) }).weights;
      const model = { config: again.config, params: new Map(again.params) };
      const ref = refEncode(model, f.inputs.x);
      ref.eps.forEach((e, l) => expect(maxAbsDiff(e.data, f.encode.eps[l].data), `eps_${l + 1}`).to.be.below(NATIVE_CHECKPOINT_BOUND));
      expect(maxAbsDiff(ref.bpd, f.encode.bpd.data), 'bpd').to.be.below(NATIVE_CHECKPOINT_BOUND);
    });
  }

  it('--to rosinality refuses what its layers cannot express, in one line', () => {
    const { weights } = importFixture(fixtures[0]);
    const cases: [Partial<GlowConfig>, RegExp][] = [
      [{ zerosPadValue: 0 }, /its ZeroConv2d pads with ones/],
      [{ numClasses: 2 }, /no class conditioning/],
      [{ scaleFloor: 0.1 }, /no scale floor/],
    ];
    for (const [change, message] of cases) {
      const error = thrown(() => toRosinality({ ...weights, config: { ...weights.config, ...change } }));
      expect(error).to.be.instanceOf(CheckpointError);
      expect(error.message).to.match(/^cannot write a rosinality state_dict: /).and.to.match(message);
    }
    const params = new Map(weights.params);
    params.set('prior_h', { ...params.get('prior_h')!, data: new Float64Array(params.get('prior_h')!.data.length).fill(0.5) });
    expect(thrown(() => toRosinality({ ...weights, params })).message).to.match(/prior_h is not zero/);
  });

  it('refuses what the tensors cannot tell or a model that is not invertible, in one line naming the flag', () => {
    const f = fixtures[0];
    const noShape = thrown(() => importFixture(f, {}));
    expect(noShape).to.be.instanceOf(CheckpointError);
    expect(noShape.message).to.match(new RegExp(`^${f.checkpoint}: .*--image-shape 3,H,W`));
    expect(thrown(() => importFixture(f, { imageShape: [1, 16, 16] })).message).to.match(/says 1 channels, but the first block squeezes 3 channels into 12/);
    expect(thrown(() => importFixture(f, { imageShape: [3, 10, 10] })).message).to.match(/multiples of 2\^L = 4/);
    expect(importFixture(f, { imageShape: imageShape(f), nBits: 8 }).notes.join('\n')).to.not.match(/n_bits/);
    // The same tensors as safetensors, one ActNorm scale zero.
    const file = readWeightsFile(readFileSync(join(FIXTURES, f.checkpoint)), f.checkpoint);
    const entries = [...file].filter(([, t]) => t.dtype === 'float32').map(([name, t]): [string, WritableTensor] => {
      const data = Array.from(t.data);
      if (name.endsWith('blocks.1.flows.0.actnorm.scale')) data[2] = 0;
      return [name, { dtype: 'F32', shape: t.shape, data }];
    });
    const singular = thrown(() => importWeights(writeSafetensors(entries), 'zero.safetensors', { imageShape: imageShape(f) }));
    expect(singular.message).to.match(/^zero\.safetensors: blocks\.1\.flows\.0\.actnorm\.scale\[2\] is 0: the flow is not invertible$/);
  });
});
