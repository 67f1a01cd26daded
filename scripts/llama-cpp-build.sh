#!/usr/bin/env bash
# Builds llama.cpp tools (cmake targets given as arguments: llama-bench, llama-quantize,
# llama-server) from the llama.cpp that the llama-cpp-python 0.3.36 sdist vendors: fetched with
# pip, built with cmake (a venv's cmake when the machine has none), AMX off as
# scripts/llama-cpp-server.sh does (ggml's AMX kernels crash on CPUs that advertise AMX to the
# compiler but not at run time). About 5 minutes on 2 cores the first time; every tool shares one
# cached build folder in ~/.cache/joulebench. Prints the folder holding the binaries.
#
# Usage: scripts/llama-cpp-build.sh TARGET...
set -euo pipefail
VERSION=0.3.36
CACHE=${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}
SRC="$CACHE/llama-cpp-src"
LCPP="$SRC/llama_cpp_python-$VERSION/vendor/llama.cpp"
BINDIR="$LCPP/build/bin"
missing=()
for t in "$@"; do
  [ -x "$BINDIR/$t" ] || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
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
  echo "building ${missing[*]} in $LCPP/build (about 5 minutes on 2 cores)" >&2
  "$CMAKE" -S "$LCPP" -B "$LCPP/build" -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=Release "-DCMAKE_C_FLAGS=$NOAMX" "-DCMAKE_CXX_FLAGS=$NOAMX" >&2
  "$CMAKE" --build "$LCPP/build" -j"$(nproc)" --target "${missing[@]}" >&2
fi
echo "$BINDIR"
