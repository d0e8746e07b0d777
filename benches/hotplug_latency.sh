#!/bin/sh
# How long `vportd hotplug` takes to hand an event to a running daemon, as udev sees it
# (process start to exit). udev kills slow handlers; the target is under 50 ms.
# Usage: benches/hotplug_latency.sh [N]   (builds release; needs no root, no NIC)
set -eu
N=${1:-200}
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/vportd
DIR=$(mktemp -d)
trap 'kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT
"$BIN" daemon --metrics off --no-uevents --socket "$DIR/s.sock" 2>"$DIR/daemon.log" &
PID=$!
while [ ! -S "$DIR/s.sock" ]; do sleep 0.05; done
i=0
while [ $i -lt "$N" ]; do
  t0=$(date +%s%N)
  ACTION=add SUBSYSTEM=net DEVPATH=/devices/pci0000:00/0000:00:03.0/0000:02:00.0/net/eth1 \
    INTERFACE=eth1 IFINDEX=5 "$BIN" hotplug --socket "$DIR/s.sock" 2>/dev/null
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000 ))
  i=$((i + 1))
done | sort -n | awk -v n="$N" '{ a[NR] = $1 } END {
  printf "vportd hotplug with a daemon, %d runs: median %.1f ms, p99 %.1f ms, max %.1f ms (target < 50 ms)\n",
    n, a[int(n / 2) + 1] / 1000, a[int(n * 0.99)] / 1000, a[n] / 1000 }'
