// chaiyujin/glow-pytorch checkpoints written by that repository's own trainer code (its
// utils.save, legacy torch.save format) and evaluated by its own models.py
// (test/fixtures/chaiyujin/README.md says how): imported, exported and run in onnxruntime-node,
// they must reproduce its nll, latents, class logits and reverse.

import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importWeights } from '../../../src/glow/import/index.js';
import { buildDecode, buildEncode } from '../../../src/glow/model.js';
import { HostTensor } from '../../../src/math/tensor.js';
import { Feeds, maxAbsDiff, readJsonFixtures, runGraph } from '../../helpers.js';
import { refDecode, refEncode } from '../../reference/glow64.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const FIXTURES = join(ROOT, 'test/fixtures/chaiyujin');

/** float32 ONNX Runtime against its code: the port's bounds. */
const BOUND = 1e-4;
/** The float64 reference against its encode run in float64: the fixtures' 10 significant digits
 * (its weights are the file's float32 values, so nothing else differs). */
const FLOAT64_BOUND = 1e-7;

interface Fixture {
  case: string;
  checkpoint: string;
  hparams: { Glow: { image_shape: [number, number, number]; hidden_channels: number; K: number; L: number; flow_coupling: string; LU_decomposed: boolean; learn_top: boolean; y_condition: boolean; y_classes: number } };
  wrapper: { global_step: number; keys: string[] };
  stateDict: { name: string; shape: number[]; dtype: string }[];
  inputs: { x: HostTensor; y?: HostTensor };
  encode: { eps: HostTensor[]; nll: HostTensor; bpd: HostTensor; log_px: HostTensor; y_logits?: HostTensor };
  decode: { name: string; temperature: number; eps: HostTensor[]; x: HostTensor }[];
}

const fixtures = readJsonFixtures<Fixture>(FIXTURES);

function importFixture(f: Fixture) {
  return importWeights(readFileSync(join(FIXTURES, f.checkpoint)), f.checkpoint);
}

function relative(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return maxAbsDiff(a, b) / Math.max(1, ...Array.from(b, Math.abs));
}

describe('chaiyujin/glow-pytorch checkpoints (fixtures from its own trainer and models.py)', function () {
  this.timeout(120000);

  it('cover affine+LU class-conditional with learn_top, additive+plain gray without; legacy {global_step, graph, optim} files', () => {
    const has = (p: (f: Fixture) => boolean) => fixtures.some(p);
    expect(has((f) => f.hparams.Glow.flow_coupling === 'affine' && f.hparams.Glow.LU_decomposed && f.hparams.Glow.y_condition && f.hparams.Glow.learn_top)).to.equal(true);
    expect(has((f) => f.hparams.Glow.flow_coupling === 'additive' && !f.hparams.Glow.LU_decomposed && f.hparams.Glow.image_shape[2] === 1)).to.equal(true);
    for (const f of fixtures) {
      expect(readFileSync(join(FIXTURES, f.checkpoint))[0], `${f.checkpoint} is a legacy (pickle) file`).to.equal(0x80);
      expect(f.wrapper.keys).to.deep.equal(['criterion', 'global_step', 'graph', 'optim']);
    }
  });

  for (const f of fixtures) {
    describe(f.case, () => {
      it('infers the port and config from the tensors alone', () => {
        const { weights, origin } = importFixture(f);
        const g = f.hparams.Glow;
        expect(origin).to.equal('chaiyujin');
        expect(weights.config).to.deep.equal({
          imageShape: [g.image_shape[2], g.image_shape[0], g.image_shape[1]], K: g.K, L: g.L, hiddenChannels: g.hidden_channels,
          coupling: g.flow_coupling, permutation: 'invconv', lu: g.LU_decomposed, learnTop: g.learn_top,
          numClasses: g.y_condition ? g.y_classes : 0, nBits: 8, actnormScale: 1,
        });
      });

      it('the float64 reference reproduces its encode (float64) and reverse (float32)', () => {
        const { weights } = importFixture(f);
        const model = { config: weights.config, params: new Map(weights.params) };
        const ref = refEncode(model, f.inputs.x, f.inputs.y);
        ref.eps.forEach((e, l) => expect(maxAbsDiff(e.data, f.encode.eps[l].data), `eps_${l + 1}`).to.be.below(FLOAT64_BOUND));
        expect(maxAbsDiff(ref.bpd, f.encode.bpd.data), 'bpd').to.be.below(FLOAT64_BOUND);
        if (f.encode.y_logits) expect(maxAbsDiff(ref.yLogits!.data, f.encode.y_logits.data), 'y_logits').to.be.below(FLOAT64_BOUND);
        for (const d of f.decode) {
          expect(maxAbsDiff(refDecode(model, d.eps, d.temperature, f.inputs.y).data, d.x.data), d.name).to.be.below(BOUND);
        }
      });

      for (const fold of [true, false]) {
        it(`export reproduces its forward and reverse in onnxruntime-node (fold=${fold})`, async () => {
          const { weights } = importFixture(f);
          const y: Feeds = f.inputs.y ? { y: f.inputs.y } : {};
          const enc = await runGraph(buildEncode(weights, { fold }), { x: f.inputs.x, ...y });
          f.encode.eps.forEach((e, l) => expect(maxAbsDiff(enc[`eps_${l + 1}`].data, e.data), `eps_${l + 1}`).to.be.below(BOUND));
          expect(maxAbsDiff(enc.bpd.data, f.encode.bpd.data), 'bpd').to.be.below(BOUND);
          expect(relative(enc.log_px.data, f.encode.log_px.data), 'log_px').to.be.below(1e-5);
          // Its own nll is per pixel (H*W), with H*W*ln(256) for the discretisation: what its
          // users compare is that, from the contract's log_px.
          const [C, H, W] = weights.config.imageShape;
          const nll = enc.log_px.data.map((v) => -(v + (C - 1) * H * W * Math.log(256)) / (H * W * Math.LN2));
          expect(maxAbsDiff(nll, f.encode.nll.data), 'its nll').to.be.below(BOUND);
          if (f.encode.y_logits) expect(maxAbsDiff(enc.y_logits.data, f.encode.y_logits.data), 'y_logits').to.be.below(BOUND);
          const decoder = buildDecode(weights, { fold });
          for (const d of f.decode) {
            const feeds: Feeds = { temperature: d.temperature, ...y };
            d.eps.forEach((e, l) => (feeds[`eps_${l + 1}`] = e));
            expect(maxAbsDiff((await runGraph(decoder, feeds)).x.data, d.x.data), `reverse ${d.name} (T=${d.temperature})`).to.be.below(BOUND);
          }
        });
      }
    });
  }
});
