// Standalone repro of an ONNX Runtime WebGPU bug: a plain Conv computed wrongly in the WebGPU
// execution provider's default (NHWC) layout for some input channel counts, right with
// preferredLayout 'NCHW'. Needs nothing but onnxruntime-node (the model is written as protobuf
// bytes below, so neither onnx nor protobufjs is needed):
//
//   npm install onnxruntime-node@1.30.0
//   node webgpu-conv-repro.mjs [--kernel 3] [--cin 1-24] [--cout 16] [--size 8]
//
// Without a GPU, Dawn can run on Chromium's SwiftShader Vulkan driver (Debian: apt-get install
// chromium libvulkan1; VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json).
//
// For each C_in: one model, Conv(x [1, C_in, S, S], W [C_out, C_in, k, k], b [C_out]), pads
// (k-1)/2, stride 1, weights an initializer; the same random x run on the CPU provider and on
// WebGPU with the provider's default options and with preferredLayout 'NCHW'. Prints max |diff|
// against the CPU per layout, and marks the cases above 1e-4 (float32 rounding alone is ~1e-7).

import ort from 'onnxruntime-node';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    kernel: { type: 'string', default: '3' },
    cin: { type: 'string', default: '1-24' },
    cout: { type: 'string', default: '16' },
    size: { type: 'string', default: '8' },
  },
});
const kernel = Number(values.kernel);
const cout = Number(values.cout);
const size = Number(values.size);
const [lo, hi] = values.cin.split('-').map(Number);
const channels = Array.from({ length: (hi ?? lo) - lo + 1 }, (_, i) => lo + i);

// ---- protobuf writer: just the ModelProto fields one Conv needs.
const bytes = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
};
const varint = (n) => {
  const out = [];
  for (n = BigInt(n); n > 127n; n >>= 7n) out.push(Number(n & 127n) | 128);
  out.push(Number(n));
  return Uint8Array.from(out);
};
const int = (field, n) => bytes(varint(field << 3), varint(n));
const len = (field, payload) => bytes(varint((field << 3) | 2), varint(payload.length), payload);
const str = (field, s) => len(field, new TextEncoder().encode(s));

const FLOAT = 1;
const valueInfo = (name, dims) => bytes(str(1, name), len(2, len(1, bytes(int(1, FLOAT), len(2, bytes(...dims.map((d) => len(1, int(1, d))))))))); // type.tensor_type{elem_type, shape}
const initializer = (name, dims, data) => bytes(...dims.map((d) => int(1, d)), int(2, FLOAT), str(8, name), len(9, new Uint8Array(data.buffer)));
const intsAttr = (name, ints) => bytes(str(1, name), ...ints.map((i) => int(8, i)), int(20, 7)); // AttributeProto.INTS

function convModel(cin, w, b) {
  const p = (kernel - 1) / 2;
  const node = bytes(str(1, 'x'), str(1, 'W'), str(1, 'b'), str(2, 'y'), str(3, 'conv'), str(4, 'Conv'),
    len(5, intsAttr('kernel_shape', [kernel, kernel])), len(5, intsAttr('pads', [p, p, p, p])), len(5, intsAttr('strides', [1, 1])));
  const graph = bytes(len(1, node), str(2, 'one_conv'),
    len(5, initializer('W', [cout, cin, kernel, kernel], w)), len(5, initializer('b', [cout], b)),
    len(11, valueInfo('x', [1, cin, size, size])), len(12, valueInfo('y', [1, cout, size, size])));
  return bytes(int(1, 8), len(7, graph), len(8, bytes(str(1, ''), int(2, 17)))); // ir_version 8, opset 17
}

// ---- deterministic inputs
let state = 12345;
const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const randoms = (n) => Float32Array.from({ length: n }, random);

async function run(model, x, ep) {
  const session = await ort.InferenceSession.create(model, { executionProviders: [ep] });
  try {
    return (await session.run({ x }))['y'].data;
  } finally {
    await session.release();
  }
}

const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const layouts = { 'default (NHWC)': { name: 'webgpu' }, NCHW: { name: 'webgpu', preferredLayout: 'NCHW' } };
console.log(`onnxruntime-node ${ort.env.versions?.common ?? '?'}: Conv ${kernel}x${kernel}, x [1, C_in, ${size}, ${size}], ${cout} output channels; max |WebGPU - CPU|`);
console.log(`| C_in | ${Object.keys(layouts).join(' | ')} |`);
console.log(`|---|${Object.keys(layouts).map(() => '---').join('|')}|`);
let bad = 0;
for (const cin of channels) {
  const model = convModel(cin, randoms(cout * cin * kernel * kernel), randoms(cout));
  const x = new ort.Tensor('float32', randoms(cin * size * size), [1, cin, size, size]);
  const cpu = await run(model, x, 'cpu');
  const cells = [];
  for (const ep of Object.values(layouts)) {
    const d = maxDiff(await run(model, x, ep), cpu);
    if (d > 1e-4) bad++;
    cells.push(d > 1e-4 ? `**${d.toExponential(1)}**` : d.toExponential(1));
  }
  console.log(`| ${cin} | ${cells.join(' | ')} |`);
}
console.log(bad ? `${bad} wrong result(s) (bold)` : 'all right');
process.exitCode = bad ? 1 : 0;
