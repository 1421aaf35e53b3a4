import { Graph } from '../graph.js';
export { cleanup } from './cleanup.js';
export { padConvChannels, paddedChannels, webgpuMiscomputes } from './conv-channels.js';
export { floorAsMax } from './floor.js';
export { foldConstants } from './fold-constants.js';
export { FLOAT16_MAX, Float16Options, perExampleTerms, toFloat16 } from './float16.js';
export { checkOpencvForms, classPriorPerPixel, constantsWithoutBatchAxis, floorAsRelu, OPENCV_OPS, reduceSumAsMean, withoutTemperature } from './opencv.js';
export { toposort } from './toposort.js';

export type Pass = (graph: Graph) => Graph;

/** Applies passes left to right. */
export function chain(...passes: Pass[]): Pass {
  return (graph) => passes.reduce((g, pass) => pass(g), graph);
}
