// Runs ONNX graphs in onnxruntime-web inside headless Chromium, as a web page of a user would:
// the graphs and their inputs are served from a temporary folder on loopback next to one of
// onnxruntime-web's builds, the page imports that build and runs each graph in a session of the
// asked execution provider, and the outputs come back to Node.
//
// Builds: 'jsep' is the plain `onnxruntime-web` import (what web/ bundles: JavaScript WebGPU
// kernels and wasm); 'webgpu' is `onnxruntime-web/webgpu`, the native WebGPU EP (the C++ kernels
// onnxruntime-node runs, compiled to wasm). WebGPU runs on the CPU here through Chromium's
// SwiftShader adapter.

import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Browser } from 'playwright-core';
import { Graph } from '../src/builder/graph.js';
import { serializeModel } from '../src/builder/serialize.js';
import { Float32Feeds, Outputs } from '../support/feeds.js';
import { launchChromium } from './chromium.js';
import { ORT_FILES, repoRoot } from './web-build.js';
import { serveStatic, StaticServer } from './web-serve.js';

export type WebBuild = 'jsep' | 'webgpu';

/** The module each build's page imports, and the wasm runtime files it loads. */
const BUILD_FILES: Record<WebBuild, { module: string; runtime: string[] }> = {
  jsep: { module: 'ort.min.mjs', runtime: ['ort-wasm-simd-threaded.jsep.mjs', 'ort-wasm-simd-threaded.jsep.wasm'] },
  webgpu: { module: 'ort.webgpu.min.mjs', runtime: ['ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm'] },
};

interface PageJob {
  model: string;
  inputs: { name: string; file: string; shape: number[] }[];
}

/** Each graph's outputs, or the error onnxruntime-web gave for it. Throws when the browser or the
 * page cannot be started at all. */
export async function runInChromium(jobs: readonly { graph: Graph; feeds: Float32Feeds }[], build: WebBuild, executionProvider: 'wasm' | 'webgpu'): Promise<(Outputs | Error)[]> {
  const dir = mkdtempSync(join(tmpdir(), 'glow-browser-ort-'));
  let served: StaticServer | undefined;
  let browser: Browser | undefined;
  try {
    // The package exports its wasm files by name: their folder holds every build.
    const dist = dirname(createRequire(import.meta.url).resolve(`onnxruntime-web/${ORT_FILES[1]}`, { paths: [repoRoot()] }));
    const files = BUILD_FILES[build];
    for (const file of [files.module, ...files.runtime]) copyFileSync(join(dist, file), join(dir, file));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>onnxruntime-web</title>\n');
    const pageJobs: PageJob[] = jobs.map(({ graph, feeds }, i) => {
      writeFileSync(join(dir, `${i}.onnx`), serializeModel(graph));
      return {
        model: `${i}.onnx`,
        inputs: Object.entries(feeds).map(([name, t]) => {
          const file = `${i}-${name}.bin`;
          writeFileSync(join(dir, file), Float32Array.from(t.data));
          return { name, file, shape: [...t.shape] };
        }),
      };
    });
    served = await serveStatic({ root: dir });
    browser = await launchChromium();
    const page = await browser.newPage();
    await page.goto(served.url);
    const results = await page.evaluate(async ({ module, pageJobs, executionProvider }) => {
      const ort = await import(`./${module}`);
      ort.env.wasm.wasmPaths = new URL('./', location.href).href;
      ort.env.wasm.numThreads = 1;
      ort.env.logLevel = 'error';
      const bytes = async (file: string) => new Uint8Array(await (await fetch(file)).arrayBuffer());
      const out: ({ outputs: Record<string, number[]> } | { error: string })[] = [];
      for (const job of pageJobs) {
        try {
          const session = await ort.InferenceSession.create(await bytes(job.model), { executionProviders: [executionProvider] });
          try {
            const feeds: Record<string, unknown> = {};
            for (const input of job.inputs) feeds[input.name] = new ort.Tensor('float32', new Float32Array((await bytes(input.file)).buffer), input.shape);
            const result = await session.run(feeds);
            out.push({ outputs: Object.fromEntries(Object.entries(result).map(([k, t]) => [k, Array.from((t as { data: Float32Array }).data)])) });
          } finally {
            await session.release();
          }
        } catch (e) {
          out.push({ error: String((e as Error).message ?? e) });
        }
      }
      return out;
    }, { module: files.module, pageJobs, executionProvider });
    return results.map((r) => ('error' in r ? new Error(r.error) : r.outputs));
  } finally {
    await browser?.close();
    await served?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
