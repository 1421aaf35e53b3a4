// Floating-point work of one image through encode (decode runs the same convolutions): two
// operations per multiply-accumulate of every convolution the exported (folded) graphs run;
// elementwise work is left out. The benchmark divides it by time to report GFLOP/s.

import { GlowConfig } from './config.js';

export function convFlopsPerImage(c: GlowConfig): number {
  let [C, H, W] = c.imageShape;
  let macs = 0;
  const hidden = c.hiddenChannels;
  for (let level = 1; level <= c.L; level++) {
    C *= 4;
    H /= 2;
    W /= 2;
    const networkOutputs = c.coupling === 'affine' ? C : C / 2;
    // ActNorm and the channel mix, folded into one 1x1 conv (a permutation too), then the
    // coupling network: 3x3 on half the channels, 1x1, 3x3 to the shift (and scale).
    macs += c.K * (C * C + 9 * (C / 2) * hidden + hidden * hidden + 9 * hidden * networkOutputs) * H * W;
    if (level < c.L) {
      macs += 9 * (C / 2) * C * H * W; // the split prior's conv
      C /= 2;
    }
  }
  // The top prior (learn_top) does not depend on the image: folded at export.
  return 2 * macs;
}
