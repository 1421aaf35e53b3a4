// ONNX Runtime's WebGPU provider in Node without a GPU, for tests and scripts: Dawn on Chromium's
// SwiftShader Vulkan driver.

import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/**
 * Points Dawn (onnxruntime's WebGPU) at Chromium's SwiftShader Vulkan driver unless the
 * environment already chose a driver, and gives Mesa's loader the runtime dir it wants. Must run
 * before the process's first WebGPU session: a failed adapter request sticks for the process.
 * Returns the driver the caller chose itself, if any.
 */
export function useSoftwareWebGpu(): string | undefined {
  const preset = process.env.VK_ICD_FILENAMES;
  process.env.VK_ICD_FILENAMES ??= SWIFTSHADER_ICD;
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = mkdtempSync(join(tmpdir(), 'glow-xdg-'));
    chmodSync(dir, 0o700);
    process.env.XDG_RUNTIME_DIR = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return preset;
}

export const WEBGPU_INSTALL_HELP = 'install the software Vulkan driver and loader with `apt-get install chromium libvulkan1` '
  + `(Debian's chromium ships ${SWIFTSHADER_ICD})`;

/** Why WebGPU cannot get a Vulkan driver here (with the command that installs one), or
 * undefined. `preset` is what useSoftwareWebGpu returned. */
export function webGpuDriverProblem(preset: string | undefined): string | undefined {
  const files = (process.env.VK_ICD_FILENAMES ?? '').split(':').filter(Boolean);
  const missing = files.filter((f) => !existsSync(f));
  if (!existsSync(SWIFTSHADER_ICD) && (preset === undefined || missing.length > 0)) {
    return `the WebGPU tests need a Vulkan driver: ${SWIFTSHADER_ICD} is missing; ${WEBGPU_INSTALL_HELP}`;
  }
  if (missing.length > 0) return `VK_ICD_FILENAMES names missing file(s) ${missing.join(', ')}; ${WEBGPU_INSTALL_HELP}`;
  return undefined;
}
