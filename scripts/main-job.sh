#!/usr/bin/env bash
# The README's main job. Until a trained model ships: a paper-initialised MNIST Glow with its
# ActNorms set from MNIST, exported, and checked to invert on the MNIST test set.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/default}
node dist/src/cli/bin.js init --out "$out" --seed 0
node dist/src/cli/bin.js export --weights "$out/weights.safetensors" --out "$out/model"
node dist/src/cli/bin.js verify "$out/model" --data mnist-test --limit 1000
