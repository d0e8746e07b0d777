# netdevsim in the guest (Rig::netdevsim): VF controls igb lacks (min rate, link state,
# 802.1ad) set by `vportd apply`, read back by `ip -d link show`, drift on each found by
# `vportd status`; then the device in switchdev mode: devlink and `vportd discover` on its
# eswitch mode and representors, and a plan/apply that must refuse its legacy VF steps.
# Each step leaves $OUT/<step>.{out,err,rc} and `ip -d link show` of the port in $OUT/<step>.ip.
mount -t debugfs none /sys/kernel/debug 2>/dev/null
echo "10 1" > /sys/bus/netdevsim/new_device
wait_for 20 ls /sys/bus/netdevsim/devices/netdevsim10/net/ > /dev/null
port=$(ls /sys/bus/netdevsim/devices/netdevsim10/net/ | head -n1)
echo "$port" > $OUT/port
ip link set "$port" address 02:00:00:00:0a:01
ip link set "$port" up

cat > /tmp/ns.toml <<TOML
state_dir = "/tmp/nsstate"
[[uplink]]
mac = "02:00:00:00:0a:01"
num_vfs = 2
[[vport]]
name = "vm1"
uplink = "02:00:00:00:0a:01"
mac = "02:00:00:00:01:01"
offload = "required"
vlan = 100
qos = 2
proto = "802.1ad"
min_tx_rate_mbps = 100
max_tx_rate_mbps = 1000
link_state = "enable"
[[vport]]
name = "vm2"
uplink = "02:00:00:00:0a:01"
mac = "02:00:00:00:01:02"
offload = "required"
vlan = 7
max_tx_rate_mbps = 500
link_state = "disable"
TOML
# The same, with vm1's cap changed: a legacy VF step to plan on the switchdev PF.
sed 's/max_tx_rate_mbps = 1000/max_tx_rate_mbps = 900/' /tmp/ns.toml > /tmp/ns2.toml

step() { # name, then the vportd arguments
  name=$1; shift
  t0=$(now_ms)
  vportd "$@" > $OUT/$name.out 2> $OUT/$name.err
  echo $? > $OUT/$name.rc
  echo $(( $(now_ms) - t0 )) > $OUT/$name.ms
  ip -d link show "$port" > $OUT/$name.ip 2>&1
}

step apply1 apply /tmp/ns.toml
step status0 status --config /tmp/ns.toml --json
step apply-noop apply /tmp/ns.toml

# Drift on each control, behind vportd's back, then apply restores it.
ip link set "$port" vf 0 min_tx_rate 50 max_tx_rate 1000
step drift-rate status --config /tmp/ns.toml --json
step restore-rate apply /tmp/ns.toml
ip link set "$port" vf 1 state enable
step drift-state status --config /tmp/ns.toml --json
step restore-state apply /tmp/ns.toml
ip link set "$port" vf 0 vlan 100 qos 2 proto 802.1Q
step drift-proto status --config /tmp/ns.toml --json
step restore-proto apply /tmp/ns.toml
step status-final status --config /tmp/ns.toml --json

# Switchdev.
step discover-legacy discover --json
devlink dev eswitch show netdevsim/netdevsim10 > $OUT/devlink-legacy 2>&1
devlink dev eswitch set netdevsim/netdevsim10 mode switchdev > $OUT/devlink-set 2>&1
echo $? > $OUT/devlink-set.rc
devlink dev eswitch show netdevsim/netdevsim10 > $OUT/devlink-switchdev 2>&1
for n in /sys/class/net/*; do
  printf '%s %s %s %s\n' "$(basename $n)" "$(cat $n/ifindex)" \
    "$(cat $n/phys_port_name 2>/dev/null || echo -)" "$(cat $n/phys_switch_id 2>/dev/null || echo -)"
done > $OUT/ports-switchdev
step discover-switchdev discover --json
step discover-text discover
step plan-switchdev plan /tmp/ns2.toml
step apply-switchdev apply /tmp/ns2.toml
true
