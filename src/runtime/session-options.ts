// The one definition of the session options for every session the project creates:
// onnxruntime-node (providers, the training loop, CPU helpers) and onnxruntime-web (glow-onnx/web
// and the page's worker). It imports nothing at run time, so the browser bundle can take it.
//
// WebGPU asks for NCHW because ONNX Runtime's WebGPU provider (1.30) computes some convolutions wrongly in its
// default NHWC layout (a 3x3 Conv with 6 input channels: the first coupling network of every RGB
// Glow). onnxruntime-common's typings call NCHW the default; the provider's default is NHWC, so
// the layout is asked for explicitly. Exported graphs are right under the defaults too
// (builder/passes/conv-channels.ts), for users who do not pass these options.

import type { InferenceSession } from 'onnxruntime-common';

export const WEBGPU_EP: InferenceSession.WebGpuExecutionProviderOption = Object.freeze({ name: 'webgpu', preferredLayout: 'NCHW' });

/** Where a session runs: onnxruntime-node's providers, or onnxruntime-web's wasm. */
export type SessionBackend = 'tensorrt' | 'cuda' | 'webgpu' | 'wasm' | 'cpu';

export interface SessionChoices {
  /** Intra-op threads (CPU); default: ONNX Runtime's choice. */
  threads?: number;
  /** GPU for CUDA and TensorRT; default 0. */
  deviceId?: number;
  /** The side files of a model whose initializers are external data, by the location it names. */
  externalData?: { path: string; data: Uint8Array }[];
  /** CPU threads spin between ops waiting for work (ONNX Runtime's default, true). Turn it off
   * when encode and decode alternate batch by batch: each session's idle threads then spin
   * against the other's work, while one session alone loses little (the measurement:
   * docs/results.md, Performance). */
  spinWait?: boolean;
  /** Errors only: ONNX Runtime warns about shape ops it keeps on the CPU on purpose. */
  quiet?: boolean;
}

export function sessionOptions(backend: SessionBackend, choices: SessionChoices = {}): InferenceSession.SessionOptions {
  const deviceId = choices.deviceId ?? 0;
  const ep: InferenceSession.ExecutionProviderConfig =
    backend === 'cuda' || backend === 'tensorrt' ? { name: backend, deviceId }
      : backend === 'webgpu' ? WEBGPU_EP
        : backend;
  return {
    executionProviders: [ep],
    graphOptimizationLevel: 'all',
    ...(choices.threads ? { intraOpNumThreads: choices.threads } : {}),
    ...(choices.externalData?.length ? { externalData: choices.externalData } : {}),
    ...(choices.spinWait === false ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
    ...(choices.quiet ? { logSeverityLevel: 3 as const } : {}),
  };
}
