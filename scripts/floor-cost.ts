// What the scale floor costs at run time: the shipped MNIST weights exported with their
// scaleFloor and with none (the same weights otherwise), encode and decode in onnxruntime-node
// CPU, in one process, the two variants alternating round by round. Prints the median time of
// each and the ratio floor / none. The floor adds a Less and a Where to each affine coupling.
//
//   node dist/scripts/floor-cost.js [--rounds 30] [--batches 1,16] [--threads 2]

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exportModel } from '../src/glow/export.js';
import { importWeights } from '../src/glow/import/index.js';
import { timeVariants } from './ab-timing.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const { values } = parseArgs({ options: { rounds: { type: 'string' }, batches: { type: 'string' }, threads: { type: 'string' } } });
const rounds = Number(values.rounds ?? 30);
const batches = (values.batches ?? '1,16').split(',').map(Number);
const threads = Number(values.threads ?? 2);

const path = join(ROOT, 'models/mnist/weights.safetensors');
const { weights } = importWeights(readFileSync(path), path);
if (!weights.config.scaleFloor) throw new Error(`${path} has no scaleFloor: nothing to compare`);
console.log(`scaleFloor ${weights.config.scaleFloor} vs none, ${path}`);
await timeVariants(weights.config, {
  floor: exportModel(weights),
  none: exportModel({ ...weights, config: { ...weights.config, scaleFloor: 0 } }),
}, { rounds, batches, threads });
