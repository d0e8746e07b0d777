# Driver binding through driver_override on the real kernel: VFs to pci-stub, back to
# igbvf, and a driver that is not loaded (vfio-pci), which must fail and roll back.
pf=$(basename "$(readlink /sys/class/net/eth0/device)")
ip link set eth0 up
wait_for 20 sh -c '/usr/sbin/ip link show eth0 | grep -q LOWER_UP'
config() { # $1: VF driver
  printf 'state_dir = "/tmp/state"\n[[uplink]]\npci = "%s"\nvf_driver = "%s"\n' "$pf" "$1"
  printf '[[vport]]\nname = "a"\nuplink = "%s"\nmac = "02:00:00:00:0b:01"\nvlan = 5\n' "$pf"
  printf '[[vport]]\nname = "b"\nuplink = "%s"\nmac = "02:00:00:00:0b:02"\n' "$pf"
}
config pci-stub > /tmp/stub.toml
config igbvf > /tmp/igbvf.toml
config vfio-pci > /tmp/vfio.toml
step() { # NAME ARGS...
  name=$1; shift
  vportd "$@" > $OUT/$name.out 2> $OUT/$name.err
  echo $? > $OUT/$name.rc
  for vf in /sys/bus/pci/devices/$pf/virtfn*; do
    [ -e "$vf" ] || continue
    d=-; [ -e $vf/driver ] && d=$(basename "$(readlink $vf/driver)")
    echo "${vf##*/virtfn} $d $(ls $vf/net 2>/dev/null | wc -l) $(cat $vf/driver_override)"
  done > $OUT/$name.vfs
  ip -d -j link show eth0 > $OUT/$name.ip.json
}
step stub apply /tmp/stub.toml
step stub2 apply /tmp/stub.toml
step igbvf apply /tmp/igbvf.toml
step vfio apply /tmp/vfio.toml
step after-vfio status --config /tmp/igbvf.toml
true
