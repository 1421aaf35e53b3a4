// The page: controls and canvases on the main thread, every model run in the worker.
// URL parameters: ?model=URL (a model folder; default models/mnist/), ?backend=auto|webgpu|wasm.

import type { GlowConfig } from '../src/web/index.js';
// The images module alone: the entry would pull onnxruntime-web into the main thread's bundle.
import { imagePixels } from '../src/web/images.js';
import { drawGrid } from './grid.js';
import { BuiltinImage, builtinImages } from './images.js';
import type {
  Backend, BackendChoice, Envelope, LoadResult, ModelSource, Phase, Request, ResultOf, RoundTripReport, WorkerMessage,
} from './protocol.js';

const DEFAULT_MODEL = 'models/mnist/';
/** The shipped model whose inverse holds on more images off the data, offered where the default one fails. */
const STABLE_MODEL = 'models/mnist-stable/';

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el as T;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message || e.name : String(e);
}

// ---------------------------------------------------------------------------------------------
// The worker, as promises

type ProgressHandler = (phase: Phase, done: number, total: number, what?: string) => void;
interface Pending { resolve: (r: unknown) => void; reject: (e: Error) => void; onProgress?: ProgressHandler }

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const pending = new Map<number, Pending>();
let nextId = 1;

worker.onmessage = (event: MessageEvent<WorkerMessage>) => {
  const m = event.data;
  const p = pending.get(m.id);
  if (!p) return;
  if (m.type === 'progress') {
    p.onProgress?.(m.phase, m.done, m.total, m.what);
    return;
  }
  pending.delete(m.id);
  if (m.type === 'result') p.resolve(m.result);
  else p.reject(new Error(m.message));
};

function failAll(message: string): void {
  for (const p of pending.values()) p.reject(new Error(message));
  pending.clear();
}

worker.onerror = (event: ErrorEvent) => {
  event.preventDefault();
  const message = `the inference worker failed: ${event.message || 'its script could not be loaded (worker.js missing or served with a wrong MIME type?)'}`;
  failAll(message);
  showError('The page could not start', message, true);
};

function call<K extends Request['op']>(request: Extract<Request, { op: K }>, onProgress?: ProgressHandler, transfer: Transferable[] = []): Promise<ResultOf[K]> {
  const id = nextId++;
  return new Promise<ResultOf[K]>((resolve, reject) => {
    pending.set(id, { resolve: resolve as (r: unknown) => void, reject, onProgress });
    const envelope: Envelope = { id, request };
    worker.postMessage(envelope, transfer);
  });
}

// ---------------------------------------------------------------------------------------------
// State and status lines

interface State {
  config?: GlowConfig;
  /** The loaded model's folder URL; undefined for picked files. */
  modelBase?: string;
  backend?: Backend;
  builtins: BuiltinImage[];
  gridRenders: number;
  error: string | null;
}
const state: State = { builtins: [], gridRenders: 0, error: null };

function showError(title: string, text: string, fatal: boolean): void {
  state.error = text;
  $('error-title').textContent = title;
  $('error-text').textContent = text;
  $('error').hidden = false;
  if (fatal) for (const el of document.querySelectorAll<HTMLElement>('.needs-model')) el.hidden = true;
}

function clearError(): void {
  state.error = null;
  $('error').hidden = true;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** A <progress> and its text for one section. */
function progressFor(barId: string, textId: string) {
  const bar = $<HTMLProgressElement>(barId);
  const text = $(textId);
  return {
    start(message: string) {
      bar.hidden = false;
      bar.removeAttribute('value');
      text.textContent = message;
    },
    update: ((phase, done, total, what) => {
      bar.hidden = false;
      if (total > 0) {
        bar.max = total;
        bar.value = done;
      } else {
        bar.removeAttribute('value');
      }
      const verb = { download: 'Downloading', init: 'Preparing', encode: 'Encoding', decode: 'Decoding' }[phase];
      if (phase === 'download') {
        text.textContent = `${verb} ${what ?? 'model'}: ${formatBytes(done)}${total > 0 ? ` of ${formatBytes(total)}` : ''}`;
      } else if (phase === 'init') {
        text.textContent = `${verb} the model (${what ?? 'creating sessions'})…`;
      } else {
        text.textContent = `${verb}… ${done} / ${total}`;
      }
    }) as ProgressHandler,
    done(message: string) {
      bar.hidden = true;
      text.textContent = message;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Samples

const temperature = $<HTMLInputElement>('temperature');
const seedInput = $<HTMLInputElement>('seed');
const gridSize = $<HTMLSelectElement>('grid-size');
const sampleClass = $<HTMLSelectElement>('sample-class');
const gridCanvas = $<HTMLCanvasElement>('grid');
const sampleProgress = progressFor('sample-progress', 'sample-status');

function zoomFor(config: GlowConfig): number {
  return Math.max(1, Math.round(84 / config.imageShape[1]));
}

function sampleLabels(config: GlowConfig, n: number, columns: number): number[] | undefined {
  if (!config.numClasses) return undefined;
  const choice = sampleClass.value;
  // "all": one class per row, cycling through the classes.
  return Array.from({ length: n }, (_, i) => (choice === 'all' ? Math.floor(i / columns) % config.numClasses : Number(choice)));
}

function currentSeed(): number {
  const seed = Math.floor(Number(seedInput.value));
  return Number.isSafeInteger(seed) && seed >= 0 ? seed : 0;
}

async function drawSamples(): Promise<void> {
  const config = state.config;
  if (!config) return;
  const columns = Number(gridSize.value);
  const n = columns * columns;
  const t = Number(temperature.value);
  sampleProgress.start(`Sampling ${n} images…`);
  const r = await call({ op: 'sample', seed: currentSeed(), temperature: t, n, labels: sampleLabels(config, n, columns) }, sampleProgress.update);
  drawGrid(gridCanvas, r.pixels, n, { shape: config.imageShape, columns }, zoomFor(config));
  state.gridRenders++;
  gridCanvas.dataset.renders = String(state.gridRenders);
  sampleProgress.done(`${n} samples at temperature ${t.toFixed(2)}, seed ${currentSeed()} · ${formatMs(r.ms)} on ${state.backend}`);
}

/** Runs `task` now, or once more after the run in progress when asked again meanwhile (a slider
 * being dragged asks many times; only the latest setting matters). */
function latest(task: () => Promise<void>, onError: (e: unknown) => void): () => void {
  let running = false;
  let again = false;
  return () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    void (async () => {
      do {
        again = false;
        try {
          await task();
        } catch (e) {
          onError(e);
        }
      } while (again);
      running = false;
    })();
  };
}

const requestSamples = latest(drawSamples, (e) => {
  sampleProgress.done('');
  showError('Sampling failed', messageOf(e), false);
});

temperature.addEventListener('input', () => {
  $('temperature-value').textContent = Number(temperature.value).toFixed(2);
  requestSamples();
});
seedInput.addEventListener('change', requestSamples);
gridSize.addEventListener('change', requestSamples);
sampleClass.addEventListener('change', requestSamples);
$('reseed').addEventListener('click', () => {
  seedInput.value = String(Math.floor(Math.random() * 1_000_000));
  requestSamples();
});

// ---------------------------------------------------------------------------------------------
// Image pickers (built-in test images or an upload) for reconstruction and interpolation

interface Picked { pixels: Uint8Array; label?: number }

class ImagePicker {
  private readonly select = document.createElement('select');
  private readonly file = document.createElement('input');
  private readonly classSelect = document.createElement('select');
  private readonly classLabel = document.createElement('label');
  private uploaded?: Blob;

  constructor(container: HTMLElement, private readonly initial: number, private readonly onChange: () => void) {
    this.select.setAttribute('aria-label', 'Image');
    this.file.type = 'file';
    this.file.accept = 'image/*';
    this.file.hidden = true;
    const upload = document.createElement('label');
    upload.className = 'button secondary';
    upload.textContent = 'Upload…';
    upload.append(this.file);
    this.classLabel.textContent = 'Class ';
    this.classLabel.append(this.classSelect);
    container.append(this.select, upload, this.classLabel);
    this.select.addEventListener('change', () => {
      const b = this.builtin();
      if (b && this.classSelect.options.length > b.label) this.classSelect.value = String(b.label);
      this.onChange();
    });
    this.classSelect.addEventListener('change', () => this.onChange());
    this.file.addEventListener('change', () => {
      const f = this.file.files?.[0];
      if (!f) return;
      this.uploaded = f;
      let option = this.select.querySelector<HTMLOptionElement>('option[value="upload"]');
      if (!option) {
        option = document.createElement('option');
        option.value = 'upload';
        this.select.append(option);
      }
      option.textContent = `Uploaded: ${f.name}`;
      this.select.value = 'upload';
      this.onChange();
    });
  }

  /** Refills the lists for a newly loaded model. */
  reset(config: GlowConfig, builtins: BuiltinImage[]): void {
    this.select.replaceChildren(...builtins.map((b, i) => new Option(b.name, String(i))));
    if (this.uploaded) {
      const option = new Option('Uploaded image', 'upload');
      this.select.append(option);
    }
    const index = builtins.length ? Math.min(this.initial, builtins.length - 1) : -1;
    if (index >= 0) this.select.value = String(index);
    else if (this.uploaded) this.select.value = 'upload';
    this.classLabel.hidden = config.numClasses === 0;
    this.classSelect.replaceChildren(...Array.from({ length: config.numClasses }, (_, c) => new Option(String(c), String(c))));
    const b = this.builtin();
    if (b && b.label < config.numClasses) this.classSelect.value = String(b.label);
  }

  private builtin(): BuiltinImage | undefined {
    return this.select.value === 'upload' ? undefined : state.builtins[Number(this.select.value)];
  }

  hasImage(): boolean {
    return this.select.value !== '';
  }

  async pick(config: GlowConfig): Promise<Picked> {
    let blob: Blob;
    if (this.select.value === 'upload' && this.uploaded) {
      blob = this.uploaded;
    } else {
      const b = this.builtin();
      if (!b) throw new Error('no image chosen: upload one');
      const response = await fetch(new URL(`images/${b.file}`, location.href));
      if (!response.ok) throw new Error(`cannot load images/${b.file}: HTTP ${response.status}`);
      blob = await response.blob();
    }
    const pixels = await imagePixels(blob, config.imageShape);
    return { pixels, label: config.numClasses ? Number(this.classSelect.value || 0) : undefined };
  }
}

/** Says, next to a picture, which of the input images it was drawn from do not round-trip
 * (decode(encode(x)) is not x), with the error: the picture is then the model's decode, not the
 * image. On the default model it links to the stable one. Hidden when every image comes back. */
function showRoundTrip(warning: HTMLElement, r: RoundTripReport, names: readonly string[], consequence: string): void {
  warning.hidden = r.failing.length === 0;
  if (warning.hidden) {
    warning.textContent = '';
    return;
  }
  const which = r.failing.map((n) => `${names[n]} (error ${r.errors[n].toExponential(1)})`).join(' and ');
  const verb = r.failing.length === 1 ? 'does' : 'do';
  warning.textContent = `${which[0].toUpperCase()}${which.slice(1)} ${verb} not round-trip through this model: |x − decode(encode(x))| is over its tolerance `
    + `${r.tolerance}, so ${consequence}. Images unlike the model's training data do this.`;
  if (state.modelBase === modelBase(DEFAULT_MODEL)) {
    const query = new URLSearchParams(location.search);
    query.set('model', STABLE_MODEL);
    const link = document.createElement('a');
    link.href = `?${query}`;
    link.textContent = 'the stable model';
    warning.append(' Try ', link, ', which inverts nearly all such images.');
  }
}

const reconProgress = progressFor('recon-progress', 'recon-status');
const reconWarning = $('recon-warning');
const reconPicker = new ImagePicker($('recon-picker'), 0, () => requestReconstruction());

async function drawReconstruction(): Promise<void> {
  const config = state.config;
  if (!config || !reconPicker.hasImage()) {
    reconProgress.done('Upload an image to reconstruct it.');
    return;
  }
  reconProgress.start('Encoding…');
  reconWarning.hidden = true;
  const image = await reconPicker.pick(config);
  const r = await call({ op: 'reconstruct', pixels: image.pixels.slice(), label: image.label, seed: 0 }, reconProgress.update);
  const both = new Uint8Array(image.pixels.length * 2);
  both.set(image.pixels);
  both.set(r.pixels, image.pixels.length);
  drawGrid($<HTMLCanvasElement>('recon-canvas'), both, 2, { shape: config.imageShape, columns: 2 }, zoomFor(config) * 2);
  reconProgress.done(`${r.bpd.toFixed(3)} bits/dim · largest round-trip error ${r.maxError.toExponential(1)} · ${formatMs(r.ms)}`);
  showRoundTrip(reconWarning, r.roundTrip, ['This image'], 'the reconstruction shows the model\'s decode, not the image');
}

const requestReconstruction = latest(drawReconstruction, (e) => {
  reconProgress.done('');
  showError('Reconstruction failed', messageOf(e), false);
});

const interpProgress = progressFor('interp-progress', 'interp-status');
const interpWarning = $('interp-warning');
const pickerA = new ImagePicker($('interp-picker-a'), 0, () => requestInterpolation());
const pickerB = new ImagePicker($('interp-picker-b'), 1, () => requestInterpolation());
const stepsInput = $<HTMLInputElement>('interp-steps');
stepsInput.addEventListener('change', () => requestInterpolation());

async function drawInterpolation(): Promise<void> {
  const config = state.config;
  if (!config || !pickerA.hasImage() || !pickerB.hasImage()) {
    interpProgress.done('Upload two images to interpolate between them.');
    return;
  }
  const steps = Math.min(16, Math.max(2, Math.round(Number(stepsInput.value) || 8)));
  interpProgress.start('Encoding…');
  interpWarning.hidden = true;
  const [a, b] = [await pickerA.pick(config), await pickerB.pick(config)];
  const r = await call({ op: 'interpolate', a: a.pixels, b: b.pixels, steps, labelA: a.label, labelB: b.label }, interpProgress.update);
  drawGrid($<HTMLCanvasElement>('interp-canvas'), r.pixels, steps, { shape: config.imageShape, columns: steps }, zoomFor(config) * 2);
  interpProgress.done(`${steps} steps from A to B · ${formatMs(r.ms)}`);
  showRoundTrip(interpWarning, r.roundTrip, ['Image A', 'image B'], 'the path\'s end at such an image shows the model\'s decode, not the image');
}

const requestInterpolation = latest(drawInterpolation, (e) => {
  interpProgress.done('');
  showError('Interpolation failed', messageOf(e), false);
});

// ---------------------------------------------------------------------------------------------
// Loading a model

const params = new URLSearchParams(location.search);
const backendParam = (params.get('backend') ?? 'auto').toLowerCase();
const modelProgress = progressFor('model-progress', 'model-status');
const modelUrl = $<HTMLInputElement>('model-url');
const backendBadge = $('backend');

function describe(config: GlowConfig, dtype: string): string {
  const [c, h, w] = config.imageShape;
  const classes = config.numClasses ? `${config.numClasses} classes` : 'unconditional';
  const precision = dtype === 'float32' ? '' : ` · ${dtype}`;
  return `${c}×${h}×${w} · K=${config.K} · L=${config.L} · ${config.hiddenChannels} hidden · ${config.coupling} · ${config.nBits} bits · ${classes}${precision}`;
}

function setBackend(backend: Backend | '', text: string): void {
  backendBadge.dataset.backend = backend;
  backendBadge.textContent = text;
}

async function loadModel(source: ModelSource, backend: BackendChoice, transfer: Transferable[] = []): Promise<LoadResult> {
  clearError();
  setBackend('', 'loading…');
  state.config = undefined;
  state.modelBase = source.kind === 'url' ? source.base : undefined;
  for (const el of document.querySelectorAll<HTMLElement>('.needs-model')) el.hidden = true;
  modelProgress.start(source.kind === 'url' ? `Loading ${source.base}…` : `Opening ${source.name}…`);
  let r: LoadResult;
  try {
    r = await call({ op: 'load', source, backend }, modelProgress.update, transfer);
  } catch (e) {
    modelProgress.done('No model loaded.');
    setBackend('', 'no model');
    let text = messageOf(e);
    if (source.kind === 'url' && /HTTP 404/.test(text)) {
      text += source.base === modelBase(DEFAULT_MODEL)
        ? '. This build ships no model at models/mnist/: export one there (glow-onnx export --out models/mnist) and rebuild, or pick a model folder by URL or with "Open files…".'
        : '. Check the URL: the folder must hold glow.json, encode.onnx and decode.onnx as written by glow-onnx export.';
    }
    showError('The model could not be loaded', text, true);
    throw e;
  }
  state.config = r.config;
  state.backend = r.backend;
  setBackend(r.backend, r.backend);
  const note = $('backend-note');
  note.hidden = !r.note;
  note.textContent = r.note ?? '';
  modelProgress.done(`${r.name} · ${describe(r.config, r.dtype)} · loaded in ${formatMs(r.ms)} · running on ${r.backend}`);
  $('class-control').hidden = r.config.numClasses === 0;
  sampleClass.replaceChildren(
    new Option('all (one per row)', 'all'),
    ...Array.from({ length: r.config.numClasses }, (_, c) => new Option(String(c), String(c))),
  );
  for (const p of [reconPicker, pickerA, pickerB]) p.reset(r.config, state.builtins);
  for (const el of document.querySelectorAll<HTMLElement>('.needs-model')) el.hidden = false;
  requestSamples();
  requestReconstruction();
  requestInterpolation();
  return r;
}

function modelBase(url: string): string {
  const resolved = new URL(url, location.href);
  if (!resolved.pathname.endsWith('/')) resolved.pathname += '/';
  return resolved.href;
}

function backendChoice(): BackendChoice {
  return backendParam === 'wasm' || backendParam === 'webgpu' ? backendParam : 'auto';
}

$<HTMLFormElement>('model-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const url = modelUrl.value.trim() || DEFAULT_MODEL;
  const query = new URLSearchParams(location.search);
  query.set('model', url);
  history.replaceState(null, '', `?${query}`);
  loadModel({ kind: 'url', base: modelBase(url), name: url }, backendChoice()).catch(() => {});
});

$<HTMLInputElement>('model-files').addEventListener('change', async (event) => {
  const input = event.target as HTMLInputElement;
  const files = [...(input.files ?? [])];
  input.value = '';
  const byName = new Map(files.map((f) => [f.name, f]));
  const missing = ['glow.json', 'encode.onnx', 'decode.onnx'].filter((n) => !byName.has(n));
  if (missing.length) {
    showError('The model could not be loaded', `pick the three files of a model folder together (glow.json, encode.onnx, decode.onnx); missing: ${missing.join(', ')}`, true);
    return;
  }
  const [glowJson, encode, decode] = await Promise.all([
    byName.get('glow.json')!.text(),
    byName.get('encode.onnx')!.arrayBuffer(),
    byName.get('decode.onnx')!.arrayBuffer(),
  ]);
  // Anything else picked (external data files named in glow.json) goes along.
  const others: Record<string, ArrayBuffer> = {};
  for (const f of files) if (!['glow.json', 'encode.onnx', 'decode.onnx'].includes(f.name)) others[f.name] = await f.arrayBuffer();
  modelUrl.value = '';
  const source: ModelSource = { kind: 'files', name: 'local files', glowJson, encode, decode, others };
  loadModel(source, backendChoice(), [encode, decode, ...Object.values(others)]).catch(() => {});
});

// ---------------------------------------------------------------------------------------------
// Start, and the hook that the browser tests drive

const initialModel = params.get('model') ?? DEFAULT_MODEL;
modelUrl.value = initialModel;

const ready = (async () => {
  state.builtins = await builtinImages(location.href);
  const r = await loadModel({ kind: 'url', base: modelBase(initialModel), name: initialModel }, backendChoice());
  return { backend: r.backend, config: r.config, note: r.note };
})();
ready.catch(() => {});

declare global {
  interface Window {
    glowTest: {
      ready: Promise<{ backend: Backend; config: GlowConfig; note?: string }>;
      /** Decoded x of n samples from sampleEps(config, n, seed), as plain numbers. */
      sample(seed: number, temperature: number, n: number, labels?: number[]): Promise<number[]>;
      /** eps_1..eps_L and bits/dim of n dequantised images x [n, C, H, W], as plain numbers. */
      encode(x: number[], n: number, labels?: number[]): Promise<{ eps: number[][]; bpd: number[] }>;
      /** Decoded x of given latents eps_1..eps_L, as plain numbers. */
      decode(eps: number[][], temperature: number, labels?: number[]): Promise<number[]>;
      backend(): Backend | undefined;
      gridRenders(): number;
      error(): string | null;
    };
  }
}

window.glowTest = {
  ready,
  async sample(seed, t, n, labels) {
    const r = await call({ op: 'sample', seed, temperature: t, n, labels });
    return Array.from(r.x);
  },
  async encode(x, n, labels) {
    const r = await call({ op: 'encode', x: Float32Array.from(x), n, labels });
    return { eps: r.eps.map((e) => Array.from(e)), bpd: Array.from(r.bpd) };
  },
  async decode(eps, t, labels) {
    const r = await call({ op: 'decode', eps: eps.map((e) => Float32Array.from(e)), temperature: t, labels });
    return Array.from(r.x);
  },
  backend: () => state.backend,
  gridRenders: () => state.gridRenders,
  error: () => state.error,
};
