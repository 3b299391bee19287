#!/usr/bin/env bash
# memlink's DSM on a real (virtual) network: three hosts as network namespaces, each joined by
# a veth pair to a bridge that lives in a fourth namespace, with addresses only inside them
# (10.77.0.1-3/24; nothing is added to this host's own namespace). One node per host.
#
#   scripts/netns-cluster.sh MEMLINK [test|bench] [LINK_EMULATOR]
#
# test (default):
#   1. every app (counter, jacobi, matmul, sort) verified, the nodes started --from-env and
#      meeting at node 0's rendezvous (10.77.0.1), and once more with --peers host names;
#   2. the same over slow, lossy links: 1 ms delay and 1 % loss each way, by tc netem on
#      every host's link; on a kernel without sch_netem (no netem qdisc) the links are TAP
#      devices of a user-space hub that delays and drops frames the same way
#      (test-support/examples/link_emulator.rs; LINK_EMULATOR, by default
#      examples/link_emulator next to MEMLINK), and the script says so;
#   3. a host whose link is cut mid-run (ip link set down): both survivors end with a lost
#      node within the keepalive bound, 10 s, and both name node 2 (TCP keepalive after 2 s
#      idle, 3 probes 1 s apart, TCP_USER_TIMEOUT 5 s: about 5 s in practice; the survivor that
#      sees the cut first tells the other before it fails).
# bench: `memlink dsm bench` with node 0 and node 1 on two hosts, netem delay 1 ms each way
#   (a 2 ms round trip, no loss): the remote read miss against the 2 ms round trip and against
#   the raw TCP 4 KiB round trip of the same run, and (with the link emulator) how late the
#   emulator forwarded frames past their due time: its own latency on top of the delay.
#
# Names carry this run's pid and a random number, so concurrent runs do not collide; a trap
# removes the namespaces (and kills the nodes) on any exit. Needs root, ip and tc (iproute2)
# and the sch_netem qdisc; exits 77 when they are missing.
set -euo pipefail

memlink=${1:?usage: $0 MEMLINK [test|bench] [LINK_EMULATOR]}
mode=${2:-test}
memlink=$(realpath "$memlink")
emulator=${3:-$(dirname "$memlink")/examples/link_emulator}

for tool in ip tc ss; do
  command -v "$tool" >/dev/null || { echo "netns-cluster: $tool is missing (apt-get install iproute2)" >&2; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "netns-cluster: needs root (network namespaces)" >&2; exit 77; }

run_id=$$-$RANDOM
ns_br=mlk-$run_id-br
hosts=(mlk-$run_id-h0 mlk-$run_id-h1 mlk-$run_id-h2)
addrs=(10.77.0.1 10.77.0.2 10.77.0.3)
work=$(mktemp -d /tmp/memlink-netns.XXXXXX)
node_pids=()
emulator_pid=""

cleanup() {
  local status=$?
  for pid in "${node_pids[@]}" $emulator_pid; do kill -9 "$pid" 2>/dev/null || true; done
  for ns in "${hosts[@]}" "$ns_br"; do ip netns del "$ns" 2>/dev/null || true; done
  for h in "${hosts[@]}"; do rm -rf "/etc/netns/$h"; done
  if [ "$status" = 0 ]; then rm -rf "$work"; else echo "netns-cluster: outputs kept in $work" >&2; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "netns-cluster: FAILED: $*" >&2; exit 1; }

# Every node proves this run's cluster key (the nodes listen off loopback).
"$memlink" dsm keygen "$work/cluster.key" >/dev/null
export MEMLINK_DSM_KEY_FILE=$work/cluster.key

ip netns add "$ns_br"
ip -n "$ns_br" link add br0 type bridge
ip -n "$ns_br" link set br0 up
for i in 0 1 2; do
  ip netns add "${hosts[$i]}"
  ip -n "${hosts[$i]}" link set lo up
done

# The hosts' links: veth pairs to the bridge (the kernel's own network path).
use_veth() {
  stop_emulator
  for i in 0 1 2; do
    ip -n "${hosts[$i]}" link del eth0 2>/dev/null || true
    ip link add eth0 netns "${hosts[$i]}" type veth peer name "port$i" netns "$ns_br"
    ip -n "$ns_br" link set "port$i" master br0 up
    ip -n "${hosts[$i]}" addr add "${addrs[$i]}/24" dev eth0
    ip -n "${hosts[$i]}" link set eth0 up
  done
}

stop_emulator() {
  if [ -n "$emulator_pid" ]; then
    kill "$emulator_pid" 2>/dev/null || true
    wait "$emulator_pid" 2>/dev/null || true
    emulator_pid=""
  fi
}

# The hosts' links: TAP devices of the user-space hub, DELAY_US one way, LOSS_PERCENT dropped.
use_emulator() {
  [ -x "$emulator" ] || fail "no link emulator at $emulator (cargo build -p memlink-test-support --examples)"
  stop_emulator
  for i in 0 1 2; do ip -n "${hosts[$i]}" link del eth0 2>/dev/null || true; done
  ip netns exec "$ns_br" "$emulator" --delay-us "$1" --loss-percent "$2" tap0 tap1 tap2 \
    >"$work/emulator.out" 2>&1 &
  emulator_pid=$!
  for _ in $(seq 100); do grep -q ready "$work/emulator.out" && break; sleep 0.05; done
  grep -q ready "$work/emulator.out" || fail "the link emulator did not start: $(cat "$work/emulator.out")"
  for i in 0 1 2; do
    ip -n "$ns_br" link set "tap$i" netns "${hosts[$i]}"
    ip -n "${hosts[$i]}" link set "tap$i" name eth0
    ip -n "${hosts[$i]}" addr add "${addrs[$i]}/24" dev eth0
    ip -n "${hosts[$i]}" link set eth0 up
  done
}

# slow_links DELAY_US LOSS_PERCENT: every host's link delays and drops.
slow_links() {
  use_veth
  if tc -n "${hosts[0]}" qdisc replace dev eth0 root netem delay "${1}us" loss "$2%" 2>/dev/null; then
    for h in "${hosts[@]:1}"; do
      tc -n "$h" qdisc replace dev eth0 root netem delay "${1}us" loss "$2%"
    done
    echo "netns-cluster: links: tc netem delay ${1} us, loss $2 % on every host"
  else
    echo "netns-cluster: links: this kernel has no tc netem (sch_netem); the user-space" \
      "link emulator delays ${1} us and drops $2 % of the frames each way instead"
    use_emulator "$1" "$2"
  fi
}

# start_node HOST_INDEX OUTPUT_NAME ARGS... : starts one node in its host's namespace.
start_node() {
  local i=$1 name=$2
  shift 2
  ip netns exec "${hosts[$i]}" "$memlink" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  node_pids+=($!)
}

# wait_all_verified LABEL : waits for the three nodes started last; fails unless each verified.
wait_all_verified() {
  local label=$1 status=0
  for i in 0 1 2; do
    wait "${node_pids[$i]}" || status=$?
    if [ "$status" != 0 ] || ! grep -q "verified: true" "$work/$label-$i.out"; then
      echo "--- $label node $i (status $status):" >&2
      cat "$work/$label-$i.out" "$work/$label-$i.err" >&2
      fail "$label: node $i did not verify"
    fi
  done
  node_pids=()
  echo "netns-cluster: $label: verified on 3 hosts"
}

app_args() {
  case $1 in
    jacobi) echo "--app jacobi --size 256 --iters 20" ;;
    *) echo "--app $1" ;;
  esac
}

run_apps() { # run_apps LABEL
  for app in counter jacobi matmul sort; do
    for i in 0 1 2; do
      # shellcheck disable=SC2046
      PMI_RANK=$i PMI_SIZE=3 start_node "$i" "$1-$app-$i" dsm node --from-env \
        --coordinator "${addrs[0]}:7700" $(app_args "$app") --connect-timeout 60
    done
    wait_all_verified "$1-$app"
  done
}

if [ "$mode" = bench ]; then
  slow_links 1000 0
  peers="${addrs[0]}:7700,${addrs[1]}:7700"
  for i in 0 1; do
    start_node "$i" "bench-$i" dsm bench --nodes 2 --iters "${MEMLINK_BENCH_ITERS:-300}" \
      --node-id "$i" --listen "${addrs[$i]}:7700" --peers "$peers"
  done
  for i in 0 1; do wait "${node_pids[$i]}" || fail "bench node $i: $(cat "$work/bench-$i.err")"; done
  node_pids=()
  line=$(grep -h "read_miss_us=" "$work"/bench-*.out | head -n1)
  [ -n "$line" ] || fail "no figures from the bench nodes"
  rtt=$(sed -E 's/.*tcp_4k_rtt_us=([0-9.]+).*/\1/' <<<"$line")
  miss=$(sed -E 's/.*read_miss_us=([0-9.]+).*/\1/' <<<"$line")
  awk -v miss="$miss" -v rtt="$rtt" 'BEGIN {
    printf "netns-cluster: bench over 1 ms links each way (2 ms round trip):\n"
    printf "  remote read miss %.0f us = %.3fx the 2 ms round trip\n", miss, miss / 2000
    printf "  raw TCP 4 KiB round trip %.0f us; read miss / TCP round trip = %.3fx\n", rtt, miss / rtt
  }'
  if [ -n "$emulator_pid" ]; then
    # The emulator's own latency: how late it forwarded frames past their due time.
    late=$(grep -h "^late_us" "$work/emulator.out" | sed -E 's/.*median=([0-9]+).*/\1/' | sort -n |
      awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
    [ -n "$late" ] && echo "  the link emulator forwarded frames ${late} us late (median of its per-second medians)"
  fi
  exit 0
fi

# 1. Every app on three hosts: --from-env and the rendezvous, then --peers by host name.
use_veth
run_apps plain
for i in 0 1 2; do
  # ip netns exec bind-mounts /etc/netns/NAME/hosts over /etc/hosts for the command.
  mkdir -p "/etc/netns/${hosts[$i]}"
  printf '127.0.0.1 localhost\n%s host0\n%s host1\n%s host2\n' "${addrs[@]}" >"/etc/netns/${hosts[$i]}/hosts"
done
for i in 0 1 2; do
  start_node "$i" "names-$i" dsm node --id "$i" --listen "host$i:7700" \
    --peers "host0:7700, host1:7700, host2:7700" --app matmul
done
wait_all_verified names

# 3. A host cut off mid-run: the survivors name it within the keepalive bound.
for i in 0 1 2; do
  PMI_RANK=$i PMI_SIZE=3 start_node "$i" "cut-$i" dsm node --from-env \
    --coordinator "${addrs[0]}:7700" --app jacobi --size 1024 --iters 100000
done
# Mid-run: every node holds its two connections (the cluster is computing).
for _ in $(seq 300); do
  n=$(ip netns exec "${hosts[2]}" ss -Htn state established | wc -l)
  [ "$n" -ge 2 ] && break
  sleep 0.1
done
[ "$n" -ge 2 ] || fail "the cut run did not start: $(cat "$work"/cut-*.err)"
sleep 1
ip -n "${hosts[2]}" link set eth0 down
cut_at=$(date +%s%N)
for i in 0 1; do
  status=0
  wait "${node_pids[$i]}" || status=$?
  took_ms=$(( ($(date +%s%N) - cut_at) / 1000000 ))
  err=$(cat "$work/cut-$i.err")
  [ "$status" != 0 ] || fail "node $i ended well although host 2 was cut off"
  named=$(grep -o "lost node [0-9]*" <<<"$err" | head -n1 || true)
  [ -n "$named" ] || fail "node $i does not report a lost node: $err"
  [ "$took_ms" -le 10000 ] || fail "node $i saw the loss after $took_ms ms (bound: 10000)"
  [ "$named" = "lost node 2" ] || fail "node $i names another node than the cut one: $err"
  echo "netns-cluster: cut: node $i reported $named within $took_ms ms of the cut (status $status)"
done
kill -9 "${node_pids[2]}" 2>/dev/null || true
node_pids=()

# 2. Every app again over slow, lossy links.
slow_links 1000 1
run_apps slow
echo "netns-cluster: all checks passed"
