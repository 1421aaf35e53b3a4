import { GlowConfig } from '../src/glow/config.js';

/** RGB models, where ONNX Runtime's WebGPU provider gets convolutions wrong in its default layout
 * unless the export pads them (builder/passes/conv-channels.ts): the two sizes of issue 15,
 * class-conditional, affine with LU; hidden 18 makes the networks' last 3x3 conv a padded one
 * too. For the WebGPU tests in Node and in the page. */
export const RGB_CONFIGS: readonly GlowConfig[] = [
  {
    imageShape: [3, 16, 16], K: 2, L: 2, hiddenChannels: 12, coupling: 'affine', permutation: 'invconv',
    lu: true, learnTop: true, numClasses: 4, nBits: 5, actnormScale: 1,
  },
  {
    imageShape: [3, 32, 32], K: 2, L: 3, hiddenChannels: 18, coupling: 'affine', permutation: 'invconv',
    lu: true, learnTop: true, numClasses: 4, nBits: 5, actnormScale: 1,
  },
];
/** eps, bpd and decoded x of RGB_CONFIGS on WebGPU against the CPU provider: float32 rounding is
 * ~1e-6 there, the layout bug ~1. */
export const RGB_TOLERANCE = 1e-5;
