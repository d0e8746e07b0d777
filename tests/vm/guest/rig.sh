# Sourced by the guest's shells and by every job script the test harness runs.
# Debian's busybox runs its own applets before anything on PATH, and its `ip` knows nothing of
# VFs: these functions send the oracles' names to the real iproute2 and ethtool.
ip() { /usr/sbin/ip "$@"; }
ethtool() { /usr/sbin/ethtool "$@"; }
udevadm() { /usr/bin/udevadm "$@"; }

# Milliseconds since boot, to 10 ms (busybox's date has no %N).
now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

# wait_for SECONDS COMMAND...: run COMMAND until it succeeds; fail after SECONDS.
wait_for() {
  _limit=$1; shift
  _tries=$((_limit * 10))
  while ! "$@" 2>/dev/null; do
    _tries=$((_tries - 1))
    [ "$_tries" -le 0 ] && { echo "rig: timed out after ${_limit}s waiting for: $*" >&2; return 1; }
    sleep 0.1
  done
}

# The real systemd-udevd (Debian's udevadm under its other name), with the rules in
# /etc/udev/rules.d; it processes the devices already present before returning.
start_udevd() {
  mkdir -p /run/udev
  /lib/systemd/systemd-udevd --daemon
  udevadm trigger --action=add
  udevadm settle --timeout=30
}

# The PCI functions bound to igb (the emulated 82576 PFs).
igb_pfs() { ls /sys/bus/pci/drivers/igb 2>/dev/null | grep '^0000:' || true; }
