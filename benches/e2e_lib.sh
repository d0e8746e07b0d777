# Helpers of the end-to-end switch benchmarks (benches/switch_e2e.sh, benches/daemon_e2e.sh),
# sourced by them: namespaces, a private OVS userspace instance, the iperf3 TCP and trafgen
# 64-byte UDP measurements, and the statistics printed. The caller sets NS1, NS2, NSW (the
# namespaces: the two hosts and the switch's), TMP and SECS; the hosts' interfaces are IF1 and
# IF2 (default v1, v2) at IP1 and IP2 (default 10.77.0.1, 10.77.0.2), and OVS_PORTS the
# switch-side ports OVS takes (default s1 s2).
IF1=${IF1:-v1} IF2=${IF2:-v2} IP1=${IP1:-10.77.0.1} IP2=${IP2:-10.77.0.2}
[[ -n ${OVS_PORTS+x} ]] || OVS_PORTS=(s1 s2)

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

OVS_ENV=()
ovs_start() {
  local d=$TMP/ovs
  mkdir -p "$d"
  OVS_ENV=(env OVS_RUNDIR="$d" OVS_LOGDIR="$d" OVS_DBDIR="$d" OVS_SYSCONFDIR="$d")
  "${OVS_ENV[@]}" ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  "${OVS_ENV[@]}" ovsdb-server "$d/conf.db" --remote=punix:"$d/db.sock" --pidfile="$d/ovsdb.pid" \
    --detach -vconsole:off --log-file="$d/ovsdb.log" --no-chdir
  local vsctl=("${OVS_ENV[@]}" ovs-vsctl --db=unix:"$d/db.sock")
  "${vsctl[@]}" --no-wait init
  "${vsctl[@]}" --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true
  nsx $NSW "${OVS_ENV[@]}" ovs-vswitchd unix:"$d/db.sock" --pidfile="$d/vswitchd.pid" --detach \
    -vconsole:off --log-file="$d/vswitchd.log" --no-chdir
  "${vsctl[@]}" add-br br-e2e -- set bridge br-e2e datapath_type=netdev
  local p
  for p in "${OVS_PORTS[@]}"; do "${vsctl[@]}" add-port br-e2e "$p"; done
  nsx $NSW ip link set br-e2e up 2>/dev/null || true
}
ovs_stop() {
  local d=$TMP/ovs
  for p in vswitchd ovsdb; do
    [[ -f $d/$p.pid ]] && kill "$(cat "$d/$p.pid")" 2>/dev/null
    rm -f "$d/$p.pid"
  done
  rm -rf "$d"
  sleep 0.5
}

tcp() {
  nsx $NS2 iperf3 -s -1 -D -p 5399 >/dev/null 2>&1; sleep 0.3
  nsx $NS1 iperf3 -c $IP2 -p 5399 -t $SECS -J 2>/dev/null |
    jq -r '(.end.sum_received.bits_per_second // 0) / 1e9 | . * 100 | round / 100'
}

udp() {
  local mac2
  mac2=$(nsx $NS2 cat /sys/class/net/$IF2/address)
  mac1=$(nsx $NS1 cat /sys/class/net/$IF1/address)
  # 60 bytes on the wire before the FCS: 14 Ethernet + 20 IPv4 + 8 UDP + 18 payload.
  cat >"$TMP/udp.cfg" <<CFG
{ eth(da=$mac2, sa=$mac1), ipv4(saddr=$IP1, daddr=$IP2, ttl=64), udp(sp=9, dp=9), fill(0x00, 18) }
CFG
  # trafgen exits on the first EAGAIN from its TX ring ("Flushing TX_RING failed"), which a
  # veth whose peer runs native XDP gives when its NAPI ring fills (the stopped queue is the
  # kernel's backpressure). A generator that died after 0.1 s would make a contender look 50
  # times slower than it is, so trafgen is restarted until the time is up; the rate is over
  # the whole time, restarts and their gaps included, and the restarts are reported.
  # (-q is trafgen's --qdisc-path. TRAFGEN_CPUS, when set, is its -P: trafgen forks one sender
  # per CPU by default, and when one of them exits early the others outlive `timeout`.)
  local before after t0 now left restarts=0
  before=$(nsx $NS2 cat /sys/class/net/$IF2/statistics/rx_packets)
  t0=$(date +%s%N)
  while now=$(date +%s%N); left=$(( (t0 + SECS * 1000000000 - now) / 1000000 )); (( left > 20 )); do
    # timeout's 124 means trafgen ran until it was stopped; anything else is an early exit.
    if nsx $NS1 timeout "$(( left / 1000 )).$(printf %03d $(( left % 1000 )))" \
        trafgen -i "$TMP/udp.cfg" -o $IF1 -q ${TRAFGEN_CPUS:+-P "$TRAFGEN_CPUS"} >"$TMP/trafgen.out" 2>&1; then :
    elif [[ $? -ne 124 ]]; then restarts=$(( restarts + 1 )); fi
  done
  sleep 0.2
  after=$(nsx $NS2 cat /sys/class/net/$IF2/statistics/rx_packets)
  echo "$restarts" >"$TMP/restarts"
  echo $(( (after - before) / SECS / 1000 ))
}

range() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1{lo=$1} {a[NR]=$1} END{printf "%s-%s (median %s)", lo, a[NR], a[int((NR+1)/2)]}'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }
