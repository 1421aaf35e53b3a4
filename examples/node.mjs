import { dequantize, loadGlowRuntime, quantize, sampleEps, SHIPPED_MODEL } from 'glow-onnx';

// The MNIST model in the package; any folder written by `glow-onnx export` loads the same way.
const { model, config, providers } = await loadGlowRuntime(SHIPPED_MODEL, { executionProviders: ['cpu'] });
const n = 4;
const x = await model.decode(sampleEps(config, n, 1234), 0.7);
const pixels = quantize(x, config.nBits); // 8-bit CHW images, n of them

// Back to latents and back again: bits/dim of each sample, and whether each image round-trips
// (reconstruct measures it; the model misses on images unlike its training data).
const { encoded, x: again, roundTrip } = await model.reconstruct(dequantize(pixels, config.nBits, 'center'), [n, ...config.imageShape]);
console.log(JSON.stringify({
  provider: providers.decode,
  bitsPerDim: Array.from(encoded.bpd, (b) => +b.toFixed(3)),
  roundTrips: roundTrip.roundTrips,
  samePixels: quantize(again, config.nBits).every((p, i) => p === pixels[i]),
}));
await model.release();
