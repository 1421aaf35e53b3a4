import { GraphBuilder, ops, serializeModel, tensor } from 'glow-onnx/builder';
import ort from 'onnxruntime-node';

// y = relu(x * w): two ops, a graph input and a weight.
const g = new GraphBuilder('scale-relu');
const x = g.input('x', 'float32', ['n', 3]);
const w = g.initializer('w', tensor('float32', [3], [2, -1, 0.5]));
g.output(ops.relu(g, ops.mul(g, x, w)), 'y');
const bytes = serializeModel(g.build());

const session = await ort.InferenceSession.create(bytes);
const { y } = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1, 2, 3, -1, -2, -3), [2, 3]) });
console.log(JSON.stringify({ dims: y.dims, y: Array.from(y.data) }));
