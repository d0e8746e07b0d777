# Sourced by the guest's shells and by every job script the test harness runs.
# Debian's busybox runs its own applets before anything on PATH, and its `ip` knows nothing of
# VFs: these functions send the oracles' names to the real iproute2 and ethtool.
ip() { /usr/sbin/ip "$@"; }
ethtool() { /usr/sbin/ethtool "$@"; }
devlink() { /usr/sbin/devlink "$@"; }
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

# pf_pair SECONDS: the two igb PFs on one QEMU hub as two hosts, eth0 in namespace a
# (10.0.0.1/24) and eth1 in namespace b (10.0.0.2/24), both up; waits up to SECONDS for each
# carrier. Traffic between them raises real per-queue interrupts on both.
pf_pair() {
  for _side in "a eth0 10.0.0.1" "b eth1 10.0.0.2"; do
    set -- "$1" $_side
    ip netns add "$2"
    ip link set "$3" netns "$2"
    ip -n "$2" link set lo up
    ip -n "$2" addr add "$4/24" dev "$3"
    ip -n "$2" link set "$3" up
  done
  wait_for "$1" sh -c '/usr/sbin/ip -n a link show eth0 | grep -q LOWER_UP'
  wait_for "$1" sh -c '/usr/sbin/ip -n b link show eth1 | grep -q LOWER_UP'
}
