// What the scale floor costs at run time: the shipped MNIST weights exported with their
// scaleFloor and with none (the same weights otherwise), encode and decode in onnxruntime-node
// CPU, in one process, the two variants alternating round by round. Prints the median time of
// each and the ratio floor / none. The floor adds a Max to each affine coupling.
// With --against where: the same floor as Max (the default export) against the layer's
// Less + Where (floorAsMax: false, the export before the Max form), ratio max / where.
//
//   node dist/scripts/floor-cost.js [--rounds 30] [--batches 1,16] [--threads 2] [--against none|where]

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exportModel, ModelFiles } from '../src/glow/export.js';
import { importWeights } from '../src/glow/import/index.js';
import { timeVariants } from './ab-timing.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const USAGE = 'usage: node dist/scripts/floor-cost.js [--rounds 30] [--batches 1,16] [--threads 2] [--against none|where]';
const { values } = parseArgs({ options: { rounds: { type: 'string' }, batches: { type: 'string' }, threads: { type: 'string' }, against: { type: 'string' }, help: { type: 'boolean' } } });
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const against = values.against ?? 'none';
if (against !== 'none' && against !== 'where') {
  console.error(`floor-cost: --against must be none or where, got ${against}\n${USAGE}`);
  process.exit(2);
}
const rounds = Number(values.rounds ?? 30);
const batches = (values.batches ?? '1,16').split(',').map(Number);
const threads = Number(values.threads ?? 2);

const path = join(ROOT, 'models/mnist/weights.safetensors');
const { weights } = importWeights(readFileSync(path), path);
if (!weights.config.scaleFloor) throw new Error(`${path} has no scaleFloor: nothing to compare`);
console.log(against === 'none' ? `scaleFloor ${weights.config.scaleFloor} vs none, ${path}` : `scaleFloor ${weights.config.scaleFloor} as Max vs as Less + Where, ${path}`);
const variants: Record<string, ModelFiles> = against === 'none'
  ? { floor: exportModel(weights), none: exportModel({ ...weights, config: { ...weights.config, scaleFloor: 0 } }) }
  : { max: exportModel(weights), where: exportModel(weights, { floorAsMax: false }) };
await timeVariants(weights.config, variants, { rounds, batches, threads });
