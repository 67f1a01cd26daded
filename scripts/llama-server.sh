#!/usr/bin/env bash
# Builds llama.cpp's own C++ `llama-server` (continuous batching over `--parallel N` slots, a
# Prometheus `/metrics` endpoint, streamed `usage`) from the llama.cpp that the llama-cpp-python
# 0.3.36 sdist vendors: fetched with pip, built with cmake, AMX off as scripts/llama-cpp-server.sh
# does. About 5 minutes on 2 cores the first time; cached in ~/.cache/joulebench next to
# llama-bench (scripts/bench-llamacpp.sh shares the build folder). Prints the binary's path.
#
# Usage: scripts/llama-server.sh                 builds if needed, prints the binary's path
#        scripts/llama-server.sh --serve ARGS     then runs it with ARGS in place of this script
#                                                 (same PID, so joulebench can stop it);
#                                                 configs/engines.toml passes --parallel N --metrics
set -euo pipefail
SERVE=0
if [ "${1:-}" = "--serve" ]; then
    SERVE=1
    shift
fi
VERSION=0.3.36
CACHE=${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}
SRC="$CACHE/llama-cpp-src"
LCPP="$SRC/llama_cpp_python-$VERSION/vendor/llama.cpp"
BIN="$LCPP/build/bin/llama-server"
if [ ! -x "$BIN" ]; then
  mkdir -p "$SRC"
  if [ ! -d "$LCPP" ]; then
    python3 -m pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$SRC" >&2
    tar -xzf "$SRC/llama_cpp_python-$VERSION.tar.gz" -C "$SRC"
  fi
  CMAKE=$(command -v cmake || true)
  if [ -z "$CMAKE" ]; then
    python3 -m venv "$CACHE/cmake-venv" >&2
    "$CACHE/cmake-venv/bin/pip" install --quiet cmake >&2
    CMAKE="$CACHE/cmake-venv/bin/cmake"
  fi
  NOAMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  echo "building llama-server in $LCPP/build (about 5 minutes on 2 cores)" >&2
  "$CMAKE" -S "$LCPP" -B "$LCPP/build" -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=Release "-DCMAKE_C_FLAGS=$NOAMX" "-DCMAKE_CXX_FLAGS=$NOAMX" >&2
  "$CMAKE" --build "$LCPP/build" -j"$(nproc)" --target llama-server >&2
fi
if [ $SERVE = 1 ]; then
    exec "$BIN" "$@"
fi
echo "$BIN"
