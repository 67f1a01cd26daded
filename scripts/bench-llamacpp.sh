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
# LADDER=1 adds the real model ladder (the registered Qwen2.5-Coder 0.5B and 1.5B Q4_K_M files,
# fetched on first use: about 1.6 GB) and LADDER=8b also an 8B-shaped Q4_K_M file (Llama 3.1 8B's
# shapes, seeded random weights from `joulebench models synth`, 4.9 GB on disk and in memory).
# Files over 300 MB skip the dense plan (its f32 copy would need 4x the file in memory).
#
# Usage: [LADDER=1|8b] scripts/bench-llamacpp.sh [ROUNDS=3] [THREADS=2] [FORMATS="Q4_0 Q8_0 Q4_K_M Q5_K_M Q6_K F16"]
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
path_of() {
  $BIN models list --json | python3 -c "import json,sys; print(next(m['path'] for m in json.load(sys.stdin) if m['id'] == sys.argv[1]))" "$1"
}
if [ -n "${LADDER:-}" ]; then
  for id in qwen2.5-coder-0.5b-instruct-q4_k_m qwen2.5-coder-1.5b-instruct-q4_k_m; do
    $BIN models fetch "$id" >&2
    FILES+=("$(ls "$(path_of "$id")"/*.gguf | head -1)")
  done
  if [ "$LADDER" = 8b ]; then
    big="$OUT/llama-3.1-8b-shaped-Q4_K_M.gguf"
    [ -f "$big" ] || $BIN models synth --like llama-3.1-8b --format Q4_K_M --out "$big" >&2
    FILES+=("$big")
  fi
fi
python3 scripts/bench_llamacpp.py "$BIN" "$BINDIR/llama-bench" "$ROUNDS" "$THREADS" "${FILES[@]}"
