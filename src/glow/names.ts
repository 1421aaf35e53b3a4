// Tensor names and shapes of a Glow model, exactly those of the y0ast/Glow-PyTorch state_dict,
// so that a native checkpoint loads into that port with load_state_dict(strict=True).
//
// FlowNet.layers holds, per level i (0-based): a SqueezeLayer, K FlowSteps, then a Split2d on
// every level but the last. Squeeze and Split2d have no index gap, so the module index of a
// layer is i * (K + 2) + offset.

import { GlowConfig, levelChannels, levelLU } from './config.js';

export type ParamRole =
  | 'actnorm.bias' | 'actnorm.logs'
  | 'invconv.weight' | 'invconv.p' | 'invconv.sign_s' | 'invconv.lower' | 'invconv.log_s' | 'invconv.upper'
  | 'conv.weight' | 'conv.bias' | 'zeros.logs'
  | 'prior_h' | 'linear.weight' | 'linear.bias'
  | 'spectral.u' | 'spectral.v';

export interface ParamSpec {
  name: string;
  shape: number[];
  role: ParamRole;
  /** Fixed buffers (P, sign_s, prior_h) are not trained, nor is a plain 1x1 convolution's W
   * (its log-det gradient W^-T needs a matrix inverse, which ONNX lacks: model.ts), nor are the
   * power-iteration vectors of spectral normalisation, which the train step updates itself. */
  trainable: boolean;
}

/** The convs of a coupling network that spectral normalisation bounds (config.lipschitz), by
 * module prefix: each has `${b}.conv.weight`. */
export function spectralBlocks(stepPrefixName: string): string[] {
  return [0, 2, 4].map((i) => `${stepPrefixName}.block.${i}`);
}

/** The power-iteration vectors of a spectrally normalised conv: u over its output channels, v
 * over its flattened input window, named after PyTorch's spectral_norm buffers. */
export function spectralVectors(block: string): { u: string; v: string } {
  return { u: `${block}.conv.weight_u`, v: `${block}.conv.weight_v` };
}

/** Every spectrally normalised conv of a model, in paramSpecs order (none without lipschitz). */
export function normalisedConvs(config: GlowConfig): string[] {
  if (config.lipschitz === undefined) return [];
  return Array.from({ length: config.L }, (_, level) => Array.from({ length: config.K }, (_, step) => spectralBlocks(stepPrefix(config, level, step)))).flat(2);
}

export function stepPrefix(config: GlowConfig, level: number, step: number): string {
  return `flow.layers.${level * (config.K + 2) + 1 + step}`;
}

export function splitPrefix(config: GlowConfig, level: number): string {
  return `flow.layers.${level * (config.K + 2) + config.K + 1}`;
}

/** Every tensor of the model, in nn.Module.state_dict order (own tensors, then children). */
export function paramSpecs(config: GlowConfig): ParamSpec[] {
  const specs: ParamSpec[] = [];
  const add = (name: string, shape: number[], role: ParamRole, trainable = true) =>
    specs.push({ name, shape, role, trainable });
  const hidden = config.hiddenChannels;
  const top = levelChannels(config, config.L);
  const [, H, W] = config.imageShape;
  // Glow's own buffer comes before its children's tensors.
  add('prior_h', [1, 2 * top, H >> config.L, W >> config.L], 'prior_h', false);

  for (let level = 0; level < config.L; level++) {
    const C = levelChannels(config, level + 1);
    const half = C / 2;
    for (let step = 0; step < config.K; step++) {
      const p = stepPrefix(config, level, step);
      add(`${p}.actnorm.bias`, [1, C, 1, 1], 'actnorm.bias');
      add(`${p}.actnorm.logs`, [1, C, 1, 1], 'actnorm.logs');
      if (config.permutation === 'invconv') {
        if (levelLU(config, level)) {
          // Parameters first, then buffers, as nn.Module.state_dict orders them.
          add(`${p}.invconv.lower`, [C, C], 'invconv.lower');
          add(`${p}.invconv.log_s`, [C], 'invconv.log_s');
          add(`${p}.invconv.upper`, [C, C], 'invconv.upper');
          add(`${p}.invconv.p`, [C, C], 'invconv.p', false);
          add(`${p}.invconv.sign_s`, [C], 'invconv.sign_s', false);
        } else {
          add(`${p}.invconv.weight`, [C, C], 'invconv.weight', false);
        }
      }
      const out = config.coupling === 'affine' ? C : half;
      add(`${p}.block.0.conv.weight`, [hidden, half, 3, 3], 'conv.weight');
      add(`${p}.block.0.actnorm.bias`, [1, hidden, 1, 1], 'actnorm.bias');
      add(`${p}.block.0.actnorm.logs`, [1, hidden, 1, 1], 'actnorm.logs');
      add(`${p}.block.2.conv.weight`, [hidden, hidden, 1, 1], 'conv.weight');
      add(`${p}.block.2.actnorm.bias`, [1, hidden, 1, 1], 'actnorm.bias');
      add(`${p}.block.2.actnorm.logs`, [1, hidden, 1, 1], 'actnorm.logs');
      add(`${p}.block.4.logs`, [out, 1, 1], 'zeros.logs');
      add(`${p}.block.4.conv.weight`, [out, hidden, 3, 3], 'conv.weight');
      add(`${p}.block.4.conv.bias`, [out], 'conv.bias');
    }
    if (level < config.L - 1) {
      const p = splitPrefix(config, level);
      add(`${p}.conv.logs`, [C, 1, 1], 'zeros.logs');
      add(`${p}.conv.conv.weight`, [C, half, 3, 3], 'conv.weight');
      add(`${p}.conv.conv.bias`, [C], 'conv.bias');
    }
  }
  if (config.learnTop) {
    add('learn_top_fn.logs', [2 * top, 1, 1], 'zeros.logs');
    add('learn_top_fn.conv.weight', [2 * top, 2 * top, 3, 3], 'conv.weight');
    add('learn_top_fn.conv.bias', [2 * top], 'conv.bias');
  }
  if (config.numClasses > 0) {
    add('project_ycond.logs', [2 * top], 'zeros.logs');
    add('project_ycond.linear.weight', [2 * top, config.numClasses], 'linear.weight');
    add('project_ycond.linear.bias', [2 * top], 'linear.bias');
    add('project_class.logs', [config.numClasses], 'zeros.logs');
    add('project_class.linear.weight', [config.numClasses, top], 'linear.weight');
    add('project_class.linear.bias', [config.numClasses], 'linear.bias');
  }
  if (config.lipschitz !== undefined) {
    // After every module's tensors, so that a model without them keeps its order.
    for (let level = 0; level < config.L; level++) {
      const half = levelChannels(config, level + 1) / 2;
      const out = config.coupling === 'affine' ? 2 * half : half;
      for (let step = 0; step < config.K; step++) {
        const [b0, b2, b4] = spectralBlocks(stepPrefix(config, level, step));
        for (const [block, rows, cols] of [[b0, hidden, half * 9], [b2, hidden, hidden], [b4, out, hidden * 9]] as const) {
          add(spectralVectors(block).u, [rows], 'spectral.u', false);
          add(spectralVectors(block).v, [cols], 'spectral.v', false);
        }
      }
    }
  }
  return specs;
}
