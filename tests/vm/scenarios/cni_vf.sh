# The vportd CNI plugin on real igb/igbvf VFs from a [[pool]], one boot for everything:
#  1. the plugin invoked as the spec says (env + stdin) for a namespace: ADD, CHECK, DEL;
#  2. podman (network_backend = "cni") runs a busybox container on a vportd network;
#  3. stress: ROUNDS rounds of 3 concurrent ADDs then 3 concurrent DELs;
#  4. ADD+DEL latency, one at a time;
#  5. kill -9 of the plugin, then of the daemon, in the middle of an ADD, then DEL or GC.
# Every step leaves its evidence in $OUT for the test to judge.
. /etc/rig/podman.sh
set -u
ROUNDS=${ROUNDS:-50}
pf=$(basename "$(readlink /sys/class/net/eth0/device)")
pfdev=/sys/bus/pci/devices/$pf
ip link set eth0 up
mkdir -p /var/run/netns /etc/cni/net.d /run/cni-ipam
cat > /tmp/pool.toml <<EOT
state_dir = "/tmp/state"
[[uplink]]
pci = "$pf"

[[pool]]
name = "ctr"
uplink = "$pf"
count = 3
vlan = 100
max_tx_rate_mbps = 100
EOT
vportd apply /tmp/pool.toml > $OUT/apply.out 2>&1; echo $? > $OUT/apply.rc

start_daemon() {
  rm -f /run/vportd/vportd.sock  # a killed daemon's socket file would pass the wait below
  vportd daemon --config /tmp/pool.toml --socket /run/vportd/vportd.sock --no-uevents \
    --metrics 127.0.0.1:9477 >> /run/daemon.out 2>> $OUT/daemon.log &
  DAEMON=$!
  wait_for 60 test -S /run/vportd/vportd.sock
}
start_daemon

# conf VERSION EXTRA: the network config; host-local (containernetworking-plugins 1.1.1)
# speaks up to 1.0.0, so a 1.1.0 config (for pciID, STATUS and GC) goes without IPAM.
conf() {
  ipam=',"ipam":{"type":"host-local","ranges":[[{"subnet":"10.77.0.0/24"}]],"dataDir":"/run/cni-ipam"}'
  [ "$1" = 1.0.0 ] || ipam=""
  printf '{"cniVersion":"%s","name":"vfnet","type":"vportd","pool":"ctr"%s%s}' "$1" "$2" "$ipam"
}
plugin() { # verb container [stdin conf]
  CNI_COMMAND=$1 CNI_CONTAINERID=$2 CNI_NETNS=/var/run/netns/$2 CNI_IFNAME=eth0 \
    CNI_PATH=/usr/lib/cni /usr/lib/cni/vportd
}
# Where each pool VF is: "index name-in-host-or-away mac vlan rate", from the PF's view and sysfs.
vf_report() {
  for i in 0 1 2; do
    nd=$(ls $pfdev/virtfn$i/net 2>/dev/null)
    echo "$i ${nd:-away} $(cat /sys/class/net/$nd/address 2>/dev/null)"
  done
  ip -d -j link show eth0
}
vf_report > $OUT/home0

# 1. The plugin alone.
ip netns add c1
conf 1.1.0 "" | plugin ADD c1 > $OUT/add1.json 2> $OUT/add1.err; echo $? > $OUT/add1.rc
ip netns exec c1 sh -c 'cat /sys/class/net/eth0/address; ip -o link show dev eth0' > $OUT/inside1 2>&1
ip -d -j link show eth0 > $OUT/pf1.json
prev=$(cat $OUT/add1.json)
conf 1.1.0 ",\"prevResult\":$prev" | plugin CHECK c1 > $OUT/check1.out 2>&1; echo $? > $OUT/check1.rc
conf 1.1.0 "" | plugin DEL c1 > $OUT/del1.out 2>&1; echo $? > $OUT/del1.rc
conf 1.1.0 "" | plugin DEL c1 > $OUT/del1b.out 2>&1; echo $? > $OUT/del1b.rc
ip netns del c1
conf 1.1.0 "" | CNI_COMMAND=STATUS CNI_PATH=/usr/lib/cni /usr/lib/cni/vportd > $OUT/status1.out 2>&1; echo $? > $OUT/status1.rc
vf_report > $OUT/home1

# 2. podman.
podman_setup || { echo "podman_setup failed" >&2; exit 1; }
cat > /etc/cni/net.d/vfnet.conflist <<CONF
{"cniVersion":"1.0.0","name":"vfnet","plugins":[$(conf 1.0.0 "" | sed 's/"cniVersion":"1.0.0",//; s/"name":"vfnet",//')]}
CONF
cp /etc/cni/net.d/vfnet.conflist $OUT/conflist
podman_run vfnet 'cat /sys/class/net/eth0/address; ip -o -4 addr show dev eth0; ip route; cat /sys/class/net/eth0/device/uevent | grep PCI_SLOT' \
  > $OUT/podman.out 2> $OUT/podman.err
echo $? > $OUT/podman.rc
vf_report > $OUT/home2

# 3. Stress: 3 containers at once (the pool's size), ADD then DEL, ROUNDS times.
: > $OUT/stress.macs
: > $OUT/stress.fail
for r in $(seq 1 $ROUNDS); do
  for j in 1 2 3; do ip netns add s$j; done
  pids=""
  for j in 1 2 3; do
    ( conf 1.0.0 "" | plugin ADD s$j > /run/s$j.add 2>&1 || echo "round $r ADD s$j: $(cat /run/s$j.add)" >> $OUT/stress.fail ) &
    pids="$pids $!"
  done
  wait $pids  # not a bare wait: the daemon is a child too
  macs=""
  for j in 1 2 3; do macs="$macs $(ip netns exec s$j cat /sys/class/net/eth0/address 2>/dev/null || echo none)"; done
  echo "$r$macs" >> $OUT/stress.macs
  pids=""
  for j in 1 2 3; do
    ( conf 1.0.0 "" | plugin DEL s$j > /run/s$j.del 2>&1 || echo "round $r DEL s$j: $(cat /run/s$j.del)" >> $OUT/stress.fail ) &
    pids="$pids $!"
  done
  wait $pids
  for j in 1 2 3; do ip netns del s$j; done
done
vf_report > $OUT/home3

# 4. Latency of one ADD+DEL (IPAM included), one at a time.
ip netns add l1
: > $OUT/latency_ms
for i in $(seq 1 20); do
  t0=$(now_ms)
  conf 1.0.0 "" | plugin ADD l1 > /dev/null 2>&1
  conf 1.0.0 "" | plugin DEL l1 > /dev/null 2>&1
  echo $(( $(now_ms) - t0 )) >> $OUT/latency_ms
done
ip netns del l1

# 5a. kill -9 of the plugin in the middle of an ADD, then DEL.
ip netns add k1
conf 1.0.0 "" | plugin ADD k1 > /dev/null 2>&1 &
p=$!
sleep 0.2
kill -9 $p 2>/dev/null
wait $p 2>/dev/null
conf 1.0.0 "" | plugin DEL k1 > $OUT/kill_plugin_del.out 2>&1; echo $? > $OUT/kill_plugin_del.rc
ip netns del k1
vf_report > $OUT/home5a
# 5b. kill -9 of the daemon in the middle of an ADD (at three points of it); the container
# dies; the daemon starts again (and reports the gone namespace); GC with no valid
# attachment frees it.
n=0  # not i: vf_report's loop sets i
for delay in 0.05 0.15 0.3; do
  n=$((n + 1))
  ip netns add k2
  conf 1.0.0 "" | plugin ADD k2 > /dev/null 2>&1 &
  p=$!
  sleep $delay
  kill -9 $DAEMON
  wait $DAEMON 2>/dev/null
  wait $p 2>/dev/null
  cp /tmp/state/attachments.json $OUT/book_kill_$n.json 2>/dev/null || echo '{}' > $OUT/book_kill_$n.json
  ip netns del k2
  sleep 1
  start_daemon
  conf 1.1.0 ',"cni.dev/valid-attachments":[]' | CNI_COMMAND=GC CNI_PATH=/usr/lib/cni /usr/lib/cni/vportd > $OUT/gc_$n.out 2>&1; echo $? > $OUT/gc_$n.rc
  vf_report > $OUT/home5b_$n
done
cp /tmp/state/attachments.json $OUT/book_final.json 2>/dev/null
kill $DAEMON
true
