# The software switch trunked through a VF (tests/vm/switch_vf.rs), after switch_vf_common.sh.
# s1 is on VLAN 100, tagged on the trunk (10.0.100.11), s2 untagged (10.0.0.12); eth1 in
# namespace b is 10.0.0.2, and 10.0.100.2 on its VLAN 100 device. Each phase leaves its files
# in $OUT:
#   apply.{out,err,rc}, apply.ip.json    the apply that creates and configures VF 0
#   vfdev, ping.<from>-<to>.{out,rc}     the VF's netdev; pings both ways, both vPorts
#   fdb, switch.json, daemon.log         the VF's unicast list, the switch's counters
#   status.{json,err,rc}, metrics        `vportd status --json` and the daemon's /metrics
#                                        while the switch runs: both show s1 and s2
#   vlans.json                           the VLAN devices on the VF (the trunk's joined VLANs)
#   fdb.stopped, vlans.stopped.json      both once the daemon stopped
#   denied.dmesg                         the PF set VF 0's MAC and does not trust it: igb
#                                        refuses a unicast filter (kernel log)
#   again.*                              vportd apply trusts it again: the filter is taken,
#                                        the pings work
#   added.*                              a vPort added to the config and applied while the
#                                        daemon runs: its TAP appears (added.tap.rc)
vf_trunk_setup 100
apply apply
vfdev=$(trunk_vfdev)
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
vportd status --config /tmp/host.toml --json > $OUT/status.json 2> $OUT/status.err
echo $? > $OUT/status.rc
wget -q -O $OUT/metrics http://127.0.0.1:9477/metrics 2> $OUT/metrics.err
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
add_s3
apply added
wait_for 30 sh -c '/usr/sbin/ip link show vp-s3' > /dev/null
echo $? > $OUT/added.tap.rc
stop_daemon
cp /run/daemon.log $OUT/again.daemon.log
true
