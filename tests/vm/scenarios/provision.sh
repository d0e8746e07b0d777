# vportd plan/apply/status against the real igb/igbvf drivers, with iproute2 as the oracle.
# Each step leaves its output in $OUT/<step>.{out,err,rc} and `ip -d -j link show eth0` in
# $OUT/<step>.ip.json; the test reads them. eth1 is left down as the guest booted it (as PFs
# are at boot, before network management) for the last steps: VF rates applied from a PF
# left down (the `down-*` steps, `ip -d -j link show eth1` in $OUT/<step>.ip.json).
pf=$(basename "$(readlink /sys/class/net/eth0/device)")
pfdev=/sys/bus/pci/devices/$pf
ip link set eth0 up
wait_for 20 sh -c '/usr/sbin/ip link show eth0 | grep -q LOWER_UP'

vports() {
  cat <<EOT
[[vport]]
name = "vm-a"
uplink = "$pf"
mac = "02:00:00:00:0a:01"
vlan = 100
qos = 3
max_tx_rate_mbps = 500

[[vport]]
name = "vm-b"
uplink = "$pf"
mac = "02:00:00:00:0a:02"
spoofchk = false
trust = true

[[vport]]
name = "vm-c"
uplink = "$pf"
mac = "02:00:00:00:0a:03"
link_state = "enable"

[[vport]]
name = "vm-d"
uplink = "$pf"
mac = "02:00:00:00:0a:04"
offload = "never"
EOT
}
config() { # $1: extra uplink lines; stdin: vports
  printf 'state_dir = "/tmp/state"\n[[uplink]]\npci = "%s"\n%s\n' "$pf" "$1"
  cat
}
vports | config "" > /tmp/host.toml
# Without vm-a; vm-b and vm-c stay.
vports | awk 'BEGIN{RS="";ORS="\n\n"} !/vm-a/' | config "" > /tmp/host-less.toml
# The same vPorts, three VFs: a count change through 0.
vports | awk 'BEGIN{RS="";ORS="\n\n"} !/vm-a/' | config "num_vfs = 3" > /tmp/host-resize.toml
# A vPort that requires what igb cannot do.
{ vports; printf '[[vport]]\nname = "vm-e"\nuplink = "%s"\nmac = "02:00:00:00:0a:05"\nlink_state = "disable"\noffload = "required"\n' "$pf"; } | config "" > /tmp/host-required.toml

step() { # name, then the vportd arguments
  name=$1; shift
  vportd "$@" > $OUT/$name.out 2> $OUT/$name.err
  echo $? > $OUT/$name.rc
  ip -d -j link show eth0 > $OUT/$name.ip.json
  cat $pfdev/sriov_numvfs > $OUT/$name.numvfs
  for vf in $pfdev/virtfn*; do
    [ -e "$vf" ] || continue
    echo "${vf##*/virtfn} $(basename "$(readlink $vf)") $(basename "$(readlink $vf/driver)")"
  done > $OUT/$name.vfs
}

step plan plan /tmp/host.toml --json
step required apply /tmp/host-required.toml
step apply1 apply /tmp/host.toml
cp /tmp/state/state.json $OUT/state1.json
step apply2 apply /tmp/host.toml
step status1 status --config /tmp/host.toml --json
# Someone changes VF 0 behind vportd's back.
ip link set eth0 vf 0 vlan 200
step status2 status --config /tmp/host.toml
step apply3 apply /tmp/host.toml
step status3 status --config /tmp/host.toml
step release apply /tmp/host-less.toml
step resize-refused apply /tmp/host-resize.toml
step resize apply /tmp/host-resize.toml --allow-disruption
step resize2 apply /tmp/host-resize.toml --allow-disruption
cp /tmp/state/state.json $OUT/state-final.json

# eth1, down since boot: with bring_up = false apply fails on the rates (igb refuses them
# without link) and rolls back; by default plan shows the PF brought up, a failure after it
# puts the PF down again, and apply succeeds with the rates in place.
pf1=$(basename "$(readlink /sys/class/net/eth1/device)")
pf1dev=/sys/bus/pci/devices/$pf1
echo "$pf1 $(cat /sys/class/net/eth1/ifindex)" > $OUT/down.pf
down_config() { # $1: extra uplink lines
  printf 'state_dir = "/tmp/state-down"\n[[uplink]]\npci = "%s"\n%s\n' "$pf1" "$1"
  printf '[[vport]]\nname = "vm-r"\nuplink = "%s"\nmac = "02:00:00:00:0b:01"\nmax_tx_rate_mbps = 300\n\n' "$pf1"
  printf '[[vport]]\nname = "vm-s"\nuplink = "%s"\nmac = "02:00:00:00:0b:02"\nmax_tx_rate_mbps = 200\n' "$pf1"
}
down_config "" > /tmp/host-down.toml
down_config "bring_up = false" > /tmp/host-down-optout.toml
down_step() { # name, then the vportd arguments
  name=$1; shift
  vportd "$@" > $OUT/$name.out 2> $OUT/$name.err
  echo $? > $OUT/$name.rc
  ip -d -j link show eth1 > $OUT/$name.ip.json
  cat $pf1dev/sriov_numvfs > $OUT/$name.numvfs
}
down_step down-before plan /tmp/host-down.toml
down_step down-optout apply /tmp/host-down-optout.toml
down_step down-plan plan /tmp/host-down.toml
export VPORTD_FAULTS='set_vf@1=EIO'
down_step down-rollback apply /tmp/host-down.toml
unset VPORTD_FAULTS
down_step down-apply apply /tmp/host-down.toml
down_step down-apply2 apply /tmp/host-down.toml
true
