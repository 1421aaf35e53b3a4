// PyTorch checkpoints of both ports, written by an independent PyTorch reference
// (scripts/torch_reference), imported, exported and run in onnxruntime-node: they must reproduce
// the reference's bits/dim, latents and decodes.

import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GlowConfig } from '../../../src/glow/config.js';
import { importWeights } from '../../../src/glow/import/index.js';
import { buildDecode, buildEncode } from '../../../src/glow/model.js';
import { paramSpecs } from '../../../src/glow/names.js';
import { checkpointBytes } from '../../../src/glow/params.js';
import { HostTensor } from '../../../src/math/tensor.js';
import { Feeds, maxAbsDiff, runGraph } from '../../helpers.js';
import { refEncode } from '../../reference/glow64.js';
import { randomImages, randomParams } from '../../../support/random-params.js';
import { PYTHON } from '../../../support/python.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const FIXTURES = join(ROOT, 'test/fixtures/glow-torch');

interface Fixture {
  case: string;
  naming: 'y0ast' | 'chaiyujin';
  checkpoint: string;
  config: GlowConfig;
  stateDict: { name: string; shape: number[] }[];
  permutations?: Record<string, number[]>;
  inputs: { x: HostTensor; y?: HostTensor };
  encode: { eps: HostTensor[]; logdet: HostTensor; log_px: HostTensor; bpd: HostTensor; y_logits?: HostTensor };
  decode: { name: string; temperature: number; eps: HostTensor[]; x: HostTensor }[];
}

function tensorOf(t: { shape: number[]; data: number[] }): HostTensor {
  return { shape: t.shape, data: Float64Array.from(t.data) };
}

function loadFixture(file: string): Fixture {
  const raw = JSON.parse(readFileSync(join(FIXTURES, file), 'utf8'));
  const convert = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(convert);
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (Array.isArray(o.shape) && Array.isArray(o.data)) return tensorOf(o as { shape: number[]; data: number[] });
      return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, convert(x)]));
    }
    return v;
  };
  return { ...raw, inputs: convert(raw.inputs), encode: convert(raw.encode), decode: convert(raw.decode) } as Fixture;
}

function relative(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return maxAbsDiff(a, b) / Math.max(1, ...Array.from(b, Math.abs));
}

const fixtures = readdirSync(FIXTURES).filter((f) => f.endsWith('.json')).sort().map(loadFixture);

function importFixture(f: Fixture) {
  const bytes = readFileSync(join(FIXTURES, f.checkpoint));
  const permutation = f.config.permutation === 'invconv' ? undefined : f.config.permutation;
  const shuffles = f.permutations ? new Map(Object.entries(f.permutations)) : undefined;
  return importWeights(bytes, f.checkpoint, { nBits: f.config.nBits, permutation, shuffles });
}

/** A native checkpoint through the PyTorch reference (scripts/torch_reference/check_native.py),
 * the float64 reference (`ref`, on the same float32 weights) and ONNX Runtime's export: the two
 * references agree to float64 rounding, ONNX Runtime to 1e-4. */
async function expectReferencesAgree(bytes: Uint8Array, x: HostTensor, ref: { eps: HostTensor[]; bpd: ArrayLike<number> }) {
  const dir = mkdtempSync(join(tmpdir(), 'glow-torch-'));
  try {
    const checkpoint = join(dir, 'weights.safetensors');
    writeFileSync(checkpoint, bytes);
    writeFileSync(join(dir, 'inputs.json'), JSON.stringify({ x: { shape: x.shape, data: Array.from(x.data) } }));
    const r = spawnSync(PYTHON, [join(ROOT, 'scripts/torch_reference/check_native.py'), checkpoint, join(dir, 'inputs.json')], { encoding: 'utf8', cwd: ROOT });
    expect(r.status, r.stderr).to.equal(0);
    const torch = JSON.parse(r.stdout) as { eps: HostTensor[]; bpd: HostTensor };
    expect(maxAbsDiff(torch.bpd.data, ref.bpd), 'PyTorch vs float64 bpd').to.be.below(1e-10);
    torch.eps.forEach((e, l) => expect(maxAbsDiff(e.data, ref.eps[l].data), `PyTorch vs float64 eps_${l + 1}`).to.be.below(1e-10));
    const enc = await runGraph(buildEncode(importWeights(bytes, 'weights.safetensors').weights), { x });
    expect(maxAbsDiff(enc.bpd.data, ref.bpd), 'ONNX Runtime bpd').to.be.below(1e-4);
    return { torch, enc };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('PyTorch checkpoint fidelity (fixtures from scripts/torch_reference)', function () {
  // Each native-checkpoint case starts Python and imports torch, seconds each on a busy machine.
  this.timeout(300000);

  it('covers both ports and every option the issue names', () => {
    const has = (p: (f: Fixture) => boolean) => fixtures.some(p);
    for (const naming of ['y0ast', 'chaiyujin']) {
      expect(has((f) => f.naming === naming && f.config.coupling === 'affine' && f.config.lu === true), `${naming} affine+LU`).to.equal(true);
      expect(has((f) => f.naming === naming && f.config.coupling === 'additive' && f.config.permutation === 'invconv' && !f.config.lu), `${naming} additive+plain`).to.equal(true);
      expect(has((f) => f.naming === naming && f.config.numClasses > 0), `${naming} class-conditional`).to.equal(true);
      expect(has((f) => f.naming === naming && f.config.permutation === 'reverse'), `${naming} reverse`).to.equal(true);
      expect(has((f) => f.naming === naming && f.config.learnTop) && has((f) => f.naming === naming && !f.config.learnTop), `${naming} learn_top on/off`).to.equal(true);
    }
  });

  for (const f of fixtures) {
    describe(f.case, () => {
      it('infers the config and port from the tensors alone', () => {
        const imported = importFixture(f);
        expect(imported.origin).to.equal(f.naming);
        expect(imported.weights.config).to.deep.equal(f.config);
        if (f.naming === 'y0ast') expect(paramSpecs(f.config).map((s) => s.name), 'state_dict order').to.deep.equal(f.stateDict.map((s) => s.name));
      });

      for (const fold of [true, false]) {
        it(`reproduces encode and decode in onnxruntime-node (fold=${fold})`, async () => {
          const { weights } = importFixture(f);
          const feeds: Feeds = f.inputs.y ? { x: f.inputs.x, y: f.inputs.y } : { x: f.inputs.x };
          const enc = await runGraph(buildEncode(weights, { fold }), feeds);
          f.encode.eps.forEach((e, l) => expect(maxAbsDiff(enc[`eps_${l + 1}`].data, e.data), `eps_${l + 1}`).to.be.below(1e-4));
          expect(maxAbsDiff(enc.bpd.data, f.encode.bpd.data), 'bpd').to.be.below(1e-4);
          expect(relative(enc.log_px.data, f.encode.log_px.data), 'log_px').to.be.below(1e-5);
          expect(relative(enc.logdet.data, f.encode.logdet.data), 'logdet').to.be.below(1e-5);
          if (f.encode.y_logits) expect(maxAbsDiff(enc.y_logits.data, f.encode.y_logits.data), 'y_logits').to.be.below(1e-4);
          const decoder = buildDecode(weights, { fold });
          for (const d of f.decode) {
            const decodeFeeds: Feeds = { temperature: d.temperature, ...(f.inputs.y ? { y: f.inputs.y } : {}) };
            d.eps.forEach((e, l) => (decodeFeeds[`eps_${l + 1}`] = e));
            const out = await runGraph(decoder, decodeFeeds);
            expect(maxAbsDiff(out.x.data, d.x.data), `decode ${d.name}`).to.be.below(1e-4);
          }
        });
      }
    });
  }

  it('the native checkpoint loads into the PyTorch reference with strict=True and gives the same outputs', () => {
    const probe = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
    if (probe.status !== 0) {
      throw new Error(`PyTorch is missing for ${PYTHON}: install Debian's python3-torch (apt-get install python3-torch); ${probe.stderr.trim().split('\n').at(-1)}`);
    }
    const dir = mkdtempSync(join(tmpdir(), 'glow-native-'));
    try {
      for (const f of fixtures) {
        const { weights } = importFixture(f);
        const checkpoint = join(dir, `${f.case}.safetensors`);
        writeFileSync(checkpoint, checkpointBytes(weights));
        const r = spawnSync(PYTHON, [join(ROOT, 'scripts/torch_reference/check_native.py'), checkpoint, join(FIXTURES, `${f.case}.json`)], { encoding: 'utf8', cwd: ROOT });
        expect(r.status, `${f.case}: ${r.stderr}`).to.equal(0);
        const out = JSON.parse(r.stdout) as { eps: HostTensor[]; bpd: HostTensor };
        expect(maxAbsDiff(out.bpd.data, f.encode.bpd.data), `${f.case} bpd`).to.be.below(1e-6);
        out.eps.forEach((e, l) => expect(maxAbsDiff(e.data, f.encode.eps[l].data), `${f.case} eps_${l + 1}`).to.be.below(1e-6));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a model with scaleFloor: the PyTorch reference (clamp) and the float64 reference agree, and ONNX Runtime with them', async () => {
    const config: GlowConfig = {
      imageShape: [1, 8, 8], K: 2, L: 2, hiddenChannels: 6, coupling: 'affine', permutation: 'invconv', lu: true,
      learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1, scaleFloor: 0.88,
    };
    // Through the float32 checkpoint, so that both references see the same weights.
    const bytes = checkpointBytes({ config, params: randomParams(config, 31) });
    const { weights } = importWeights(bytes, 'floor.safetensors');
    expect(weights.config.scaleFloor).to.equal(0.88);
    const x = randomImages(config, 3, 32);
    const ref = refEncode({ config, params: weights.params as never }, x);
    const unbounded = refEncode({ config: { ...config, scaleFloor: 0 }, params: weights.params as never }, x);
    expect(maxAbsDiff(unbounded.bpd, ref.bpd), 'the floor binds somewhere').to.be.above(1e-3);
    await expectReferencesAgree(bytes, x, ref);
  });

  it('a model with scaleBound, lipschitz and constantSplitScale: the PyTorch reference and the float64 reference agree, and ONNX Runtime\'s export with them', async () => {
    const config: GlowConfig = {
      imageShape: [1, 8, 8], K: 2, L: 2, hiddenChannels: 6, coupling: 'affine', permutation: 'invconv', lu: true,
      learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1, scaleBound: 0.5, lipschitz: 0.005, constantSplitScale: true,
    };
    const bytes = checkpointBytes({ config, params: randomParams(config, 33) });
    const { weights } = importWeights(bytes, 'stable.safetensors');
    const x = randomImages(config, 3, 34);
    const ref = refEncode({ config, params: weights.params as never }, x);
    const { lipschitz: _, ...free } = config;
    expect(maxAbsDiff(refEncode({ config: free, params: weights.params as never }, x).bpd, ref.bpd), 'the normalisation binds').to.be.above(1e-4);
    const { constantSplitScale: __, ...predicted } = config;
    expect(maxAbsDiff(refEncode({ config: predicted, params: weights.params as never }, x).bpd, ref.bpd), 'the constant scale binds').to.be.above(1e-4);
    const { torch, enc } = await expectReferencesAgree(bytes, x, ref);
    torch.eps.forEach((e, l) => expect(maxAbsDiff(enc[`eps_${l + 1}`].data, e.data), `ONNX Runtime vs PyTorch eps_${l + 1}`).to.be.below(1e-4));
  });
});
