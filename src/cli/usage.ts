// The command line's usage text, the one place it is written: `glow-onnx --help` prints it,
// `glow-onnx COMMAND --help` prints that command's lines of it, and the README's command list is
// generated from it (npm run docs:cli; test/cli/usage-docs.test.ts fails when the two differ).
// It imports nothing, so that the README's generator need not load ONNX Runtime.

export const USAGE = `usage: glow-onnx <command> [options]

make and describe models:
  init         --out DIR [--config FILE] [config flags] [--seed N] [--data mnist|DIR|none] [--init-batch N]
  import       FILE.pt|FILE.pkg|FILE.safetensors|checkpoint --out DIR [--to native|rosinality] [import flags]
               a y0ast, chaiyujin or rosinality PyTorch checkpoint (torch.save, also pre-1.6), or an ORT training
               checkpoint -> native checkpoint + config.json;
               --to rosinality: DIR/rosinality.safetensors in its model.py's names, for load_state_dict(strict=True)
  export       --weights FILE --out DIR [--config FILE] [--opset N] [--no-fold] [import flags]
               [--dtype float32|float16] [--batch N] [--external-data] [--target onnxruntime|opencv]
               [--triton DIR [--triton-max-batch 64] [--triton-instances 1] [--triton-device gpu|cpu]]
  inspect      FILE.onnx

train:
  train        --out DIR (--epochs N | --minutes M) [--data mnist|DIR] [--test-data DIR] [--config FILE] [config flags | --weights FILE]
               [--batch-size 64] [--lr 1e-3] [--warmup 200] [--clip 50] [--ema 0.999] [--weight-decay 0]
               [--class-weight 0.01] [--checkpoint-every 200] [--seed N] [--init-batch 256 (0 with --weights)] [--eval-limit 10000]
               [--threads N] [--ep cpu|webgpu] [--resume] [--engine fused|ort-training (ONNX Runtime's TrainingSession,
               CPU wasm; no --resume, --ep, --warmup, --clip, --ema)]
  artifacts    --weights FILE --out DIR [--opset N] [--format portable|ort-training] [--lr 1e-3] [--weight-decay 0] [--class-weight 0.01]
               training_model.onnx, eval_model.onnx, optimizer_model.onnx and checkpoint: portable (standard ops, any
               ONNX Runtime; safetensors checkpoint) or ort-training (ONNX Runtime's TrainingSession, ODTC checkpoint)

run a model (--model DIR, default: the shipped models/mnist; the shipped models/mnist-stable inverts every stress image tested):
  sample       --out grid.png [--n 64] [--temperature 0.7] [--class C] [--seed N] [--columns N]
  encode       IMAGES... --out latents.safetensors
  decode       latents.safetensors --out grid.png [--temperature 1] [--class C]
  reconstruct  IMAGES... --out pairs.png
  interpolate  A.png B.png --out strip.png [--steps 8]
  direction    --out dir.safetensors (--images DIR --labels FILE | --mnist-digit D [--limit N])
  manipulate   IMAGE --out strip.png (--direction FILE | --attribute DIGIT [--limit N]) [--alpha A|A..B] [--steps 5]
  eval         [--data mnist-test|inverted|noise|constant|DIR] [--limit N] [--seed N]
  verify       [DIR] [--data mnist-test|inverted|noise|constant|DIR] [--limit N] [--seed N (dequantisation noise, default 1)]
               [--max-failing N (images allowed to miss the tolerance, named all the same; default 0)]
               [--stress (also the stress sets: inverted MNIST digits, uniform noise, constant grey levels)]
               [--placement (the ops each execution provider ran, from a profiled run)]
  diagnose     [DIR] [--data ...as verify] [--limit N (default 64)] [--worst N (default 3)] [--seed N] [--weights FILE]
               why images do not round-trip: float32 vs float64, and each layer's error amplification

runtime flags: --ep tensorrt,cuda,webgpu,cpu (priority order, default cpu) --strict-ep
  --threads N --batch-size N --device-id N --trt-fp16 --trt-cache DIR
import flags (what PyTorch checkpoints do not store): --n-bits N (default 8; rosinality 5) --image-shape C,H,W
  (rosinality: always, its --img_size) --permutation reverse|shuffle --shuffles FILE.json
config flags: --image-shape C,H,W --K N --L N --hidden N --coupling additive|affine
  --permutation invconv|shuffle|reverse --lu true|false|LIST (one per level: false,true)
  --learn-top true|false
  --classes N --n-bits N --actnorm-scale X --scale-floor A (affine scale >= A; 0: none)
  --scale-bound A (affine scale exp(-ln(A) tanh(t)), in [A, 1/A]) --lipschitz C (coupling convs spectrally
  normalised to norm <= C) --constant-split-scale true|false (split priors' scale learned per channel, not
  predicted from the kept half)
  train --weights/--resume keep the stored config; of the config flags they take --scale-floor, --scale-bound
  and --constant-split-scale only`;

/** A command's lines of USAGE (its line and the indented ones under it). */
export function commandUsage(command: string): string {
  const lines = USAGE.split('\n');
  const start = lines.findIndex((l) => new RegExp(`^  ${command}\\s`).test(l));
  if (start < 0) throw new Error(`glow-onnx's usage text has no line for the command '${command}'`);
  let end = start + 1;
  while (end < lines.length && /^ {15}/.test(lines[end])) end++;
  return `usage: glow-onnx ${lines.slice(start, end).map((l) => l.trim().replace(/^(\S+) {2,}/, '$1 ')).join('\n    ')}\n(glow-onnx --help: every command, and the runtime, import and config flags)`;
}
