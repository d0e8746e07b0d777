# The lab: the rig's guest for a person (tests/vm/lab). Run by /init as
#   lab.sh prepare   create VFs on eth0 and give one of them a configuration
#   lab.sh banner    say what is here and what to try
#   lab.sh tour      run the things to try, unattended; print "rig: tour passed" at the end
. /etc/rig.sh
pf=/sys/class/net/eth0/device
lab_vfs=4

prepare() {
  echo "$lab_vfs" > $pf/sriov_numvfs || return 1
  wait_for 20 sh -c "[ \$(ls -d $pf/virtfn*/net/* 2>/dev/null | wc -l) -eq $lab_vfs ]" || return 1
  # What vportd apply will do for a vPort, by hand for now: VF 0 gets a MAC, a VLAN, spoofchk.
  ip link set eth0 vf 0 mac 02:00:00:00:01:01 vlan 100 qos 3 spoofchk on trust off
  ip link set eth0 up
  ip link set eth1 up
}

banner() {
  cat <<BANNER

=====================================================================================
 vportd lab: a QEMU guest with two Intel 82576 NICs on one virtual hub, run by the
 real igb driver; eth0 has $lab_vfs SR-IOV VFs (real igbvf netdevs), VF 0 configured.

   PF eth0  $(basename "$(readlink -f /sys/class/net/eth0/device)")   VFs: $(cd $pf && for v in virtfn*; do ls "$v/net"; done | tr '\n' ' ')
   PF eth1  $(basename "$(readlink -f /sys/class/net/eth1/device)")

 Try:
   vportd discover                 what vportd sees (add --json for the schema)
   ip -d link show eth0            the VFs' settings as the kernel reports them
   ip link set eth0 vf 1 mac 02:00:00:00:01:02 vlan 200
   ethtool -l eth0                 queue channels;   ethtool -x eth0   RSS table
   grep eth /proc/interrupts       one interrupt per queue
   cat /proc/irq/<N>/smp_affinity_list
   echo 0 > /sys/class/net/eth0/device/sriov_numvfs    (then 7: the 82576's maximum)
 Example configs: $(ls /etc/vportd/*.toml 2>/dev/null | tr '\n' ' ' | grep . || echo "none yet (the repository's examples/*.toml land in /etc/vportd/)")
 Leave with: poweroff   (or Ctrl-a x)
=====================================================================================
BANNER
}

step() {
  echo
  echo "guest# $*"
  "$@"
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "rig: tour step failed with status $rc: $*"
    failed=1
  fi
}

discover_json() {
  vportd discover --json > /tmp/discover.json || return 1
  echo "($(wc -c < /tmp/discover.json) bytes of JSON, in /tmp/discover.json; schema: docs/discover-schema.md)"
}

tour() {
  failed=0
  banner
  step vportd --version
  step vportd discover
  step discover_json
  step ip -d link show eth0
  step ethtool -i eth0
  step ethtool -l eth0
  step cat $pf/sriov_totalvfs $pf/sriov_numvfs
  step grep -E 'CPU|eth' /proc/interrupts
  for config in /etc/vportd/*.toml; do
    [ -f "$config" ] || continue
    if vportd --help | grep -qw plan; then
      step vportd plan "$config"
    fi
  done
  echo
  if [ $failed -eq 0 ]; then echo "rig: tour passed"; else echo "rig: tour FAILED"; fi
}

case $1 in
  prepare) prepare ;;
  banner) banner ;;
  tour) tour ;;
  *) echo "usage: lab.sh prepare|banner|tour" >&2; exit 2 ;;
esac
