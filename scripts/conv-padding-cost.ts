// What the WebGPU channel padding (builder/passes/conv-channels.ts) costs on the CPU provider:
// one RGB Glow with random weights exported with the padding (the default) and without it, encode
// and decode in onnxruntime-node CPU, in one process, the two alternating round by round. Prints
// the median time of each and the ratio padded / unpadded.
//
//   node dist/scripts/conv-padding-cost.js [--rounds 30] [--batches 1,16] [--threads 2] [--no-fold]

import { parseArgs } from 'node:util';
import { GlowConfig } from '../src/glow/config.js';
import { exportGraph, exportModel } from '../src/glow/export.js';
import { randomParams } from '../support/random-params.js';
import { timeVariants } from './ab-timing.js';
import { usageOnHelp } from '../support/script-usage.js';

usageOnHelp(import.meta.url);
const { values } = parseArgs({
  options: { rounds: { type: 'string' }, batches: { type: 'string' }, threads: { type: 'string' }, 'no-fold': { type: 'boolean' } },
});
const rounds = Number(values.rounds ?? 30);
const batches = (values.batches ?? '1,16').split(',').map(Number);
const threads = Number(values.threads ?? 2);
const fold = !values['no-fold'];

// CIFAR-shaped, class-conditional: every level's first coupling conv (6 channels in level 1) and
// the split prior read a padded input.
const config: GlowConfig = {
  imageShape: [3, 32, 32], K: 8, L: 3, hiddenChannels: 128, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 10, nBits: 5, actnormScale: 1,
};
const w = { config, params: randomParams(config, 1) };
const pads = (['encode', 'decode'] as const).map((kind) => `${kind} ${exportGraph(w, kind, { fold }).nodes.filter((n) => n.op === 'Pad').length}`);
console.log(`RGB ${config.imageShape.join('x')} K=${config.K} L=${config.L} hidden ${config.hiddenChannels}, ${fold ? 'folded' : '--no-fold'}: Pads added: ${pads.join(', ')}`);
await timeVariants(config, { padded: exportModel(w, { fold }), unpadded: exportModel(w, { fold, webgpuConvPadding: false }) }, { rounds, batches, threads });
