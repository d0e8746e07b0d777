# Debian's irqbalance beside vportd on real igb and igbvf queue IRQs (tests/vm/irqbalance.rs).
# eth0 is the PF with 2 VFs; every netdev is up, so that every queue has its MSI-X vector.
# Every queue IRQ is pinned to CPU 3 before each irqbalance run, which then shows whether it
# moved it. Files in $OUT:
#   queues                 the queue IRQs (name ending in -TxRx-N, -rx-N, -tx-N) of eth*
#   plain.log, aff.plain   irqbalance --oneshot --debug without a policy script (the control),
#                          and "irq affinity" of each queue IRQ after it
#   policy.log, aff.policy the same with --policyscript=/usr/lib/vportd/irqbalance-policy
#   metrics, daemon.log    vportd's daemon after 12 s beside irqbalance --foreground with the
#                          policy script; aff.together the queue IRQs' affinities then
set -e
echo 2 > /sys/class/net/eth0/device/sriov_numvfs
wait_for 30 test -e /sys/bus/pci/devices/0000:01:10.2/net
for d in /sys/class/net/eth*; do ip link set "${d##*/}" up; done
queue_irqs() {
  awk '$NF ~ /^eth[0-9]+-(TxRx|rx|tx)-[0-9]+$/ { sub(":", "", $1); print $1 }' /proc/interrupts
}
wait_for 30 sh -c "[ \$(awk '\$NF ~ /^eth[12]-(rx|tx)-0\$/' /proc/interrupts | wc -l) -ge 4 ]"
queue_irqs > "$OUT/queues"
pin() { for i in $(queue_irqs); do echo 3 > /proc/irq/$i/smp_affinity_list; done; }
affinities() { for i in $(queue_irqs); do echo "$i $(cat /proc/irq/$i/smp_affinity_list)"; done; }
cat /proc/interrupts > "$OUT/interrupts"

pin
irqbalance --oneshot --debug > "$OUT/plain.log" 2>&1
affinities > "$OUT/aff.plain"

pin
irqbalance --oneshot --debug --policyscript=/usr/lib/vportd/irqbalance-policy > "$OUT/policy.log" 2>&1
affinities > "$OUT/aff.policy"

pin
vportd daemon --period-ms 500 --socket off --no-uevents > /run/daemon.log 2>&1 &
DAEMON=$!
irqbalance --foreground --policyscript=/usr/lib/vportd/irqbalance-policy > /run/irqbalance.log 2>&1 &
IRQBALANCE=$!
sleep 12
wget -q -O "$OUT/metrics" http://127.0.0.1:9477/metrics
affinities > "$OUT/aff.together"
kill "$IRQBALANCE" "$DAEMON"
wait "$DAEMON" || true
cp /run/daemon.log "$OUT/daemon.log"
