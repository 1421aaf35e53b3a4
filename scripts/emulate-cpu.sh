#!/usr/bin/env bash
# Runs a command as it would run on another x86-64 CPU family, under qemu's user-mode emulator:
# ONNX Runtime picks its float32 kernels (MLAS) from the CPU's features, and AVX2 and AVX-512
# kernels sum in different orders, so a float32 figure taken on one machine can differ on another.
# This is how the README's round-trip bound was checked on AVX2 from an AVX-512 machine.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/emulate-cpu.sh avx2|sse4 COMMAND [ARGS...]

  avx2   qemu's "max" CPU: AVX2 and FMA, no AVX-512 (qemu's emulator has none)
  sse4   qemu's "Nehalem" CPU: SSE4.2, no AVX at all

COMMAND runs under qemu-x86_64 (Debian package qemu-user), some 50-100 times slower than
natively. Example:
  scripts/emulate-cpu.sh avx2 node dist/src/cli/bin.js verify --limit 500
USAGE
}

case "${1:-}" in
  avx2) cpu=max ;;
  sse4) cpu=Nehalem ;;
  -h|--help|help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac
shift
[ $# -gt 0 ] || { usage >&2; exit 2; }
command -v qemu-x86_64 >/dev/null || { echo 'emulate-cpu.sh: qemu-x86_64 is missing: apt-get install qemu-user' >&2; exit 1; }
program=$(command -v "$1") || { echo "emulate-cpu.sh: $1: command not found" >&2; exit 1; }
shift
# qemu warns once per CPU feature its emulator lacks; those lines are noise here.
exec qemu-x86_64 -cpu "$cpu" "$program" "$@" 2> >(grep -v "TCG doesn't support requested feature" >&2)
