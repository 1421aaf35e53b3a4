// Every file reader fed random, truncated and corrupted bytes: inspect (ONNX models, with
// external data), the native checkpoint and safetensors, latents, the PyTorch importer and
// training checkpoints.
// Each case must end in a clean error (see fuzz-worker.ts) or a result, quickly; the readers run
// in a worker thread that is stopped if a case makes no progress, so a hang fails the test
// instead of stalling it.

import { expect } from 'chai';
import { Worker } from 'node:worker_threads';
import { DEFAULT_CONFIG, GlowConfig } from '../../src/glow/config.js';
import { readSafetensors, SafetensorsError, WritableTensor, writeSafetensors } from '../../src/io/safetensors.js';
import { initialCheckpoint, readTrainCheckpoint } from '../../src/train/checkpoint.js';
import { randomParams } from '../../support/random-params.js';
import { CLEAN_ERRORS, FuzzMessage, FuzzRequest, uncleanReason } from './fuzz-worker.js';

/** A case taking longer than this is a failure (the slowest measured here take ~50 ms). */
const CASE_LIMIT_MS = 2000;
/** A worker silent for this long is stuck in one case: it is stopped and the case reported. */
const HANG_MS = 15_000;

interface Outcome {
  cases: number;
  thrown: number;
  maxMs: number;
  slowest: string;
  problems: string[];
  hang?: string;
}

function fuzz(request: FuzzRequest): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./fuzz-worker.js', import.meta.url), { workerData: request });
    const problems: string[] = [];
    let current = 'start-up';
    let finished = false;
    let timer: NodeJS.Timeout;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        finished = true;
        void worker.terminate();
        resolve({ cases: 0, thrown: 0, maxMs: Infinity, slowest: current, problems, hang: current });
      }, HANG_MS);
    };
    arm();
    worker.on('message', (m: FuzzMessage) => {
      if (m.type === 'progress') {
        current = m.label;
        arm();
      } else if (m.type === 'problem') {
        problems.push(`${m.label}: ${m.problem}`);
      } else {
        finished = true;
        clearTimeout(timer);
        void worker.terminate();
        resolve({ ...m, problems });
      }
    });
    worker.on('error', (e) => {
      clearTimeout(timer);
      if (!finished) reject(new Error(`the fuzz worker crashed at "${current}": ${e.message}`));
    });
    worker.on('exit', (code) => {
      clearTimeout(timer);
      if (!finished) reject(new Error(`the fuzz worker exited (code ${code}) at "${current}"`));
    });
  });
}

/** reader, mutations per seed file, the share of cases it must refuse (corrupting tensor data
 * alone leaves a readable file: only truncations of an external data file are errors). */
const READERS: [string, number, number][] = [
  ['inspect', 400, 0.5],
  ['readModelSummary', 200, 0.5],
  ['parseModel(external data)', 200, 0.1],
  ['readSafetensors', 400, 0.5],
  ['parseCheckpoint', 400, 0.5],
  ['parseLatents', 300, 0.5],
  ['importWeights', 250, 0.5],
  ['readWeightsFile(legacy torch.save)', 300, 0.3],
  ['readTrainCheckpoint', 250, 0.5],
];

describe('file readers fed random and truncated bytes (fuzz)', function () {
  this.timeout(120_000);

  it('uncleanReason accepts only the project\'s own error classes with a one-line message', () => {
    for (const Clean of CLEAN_ERRORS) expect(uncleanReason(new Clean('bad')), Clean.name).to.equal(undefined);
    // A look-alike is not ours: the check goes by class, not by name.
    class OnnxFormatError extends Error {}
    expect(uncleanReason(new OnnxFormatError('bad'))).to.match(/^OnnxFormatError/);
    expect(uncleanReason(new Error('bad'))).to.match(/^Error/);
    expect(uncleanReason(new SyntaxError('Unexpected token } in JSON'))).to.match(/^SyntaxError/);
    expect(uncleanReason(new TypeError("Cannot read properties of undefined (reading 'x')"))).to.match(/^TypeError/);
    expect(uncleanReason(new RangeError('Array buffer allocation failed'))).to.match(/^RangeError/);
    expect(uncleanReason(new SafetensorsError('two\nlines'))).to.match(/not one line/);
    expect(uncleanReason('a string')).to.match(/non-Error/);
  });

  it('readTrainCheckpoint refuses a checkpoint whose metadata is valid JSON of the wrong kind, with its own error', () => {
    const config: GlowConfig = { ...DEFAULT_CONFIG, imageShape: [1, 8, 8], K: 1, hiddenChannels: 4 };
    const initial = readSafetensors(initialCheckpoint({ config, params: randomParams(config, 1) }));
    const state = JSON.parse(initial.metadata['glow_onnx.train_state']);
    const tampered = (metadata: Record<string, string>) => writeSafetensors(
      [...initial.tensors].map(([name, t]) => [name, { dtype: 'F32', shape: t.shape, data: t.data }] as [string, WritableTensor]),
      { ...initial.metadata, ...metadata },
    );
    const cases: [Record<string, string>, RegExp][] = [
      [{ 'glow_onnx.train_state': 'null' }, /train state has no fields/],
      [{ 'glow_onnx.train_state': JSON.stringify({ ...state, step: -1 }) }, /invalid step/],
      [{ 'glow_onnx.train_state': JSON.stringify({ ...state, elapsedSeconds: 'soon' }) }, /invalid elapsedSeconds/],
      [{ 'glow_onnx.train_state': JSON.stringify({ ...state, noise: [0, 0, 0, 0, 0, 0] }) }, /invalid noise generator state/],
      [{ 'glow_onnx.train_state': JSON.stringify({ ...state, noise: 'x' }) }, /no noise generator state/],
      [{ 'glow_onnx.train_options': '[1]' }, /train_options is not a JSON object/],
      [{ 'glow_onnx.train_options': '{' }, /train_options is not valid JSON/],
      [{ 'glow_onnx.shuffles': 'null' }, /must be a JSON object/],
      [{ 'glow_onnx.config': '{"K": 1}' }, /config/],
    ];
    for (const [metadata, message] of cases) {
      let error: unknown;
      try {
        readTrainCheckpoint(tampered(metadata), 'checkpoint.safetensors');
      } catch (e) {
        error = e;
      }
      expect(uncleanReason(error), JSON.stringify(metadata)).to.equal(undefined);
      expect((error as Error).message, JSON.stringify(metadata)).to.match(message);
    }
  });

  READERS.forEach(([reader, mutations, refused], i) => {
    it(`${reader}: a clean error or a result for every case, each within ${CASE_LIMIT_MS} ms`, async () => {
      const outcome = await fuzz({ reader, seed: 1000 + i, mutations });
      expect(outcome.hang, `hung (no progress for ${HANG_MS} ms) at: ${outcome.hang}`).to.equal(undefined);
      expect(outcome.problems, `${outcome.problems.length} unclean outcomes:\n${outcome.problems.slice(0, 20).join('\n')}\n`).to.deep.equal([]);
      expect(outcome.cases).to.be.above(100);
      expect(outcome.thrown / outcome.cases, `${outcome.thrown} of ${outcome.cases} cases refused`).to.be.above(refused);
      if (process.env.GLOW_FUZZ_VERBOSE) console.log(`      ${reader}: ${outcome.cases} cases, ${outcome.thrown} refused, slowest ${outcome.maxMs.toFixed(1)} ms (${outcome.slowest})`);
      expect(outcome.maxMs, `slowest case: ${outcome.slowest}`).to.be.below(CASE_LIMIT_MS);
    });
  });
});
