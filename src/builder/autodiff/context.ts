// What a gradient rule is given and may throw, and the small readers every rule shares (the op
// table in rules.ts and the convolution rule in conv.ts).

import { GraphBuilder, Node, tensor, Tensor, Value } from '../graph.js';

export interface RuleContext {
  g: GraphBuilder;
  node: Node;
  /** The gradient of each output of the node (zeros for an output no gradient reaches). */
  dy: readonly Value[];
  /** Which inputs need a gradient. */
  needs: readonly boolean[];
  /** The data of input i when it is an initializer (indices, axes, shapes), else undefined. */
  constant(i: number): Tensor | undefined;
}

/** Returns the gradient of each input of the node, aligned with node.inputs. */
export type GradientRule = (ctx: RuleContext) => (Value | undefined)[];

/** An op's attributes or inputs are outside what its rule supports. */
export class UnsupportedGradientError extends Error {
  override name = 'UnsupportedGradientError';
  constructor(node: Node, why: string) {
    super(`cannot differentiate ${node.op} node ${node.name}: ${why}`);
  }
}

/** A scalar constant of the dtype of `like`. */
export function scalarOf(g: GraphBuilder, like: Value, value: number, hint = 'c'): Value {
  return g.constant(tensor(like.dtype, [], [value]), hint);
}

/** Integer data of a constant input (axes, indices, starts...), required. */
export function constantInts(ctx: RuleContext, i: number, what: string): number[] {
  const t = ctx.constant(i);
  if (!t) throw new UnsupportedGradientError(ctx.node, `${what} (input ${i}) must be a constant initializer`);
  return Array.from(t.data);
}

export function staticDim(ctx: RuleContext, v: Value, axis: number): number {
  const d = v.shape?.[axis];
  if (typeof d !== 'number') throw new UnsupportedGradientError(ctx.node, `axis ${axis} of ${v} must be static`);
  return d;
}
