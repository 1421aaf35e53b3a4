import { env, loadGlowModel, pixelsToImageData, quantize, sampleEps } from 'glow-onnx/web';

// Where this app serves onnxruntime-web's .wasm files (copied from onnxruntime-web/dist).
env.wasm.wasmPaths = new URL('./ort/', location.href).href;

const params = new URLSearchParams(location.search);
// WebGPU when the browser can run the model there, wasm otherwise (or when ?backend=wasm).
const { model, config, backend } = await loadGlowModel('./model/', {
  backend: params.get('backend') === 'wasm' ? 'wasm' : 'auto',
});

const n = 4;
const x = await model.decode(sampleEps(config, n, 1234), 0.7);
const pixels = quantize(x, config.nBits);

// One canvas per sample, at the model's size.
for (let i = 0; i < n; i++) {
  const [, height, width] = config.imageShape;
  const canvas = Object.assign(document.createElement('canvas'), { width, height });
  canvas.getContext('2d')!.putImageData(pixelsToImageData(pixels, config.imageShape, i), 0, 0);
  document.body.append(canvas);
}
document.title = `${n} samples on ${backend}`;
Object.assign(window, { glowResult: { backend, x: Array.from(x) } });
