// glow-onnx sample on WebGPU (SwiftShader's Vulkan driver in CI) gives the CPU's grid.

import { expect } from 'chai';
import { Jimp } from 'jimp';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CONFIG } from '../../src/glow/config.js';
import { exportModel } from '../../src/glow/export.js';
import { writeFilesAtomic } from '../../src/io/files.js';
import { CLI_BIN, SWIFTSHADER_ICD } from '../helpers.js';
import { randomParams } from '../../support/random-params.js';

describe('glow-onnx sample --ep webgpu', function () {
  this.timeout(180000);
  let dir: string;
  before(() => {
    if (!existsSync(SWIFTSHADER_ICD)) throw new Error(`${SWIFTSHADER_ICD} is missing: apt-get install chromium libvulkan1`);
    dir = mkdtempSync(join(tmpdir(), 'glow-webgpu-cli-'));
    const config = { ...DEFAULT_CONFIG, K: 2, hiddenChannels: 16 };
    writeFilesAtomic(join(dir, 'model'), { ...exportModel({ config, params: randomParams(config, 8, 0.5) }) });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('draws the same grid as the CPU, and says it ran on WebGPU', async () => {
    const env = { ...process.env, VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES ?? SWIFTSHADER_ICD, XDG_RUNTIME_DIR: tmpdir() };
    const run = (ep: string, out: string) => spawnSync(process.execPath, [CLI_BIN, 'sample', '--model', join(dir, 'model'), '--ep', ep, '--strict-ep', '--n', '16', '--seed', '3', '--out', out], { encoding: 'utf8', env });
    const gpu = run('webgpu', join(dir, 'gpu.png'));
    expect(gpu.status, gpu.stderr).to.equal(0);
    expect(gpu.stderr).to.contain('running on webgpu');
    const cpu = run('cpu', join(dir, 'cpu.png'));
    expect(cpu.status, cpu.stderr).to.equal(0);
    const [a, b] = await Promise.all([Jimp.read(join(dir, 'gpu.png')), Jimp.read(join(dir, 'cpu.png'))]);
    let differing = 0;
    for (let i = 0; i < a.bitmap.data.length; i++) if (a.bitmap.data[i] !== b.bitmap.data[i]) differing++;
    // Values agree to ~1e-6; only a pixel sitting exactly on a quantisation edge may flip.
    expect(differing / a.bitmap.data.length).to.be.below(1e-3);
  });

  it('verify --placement lists where each op ran: every Conv on WebGPU', () => {
    const env = { ...process.env, VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES ?? SWIFTSHADER_ICD, XDG_RUNTIME_DIR: tmpdir() };
    const r = spawnSync(process.execPath, [CLI_BIN, 'verify', join(dir, 'model'), '--ep', 'webgpu', '--limit', '4', '--placement'], { encoding: 'utf8', env });
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^encode on WebGpuExecutionProvider: \d+ nodes \(.*Conv \d+/m);
    expect(r.stdout).to.match(/^decode on WebGpuExecutionProvider: \d+ nodes/m);
    expect(r.stdout).to.not.match(/CPUExecutionProvider: .*Conv/);
  });
});
