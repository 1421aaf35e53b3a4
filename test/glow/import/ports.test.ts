import { expect } from 'chai';
import { DEFAULT_CONFIG } from '../../../src/glow/config.js';
import { CheckpointError } from '../../../src/io/checkpoint-error.js';
import { detectPort, inferConfig, toNativeNames } from '../../../src/glow/import/ports.js';
import { initWeights } from '../../../src/glow/params.js';
import { HostTensor } from '../../../src/math/tensor.js';

const t = (shape: number[]): HostTensor => ({ shape, data: new Float64Array(shape.reduce((a, b) => a * b, 1)) });

describe('PyTorch port names and config inference', () => {
  it('detects each port and refuses a mix or a foreign state_dict', () => {
    expect(detectPort(['flow.layers.1.block.0.conv.weight'])).to.equal('y0ast');
    expect(detectPort(['flow.layers.1.f.0.weight', 'learn_top.weight'])).to.equal('chaiyujin');
    expect(detectPort(['blocks.0.flows.0.actnorm.loc', 'blocks.1.prior.scale'])).to.equal('rosinality');
    expect(() => detectPort(['flow.layers.1.f.0.weight', 'flow.layers.1.block.0.conv.weight'])).to.throw(CheckpointError, 'mix');
    expect(() => detectPort(['blocks.0.prior.scale', 'flow.layers.1.block.0.conv.weight'])).to.throw(CheckpointError, 'mix');
    expect(() => detectPort(['encoder.weight', 'decoder.bias'])).to.throw(CheckpointError, 'encoder.weight');
  });

  it("maps chaiyujin names onto y0ast's and keeps one row of a batch-sized prior_h", () => {
    const priorH: HostTensor = { shape: [4, 2, 1, 1], data: Float64Array.of(1, 2, 1, 2, 1, 2, 1, 2) };
    const native = toNativeNames('chaiyujin', new Map([
      ['flow.layers.3.f.4.logs', t([4, 1, 1])], ['flow.layers.3.invconv.l', t([4, 4])], ['flow.layers.5.conv.weight', t([8, 4, 3, 3])],
      ['flow.layers.5.conv.logs', t([8, 1, 1])], ['learn_top.logs', t([8, 1, 1])], ['project_class.weight', t([3, 4])], ['prior_h', priorH],
    ]));
    expect([...native.keys()]).to.deep.equal([
      'flow.layers.3.block.4.logs', 'flow.layers.3.invconv.lower', 'flow.layers.5.conv.conv.weight', 'flow.layers.5.conv.logs',
      'learn_top_fn.logs', 'project_class.linear.weight', 'prior_h',
    ]);
    expect(native.get('prior_h')).to.deep.equal({ shape: [1, 2, 1, 1], data: Float64Array.of(1, 2) });
  });

  it('infers every config field it can, and asks for the rest', () => {
    const config = { ...DEFAULT_CONFIG, imageShape: [3, 16, 8] as [number, number, number], K: 3, L: 2, hiddenChannels: 12, coupling: 'additive' as const, lu: false, numClasses: 4, learnTop: false };
    const params = new Map(initWeights(config, 1).params);
    const { config: inferred, notes } = inferConfig(params, { nBits: config.nBits });
    expect(inferred).to.deep.equal(config);
    expect(notes).to.deep.equal([]);
    params.delete('prior_h');
    expect(() => inferConfig(params)).to.throw(CheckpointError, '--image-shape C,H,W');
    expect(inferConfig(params, { imageShape: [3, 16, 8] }).notes[0]).to.contain('assuming 8');
    // LU or plain per level, as a native checkpoint of a rosinality --no_lu import has them.
    for (const lu of [[false, true], [true, false], true, false]) {
      const mixed = { ...config, lu };
      expect(inferConfig(new Map(initWeights(mixed, 1).params), { nBits: config.nBits }).config.lu, JSON.stringify(lu)).to.deep.equal(lu);
    }
  });
});
