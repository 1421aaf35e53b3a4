// Messages between the page (main.ts) and the inference worker (worker.ts). Every request
// carries an id; the worker answers it with progress messages and then one result or one error.

import type { Backend, BackendChoice, GlowConfig } from '../src/web/index.js';

export type { Backend, BackendChoice };

export type ModelSource =
  /** A model directory by URL (absolute, ending in '/'): glow.json, encode.onnx, decode.onnx. */
  | { kind: 'url'; base: string; name?: string }
  /** The files picked by the user: the three of every model, and any others (external data). */
  | { kind: 'files'; name: string; glowJson: string; encode: ArrayBuffer; decode: ArrayBuffer; others: Record<string, ArrayBuffer> };

export interface LoadRequest { op: 'load'; source: ModelSource; backend: BackendChoice }
export interface LoadResult {
  config: GlowConfig;
  /** Weights and compute precision from glow.json ('float32' when it does not say). */
  dtype: string;
  backend: Backend;
  /** Why the backend is not the preferred one (auto mode falling back to wasm). */
  note?: string;
  /** Where the model came from, for display. */
  name: string;
  ms: number;
}

export interface SampleRequest { op: 'sample'; seed: number; temperature: number; n: number; labels?: number[] }
export interface SampleResult { x: Float32Array; pixels: Uint8Array; ms: number }

export interface ReconstructRequest {
  op: 'reconstruct';
  /** One image, 8-bit CHW at the model's shape. */
  pixels: Uint8Array;
  label?: number;
  /** Seed of the uniform dequantisation noise that bits/dim is measured with. */
  seed: number;
}
/** How far decode(encode(x)) lands from each input image (the library's RoundTrip, per image). */
export interface RoundTripReport {
  /** max |x - decode(encode(x))| of each input image, in the request's order (NaN: the decode gave NaN). */
  errors: number[];
  /** The model dtype's bound: an image whose error is not under it does not round-trip. */
  tolerance: number;
  /** Indices of the images that do not round-trip. */
  failing: number[];
}

export interface ReconstructResult { pixels: Uint8Array; bpd: number; maxError: number; roundTrip: RoundTripReport; ms: number }

export interface InterpolateRequest { op: 'interpolate'; a: Uint8Array; b: Uint8Array; steps: number; labelA?: number; labelB?: number }
export interface InterpolateResult { pixels: Uint8Array; roundTrip: RoundTripReport; ms: number }

/** Latents and bits/dim of n images as they are (x already dequantised), for the tests. */
export interface EncodeRequest { op: 'encode'; x: Float32Array; n: number; labels?: number[] }
export interface EncodeResult { eps: Float32Array[]; bpd: Float32Array; ms: number }
/** x of given latents eps_1..eps_L, for the tests. */
export interface DecodeRequest { op: 'decode'; eps: Float32Array[]; temperature: number; labels?: number[] }
export interface DecodeResult { x: Float32Array; ms: number }

export type Request = LoadRequest | SampleRequest | ReconstructRequest | InterpolateRequest | EncodeRequest | DecodeRequest;

export interface ResultOf {
  load: LoadResult;
  sample: SampleResult;
  reconstruct: ReconstructResult;
  interpolate: InterpolateResult;
  encode: EncodeResult;
  decode: DecodeResult;
}

export type Phase = 'download' | 'init' | 'encode' | 'decode';

export type WorkerMessage =
  | { id: number; type: 'progress'; phase: Phase; done: number; total: number; what?: string }
  | { id: number; type: 'result'; result: unknown }
  | { id: number; type: 'error'; message: string };

export type Envelope = { id: number; request: Request };
