// The flags that describe a Glow config, shared by the commands that make a model from a config
// (init, train): --config FILE, then one flag per field.

import { DEFAULT_CONFIG, GlowConfig, validateConfig } from '../glow/config.js';
import { bool, Options, readJson, Values } from './args.js';

export const CONFIG_FLAGS: Options = {
  'image-shape': { type: 'string' }, K: { type: 'string' }, L: { type: 'string' }, hidden: { type: 'string' },
  coupling: { type: 'string' }, permutation: { type: 'string' }, lu: { type: 'string' }, 'learn-top': { type: 'string' },
  classes: { type: 'string' }, 'n-bits': { type: 'string' }, 'actnorm-scale': { type: 'string' },
  'scale-floor': { type: 'string' },
};

/** Defaults, then --config FILE, then individual flags; validated as a whole. */
export function configFromFlags(values: Values): GlowConfig {
  const merged: Record<string, unknown> = { ...DEFAULT_CONFIG, ...(values.config ? (readJson(values.config as string) as object) : {}) };
  const numeric = (name: string) => (values[name] === undefined ? undefined : Number(values[name]));
  const flags: Record<string, unknown> = {
    imageShape: values['image-shape'] === undefined ? undefined : String(values['image-shape']).split(',').map(Number),
    K: numeric('K'),
    L: numeric('L'),
    hiddenChannels: numeric('hidden'),
    coupling: values.coupling,
    permutation: values.permutation,
    lu: bool(values, 'lu'),
    learnTop: bool(values, 'learn-top'),
    numClasses: numeric('classes'),
    nBits: numeric('n-bits'),
    actnormScale: numeric('actnorm-scale'),
    scaleFloor: numeric('scale-floor'),
  };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) merged[k] = v;
  return validateConfig(merged);
}
