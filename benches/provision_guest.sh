# Runs in the rig's guest (see benches/provision_guest.rs). Prints "name ms" lines.
# Time comes from /proc/uptime (10 ms resolution: busybox's date has no %N), so each
# figure is the total of several runs divided by their number.
pf0=$(basename "$(readlink /sys/class/net/eth0/device)")
pf1=$(basename "$(readlink /sys/class/net/eth1/device)")
for i in 0 1; do ip link set eth$i up; done
wait_for 20 sh -c '/usr/sbin/ip link show eth0 | grep -q LOWER_UP'
wait_for 20 sh -c '/usr/sbin/ip link show eth1 | grep -q LOWER_UP'
now() { cut -d' ' -f1 /proc/uptime; }
ms() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN{printf "%.1f", (b-a)*1000/n}'; }

fresh_vfs() { # 7 clean VFs on eth0, PF link back up, no state
  echo 0 > /sys/class/net/eth0/device/sriov_numvfs
  echo 7 > /sys/class/net/eth0/device/sriov_numvfs
  wait_for 30 sh -c '[ $(ls -d /sys/class/net/eth0/device/virtfn*/net/* 2>/dev/null | wc -l) -eq 7 ]'
  wait_for 20 sh -c '/usr/sbin/ip link show eth0 | grep -q LOWER_UP'
  rm -rf /tmp/state
}
vports() { # PF DEV-PREFIX: 7 vPorts with MAC, VLAN+QoS, max rate, spoofchk, trust
  for n in 0 1 2 3 4 5 6; do
    printf '[[vport]]\nname = "%s%d"\nuplink = "%s"\nmac = "02:00:00:00:%s:%02x"\nvlan = %d\nqos = %d\nmax_tx_rate_mbps = %d\nspoofchk = %s\ntrust = %s\n\n' \
      "$2" $n "$1" "$3" $n $((100 + n)) $((n % 8)) $((100 + 10 * n)) \
      $([ $((n % 2)) -eq 0 ] && echo true || echo false) $([ $((n % 3)) -eq 0 ] && echo true || echo false)
  done
}
{ printf 'state_dir = "/tmp/state"\n[[uplink]]\npci = "%s"\nnum_vfs = 7\n\n' "$pf0"; vports $pf0 a 0a; } > /tmp/seven.toml
ipscript() { # the same settings, one `ip link set` per attribute, as an operator's script would
  for n in 0 1 2 3 4 5 6; do
    ip link set eth0 vf $n mac $(printf '02:00:00:00:0a:%02x' $n)
    ip link set eth0 vf $n vlan $((100 + n)) qos $((n % 8))
    ip link set eth0 vf $n max_tx_rate $((100 + 10 * n))
    ip link set eth0 vf $n spoofchk $([ $((n % 2)) -eq 0 ] && echo on || echo off)
    ip link set eth0 vf $n trust $([ $((n % 3)) -eq 0 ] && echo on || echo off)
  done
}

# The fair peer: the same 35 settings in one `ip -batch` process (one request per attribute,
# no read-back, no journal), as an operator's script would be written to be fast.
for n in 0 1 2 3 4 5 6; do
  echo "link set eth0 vf $n mac $(printf '02:00:00:00:0a:%02x' $n)"
  echo "link set eth0 vf $n vlan $((100 + n)) qos $((n % 8))"
  echo "link set eth0 vf $n max_tx_rate $((100 + 10 * n))"
  echo "link set eth0 vf $n spoofchk $([ $((n % 2)) -eq 0 ] && echo on || echo off)"
  echo "link set eth0 vf $n trust $([ $((n % 3)) -eq 0 ] && echo on || echo off)"
done > /tmp/seven.batch
ipbatch() { ip -batch /tmp/seven.batch; }
vportd_apply() {
  vportd apply /tmp/seven.toml > /tmp/apply.log 2>&1 || { echo "vportd apply failed:" >&2; cat /tmp/apply.log >&2; }
}
# An earlier build, when the bench was given one (VPORTD_BENCH_BEFORE): the same run compares.
before_apply() {
  if [ -x /usr/bin/vportd-before ]; then
    vportd-before apply /tmp/seven.toml > /tmp/apply.log 2>&1 || { echo "vportd-before apply failed:" >&2; cat /tmp/apply.log >&2; }
  fi
}
# One side's run on fresh VFs, its wall time added to the named total.
timed() { # total-variable command
  fresh_vfs; a=$(now); $2; b=$(now)
  eval "$1=\$(awk -v t=\$$1 -v a=$a -v b=$b 'BEGIN{print t+b-a}')"
}

R=${ROUNDS:-6}
tv=0; ti=0; tb=0; to=0
for r in $(seq 1 $R); do
  # Rotate who goes first, so none always meets a warmer cache.
  case $((r % 3)) in
    1) timed tv vportd_apply; timed ti ipscript; timed tb ipbatch ;;
    2) timed ti ipscript; timed tb ipbatch; timed tv vportd_apply ;;
    0) timed tb ipbatch; timed tv vportd_apply; timed ti ipscript ;;
  esac
  [ -x /usr/bin/vportd-before ] && timed to before_apply
done
echo "reconcile_vportd $(ms 0 $tv $R)"
echo "reconcile_vportd_before $(ms 0 $to $R)"
echo "reconcile_ip_script $(ms 0 $ti $R)"
echo "reconcile_ip_batch $(ms 0 $tb $R)"
# Every side must have produced the same VF settings: the last one's, counted.
ip -d link show eth0 | grep -c "vlan 10[0-6]" > $OUT/vlan_count
# Where vportd's time goes: one more reconcile with VPORTD_TIMING (each phase and step).
fresh_vfs
VPORTD_TIMING=1 vportd apply /tmp/seven.toml > /dev/null 2> $OUT/timing.err
# (A step's line may follow its progress text on the same line: take from "timing:" on.)
grep -o 'timing: .*' $OUT/timing.err > $OUT/timing || true
if [ -x /usr/bin/vportd-before ]; then
  fresh_vfs
  VPORTD_TIMING=1 vportd-before apply /tmp/seven.toml > /dev/null 2> $OUT/timing-before.err
  grep -o 'timing: .*' $OUT/timing-before.err > $OUT/timing-before || true
fi
ip -d link show eth0 | grep -c "vlan 10[0-6]" > $OUT/vlan_count_vportd

# Verify an unchanged host of 14 VFs.
echo 7 > /sys/class/net/eth1/device/sriov_numvfs
wait_for 30 sh -c '[ $(ls -d /sys/class/net/eth1/device/virtfn*/net/* 2>/dev/null | wc -l) -eq 7 ]'
wait_for 20 sh -c '/usr/sbin/ip link show eth1 | grep -q LOWER_UP'
{ printf 'state_dir = "/tmp/state"\n[[uplink]]\npci = "%s"\nnum_vfs = 7\n[[uplink]]\npci = "%s"\nnum_vfs = 7\n\n' "$pf0" "$pf1"; vports $pf0 a 0a; vports $pf1 b 0b; } > /tmp/fourteen.toml
vportd apply /tmp/fourteen.toml > $OUT/fourteen.apply 2>&1
V=${VERIFY_ROUNDS:-20}
a=$(now)
for r in $(seq 1 $V); do vportd apply /tmp/fourteen.toml > /tmp/noop.out 2>&1; done
b=$(now)
cp /tmp/noop.out $OUT/noop.out
echo "verify_unchanged_14_vfs $(ms $a $b $V)"
# The same, timed inside vportd: the verification without the process start.
for r in $(seq 1 $V); do vportd apply --json /tmp/fourteen.toml; done > /tmp/noop.json 2>&1
awk -F': ' '/"elapsed_ms"/ {s += $2; n++} END {printf "verify_in_process %.1f\n", s / n}' /tmp/noop.json
grep -c '"noop": true' /tmp/noop.json > $OUT/noop_count
a=$(now)
for r in $(seq 1 $V); do vportd --version > /dev/null; done
b=$(now)
echo "process_start $(ms $a $b $V)"
a=$(now)
for r in $(seq 1 $V); do vportd status --config /tmp/fourteen.toml > /dev/null 2>&1; done
b=$(now)
echo "status_14_vfs $(ms $a $b $V)"
a=$(now)
for r in $(seq 1 $V); do ip -d link show eth0 > /dev/null; ip -d link show eth1 > /dev/null; done
b=$(now)
echo "ip_show_both_pfs $(ms $a $b $V)"
