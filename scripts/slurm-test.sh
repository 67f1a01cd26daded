#!/usr/bin/env bash
# A real Slurm, not a simulation: installs Debian's slurm-wlm and munge if missing, starts a
# one-node cluster on this machine (munged, slurmctld, slurmd as background processes, stopped by
# PID at exit), and checks `joulebench slurm --submit` end to end:
#   1. a 4-shard run of configs/cluster.toml merges into exactly the (cell, repetition) keys of an
#      unsharded run of the same config, with its report built;
#   2. with shard 2 made to fail (JOULEBENCH_SHARD_FAULT=2, exported to the job by sbatch), the
#      merge job still runs (afterany), lists that shard's cells as missing and keeps the rest.
# Needs root (packages, munge user). Usage: scripts/slurm-test.sh [path/to/joulebench]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
JB=$(realpath "${1:-$ROOT/target/release/joulebench}")
CONFIG="$ROOT/configs/cluster.toml"
SHARDS=4
FAIL_SHARD=2
[ -x "$JB" ] || { echo "slurm-test: $JB is not built (cargo build --release)" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "slurm-test: slurm-wlm and munge are missing and this is not root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        apt-get install -y -q slurm-wlm munge >/dev/null
    }
fi
[ "$(id -u)" = 0 ] || { echo "slurm-test: must run as root (munged runs as user munge)" >&2; exit 1; }
[ -s /etc/munge/munge.key ] || {
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
}

WORK=$(mktemp -d /tmp/jb-slurm.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK"/{munge,state,spool,log,reports}
chown munge:munge "$WORK/munge"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -f "$WORK/munge/munged.pid" ]; then kill "$(cat "$WORK/munge/munged.pid")" 2>/dev/null || true; fi
    wait 2>/dev/null || true
}
trap cleanup EXIT

su -s /bin/sh munge -c "/usr/sbin/munged --socket=$WORK/munge/munge.sock \
    --pid-file=$WORK/munge/munged.pid --log-file=$WORK/munge/munged.log \
    --seed-file=$WORK/munge/seed"

HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(awk '/MemTotal/ { print int($2 / 1024 * 0.8) }' /proc/meminfo)
export SLURM_CONF="$WORK/slurm.conf"
cat > "$SLURM_CONF" <<EOF
ClusterName=jbtest
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$WORK/munge/munge.sock
CredType=cred/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
InactiveLimit=0
KillWait=5
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
/usr/sbin/slurmctld -D -f "$SLURM_CONF" >"$WORK/log/slurmctld.out" 2>&1 &
PIDS+=($!)
/usr/sbin/slurmd -D -f "$SLURM_CONF" >"$WORK/log/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 60); do
    sinfo -h -o %t 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo -h -o %t | grep -q idle || { echo "slurm-test: the node never became idle" >&2; tail "$WORK"/log/*; exit 1; }
echo "slurm-test: one-node cluster up ($HOST, $CPUS CPUs)"

wait_job() { # job id, limit in seconds
    local end=$((SECONDS + $2))
    while squeue -h -j "$1" 2>/dev/null | grep -q .; do
        [ $SECONDS -lt $end ] || { echo "slurm-test: job $1 still queued after $2 s" >&2; squeue >&2; exit 1; }
        sleep 2
    done
}

keys() { # run folder -> sorted "cell rep" lines of good records
    python3 -c '
import json, sys
for line in open(sys.argv[1] + "/records.jsonl"):
    r = json.loads(line)
    if r["status"] == "ok":
        print(r["cell"], r["repetition"])' "$1" | sort
}

submit() { # -> "array merge merged_dir"
    (cd "$WORK" && "$JB" slurm "$CONFIG" --shards $SHARDS --time 30:00 --out "$WORK/reports" --submit)
}

# 1. Clean sharded run against an unsharded run.
read -r ARRAY MERGE MERGED < <(submit)
echo "slurm-test: submitted array $ARRAY and merge $MERGE"
wait_job "$MERGE" 900
[ -f "$MERGED/report.html" ] || { echo "slurm-test: no merged report in $MERGED" >&2; cat "$WORK"/reports/*/logs/*; exit 1; }
"$JB" run "$CONFIG" --out "$WORK/whole" >/dev/null 2>&1
WHOLE=$(ls -d "$WORK"/whole/*/)
diff <(keys "$MERGED") <(keys "$WHOLE") || { echo "slurm-test: merged keys differ from the unsharded run" >&2; exit 1; }
N=$(keys "$MERGED" | wc -l)
[ "$N" -gt 0 ]
python3 - "$MERGED" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1] + "/meta.json"))
assert len(m["parts"]) == 4, m["parts"]
for p in m["parts"]:
    s = p["shard"]
    assert s["slurm"]["array_task_id"] == str(s["index"]), s
    assert s["slurm"]["node"], s
    assert not s["node_shared"]
assert not m.get("missing_cells")
EOF
echo "slurm-test: 4 shards merged into the same $N (cell, repetition) keys as one run; report built"

# 2. One shard fails: its cells are missing, the others are kept.
export JOULEBENCH_SHARD_FAULT=$FAIL_SHARD
read -r ARRAY MERGE MERGED < <(submit)
unset JOULEBENCH_SHARD_FAULT
wait_job "$MERGE" 900
[ -f "$MERGED/report.md" ] || { echo "slurm-test: no merged report after a failed shard" >&2; cat "$WORK"/reports/*/logs/*; exit 1; }
grep -q MISSING "$MERGED/report.md" || { echo "slurm-test: missing cells not reported" >&2; exit 1; }
python3 - "$MERGED" "$SHARDS" "$FAIL_SHARD" <<'EOF'
import json, sys
d, n, fail = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = json.load(open(d + "/meta.json"))
recs = [json.loads(l) for l in open(d + "/records.jsonl")]
missing = set(m["missing_cells"])
assert missing, "no missing cells listed"
assert len(m["parts"]) == n - 1, [p["dir"] for p in m["parts"]]
idx = {r["cell"]: r["cell_index"] for r in recs}
assert all(i % n != fail for i in idx.values()), "a record of the failed shard?"
assert len(missing) + len(idx) == m["cells"], (len(missing), len(idx), m["cells"])
ok = [r for r in recs if r["status"] == "ok"]
assert len(ok) == len(idx) * m["repetitions"], len(ok)
for c in missing:
    assert c not in idx
EOF
echo "slurm-test: a failed shard shows up as missing cells; the other $((SHARDS - 1)) shards' records are kept"
echo "slurm-test: passed"
rm -rf "$WORK"
