# What the VF-trunk scenarios (switch_vf.sh, switch_vf_slots.sh) share; run_vf_scenario in
# tests/vm/switch_vf.rs puts it before each. eth0's VF 0 is the trunk (`switch_vf = 0`); the
# software vPorts s1 and s2 get TAPs from the daemon, each with a host in its own namespace; eth1,
# the other igb PF on the same QEMU hub, is in namespace b (10.0.0.2).
pf=$(basename "$(readlink /sys/class/net/eth0/device)")
pfdev=/sys/bus/pci/devices/$pf

# vf_trunk_setup [VID]: the namespaces and /tmp/host.toml, with s1 on VLAN VID (tagged on the
# trunk; b gets eth1.VID as 10.0.VID.2) when given, else untagged like s2.
vf_trunk_setup() {
  S1_VLAN=$1
  mkdir -p /var/run/netns
  ip netns add b
  ip link set eth1 netns b
  ip -n b link set lo up
  ip -n b addr add 10.0.0.2/24 dev eth1
  ip -n b link set eth1 up
  if [ -n "$S1_VLAN" ]; then
    ip -n b link add link eth1 name eth1.$S1_VLAN type vlan id $S1_VLAN
    ip -n b addr add 10.0.$S1_VLAN.2/24 dev eth1.$S1_VLAN
    ip -n b link set eth1.$S1_VLAN up
  fi
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
${S1_VLAN:+vlan = $S1_VLAN}
offload = "never"
[[vport]]
name = "s2"
uplink = "$pf"
mac = "02:00:00:00:0b:02"
offload = "never"
EOT
}

# add_s3: a third software vPort, s3 (untagged), in the config.
add_s3() {
  cat >> /tmp/host.toml <<EOT
[[vport]]
name = "s3"
uplink = "$pf"
mac = "02:00:00:00:0b:03"
offload = "never"
EOT
}

# The trunk VF's netdev, once apply made the VF.
trunk_vfdev() {
  ls /sys/bus/pci/devices/"$(basename "$(readlink $pfdev/virtfn0)")"/net
}

apply() { # phase name
  vportd apply /tmp/host.toml > $OUT/$1.out 2> $OUT/$1.err
  echo $? > $OUT/$1.rc
  ip -d -j link show eth0 > $OUT/$1.ip.json
}

start_daemon() {
  vportd daemon --config /tmp/host.toml --metrics 127.0.0.1:9477 --socket off --no-uevents \
    > /run/daemon.out 2> /run/daemon.log &
  DAEMON=$!
  wait_for 60 sh -c '/usr/sbin/ip link show vp-s1 && /usr/sbin/ip link show vp-s2' > /dev/null
}

stop_daemon() {
  kill $DAEMON
  wait $DAEMON
}

# sN's address: 10.0.0.1N, but s1's is on its VLAN's subnet when it has one.
addr_of() {
  case $1 in
    s1) echo 10.0.${S1_VLAN:-0}.11 ;;
    *) echo 10.0.0.1${1#s} ;;
  esac
}

# attach [N...]: a host in namespace sN on each vPort sN (s1 and s2 when none named), as a VM
# would be on it: the vPort's TAP vp-sN belongs to its VM and stays in the daemon's namespace,
# so `vportd tap-netns` holds its file side (as QEMU would) and gives sN a NIC of the same name
# carrying its frames, with the vPort's MAC and address. Idempotent: a host already attached
# (its TAP kept across a daemon restart) is left as it is.
attach() {
  for n in ${*:-1 2}; do
    ip netns add s$n 2>/dev/null
    if ! ip -n s$n link show vp-s$n > /dev/null 2>&1; then
      vportd tap-netns vp-s$n /var/run/netns/s$n > /run/tap-netns-s$n.log 2>&1 &
      wait_for 10 ip -n s$n link show vp-s$n > /dev/null
    fi
    ip -n s$n link set lo up
    ip -n s$n link set vp-s$n address 02:00:00:00:0b:0$n
    ip -n s$n addr replace $(addr_of s$n)/24 dev vp-s$n
    ip -n s$n link set vp-s$n up
  done
}

ping_from() { # phase, namespace, address
  ip netns exec $2 ping -c 2 -w 15 $3 > $OUT/$1.$2-$3.out 2>&1
  echo $? > $OUT/$1.$2-$3.rc
}
