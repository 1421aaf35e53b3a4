// The PyTorch ports of Glow whose checkpoints we import: y0ast's and chaiyujin's tensor names,
// mapped onto the native (y0ast/Glow-PyTorch) names, and the config inferred from the tensors
// alone; rosinality's, whose layers need more than renaming, are told apart here and imported by
// rosinality.ts.

import { Coupling, GlowConfig, Permutation, validateConfig } from '../config.js';
import { HostTensor } from '../../math/tensor.js';
import { CheckpointError } from '../../io/checkpoint-error.js';
import { isRosinalityName } from './rosinality.js';

export type Port = 'y0ast' | 'chaiyujin' | 'rosinality';

/** chaiyujin/glow-pytorch name -> y0ast name, by suffix pattern. */
const CHAIYUJIN_TO_Y0AST: [RegExp, string][] = [
  [/^(flow\.layers\.\d+)\.f\.([02])\.weight$/, '$1.block.$2.conv.weight'],
  [/^(flow\.layers\.\d+)\.f\.([02])\.actnorm\.(bias|logs)$/, '$1.block.$2.actnorm.$3'],
  [/^(flow\.layers\.\d+)\.f\.4\.(weight|bias)$/, '$1.block.4.conv.$2'],
  [/^(flow\.layers\.\d+)\.f\.4\.logs$/, '$1.block.4.logs'],
  [/^(flow\.layers\.\d+)\.invconv\.l$/, '$1.invconv.lower'],
  [/^(flow\.layers\.\d+)\.invconv\.u$/, '$1.invconv.upper'],
  [/^(flow\.layers\.\d+)\.conv\.(weight|bias)$/, '$1.conv.conv.$2'],
  [/^learn_top\.(weight|bias)$/, 'learn_top_fn.conv.$1'],
  [/^learn_top\.logs$/, 'learn_top_fn.logs'],
  [/^(project_ycond|project_class)\.(weight|bias)$/, '$1.linear.$2'],
];

export function detectPort(names: readonly string[]): Port {
  const chaiyujin = names.some((n) => /\.f\.[024]\./.test(n) || /^learn_top\./.test(n) || /\.invconv\.[lu]$/.test(n));
  const y0ast = names.some((n) => /\.block\.[024]\./.test(n) || /^learn_top_fn\./.test(n) || /\.invconv\.(lower|upper)$/.test(n));
  const rosinality = names.some(isRosinalityName);
  if ([chaiyujin, y0ast, rosinality].filter(Boolean).length > 1) throw new CheckpointError('the tensor names mix the y0ast, chaiyujin and rosinality Glow ports');
  if (chaiyujin) return 'chaiyujin';
  if (y0ast) return 'y0ast';
  if (rosinality) return 'rosinality';
  const sample = names.slice(0, 3).join(', ');
  throw new CheckpointError(`the tensor names (${sample}${names.length > 3 ? ', ...' : ''}) are not those of a y0ast, chaiyujin or rosinality Glow state_dict`);
}

/** Renames a checkpoint's tensors to the native names; chaiyujin's batch-sized prior_h keeps
 * its first row (it is never trained there, so every row is the same). */
export function toNativeNames(port: Exclude<Port, 'rosinality'>, tensors: ReadonlyMap<string, HostTensor>): Map<string, HostTensor> {
  if (port === 'y0ast') return new Map(tensors);
  const out = new Map<string, HostTensor>();
  for (const [name, t] of tensors) {
    const rule = CHAIYUJIN_TO_Y0AST.find(([pattern]) => pattern.test(name));
    const native = rule ? name.replace(rule[0], rule[1]) : name;
    if (native === 'prior_h' && t.shape.length === 4 && t.shape[0] !== 1) {
      const row = t.data.length / t.shape[0];
      out.set(native, { shape: [1, ...t.shape.slice(1)], data: t.data.slice(0, row) });
    } else {
      out.set(native, t);
    }
  }
  return out;
}

/** What the tensors cannot tell. */
export interface ConfigOverrides {
  nBits?: number;
  imageShape?: [number, number, number];
  /** Needed when the model has no 1x1 convolutions: reverse and shuffle look the same on disk. */
  permutation?: Permutation;
}

/** K, L, hidden channels, coupling, LU, learn_top, classes and image shape from native-named
 * tensors. Throws CheckpointError naming what is missing. */
export function inferConfig(tensors: ReadonlyMap<string, HostTensor>, overrides: ConfigOverrides = {}): { config: GlowConfig; notes: string[] } {
  const notes: string[] = [];
  const stepIndices = [...tensors.keys()]
    .map((n) => /^flow\.layers\.(\d+)\.actnorm\.bias$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  if (!stepIndices.length) throw new CheckpointError('no flow steps found (no flow.layers.N.actnorm.bias tensors)');
  // Steps come in runs of K consecutive module indices, one run per level.
  const runs: number[][] = [];
  for (const i of stepIndices) {
    const last = runs.at(-1);
    if (last && i === last.at(-1)! + 1) last.push(i);
    else runs.push([i]);
  }
  const K = runs[0].length;
  const L = runs.length;
  if (runs.some((r) => r.length !== K)) throw new CheckpointError(`levels have different numbers of steps (${runs.map((r) => r.length).join(', ')})`);
  const get = (name: string) => {
    const t = tensors.get(name);
    if (!t) throw new CheckpointError(`cannot infer the config: ${name} is missing`);
    return t;
  };
  const first = `flow.layers.${stepIndices[0]}`;
  const C1 = get(`${first}.actnorm.bias`).shape[1];
  const hiddenChannels = get(`${first}.block.0.conv.weight`).shape[0];
  const coupling: Coupling = get(`${first}.block.4.conv.weight`).shape[0] === C1 ? 'affine' : 'additive';
  let permutation: Permutation;
  // Per level: a model may mix plain and LU levels (a native one written from an imported
  // rosinality --no_lu model); validateConfig stores a list that agrees as one flag.
  let lu: boolean[] = runs.map(() => false);
  if (tensors.has(`${first}.invconv.lower`) || tensors.has(`${first}.invconv.weight`)) {
    permutation = 'invconv';
    lu = runs.map((r) => tensors.has(`flow.layers.${r[0]}.invconv.lower`));
  } else if (overrides.permutation && overrides.permutation !== 'invconv') {
    permutation = overrides.permutation;
  } else {
    throw new CheckpointError('the model has no 1x1 convolutions, and reverse and shuffle permutations are not stored in the checkpoint: '
      + 'pass --permutation reverse, or --permutation shuffle with the channel orders (--shuffles FILE)');
  }
  let imageShape = overrides.imageShape;
  const priorH = tensors.get('prior_h');
  if (!imageShape) {
    if (!priorH) throw new CheckpointError('prior_h is missing, so the image size is unknown: pass --image-shape C,H,W');
    imageShape = [C1 / 4, priorH.shape[2] * 2 ** L, priorH.shape[3] * 2 ** L];
  }
  const nBits = overrides.nBits ?? 8;
  if (overrides.nBits === undefined) notes.push('n_bits is not stored in PyTorch checkpoints: assuming 8 (pass --n-bits to change)');
  const ycond = tensors.get('project_ycond.linear.weight');
  const config = validateConfig({
    imageShape,
    K,
    L,
    hiddenChannels,
    coupling,
    permutation,
    lu,
    learnTop: tensors.has('learn_top_fn.conv.weight'),
    numClasses: ycond ? ycond.shape[1] : 0,
    nBits,
    actnormScale: 1,
  });
  return { config, notes };
}
