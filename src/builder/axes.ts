// Axis arguments as ONNX takes them: negative counts from the end.

/** `axis` in [0, rank), or an error naming `what` (when given) for an axis outside the rank. */
export function normAxis(axis: number, rank: number, what?: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new Error(`${what ? `${what}: ` : ''}axis ${axis} out of range for rank ${rank}`);
  return a;
}
