# The software switch trunked through a VF (tests/vm/switch_vf.rs). eth0's VF 0 is the trunk
# (`switch_vf = 0`); the software vPorts s1 (VLAN 100, tagged on the trunk) and s2 (untagged)
# get TAPs from the daemon, each moved into its own namespace (10.0.100.11, 10.0.0.12); eth1,
# the other igb PF on the same QEMU hub, is in namespace b (10.0.0.2, and 10.0.100.2 on its
# VLAN 100 device). Each phase leaves its files in $OUT:
#   apply.{out,err,rc}, apply.ip.json    the apply that creates and configures VF 0
#   vfdev, ping.<from>-<to>.{out,rc}     the VF's netdev; pings both ways, both vPorts
#   fdb, switch.json, daemon.log         the VF's unicast list, the switch's counters
#   vlans.json                           the VLAN devices on the VF (the trunk's joined VLANs)
#   fdb.stopped, vlans.stopped.json      both once the daemon stopped
#   denied.dmesg                         the PF set VF 0's MAC and does not trust it: igb
#                                        refuses a unicast filter (kernel log)
#   again.*                              vportd apply trusts it again: the filter is taken,
#                                        the pings work
#   added.*                              a vPort added to the config and applied while the
#                                        daemon runs: its TAP appears (added.tap.rc)
pf=$(basename "$(readlink /sys/class/net/eth0/device)")
pfdev=/sys/bus/pci/devices/$pf
mkdir -p /var/run/netns
ip netns add b
ip link set eth1 netns b
ip -n b link set lo up
ip -n b addr add 10.0.0.2/24 dev eth1
ip -n b link set eth1 up
ip -n b link add link eth1 name eth1.100 type vlan id 100
ip -n b addr add 10.0.100.2/24 dev eth1.100
ip -n b link set eth1.100 up
ip link set eth0 up
wait_for 20 sh -c '/usr/sbin/ip link show eth0 | grep -q LOWER_UP'
wait_for 20 sh -c '/usr/sbin/ip -n b link show eth1 | grep -q LOWER_UP'

cat > /tmp/host.toml <<EOT
state_dir = "/tmp/state"
[[uplink]]
pci = "$pf"
switch_vf = 0
[[vport]]
name = "s1"
uplink = "$pf"
mac = "02:00:00:00:0b:01"
vlan = 100
offload = "never"
[[vport]]
name = "s2"
uplink = "$pf"
mac = "02:00:00:00:0b:02"
offload = "never"
EOT

apply() { # phase name
  vportd apply /tmp/host.toml > $OUT/$1.out 2> $OUT/$1.err
  echo $? > $OUT/$1.rc
  ip -d -j link show eth0 > $OUT/$1.ip.json
}

start_daemon() {
  vportd daemon --config /tmp/host.toml --metrics off --socket off --no-uevents \
    > /run/daemon.out 2> /run/daemon.log &
  DAEMON=$!
  wait_for 60 sh -c '/usr/sbin/ip link show vp-s1 && /usr/sbin/ip link show vp-s2' > /dev/null
}

stop_daemon() {
  kill $DAEMON
  wait $DAEMON
}

addr_of() { case $1 in s1) echo 10.0.100.11 ;; s2) echo 10.0.0.12 ;; esac; }

# Each TAP into its own namespace, as a VM's NIC would be elsewhere.
attach() {
  for n in 1 2; do
    ip netns add s$n 2>/dev/null
    ip link set vp-s$n netns s$n
    ip -n s$n link set lo up
    ip -n s$n link set vp-s$n address 02:00:00:00:0b:0$n
    ip -n s$n addr add $(addr_of s$n)/24 dev vp-s$n
    ip -n s$n link set vp-s$n up
  done
}

ping_from() { # phase, namespace, address
  ip netns exec $2 ping -c 2 -w 15 $3 > $OUT/$1.$2-$3.out 2>&1
  echo $? > $OUT/$1.$2-$3.rc
}

apply apply
vf=$(basename "$(readlink $pfdev/virtfn0)")
vfdev=$(ls /sys/bus/pci/devices/$vf/net)
echo $vfdev > $OUT/vfdev

start_daemon
attach
ping_from ping s1 10.0.100.2
ping_from ping s2 10.0.0.2
ping_from ping b 10.0.100.11
ping_from ping b 10.0.0.12
bridge fdb show dev $vfdev > $OUT/fdb
ip -d -j link show type vlan > $OUT/vlans.json
sleep 1.5
cp /tmp/state/switch.json $OUT/switch.json
stop_daemon
cp /run/daemon.log $OUT/daemon.log
bridge fdb show dev $vfdev > $OUT/fdb.stopped
ip -j link show type vlan > $OUT/vlans.stopped.json

# The PF sets VF 0's MAC and stops trusting it: igb refuses the VF's unicast filters. A
# unicast address added to the VF's list by hand (`bridge fdb add ... self`, the same
# dev_uc_add the switch's packet socket makes) shows it in the kernel log. (The daemon is not
# running here: at start it reconciles the config and would trust the VF again at once.)
ip link set eth0 vf 0 mac 02:00:00:00:0c:00
ip link set eth0 vf 0 trust off
dmesg -c > /dev/null
bridge fdb add 02:00:00:00:0d:01 dev $vfdev self permanent
sleep 0.5
dmesg > $OUT/denied.dmesg
bridge fdb del 02:00:00:00:0d:01 dev $vfdev self permanent

# vportd apply trusts it again (and leaves the MAC, no vPort's); the same address is taken,
# and the switch carries the vPorts' traffic again.
apply again
dmesg -c > /dev/null
bridge fdb add 02:00:00:00:0d:01 dev $vfdev self permanent
sleep 0.5
dmesg > $OUT/again.dmesg
bridge fdb del 02:00:00:00:0d:01 dev $vfdev self permanent
start_daemon
attach
ping_from again s1 10.0.100.2
ping_from again b 10.0.0.12
# A vPort added to the config while the daemon runs gets its TAP without a restart: the
# daemon reads the changed file again, and the apply puts the vPort on the software path.
cat >> /tmp/host.toml <<EOT
[[vport]]
name = "s3"
uplink = "$pf"
mac = "02:00:00:00:0b:03"
offload = "never"
EOT
apply added
wait_for 30 sh -c '/usr/sbin/ip link show vp-s3' > /dev/null
echo $? > $OUT/added.tap.rc
stop_daemon
cp /run/daemon.log $OUT/again.daemon.log
true
