#!/usr/bin/env bash
# A real single-node Slurm on localhost runs `tcobench emit slurm`'s array for a small mock
# scenario; `tcobench collect` merges it, and its figures must equal a local `tcobench run` of the
# same scenario.
#
# Usage: tests/slurm/run-single-node.sh PATH/TO/tcobench
#
# Needs root and Debian's slurmctld, slurmd, slurm-client and munge packages. Without them it
# prints "SKIPPED: ..." and exits 0, unless TCOBENCH_REQUIRE_SLURM=1 (then it fails). Everything it
# starts (munged, slurmctld, slurmd, the job's steps) runs from a temporary folder with its own
# key, ports and state, and is stopped, and the folder removed, however the script ends.
set -euo pipefail

PATH="$PATH:/usr/sbin:/sbin"

skip() {
  if [ "${TCOBENCH_REQUIRE_SLURM:-0}" = 1 ]; then
    echo "FAILED (TCOBENCH_REQUIRE_SLURM=1): $*" >&2
    exit 1
  fi
  echo "SKIPPED: $*"
  exit 0
}

if [ "$#" -ne 1 ]; then
  echo "usage: $0 PATH/TO/tcobench" >&2
  exit 2
fi
if [ ! -x "$1" ] || [ -d "$1" ]; then
  echo "error: $1 is not an executable" >&2
  exit 2
fi
tcobench="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"

missing=()
for tool in slurmctld slurmd sbatch squeue sinfo scancel munged munge unmunge; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  skip "not installed: ${missing[*]} (Debian: apt-get install slurmctld slurmd slurm-client munge)"
fi
if [ "$(id -u)" -ne 0 ]; then
  skip "a single-node Slurm here needs root (slurmd starts jobs as their user)"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tcobench-slurm.XXXXXX")"
chmod 0700 "$work"
conf="$work/etc/slurm.conf"
daemons=()

# The processes started from this folder's configuration: the daemons and any job step they left.
ours() {
  local env pid
  for env in /proc/[0-9]*/environ; do
    pid="${env#/proc/}"
    pid="${pid%/environ}"
    [ "$pid" != "$$" ] || continue
    if tr '\0' '\n' 2>/dev/null <"$env" | grep -qxF "SLURM_CONF=$conf"; then
      echo "$pid"
    fi
  done
}

cleanup() {
  local status=$?
  set +e
  if [ "$status" -ne 0 ] && [ -d "$work/log" ]; then
    for log in "$work"/log/*.log; do
      echo "--- last lines of $log" >&2
      tail -n 30 "$log" >&2
    done
  fi
  if [ "${#daemons[@]}" -gt 0 ]; then
    SLURM_CONF="$conf" timeout 10 scancel --quiet --full --partition=tcobench 2>/dev/null
    kill "${daemons[@]}" 2>/dev/null
    for pid in "${daemons[@]}"; do
      timeout 15 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    done
  fi
  for pid in $(ours); do
    kill -KILL "$pid" 2>/dev/null
  done
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work"/{etc,munge,log,state,spool,models}
chmod 0700 "$work/munge"

# munge: a key of our own for a munged of our own, on its own socket (a system munged and its
# /etc/munge/munge.key are left alone).
if command -v mungekey >/dev/null 2>&1; then
  mungekey --create --keyfile="$work/munge/munge.key"
else
  dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 0400 "$work/munge/munge.key"
socket="$work/munge/munge.socket"
munged --foreground --force --socket="$socket" --key-file="$work/munge/munge.key" \
  --pid-file="$work/munge/munged.pid" --log-file="$work/log/munged.log" \
  --seed-file="$work/munge/munged.seed" >>"$work/log/munged.out" 2>&1 &
daemons+=("$!")
for _ in $(seq 100); do
  [ -S "$socket" ] && break
  sleep 0.1
done
munge --socket="$socket" --no-input | unmunge --socket="$socket" >/dev/null

# Slurm: one node, localhost, with this machine's CPUs and (a little less than) its memory.
cpus="$(nproc)"
mem_mb="$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)"
port=$((20000 + RANDOM % 20000))
cat >"$conf" <<EOF
ClusterName=tcobench
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=tcobench Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
# Nothing here uses cgroups (proctrack/linuxproc, task/none); the file keeps slurmd from
# reading a system one.
cat >"$work/etc/cgroup.conf" <<EOF
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
export SLURM_CONF="$conf"

slurmctld -D -i -f "$conf" >>"$work/log/slurmctld.out" 2>&1 &
daemons+=("$!")
slurmd -D -N localhost -f "$conf" >>"$work/log/slurmd.out" 2>&1 &
daemons+=("$!")
state=""
for _ in $(seq 120); do
  state="$(sinfo --noheader --nodes=localhost --format=%T 2>/dev/null || true)"
  [ "$state" = idle ] && break
  sleep 0.5
done
if [ "$state" != idle ]; then
  echo "error: the node never became idle (state: ${state:-none})" >&2
  exit 1
fi
echo "single-node Slurm up: $(sinfo --noheader --format='%P %D %C %T')"

# 6 mock cells (2 models x 3 batch sizes) on the mock backend's virtual clock: every figure is
# deterministic, so a cluster run must reproduce a local run exactly.
export TCOBENCH_MODELS_DIR="$work/models"
scenario="$work/cluster mock.yaml"
cat >"$scenario" <<'EOF'
name: cluster-mock
description: mock backend cells for the single-node Slurm test
seed: 11
warmup: 1
repetitions: 3
matrix:
  backend: [mock]
  model: [tiny, small]
  batch_size: [1, 2, 4]
  prompt_tokens: [16]
  new_tokens: [8]
power:
  source: mock
  mock_watts: 40
EOF
# A space in the shared results folder: every path in the script must be quoted for it.
shared="$work/shared results"
run_dir="$("$tcobench" emit slurm "$scenario" --out "$shared" --max-parallel 2 | tail -n 1)"
echo "--- $run_dir/submit.sbatch"
cat "$run_dir/submit.sbatch"
(cd "$work" && timeout 300 sbatch --wait --quiet "$run_dir/submit.sbatch")
outs="$(find "$run_dir/slurm" -name '*.out' | wc -l)"
if [ "$outs" -ne 6 ]; then
  echo "error: expected the output files of 6 array tasks, found $outs" >&2
  exit 1
fi

"$tcobench" collect "$run_dir" >/dev/null
local_run="$("$tcobench" run "$scenario" --out "$work/local" --no-log --quiet | tail -n 1)"

# Every figure of every cell (run id aside) must be the local run's.
"$tcobench" export "$run_dir" --format csv | cut -d, -f2- >"$work/cluster.csv"
"$tcobench" export "$local_run" --format csv | cut -d, -f2- >"$work/local.csv"
rows="$(($(wc -l <"$work/local.csv") - 1))"
if [ "$rows" -lt 6 ]; then
  echo "error: the local run exported only $rows rows" >&2
  exit 1
fi
# Text fields must be equal; numbers equal to 1e-9 relative: a mock request's energy is the
# difference of two cumulative readings on the virtual clock, and a task starts its clock at 0
# where a local run's cell starts after the cells before it, so the last bits may differ.
if ! awk -F, '
  function abs(v) { return v < 0 ? -v : v }
  function number(v) { return v ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }
  NR == FNR { local[FNR] = $0; rows = FNR; next }
  {
    seen = FNR
    n = split(local[FNR], want, ",")
    if (n != NF) { printf "row %d: %d fields, locally %d\n", FNR, NF, n; bad = 1; next }
    for (i = 1; i <= NF; i++) {
      if ($i == want[i]) continue
      if (number($i) && number(want[i]) && abs($i - want[i]) <= 1e-9 * abs(want[i])) continue
      printf "row %d field %d: %s, locally %s\n", FNR, i, $i, want[i]
      bad = 1
    }
  }
  END {
    if (seen != rows) { printf "%d rows, locally %d\n", seen, rows; bad = 1 }
    exit bad
  }' "$work/local.csv" "$work/cluster.csv"; then
  echo "error: the Slurm run's figures differ from the local run's" >&2
  exit 1
fi
committed="$(find "$run_dir/cells" -mindepth 2 -maxdepth 2 -name status.json | wc -l)"
echo "ok: 6 cells ran as Slurm array tasks ($committed committed), collected, and all $rows exported rows equal the local run's"
