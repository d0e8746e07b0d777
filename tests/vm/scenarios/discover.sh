# Two PFs, 7 VFs on the first, some VFs configured, PFs up: what `vportd discover --json` must
# agree with. Writes $OUT/discover.json, the oracles' views ($OUT/sysfs.txt, one line per
# fact; $OUT/ip-link.json, `ip -d -j link show`; $OUT/interrupts), and $OUT/fixture.tar
# (what `vportd discover --record` captured) with $OUT/recorded.json, the JSON of that run.
set -e
pf=/sys/class/net/eth0/device
echo 7 > $pf/sriov_numvfs
wait_for 30 sh -c "[ \$(ls -d $pf/virtfn*/net/* 2>/dev/null | wc -l) -eq 7 ]"
ip link set eth0 up
ip link set eth1 up
# igb refuses a VF rate while the PF's link is down (it checks it against the link speed).
wait_for 20 sh -c '/usr/sbin/ip link show eth0 | grep -q LOWER_UP'
ip link set eth0 vf 1 mac 02:00:00:00:01:01 vlan 100 qos 3 spoofchk off trust on
ip link set eth0 vf 2 mac 02:00:00:00:01:02 max_tx_rate 100
ip link set eth0 vf 3 vlan 4094
# The VF of vf 1 up too, so that igbvf requests (and names) its interrupts.
ip link set "$(ls $pf/virtfn1/net)" up

vportd discover --json > $OUT/discover.json
ip -d -j link show > $OUT/ip-link.json
cat /proc/interrupts > $OUT/interrupts

for dev in /sys/bus/pci/devices/*; do
  case $(cat $dev/class) in 0x02*) ;; *) continue ;; esac
  bdf=${dev##*/}
  driver=; [ -e $dev/driver ] && driver=$(basename "$(readlink $dev/driver)")
  physfn=; [ -e $dev/physfn ] && physfn=$(basename "$(readlink $dev/physfn)")
  echo "function $bdf vendor=$(cat $dev/vendor) device=$(cat $dev/device) driver=$driver physfn=$physfn"
  if [ -e $dev/sriov_totalvfs ]; then
    echo "sriov $bdf total=$(cat $dev/sriov_totalvfs) num=$(cat $dev/sriov_numvfs)"
  fi
  for vf in $dev/virtfn*; do
    [ -e "$vf" ] && echo "virtfn $bdf ${vf##*/virtfn} $(basename "$(readlink $vf)")"
  done
  for net in $dev/net/*; do
    [ -e "$net" ] && echo "netdev $bdf ${net##*/} ifindex=$(cat $net/ifindex) mac=$(cat $net/address)"
  done
  if [ -d $dev/msi_irqs ]; then
    echo "irqs $bdf $(ls $dev/msi_irqs | sort -n | tr '\n' ' ')"
  fi
done > $OUT/sysfs.txt

vportd discover --record /tmp/fixture --json > $OUT/recorded.json
# One file over 9p, not hundreds: each file costs several round trips under TCG.
tar -C /tmp -cf $OUT/fixture.tar fixture
