#!/usr/bin/env bash
# Makes sure llama.cpp's OpenAI-compatible server (PyPI llama-cpp-python[server]==0.3.36) is
# installed in a virtual environment under joulebench's cache, and prints that environment's
# python. With --serve ARGS it then runs the server in place of this script (same PID, so
# joulebench can stop it): `llama-cpp-server.sh --serve --model M.gguf --port 8000`. The first install builds llama.cpp from source (about 4 minutes on 2 cores); pip's
# wheel cache keeps the build for later installs on the same machine.
#
# Built with the default native flags, ggml's AMX kernels crash (SIGILL/SIGSEGV in llama_decode)
# on CPUs that advertise AMX to the compiler but not at run time, so AMX is switched off.
set -euo pipefail
VERSION=0.3.36
CACHE=${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}
VENV="$CACHE/llama-cpp-python-$VERSION"
PY="$VENV/bin/python"
SERVE=0
if [ "${1:-}" = "--serve" ]; then
    SERVE=1
    shift
fi
if ! { [ -x "$PY" ] && "$PY" -c 'import llama_cpp.server' 2>/dev/null; }; then
    mkdir -p "$CACHE"
    python3 -m venv "$VENV" >&2
    NOAMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    CMAKE_ARGS="-DGGML_NATIVE=ON \"-DCMAKE_C_FLAGS=$NOAMX\" \"-DCMAKE_CXX_FLAGS=$NOAMX\"" \
        "$VENV/bin/pip" install --quiet "llama-cpp-python[server]==$VERSION" >&2
    "$PY" -c 'import llama_cpp.server' >&2
fi
if [ $SERVE = 1 ]; then
    exec "$PY" -m llama_cpp.server "$@"
fi
echo "$PY"
