# The lab: the rig's guest for a person (tests/vm/lab). Run by /init as
#   lab.sh prepare   bring both PFs' links up (igb refuses VF rates while a PF's link is down)
#   lab.sh apply     provision /etc/vportd/lab.toml, so that the shell starts with real VFs
#   lab.sh banner    say what is here and what to try
#   lab.sh tour      the whole job, unattended: discover, plan, apply, status, the oracles,
#                    apply again (nothing to do); prints "rig: tour passed" if every step passed
. /etc/rig.sh
config=/etc/vportd/lab.toml

prepare() {
  ip link set eth0 up && ip link set eth1 up || return 1
  wait_for 20 sh -c '/usr/sbin/ip link show eth0 | grep -q LOWER_UP' &&
    wait_for 20 sh -c '/usr/sbin/ip link show eth1 | grep -q LOWER_UP'
}

apply() {
  vportd apply "$config"
}

pf_line() { # netdev
  dev=/sys/class/net/$1/device
  vfs=$(for vf in "$dev"/virtfn*; do [ -e "$vf" ] && ls "$vf/net"; done | tr '\n' ' ')
  echo "   PF $1  $(basename "$(readlink -f "$dev")")  $(cat /sys/class/net/$1/address)  VFs: $(cat "$dev/sriov_numvfs") of $(cat "$dev/sriov_totalvfs") ${vfs:+($vfs)}"
}

banner() {
  cat <<BANNER

=====================================================================================
 vportd lab: a QEMU guest with two Intel 82576 NICs on one virtual hub, run by the real
 igb and igbvf drivers. vportd has provisioned $config.

$(pf_line eth0)
$(pf_line eth1)

 Try:
   vportd status                   each vPort, where it went, and drift
   vportd plan $config     (edit it, then: vportd apply $config)
   vportd discover                 PFs, VFs, queues, IRQs (add --json for the schema)
   ip -d link show eth0            the VFs' settings as the kernel reports them
   ip link set eth0 vf 0 vlan 7    change one behind vportd's back, then: vportd status
   ethtool -l eth0                 queue channels;   ethtool -x eth0   RSS table
   grep eth /proc/interrupts       one interrupt per queue; /proc/irq/<N>/smp_affinity_list
 Reference config with every key: /etc/vportd/examples/
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
  echo "($(wc -c < /tmp/discover.json) bytes of JSON in /tmp/discover.json; schema: docs/discover-schema.md)"
}

tour() {
  failed=0
  step vportd --version
  step vportd discover
  step cat "$config"
  step vportd plan "$config"
  step vportd apply "$config"
  step vportd status --config "$config"
  step ip -d link show eth0
  step ip -d link show eth1
  step vportd apply "$config"
  step discover_json
  step ethtool -l eth0
  step grep -E 'CPU|eth' /proc/interrupts
  banner
  if [ $failed -eq 0 ]; then echo "rig: tour passed"; else echo "rig: tour FAILED"; fi
}

case $1 in
  prepare) prepare ;;
  apply) apply ;;
  banner) banner ;;
  tour) tour ;;
  *) echo "usage: lab.sh prepare|apply|banner|tour" >&2; exit 2 ;;
esac
