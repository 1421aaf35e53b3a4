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
//   Block, so --no_lu leaves the top block LU) gets the config's per-level lu.
// What no weight change expresses, ZeroConv2d's padding with ones, is the config's
// zerosPadValue 1.

import { GlowConfig, levelLU, validateConfig } from '../config.js';
import { hostParam } from '../layers/common.js';
import { luDecompose, matrix } from '../../math/linalg.js';
import { GlowWeights } from '../model.js';
import { splitPrefix, stepPrefix } from '../names.js';
import { WritableDtype, WritableTensor } from '../../io/safetensors.js';
import { HostTensor, HostTensor64 } from '../../math/tensor.js';
import { CheckpointError } from '../../io/checkpoint-error.js';

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
  const lu = blocks.map((b) => isLU(b, 0));
  for (const b of blocks) {
    const mixed = Array.from({ length: K }, (_, f) => f).find((f) => isLU(b, f) !== lu[b]);
    if (mixed !== undefined) throw new CheckpointError(`block ${b} mixes LU and plain 1x1 convolutions (flow ${mixed} differs from flow 0): model.py builds each block with one kind`);
  }
  if (lu.some((v) => v !== lu[0])) {
    notes.push(`the model mixes plain and LU 1x1 convolutions (--no_lu leaves the last block LU): lu is [${lu.join(', ')}], one flag per level`);
  }
  const imageShape = overrides.imageShape;
  if (!imageShape) {
    throw new CheckpointError(`rosinality checkpoints do not store the image size: pass --image-shape ${C1 / 4},H,W (its train.py default is 64x64, --img_size)`);
  }
  if (imageShape[0] !== C1 / 4) throw new CheckpointError(`--image-shape says ${imageShape[0]} channels, but the first block squeezes ${C1 / 4} channels into ${C1}`);
  const nBits = overrides.nBits ?? DEFAULT_N_BITS;
  if (overrides.nBits === undefined) notes.push(`n_bits is not stored in rosinality checkpoints: assuming ${DEFAULT_N_BITS}, its train.py default (pass --n-bits to change)`);
  const config = validateConfig({
    imageShape, K, L, hiddenChannels, coupling, permutation: 'invconv', lu, learnTop: true, numClasses: 0, nBits, actnormScale: 1,
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
      importInvConv(src, dst, C, sign, lu[b], get, set);
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
function importInvConv(src: string, dst: string, C: number, sign: Float64Array, isLU: boolean, get: Get, set: Put): void {
  if (isLU) {
    const lu = (name: string) => get(`${src}.invconv.${name}`).data;
    // W diag(sign) = P L (U diag(sign)): the signs scale U's columns, its diagonal's signs too.
    set(`${dst}.invconv.lower`, [C, C], Float64Array.from(lu('w_l')));
    set(`${dst}.invconv.log_s`, [C], Float64Array.from(lu('w_s')));
    set(`${dst}.invconv.upper`, [C, C], lu('w_u').map((v, k) => v * sign[k % C]));
    set(`${dst}.invconv.p`, [C, C], Float64Array.from(lu('w_p')));
    set(`${dst}.invconv.sign_s`, [C], lu('s_sign').map((v, j) => v * sign[j]));
    return;
  }
  const w = get(`${src}.invconv.weight`);
  if (w.data.length !== C * C) throw new CheckpointError(`${src}.invconv.weight has shape [${w.shape.join(', ')}], not [${C}, ${C}, 1, 1]`);
  set(`${dst}.invconv.weight`, [C, C], w.data.map((v, k) => v * sign[k % C]));
}

// ---------------------------------------------------------------------------------------------
// Back to rosinality's names (glow-onnx import --to rosinality): the folds above undone, for
// the models its layers can express.

/** Its Glow(in_channel, n_flow, n_block, affine, conv_lu) state_dict, in its order, with the
 * arguments that rebuild the model. */
export function toRosinality(w: GlowWeights): { tensors: [string, WritableTensor][]; args: Record<string, number | boolean> } {
  const { config } = w;
  const refuse = (why: string): never => {
    throw new CheckpointError(`cannot write a rosinality state_dict: ${why}`);
  };
  if ((config.zerosPadValue ?? 0) !== 1) refuse('its ZeroConv2d pads with ones, and this model\'s Conv2dZeros pad with zeros');
  if (config.permutation !== 'invconv') refuse(`it has no ${config.permutation} permutation, only 1x1 convolutions`);
  if (config.numClasses > 0) refuse('it has no class conditioning');
  if (!config.learnTop) refuse('its top prior is always learned (learnTop)');
  if (config.scaleFloor) refuse('its affine coupling has no scale floor (scaleFloor)');
  const p = (name: string) => hostParam(w.params, name);
  if (p('prior_h').data.some((v) => v !== 0)) refuse('its top prior is its conv applied to zeros, and prior_h is not zero');
  const out: [string, WritableTensor][] = [];
  const put = (name: string, shape: number[], data: ArrayLike<number>, dtype: WritableDtype = 'F32') => out.push([name, { dtype, shape, data }]);
  const { K, L } = config;
  // Its conv_lu is one flag for every block but the last, which is always LU.
  const convLU = levelLU(config, 0);
  for (let b = 1; b < L - 1; b++) {
    if (levelLU(config, b) !== convLU) refuse(`its conv_lu is one flag for blocks 0..${L - 2}, and lu is ${JSON.stringify(config.lu)}`);
  }
  for (let b = 0; b < L; b++) {
    for (let f = 0; f < K; f++) {
      const src = stepPrefix(config, b, f);
      const dst = `blocks.${b}.flows.${f}`;
      const C = p(`${src}.actnorm.bias`).shape[1];
      put(`${dst}.actnorm.loc`, [1, C, 1, 1], p(`${src}.actnorm.bias`).data);
      put(`${dst}.actnorm.scale`, [1, C, 1, 1], p(`${src}.actnorm.logs`).data.map(Math.exp));
      put(`${dst}.actnorm.initialized`, [], [1], 'U8');
      // Glow never passes conv_lu to its last block: there it is LU whatever the model.
      if (levelLU(config, b) || b === L - 1) {
        const lu = levelLU(config, b)
          ? { lower: p(`${src}.invconv.lower`).data, upper: p(`${src}.invconv.upper`).data, logS: p(`${src}.invconv.log_s`).data, signS: p(`${src}.invconv.sign_s`).data, perm: p(`${src}.invconv.p`).data }
          : luParams(p(`${src}.invconv.weight`).data, C);
        const upperMask = Float64Array.from({ length: C * C }, (_, k) => Number(k % C > Math.floor(k / C)));
        put(`${dst}.invconv.w_l`, [C, C], lu.lower);
        put(`${dst}.invconv.w_s`, [C], lu.logS);
        put(`${dst}.invconv.w_u`, [C, C], lu.upper);
        put(`${dst}.invconv.w_p`, [C, C], lu.perm);
        put(`${dst}.invconv.u_mask`, [C, C], upperMask);
        put(`${dst}.invconv.l_mask`, [C, C], Float64Array.from({ length: C * C }, (_, k) => upperMask[(k % C) * C + Math.floor(k / C)]));
        put(`${dst}.invconv.s_sign`, [C], lu.signS);
        put(`${dst}.invconv.l_eye`, [C, C], Float64Array.from({ length: C * C }, (_, k) => Number(k % C === Math.floor(k / C))));
      } else {
        put(`${dst}.invconv.weight`, [C, C, 1, 1], p(`${src}.invconv.weight`).data);
      }
      for (const layer of [0, 2]) {
        // (conv(x) + b)·exp(logs) = conv(x; W·exp(logs)) + b·exp(logs)
        const wt = p(`${src}.block.${layer}.conv.weight`);
        const s = p(`${src}.block.${layer}.actnorm.logs`).data.map(Math.exp);
        const per = wt.data.length / s.length;
        put(`${dst}.coupling.net.${layer}.weight`, wt.shape, wt.data.map((v, k) => v * s[Math.floor(k / per)]));
        put(`${dst}.coupling.net.${layer}.bias`, [s.length], p(`${src}.block.${layer}.actnorm.bias`).data.map((v, o) => v * s[o]));
      }
      const n = p(`${src}.block.4.conv.bias`).shape[0];
      const order = config.coupling === 'affine' ? interleaveHalves(n, 'second') : Array.from({ length: n }, (_, i) => i);
      exportZeroConv(`${src}.block.4.conv`, `${src}.block.4.logs`, `${dst}.coupling.net.4`, order, p, put);
    }
    if (b < L - 1) {
      const src = splitPrefix(config, b);
      exportZeroConv(`${src}.conv.conv`, `${src}.conv.logs`, `blocks.${b}.prior`, interleaveHalves(p(`${src}.conv.conv.bias`).shape[0], 'first'), p, put);
    }
  }
  const top = p('learn_top_fn.conv.weight');
  const M = top.shape[0];
  const Ct = M / 2;
  // Its prior conv reads the C channels of the top latent; prior_h has 2C.
  for (let m = 0; m < M; m++) {
    if (top.data.subarray((m * M + Ct) * 9, (m + 1) * M * 9).some((v) => v !== 0)) refuse('learn_top reads more channels than its top prior conv has');
  }
  const narrow = new Float64Array(M * Ct * 9);
  for (let m = 0; m < M; m++) narrow.set(top.data.subarray(m * M * 9, (m * M + Ct) * 9), m * Ct * 9);
  const topOrder = Array.from({ length: M }, (_, i) => i);
  exportZeroConv('learn_top_fn.conv', 'learn_top_fn.logs', `blocks.${L - 1}.prior`, topOrder, (name) => (name === 'learn_top_fn.conv.weight' ? { shape: [M, Ct, 3, 3], data: narrow } : p(name)), put);
  return {
    tensors: out,
    args: { in_channel: config.imageShape[0], n_flow: K, n_block: L, affine: config.coupling === 'affine', conv_lu: convLU, filter_size: config.hiddenChannels },
  };
}

/** The inverse of importZeroConv: output channel order[i] of the file is channel i here. */
function exportZeroConv(conv: string, logs: string, dst: string, order: number[], p: Get, put: (name: string, shape: number[], data: ArrayLike<number>) => void): void {
  const w = p(`${conv}.weight`);
  const bias = p(`${conv}.bias`).data;
  const scale = p(logs).data;
  const n = order.length;
  const per = w.data.length / n;
  const weight = new Float64Array(w.data.length);
  const b = new Float64Array(n);
  const s = new Float64Array(n);
  order.forEach((to, from) => {
    weight.set(w.data.subarray(from * per, (from + 1) * per), to * per);
    b[to] = bias[from];
    s[to] = scale[from];
  });
  put(`${dst}.scale`, [1, n, 1, 1], s);
  put(`${dst}.conv.weight`, w.shape, weight);
  put(`${dst}.conv.bias`, [n], b);
}

/** A plain W as InvConv2dLU's factors: W = P L (U + diag(sign·exp(log_s))). */
function luParams(weight: Float64Array, C: number) {
  const { p, l, u } = luDecompose(matrix(C, C, weight));
  const diag = Float64Array.from({ length: C }, (_, i) => u.data[i * C + i]);
  return {
    perm: p.data,
    lower: l.data.map((v, k) => (k % C < Math.floor(k / C) ? v : 0)),
    upper: u.data.map((v, k) => (k % C > Math.floor(k / C) ? v : 0)),
    logS: diag.map((v) => Math.log(Math.abs(v))),
    signS: diag.map(Math.sign),
  };
}
