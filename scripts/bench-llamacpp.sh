#!/usr/bin/env bash
# Side by side, interleaved: joulebench `generate` and llama.cpp's own `llama-bench` on the same
# GGUF files, prompt length, new tokens and threads.
#
# llama-bench and llama-quantize are built from the llama.cpp that the llama-cpp-python 0.3.36
# sdist vendors (fetched with pip, built with cmake, AMX off as scripts/llama-cpp-server.sh does;
# about 5 minutes on 2 cores the first time, then cached in ~/.cache/joulebench). The default
# model is requantized into each format with llama-quantize --allow-requantize, then every file
# runs ROUNDS interleaved rounds of: joulebench (default plan: its kernels on the file's blocks in
# both phases), joulebench with the dense f32 prefill plan (the old default), and llama-bench.
#
# Usage: scripts/bench-llamacpp.sh [ROUNDS=3] [THREADS=2] [FORMATS="Q4_0 Q8_0 Q4_K_M Q5_K_M Q6_K F16"]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
THREADS=${2:-2}
FORMATS=${3:-"Q4_0 Q8_0 Q4_K_M Q5_K_M Q6_K F16"}
CACHE=${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}
BINDIR=$(scripts/llama-cpp-build.sh llama-bench llama-quantize)
cargo build --release >&2
BIN=target/release/joulebench
$BIN models fetch smollm2-135m-instruct-q4_1 >&2
MODEL_DIR=$($BIN models list --json | python3 -c "import json,sys; print(next(m['path'] for m in json.load(sys.stdin) if m['id'] == 'smollm2-135m-instruct-q4_1'))")
MODEL=$(ls "$MODEL_DIR"/*.gguf | head -1)
OUT=${JOULEBENCH_BENCH_DIR:-$CACHE/bench-formats}
mkdir -p "$OUT"
FILES=("$MODEL")
for f in $FORMATS; do
  dst="$OUT/smollm2-135m-$f.gguf"
  if [ ! -f "$dst" ]; then
    "$BINDIR/llama-quantize" --allow-requantize "$MODEL" "$dst" "$f" >&2
  fi
  FILES+=("$dst")
done
python3 scripts/bench_llamacpp.py "$BIN" "$BINDIR/llama-bench" "$ROUNDS" "$THREADS" "${FILES[@]}"
