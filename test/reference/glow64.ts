// An independent float64 reference implementation of Glow, written as plain loops over NCHW
// arrays. It is a specification in code: tests compare the ONNX graphs the project builds
// against it. It deliberately imports nothing from src/builder or src/glow/layers (the code under
// test) and has its own small linear algebra.
//
// Parameter names are those of the y0ast/Glow-PyTorch state_dict (see src/glow/names.ts).
// The encode/decode I/O contract is docs/design.md's ("The exported graphs"):
//   encode(x[, y]) -> eps_1..eps_L (level 1 = first split, finest; eps_L = top), logdet (flow
//   layers only), log_px (including -D ln 2^nBits), bpd, y_logits (class-conditional only);
//   decode(eps, T[, y]) -> x with z_l = mean_l + exp(logs_l) * T * eps_l at every level.

import { GlowConfig, dimensions, latentShape, levelChannels } from '../../src/glow/config.js';
import { paramSpecs, splitPrefix, stepPrefix } from '../../src/glow/names.js';
import { HostTensor } from '../../src/math/tensor.js';

export interface Ref64Input {
  config: GlowConfig;
  params: Map<string, HostTensor>;
  /** For permutation 'shuffle': output channel c takes input channel indices[c], per step prefix. */
  shuffles?: Map<string, number[]>;
  /** Called with each ActNorm's prefix and input, in encode order: what data-dependent
   * initialisation takes its statistics from. */
  onActNorm?: (prefix: string, input: HostTensor) => void;
}

export interface Ref64Encoded {
  /** eps_1 ... eps_L, each [N, ...latentShape(config, l)]. */
  eps: HostTensor[];
  /** [N] sum of log|det J| of the flow layers (actnorm, 1x1 conv, coupling). */
  logdet: Float64Array;
  /** [N] log-likelihood in nats of the discretised data. */
  logPx: Float64Array;
  /** [N] bits per dimension. */
  bpd: Float64Array;
  /** [N, numClasses], class-conditional models only. */
  yLogits?: HostTensor;
}

const LOG_2PI = Math.log(2 * Math.PI);

// ---------------------------------------------------------------------------------------------
// NCHW tensor helpers

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function empty(shape: number[]): HostTensor {
  return { shape: [...shape], data: new Float64Array(numel(shape)) };
}

function dims4(t: HostTensor): [number, number, number, number] {
  if (t.shape.length !== 4) throw new Error(`expected an NCHW tensor, got shape [${t.shape.join(', ')}]`);
  return [t.shape[0], t.shape[1], t.shape[2], t.shape[3]];
}

/** Channels start, start + step, ... (count of them): x[:, start::step][:, :count]. */
function pickChannels(x: HostTensor, start: number, step: number, count: number): HostTensor {
  const [N, C, H, W] = dims4(x);
  const hw = H * W;
  const out = empty([N, count, H, W]);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < count; k++) {
      const c = start + k * step;
      if (c >= C) throw new Error(`channel ${c} out of range (${C} channels)`);
      out.data.set(x.data.subarray((n * C + c) * hw, (n * C + c + 1) * hw), (n * count + k) * hw);
    }
  }
  return out;
}

function concatChannels(a: HostTensor, b: HostTensor): HostTensor {
  const [N, Ca, H, W] = dims4(a);
  const [Nb, Cb, Hb, Wb] = dims4(b);
  if (N !== Nb || H !== Hb || W !== Wb) throw new Error('concatChannels: shapes differ beyond channels');
  const hw = H * W;
  const C = Ca + Cb;
  const out = empty([N, C, H, W]);
  for (let n = 0; n < N; n++) {
    out.data.set(a.data.subarray(n * Ca * hw, (n + 1) * Ca * hw), n * C * hw);
    out.data.set(b.data.subarray(n * Cb * hw, (n + 1) * Cb * hw), (n * C + Ca) * hw);
  }
  return out;
}

/** y[:, c] = x[:, indices[c]]. */
function gatherChannels(x: HostTensor, indices: readonly number[]): HostTensor {
  const [N, C, H, W] = dims4(x);
  if (indices.length !== C) throw new Error(`permutation has ${indices.length} entries for ${C} channels`);
  const hw = H * W;
  const out = empty([N, C, H, W]);
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++) {
      const src = (n * C + indices[c]) * hw;
      out.data.set(x.data.subarray(src, src + hw), (n * C + c) * hw);
    }
  return out;
}

/** y[n, o, h, w] = sum_i M[o, i] x[n, i, h, w] (a 1x1 convolution), M row-major C x C. */
function mixChannels(x: HostTensor, M: Float64Array): HostTensor {
  const [N, C, H, W] = dims4(x);
  if (M.length !== C * C) throw new Error(`1x1 conv matrix has ${M.length} entries for ${C} channels`);
  const hw = H * W;
  const out = empty([N, C, H, W]);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < C; o++) {
      const dst = (n * C + o) * hw;
      for (let i = 0; i < C; i++) {
        const m = M[o * C + i];
        const src = (n * C + i) * hw;
        for (let p = 0; p < hw; p++) out.data[dst + p] += m * x.data[src + p];
      }
    }
  }
  return out;
}

/** Applies f(value, channel) elementwise. */
function mapPerChannel(x: HostTensor, f: (v: number, c: number) => number): HostTensor {
  const [N, C, H, W] = dims4(x);
  const hw = H * W;
  const out = empty([N, C, H, W]);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const base = (n * C + c) * hw;
      for (let p = 0; p < hw; p++) out.data[base + p] = f(x.data[base + p], c);
    }
  }
  return out;
}

function relu(x: HostTensor): HostTensor {
  return mapPerChannel(x, (v) => (v > 0 ? v : 0));
}

/** Elementwise binary op on two tensors of the same shape. */
function zip(a: HostTensor, b: HostTensor, f: (u: number, v: number) => number): HostTensor {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new Error(`shape mismatch [${a.shape.join(', ')}] vs [${b.shape.join(', ')}]`);
  }
  const out = empty(a.shape);
  for (let k = 0; k < out.data.length; k++) out.data[k] = f(a.data[k], b.data[k]);
  return out;
}

/**
 * squeeze: [N, C, H, W] -> [N, 4C, H/2, W/2]; output channel c*4 + 2*i + j holds
 * x[c, 2h + i, 2w + j].
 */
export function squeeze(x: HostTensor): HostTensor {
  const [N, C, H, W] = dims4(x);
  if (H % 2 || W % 2) throw new Error(`cannot squeeze ${H}x${W}`);
  const h2 = H / 2;
  const w2 = W / 2;
  const out = empty([N, 4 * C, h2, w2]);
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++) {
          const oc = c * 4 + 2 * (h % 2) + (w % 2);
          out.data[((n * 4 * C + oc) * h2 + (h >> 1)) * w2 + (w >> 1)] = x.data[((n * C + c) * H + h) * W + w];
        }
  return out;
}

/** The inverse of squeeze: [N, 4C, h, w] -> [N, C, 2h, 2w]. */
export function unsqueeze(x: HostTensor): HostTensor {
  const [N, C4, h2, w2] = dims4(x);
  if (C4 % 4) throw new Error(`cannot unsqueeze ${C4} channels`);
  const C = C4 / 4;
  const H = 2 * h2;
  const W = 2 * w2;
  const out = empty([N, C, H, W]);
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++) {
          const ic = c * 4 + 2 * (h % 2) + (w % 2);
          out.data[((n * C + c) * H + h) * W + w] = x.data[((n * C4 + ic) * h2 + (h >> 1)) * w2 + (w >> 1)];
        }
  return out;
}

/** 2-D convolution, stride 1, `pad` pixels of `padValue` around x, weight [O, I, k, k],
 * optional bias [O]. */
function conv2d(x: HostTensor, weight: HostTensor, bias: Float64Array | null, pad: number, padValue = 0): HostTensor {
  const [N, C, H, W] = dims4(x);
  const [O, I, kh, kw] = dims4(weight);
  if (I !== C) throw new Error(`conv weight expects ${I} input channels, got ${C}`);
  const Ho = H + 2 * pad - kh + 1;
  const Wo = W + 2 * pad - kw + 1;
  const out = empty([N, O, Ho, Wo]);
  const wd = weight.data;
  const xd = x.data;
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++)
      for (let h = 0; h < Ho; h++)
        for (let w = 0; w < Wo; w++) {
          let s = bias ? bias[o] : 0;
          for (let i = 0; i < C; i++)
            for (let a = 0; a < kh; a++) {
              const ih = h + a - pad;
              for (let b = 0; b < kw; b++) {
                const iw = w + b - pad;
                const inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
                s += wd[((o * I + i) * kh + a) * kw + b] * (inside ? xd[((n * C + i) * H + ih) * W + iw] : padValue);
              }
            }
          out.data[((n * O + o) * Ho + h) * Wo + w] = s;
        }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Small dense float64 linear algebra (row-major n x n)

function identity(n: number): Float64Array {
  const I = new Float64Array(n * n);
  for (let i = 0; i < n; i++) I[i * n + i] = 1;
  return I;
}

function matmul(A: Float64Array, B: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < n; k++) {
      const a = A[i * n + k];
      if (a === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += a * B[k * n + j];
    }
  return out;
}

/** Gauss-Jordan elimination with partial pivoting: A^-1 and log|det A|. */
export function inverseWithLogAbsDet(A: Float64Array, n: number): { inverse: Float64Array; logAbsDet: number } {
  const a = Float64Array.from(A);
  const inv = identity(n);
  let logAbsDet = 0;
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r * n + col]) > Math.abs(a[pivot * n + col])) pivot = r;
    const pv = a[pivot * n + col];
    if (pv === 0 || !Number.isFinite(pv)) throw new Error('matrix is singular');
    if (pivot !== col) {
      for (let j = 0; j < n; j++) {
        [a[col * n + j], a[pivot * n + j]] = [a[pivot * n + j], a[col * n + j]];
        [inv[col * n + j], inv[pivot * n + j]] = [inv[pivot * n + j], inv[col * n + j]];
      }
    }
    logAbsDet += Math.log(Math.abs(pv));
    for (let j = 0; j < n; j++) {
      a[col * n + j] /= pv;
      inv[col * n + j] /= pv;
    }
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = a[r * n + col];
      if (f === 0) continue;
      for (let j = 0; j < n; j++) {
        a[r * n + j] -= f * a[col * n + j];
        inv[r * n + j] -= f * inv[col * n + j];
      }
    }
  }
  return { inverse: inv, logAbsDet };
}

// ---------------------------------------------------------------------------------------------
// Parameters

function param(model: Ref64Input, name: string): { shape: number[]; data: Float64Array } {
  const t = model.params.get(name);
  if (!t) throw new Error(`missing parameter ${name}`);
  return { shape: t.shape, data: Float64Array.from(t.data) };
}

/** Every tensor of paramSpecs(config) must be present with its exact shape. */
function checkParams(model: Ref64Input): void {
  for (const spec of paramSpecs(model.config)) {
    const t = param(model, spec.name);
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      throw new Error(`parameter ${spec.name} has shape [${t.shape.join(', ')}], expected [${spec.shape.join(', ')}]`);
    }
    if (t.data.length !== numel(spec.shape)) throw new Error(`parameter ${spec.name} has ${t.data.length} values`);
  }
}

// ---------------------------------------------------------------------------------------------
// Layers

/** ActNorm: y = (x + bias) * exp(logs) per channel; its log-det is H*W*sum(logs). */
function actnormForward(model: Ref64Input, prefix: string, x: HostTensor): { y: HostTensor; logdet: number } {
  model.onActNorm?.(prefix, x);
  const bias = param(model, `${prefix}.bias`).data;
  const logs = param(model, `${prefix}.logs`).data;
  const [, , H, W] = dims4(x);
  const y = mapPerChannel(x, (v, c) => (v + bias[c]) * Math.exp(logs[c]));
  let sum = 0;
  for (const l of logs) sum += l;
  return { y, logdet: H * W * sum };
}

function actnormReverse(model: Ref64Input, prefix: string, y: HostTensor): HostTensor {
  const bias = param(model, `${prefix}.bias`).data;
  const logs = param(model, `${prefix}.logs`).data;
  return mapPerChannel(y, (v, c) => v * Math.exp(-logs[c]) - bias[c]);
}

/** Conv2dZeros: conv3x3(pad 1 with the config's zerosPadValue, weight, bias) * exp(3 * logs)
 * per output channel. */
function conv2dZeros(model: Ref64Input, prefix: string, x: HostTensor): HostTensor {
  const bias = param(model, `${prefix}.conv.bias`).data;
  const logs = param(model, `${prefix}.logs`).data;
  // Spectral normalisation (config.lipschitz) reaches the coupling networks' Conv2dZeros only.
  const weight = /\.block\.4$/.test(prefix) ? spectralWeight(model, prefix, Float64Array.from(logs, (l) => Math.exp(3 * l))) : param(model, `${prefix}.conv.weight`);
  const h = conv2d(x, weight, bias, 1, model.config.zerosPadValue ?? 0);
  return mapPerChannel(h, (v, c) => v * Math.exp(3 * logs[c]));
}

/** LinearZeros: (x @ W^T + b) * exp(3 * logs), x [N, in], W [out, in]. */
function linearZeros(model: Ref64Input, prefix: string, x: HostTensor): HostTensor {
  const weight = param(model, `${prefix}.linear.weight`);
  const bias = param(model, `${prefix}.linear.bias`).data;
  const logs = param(model, `${prefix}.logs`).data;
  const [O, I] = weight.shape;
  const [N, In] = x.shape;
  if (In !== I) throw new Error(`${prefix}: expected ${I} input features, got ${In}`);
  const out = empty([N, O]);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      let s = bias[o];
      for (let i = 0; i < I; i++) s += x.data[n * I + i] * weight.data[o * I + i];
      out.data[n * O + o] = s * Math.exp(3 * logs[o]);
    }
  return out;
}

/** The 1x1 convolution matrix W of a step and log|det W|. */
/** Whether the 1x1 convolutions on C channels are LU-parameterised: config.lu is one flag or one
 * per level, and level l (0-based) carries imageShape[0] * 2^(l+2) channels. */
function isLU(config: GlowConfig, C: number): boolean {
  if (!Array.isArray(config.lu)) return config.lu;
  const level = Math.log2(C / config.imageShape[0]) - 2;
  if (!(Number.isInteger(level) && level >= 0 && level < config.lu.length)) throw new Error(`no level of lu ${JSON.stringify(config.lu)} has ${C} channels`);
  return config.lu[level];
}

function invconvMatrix(model: Ref64Input, prefix: string, C: number): { W: Float64Array; logAbsDet: number } {
  if (!isLU(model.config, C)) {
    const W = param(model, `${prefix}.invconv.weight`).data;
    return { W: Float64Array.from(W), logAbsDet: inverseWithLogAbsDet(W, C).logAbsDet };
  }
  const P = param(model, `${prefix}.invconv.p`).data;
  const lower = param(model, `${prefix}.invconv.lower`).data;
  const upper = param(model, `${prefix}.invconv.upper`).data;
  const logS = param(model, `${prefix}.invconv.log_s`).data;
  const signS = param(model, `${prefix}.invconv.sign_s`).data;
  const Lm = new Float64Array(C * C);
  const Um = new Float64Array(C * C);
  let logAbsDet = 0;
  for (let i = 0; i < C; i++) {
    for (let j = 0; j < C; j++) {
      if (j < i) Lm[i * C + j] = lower[i * C + j]; // strict lower part
      if (j > i) Um[i * C + j] = upper[i * C + j]; // strict upper part
    }
    Lm[i * C + i] = 1;
    Um[i * C + i] = signS[i] * Math.exp(logS[i]);
    logAbsDet += logS[i];
  }
  return { W: matmul(matmul(P, Lm, C), Um, C), logAbsDet };
}

/** The channel permutation of a 'shuffle' or 'reverse' step: y = x[:, indices]. */
function permutationIndices(model: Ref64Input, prefix: string, C: number): number[] {
  if (model.config.permutation === 'reverse') return Array.from({ length: C }, (_, c) => C - 1 - c);
  const indices = model.shuffles?.get(prefix);
  if (!indices) throw new Error(`missing shuffle indices for ${prefix}`);
  const seen = new Set(indices);
  if (indices.length !== C || seen.size !== C || indices.some((i) => !(Number.isInteger(i) && i >= 0 && i < C))) {
    throw new Error(`shuffle indices for ${prefix} are not a permutation of 0..${C - 1}`);
  }
  return [...indices];
}

function permuteForward(model: Ref64Input, prefix: string, x: HostTensor): { y: HostTensor; logdet: number } {
  const [, C, H, W] = dims4(x);
  if (model.config.permutation === 'invconv') {
    const { W: M, logAbsDet } = invconvMatrix(model, prefix, C);
    return { y: mixChannels(x, M), logdet: H * W * logAbsDet };
  }
  return { y: gatherChannels(x, permutationIndices(model, prefix, C)), logdet: 0 };
}

function permuteReverse(model: Ref64Input, prefix: string, y: HostTensor): HostTensor {
  const [, C] = dims4(y);
  if (model.config.permutation === 'invconv') {
    const { W: M } = invconvMatrix(model, prefix, C);
    return mixChannels(y, inverseWithLogAbsDet(M, C).inverse);
  }
  const indices = permutationIndices(model, prefix, C);
  const inv = new Array<number>(C);
  indices.forEach((src, c) => (inv[src] = c));
  return gatherChannels(y, inv);
}

/** A conv weight scaled by spectral normalisation's factor 1 / max(1, sigma / c), sigma =
 * u^T (W * gain) v, the gain per output channel that follows the conv (config.lipschitz):
 * conv(x, W f) then the gain is conv(x, (W gain) f), the normalised effective weight. */
function spectralWeight(model: Ref64Input, block: string, gain: Float64Array): HostTensor {
  const w = param(model, `${block}.conv.weight`);
  const c = model.config.lipschitz;
  if (c === undefined) return w;
  const u = param(model, `${block}.conv.weight_u`).data;
  const v = param(model, `${block}.conv.weight_v`).data;
  const cols = w.data.length / u.length;
  let sigma = 0;
  for (let o = 0; o < u.length; o++) for (let k = 0; k < cols; k++) sigma += u[o] * w.data[o * cols + k] * gain[o] * v[k];
  const f = sigma > c ? c / sigma : 1;
  return { shape: w.shape, data: Float64Array.from(w.data, (e) => e * f) };
}

/** The coupling network NN(z1) of a flow step. */
function couplingNN(model: Ref64Input, prefix: string, z1: HostTensor): HostTensor {
  const actnormGain = (block: string) => Float64Array.from(param(model, `${block}.actnorm.logs`).data, Math.exp);
  let h = conv2d(z1, spectralWeight(model, `${prefix}.block.0`, actnormGain(`${prefix}.block.0`)), null, 1);
  h = relu(actnormForward(model, `${prefix}.block.0.actnorm`, h).y);
  h = conv2d(h, spectralWeight(model, `${prefix}.block.2`, actnormGain(`${prefix}.block.2`)), null, 0);
  h = relu(actnormForward(model, `${prefix}.block.2.actnorm`, h).y);
  return conv2dZeros(model, `${prefix}.block.4`, h);
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
/** log(sigmoid(v)) = -softplus(-v), computed stably. */
const logSigmoid = (v: number) => (v >= 0 ? -Math.log1p(Math.exp(-v)) : v - Math.log1p(Math.exp(v)));

function couplingForward(model: Ref64Input, prefix: string, x: HostTensor): { y: HostTensor; logdet: Float64Array } {
  const [N, C, H, W] = dims4(x);
  const half = C / 2;
  const z1 = pickChannels(x, 0, 1, half);
  const z2 = pickChannels(x, half, 1, C - half);
  const h = couplingNN(model, prefix, z1);
  const logdet = new Float64Array(N);
  if (model.config.coupling === 'additive') {
    return { y: concatChannels(z1, zip(z2, h, (a, b) => a + b)), logdet };
  }
  const shift = pickChannels(h, 0, 2, half);
  const raw = pickChannels(h, 1, 2, half); // scale = max(sigmoid(raw + 2), floor)
  const floor = model.config.scaleFloor ?? 0;
  const shifted = zip(z2, shift, (a, s) => a + s);
  const bound = model.config.scaleBound;
  if (bound !== undefined) {
    // scale = exp(-ln(bound) tanh(raw)), no +2.
    const logScale = (r: number) => -Math.log(bound) * Math.tanh(r);
    const per = half * H * W;
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < per; k++) s += logScale(raw.data[n * per + k]);
      logdet[n] = s;
    }
    return { y: concatChannels(z1, zip(shifted, raw, (a, r) => a * Math.exp(logScale(r)))), logdet };
  }
  const z2out = zip(shifted, raw, (a, r) => a * Math.max(sigmoid(r + 2), floor));
  const per = half * H * W;
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < per; k++) s += Math.max(logSigmoid(raw.data[n * per + k] + 2), Math.log(floor));
    logdet[n] = s;
  }
  return { y: concatChannels(z1, z2out), logdet };
}

function couplingReverse(model: Ref64Input, prefix: string, y: HostTensor): HostTensor {
  const [, C] = dims4(y);
  const half = C / 2;
  const z1 = pickChannels(y, 0, 1, half);
  const y2 = pickChannels(y, half, 1, C - half);
  const h = couplingNN(model, prefix, z1);
  if (model.config.coupling === 'additive') return concatChannels(z1, zip(y2, h, (a, b) => a - b));
  const shift = pickChannels(h, 0, 2, half);
  const raw = pickChannels(h, 1, 2, half);
  const floor = model.config.scaleFloor ?? 0;
  const bound = model.config.scaleBound;
  const scaleOf = (r: number) => (bound !== undefined ? Math.exp(-Math.log(bound) * Math.tanh(r)) : Math.max(sigmoid(r + 2), floor));
  const unscaled = zip(y2, raw, (a, r) => a / scaleOf(r));
  return concatChannels(z1, zip(unscaled, shift, (a, s) => a - s));
}

/** One flow step (encode direction): actnorm, permutation, coupling; adds its log-det to `logdet`. */
function stepForward(model: Ref64Input, prefix: string, x: HostTensor, logdet: Float64Array): HostTensor {
  const a = actnormForward(model, `${prefix}.actnorm`, x);
  const p = permuteForward(model, prefix, a.y);
  const c = couplingForward(model, prefix, p.y);
  for (let n = 0; n < logdet.length; n++) logdet[n] += a.logdet + p.logdet + c.logdet[n];
  return c.y;
}

function stepReverse(model: Ref64Input, prefix: string, y: HostTensor): HostTensor {
  const p = couplingReverse(model, prefix, y);
  const a = permuteReverse(model, prefix, p);
  return actnormReverse(model, `${prefix}.actnorm`, a);
}

// ---------------------------------------------------------------------------------------------
// Priors

interface Gaussian {
  mean: HostTensor;
  logs: HostTensor;
}

/** The prior of the split-off half of a level: Conv2dZeros(z1); mean = even, logs = odd channels. */
function splitPrior(model: Ref64Input, level: number, z1: HostTensor): Gaussian {
  const [, half] = dims4(z1);
  const prefix = `${splitPrefix(model.config, level)}.conv`;
  const h = conv2dZeros(model, prefix, z1);
  const mean = pickChannels(h, 0, 2, half);
  if (!model.config.constantSplitScale) return { mean, logs: pickChannels(h, 1, 2, half) };
  // constantSplitScale: the log-scale channels see none of z1, only their bias times exp(3 logs).
  const bias = param(model, `${prefix}.conv.bias`).data;
  const logs = param(model, `${prefix}.logs`).data;
  return { mean, logs: mapPerChannel(mean, (_, c) => bias[2 * c + 1] * Math.exp(3 * logs[2 * c + 1])) };
}

function checkLabels(model: Ref64Input, N: number, y: HostTensor | undefined): void {
  const classes = model.config.numClasses;
  if (classes === 0) return;
  if (!y) throw new Error('class-conditional model needs y');
  if (y.shape.length !== 2 || y.shape[0] !== N || y.shape[1] !== classes) {
    throw new Error(`y must have shape [${N}, ${classes}], got [${y.shape.join(', ')}]`);
  }
}

/** The top prior: prior_h (+ learn_top Conv2dZeros) (+ projected y); mean = first, logs = second half. */
function topPrior(model: Ref64Input, N: number, y: HostTensor | undefined): Gaussian {
  const { config } = model;
  const [Ct, ht, wt] = latentShape(config, config.L);
  const priorH = param(model, 'prior_h').data;
  let h = empty([N, 2 * Ct, ht, wt]);
  for (let n = 0; n < N; n++) h.data.set(priorH, n * priorH.length);
  if (config.learnTop) h = conv2dZeros(model, 'learn_top_fn', h);
  if (config.numClasses > 0) {
    checkLabels(model, N, y);
    const yp = linearZeros(model, 'project_ycond', y!); // [N, 2Ct]
    const hw = ht * wt;
    for (let n = 0; n < N; n++)
      for (let c = 0; c < 2 * Ct; c++)
        for (let p = 0; p < hw; p++) h.data[(n * 2 * Ct + c) * hw + p] += yp.data[n * 2 * Ct + c];
  }
  return { mean: pickChannels(h, 0, 1, Ct), logs: pickChannels(h, Ct, 1, Ct) };
}

/** eps = (z - mean) * exp(-logs); adds sum(-0.5 eps^2 - logs - 0.5 ln 2pi) per example to logp. */
function standardise(z: HostTensor, g: Gaussian, logp: Float64Array): HostTensor {
  const centred = zip(z, g.mean, (a, m) => a - m);
  const eps = zip(centred, g.logs, (d, l) => d * Math.exp(-l));
  const N = z.shape[0];
  const per = eps.data.length / N;
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = n * per; k < (n + 1) * per; k++) s += -0.5 * eps.data[k] ** 2 - g.logs.data[k] - 0.5 * LOG_2PI;
    logp[n] += s;
  }
  return eps;
}

/** z = mean + exp(logs) * T * eps. */
function destandardise(eps: HostTensor, g: Gaussian, temperature: number): HostTensor {
  const scaled = zip(eps, g.logs, (e, l) => Math.exp(l) * temperature * e);
  return zip(g.mean, scaled, (m, s) => m + s);
}

// ---------------------------------------------------------------------------------------------
// The model

export function refEncode(model: Ref64Input, x: HostTensor, y?: HostTensor): Ref64Encoded {
  const { config } = model;
  checkParams(model);
  const [N, C, H, W] = dims4(x);
  const [Ci, Hi, Wi] = config.imageShape;
  if (C !== Ci || H !== Hi || W !== Wi) {
    throw new Error(`x must have shape [N, ${Ci}, ${Hi}, ${Wi}], got [${x.shape.join(', ')}]`);
  }
  checkLabels(model, N, y);

  const logdet = new Float64Array(N);
  const logp = new Float64Array(N);
  const eps: HostTensor[] = [];
  let z = x;
  for (let level = 0; level < config.L; level++) {
    z = squeeze(z);
    for (let step = 0; step < config.K; step++) z = stepForward(model, stepPrefix(config, level, step), z, logdet);
    if (level < config.L - 1) {
      const half = levelChannels(config, level + 1) / 2;
      const z1 = pickChannels(z, 0, 1, half);
      const z2 = pickChannels(z, half, 1, half);
      eps.push(standardise(z2, splitPrior(model, level, z1), logp));
      z = z1;
    }
  }
  eps.push(standardise(z, topPrior(model, N, y), logp));

  let yLogits: HostTensor | undefined;
  if (config.numClasses > 0) {
    const [, Ct, ht, wt] = dims4(z);
    const pooled = empty([N, Ct]);
    const hw = ht * wt;
    for (let n = 0; n < N; n++)
      for (let c = 0; c < Ct; c++) {
        let s = 0;
        for (let p = 0; p < hw; p++) s += z.data[(n * Ct + c) * hw + p];
        pooled.data[n * Ct + c] = s / hw;
      }
    yLogits = linearZeros(model, 'project_class', pooled);
  }

  const D = dimensions(config);
  const logPx = new Float64Array(N);
  const bpd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    logPx[n] = logdet[n] + logp[n] - D * config.nBits * Math.LN2;
    bpd[n] = -logPx[n] / (D * Math.LN2);
  }
  return { eps, logdet, logPx, bpd, yLogits };
}

export function refDecode(model: Ref64Input, eps: HostTensor[], temperature: number, y?: HostTensor): HostTensor {
  const { config } = model;
  checkParams(model);
  if (eps.length !== config.L) throw new Error(`expected ${config.L} latents, got ${eps.length}`);
  const N = eps[0].shape[0];
  eps.forEach((e, i) => {
    const want = [N, ...latentShape(config, i + 1)];
    if (e.shape.length !== 4 || e.shape.some((d, k) => d !== want[k])) {
      throw new Error(`eps_${i + 1} must have shape [${want.join(', ')}], got [${e.shape.join(', ')}]`);
    }
  });
  checkLabels(model, N, y);

  let z = destandardise(eps[config.L - 1], topPrior(model, N, y), temperature);
  for (let level = config.L - 1; level >= 0; level--) {
    if (level < config.L - 1) {
      const z2 = destandardise(eps[level], splitPrior(model, level, z), temperature);
      z = concatChannels(z, z2);
    }
    for (let step = config.K - 1; step >= 0; step--) z = stepReverse(model, stepPrefix(config, level, step), z);
    z = unsqueeze(z);
  }
  return z;
}
