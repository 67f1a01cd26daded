#!/usr/bin/env bash
# Two joulebench builds side by side in one sitting, interleaved in ABBA order so a linear drift
# in the machine's speed cancels: the quickstart suite's wall time with each binary, and the
# metering-overhead bench (benches/runner.rs) built from each tree. Prints medians.
#
#   scripts/compare-builds.sh OLD_BIN NEW_BIN [ROUNDS] [OLD_RUNNER_BENCH NEW_RUNNER_BENCH]
#
# OLD_BIN/NEW_BIN are joulebench binaries; the bench executables come from
# `cargo bench --bench runner --no-run` in each tree (target/release/deps/runner-*).
set -euo pipefail
old=$1 new=$2 rounds=${3:-2}
old_bench=${4:-} new_bench=${5:-}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

quickstart() { # BIN LABEL
  local t0 t1
  t0=$(date +%s.%N)
  "$1" run configs/quickstart.toml --out "$work/$2-$RANDOM" >/dev/null 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

bench_ratio() { # BENCH
  "$1" --bench 2>/dev/null | sed -n 's/.*ratio \([0-9.]*\).*/\1/p' | tail -n 1
}

: >"$work/q-old"; : >"$work/q-new"; : >"$work/b-old"; : >"$work/b-new"
for r in $(seq 1 "$rounds"); do
  # ABBA: old new new old
  for which in old new new old; do
    bin=$old; [ "$which" = new ] && bin=$new
    s=$(quickstart "$bin" "$which")
    echo "round $r quickstart $which: ${s} s" >&2
    echo "$s" >>"$work/q-$which"
  done
  if [ -n "$old_bench" ] && [ -n "$new_bench" ]; then
    for which in old new new old; do
      b=$old_bench; [ "$which" = new ] && b=$new_bench
      x=$(bench_ratio "$b")
      echo "round $r runner bench $which: on/off ${x}" >&2
      echo "$x" >>"$work/b-$which"
    done
  fi
done

qo=$(median <"$work/q-old"); qn=$(median <"$work/q-new")
echo "| measure | old | new | new/old |"
echo "|---|---|---|---|"
printf "| quickstart wall time, s (median of %d) | %.1f | %.1f | %.3f |\n" \
  "$(wc -l <"$work/q-old")" "$qo" "$qn" "$(echo "$qn / $qo" | bc -l)"
if [ -s "$work/b-old" ]; then
  bo=$(median <"$work/b-old"); bn=$(median <"$work/b-new")
  printf "| metering on/off tokens/s (median of %d) | %.4f | %.4f | %.4f |\n" \
    "$(wc -l <"$work/b-old")" "$bo" "$bn" "$(echo "$bn / $bo" | bc -l)"
fi
