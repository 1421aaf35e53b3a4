// Squeeze: [N, C, H, W] -> [N, 4C, H/2, W/2], output channel c*4 + 2*i + j holds pixel
// (2h + i, 2w + j) of channel c. Volume-preserving: log-det 0.

import { Value, GraphBuilder } from '../../builder/graph.js';
import * as op from '../../builder/ops.js';

export function encode(g: GraphBuilder, x: Value): Value {
  return g.scope('squeeze', () => {
    const [, C, H, W] = x.shape as number[];
    const blocks = op.reshape(g, x, [0, C, H / 2, 2, W / 2, 2]);
    const moved = op.transpose(g, blocks, [0, 1, 3, 5, 2, 4]);
    return op.reshape(g, moved, [0, C * 4, H / 2, W / 2]);
  });
}

/** DepthToSpace in CRD mode reads channel c*4 + 2*i + j into pixel (2h + i, 2w + j). */
export function decode(g: GraphBuilder, y: Value): Value {
  return g.scope('unsqueeze', () => op.depthToSpace(g, y, 2, 'CRD'));
}
