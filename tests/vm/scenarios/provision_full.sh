# 2 PFs and 10 vPorts (7 on eth0's PF, 3 on eth1's), against the real igb driver:
# apply; every attribute as `ip -d link show` has it; a second apply is a no-op; vPorts removed
# and added; a VF count change through 0; kill -9 in the middle of an apply at several points,
# then apply again converges; a bad config changes nothing. Outputs under $OUT, read by the test.
pf0=$(basename "$(readlink /sys/class/net/eth0/device)")
pf1=$(basename "$(readlink /sys/class/net/eth1/device)")
for i in 0 1; do ip link set eth$i up; done
wait_for 20 sh -c '/usr/sbin/ip link show eth0 | grep -q LOWER_UP'
wait_for 20 sh -c '/usr/sbin/ip link show eth1 | grep -q LOWER_UP'

# vport NAME PF MAC EXTRA-LINES
vport() { printf '[[vport]]\nname = "%s"\nuplink = "%s"\nmac = "%s"\n%b\n\n' "$1" "$2" "$3" "$4"; }
head_() { printf 'state_dir = "/tmp/state"\n[[uplink]]\npci = "%s"\n%b\n[[uplink]]\npci = "%s"\n%b\n' "$pf0" "$1" "$pf1" "$2"; }
full() {
  head_ "" ""
  vport a0 $pf0 02:00:00:00:00:10 'vlan = 10\nqos = 1'
  vport a1 $pf0 02:00:00:00:00:11 'max_tx_rate_mbps = 100'
  vport a2 $pf0 02:00:00:00:00:12 'trust = true'
  vport a3 $pf0 02:00:00:00:00:13 'spoofchk = false'
  vport a4 $pf0 02:00:00:00:00:14 'vlan = 4094\nqos = 7\nmax_tx_rate_mbps = 250'
  vport a5 $pf0 02:00:00:00:00:15 'link_state = "enable"\noptional = ["link_state"]'
  vport a6 $pf0 02:00:00:00:00:16 ''
  vport b0 $pf1 02:00:00:00:01:10 'vlan = 20'
  vport b1 $pf1 02:00:00:00:01:11 'trust = true\nspoofchk = false'
  vport b2 $pf1 02:00:00:00:01:12 'link_state = "disable"'
}
full > /tmp/full.toml
# a1 and b0 removed, c0 added on pf1.
{ full | awk 'BEGIN{RS="";ORS="\n\n"} !/"a1"|"b0"/'; vport c0 $pf1 02:00:00:00:02:10 'vlan = 30'; } > /tmp/changed.toml
# The same vPorts with 5 VFs on pf1: a count change through 0.
{ head_ "" "num_vfs = 5"; full | awk 'BEGIN{RS="";ORS="\n\n"} /\[\[vport\]\]/ && !/"a1"|"b0"/'; vport c0 $pf1 02:00:00:00:02:10 'vlan = 30'; } > /tmp/resize.toml
printf 'state_dir = "/tmp/state"\n[[uplink]]\npci = "%s"\n[[vport]]\nname = "x"\nuplink = "%s"\nmac = "02:00:00:00:00:99"\nvlan = 5000\n' "$pf0" "$pf0" > /tmp/bad.toml

snap() { # NAME: the host as the oracles see it
  ip -d -j link show eth0 > $OUT/$1.eth0.json
  ip -d -j link show eth1 > $OUT/$1.eth1.json
  echo "$(cat /sys/class/net/eth0/device/sriov_numvfs) $(cat /sys/class/net/eth1/device/sriov_numvfs)" > $OUT/$1.numvfs
  for vf in /sys/class/net/eth0/device/virtfn* /sys/class/net/eth1/device/virtfn*; do
    [ -e "$vf" ] && echo "$(basename "$(readlink $vf)") $(basename "$(readlink $vf/driver)")"
  done > $OUT/$1.vfs
  [ -f /tmp/state/state.json ] && cp /tmp/state/state.json $OUT/$1.state.json
  true
}
step() { # NAME ARGS...: run vportd, record rc/out/err, snapshot the host
  name=$1; shift
  vportd "$@" > $OUT/$name.out 2> $OUT/$name.err
  echo $? > $OUT/$name.rc
  snap $name
}

snap before
step bad apply /tmp/bad.toml
step apply1 apply /tmp/full.toml
step apply2 apply /tmp/full.toml
step status1 status --config /tmp/full.toml --json
step changed apply /tmp/changed.toml
step changed2 apply /tmp/changed.toml
step resize apply /tmp/resize.toml --allow-disruption
step resize2 apply /tmp/resize.toml --allow-disruption

# kill -9 during step K of an apply from a clean host, for several K; then apply again.
for k in 1 3 6 10; do
  for i in 0 1; do echo 0 > /sys/class/net/eth$i/device/sriov_numvfs; done
  rm -rf /tmp/state
  vportd apply /tmp/full.toml > /tmp/kill.out 2> /tmp/kill.err &
  pid=$!
  # The progress line "[K/N] ..." is printed when step K starts.
  wait_for 60 sh -c "grep -q '^\[$k/' /tmp/kill.err || ! kill -0 $pid 2>/dev/null"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  cp /tmp/kill.err $OUT/kill$k.killed.err
  [ -f /tmp/state/journal.json ] && cp /tmp/state/journal.json $OUT/kill$k.journal.json
  step kill$k.rerun apply /tmp/full.toml
  step kill$k.again apply /tmp/full.toml
done
step status2 status --config /tmp/full.toml
true
