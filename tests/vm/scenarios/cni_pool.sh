# [[pool]] on the real igb/igbvf drivers: apply reserves the pool's VFs (the lowest, before the
# vPorts'), binds them to igbvf and leaves them clean; status and discover show the pool and
# who holds its VFs; a second apply changes nothing; a shrink under a held VF is refused.
# Each step leaves $OUT/<step>.{out,err,rc}, `ip -d -j link show eth0` and the VFs' drivers.
pf=$(basename "$(readlink /sys/class/net/eth0/device)")
pfdev=/sys/bus/pci/devices/$pf
ip link set eth0 up
config() { # $1: the pool's count
  cat <<EOT
state_dir = "/tmp/state"
[[uplink]]
pci = "$pf"

[[vport]]
name = "vm-a"
uplink = "$pf"
mac = "02:00:00:00:0a:01"
vlan = 100

[[pool]]
name = "ctr"
uplink = "$pf"
count = $1
driver = "igbvf"
vlan = 200
max_tx_rate_mbps = 100
EOT
}
config 2 > /tmp/pool.toml
config 1 > /tmp/pool-shrunk.toml
step() { # name, then the vportd arguments
  name=$1; shift
  vportd "$@" > $OUT/$name.out 2> $OUT/$name.err
  echo $? > $OUT/$name.rc
  ip -d -j link show eth0 > $OUT/$name.ip.json
  for vf in $pfdev/virtfn*; do
    [ -e "$vf" ] || continue
    echo "${vf##*/virtfn} $(basename "$(readlink $vf/driver)")"
  done > $OUT/$name.vfs
}
# A VF someone left dirty: the pool takes it and makes it clean.
echo 1 > $pfdev/sriov_numvfs
ip link set eth0 vf 0 vlan 300 mac 02:00:00:00:0b:01
echo 0 > $pfdev/sriov_numvfs
step apply1 apply /tmp/pool.toml
step apply2 apply /tmp/pool.toml
# An attachment holds VF 1 (as the daemon's book records it).
cat > /tmp/state/attachments.json <<EOT
{"version":1,"attachments":[{"container_id":"c1","ifname":"eth0","network":"n","netns":"/proc/1/ns/net","target":{"pool":"ctr"},"alloc":{"kind":"vf","pool":"ctr","pf":"$pf","vf":1},"mac":"02:00:00:00:0c:01","asked":{},"attrs":{},"phase":"attached"}]}
EOT
step status status --config /tmp/pool.toml
step discover discover --config /tmp/pool.toml --json
step shrink apply /tmp/pool-shrunk.toml
cp /tmp/state/state.json $OUT/state.json
# An uplink network, through the daemon and the plugin (the same binary): with the book gone
# the pool shrinks to 1 (vm-a keeps VF 2), leaving VF 1 spare; ADD takes it (VLAN 300 on the
# PF, in the namespace as eth0 with its MAC), STATUS then answers 50 (no VF left, no software
# switch), DEL brings it home clean.
rm -f /tmp/state/attachments.json
step shrink2 apply /tmp/pool-shrunk.toml
basename "$(readlink $pfdev/virtfn1)" > $OUT/vf1.bdf
cat /sys/class/net/$(ls $pfdev/virtfn1/net)/address > $OUT/vf1.mac
mkdir -p /run/vportd /var/run/netns
vportd daemon --config /tmp/pool-shrunk.toml --socket /run/vportd/up.sock --no-uevents \
  > /run/daemon.out 2> $OUT/daemon.log &
DAEMON=$!
for i in $(seq 1 200); do [ -S /run/vportd/up.sock ] && break; sleep 0.3; done
ip netns add u1
uconf() {
  printf '{"cniVersion":"1.1.0","name":"upnet","type":"vportd","uplink":"%s","vlan":300,"socket":"/run/vportd/up.sock"}' "$pf"
}
uplugin() {
  CNI_COMMAND=$1 CNI_CONTAINERID=u1 CNI_NETNS=/var/run/netns/u1 CNI_IFNAME=eth0 \
    CNI_PATH=/usr/lib/cni vportd
}
uconf | uplugin ADD > $OUT/uadd.json 2> $OUT/uadd.err; echo $? > $OUT/uadd.rc
ip netns exec u1 cat /sys/class/net/eth0/address > $OUT/uinside 2>&1
ip -d -j link show eth0 > $OUT/uadd.ip.json
uconf | CNI_COMMAND=STATUS CNI_PATH=/usr/lib/cni vportd > $OUT/ustatus.out 2>&1
echo $? > $OUT/ustatus.rc
uconf | uplugin DEL > $OUT/udel.out 2>&1; echo $? > $OUT/udel.rc
ip -d -j link show eth0 > $OUT/udel.ip.json
ls $pfdev/virtfn1/net > $OUT/udel.home 2>&1
kill $DAEMON
true
