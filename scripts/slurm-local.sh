#!/usr/bin/env bash
# Runs a command against a private single-host Slurm cluster that this script starts and stops:
#
#   scripts/slurm-local.sh srun -n 3 memlink dsm node --from-env --app jacobi
#
# Everything lives in a fresh directory: a generated slurm.conf (this host as the only node,
# 16 CPUs, ports that are free now), its own munge daemon with its own key and socket, and
# slurmctld and slurmd in the foreground of this script. It waits until the node is idle, runs
# the command with SLURM_CONF pointing at that configuration, and on exit (or a signal) stops
# the daemons it started and removes the directory. Several runs at once do not collide.
# Needs root (slurmd runs jobs as their user) and Debian's slurm-wlm and munge; exits 77 when
# they are missing. Set MEMLINK_SLURM_KEEP=1 to keep the directory (logs) after the run.
set -euo pipefail

for tool in slurmctld slurmd srun sinfo munged mungekey ss; do
  if ! command -v "$tool" >/dev/null; then
    echo "slurm-local: $tool is missing (apt-get install slurm-wlm munge iproute2)" >&2
    exit 77
  fi
done
if [ "$(id -u)" != 0 ]; then
  echo "slurm-local: needs root (slurmd starts the job steps)" >&2
  exit 77
fi
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

dir=$(mktemp -d /tmp/memlink-slurm.XXXXXX)
chmod 755 "$dir"
pids=()   # munged, slurmctld, slurmd: started in this order, stopped in the reverse one
cleanup() {
  local status=$?
  # Jobs first (while slurmd can still report their end), then each daemon, newest first
  # (slurmd and its steps need slurmctld and munged to finish), each given 10 s and then
  # killed, so that a stuck step cannot hang the caller.
  if [ -n "${SLURM_CONF:-}" ]; then
    scancel --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 50); do
      [ -z "$(squeue -h 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[$i]}
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "${MEMLINK_SLURM_KEEP:-0}" = 1 ] || [ "$status" != 0 ]; then
    echo "slurm-local: logs kept in $dir" >&2
  else
    rm -rf "$dir"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on this host: a random one that nothing listens on now.
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((30000 + RANDOM % 2000))
    if ! ss -Htln "sport = :$p" | grep -q .; then echo "$p"; return; fi
  done
  echo "slurm-local: no free port found" >&2
  return 1
}

# munge: a private daemon with its own key and socket (the host's munged, if any, is untouched).
mungekey --create --keyfile="$dir/munge.key" --force >/dev/null
chmod 600 "$dir/munge.key"
munged --foreground --force --key-file="$dir/munge.key" --socket="$dir/munge.sock" \
  --pid-file="$dir/munged.pid" --seed-file="$dir/munge.seed" >"$dir/munged.log" 2>&1 &
pids+=($!)

host=$(hostname -s)
ctld_port=$(free_port)
slurmd_port=$(free_port)
while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
mkdir -p "$dir/state" "$dir/spool"
# Job ids start at a random number, so that two runs at once do not derive the same
# rendezvous port from them (memlink's default coordinator port under Slurm).
cat >"$dir/slurm.conf" <<EOF
ClusterName=memlink$$
FirstJobId=$((1 + RANDOM * 32 + RANDOM % 32))
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$dir/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=16 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
export SLURM_CONF=$dir/slurm.conf

# Wait for munged's socket before the daemons that need it.
for _ in $(seq 100); do [ -S "$dir/munge.sock" ] && break; sleep 0.1; done
[ -S "$dir/munge.sock" ] || { echo "slurm-local: munged did not start:" >&2; cat "$dir/munged.log" >&2; exit 1; }

slurmctld -D -i -f "$SLURM_CONF" >"$dir/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$host" >"$dir/slurmd.out" 2>&1 &
pids+=($!)

state=""
for _ in $(seq 300); do
  state=$(sinfo -h -o %T 2>/dev/null | head -n1 || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
if [ "$state" != idle ]; then
  echo "slurm-local: the node is not idle after 60 s (state '${state:-none}'); logs:" >&2
  tail -n 20 "$dir"/slurmctld.log "$dir"/slurmd.log "$dir"/*.out >&2 || true
  exit 1
fi
echo "slurm-local: cluster memlink$$ up (slurmctld :$ctld_port, slurmd :$slurmd_port), running: $*" >&2
"$@"
