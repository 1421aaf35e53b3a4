// Glow weights in the ODTC checkpoint of ONNX Runtime's on-device training, both ways: the
// checkpoint file of the ORT-training artifacts, and the weights read back from one (glow-onnx
// import takes a trained checkpoint alone, its Glow config being a string property).

import { ODTC_VERSION, readOdtc, writeOdtc } from '../io/odtc.js';
import { HostTensor } from '../math/tensor.js';
import { GlowConfig } from './config.js';
import { GlowWeights } from './model.js';
import { paramSpecs } from './names.js';
import { META_CONFIG, META_SHUFFLES } from './metadata.js';
import { checkWeights, weightsFromMetadata } from './params.js';

/** The ODTC checkpoint of a model (no optimizer state: ORT starts from zero moments, step 0). */
export function ortTrainingCheckpoint(w: GlowWeights): Uint8Array {
  checkWeights(w.config, w.params, 'weights');
  const tensor = (name: string) => {
    const t = w.params.get(name)!;
    return { name, dims: t.shape, data: Float32Array.from(t.data) };
  };
  const specs = paramSpecs(w.config);
  const strings: Record<string, string> = { [META_CONFIG]: JSON.stringify(w.config) };
  if (w.shuffles) strings[META_SHUFFLES] = JSON.stringify(Object.fromEntries(w.shuffles));
  return writeOdtc({
    version: ODTC_VERSION,
    trainable: specs.filter((s) => s.trainable).map((s) => tensor(s.name)),
    frozen: specs.filter((s) => !s.trainable).map((s) => tensor(s.name)),
    optimizerGroups: [], ints: {}, floats: {}, strings,
  });
}

/** The Glow weights in an ODTC checkpoint that ortTrainingCheckpoint wrote (and ORT may have
 * trained and saved since: it keeps the property bag). */
export function weightsFromOdtc(bytes: Uint8Array, source: string, configOverride?: GlowConfig): GlowWeights {
  const c = readOdtc(bytes, source);
  const params = new Map<string, HostTensor>([...c.trainable, ...c.frozen].map((t) => [t.name, { shape: t.dims, data: Float64Array.from(t.data) }]));
  return weightsFromMetadata(params, c.strings, source, configOverride, 'string properties');
}
