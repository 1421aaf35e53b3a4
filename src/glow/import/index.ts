// One entry for every weights file a user may hand us: the native checkpoint (safetensors with
// our config in its metadata), an ONNX Runtime training checkpoint (ODTC) that `artifacts
// --format ort-training` wrote, a y0ast, chaiyujin or rosinality PyTorch checkpoint (torch.save,
// either format), or a safetensors file of such a state_dict.

import { checkShuffles, checkWeights, parseCheckpoint } from '../params.js';
import { GlowWeights } from '../model.js';
import { readSafetensorsMetadata } from '../../io/safetensors.js';
import { HostTensor } from '../../math/tensor.js';
import { isOdtc } from '../../io/odtc.js';
import { weightsFromOdtc } from '../odtc-weights.js';
import { CheckpointError } from '../../io/checkpoint-error.js';
import { ConfigOverrides, detectPort, inferConfig, Port, toNativeNames } from './ports.js';
import { importRosinality, isRosinalityBuffer } from './rosinality.js';
import { readWeightsFile } from '../../io/torch.js';
import { META_CONFIG } from '../metadata.js';

export { CheckpointError };

export interface ImportOptions extends ConfigOverrides {
  /** Shuffle permutations by step prefix ('flow.layers.N'), which the ports do not store. */
  shuffles?: Map<string, number[]>;
}

export interface Imported {
  weights: GlowWeights;
  /** Where the weights came from: 'native' or the PyTorch port. */
  origin: 'native' | 'ort-training' | Port;
  notes: string[];
}

function isNativeCheckpoint(bytes: Uint8Array): boolean {
  try {
    return META_CONFIG in readSafetensorsMetadata(bytes);
  } catch {
    return false;
  }
}

export function importWeights(bytes: Uint8Array, source: string, options: ImportOptions = {}): Imported {
  if (isNativeCheckpoint(bytes)) return { weights: parseCheckpoint(bytes, source), origin: 'native', notes: [] };
  if (isOdtc(bytes)) return { weights: weightsFromOdtc(bytes, source), origin: 'ort-training', notes: [] };
  const file = unwrapDataParallel(readWeightsFile(bytes, source));
  const port = withSource(source, () => detectPort([...file.keys()]));
  const tensors = new Map<string, HostTensor>();
  for (const [name, t] of file) {
    if (port === 'rosinality' && isRosinalityBuffer(name)) continue;
    if (!['float32', 'float64', 'float16', 'bfloat16'].includes(t.dtype)) {
      throw new CheckpointError(`${source}: ${name} is ${t.dtype}; Glow weights are floating point`);
    }
    tensors.set(name, { shape: t.shape, data: t.data });
  }
  if (port === 'rosinality') {
    const { config, params, notes } = withSource(source, () => importRosinality(tensors, options));
    checkWeights(config, params, source);
    return { weights: { config, params }, origin: port, notes };
  }
  const native = toNativeNames(port, tensors);
  const { config, notes } = withSource(source, () => inferConfig(native, options));
  if (config.permutation === 'shuffle' && !options.shuffles) {
    throw new CheckpointError(`${source}: shuffle permutations are not stored in ${port} checkpoints: pass them with --shuffles FILE (JSON {"flow.layers.N": [indices]})`);
  }
  const weights: GlowWeights = { config, params: native, shuffles: config.permutation === 'shuffle' ? options.shuffles : undefined };
  checkWeights(config, native, source);
  if (weights.shuffles) checkShuffles(config, weights.shuffles, source);
  return { weights, origin: port, notes };
}

/** nn.DataParallel's state_dict names every tensor module.<name> (rosinality's train.py saves
 * that way). */
function unwrapDataParallel<T>(file: Map<string, T>): Map<string, T> {
  const names = [...file.keys()];
  if (!names.length || !names.every((n) => n.startsWith('module.'))) return file;
  return new Map([...file].map(([name, t]) => [name.slice('module.'.length), t]));
}

function withSource<T>(source: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof CheckpointError && !e.message.startsWith(source)) throw new CheckpointError(`${source}: ${e.message}`);
    throw e;
  }
}
