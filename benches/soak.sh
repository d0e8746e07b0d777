# The guest side of the soak (benches/soak.rs): sourced in the rig's guest, then one step
# function is called. The daemon runs for the whole soak; the host side hot-adds and removes a
# NIC through QMP between steps. Every step prints nothing on success but a line
# "SAMPLE <uptime s> <rss kB> <fds> <threads> <netlink sockets>" where it samples.
set -u
CFG=/etc/vportd/soak.toml
PF=0000:01:00.0
HOT=0000:02:00.0
STATE=/run/soak-state/state.json

# within SECONDS COMMAND...: COMMAND until it succeeds, for at most SECONDS of guest time.
within() {
  _end=$(awk -v s="$1" '{ print $1 + s }' /proc/uptime); shift
  until "$@" 2>/dev/null; do
    awk -v e="$_end" '{ exit !($1 > e) }' /proc/uptime && { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}

pf_netdev() { ls "/sys/bus/pci/devices/$1/net" 2>/dev/null | head -n1; }
daemon_pid() { cat /run/daemon.pid; }
alive() { kill -0 "$(daemon_pid)" 2>/dev/null || { echo "the daemon died" >&2; tail -n 30 /run/daemon.log >&2; exit 1; }; }

# The daemon's resident memory, open files, threads, and how many of its open files are
# netlink sockets (their inodes, found in /proc/net/netlink's last column).
sample() {
  pid=$(daemon_pid)
  rss=$(awk '/^VmRSS:/ { print $2 }' /proc/$pid/status)
  threads=$(awk '/^Threads:/ { print $2 }' /proc/$pid/status)
  fds=$(ls /proc/$pid/fd | wc -l)
  netlink=$(ls -l /proc/$pid/fd | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' |
    awk 'NR == FNR { if (FNR > 1) nl[$NF] = 1; next } ($1 in nl) { n++ } END { print n + 0 }' \
      /proc/net/netlink -)
  echo "SAMPLE $(cut -d' ' -f1 /proc/uptime) $rss $fds $threads $netlink"
}

# The config with vm-a's rate RATE: a reload alternates two rates.
config() {
  cat <<EOT
state_dir = "/run/soak-state"

[[uplink]]
pci = "$PF"

[[uplink]]
pci = "$HOT"

[[vport]]
name = "vm-a"
uplink = "$PF"
mac = "02:00:00:00:01:01"
vlan = 100
max_tx_rate_mbps = $1

[[pool]]
name = "ctr"
uplink = "$PF"
count = 2
max_tx_rate_mbps = 100

# No rate here: nobody brings the hot NIC's link up, and igb refuses VF rates without one.
[[vport]]
name = "hot-a"
uplink = "$HOT"
mac = "02:00:00:00:02:01"
vlan = 200
EOT
}

step_start() {
  ip link set "$(pf_netdev $PF)" up
  mkdir -p /etc/vportd /var/run/netns
  config 200 > $CFG
  start_udevd
  vportd apply --allow-absent $CFG > /run/apply.log 2>&1 || { cat /run/apply.log >&2; exit 1; }
  vportd daemon --config $CFG --metrics 127.0.0.1:9477 > /run/daemon.log 2>&1 &
  echo $! > /run/daemon.pid
  within 30 [ -S /run/vportd.sock ] || exit 1
  sleep 2
  alive
  sample
}

# The hot NIC arrived (QMP): its vPort gets its VF through udev and the daemon.
step_added() {
  within 60 sh -c "pf=\$(ls /sys/bus/pci/devices/$HOT/net 2>/dev/null | head -n1) && [ -n \"\$pf\" ] && /usr/sbin/ip link show dev \$pf | grep -q 02:00:00:00:02:01" ||
    { echo "the hot NIC's VF was not provisioned" >&2; tail -n 20 /run/daemon.log >&2; exit 1; }
  alive
}

# Control-socket requests, a reload (the config edited, then applied through the socket),
# metrics scrapes and CNI ADD/DEL through the plugin, ROUNDS times.
step_churn() {
  rounds=${1:-3}
  i=0
  while [ $i -lt "$rounds" ]; do
    i=$((i + 1))
    vportd ctl status > /dev/null || { echo "ctl status failed" >&2; exit 1; }
    vportd status --config $CFG --json > /dev/null 2>&1  # exit 3 on drift is fine here
    config $((200 + 100 * (i % 2))) > $CFG
    reload
    wget -q -O /dev/null http://127.0.0.1:9477/metrics || { echo "metrics scrape failed" >&2; exit 1; }
    cni ADD "soak$i" && cni DEL "soak$i" || exit 1
  done
  alive
}

# A reload: SIGHUP when the daemon has it (VPORTD_SOAK_SIGHUP=1, issue 19's systemd reload),
# else the control socket's apply, which re-reads the config.
reload() {
  if [ "${VPORTD_SOAK_SIGHUP:-0}" = 1 ]; then
    kill -HUP "$(daemon_pid)"
  else
    vportd ctl apply > /run/reload.json 2>&1 || { echo "ctl apply failed" >&2; cat /run/reload.json >&2; exit 1; }
  fi
}

cni() { # VERB NETNS
  [ "$1" = ADD ] && ip netns add "$2"
  printf '{"cniVersion":"1.1.0","name":"soak","type":"vportd","pool":"ctr"}' |
    CNI_COMMAND=$1 CNI_CONTAINERID=$2 CNI_NETNS=/var/run/netns/$2 CNI_IFNAME=eth0 \
      CNI_PATH=/usr/bin vportd > /run/cni.out 2>&1
  rc=$?
  [ "$1" = DEL ] && ip netns del "$2"
  [ $rc -eq 0 ] || { echo "CNI $1 $2 failed ($rc)" >&2; cat /run/cni.out >&2; return 1; }
}

# The hot NIC went (QMP): its vPort is lost, the daemon lives.
step_removed() {
  within 60 grep -q '"health": "lost"' $STATE ||
    { echo "the hot NIC's vPort was not marked lost" >&2; tail -n 20 /run/daemon.log >&2; exit 1; }
  alive
}

step_sample() { alive; sample; }

step_finish() {
  alive
  sample
  grep -c "reconcile after" /run/daemon.log | sed 's/^/RECONCILES /'
  grep -ci "error\|failed" /run/daemon.log | sed 's/^/ERRORS /'
  # The distinct error lines, numbers masked, for the report.
  grep -i "error\|failed" /run/daemon.log | sed 's/[0-9][0-9]*/N/g' | sort | uniq -c | sort -rn | head -n 5 |
    sed 's/^/ERROR /'
  cp /run/daemon.log "$OUT/daemon.log"
}
