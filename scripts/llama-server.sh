#!/usr/bin/env bash
# Builds llama.cpp's own C++ `llama-server` (continuous batching over `--parallel N` slots, a
# Prometheus `/metrics` endpoint, streamed `usage`) from the llama.cpp that the llama-cpp-python
# 0.3.36 sdist vendors, with scripts/llama-cpp-build.sh (AMX off; about 5 minutes on 2 cores the
# first time; the build folder is cached and shared with llama-bench). Prints the binary's path.
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
BIN="$("$(dirname "$0")/llama-cpp-build.sh" llama-server)/llama-server"
if [ $SERVE = 1 ]; then
    exec "$BIN" "$@"
fi
echo "$BIN"
