// The models that ship with glow-onnx (models/ in the repository and in the npm package): what
// the CLI runs when no --model is given, and what library users can load without exporting.

import { fileURLToPath } from 'node:url';

/** The shipped MNIST model's folder (glow.json, encode.onnx, decode.onnx, weights): the better
 * likelihood; its inverse fails on images far from MNIST digits. */
export const SHIPPED_MODEL = fileURLToPath(new URL('../../../models/mnist', import.meta.url));

/** The stable MNIST model's folder: bounded coupling scales, spectrally normalised coupling
 * networks and a split prior with a constant scale; its inverse holds on every inverted digit,
 * flat grey and noise image tested, where the shipped model's fails, for a worse likelihood. */
export const STABLE_MODEL = fileURLToPath(new URL('../../../models/mnist-stable', import.meta.url));
