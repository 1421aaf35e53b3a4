// Multi-scale assembly: the encode and decode graphs of the I/O contract (docs/design.md, "The
// exported graphs").
//
//   encode: x -> for each level: squeeze, K steps, split (eps_l from the split prior) -> top
//           prior (eps_L); logdet, log_px, bpd, y_logits
//   decode: the same levels in reverse, z = mean + sigma * T * eps at every prior.

import { Dim, Graph, GraphBuilder, tensor, Value } from '../builder/graph.js';
import * as op from '../builder/ops.js';
import { chain, cleanup, foldConstants, toposort } from '../builder/passes/index.js';
import { dimensions, GlowConfig, latentShape, levelChannels, levelLU, luLevels } from './config.js';
import * as actnorm from './layers/actnorm.js';
import {
  ActNormSource, checkpointActNorms, FlowOutput, HostParams, hostParam, LogDet, ParamSource, scalarConstant, storedParam,
} from './layers/common.js';
import * as coupling from './layers/coupling.js';
import * as fusedMix from './layers/fused-mix.js';
import * as invconv from './layers/invconv.js';
import {
  foldedCouplingNetwork, foldedPriorNetwork, foldZerosConv, literalCouplingNetwork, literalPriorNetwork, LOGSCALE_FACTOR, Network,
  OutputLayout, Spectral, zerosPaddedConv,
} from './layers/networks.js';
import { Gaussian, sample, standardize } from './layers/priors.js';
import * as squeeze from './layers/squeeze.js';
import { paramSpecs, splitPrefix, stepPrefix } from './names.js';
import { HostTensor } from '../math/tensor.js';
import { META_CONFIG, META_FOLDED } from './metadata.js';

export interface GlowWeights {
  config: GlowConfig;
  params: HostParams;
  /** Channel order of each shuffle step, keyed by step prefix (output c reads input indices[c]). */
  shuffles?: ReadonlyMap<string, readonly number[]>;
}

export interface BuildOptions {
  /** Fold weights on the host (default). false keeps every checkpoint tensor and the Exp on
   * weights in the graph, for comparison and debugging. */
  fold?: boolean;
  opset?: number;
  /** A static batch size for every graph input and output (TensorRT engines, WebGPU graph
   * capture); default: the symbolic dimension 'N'. */
  batch?: number;
  /** decode's temperature: one scalar for the whole batch (default), or one per example, shape
   * [N], as servers that batch requests together need (Triton batches every input). */
  temperature?: 'scalar' | 'per-example';
  /** Float32 weights stored as Float32Array (see GraphBuilder): for export, which only
   * serialises the graph; default false, as host evaluation needs the float64 values. */
  compact?: boolean;
  /** The folded affine coupling's log-det (see layers/coupling.ts): 'log' (default) tests the
   * scale against float32's smallest normal, which float16 compute cannot represent, so float16
   * exports take 'stable'. */
  couplingLogDet?: coupling.LogScale;
}

/** The batch dimension of every graph input and output. */
function batchDim(options: BuildOptions): Dim {
  if (options.batch === undefined) return 'N';
  if (!Number.isSafeInteger(options.batch) || options.batch < 1) throw new Error(`batch must be a positive integer, got ${options.batch}`);
  return options.batch;
}

const LN2 = Math.log(2);

// ---------------------------------------------------------------- one flow step

interface StepGraph {
  encode(g: GraphBuilder, x: Value): FlowOutput[];
  /** encode of squeeze(x) with the squeeze folded into the step's first convolution. */
  encodeSqueezed?(g: GraphBuilder, x: Value): FlowOutput[];
  decode(g: GraphBuilder, y: Value): FlowOutput[];
}

function couplingLayout(config: GlowConfig): OutputLayout {
  const padValue = config.zerosPadValue ?? 0;
  // The paper's +2 belongs to its sigmoid; a bounded scale starts at 1 from t = 0.
  if (config.coupling === 'affine') return { split: 'cross', oddOffset: config.scaleBound ? 0 : 2, padValue };
  return { split: 'whole', padValue };
}

function stepPermutation(w: GlowWeights, prefix: string, C: number): readonly number[] {
  if (w.config.permutation === 'reverse') return invconv.reversePermutation(C);
  const indices = w.shuffles?.get(prefix);
  if (!indices) throw new Error(`shuffle permutation of ${prefix} is missing: shuffle models need their channel orders`);
  return indices;
}

function foldMix(w: GlowWeights, prefix: string, C: number, lu: boolean): invconv.FoldedMix {
  const p = (name: string) => hostParam(w.params, `${prefix}.invconv.${name}`).data;
  if (w.config.permutation !== 'invconv') return invconv.foldPermutation(stepPermutation(w, prefix, C));
  if (lu) return invconv.foldLU(p('p'), p('lower'), p('upper'), p('log_s'), p('sign_s'));
  return invconv.foldPlain(p('weight'), C);
}

function foldedStep(w: GlowWeights, prefix: string, C: number, lu: boolean, logDet: coupling.LogScale): StepGraph {
  const mix = fusedMix.fuse(hostParam(w.params, `${prefix}.actnorm.bias`).data, hostParam(w.params, `${prefix}.actnorm.logs`).data, foldMix(w, prefix, C, lu));
  const network = foldedCouplingNetwork(w.params, prefix, couplingLayout(w.config), w.config.lipschitz);
  return {
    encode(g, x) {
      const a = fusedMix.encode(g, x, mix);
      return [a, coupling.encode(g, a.out, w.config, network, logDet)];
    },
    encodeSqueezed(g, x) {
      const a = fusedMix.encodeSqueezed(g, x, mix);
      return [a, coupling.encode(g, a.out, w.config, network, logDet)];
    },
    decode(g, y) {
      const c = coupling.decode(g, y, w.config, network);
      return [c, fusedMix.decode(g, c.out, mix)];
    },
  };
}

/** The step as the checkpoint states it. W^-1 still comes from the host: ONNX has no standard
 * matrix inverse. */
function literalStep(w: GlowWeights, src: ParamSource, actnorms: ActNormSource, prefix: string, C: number, lu: boolean, foldNetworkActNorms: boolean, spectral?: Spectral): StepGraph {
  const network = literalCouplingNetwork(src, actnorms, prefix, couplingLayout(w.config), foldNetworkActNorms, spectral);
  const mixEncode = (g: GraphBuilder, x: Value): FlowOutput => {
    if (w.config.permutation !== 'invconv') {
      return { out: g.scope('permute', () => op.gather(g, x, [...stepPermutation(w, prefix, C)], 1)), logdet: 0 };
    }
    if (lu) {
      const names = ['p', 'lower', 'upper', 'log_s', 'sign_s'] as const;
      const lu = Object.fromEntries(names.map((n) => [n, src(`${prefix}.invconv.${n}`)])) as unknown as invconv.LUWeights;
      const { weight, logAbsDet } = g.scope('invconv', () => invconv.weightFromLU(g, lu));
      return invconv.encode(g, x, weight, logAbsDet);
    }
    return invconv.encode(g, x, src(`${prefix}.invconv.weight`), foldMix(w, prefix, C, lu).logAbsDet);
  };
  const mixDecode = (g: GraphBuilder, y: Value): FlowOutput => {
    const folded = foldMix(w, prefix, C, lu);
    if (w.config.permutation !== 'invconv') {
      const inverse = new Array<number>(C);
      stepPermutation(w, prefix, C).forEach((src, c) => (inverse[src] = c));
      return { out: g.scope('permute', () => op.gather(g, y, inverse, 1)), logdet: 0 };
    }
    const inverseWeight = g.initializer(`${prefix}.invconv.weight_inverse`, tensor('float32', [C, C], folded.inverse.data));
    return invconv.decode(g, y, inverseWeight, folded.logAbsDet);
  };
  return {
    encode(g, x) {
      const a = actnorm.encode(g, x, actnorms(g, `${prefix}.actnorm`, x));
      const m = mixEncode(g, a.out);
      return [a, m, coupling.encode(g, m.out, w.config, network)];
    },
    decode(g, y) {
      const c = coupling.decode(g, y, w.config, network);
      const m = mixDecode(g, c.out);
      return [c, m, actnorm.decode(g, m.out, actnorms(g, `${prefix}.actnorm`, m.out))];
    },
  };
}

// ---------------------------------------------------------------- priors

interface Priors {
  split(level: number): Network;
  /** Top prior; `y` is the one-hot class input of class-conditional models. */
  top(g: GraphBuilder, y: Value | undefined): Gaussian;
  /** y_logits from the top latent. */
  classLogits(g: GraphBuilder, zTop: Value): Value;
}

/** h = Conv2dZeros(prior_h) (or prior_h itself) on the host, [1, 2C, h, w]. With a pad value
 * of 1 the constant maps vary over space (rosinality's top prior, its conv applied to zeros). */
function topPriorHost(w: GlowWeights): HostTensor {
  const priorH = hostParam(w.params, 'prior_h');
  if (!w.config.learnTop) return priorH;
  const f = foldZerosConv(hostParam(w.params, 'learn_top_fn.conv.weight'), hostParam(w.params, 'learn_top_fn.conv.bias').data,
    hostParam(w.params, 'learn_top_fn.logs').data, { split: 'whole' });
  return conv3x3SameHost(priorH, f.weight, f.bias, w.config.zerosPadValue ?? 0);
}

function conv3x3SameHost(x: HostTensor, weight: Float64Array, bias: Float64Array, padValue: number): HostTensor {
  const [, C, H, W] = x.shape;
  const M = bias.length;
  const out = new Float64Array(M * H * W);
  for (let m = 0; m < M; m++) {
    for (let i = 0; i < H; i++) {
      for (let j = 0; j < W; j++) {
        let acc = bias[m];
        for (let c = 0; c < C; c++) {
          for (let di = 0; di < 3; di++) {
            for (let dj = 0; dj < 3; dj++) {
              const ii = i + di - 1;
              const jj = j + dj - 1;
              const inside = ii >= 0 && ii < H && jj >= 0 && jj < W;
              acc += weight[((m * C + c) * 3 + di) * 3 + dj] * (inside ? x.data[(c * H + ii) * W + jj] : padValue);
            }
          }
        }
        out[(m * H + i) * W + j] = acc;
      }
    }
  }
  return { shape: [1, M, H, W], data: out };
}

function halvesHost(t: HostTensor): [HostTensor, HostTensor] {
  const [, C2, H, W] = t.shape;
  const n = (C2 / 2) * H * W;
  const shape = [1, C2 / 2, H, W];
  return [{ shape, data: t.data.slice(0, n) }, { shape, data: t.data.slice(n) }];
}

/** LinearZeros folded: (W x + b) * exp(3 logs) as one Gemm. */
function foldLinearZeros(w: GlowWeights, prefix: string): { weight: HostTensor; bias: Float64Array } {
  const weight = hostParam(w.params, `${prefix}.linear.weight`);
  const e = hostParam(w.params, `${prefix}.logs`).data.map((v) => Math.exp(LOGSCALE_FACTOR * v));
  const inFeatures = weight.shape[1];
  return {
    weight: { shape: weight.shape, data: weight.data.map((v, k) => v * e[Math.floor(k / inFeatures)]) },
    bias: hostParam(w.params, `${prefix}.linear.bias`).data.map((v, o) => v * e[o]),
  };
}

function gemmFolded(g: GraphBuilder, x: Value, f: { weight: HostTensor; bias: Float64Array }, hint: string): Value {
  const weight = g.constant(tensor('float32', f.weight.shape, f.weight.data), `${hint}.weight`);
  const bias = g.constant(tensor('float32', [f.bias.length], f.bias), `${hint}.bias`);
  return op.gemm(g, x, weight, bias, { transB: true });
}

function gemmLiteral(g: GraphBuilder, src: ParamSource, x: Value, prefix: string): Value {
  const y = op.gemm(g, x, src(`${prefix}.linear.weight`), src(`${prefix}.linear.bias`), { transB: true });
  return op.mul(g, y, op.exp(g, op.mul(g, src(`${prefix}.logs`), scalarConstant(g, LOGSCALE_FACTOR, 'logscale_factor'))));
}

function splitTop(g: GraphBuilder, h: Value): Gaussian {
  const C2 = h.shape![1] as number;
  const [mean, logs] = op.split(g, h, [C2 / 2, C2 / 2], 1);
  return { kind: 'data', mean, logs };
}

function foldedPriors(w: GlowWeights): Priors {
  const hTop = topPriorHost(w);
  const C2 = hTop.shape[1];
  return {
    split: (level) => foldedPriorNetwork(w.params, splitPrefix(w.config, level), w.config.zerosPadValue, w.config.constantSplitScale),
    top(g, y) {
      if (!y) {
        const [mean, logs] = halvesHost(hTop);
        return { kind: 'constant', mean, logs };
      }
      return g.scope('top_prior', () => {
        const projected = op.reshape(g, gemmFolded(g, y, foldLinearZeros(w, 'project_ycond'), 'project_ycond'), [0, C2, 1, 1]);
        return splitTop(g, op.add(g, g.constant(tensor('float32', hTop.shape, hTop.data), 'h'), projected));
      });
    },
    classLogits: (g, zTop) => g.scope('project_class', () =>
      gemmFolded(g, op.reduceMean(g, zTop, [2, 3], false), foldLinearZeros(w, 'project_class'), 'project_class')),
  };
}

function literalPriors(w: GlowWeights, src: ParamSource): Priors {
  return {
    split: (level) => literalPriorNetwork(src, splitPrefix(w.config, level), w.config.zerosPadValue, w.config.constantSplitScale),
    top: (g, y) => g.scope('top_prior', () => {
      let h = src('prior_h');
      if (w.config.learnTop) {
        const conv = zerosPaddedConv(g, h, src('learn_top_fn.conv.weight'), src('learn_top_fn.conv.bias'), w.config.zerosPadValue);
        h = op.mul(g, conv, op.exp(g, op.mul(g, src('learn_top_fn.logs'), scalarConstant(g, LOGSCALE_FACTOR, 'logscale_factor'))));
      }
      if (y) {
        const C2 = h.shape![1] as number;
        h = op.add(g, h, op.reshape(g, gemmLiteral(g, src, y, 'project_ycond'), [0, C2, 1, 1]));
      }
      return splitTop(g, h);
    }),
    classLogits: (g, zTop) => g.scope('project_class', () => gemmLiteral(g, src, op.reduceMean(g, zTop, [2, 3], false), 'project_class')),
  };
}

// ---------------------------------------------------------------- assembly

interface Assembly {
  steps: StepGraph[][];
  priors: Priors;
}

interface AssemblyOptions {
  fold: boolean;
  couplingLogDet?: coupling.LogScale;
  /** Replaces the checkpoint's ActNorms (literal form only), as data-dependent initialisation does. */
  actnorms?: ActNormSource;
  /** The coupling networks' ActNorms folded into their convs in the graph (training: same
   * values, less work per pixel); not with data-dependent `actnorms`. */
  foldNetworkActNorms?: boolean;
  /** Checkpoint tensors that become graph inputs instead of initializers (training). */
  asInputs?: ReadonlySet<string>;
  /** Receives the spectral normalisation's next power-iteration vectors (train step). */
  spectralUpdates?: (name: string, value: Value) => void;
}

/** The steps and priors of a model. Each checkpoint tensor becomes one initializer (or input)
 * named as in the checkpoint, registered on first use. */
function assemble(w: GlowWeights, g: GraphBuilder, options: AssemblyOptions): Assembly {
  const { config } = w;
  const { fold } = options;
  const registered = new Map<string, Value>();
  const src: ParamSource = (name) => {
    let v = registered.get(name);
    if (!v) {
      // As stored: a literal graph copies no float32 weights to float64.
      const t = storedParam(w.params, name);
      v = options.asInputs?.has(name) ? g.input(name, 'float32', t.shape) : g.initializer(name, tensor('float32', t.shape, t.data));
      registered.set(name, v);
    }
    return v;
  };
  const actnorms = options.actnorms ?? checkpointActNorms(src);
  // Data-dependent ActNorm initialisation takes statistics of the unnormalised convs: the
  // normalisation acts on weights scaled by ActNorms that do not exist yet.
  const spectral: Spectral | undefined = config.lipschitz !== undefined && !options.actnorms
    ? { lipschitz: config.lipschitz, onUpdate: options.spectralUpdates }
    : undefined;
  const steps = Array.from({ length: config.L }, (_, level) => {
    const C = levelChannels(config, level + 1);
    const lu = levelLU(config, level);
    return Array.from({ length: config.K }, (_, k) => {
      const prefix = stepPrefix(config, level, k);
      return fold ? foldedStep(w, prefix, C, lu, options.couplingLogDet ?? 'log') : literalStep(w, src, actnorms, prefix, C, lu, options.foldNetworkActNorms ?? false, spectral);
    });
  });
  return { steps, priors: fold ? foldedPriors(w) : literalPriors(w, src) };
}

/** a + b + ...: pairwise Add rather than one Sum node, which the WebGPU execution provider
 * lacks (it would send the log-det terms to the CPU and back). */
function addAll(g: GraphBuilder, values: Value[]): Value {
  return values.reduce((acc, v) => op.add(g, acc, v));
}

/** Sums per-example terms and host constants into one [N] value. */
function total(g: GraphBuilder, terms: LogDet[], batchOf: Value, hint: string): Value {
  return g.scope(hint, () => {
    const constant = terms.filter((t): t is number => typeof t === 'number').reduce((a, b) => a + b, 0);
    const values = terms.filter((t): t is Value => typeof t !== 'number');
    const summed = addAll(g, [...values, scalarConstant(g, constant, 'constant')]);
    if (summed.rank === 1) return summed;
    // No term depends on the example: broadcast to the batch, known at run time only.
    const batch = op.gather(g, g.node('Shape', [batchOf], {}, [{ dtype: 'int64', shape: [batchOf.rank] }])[0], [0], 0);
    return g.node('Expand', [summed, batch], {}, [{ dtype: 'float32', shape: [batchOf.shape![0]] }])[0];
  });
}

function configMetadata(config: GlowConfig, fold: boolean): Record<string, string> {
  return { [META_CONFIG]: JSON.stringify(config), [META_FOLDED]: String(fold) };
}

function finish(g: GraphBuilder, fold: boolean, doc: string): Graph {
  const graph = g.build(doc);
  return fold ? chain(toposort, foldConstants, cleanup)(graph) : chain(toposort, cleanup)(graph);
}

export interface EncodeValues {
  eps: Value[];
  logdet: Value;
  logPx: Value;
  bpd: Value;
  yLogits?: Value;
}

function encodeBody(w: GlowWeights, g: GraphBuilder, assembly: Assembly, N: Dim = 'N'): EncodeValues {
  const { config } = w;
  const { steps, priors } = assembly;
  const [C, H, W] = config.imageShape;
  const x = g.input('x', 'float32', [N, C, H, W], `dequantised pixels k / 2^${config.nBits} - 0.5 + u, u in [0, 2^-${config.nBits})`);
  const y = config.numClasses > 0 ? g.input('y', 'float32', [N, config.numClasses], 'one-hot class') : undefined;

  const flowLogdet: LogDet[] = [];
  const priorLogs: LogDet[] = [];
  const squares: Value[] = [];
  const eps: Value[] = [];
  const standardized = (z: Value, prior: Gaussian) => {
    const s = standardize(g, z, prior);
    priorLogs.push(s.logdet);
    squares.push(op.reduceSum(g, op.mul(g, s.eps, s.eps), [1, 2, 3], false));
    eps.push(s.eps);
  };
  let z = x;
  for (let level = 0; level < config.L; level++) {
    const absorbsSqueeze = steps[level][0].encodeSqueezed !== undefined;
    if (!absorbsSqueeze) z = g.scope(`level${level + 1}`, () => squeeze.encode(g, z));
    for (let k = 0; k < config.K; k++) {
      const step = steps[level][k];
      const input = z;
      const run = () => (k === 0 && absorbsSqueeze ? step.encodeSqueezed!(g, input) : step.encode(g, input));
      for (const r of g.scope(stepPrefix(config, level, k), run)) {
        flowLogdet.push(r.logdet);
        z = r.out;
      }
    }
    if (level < config.L - 1) {
      g.scope(splitPrefix(config, level), () => {
        const Cz = z.shape![1] as number;
        const [z1, z2] = op.split(g, z, [Cz / 2, Cz / 2], 1);
        const [mean, logs] = priors.split(level)(g, z1);
        standardized(z2, { kind: 'data', mean, logs });
        z = z1;
      });
    }
  }
  const zTop = z;
  g.scope('top', () => standardized(zTop, priors.top(g, y)));

  const logdet = total(g, flowLogdet, x, 'logdet');
  const D = dimensions(config);
  const sumSquares = g.scope('log_px', () => op.mul(g, addAll(g, squares), scalarConstant(g, -0.5, 'minus_half')));
  const logPx = total(g, [logdet, sumSquares, ...priorLogs, -D * (0.5 * Math.log(2 * Math.PI) + config.nBits * LN2)], x, 'log_px');
  const bpd = g.scope('bpd', () => op.mul(g, logPx, scalarConstant(g, -1 / (D * LN2), 'scale')));
  return { eps, logdet, logPx, bpd, yLogits: y ? priors.classLogits(g, zTop) : undefined };
}

export function buildEncode(w: GlowWeights, options: BuildOptions = {}): Graph {
  const { config } = w;
  const fold = options.fold ?? true;
  const g = new GraphBuilder('glow_encode', { opset: options.opset, compact: options.compact });
  g.metadata = configMetadata(config, fold);
  const N = batchDim(options);
  const out = encodeBody(w, g, assemble(w, g, { fold, couplingLogDet: options.couplingLogDet }), N);
  out.eps.forEach((e, i) => g.output(e, `eps_${i + 1}`, `standardised latent of level ${i + 1} [${N}, ${latentShape(config, i + 1).join(', ')}]`));
  g.output(out.logdet, 'logdet', 'sum of log|det J| of the flow layers');
  g.output(out.logPx, 'log_px', 'log-likelihood of the discretised data in nats');
  g.output(out.bpd, 'bpd', 'bits per dimension, -log_px / (D ln 2)');
  if (out.yLogits) g.output(out.yLogits, 'y_logits', 'class logits from the top latent');
  return finish(g, fold, 'Glow encode: x -> eps_1..eps_L, logdet, log_px, bpd');
}

/**
 * The graph of data-dependent ActNorm initialisation: the literal encode pass in which every
 * ActNorm takes bias = -mean and logs = log(scale / (std + 1e-6)) of its own input, in order, as
 * the first training batch does in the PyTorch ports. Its outputs are those statistics, named
 * like the checkpoint tensors they initialise.
 */
export function buildActNormInit(w: GlowWeights, options: { opset?: number } = {}): Graph {
  const g = new GraphBuilder('glow_actnorm_init', { opset: options.opset });
  const stats: [string, Value][] = [];
  const fromData: ActNormSource = (graph, prefix, x) => {
    const s = actnorm.statistics(graph, x, w.config.actnormScale);
    stats.push([`${prefix}.bias`, s.bias], [`${prefix}.logs`, s.logs]);
    return s;
  };
  encodeBody(w, g, assemble(w, g, { fold: false, actnorms: fromData }));
  for (const [name, value] of stats) g.output(value, name);
  return finish(g, false, 'Glow ActNorm data-dependent initialisation');
}

export function buildDecode(w: GlowWeights, options: BuildOptions = {}): Graph {
  const { config } = w;
  const fold = options.fold ?? true;
  const g = new GraphBuilder('glow_decode', { opset: options.opset, compact: options.compact });
  g.metadata = configMetadata(config, fold);
  const N = batchDim(options);
  const eps = Array.from({ length: config.L }, (_, i) =>
    g.input(`eps_${i + 1}`, 'float32', [N, ...latentShape(config, i + 1)], `standardised latent of level ${i + 1}`));
  const temperatureDoc = 'scale of the prior standard deviations (1 reproduces encode inputs)';
  const temperature = options.temperature === 'per-example'
    ? op.reshape(g, g.input('temperature', 'float32', [N], `${temperatureDoc}, one per example`), [0, 1, 1, 1])
    : g.input('temperature', 'float32', [], temperatureDoc);
  const y = config.numClasses > 0 ? g.input('y', 'float32', [N, config.numClasses], 'one-hot class') : undefined;
  const { steps, priors } = assemble(w, g, { fold });
  let z = g.scope('top', () => sample(g, eps[config.L - 1], temperature, priors.top(g, y)));
  for (let level = config.L - 1; level >= 0; level--) {
    if (level < config.L - 1) {
      z = g.scope(splitPrefix(config, level), () => {
        const [mean, logs] = priors.split(level)(g, z);
        return op.concat(g, [z, sample(g, eps[level], temperature, { kind: 'data', mean, logs })], 1);
      });
    }
    for (let k = config.K - 1; k >= 0; k--) {
      for (const r of g.scope(stepPrefix(config, level, k), () => steps[level][k].decode(g, z))) z = r.out;
    }
    z = g.scope(`level${level + 1}`, () => squeeze.decode(g, z));
  }
  g.output(z, 'x', 'decoded pixels, same scale as the encode input');
  return finish(g, fold, 'Glow decode: eps_1..eps_L, temperature -> x');
}

/**
 * The literal encode pass with every trainable checkpoint tensor as a graph input named as in
 * the checkpoint (fixed buffers such as P, sign_s and prior_h, and the W of plain 1x1
 * convolutions in a model with LU levels, stay initializers). Returns the
 * open builder so that a caller can add a loss and its gradients.
 */
export function trainableEncode(w: GlowWeights, options: { opset?: number; spectralState?: boolean } = {}): {
  g: GraphBuilder; values: EncodeValues; trainable: string[]; spectralUpdates: Map<string, Value>;
} {
  const { config } = w;
  // A plain W's log-det gradient is W^-T, and ONNX has no matrix inverse: plain 1x1 convolutions
  // stay fixed (names.ts), which leaves a model with no LU level no way to learn its mixing.
  if (config.permutation === 'invconv' && !luLevels(config).someLU) {
    throw new Error('training a plain 1x1 convolution would need log|det W| and its gradient W^-T in the graph, and ONNX has no inverse: train with lu: true (a model whose lu lists plain levels trains with their W held fixed)');
  }
  const trainable = paramSpecs(config).filter((s) => s.trainable).map((s) => s.name);
  const g = new GraphBuilder('glow_training', { opset: options.opset });
  g.metadata = configMetadata(config, false);
  // spectralState: the power-iteration vectors are inputs too, and their next values collected
  // (the fused train step carries them from step to step); otherwise they stay initializers.
  const spectralNames = options.spectralState ? paramSpecs(config).filter((s) => s.role.startsWith('spectral.')).map((s) => s.name) : [];
  const spectralUpdates = new Map<string, Value>();
  const values = encodeBody(w, g, assemble(w, g, {
    fold: false,
    foldNetworkActNorms: true,
    asInputs: new Set([...trainable, ...spectralNames]),
    spectralUpdates: options.spectralState ? (name, value) => spectralUpdates.set(name, value) : undefined,
  }));
  return { g, values, trainable, spectralUpdates };
}
