#!/usr/bin/env bash
# Checks joulebench against real NVML on a machine with an NVIDIA GPU and PyTorch:
# `probe`, then `measure` around a short GPU matmul loop, with a prebuilt joulebench binary.
# Prints what it found; the JSON and the trace land in $OUT (default: a temporary folder).
#
#   JOULEBENCH=target/release/joulebench SECONDS_PER_RUN=4 scripts/gpu-check.sh
set -uo pipefail

BIN=${JOULEBENCH:-target/release/joulebench}
OUT=${OUT:-$(mktemp -d)}
SECS=${SECONDS_PER_RUN:-4}
mkdir -p "$OUT"

if [ ! -x "$BIN" ]; then
  echo "no joulebench binary at $BIN: build it with 'cargo build --release' and set JOULEBENCH" >&2
  exit 2
fi

echo "== nvidia-smi"
nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,power.draw --format=csv 2>&1 \
  || echo "nvidia-smi not available"

echo "== joulebench probe"
"$BIN" probe --watch-ms 1000
"$BIN" probe --json --watch-ms 1000 >"$OUT/probe.json"

cat >"$OUT/matmul.py" <<PY
import sys, time
import torch
assert torch.cuda.is_available(), "PyTorch sees no CUDA device"
n = 8192
x = torch.randn(n, n, device="cuda", dtype=torch.float16)
torch.cuda.synchronize()
t0 = time.time(); k = 0
while time.time() - t0 < $SECS:
    y = x @ x
    k += 1
torch.cuda.synchronize()
dt = time.time() - t0
print(f"{k} matmuls in {dt:.2f} s, {2 * n**3 * k / dt / 1e12:.1f} TFLOP/s", file=sys.stderr)
PY

echo "== joulebench measure (NVML only) around a ${SECS}s fp16 matmul loop"
"$BIN" measure --meter nvml --idle-s 2 --runs 3 --interval-ms 10 \
  --json "$OUT/measure-nvml.json" --trace "$OUT/trace-nvml.csv" -- python3 "$OUT/matmul.py"
rc_nvml=$?

echo "== joulebench measure (auto: every working source)"
"$BIN" measure --runs 1 --json "$OUT/measure-auto.json" -- python3 "$OUT/matmul.py"
rc_auto=$?

echo "== summary"
python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
for name in ("measure-nvml.json", "measure-auto.json"):
    p = os.path.join(out, name)
    if not os.path.exists(p):
        print(name, "missing"); continue
    r = json.load(open(p))
    print(f"{name}: runs={r['runs']} duration_s={r['duration_s']:.3f} totals={r['totals']}")
    for d in r["domains"]:
        print(f"  {d['source']}/{d['name']}: {d['energy_j']} J, avg {d['avg_power_w']} W, "
              f"peak {d['peak_power_w']} W, {d['provenance']}, {d['method']}")
    print("  gpus:", json.dumps(r["meter"]["sources"].get("nvml")))
    for w in r["warnings"]:
        print("  warning:", w)
PY
echo "files in $OUT"
[ $rc_nvml -eq 0 ] && [ $rc_auto -eq 0 ]
