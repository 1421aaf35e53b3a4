// A TypeScript consumer of the three entry points, type-checked in strict mode against the
// published declarations (test/package/tarball.test.ts). Not run: compiling it is the test.

import { GlowModel, InputError, loadGlowRuntime, ModelFileError, sampleEps, SHIPPED_MODEL, STABLE_MODEL, type GlowConfig } from 'glow-onnx';
import { GraphBuilder, ops, serializeModel, tensor } from 'glow-onnx/builder';
import { loadGlowModel, type LoadedModel, rgbaToPixels } from 'glow-onnx/web';

export async function node(): Promise<number> {
  const runtime = await loadGlowRuntime(SHIPPED_MODEL, { executionProviders: ['cuda', 'cpu'], batchSize: 16 });
  const config: GlowConfig = runtime.config;
  const model: GlowModel = runtime.model;
  const x: Float32Array = await model.decode(sampleEps(config, 2, 0), 0.7);
  // @ts-expect-error decode needs a temperature
  await model.decode(sampleEps(config, 2, 0));
  // @ts-expect-error 'rocm' is not a provider glow-onnx knows
  await loadGlowRuntime(SHIPPED_MODEL, { executionProviders: ['rocm'] });
  const encoded = await model.encode(x, [2, ...config.imageShape]);
  const stable = await loadGlowRuntime(STABLE_MODEL);
  const { roundTrip } = await stable.model.reconstruct(x, [2, ...config.imageShape]);
  const errors: (new (message: string) => Error)[] = [InputError, ModelFileError];
  return encoded.bpd[0] + errors.length + roundTrip.failing.length;
}

export async function web(files: FileList): Promise<string> {
  const loaded: LoadedModel = await loadGlowModel(files, { backend: 'wasm' });
  // @ts-expect-error backends are webgpu, wasm or auto
  await loadGlowModel(files, { backend: 'webgl' });
  const pixels: Uint8Array = rgbaToPixels({ width: 1, height: 1, data: [0, 0, 0, 255] }, 1);
  return `${loaded.backend} ${pixels.length}`;
}

export function builder(): Uint8Array {
  const g = new GraphBuilder('double');
  g.output(ops.add(g, g.input('x', 'float32', [2]), g.constant(tensor('float32', [2], [1, 1]))), 'y');
  return serializeModel(g.build());
}
