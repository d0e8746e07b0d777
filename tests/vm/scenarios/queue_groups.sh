# Each vPort's queue set as one group with its CPU set, on real igbvf interrupts (issue 9,
# tests/vm/queue_groups.rs). Two VF vPorts with `cpus` of their own (va: 2-3, vb: 1); every
# IRQ of both VFs is pinned to CPU 0 before the daemon starts, and the daemon's --nic-cpus puts
# the PF's group (VFs included) on CPU 0 too, so only the vPorts' own sets can move them.
# $OUT: apply.*, status.json, before/moved/after ("irq affinity effective interrupts" per VF
# IRQ: before the daemon, after its first 4 ticks, after traffic on the VFs and 2 more ticks),
# metrics.moved/metrics, daemon.log, interrupts.
set -e
METRICS=http://127.0.0.1:9477/metrics
pf=$(basename "$(readlink /sys/class/net/eth1/device)")
ip link set eth1 up
cat > /tmp/g.toml <<CONF
state_dir = "/tmp/gstate"
[[uplink]]
pci = "$pf"
num_vfs = 2
[[vport]]
name = "va"
uplink = "$pf"
mac = "02:00:00:00:0d:01"
cpus = "2-3"
[[vport]]
name = "vb"
uplink = "$pf"
mac = "02:00:00:00:0d:02"
cpus = "1"
CONF
rc=0; vportd apply /tmp/g.toml > $OUT/apply.out 2> $OUT/apply.err || rc=$?
echo $rc > $OUT/apply.rc
[ $rc = 0 ] || exit 1
# igbvf asks for its MSI-X vectors when its netdev comes up.
vfs=""
for v in virtfn0 virtfn1; do
  vf=$(basename "$(readlink /sys/bus/pci/devices/$pf/$v)")
  vfs="$vfs $vf"
  for n in /sys/bus/pci/devices/$vf/net/*; do
    ip link set "$(basename $n)" up
    wait_for 20 grep -q "$(basename $n)-rx-0" /proc/interrupts
  done
done
echo $vfs > $OUT/vfs
vf_irqs() { for vf in $vfs; do ls /sys/bus/pci/devices/$vf/msi_irqs; done; }
count() { awk -v i="$1:" '$1 == i { s = 0; for (c = 2; c <= NF; c++) if ($c ~ /^[0-9]+$/) s += $c; print s }' /proc/interrupts; }
affinities() { # irq affinity effective interrupts
  for i in $(vf_irqs); do
    echo "$i $(cat /proc/irq/$i/smp_affinity_list) $(cat /proc/irq/$i/effective_affinity_list) $(count $i)"
  done
}
vportd status --config /tmp/g.toml --json > $OUT/status.json
for i in $(vf_irqs); do echo 0 > /proc/irq/$i/smp_affinity_list; done
affinities > $OUT/before

vportd daemon --config /tmp/g.toml --nic-cpus "$pf=0" --period-ms 500 \
  --metrics 127.0.0.1:9477 --socket off --no-uevents > /run/daemon.out 2> /run/daemon.log &
DAEMON=$!
finish() {
  kill "$DAEMON" 2>/dev/null || true
  cp /run/daemon.log "$OUT/daemon.log" 2>/dev/null || true
  cat /proc/interrupts > "$OUT/interrupts"
}
trap finish EXIT
ticks() { wget -q -O - $METRICS 2>/dev/null | awk '/^vportd_ticks_total / { print $2 }'; }
# A few periods: the moves come in the first tick; the rest show they stay.
wait_for 60 sh -c "[ \"\$(wget -q -O - $METRICS 2>/dev/null | awk '/^vportd_ticks_total / { print \$2 }')\" -ge 4 ]"
wget -q -O $OUT/metrics.moved $METRICS
affinities > $OUT/moved
# An MSI's effective CPU follows its mask at its next interrupt: make every VF queue fire.
# Each VF sends ARP requests (its tx IRQ) that the other VF receives as broadcasts (its rx).
n=1
for vf in $vfs; do
  dev=$(basename /sys/bus/pci/devices/$vf/net/*)
  ip addr add 10.9.$n.1/24 dev $dev
  n=$((n + 1))
done
for round in 1 2 3; do
  ping -c 1 -W 1 10.9.1.2 > /dev/null 2>&1 || true
  ping -c 1 -W 1 10.9.2.2 > /dev/null 2>&1 || true
done
# Two more periods: nothing may move back or again.
t0=$(ticks)
wait_for 30 sh -c "[ \"\$(wget -q -O - $METRICS 2>/dev/null | awk '/^vportd_ticks_total / { print \$2 }')\" -ge $((t0 + 2)) ]"
wget -q -O $OUT/metrics $METRICS
affinities > $OUT/after
ticks > $OUT/ticks
kill -0 "$DAEMON" && echo alive > $OUT/daemon.state
