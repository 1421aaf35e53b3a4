// The names training gives its tensors, in one place: the graphs (training, optimizer, fused
// step, ONNX Runtime's artifacts), the GPU-resident state that feeds their outputs back as inputs,
// and the checkpoint that saves them must agree on every one.
//
//   parameter p: p, p_grad, p.exp_avg, p.exp_avg_sq (Adam's moments), ema.p (the average)
//   a graph's new value of any of them: <name>.updated
//   ONNX Runtime's gradient accumulation: p_grad.accumulation.buffer -> .accumulation.out,
//   reset by lazy_reset_grad

/** Adam's first and second moment of a parameter (PyTorch's state names). */
export const momentNames = (param: string) => ({ m: `${param}.exp_avg`, v: `${param}.exp_avg_sq` });
/** The output that holds a step's new value of an input. */
export const updatedName = (name: string) => `${name}.updated`;
export const gradName = (param: string) => `${param}_grad`;
/** The exponential moving average of a parameter. */
export const emaName = (param: string) => `ema.${param}`;

export const LAZY_RESET_GRAD = 'lazy_reset_grad';
export const gradBufferName = (param: string) => `${gradName(param)}.accumulation.buffer`;
export const gradAccumulatedName = (param: string) => `${gradName(param)}.accumulation.out`;
