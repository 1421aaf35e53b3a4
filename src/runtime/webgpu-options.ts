// The one definition of the WebGPU execution provider's options, for every session the project
// creates: onnxruntime-node (providers.ts, train.ts) and onnxruntime-web in the page's worker. It
// imports nothing at run time, so the browser bundle can take it.
//
// NCHW because ONNX Runtime's WebGPU provider (1.30) computes some convolutions wrongly in its
// default NHWC layout (a 3x3 Conv with 6 input channels: the first coupling network of every RGB
// Glow). onnxruntime-common's typings call NCHW the default; the provider's default is NHWC, so
// the layout is asked for explicitly. Exported graphs are right under the defaults too
// (builder/passes/conv-channels.ts), for users who do not pass these options.

import type { InferenceSession } from 'onnxruntime-common';

export const WEBGPU_EP: InferenceSession.WebGpuExecutionProviderOption = Object.freeze({ name: 'webgpu', preferredLayout: 'NCHW' });
