# The rebalance daemon against real interrupts (tests/vm/rebalance.rs). eth0 (namespace a,
# 10.0.0.1) and eth1 (namespace b, 10.0.0.2) share a QEMU hub; iperf3 sends from b to a, so
# eth0's queues take the receive work. Every queue IRQ of eth0 is pinned to CPU 0 *before* the
# daemon starts (a pin made while it runs would be another writer, which it must leave alone).
#
# Phases, each bracketed by a mark in $OUT/marks ("ms name"):
#   load:     iperf3 -P 4 for LOAD_S seconds; CPU 0 gets hot and the daemon spreads;
#   idle:     traffic stopped; wait until the daemon has coalesced and is quiet again;
#   external: a hand-written smp_affinity_list; the daemon must report it and leave it.
# $OUT/timeline has one line per poll of the metrics endpoint: "ms ticks spread coalesce
# external cpu0-busy cpu0-estimate" (the daemon's figures; the estimate is what the policy's
# thresholds judge), then CPU 0's line of /proc/stat read by this script, "user nice system
# idle iowait irq softirq" in USER_HZ ticks: the kernel's own account, independent of the
# daemon, from which the test judges when CPU 0 is hot;
# $OUT/daemon.log the daemon's journal; $OUT/eth0.* the IRQs' affinities.
set -e
LOAD_S=${LOAD_S:-10}
METRICS=http://127.0.0.1:9477/metrics

pf_pair 30

# The queue IRQs of a netdev (eth0-TxRx-0 ...; not the link IRQ named eth0), from the global
# /proc/interrupts: IRQs are not per namespace.
queue_irqs() { awk -v p="^$1-" '$NF ~ p { sub(":", "", $1); print $1 }' /proc/interrupts; }
# "irq name affinity effective" per queue IRQ of $1.
affinities() {
  for i in $(queue_irqs "$1"); do
    echo "$i $(awk -v i="$i:" '$1 == i { print $NF }' /proc/interrupts)" \
      "$(cat /proc/irq/$i/smp_affinity_list) $(cat /proc/irq/$i/effective_affinity_list)"
  done
}
mark() { echo "$(now_ms) $1" >> /run/marks; }
snapshot() {
  affinities eth0 > "$OUT/eth0.$1"
  affinities eth1 > "$OUT/eth1.$1"
  wget -q -O "$OUT/metrics.$1" $METRICS || true
}
metric_fields() {
  wget -q -O - $METRICS 2>/dev/null | awk '
    /^vportd_ticks_total / { t = $2 }
    /^vportd_moves_total\{reason="spread"\}/ { s = $2 }
    /^vportd_moves_total\{reason="coalesce"\}/ { c = $2 }
    /^vportd_external_changes_total / { e = $2 }
    /^vportd_cpu_busy_ratio\{cpu="0"\}/ { b = $2 }
    /^vportd_cpu_load_estimate_ratio\{cpu="0"\}/ { x = $2 }
    END { if (t != "") print t, s, c, e, (b == "" ? 0 : b), (x == "" ? 0 : x); else exit 1 }'
}
field() { metric_fields | awk -v n="$1" '{ print $n }'; }
finish() {
  kill "$POLLER" 2>/dev/null || true
  kill "$DAEMON" 2>/dev/null || true
  cp /run/timeline "$OUT/timeline" 2>/dev/null || true
  cp /run/marks "$OUT/marks" 2>/dev/null || true
  cp /run/daemon.log "$OUT/daemon.log" 2>/dev/null || true
  cat /proc/interrupts > "$OUT/interrupts.end"
}
trap finish EXIT

[ -n "$(queue_irqs eth0)" ] || { echo "eth0 has no queue IRQs" >&2; cat /proc/interrupts >&2; exit 1; }
for i in $(queue_irqs eth0); do echo 0 > /proc/irq/$i/smp_affinity_list; done
snapshot pinned

ip netns exec a /usr/bin/iperf3 --server --daemon
wait_for 30 sh -c "/usr/sbin/ip netns exec a netstat -ltn | grep -q ':5201 '"
ip netns exec b ping -c 2 -w 20 10.0.0.1 > "$OUT/ping"

vportd daemon --period-ms 1000 --metrics 127.0.0.1:9477 --socket off --no-uevents \
  > /run/daemon.out 2> /run/daemon.log &
DAEMON=$!
: > /run/timeline
(
  while :; do
    f=$(metric_fields) && k=$(awk '$1 == "cpu0" { print $2, $3, $4, $5, $6, $7, $8 }' /proc/stat) \
      && echo "$(now_ms) $f $k" >> /run/timeline
    sleep 0.2
  done
) &
POLLER=$!
# Two ticks: the daemon has a baseline and serves metrics.
wait_for 60 sh -c '[ "$(awk "END { print \$2 }" /run/timeline)" -ge 2 ]'

# Load: only the iperf3 processes run away from CPU 0; the interrupts are pinned there.
mark load_start
ip netns exec b taskset -c 1-3 /usr/bin/iperf3 --client 10.0.0.1 --parallel 4 \
  --time "$LOAD_S" --json > "$OUT/iperf3.json"
mark load_stop
snapshot load

# Idle: wait for coalescing, then for five quiet ticks (no move at all).
c0=$(field 3)
wait_for 90 sh -c "[ \$(awk 'END { print \$4 }' /run/timeline) -gt $c0 ]" || true
quiet=0; last=""; tries=0
while [ "$quiet" -lt 5 ] && [ "$tries" -lt 120 ]; do
  sleep 1; tries=$((tries + 1))
  now=$(metric_fields | awk '{ print $2 + $3 }')
  if [ "$now" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; fi
  last=$now
done
mark idle
snapshot idle

# Another writer: one of eth0's queue IRQs moved by hand.
irq=$(queue_irqs eth0 | head -n 1)
cur=$(cat /proc/irq/$irq/smp_affinity_list)
to=2; [ "$cur" = 2 ] && to=1
echo "$irq $cur $to" > "$OUT/external"
e0=$(field 4)
mark external
echo $to > /proc/irq/$irq/smp_affinity_list
wait_for 20 sh -c "[ \$(awk 'END { print \$5 }' /run/timeline) -gt $e0 ]" || true
mark external_seen
sleep 5
cat /proc/irq/$irq/smp_affinity_list /proc/irq/$irq/effective_affinity_list > "$OUT/external.after"
mark end
snapshot end
if kill -0 "$DAEMON"; then echo alive; else echo dead; fi > "$OUT/daemon.state"
