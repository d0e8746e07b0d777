#!/usr/bin/env bash
# The daemon's own software vPorts end to end (issue 17), side by side with the Linux bridge
# and Open vSwitch's userspace datapath on the same topology, in one run:
#
#   ns1 (v1, 10.77.0.1) --- [ switch in nsw ] --- ns2 (v2, 10.77.0.2)
#
# Two topologies, each with three switches in turn:
# - container to container ("veth"): two `attach = "veth"` vPorts on a private [[switch]]; the
#   daemon (`vportd apply`, then `vportd daemon --config`, in nsw) makes each veth pair itself,
#   the container's end (v1, v2) inside ns1/ns2 with the vPort's MAC, the host end a switch
#   port (counted AF_PACKET, kernel flow cache on). The bridge and OVS get the same pairs made
#   by `ip link` (v1/s1, v2/s2). `ours_veth` has spoofchk = false, as the bridge and OVS check
#   nothing; `ours_veth_spoofchk` keeps the default (spoof checking on, an ingress ACL per
#   port), under which the flow cache leaves the flows to the user-space pipeline.
# - VM to VM ("tap"): two `attach = "tap"` vPorts on a private [[switch]]; the daemon makes
#   the persistent TAPs vp-bvm1, vp-bvm2 in nsw. What stands for each VM is `vportd
#   tap-netns`: a process holding the TAP's file side as QEMU would, copying each frame to
#   and from a TAP inside ns1/ns2 (one read and one write per frame into one reused buffer,
#   both ways in turns, no offloads). It bounds every contender alike: the bridge and OVS get
#   the same TAPs (made with `ip tuntap`) and the same stand-ins.
# trafgen runs as one sender (TRAFGEN_CPUS=1; on 2 CPUs its default of one per CPU took the
# CPU the stand-ins need, and a sender that outlived `timeout` kept sending into the next
# measurement). For our contenders the daemon's CPU time during the measurements is printed:
# near zero when the kernel flow cache carries the flows, the switch's user space idle.
# Each contender: iperf3 TCP for SECS s and 64-byte UDP from trafgen for SECS s (delivered
# rate at v2); contenders alternate, RUNS rounds, fresh namespaces every time. Prints
# ranges, the machine's load before and after, and ratios ours/bridge and ours/OVS.
# Run as root:  benches/daemon_e2e.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SECS=${SECS:-5}
export TRAFGEN_CPUS=${TRAFGEN_CPUS:-1}
[[ $(id -u) -eq 0 ]] || { echo "daemon_e2e: run as root (it makes network namespaces)" >&2; exit 1; }
scripts/setup-bench >/dev/null
VPORTD=${VPORTD:-}
if [[ -z $VPORTD ]]; then
  cargo build --release --bin vportd -q
  VPORTD=${CARGO_TARGET_DIR:-target}/release/vportd
fi
TMP=$(mktemp -d /tmp/vportd-de2e.XXXXXX)
NS1=vpd-ns1-$$ NS2=vpd-ns2-$$ NSW=vpd-sw-$$
MAC1=02:76:72:00:00:01 MAC2=02:76:72:00:00:02
# shellcheck source=benches/e2e_lib.sh
source benches/e2e_lib.sh
PIDS=()

cleanup() {
  set +e
  stop_all
  ovs_stop
  for n in $NS1 $NS2 $NSW; do ip netns del $n 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PIDS=()
}

namespaces() {
  for n in $NS1 $NS2 $NSW; do ip netns del $n 2>/dev/null || true; ip netns add $n; done
  for n in $NS1 $NS2 $NSW; do nsx $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; nsx $n ip link set lo up; done
}

# The hosts' addresses once their interfaces exist (made by us, the daemon or a stand-in).
hosts_up() {
  local i
  for i in $(seq 100); do
    nsx $NS1 ip link show v1 >/dev/null 2>&1 && nsx $NS2 ip link show v2 >/dev/null 2>&1 && break
    sleep 0.1
  done
  nsx $NS1 ip link set v1 address $MAC1; nsx $NS2 ip link set v2 address $MAC2
  nsx $NS1 ip addr add 10.77.0.1/24 dev v1; nsx $NS1 ip link set v1 up
  nsx $NS2 ip addr add 10.77.0.2/24 dev v2; nsx $NS2 ip link set v2 up
}

# The daemon's config: two vPorts on a private switch, as veths or TAPs.
daemon_config() {
  local attach=$1 spoofchk=$2 n=1 ns name
  printf 'state_dir = "%s"\n[[switch]]\nname = "bench"\n' "$TMP/state"
  for ns in $NS1 $NS2; do
    if [[ $attach == veth ]]; then
      name=bc$n
      printf '[[vport]]\nname = "%s"\nswitch = "bench"\nmac = "02:76:72:00:00:0%d"\nspoofchk = %s\nattach = "veth"\nnetns = "%s"\nifname = "v%d"\n' \
        "$name" $n "$spoofchk" "$ns" $n
    else
      printf '[[vport]]\nname = "bvm%d"\nswitch = "bench"\nmac = "02:76:72:00:00:0%d"\nspoofchk = %s\n' $n $n "$spoofchk"
    fi
    n=$((n + 1))
  done
}

daemon_start() {
  rm -rf "$TMP/state"; mkdir -p "$TMP/state"
  daemon_config "$1" "$2" >"$TMP/host.toml"
  nsx $NSW "$VPORTD" apply "$TMP/host.toml" >/dev/null 2>"$TMP/apply.log" || { cat "$TMP/apply.log" >&2; exit 1; }
  ip netns exec $NSW "$VPORTD" daemon --config "$TMP/host.toml" --metrics off --socket off \
    --no-uevents >/dev/null 2>"$TMP/daemon.log" & PIDS+=($!)
}

# A VM stand-in on each TAP in nsw: its frames to and from v1 (v2) inside ns1 (ns2).
stand_ins() {
  local i
  for i in $(seq 100); do nsx $NSW ip link show "$1" >/dev/null 2>&1 && nsx $NSW ip link show "$2" >/dev/null 2>&1 && break; sleep 0.1; done
  ip netns exec $NSW "$VPORTD" tap-netns "$1" /var/run/netns/$NS1 --name v1 2>>"$TMP/standin.log" & PIDS+=($!)
  ip netns exec $NSW "$VPORTD" tap-netns "$2" /var/run/netns/$NS2 --name v2 2>>"$TMP/standin.log" & PIDS+=($!)
}

veth_pairs() {
  ip link add v1 netns $NS1 type veth peer name s1 netns $NSW
  ip link add v2 netns $NS2 type veth peer name s2 netns $NSW
  nsx $NSW ip link set s1 up; nsx $NSW ip link set s2 up
}

tap_pair() {
  nsx $NSW ip tuntap add vp-bvm1 mode tap; nsx $NSW ip tuntap add vp-bvm2 mode tap
  nsx $NSW ip link set vp-bvm1 up; nsx $NSW ip link set vp-bvm2 up
}

bridge() {
  nsx $NSW ip link add br0 type bridge
  nsx $NSW ip link set "$1" master br0; nsx $NSW ip link set "$2" master br0; nsx $NSW ip link set br0 up
}

start() {
  namespaces
  case $1 in
    ours_veth) daemon_start veth false ;;
    ours_veth_spoofchk) daemon_start veth true ;;
    bridge_veth) veth_pairs; bridge s1 s2 ;;
    ovs_veth) veth_pairs; OVS_PORTS=(s1 s2); ovs_start ;;
    ours_tap) daemon_start tap false; stand_ins vp-bvm1 vp-bvm2 ;;
    bridge_tap) tap_pair; bridge vp-bvm1 vp-bvm2; stand_ins vp-bvm1 vp-bvm2 ;;
    ovs_tap) tap_pair; OVS_PORTS=(vp-bvm1 vp-bvm2); ovs_start; stand_ins vp-bvm1 vp-bvm2 ;;
  esac
  hosts_up
  # Learn both hosts (and wait for the path) before measuring.
  for _ in $(seq 50); do nsx $NS1 ping -c1 -W1 10.77.0.2 >/dev/null 2>&1 && break; sleep 0.2; done
  nsx $NS2 ping -c1 -W1 10.77.0.1 >/dev/null || {
    echo "daemon_e2e: $1: no path between the hosts" >&2
    cat "$TMP/daemon.log" "$TMP/standin.log" 2>/dev/null >&2; exit 1; }
}

stop() {
  stop_all
  case $1 in ovs_*) ovs_stop ;; esac
  # The daemon leaves its TAPs to their VMs: gone with the namespace; veths go with theirs.
  ip netns del $NSW 2>/dev/null || true
}

# The daemon's CPU time so far (user + system, in clock ticks of 10 ms) for our contenders.
daemon_cpu() {
  [[ $1 == ours_* ]] || return 0
  awk '{print $14 + $15}' "/proc/${PIDS[0]}/stat"
}

read -r -a WHO <<<"${CONTENDERS:-ours_veth ours_veth_spoofchk bridge_veth ovs_veth ours_tap bridge_tap ovs_tap}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
declare -A TCP UDP
for run in $(seq "$RUNS"); do
  for who in "${WHO[@]}"; do
    start $who
    c0=$(daemon_cpu $who); t=$(tcp); u=$(udp); r=$(cat "$TMP/restarts"); c1=$(daemon_cpu $who)
    stop $who
    TCP[$who]+="$t "; UDP[$who]+="$u "
    printf 'run %d %-18s TCP %6s Gbit/s  UDP64 %6s kpps%s%s\n' "$run" "$who" "$t" "$u" \
      "$( [[ -n $c0 ]] && echo "  (daemon CPU $(( (c1 - c0) * 10 )) ms)")" \
      "$( (( r > 0 )) && echo "  (trafgen restarted $r times after an early exit)")"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== ns1 - switch - ns2, the daemon's own vPorts against the bridge and OVS, $RUNS runs each, alternating =="
for who in "${WHO[@]}"; do
  printf '%-18s TCP %s Gbit/s   UDP64 %s kpps\n' "$who" "$(range <<<"${TCP[$who]}")" "$(range <<<"${UDP[$who]}")"
done
for pair in "ours_veth veth" "ours_veth_spoofchk veth" "ours_tap tap"; do
  read -r who kind <<<"$pair"
  [[ -n ${TCP[$who]:-} && -n ${TCP[bridge_$kind]:-} && -n ${TCP[ovs_$kind]:-} ]] || continue
  mt=$(median <<<"${TCP[$who]}"); mu=$(median <<<"${UDP[$who]}")
  echo "ratios (medians), $who: TCP /bridge $(ratio "$mt" "$(median <<<"${TCP[bridge_$kind]}")")  /ovs $(ratio "$mt" "$(median <<<"${TCP[ovs_$kind]}")")"
  echo "$(printf '%*s' $((${#who} + 21)) '')UDP /bridge $(ratio "$mu" "$(median <<<"${UDP[bridge_$kind]}")")  /ovs $(ratio "$mu" "$(median <<<"${UDP[ovs_$kind]}")")"
done
