# Per-queue packet counts, RPS/XPS steering and a persistent other writer, on real igb queues
# (tests/vm/rebalance.rs). eth0 stays in the root namespace (10.0.0.1; the daemon reads its
# ethtool statistics there), eth1 goes to namespace b (10.0.0.2); both share a QEMU hub.
# Every eth0 queue IRQ is pinned to CPU 0 before the daemon starts, so that traffic makes it
# spread (and point RPS/XPS at the new CPUs).
#
# Files in $OUT:
#   counters.N.{before,metrics,after}  `ethtool -S eth0`, the daemon's metrics, `ethtool -S
#                                      eth0` again: the metrics come from a tick in between
#   steering.end                       "path mask" of every eth0 rps_cpus/xps_cpus file
#   contender                          "irq first-cpu" of the IRQ another writer keeps moving
#   contender.writes                   "ms cpu" of each of its writes
#   contender.after                    that IRQ's smp_affinity_list at the end
#   metrics.end, daemon.log, marks
set -e
METRICS=http://127.0.0.1:9477/metrics

ip netns add b
ip link set eth1 netns b
ip -n b link set lo up
ip addr add 10.0.0.1/24 dev eth0
ip -n b addr add 10.0.0.2/24 dev eth1
ip link set eth0 up
ip -n b link set eth1 up
wait_for 30 sh -c '/usr/sbin/ip link show eth0 | grep -q LOWER_UP'
wait_for 30 sh -c '/usr/sbin/ip -n b link show eth1 | grep -q LOWER_UP'

queue_irqs() { awk -v p="^$1-" '$NF ~ p { sub(":", "", $1); print $1 }' /proc/interrupts; }
mark() { echo "$(now_ms) $1" >> /run/marks; }
ticks() { wget -q -O - $METRICS 2>/dev/null | awk '/^vportd_ticks_total / { print $2 }'; }
finish() {
  kill "$DAEMON" 2>/dev/null || true
  kill "$CONTENDER" 2>/dev/null || true
  cp /run/marks "$OUT/marks" 2>/dev/null || true
  cp /run/daemon.log "$OUT/daemon.log" 2>/dev/null || true
}
trap finish EXIT

[ -n "$(queue_irqs eth0)" ] || { echo "eth0 has no queue IRQs" >&2; exit 1; }
for i in $(queue_irqs eth0); do echo 0 > /proc/irq/$i/smp_affinity_list; done

/usr/bin/iperf3 --server --daemon
wait_for 30 sh -c "netstat -ltn | grep -q ':5201 '"
ip netns exec b ping -c 2 -w 20 10.0.0.1 > "$OUT/ping"

vportd daemon --period-ms 1000 --metrics 127.0.0.1:9477 --socket off --no-uevents --steering \
  > /run/daemon.out 2> /run/daemon.log &
DAEMON=$!
wait_for 60 sh -c '[ "$(wget -q -O - '$METRICS' 2>/dev/null | awk "/^vportd_ticks_total / { print \$2 }")" -ge 2 ] 2>/dev/null'

# Traffic both ways, so that rx and tx queues count packets; iperf3 kept off CPU 0.
mark load_start
ip netns exec b taskset -c 1-3 /usr/bin/iperf3 --client 10.0.0.1 --parallel 4 --bidir \
  --time 14 --json > "$OUT/iperf3.json" &
IPERF=$!
sleep 3
# Three comparisons under traffic: ethtool, then a tick later the metrics, then ethtool.
for n in 1 2 3; do
  ethtool -S eth0 > "$OUT/counters.$n.before"
  t=$(ticks)
  wait_for 10 sh -c "[ \"\$(wget -q -O - $METRICS 2>/dev/null | awk '/^vportd_ticks_total / { print \$2 }')\" -gt $t ]"
  wget -q -O "$OUT/counters.$n.metrics" $METRICS
  ethtool -S eth0 > "$OUT/counters.$n.after"
  sleep 1
done
wait "$IPERF" || true
mark load_stop

# Another writer that keeps moving one rx IRQ of eth0 between CPUs 1 and 3 every 2 s (as
# irqbalance would every 10 s), under traffic again so that the daemon has reasons to act.
irq=$(queue_irqs eth0 | head -n 1)
echo "$irq $(cat /proc/irq/$irq/smp_affinity_list)" > "$OUT/contender"
mark contender_start
# The daemon's log lines from here on are the contender phase's.
wc -l < /run/daemon.log > "$OUT/contender.log_lines"
(
  cpu=1
  for k in 1 2 3 4 5 6 7; do
    echo $cpu > /proc/irq/$irq/smp_affinity_list
    echo "$(now_ms) $cpu" >> /run/contender.writes
    if [ $cpu = 1 ]; then cpu=3; else cpu=1; fi
    sleep 2
  done
) &
CONTENDER=$!
ip netns exec b taskset -c 1-3 /usr/bin/iperf3 --client 10.0.0.1 --parallel 4 \
  --time 12 > /dev/null || true
wait "$CONTENDER" || true
sleep 2
mark contender_stop
cp /run/contender.writes "$OUT/contender.writes"
cat /proc/irq/$irq/smp_affinity_list > "$OUT/contender.after"

for f in /sys/class/net/eth0/queues/rx-*/rps_cpus /sys/class/net/eth0/queues/tx-*/xps_cpus; do
  echo "$f $(cat "$f")"
done > "$OUT/steering.end"
wget -q -O "$OUT/metrics.end" $METRICS
if kill -0 "$DAEMON"; then echo alive; else echo dead; fi > "$OUT/daemon.state"
