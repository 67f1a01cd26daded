#!/usr/bin/env bash
# Side by side, interleaved: joulebench `generate` and llama.cpp on the same GGUF files.
#
# llama.cpp runs through the llama-cpp-python 0.3.36 bindings (its vendored llama.cpp, built from
# the sdist with AMX off, as tests/engines_llamacpp.rs and scripts/llama-cpp-server.sh do; cached in
# ~/.cache/joulebench). The default model is requantized into each format with llama.cpp's own
# quantizer (llama_model_quantize, --allow-requantize semantics), then every file runs ROUNDS
# interleaved rounds of: joulebench (default kernels), joulebench with candle's quantized matmul
# for decode (the path these formats took before joulebench's kernels), and llama.cpp.
#
# Usage: scripts/bench-llamacpp.sh [ROUNDS=3] [THREADS=2] [FORMATS="Q4_0 Q8_0 Q4_K_M Q5_K_M Q6_K"]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
THREADS=${2:-2}
FORMATS=${3:-"Q4_0 Q8_0 Q4_K_M Q5_K_M Q6_K"}
VENV=${JOULEBENCH_LLAMA_CPP_VENV:-$HOME/.cache/joulebench/llama-cpp-python-0.3.36}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "building llama-cpp-python 0.3.36 into $VENV (about 5 minutes on 2 cores)" >&2
  python3 -m venv "$VENV"
  CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    "$VENV/bin/pip" install --no-binary llama-cpp-python llama-cpp-python==0.3.36 >&2
fi
cargo build --release >&2
BIN=target/release/joulebench
$BIN models fetch smollm2-135m-instruct-q4_1 >&2
MODEL_DIR=$($BIN models list --json | python3 -c "import json,sys; print(next(m['path'] for m in json.load(sys.stdin) if m['id'] == 'smollm2-135m-instruct-q4_1'))")
MODEL=$(ls "$MODEL_DIR"/*.gguf | head -1)
OUT=${JOULEBENCH_BENCH_DIR:-$HOME/.cache/joulebench/bench-formats}
mkdir -p "$OUT"
FILES=("$MODEL")
for f in $FORMATS; do
  dst="$OUT/smollm2-135m-$f.gguf"
  if [ ! -f "$dst" ]; then
    "$VENV/bin/python" - "$MODEL" "$dst" "$f" >&2 <<'PY'
import ctypes, sys, llama_cpp
ftypes = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 8, "Q5_1": 9, "Q8_0": 7, "Q2_K": 10, "Q3_K_M": 12,
          "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "F16": 1}
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = ftypes[sys.argv[3]]
p.allow_requantize = True
if llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)) != 0:
    sys.exit("quantization failed")
PY
  fi
  FILES+=("$dst")
done
"$VENV/bin/python" scripts/bench_llamacpp.py "$BIN" "$ROUNDS" "$THREADS" "${FILES[@]}"
