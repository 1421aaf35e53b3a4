// Why an image does not round-trip: the model's inverse amplifying the float32 rounding of the
// latents (conditioning), float32 arithmetic inside the decode (precision), or a map that is not
// invertible even in exact arithmetic. Three decodes tell them apart, all in the builder's
// float64 interpreter on graphs built from the same weights (folds computed in float64, nothing
// rounded to float32):
//   float64 end to end          decode64(encode64(x))      exact arithmetic
//   float64 of float32 latents  decode64(eps32)            the runtime's latents, decoded exactly
// against the runtime's own decode32(eps32). Each flow layer's gain then follows the difference
// between the last two decodes through the graph: the largest change across a layer's outputs
// over the largest change across its inputs.

import { evaluateGraph } from '../builder/evaluate.js';
import { Graph, Node, tensor, Tensor } from '../builder/graph.js';
import { latentShape } from './config.js';
import { buildDecode, buildEncode, GlowWeights } from './model.js';

export interface LayerGain {
  /** The layer's scope in the decode graph, e.g. flow.layers.34/coupling. */
  layer: string;
  /** Largest change in the layer's inputs and outputs, float32 latents vs exact latents. */
  input: number;
  output: number;
  gain: number;
}

export interface InverseDiagnosis {
  /** max |eps32 - eps64| over the latents: float32's error in encode. */
  latentError: number;
  /** max |x - decode64(encode64(x))|. */
  float64: number;
  /** max |x - decode64(eps32)|. */
  float64OfFloat32Latents: number;
  /** Every layer of the decode, in decode order. */
  layers: LayerGain[];
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    m = Number.isNaN(d) ? Infinity : Math.max(m, d);
  }
  return m;
}

/** A node's layer: the first two levels of its scoped name (flow.layers.34/coupling, top/sample). */
function layerOf(node: Node): string {
  return node.name.split('/').slice(0, 2).join('/');
}

/** The values that cross from one layer to another (and the graph's inputs and outputs). */
function layerBoundaries(graph: Graph): { inputs: Map<string, Set<string>>; outputs: Map<string, Set<string>> } {
  const producer = new Map<string, string>();
  for (const { value } of graph.inputs) producer.set(value.name, '');
  for (const node of graph.nodes) for (const v of node.outputs) producer.set(v.name, layerOf(node));
  const inputs = new Map<string, Set<string>>();
  const outputs = new Map<string, Set<string>>();
  const add = (m: Map<string, Set<string>>, layer: string, value: string) => {
    if (!m.has(layer)) m.set(layer, new Set());
    m.get(layer)!.add(value);
  };
  for (const node of graph.nodes) {
    const layer = layerOf(node);
    if (!inputs.has(layer)) inputs.set(layer, new Set());
    for (const v of node.inputs) {
      const from = v && producer.get(v.name);
      if (from === undefined || from === layer) continue;
      add(inputs, layer, v!.name);
      if (from) add(outputs, from, v!.name);
    }
  }
  for (const { value } of graph.outputs) {
    const from = producer.get(value.name);
    if (from) add(outputs, from, value.name);
  }
  return { inputs, outputs };
}

/** Diagnoses images of one model; the graphs are built once. */
export class InverseDiagnoser {
  private readonly encode: Graph;
  private readonly decode: Graph;
  private readonly boundaries: ReturnType<typeof layerBoundaries>;

  constructor(private readonly w: GlowWeights) {
    this.encode = buildEncode(w);
    this.decode = buildDecode(w);
    this.boundaries = layerBoundaries(this.decode);
  }

  /** One image: x [C, H, W] as the runtime encoded it, its one-hot label (class-conditional
   * models), and the runtime's float32 latents eps_1..eps_L of it. */
  diagnose(x: ArrayLike<number>, y: ArrayLike<number> | undefined, eps32: readonly ArrayLike<number>[]): InverseDiagnosis {
    const { config } = this.w;
    const labels: Record<string, Tensor> = y ? { y: tensor('float32', [1, config.numClasses], y) } : {};
    const encoded = evaluateGraph(this.encode, { x: tensor('float32', [1, ...config.imageShape], x), ...labels });
    const eps64 = eps32.map((_, l) => encoded[`eps_${l + 1}`]);
    const latentError = Math.max(...eps64.map((e, l) => maxAbsDiff(e.data, eps32[l])));

    const decode = (eps: readonly ArrayLike<number>[]) => {
      const values = new Map<string, Tensor>();
      const feeds: Record<string, Tensor> = { temperature: tensor('float32', [], [1]), ...labels };
      eps.forEach((e, l) => (feeds[`eps_${l + 1}`] = tensor('float32', [1, ...latentShape(config, l + 1)], e)));
      for (const [name, t] of Object.entries(feeds)) values.set(name, t);
      const out = evaluateGraph(this.decode, feeds, (node, outputs) => node.outputs.forEach((v, i) => values.set(v.name, outputs[i])));
      return { x: out.x.data, values };
    };
    const exact = decode(eps64.map((e) => e.data));
    const fromFloat32 = decode(eps32);

    const change = (names: Set<string> | undefined) =>
      Math.max(0, ...[...(names ?? [])].map((n) => maxAbsDiff(exact.values.get(n)!.data, fromFloat32.values.get(n)!.data)));
    const layers: LayerGain[] = [];
    for (const layer of this.boundaries.inputs.keys()) {
      const input = change(this.boundaries.inputs.get(layer));
      const output = change(this.boundaries.outputs.get(layer));
      layers.push({ layer, input, output, gain: input > 0 ? output / input : output > 0 ? Infinity : 1 });
    }
    return {
      latentError,
      float64: maxAbsDiff(exact.x, x),
      float64OfFloat32Latents: maxAbsDiff(fromFloat32.x, x),
      layers,
    };
  }
}

/** One line on the cause, from the three errors and the round trip's tolerance. */
export function inverseVerdict(d: InverseDiagnosis, float32Error: number, tolerance: number): string {
  if (!(d.float64 <= tolerance)) return 'not invertible even in exact arithmetic: the map itself is singular or overflows here';
  if (!(d.float64OfFloat32Latents <= tolerance)) {
    return `conditioning: the exact inverse turns the float32 latents' error (${d.latentError.toExponential(1)} against float64's) `
      + `into ${d.float64OfFloat32Latents.toExponential(1)}; no float32 decode of them can do better`;
  }
  if (!(float32Error <= tolerance)) return 'precision: the latents decode exactly in float64; float32 arithmetic in the decode loses it';
  return 'round-trips within the tolerance';
}
