#!/usr/bin/env node
// onnxruntime-node is an optional peer of the package (browser apps must not pull it in), so a
// user can have the command without it: main.js is imported here, not statically, to turn that
// into one line saying what to install instead of a stack trace.

let main: (argv: string[]) => Promise<number>;
try {
  ({ main } = await import('./main.js'));
} catch (e) {
  const error = e as NodeJS.ErrnoException;
  if (error.code !== 'ERR_MODULE_NOT_FOUND' || !/'onnxruntime-node'/.test(error.message)) throw e;
  console.error('glow-onnx: the command runs on onnxruntime-node, which is not installed: npm install onnxruntime-node');
  process.exit(1);
}
process.exitCode = await main(process.argv.slice(2));
