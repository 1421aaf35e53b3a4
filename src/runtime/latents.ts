// Latents on disk: a safetensors file with eps_1..eps_L ([N, ...] float32) and the model config
// in its metadata, so that a decode can refuse latents of another model.

import { GlowConfig, latentShape } from '../glow/config.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { InputError } from './core.js';
import { Latents } from './generate.js';
import { META_CONFIG } from '../glow/metadata.js';

export function latentsBytes(config: GlowConfig, latents: Latents, n: number, metadata: Record<string, string> = {}): Uint8Array {
  return writeSafetensors(
    latents.map((e, l) => [`eps_${l + 1}`, { dtype: 'F32' as const, shape: [n, ...latentShape(config, l + 1)], data: e }]),
    { ...metadata, [META_CONFIG]: JSON.stringify(config) },
  );
}

export function parseLatents(bytes: Uint8Array, source: string, config: GlowConfig): { latents: Latents; n: number; metadata: Record<string, string> } {
  const file = readSafetensors(bytes, source);
  const stored = file.metadata[META_CONFIG];
  if (stored && stored !== JSON.stringify(config)) throw new InputError(`${source} holds latents of another model (config ${stored})`);
  let n = -1;
  const latents = Array.from({ length: config.L }, (_, l) => {
    const name = `eps_${l + 1}`;
    const t = file.tensors.get(name);
    const expected = latentShape(config, l + 1);
    if (!t) throw new InputError(`${source} has no ${name}`);
    if (t.shape.length !== 4 || t.shape.slice(1).join() !== expected.join()) {
      throw new InputError(`${source}: ${name} is [${t.shape}], the model needs [N, ${expected}]`);
    }
    if (n >= 0 && t.shape[0] !== n) throw new InputError(`${source}: ${name} holds ${t.shape[0]} examples, eps_1 holds ${n}`);
    n = t.shape[0];
    return Float32Array.from(t.data);
  });
  return { latents, n, metadata: file.metadata };
}
