#!/usr/bin/env bash
# The software switch's benchmarks of issue 6 in one run: (a) the pipeline alone, in memory,
# 64-byte frames on one core (examples/switch_bench.rs), then (b) end to end over veth on one
# topology:
#
#   ns1 (v1, 10.77.0.1) --veth-- [s1  switch  s2] --veth-- ns2 (v2, 10.77.0.2)
#
# The switch in the middle is, in turn: vportd's software switch on AF_PACKET rings with the
# virtio-net header ("ours"), the same switch on AF_XDP sockets ("ours_xdp": copy mode, native
# XDP on veth, which turns TSO off on the peers while attached; no GSO), the same switch on
# AF_PACKET with its kernel flow cache on ("ours_fast": after the pipeline forwarded a flow's
# first frames, a tc program redirects the rest in the kernel), the Linux bridge, and
# Open vSwitch's userspace datapath
# (datapath_type=netdev, userspace TSO on, a private ovsdb/vswitchd). Each contender runs
# iperf3 TCP for 5 s and 64-byte UDP from trafgen for 5 s (delivered rate counted at v2);
# contenders alternate, RUNS rounds, and the script prints ranges and the ratios ours/bridge
# and ours/OVS for each of our edges. Run as root:  benches/switch_e2e.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SECS=5
[[ $(id -u) -eq 0 ]] || { echo "switch_e2e: run as root (it makes network namespaces)" >&2; exit 1; }
scripts/setup-bench >/dev/null
cargo build --release --example switch_veth --example switch_bench -q
SW=target/release/examples/switch_veth
TMP=$(mktemp -d /tmp/vportd-e2e.XXXXXX)
# Per-run names: two runs on one machine must not tear down each other's namespaces.
NS1=vpe-ns1-$$ NS2=vpe-ns2-$$ NSW=vpe-sw-$$
# shellcheck source=benches/e2e_lib.sh
source benches/e2e_lib.sh

cleanup() {
  set +e
  [[ -n ${OURS_PID:-} ]] && kill "$OURS_PID" 2>/dev/null && wait "$OURS_PID" 2>/dev/null
  ovs_stop
  for n in $NS1 $NS2 $NSW; do ip netns del $n 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

topology() {
  for n in $NS1 $NS2 $NSW; do ip netns del $n 2>/dev/null || true; ip netns add $n; done
  for n in $NS1 $NS2 $NSW; do nsx $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1; nsx $n ip link set lo up; done
  ip link add v1 netns $NS1 type veth peer name s1 netns $NSW
  ip link add v2 netns $NS2 type veth peer name s2 netns $NSW
  nsx $NS1 ip addr add 10.77.0.1/24 dev v1; nsx $NS1 ip link set v1 up
  nsx $NS2 ip addr add 10.77.0.2/24 dev v2; nsx $NS2 ip link set v2 up
  nsx $NSW ip link set s1 up; nsx $NSW ip link set s2 up
}


start() {
  case $1 in
    # Not through nsx: a backgrounded shell function is a subshell, and killing its pid left
    # the switch running (and spinning once its veths were gone). `ip netns exec` execs it.
    ours) ip netns exec $NSW "$SW" --vnet s1 s2 >"$TMP/ours.out" 2>&1 & OURS_PID=$! ;;
    ours_xdp) ip netns exec $NSW "$SW" --edge af_xdp s1 s2 >"$TMP/ours_xdp.out" 2>&1 & OURS_PID=$! ;;
    ours_fast) ip netns exec $NSW "$SW" --vnet --fastpath s1 s2 >"$TMP/ours_fast.out" 2>&1 & OURS_PID=$! ;;
    bridge) nsx $NSW ip link add br0 type bridge; nsx $NSW ip link set s1 master br0
            nsx $NSW ip link set s2 master br0; nsx $NSW ip link set br0 up ;;
    ovs) ovs_start ;;
  esac
  # Learn both hosts (and wait for the path) before measuring.
  for _ in $(seq 50); do nsx $NS1 ping -c1 -W1 10.77.0.2 >/dev/null 2>&1 && break; sleep 0.2; done
  nsx $NS2 ping -c1 -W1 10.77.0.1 >/dev/null
}

stop() {
  case $1 in
    ours|ours_xdp|ours_fast) kill "$OURS_PID"; wait "$OURS_PID" 2>/dev/null || true; OURS_PID= ;;
    bridge) nsx $NSW ip link del br0 ;;
    ovs) ovs_stop ;;
  esac
}

echo "== (a) the pipeline alone, in memory, 64-byte frames, one core (target: at least 20 Mpps) =="
target/release/examples/switch_bench
echo
echo "== (b) ns1 - veth - switch - veth - ns2 =="
declare -A TCP UDP
for run in $(seq "$RUNS"); do
  for who in ours ours_xdp ours_fast bridge ovs; do
    # Fresh veths and namespaces for every contender: a device keeps state from the one
    # before (after our AF_XDP edge's program was detached, OVS on the same veths fell from
    # 10 Gbit/s to 0.14 and trafgen kept dying), and no contender should inherit another's.
    topology
    start $who
    t=$(tcp); u=$(udp); r=$(cat "$TMP/restarts")
    stop $who
    TCP[$who]+="$t "; UDP[$who]+="$u "
    printf 'run %d %-9s TCP %6s Gbit/s  UDP64 %6s kpps%s\n' "$run" "$who" "$t" "$u" \
      "$( (( r > 0 )) && echo "  (trafgen restarted $r times after an early exit)")"
  done
done

echo
echo "== ns1 - veth - switch - veth - ns2, $RUNS runs each, alternating =="
for who in ours ours_xdp ours_fast bridge ovs; do
  printf '%-9s TCP %s Gbit/s   UDP64 %s kpps\n' "$who" "$(range <<<"${TCP[$who]}")" "$(range <<<"${UDP[$who]}")"
done
for who in ours ours_xdp ours_fast; do
  mt=$(median <<<"${TCP[$who]}"); mu=$(median <<<"${UDP[$who]}")
  echo "ratios (medians), $who: TCP $who/bridge $(ratio "$mt" "$(median <<<"${TCP[bridge]}")")  $who/ovs $(ratio "$mt" "$(median <<<"${TCP[ovs]}")")"
  echo "$(printf '%*s' $((${#who} + 21)) '')UDP $who/bridge $(ratio "$mu" "$(median <<<"${UDP[bridge]}")")  $who/ovs $(ratio "$mu" "$(median <<<"${UDP[ovs]}")")"
done
