// Execution-provider selection of onnxruntime-node: fallback order, strict mode, the message for
// missing CUDA/TensorRT libraries, and the options each provider gets. On machines without
// onnxruntime-node's GPU libraries (installed separately) CUDA and TensorRT fail to load, which is
// exactly what these tests need; where those libraries are installed, the tests that rely on
// the failure say so and are skipped.

import { expect } from 'chai';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GlowConfig } from '../../src/glow/config.js';
import { exportModel } from '../../src/glow/export.js';
import { initWeights } from '../../src/glow/params.js';
import {
  createSession, GPU_LIBRARY_HELP, ProviderError, ProviderName, sessionOptions, withTensorrtEnvironment,
} from '../../src/runtime/providers.js';

const config: GlowConfig = {
  imageShape: [1, 8, 8], K: 1, L: 1, hiddenChannels: 8, coupling: 'affine', permutation: 'invconv',
  lu: true, learnTop: true, numClasses: 0, nBits: 5, actnormScale: 1,
};
const model = exportModel(initWeights(config, 1))['encode.onnx'];

/** The command GPU_LIBRARY_HELP tells the user to run. */
const INSTALL_COMMAND = GPU_LIBRARY_HELP.slice(GPU_LIBRARY_HELP.indexOf('ONNXRUNTIME_NODE_INSTALL='));

/** Whether onnxruntime-node's CUDA provider library has been installed next to its binding. */
function gpuLibrariesInstalled(): boolean {
  const root = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  const bin = join(root, 'bin');
  const walk = (dir: string): boolean => readdirSync(dir, { withFileTypes: true })
    .some((e) => (e.isDirectory() ? walk(join(dir, e.name)) : /providers_cuda/.test(e.name)));
  return existsSync(bin) && walk(bin);
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

const TRT_ENV = ['ORT_TENSORRT_FP16_ENABLE', 'ORT_TENSORRT_ENGINE_CACHE_ENABLE', 'ORT_TENSORRT_CACHE_PATH'] as const;

describe('execution providers (onnxruntime-node)', function () {
  this.timeout(30_000);
  const noGpu = !gpuLibrariesInstalled();

  it('the GPU help names an install command', () => {
    expect(INSTALL_COMMAND).to.match(/^ONNXRUNTIME_NODE_INSTALL=cuda12 node \S*onnxruntime-node\/script\/install\.js/);
  });

  it("['cuda'] without the GPU libraries: ProviderError whose message carries the install command", async function () {
    if (!noGpu) this.skip();
    const e = await rejection(createSession(model, { executionProviders: ['cuda'] }));
    expect(e).to.be.instanceOf(ProviderError);
    expect(e.name).to.equal('ProviderError');
    expect(e.message).to.contain('cuda: ');
    expect(e.message).to.contain(INSTALL_COMMAND);
    expect((e as ProviderError).failures.map((f) => f.provider)).to.deep.equal(['cuda']);
  });

  it("['tensorrt', 'cuda', 'cpu'] falls back to cpu and keeps both failures", async function () {
    if (!noGpu) this.skip();
    const s = await createSession(model, { executionProviders: ['tensorrt', 'cuda', 'cpu'] });
    try {
      expect(s.provider).to.equal('cpu');
      expect(s.failures.map((f) => f.provider)).to.deep.equal(['tensorrt', 'cuda']);
      for (const f of s.failures) expect(f.reason, f.provider).to.contain(INSTALL_COMMAND);
    } finally {
      await s.session.release();
    }
  });

  it("strict mode with ['cuda', 'cpu'] throws and says the fallback was refused", async function () {
    if (!noGpu) this.skip();
    const e = await rejection(createSession(model, { executionProviders: ['cuda', 'cpu'], strict: true }));
    expect(e).to.be.instanceOf(ProviderError);
    const { failures } = e as ProviderError;
    expect(failures.map((f) => f.provider)).to.deep.equal(['cuda', 'cpu']);
    expect(failures[1].reason).to.match(/not tried: strict mode refuses fallback/);
    expect(e.message).to.contain('strict mode refuses fallback');
  });

  it('a working first provider reports no failures', async () => {
    const s = await createSession(model, { executionProviders: ['cpu'], strict: true });
    try {
      expect(s.provider).to.equal('cpu');
      expect(s.failures).to.deep.equal([]);
    } finally {
      await s.session.release();
    }
  });

  it('an unknown provider name is a clear error, even after a working one', async () => {
    for (const order of [['gpu'], ['cpu', 'CUDA']]) {
      const e = await rejection(createSession(model, { executionProviders: order as ProviderName[] }));
      expect(e, order.join()).to.be.instanceOf(ProviderError);
      const bad = order[order.length - 1];
      expect(e.message).to.contain(`${bad}: unknown provider (known: tensorrt, cuda, webgpu, cpu)`);
    }
  });

  it('sessionOptions: cuda and tensorrt carry deviceId (default 0), threads become intraOpNumThreads', () => {
    expect(sessionOptions('cuda', { deviceId: 3 }).executionProviders).to.deep.equal([{ name: 'cuda', deviceId: 3 }]);
    expect(sessionOptions('tensorrt', { deviceId: 1 }).executionProviders).to.deep.equal([{ name: 'tensorrt', deviceId: 1 }]);
    expect(sessionOptions('cuda', {}).executionProviders).to.deep.equal([{ name: 'cuda', deviceId: 0 }]);
    expect(sessionOptions('tensorrt', {}).executionProviders).to.deep.equal([{ name: 'tensorrt', deviceId: 0 }]);
    expect(sessionOptions('webgpu', { deviceId: 2 }).executionProviders).to.deep.equal([{ name: 'webgpu', preferredLayout: 'NCHW' }]);
    expect(sessionOptions('cpu', {}).executionProviders).to.deep.equal(['cpu']);
    expect(sessionOptions('cpu', { threads: 2 }).intraOpNumThreads).to.equal(2);
    expect(sessionOptions('cpu', {})).to.not.have.property('intraOpNumThreads');
  });

  it('spinWait: false turns off intra-op spinning, and ONNX Runtime accepts the session', async () => {
    expect(sessionOptions('cpu', {})).to.not.have.property('extra');
    expect(sessionOptions('cpu', { spinWait: true })).to.not.have.property('extra');
    expect(sessionOptions('cpu', { spinWait: false }).extra).to.deep.equal({ session: { intra_op: { allow_spinning: '0' } } });
    const { session } = await createSession(model, { executionProviders: ['cpu'], spinWait: false, threads: 2 });
    expect(session.outputNames.length).to.be.above(0);
  });

  describe('TensorRT switches through the environment', () => {
    let saved: Record<string, string | undefined>;
    let cacheDir: string;

    beforeEach(() => {
      saved = Object.fromEntries(TRT_ENV.map((k) => [k, process.env[k]]));
      for (const k of TRT_ENV) delete process.env[k];
      cacheDir = mkdtempSync(join(tmpdir(), 'glow-trt-cache-'));
    });

    afterEach(() => {
      for (const k of TRT_ENV) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
      rmSync(cacheDir, { recursive: true, force: true });
    });

    it('tensorrtFp16 and tensorrtEngineCacheDir set ORT_TENSORRT_* while the provider is created, then restore them', async () => {
      process.env.ORT_TENSORRT_CACHE_PATH = '/previous';
      const seen = await withTensorrtEnvironment({ tensorrtFp16: true, tensorrtEngineCacheDir: cacheDir }, async () => TRT_ENV.map((k) => process.env[k]));
      expect(seen).to.deep.equal(['1', '1', cacheDir]);
      expect(process.env.ORT_TENSORRT_FP16_ENABLE).to.equal(undefined);
      expect(process.env.ORT_TENSORRT_CACHE_PATH).to.equal('/previous');
      let error: unknown;
      await withTensorrtEnvironment({ tensorrtFp16: true }, async () => { throw new Error('boom'); }).catch((e) => (error = e));
      expect((error as Error).message).to.equal('boom');
      expect(process.env.ORT_TENSORRT_FP16_ENABLE, 'restored after a failure').to.equal(undefined);
      const s = await createSession(model, { executionProviders: ['tensorrt', 'cpu'], tensorrtFp16: true, tensorrtEngineCacheDir: cacheDir });
      await s.session.release();
      expect(process.env.ORT_TENSORRT_FP16_ENABLE, 'one session does not leak fp16 into the next').to.equal(undefined);
    });

    it('without those options, and for providers other than tensorrt, the environment is left alone', async () => {
      const a = await createSession(model, { executionProviders: ['tensorrt', 'cpu'] });
      await a.session.release();
      const b = await createSession(model, { executionProviders: ['cpu'], tensorrtFp16: true, tensorrtEngineCacheDir: cacheDir });
      await b.session.release();
      for (const k of TRT_ENV) expect(process.env[k], k).to.equal(undefined);
    });
  });
});
