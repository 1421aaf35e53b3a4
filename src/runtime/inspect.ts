// A readable summary of an .onnx file: I/O, op histogram, parameters, embedded config.

import { parseModel, ParseOptions } from '../builder/parse.js';
import { META_CONFIG } from '../glow/metadata.js';

/** `options.externalData` reads the side files of a model stored with external data. */
export function inspectModel(bytes: Uint8Array, source: string, options: ParseOptions = {}): string {
  const { graph, info, irVersion, externalData } = parseModel(bytes, source, options);
  const lines: string[] = [];
  const describe = (io: (typeof graph.inputs)[number]) =>
    `  ${io.value.name}: ${io.value.dtype}[${io.value.shape?.join(', ') ?? '?'}]${io.doc ? `  ${io.doc}` : ''}`;
  lines.push(`${source}: graph ${graph.name}, opset ${graph.opset}, IR ${irVersion}, producer ${info.producerName} ${info.producerVersion}`);
  lines.push('inputs:', ...graph.inputs.map(describe));
  lines.push('outputs:', ...graph.outputs.map(describe));
  const histogram = new Map<string, number>();
  for (const n of graph.nodes) {
    const key = n.domain ? `${n.domain}::${n.op}` : n.op;
    histogram.set(key, (histogram.get(key) ?? 0) + 1);
  }
  lines.push(`ops (${graph.nodes.length} nodes):`);
  for (const [op, count] of [...histogram].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))) lines.push(`  ${op.padEnd(20)} ${count}`);
  let parameters = 0;
  for (const t of graph.initializers.values()) parameters += t.data.length;
  lines.push(`parameters: ${parameters.toLocaleString('en-US')} in ${graph.initializers.size} initializers`);
  for (const e of externalData) lines.push(`external data: ${e.tensors} initializers, ${e.bytes.toLocaleString('en-US')} bytes in ${e.location}`);
  const config = graph.metadata[META_CONFIG];
  if (config) lines.push(`config: ${config}`);
  for (const [k, v] of Object.entries(graph.metadata)) if (k !== META_CONFIG) lines.push(`metadata ${k}: ${v}`);
  return lines.join('\n');
}
