# vportd's rebalancer and Debian's irqbalance in turn on the same real interrupts
# (tests/vm/irq_compare.rs, benches/irq_compare.rs). eth0 (namespace a, 10.0.0.1) and eth1
# (namespace b, 10.0.0.2) share a QEMU hub; iperf3 -P 4 sends from b to a.
#
# Each run (CONTENDERS, in that order, so that alternating runs see the same conditions):
#   every queue IRQ of eth0 and eth1 pinned to CPU 0, then the contender started;
#   BASE_S idle, HOT_S of iperf3 (taskset to CPUs 1-3: only the interrupts are on CPU 0),
#   IDLE_S idle; then the contender stopped.
# A sampler writes, every ~250 ms, to $OUT/samples.N: "T ms", "C cpu irq softirq total" per CPU
# (/proc/stat ticks), "I irq name affinity effective count" per queue IRQ. $OUT/marks.N has
# "ms name" (start, hot_start, hot_stop, end); $OUT/link.N.{before,after} `ip -s -s link` of
# both PFs, $OUT/softnet.N.{before,after} /proc/net/softnet_stat; $OUT/iperf3.N.json; $OUT/contender.N.log the contender's output.
set -e
CONTENDERS=${CONTENDERS:-vportd irqbalance}
BASE_S=${BASE_S:-4}
HOT_S=${HOT_S:-15}
IDLE_S=${IDLE_S:-20}
SAMPLE_S=${SAMPLE_S:-0.25}

pf_pair 30

queue_irqs() { awk '$NF ~ /^eth[01]-/ { sub(":", "", $1); print $1 }' /proc/interrupts; }
IRQS=$(queue_irqs | tr '\n' ' ')
[ -n "$IRQS" ] || { echo "no queue IRQs" >&2; cat /proc/interrupts >&2; exit 1; }

sample() {
  awk -v irqs="$IRQS" 'BEGIN {
    getline up < "/proc/uptime"; split(up, u, " "); printf "T %d\n", u[1] * 1000
    while ((getline l < "/proc/stat") > 0) {
      n = split(l, f, " ")
      if (f[1] ~ /^cpu[0-9]+$/) {
        t = 0; for (k = 2; k <= 9 && k <= n; k++) t += f[k]
        print "C", substr(f[1], 4), f[7], f[8], t
      }
    }
    n = split(irqs, q, " "); for (k = 1; k <= n; k++) want[q[k] ":"] = 1
    getline head < "/proc/interrupts"; ncpu = split(head, h, " ")
    while ((getline l < "/proc/interrupts") > 0) {
      m = split(l, f, " ")
      if (!(f[1] in want)) continue
      c = 0; for (j = 2; j <= ncpu + 1; j++) c += f[j]
      i = substr(f[1], 1, length(f[1]) - 1)
      a = ""; e = ""
      p = "/proc/irq/" i "/smp_affinity_list"; getline a < p; close(p)
      p = "/proc/irq/" i "/effective_affinity_list"; getline e < p; close(p)
      print "I", i, f[m], a, e, c
    }
  }'
}
links() { ip -n a -s -s link show dev eth0; ip -n b -s -s link show dev eth1; }

ip netns exec a /usr/bin/iperf3 --server --daemon
wait_for 30 sh -c "/usr/sbin/ip netns exec a netstat -ltn | grep -q ':5201 '"
ip netns exec b ping -c 2 -w 20 10.0.0.1 > "$OUT/ping"
mkdir -p /run/irqbalance
cat /proc/loadavg > "$OUT/guest_loadavg.start"

n=0
for who in $CONTENDERS; do
  n=$((n + 1))
  echo "$who" > "$OUT/run.$n"
  for i in $IRQS; do echo 0 > /proc/irq/$i/smp_affinity_list; done
  : > /run/samples
  ( while :; do sample >> /run/samples; sleep "$SAMPLE_S"; done ) &
  SAMPLER=$!
  mark() { echo "$(now_ms) $1" >> "$OUT/marks.$n"; }
  mark start
  case $who in
    vportd)
      vportd daemon --period-ms 1000 --metrics 127.0.0.1:9477 --socket off --no-uevents \
        > "$OUT/contender.$n.log" 2>&1 & ;;
    irqbalance)
      /usr/sbin/irqbalance --foreground --interval=1 > "$OUT/contender.$n.log" 2>&1 & ;;
    *) echo "unknown contender $who" >&2; exit 2 ;;
  esac
  PID=$!
  sleep "$BASE_S"
  kill -0 "$PID" || { echo "$who exited early" >&2; cat "$OUT/contender.$n.log" >&2; exit 1; }
  links > "$OUT/link.$n.before"
  cat /proc/net/softnet_stat > "$OUT/softnet.$n.before"
  mark hot_start
  ip netns exec b taskset -c 1-3 /usr/bin/iperf3 --client 10.0.0.1 --parallel 4 \
    --time "$HOT_S" --json > "$OUT/iperf3.$n.json"
  mark hot_stop
  links > "$OUT/link.$n.after"
  cat /proc/net/softnet_stat > "$OUT/softnet.$n.after"
  sleep "$IDLE_S"
  mark end
  if kill -0 "$PID"; then echo alive; else echo dead; fi > "$OUT/state.$n"
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  kill "$SAMPLER" 2>/dev/null || true
  wait "$SAMPLER" 2>/dev/null || true
  cp /run/samples "$OUT/samples.$n"
done
echo "$n" > "$OUT/runs"
cat /proc/loadavg > "$OUT/guest_loadavg.end"
