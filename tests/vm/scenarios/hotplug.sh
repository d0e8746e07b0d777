# Hotplug steps for tests/vm/hotplug.rs: sourced, then one step function is called.
# The project's udev rules are installed (/etc/udev/rules.d/90-vportd.rules) and run
# /usr/bin/vportd hotplug; the daemon listens to uevents and the control socket.
CFG=/etc/vportd/host.toml
STATE=/run/vportd-state/state.json
HOT=0000:02:00.0

pf_netdev() { ls "/sys/bus/pci/devices/$1/net" 2>/dev/null | head -n1; }
lost_count() { grep -c '"health": "lost"' "$STATE" 2>/dev/null || echo 0; }
# Both vPorts of the hot NIC carry their MACs on its VFs, as the real driver reports them.
hot_vfs_ready() {
  pf=$(pf_netdev $HOT) && [ -n "$pf" ] &&
    ip link show dev "$pf" | grep -q '02:00:00:00:02:01' &&
    ip link show dev "$pf" | grep -q '02:00:00:00:02:02'
}
collect() {
  cp "$STATE" "$OUT/$1.state.json" 2>/dev/null
  vportd status --config $CFG --json > "$OUT/$1.status.json" 2> "$OUT/$1.status.err"
  echo $? > "$OUT/$1.status.rc"
  pf=$(pf_netdev $HOT)
  [ -n "$pf" ] && ip -d -j link show dev "$pf" > "$OUT/$1.ip.json"
  wget -q -O "$OUT/$1.metrics" http://127.0.0.1:9477/metrics 2> "$OUT/$1.metrics.err"
  if kill -0 "$(cat /run/daemon.pid)" 2>/dev/null; then echo alive; else echo dead; fi > "$OUT/$1.daemon"
  cp /run/daemon.log "$OUT/daemon.log"
  debug
}

debug() {
  ps > "$OUT/ps" 2>&1
  dmesg | tail -n 40 > "$OUT/dmesg"
  ls -la /run/vportd-state > "$OUT/statedir" 2>&1
}

step_boot() {
  vportd daemon --config $CFG --metrics 127.0.0.1:9477 > /run/daemon.log 2>&1 &
  echo $! > /run/daemon.pid
  wait_for 30 [ -S /run/vportd/vportd.sock ] || exit 1
  wait_for 120 grep -q vm-a "$STATE" || { debug; collect boot; exit 1; }
  stat -c '%a %U %G' /run/vportd/vportd.sock > "$OUT/socket"
  collect boot
}

step_hotadd() {
  t0=$(now_ms)
  wait_for 60 hot_vfs_ready || { collect hotadd; exit 1; }
  echo $(( $(now_ms) - t0 )) > "$OUT/hotadd_ms"
  sleep 1
  collect hotadd
  # The udev properties of the hot NIC's VF netdevs (NM_UNMANAGED from the rules' IMPORT).
  udevadm settle --timeout=30
  for vf in /sys/bus/pci/devices/$HOT/virtfn*; do
    for n in "$vf"/net/*; do
      [ -e "$n" ] || continue
      echo "== $(basename "$(readlink -f "$vf")") $(basename "$n")"
      udevadm info -q property -p "$n"
    done
  done > "$OUT/hotadd.udev"
}

# Whether the daemon started no reconcile for 2 s.
settled() {
  _n=$(grep -c 'reconcile after' /run/daemon.log)
  sleep 2
  [ "$_n" = "$(grep -c 'reconcile after' /run/daemon.log)" ]
}

step_rename() {
  # The hot-add's reconciles finish first: an event that arrives while one runs is handled in
  # the next batch, whose log line is named after its first event (seen in CI: the move went
  # into a batch of 14 named "add pci").
  _tries=0
  until settled || [ $_tries -ge 15 ]; do _tries=$((_tries + 1)); done
  vf=$(ls /sys/bus/pci/devices/$HOT/virtfn0/net)
  echo "$vf" > "$OUT/vf_before"
  ip link set dev "$vf" down
  ip link set dev "$vf" name vfren0 || exit 1
  udevadm settle --timeout=30
  wait_for 30 grep -q 'reconcile after move net' /run/daemon.log
  ls /sys/bus/pci/devices/$HOT/virtfn0/net > "$OUT/vf_after"
  collect rename
}

step_remove() {
  t0=$(now_ms)
  wait_for 60 sh -c "[ \$(grep -c '\"health\": \"lost\"' $STATE) -ge 2 ]" || { collect remove; exit 1; }
  echo $(( $(now_ms) - t0 )) > "$OUT/remove_ms"
  sleep 1
  collect remove
}

step_readd() {
  t0=$(now_ms)
  wait_for 60 hot_vfs_ready || { collect readd; exit 1; }
  wait_for 30 sh -c "[ \$(grep -c '\"health\": \"lost\"' $STATE) -eq 0 ]" || { collect readd; exit 1; }
  echo $(( $(now_ms) - t0 )) > "$OUT/readd_ms"
  sleep 1
  collect readd
}
