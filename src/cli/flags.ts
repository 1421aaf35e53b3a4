// The flags that describe a Glow config, shared by the commands that make a model from a config
// (init, train): --config FILE, then one flag per field.

import { DEFAULT_CONFIG, GlowConfig, validateConfig } from '../glow/config.js';
import { bool, Options, readJson, UsageError, Values } from './args.js';

export const CONFIG_FLAGS: Options = {
  'image-shape': { type: 'string' }, K: { type: 'string' }, L: { type: 'string' }, hidden: { type: 'string' },
  coupling: { type: 'string' }, permutation: { type: 'string' }, lu: { type: 'string' }, 'learn-top': { type: 'string' },
  classes: { type: 'string' }, 'n-bits': { type: 'string' }, 'actnorm-scale': { type: 'string' },
  'scale-floor': { type: 'string' }, 'scale-bound': { type: 'string' }, lipschitz: { type: 'string' },
  'constant-split-scale': { type: 'string' },
};

/** Defaults, then --config FILE, then individual flags; validated as a whole. */
export function configFromFlags(values: Values): GlowConfig {
  const merged: Record<string, unknown> = { ...DEFAULT_CONFIG, ...(values.config ? (readJson(values.config as string) as object) : {}) };
  return validateConfig({ ...merged, ...configFlagValues(values) });
}

/** The config fields the individual flags give, unvalidated; fields without a flag are absent. */
export function configFlagValues(values: Values): Partial<Record<keyof GlowConfig, unknown>> {
  const numeric = (name: string) => (values[name] === undefined ? undefined : Number(values[name]));
  const flags: Partial<Record<keyof GlowConfig, unknown>> = {
    imageShape: values['image-shape'] === undefined ? undefined : String(values['image-shape']).split(',').map(Number),
    K: numeric('K'),
    L: numeric('L'),
    hiddenChannels: numeric('hidden'),
    coupling: values.coupling,
    permutation: values.permutation,
    lu: luFlag(values),
    learnTop: bool(values, 'learn-top'),
    numClasses: numeric('classes'),
    nBits: numeric('n-bits'),
    actnormScale: numeric('actnorm-scale'),
    scaleFloor: numeric('scale-floor'),
    scaleBound: numeric('scale-bound'),
    lipschitz: numeric('lipschitz'),
    constantSplitScale: bool(values, 'constant-split-scale'),
  };
  return Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined));
}

/** --lu true, false, or one per level (false,false,true: plain levels under an LU top, as
 * rosinality's --no_lu models have them). */
function luFlag(values: Values): boolean | boolean[] | undefined {
  const value = values.lu;
  if (typeof value !== 'string' || !value.includes(',')) return bool(values, 'lu');
  const parts = value.split(',');
  if (!parts.every((p) => p === 'true' || p === 'false')) throw new UsageError(`--lu must be true, false or one of them per level (false,false,true), got ${value}`);
  return parts.map((p) => p === 'true');
}
