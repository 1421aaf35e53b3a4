// The model that ships with glow-onnx (models/mnist in the repository and in the npm package):
// what the CLI runs when no --model is given, and what library users can load without exporting.

import { fileURLToPath } from 'node:url';

/** The shipped MNIST model's folder (glow.json, encode.onnx, decode.onnx, weights). */
export const SHIPPED_MODEL = fileURLToPath(new URL('../../../models/mnist', import.meta.url));
