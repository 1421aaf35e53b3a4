#!/usr/bin/env bash
# The README's main job, on the shipped MNIST model (models/mnist): a grid of samples at the
# paper's temperature 0.7, bits/dim on MNIST test images, and a check that decode inverts encode.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/main}
mkdir -p "$out"
node dist/src/cli/bin.js sample --n 64 --temperature 0.7 --seed 0 --out "$out/samples.png"
node dist/src/cli/bin.js eval --data mnist-test --limit 2000
# The shipped model misses the 1e-3 round-trip tolerance on 1 or 2 of the 10,000 test images,
# depending on the CPU (README, "The shipped model"); mnist-test[193], which misses on every CPU
# measured, is among these 500. verify still names it; more than one here would be a regression.
node dist/src/cli/bin.js verify --data mnist-test --limit 500 --max-failing 1
