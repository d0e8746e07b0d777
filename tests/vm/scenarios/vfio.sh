# vfio-pci behind the emulated IOMMU: VFs bound through apply, their groups in discover, a
# VM-like holder (perl doing QEMU's container, group and device-fd ioctls) named by plan and
# refusing a resize, and a holder that hides its group making the sriov_numvfs write hang:
# apply must still return, in bounded time. The PF on NUMA node 0 is used.
pf=$1
dev=/sys/bus/pci/devices/$pf
eth=$(ls $dev/net)
ip link set "$eth" up
wait_for 20 sh -c "/usr/sbin/ip link show $eth | grep -q LOWER_UP"
config() { # $1: VF count
  printf 'state_dir = "/tmp/state"\n[[uplink]]\npci = "%s"\nnum_vfs = %s\nvf_driver = "vfio-pci"\n' "$pf" "$1"
  printf '[[vport]]\nname = "vm1"\nuplink = "%s"\nmac = "02:00:00:00:0c:01"\nvlan = 7\n' "$pf"
}
config 2 > /tmp/two.toml
config 3 > /tmp/three.toml
# hold.pl GROUP BDF MODE: MODE "group" keeps the group and container open beside the device
# fd, as QEMU does; "hidden" closes them and keeps only the device fd (an anonymous inode).
cat > /tmp/hold.pl <<'PERL'
my ($group, $bdf, $mode) = @ARGV;
sysopen(C, "/dev/vfio/vfio", 2) or die "container: $!";
sysopen(G, "/dev/vfio/$group", 2) or die "group $group: $!";
my $c = pack("i", fileno(C));
ioctl(G, 0x3b68, $c) or die "VFIO_GROUP_SET_CONTAINER: $!";
ioctl(C, 0x3b66, 1) or die "VFIO_SET_IOMMU: $!";
my $name = "$bdf\0";
my $fd = ioctl(G, 0x3b6a, $name) or die "VFIO_GROUP_GET_DEVICE_FD: $!";
if ($mode eq "hidden") { close(G); close(C); }
$| = 1;
print "held $fd\n";
sleep 1000;
PERL
step() { # NAME ARGS...: vportd's output, status and how long it took
  name=$1; shift
  t0=$(now_ms)
  vportd "$@" > $OUT/$name.out 2> $OUT/$name.err
  echo $? > $OUT/$name.rc
  echo $(( $(now_ms) - t0 )) > $OUT/$name.ms
}
vfs() { for v in $dev/virtfn*; do [ -e "$v" ] && echo "$(basename $(readlink $v)) $(basename $(readlink $v/driver 2>/dev/null) 2>/dev/null) $(basename $(readlink $v/iommu_group))"; done; }
hold() { # MODE: starts a holder on VF 0, waits until it holds
  perl /tmp/hold.pl "$g0" "$vf0" "$1" > $OUT/hold-$1.txt 2>&1 &
  holder=$!
  wait_for 30 grep -q held $OUT/hold-$1.txt || { cat $OUT/hold-$1.txt >&2; exit 1; }
}

step apply apply /tmp/two.toml
vfs > $OUT/apply.vfs
ls /dev/vfio > $OUT/dev-vfio.txt
for f in /sys/bus/pci/devices/*; do
  [ -e $f/iommu_group ] && echo "$(basename $f) $(basename $(readlink $f/iommu_group))"
done > $OUT/groups.txt
vportd discover --json > $OUT/discover.json
vf0=$(basename $(readlink $dev/virtfn0))
g0=$(basename $(readlink $dev/virtfn0/iommu_group))

hold group
echo $holder > $OUT/holder-group.pid
vportd discover --json > $OUT/discover-held.json
step plan plan --allow-disruption /tmp/three.toml
step refused apply --allow-disruption /tmp/three.toml
cat $dev/sriov_numvfs > $OUT/refused.numvfs
kill $holder; wait $holder 2>/dev/null

hold hidden
echo $holder > $OUT/holder-hidden.pid
ls -l /proc/$holder/fd > $OUT/hidden-fds.txt
export VPORTD_SRIOV_TIMEOUT=8
step stuck apply --allow-disruption /tmp/three.toml
unset VPORTD_SRIOV_TIMEOUT
kill $holder; wait $holder 2>/dev/null
# The orphaned write returns once the device is closed: the VFs go.
wait_for 60 sh -c "[ \"\$(cat $dev/sriov_numvfs)\" = 0 ]"
echo $? > $OUT/released.rc
step rerun apply --allow-disruption /tmp/three.toml
vfs > $OUT/rerun.vfs
step again apply /tmp/three.toml
true
