// rosinality/glow-pytorch (model.py at its last commit) onto the native layers. Its layers are
// the same functions as y0ast's up to what is folded here, in float64, once:
// - ActNorm scale * (x + loc) with a signed scale: logs = log|scale|, and the sign moves into
//   the columns of the 1x1 convolution that follows it in every Flow;
// - the coupling network's convs carry biases and no ActNorm: each bias becomes an ActNorm
//   bias with logs 0;
// - coupling and prior convs split their outputs in halves (log_s, t and mean, log_sd) where
//   the native layers take even and odd channels: their output channels are reordered;
// - the last Block's prior is its ZeroConv2d applied to zeros: learn_top on a zero prior_h
//   (its conv's input channels padded with zero weights to prior_h's 2C);
// - a model with both plain and LU 1x1 convolutions (its Glow never passes conv_lu to the last
//   Block) gets plain W = P L U everywhere.
// What no weight change expresses, ZeroConv2d's padding with ones, is the config's
// zerosPadValue 1.

import { GlowConfig, validateConfig } from '../config.js';
import { foldLU } from '../layers/invconv.js';
import { splitPrefix, stepPrefix } from '../names.js';
import { HostTensor, HostTensor64 } from '../tensor.js';
import { CheckpointError } from './errors.js';

/** Buffers that model.py derives from the shapes (masks, identity) or uses only to run its
 * data-dependent init once (initialized): nothing to import. */
const DERIVED_BUFFERS = /\.(actnorm\.initialized|invconv\.(u_mask|l_mask|l_eye))$/;

export function isRosinalityName(name: string): boolean {
  return /^blocks\.\d+\.(flows\.\d+|prior)\./.test(name);
}

export function isRosinalityBuffer(name: string): boolean {
  return DERIVED_BUFFERS.test(name);
}

/** What rosinality checkpoints do not store. */
export interface RosinalityOverrides {
  nBits?: number;
  imageShape?: [number, number, number];
}

/** Its train.py's default --n_bits. */
const DEFAULT_N_BITS = 5;

export function importRosinality(
  tensors: ReadonlyMap<string, HostTensor>, overrides: RosinalityOverrides,
): { config: GlowConfig; params: Map<string, HostTensor>; notes: string[] } {
  const notes: string[] = [];
  const get = (name: string): HostTensor64 => {
    const t = tensors.get(name);
    if (!t) throw new CheckpointError(`cannot read the rosinality model: ${name} is missing`);
    return { shape: t.shape, data: Float64Array.from(t.data) };
  };
  const indices = (pattern: RegExp) => [...new Set([...tensors.keys()].map((n) => pattern.exec(n)).filter((m) => m).map((m) => Number(m![1])))].sort((a, b) => a - b);
  const blocks = indices(/^blocks\.(\d+)\./);
  const L = blocks.length;
  if (blocks.some((b, i) => b !== i)) throw new CheckpointError(`blocks are numbered ${blocks.join(', ')}, not 0..${L - 1}`);
  const flowCounts = blocks.map((b) => indices(new RegExp(`^blocks\\.${b}\\.flows\\.(\\d+)\\.`)).length);
  const K = flowCounts[0];
  if (!K || flowCounts.some((k) => k !== K)) throw new CheckpointError(`blocks have different numbers of flows (${flowCounts.join(', ')})`);

  const C1 = get('blocks.0.flows.0.actnorm.loc').shape[1];
  const hiddenChannels = get('blocks.0.flows.0.coupling.net.0.weight').shape[0];
  const coupling = get('blocks.0.flows.0.coupling.net.4.conv.weight').shape[0] === C1 ? 'affine' : 'additive';
  const isLU = (b: number, f: number) => tensors.has(`blocks.${b}.flows.${f}.invconv.w_l`);
  const allLU = blocks.every((b) => Array.from({ length: K }, (_, f) => isLU(b, f)).every(Boolean));
  if (!allLU && blocks.some((b) => isLU(b, 0))) {
    notes.push('the model mixes LU and plain 1x1 convolutions (--no_lu leaves the last block LU): its LU weights are imported as plain W = P L U');
  }
  const imageShape = overrides.imageShape;
  if (!imageShape) {
    throw new CheckpointError(`rosinality checkpoints do not store the image size: pass --image-shape ${C1 / 4},H,W (its train.py default is 64x64, --img_size)`);
  }
  if (imageShape[0] !== C1 / 4) throw new CheckpointError(`--image-shape says ${imageShape[0]} channels, but the first block squeezes ${C1 / 4} channels into ${C1}`);
  const nBits = overrides.nBits ?? DEFAULT_N_BITS;
  if (overrides.nBits === undefined) notes.push(`n_bits is not stored in rosinality checkpoints: assuming ${DEFAULT_N_BITS}, its train.py default (pass --n-bits to change)`);
  const config = validateConfig({
    imageShape, K, L, hiddenChannels, coupling, permutation: 'invconv', lu: allLU, learnTop: true, numClasses: 0, nBits, actnormScale: 1,
    zerosPadValue: 1,
  });

  const params = new Map<string, HostTensor>();
  const set = (name: string, shape: number[], data: Float64Array) => params.set(name, { shape, data });
  for (let b = 0; b < L; b++) {
    for (let f = 0; f < K; f++) {
      const src = `blocks.${b}.flows.${f}`;
      const dst = stepPrefix(config, b, f);
      const scale = get(`${src}.actnorm.scale`);
      const C = scale.shape[1];
      const zero = scale.data.findIndex((v) => v === 0 || !Number.isFinite(v));
      if (zero >= 0) throw new CheckpointError(`${src}.actnorm.scale[${zero}] is ${scale.data[zero]}: the flow is not invertible`);
      const sign = scale.data.map(Math.sign);
      set(`${dst}.actnorm.bias`, [1, C, 1, 1], Float64Array.from(get(`${src}.actnorm.loc`).data));
      set(`${dst}.actnorm.logs`, [1, C, 1, 1], scale.data.map((v) => Math.log(Math.abs(v))));
      importInvConv(src, dst, C, sign, allLU, tensors.has(`${src}.invconv.w_l`), get, set);
      for (const [layer, kernel] of [[0, 3], [2, 1]] as const) {
        const w = get(`${src}.coupling.net.${layer}.weight`);
        set(`${dst}.block.${layer}.conv.weight`, w.shape, Float64Array.from(w.data));
        set(`${dst}.block.${layer}.actnorm.bias`, [1, w.shape[0], 1, 1], Float64Array.from(get(`${src}.coupling.net.${layer}.bias`).data));
        set(`${dst}.block.${layer}.actnorm.logs`, [1, w.shape[0], 1, 1], new Float64Array(w.shape[0]));
        if (w.shape[2] !== kernel) throw new CheckpointError(`${src}.coupling.net.${layer}.weight is ${w.shape[2]}x${w.shape[3]}, not ${kernel}x${kernel}`);
      }
      // log_s, t = chunk(2): the native affine coupling reads shift (t) from the even channels.
      const out = get(`${src}.coupling.net.4.conv.weight`).shape[0];
      const order = coupling === 'affine' ? interleaveHalves(out, 'second') : Array.from({ length: out }, (_, i) => i);
      importZeroConv(`${src}.coupling.net.4`, `${dst}.block.4.conv`, `${dst}.block.4.logs`, order, get, set);
    }
    if (b < L - 1) {
      // mean, log_sd = chunk(2): the native split prior reads the mean from the even channels.
      const out = get(`blocks.${b}.prior.conv.weight`).shape[0];
      const dst = splitPrefix(config, b);
      importZeroConv(`blocks.${b}.prior`, `${dst}.conv.conv`, `${dst}.conv.logs`, interleaveHalves(out, 'first'), get, set);
    }
  }
  const top = `blocks.${L - 1}.prior`;
  const w = get(`${top}.conv.weight`);
  const [M, Ct] = w.shape;
  importZeroConv(top, 'learn_top_fn.conv', 'learn_top_fn.logs', Array.from({ length: M }, (_, i) => i), get, set);
  // prior_h has the prior's 2C output channels; the conv reads C of them, all zero anyway.
  const widened = new Float64Array(M * M * 9);
  for (let m = 0; m < M; m++) widened.set(w.data.subarray(m * Ct * 9, (m + 1) * Ct * 9), m * M * 9);
  set('learn_top_fn.conv.weight', [M, M, 3, 3], widened);
  const [, H, W] = imageShape;
  set('prior_h', [1, M, H >> L, W >> L], new Float64Array(M * (H >> L) * (W >> L)));
  return { config, params, notes };
}

/** The n channels of two halves interleaved, the `even` half's on even channels: the source
 * channel of each output channel. */
function interleaveHalves(n: number, even: 'first' | 'second'): number[] {
  const half = n / 2;
  return Array.from({ length: n }, (_, i) => ((i % 2 === 0) === (even === 'first') ? 0 : half) + Math.floor(i / 2));
}

type Get = (name: string) => HostTensor64;
type Put = (name: string, shape: number[], data: Float64Array) => void;

/** ZeroConv2d: conv.weight, conv.bias, scale [1, out, 1, 1] -> weight, bias, logs [out, 1, 1],
 * output channel i of the result being channel order[i] of the file's. */
function importZeroConv(src: string, conv: string, logs: string, order: number[], get: Get, set: Put): void {
  const w = get(`${src}.conv.weight`);
  const bias = get(`${src}.conv.bias`).data;
  const scale = get(`${src}.scale`).data;
  const per = w.data.length / w.shape[0];
  if (order.length !== w.shape[0]) throw new CheckpointError(`${src}.conv.weight has ${w.shape[0]} output channels, expected ${order.length}`);
  const weight = new Float64Array(w.data.length);
  order.forEach((from, to) => weight.set(w.data.subarray(from * per, (from + 1) * per), to * per));
  set(`${conv}.weight`, w.shape, weight);
  set(`${conv}.bias`, [order.length], Float64Array.from(order, (from) => bias[from]));
  set(logs, [order.length, 1, 1], Float64Array.from(order, (from) => scale[from]));
}

/** The 1x1 convolution with the preceding ActNorm's signs folded into its columns. */
function importInvConv(src: string, dst: string, C: number, sign: Float64Array, allLU: boolean, isLU: boolean, get: Get, set: Put): void {
  const lu = (name: string) => get(`${src}.invconv.${name}`).data;
  let weight: Float64Array;
  if (isLU) {
    const upper = lu('w_u').map((v, k) => v * sign[k % C]);
    const signS = lu('s_sign').map((v, j) => v * sign[j]);
    if (allLU) {
      set(`${dst}.invconv.lower`, [C, C], Float64Array.from(lu('w_l')));
      set(`${dst}.invconv.log_s`, [C], Float64Array.from(lu('w_s')));
      set(`${dst}.invconv.upper`, [C, C], upper);
      set(`${dst}.invconv.p`, [C, C], Float64Array.from(lu('w_p')));
      set(`${dst}.invconv.sign_s`, [C], signS);
      return;
    }
    weight = foldLU(lu('w_p'), lu('w_l'), upper, lu('w_s'), signS).weight.data;
  } else {
    const w = get(`${src}.invconv.weight`);
    if (w.data.length !== C * C) throw new CheckpointError(`${src}.invconv.weight has shape [${w.shape.join(', ')}], not [${C}, ${C}, 1, 1]`);
    weight = w.data.map((v, k) => v * sign[k % C]);
  }
  set(`${dst}.invconv.weight`, [C, C], weight);
}
