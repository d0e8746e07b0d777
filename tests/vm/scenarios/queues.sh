# PF queues on the real igb driver: vportd sets channels and the RSS indirection table,
# ethtool -l/-x are the oracles; vPorts asking for queues are refused with igb's reasons;
# vportd's own RSS-context, ntuple and l2-fwd-offload requests meet igb's real refusals.
# Each step leaves $OUT/<step>.{out,err,rc} and `ethtool -l`/`-x` of eth1 in
# $OUT/<step>.{l,x}.
pf=$(basename "$(readlink /sys/class/net/eth1/device)")
ip link set eth1 up

config() { # $1: uplink lines, $2: vport lines
  printf 'state_dir = "/tmp/qstate"\n[[uplink]]\npci = "%s"\nnum_vfs = 0\n%s\n' "$pf" "$1"
  printf '[[vport]]\nname = "qa"\nuplink = "%s"\nmac = "02:00:00:00:0b:01"\nvlan = 100\nqueues = 2\n%s\n' "$pf" "$2"
}
config 'channels = 3
rss_weights = [1, 2, 3]' '' > /tmp/q-weights.toml
config 'channels = 2
rss = "equal"' '' > /tmp/q-equal.toml
config 'channels = 64' '' > /tmp/q-too-many.toml
config '' 'placement = "queues"' > /tmp/q-forced.toml

step() { # name, then the vportd arguments
  name=$1; shift
  vportd "$@" > $OUT/$name.out 2> $OUT/$name.err
  echo $? > $OUT/$name.rc
  ethtool -l eth1 > $OUT/$name.l 2>&1
  ethtool -x eth1 > $OUT/$name.x 2>&1
}

ethtool -l eth1 > $OUT/before.l 2>&1
ethtool -x eth1 > $OUT/before.x 2>&1
ethtool -k eth1 > $OUT/before.k 2>&1
grep eth1 /proc/interrupts | awk '{print $1}' | tr -d : > $OUT/before.irqs
step plan-weights plan /tmp/q-weights.toml --json
step weights apply /tmp/q-weights.toml
grep eth1 /proc/interrupts | awk '{print $1}' | tr -d : > $OUT/weights.irqs
step weights-again apply /tmp/q-weights.toml
step equal apply /tmp/q-equal.toml
step too-many apply /tmp/q-too-many.toml
step plan-forced plan /tmp/q-forced.toml --json
step forced apply /tmp/q-forced.toml
# vportd's own requests for what igb lacks, and the ethtool binary's for comparison.
vportd queue-probe eth1 > $OUT/probe.out 2> $OUT/probe.err
echo $? > $OUT/probe.rc
ethtool -X eth1 context new equal 2 > $OUT/oracle-context.out 2>&1; echo $? >> $OUT/oracle-context.out
ethtool -N eth1 flow-type ether dst 02:00:00:00:09:01 action 1 loc 1 > $OUT/oracle-ntuple.out 2>&1; echo $? >> $OUT/oracle-ntuple.out
ethtool -K eth1 l2-fwd-offload on > $OUT/oracle-l2fwd.out 2>&1; echo $? >> $OUT/oracle-l2fwd.out

# A VF vPort's queue set: the VF's own queues and MSI-X vectors (igbvf), as vportd status
# reports them, against /proc/interrupts.
printf 'state_dir = "/tmp/vfstate"\n[[uplink]]\npci = "%s"\nnum_vfs = 1\n[[vport]]\nname = "vf0"\nuplink = "%s"\nmac = "02:00:00:00:0c:01"\n' "$pf" "$pf" > /tmp/q-vf.toml
step vf-apply apply /tmp/q-vf.toml
vf=$(basename "$(readlink /sys/bus/pci/devices/$pf/virtfn0)")
for n in /sys/bus/pci/devices/$vf/net/*; do ip link set "$(basename $n)" up; done
wait_for 20 sh -c "grep -q \"$(basename /sys/bus/pci/devices/$vf/net/*)-rx-0\" /proc/interrupts"
echo "$vf" > $OUT/vf.bdf
step vf-status status --config /tmp/q-vf.toml --json
step vf-status-text status --config /tmp/q-vf.toml
cat /proc/interrupts > $OUT/vf.interrupts
true
