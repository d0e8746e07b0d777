#!/usr/bin/env bash
# Resident memory of the running daemon (docs/rebalance.md's figure; target under 10 MiB).
# The daemon runs on a copy of the 82576 guest fixture (tests/fixtures/guest-82576-7vfs: 2
# PFs, 7 VFs, their queue IRQs) with a /proc/stat of 4 CPUs, a 200 ms period and the metrics
# endpoint serving; after SECONDS (default 10, 50 periods) and a scrape of the metrics, VmRSS
# and VmHWM are read from /proc/PID/status. No root, no NIC.
# Usage: [VPORTD_BIN=path] benches/daemon_rss.sh [SECONDS]
set -euo pipefail
SECS=${1:-10}
cd "$(dirname "$0")/.."
if [[ -n ${VPORTD_BIN:-} ]]; then
  BIN=$VPORTD_BIN
else
  cargo build --release --quiet
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/vportd
fi
DIR=$(mktemp -d)
PID=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
cp -a tests/fixtures/guest-82576-7vfs/. "$DIR/"
{
  echo "cpu  400 0 200 40000 0 0 100 0 0 0"
  for c in 0 1 2 3; do echo "cpu$c 100 0 50 10000 0 0 25 0 0 0"; done
} > "$DIR/proc/stat"
PORT=$((20000 + RANDOM % 20000))
"$BIN" daemon --root "$DIR" --period-ms 200 --socket off --no-uevents \
  --metrics "127.0.0.1:$PORT" > "$DIR/daemon.out" 2> "$DIR/daemon.log" &
PID=$!
sleep "$SECS"
kill -0 "$PID" || { cat "$DIR/daemon.log" >&2; exit 1; }
# One scrape, through bash's /dev/tcp (no HTTP client needed).
exec 3<> "/dev/tcp/127.0.0.1/$PORT" \
  || { echo "the metrics endpoint did not answer" >&2; cat "$DIR/daemon.log" >&2; exit 1; }
printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
cat <&3 > "$DIR/metrics"
exec 3<&-
TICKS=$(awk '/^vportd_ticks_total / { print $2 }' "$DIR/metrics")
read -r RSS HWM < <(awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { print r, h }' \
  "/proc/$PID/status")
awk -v r="$RSS" -v h="$HWM" -v t="$TICKS" -v b="$BIN" 'BEGIN {
  printf "vportd daemon (%s), %s ticks at 200 ms on the 82576 fixture:\n", b, t
  printf "  VmRSS %.1f MiB, VmHWM %.1f MiB (target under 10 MiB)\n", r / 1024, h / 1024
}'
