# igb's VF MAC filter slots run out (tests/vm/switch_vf.rs). On this kernel igb refuses a VF's
# request to clear its filters ("attempted to set invalid MAC filter": the address check comes
# before the request type, and a clear carries no address), so every change of the VF's address
# lists adds its unicast filters again without freeing the old ones, until "no space for it".
# Same topology as switch_vf.sh. Files in $OUT:
#   pre.*, churn.*       pings before and after 20 unicast addresses added and removed by hand
#   churn.dmesg          what igb said meanwhile
#   s3.*                 a third vPort added after that (daemon restarted with the new config):
#                        its MAC on the VF's unicast list (s3.fdb), igb's answer (s3.dmesg), pings
pf=$(basename "$(readlink /sys/class/net/eth0/device)")
pfdev=/sys/bus/pci/devices/$pf
mkdir -p /var/run/netns
ip netns add b
ip link set eth1 netns b
ip -n b link set lo up
ip -n b addr add 10.0.0.2/24 dev eth1
ip -n b link set eth1 up
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

# Each TAP into its own namespace, as a VM's NIC would be elsewhere.
attach() {
  for n in 1 2; do
    ip netns add s$n 2>/dev/null
    ip link set vp-s$n netns s$n
    ip -n s$n link set lo up
    ip -n s$n link set vp-s$n address 02:00:00:00:0b:0$n
    ip -n s$n addr add 10.0.0.1$n/24 dev vp-s$n
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
start_daemon
attach
ping_from pre b 10.0.0.12
dmesg -c > /dev/null
for i in 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29; do
  bridge fdb add 02:00:00:00:0e:$i dev $vfdev self permanent
  bridge fdb del 02:00:00:00:0e:$i dev $vfdev self permanent
done
dmesg > $OUT/churn.dmesg
ping_from churn s1 10.0.0.2
ping_from churn b 10.0.0.12
# A third vPort after the churn.
cat >> /tmp/host.toml <<EOT
[[vport]]
name = "s3"
uplink = "$pf"
mac = "02:00:00:00:0b:03"
offload = "never"
EOT
stop_daemon
dmesg -c > /dev/null
apply s3apply
start_daemon
wait_for 30 sh -c '/usr/sbin/ip link show vp-s3' > /dev/null
attach
ping_from s3 b 10.0.0.11
ip netns add s3
ip link set vp-s3 netns s3
ip -n s3 link set lo up
ip -n s3 link set vp-s3 address 02:00:00:00:0b:03
ip -n s3 addr add 10.0.0.13/24 dev vp-s3
ip -n s3 link set vp-s3 up
ping_from s3 b 10.0.0.13
ping_from s3 s3 10.0.0.2
dmesg > $OUT/s3.dmesg
bridge fdb show dev $vfdev > $OUT/s3.fdb
stop_daemon
cp /run/daemon.log $OUT/daemon.log
true
