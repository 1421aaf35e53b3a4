// Execution providers of onnxruntime-node: tried in the order the user gives, each failure
// kept, and all of them combined into one error when none works.

import ort from 'onnxruntime-node';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SessionChoices, sessionOptions } from './session-options.js';

export { sessionOptions };

export type ProviderName = 'tensorrt' | 'cuda' | 'webgpu' | 'cpu';
export const PROVIDERS: readonly ProviderName[] = ['tensorrt', 'cuda', 'webgpu', 'cpu'];

export interface ProviderOptions extends SessionChoices {
  /** Priority order; the first that works is used. Default: ['cpu']. */
  executionProviders?: ProviderName[];
  /** Refuse fallback: only the first provider is tried. */
  strict?: boolean;
  tensorrtFp16?: boolean;
  /** Folder where TensorRT keeps built engines between runs. */
  tensorrtEngineCacheDir?: string;
}

export interface ProviderFailure {
  provider: ProviderName;
  reason: string;
}

export class ProviderError extends Error {
  override name = 'ProviderError';
  constructor(readonly failures: ProviderFailure[]) {
    super(`no execution provider could run the model: ${failures.map((f) => `${f.provider}: ${f.reason}`).join(' | ')}`);
  }
}

export const GPU_LIBRARY_HELP = 'onnxruntime-node downloads its CUDA/TensorRT libraries separately. On a machine with an NVIDIA driver, '
  + 'CUDA 12 and cuDNN 9 (and TensorRT 10 on LD_LIBRARY_PATH for tensorrt), run: '
  + 'ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js';

/** The first line of an ONNX Runtime error, with a remedy where we know one. */
export function explainFailure(provider: ProviderName, error: unknown): string {
  const message = String((error as Error)?.message ?? error).split('\n')[0].trim();
  if ((provider === 'cuda' || provider === 'tensorrt') && /shared library|cannot open shared object|libcu|libnvinfer/i.test(message)) {
    return `${message}. ${GPU_LIBRARY_HELP}`;
  }
  if (provider === 'webgpu' && /adapter/i.test(message)) {
    return `${message}. WebGPU needs a Vulkan driver: on Debian install chromium and set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json (software), or use a GPU driver`;
  }
  return message;
}

/** onnxruntime-node reads TensorRT's fp16 and engine-cache switches from the environment when
 * the provider is created: set them for that moment only, so one session's choice does not leak
 * into the next. */
export async function withTensorrtEnvironment<T>(opts: ProviderOptions, create: () => Promise<T>): Promise<T> {
  const settings: Record<string, string | undefined> = {
    ORT_TENSORRT_FP16_ENABLE: opts.tensorrtFp16 ? '1' : undefined,
    ORT_TENSORRT_ENGINE_CACHE_ENABLE: opts.tensorrtEngineCacheDir ? '1' : undefined,
    ORT_TENSORRT_CACHE_PATH: opts.tensorrtEngineCacheDir,
  };
  const saved = Object.fromEntries(Object.keys(settings).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(settings)) if (v !== undefined) process.env[k] = v;
  try {
    return await create();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

export interface ProvidedSession {
  session: ort.InferenceSession;
  provider: ProviderName;
  /** Providers tried before this one, and why they failed. */
  failures: ProviderFailure[];
}

export async function createSession(model: Uint8Array, opts: ProviderOptions = {}): Promise<ProvidedSession> {
  const order = opts.executionProviders?.length ? opts.executionProviders : ['cpu' as const];
  for (const p of order) {
    if (!PROVIDERS.includes(p)) throw new ProviderError([{ provider: p, reason: `unknown provider (known: ${PROVIDERS.join(', ')})` }]);
  }
  const candidates = opts.strict ? order.slice(0, 1) : order;
  const failures: ProviderFailure[] = [];
  for (const provider of candidates) {
    try {
      const create = () => ort.InferenceSession.create(model, sessionOptions(provider, opts));
      const session = provider === 'tensorrt' ? await withTensorrtEnvironment(opts, create) : await create();
      return { session, provider, failures };
    } catch (e) {
      failures.push({ provider, reason: explainFailure(provider, e) });
    }
  }
  if (opts.strict && order.length > 1) failures.push({ provider: order[1], reason: 'not tried: strict mode refuses fallback' });
  throw new ProviderError(failures);
}

/** Nodes per execution provider, from one profiled run: where ONNX Runtime really put each op. */
export interface Placement {
  /** provider -> op type -> count */
  byProvider: Record<string, Record<string, number>>;
}

export async function profilePlacement(
  model: Uint8Array, provider: ProviderName, feeds: Record<string, ort.Tensor>, opts: ProviderOptions = {},
): Promise<Placement> {
  const dir = mkdtempSync(join(tmpdir(), 'glow-profile-'));
  try {
    const session = await ort.InferenceSession.create(model, { ...sessionOptions(provider, opts), enableProfiling: true, profileFilePrefix: join(dir, 'profile') });
    try {
      await session.run(feeds);
      session.endProfiling();
    } finally {
      await session.release();
    }
    const file = readdirSync(dir).find((f) => f.endsWith('.json'));
    if (!file) throw new Error('ONNX Runtime wrote no profile');
    const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { cat?: string; args?: { op_name?: string; provider?: string } }[];
    const byProvider: Record<string, Record<string, number>> = {};
    for (const e of events) {
      if (e.cat !== 'Node' || !e.args?.provider || !e.args.op_name) continue;
      const ops = (byProvider[e.args.provider] ??= {});
      ops[e.args.op_name] = (ops[e.args.op_name] ?? 0) + 1;
    }
    return { byProvider };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
