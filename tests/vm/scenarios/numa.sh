# Two NUMA nodes (tests/vm/numa.rs): $1 is the PF on node 0, $2 the PF on node 1. Records
# sysfs's view (nodes, numa_node, local_cpulist of PFs and VFs) and discover's; then pins each
# PF's queue IRQs on the other node's CPU, starts the daemon, and waits for them to come home.
pf0=$1; pf1=$2
for n in /sys/devices/system/node/node[0-9]*; do echo "${n##*/node} $(cat $n/cpulist)"; done > $OUT/nodes.txt
echo 2 > /sys/bus/pci/devices/$pf1/sriov_numvfs
wait_for 30 sh -c "ls /sys/bus/pci/devices/$pf1/virtfn1/net > /dev/null"
for p in $pf0 $pf1 $(for v in /sys/bus/pci/devices/$pf1/virtfn*; do basename $(readlink $v); done); do
  d=/sys/bus/pci/devices/$p
  echo "$p $(cat $d/numa_node) $(cat $d/local_cpulist) $(ls $d/net 2>/dev/null | head -1)"
done > $OUT/functions.txt
vportd discover --json > $OUT/discover.json
eth0=$(ls /sys/bus/pci/devices/$pf0/net); eth1=$(ls /sys/bus/pci/devices/$pf1/net)
ip link set "$eth0" up; ip link set "$eth1" up
queue_irqs() { awk -v p="^$1-" '$NF ~ p { sub(":", "", $1); print $1 }' /proc/interrupts; }
wait_for 30 sh -c "grep -q '$eth1-' /proc/interrupts && grep -q '$eth0-' /proc/interrupts"
# Each PF's queue IRQs on the other node: CPU 2 (node 1) for the node-0 PF, CPU 0 for the other.
for i in $(queue_irqs "$eth0"); do echo 2 > /proc/irq/$i/smp_affinity_list; done
for i in $(queue_irqs "$eth1"); do echo 0 > /proc/irq/$i/smp_affinity_list; done
affinities() { # "pf irq affinity" per queue IRQ of both PFs
  for i in $(queue_irqs "$eth0"); do echo "$pf0 $i $(cat /proc/irq/$i/smp_affinity_list)"; done
  for i in $(queue_irqs "$eth1"); do echo "$pf1 $i $(cat /proc/irq/$i/smp_affinity_list)"; done
}
affinities > $OUT/pinned.txt
home() { # every queue IRQ within its PF's local CPUs
  affinities | while read -r p i a; do
    l=$(cat /sys/bus/pci/devices/$p/local_cpulist)
    [ "$a" = "$l" ] || [ "$a" = "${l%-*}" ] || [ "$a" = "${l#*-}" ] || exit 1
  done
}
t0=$(now_ms)
vportd daemon --period-ms 1000 --metrics 127.0.0.1:9478 --socket off --no-uevents \
  > /run/numa-daemon.out 2> /run/numa-daemon.log &
daemon=$!
wait_for 90 home; echo $? > $OUT/home.rc
echo $(( $(now_ms) - t0 )) > $OUT/home.ms
affinities > $OUT/after.txt
wget -q -O $OUT/metrics.txt http://127.0.0.1:9478/metrics || true
kill $daemon; wait $daemon 2>/dev/null
cp /run/numa-daemon.log $OUT/daemon.log
true
