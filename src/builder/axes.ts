// Axis and index arguments as ONNX takes them: negative counts from the end.

/** `axis` in [0, rank), or an error naming `what` (when given) for an axis outside the rank. */
export function normAxis(axis: number, rank: number, what?: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new Error(`${what ? `${what}: ` : ''}axis ${axis} out of range for rank ${rank}`);
  return a;
}

/**
 * The positions ONNX Slice takes along one axis of size `dim`: start, start + step, ... while
 * before `end`. Negative starts and ends count from the end, and both are clamped as the operator
 * clamps them (to [0, dim] going forward, to [-1, dim - 1] going backward); `count` is how many.
 */
export function sliceRange(start: number, end: number, step: number, dim: number): { start: number; end: number; count: number } {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v < 0 ? v + dim : v, lo), hi);
  const first = step > 0 ? clamp(start, 0, dim) : clamp(start, 0, dim - 1);
  const last = step > 0 ? clamp(end, 0, dim) : clamp(end, -1, dim - 1);
  return { start: first, end: last, count: Math.max(0, Math.ceil((last - first) / step)) };
}
