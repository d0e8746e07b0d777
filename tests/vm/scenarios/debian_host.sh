# Steps of tests/vm/debian_host.rs, run on the booted Debian host (dash, systemd as PID 1):
# sourced, then one step function is called. Each step writes what it saw under $OUT; the test
# judges it. /host holds the package (vportd.deb), the configs and a static busybox (the image
# has no HTTP client, and /metrics wants one; installed as /usr/local/lib/rig/busybox: it must be
# called busybox to run its applets).
CFG=/etc/vportd/host.toml
PF_A=0000:01:00.0
HOT=0000:03:00.0

# within SECONDS COMMAND...: run COMMAND until it succeeds, for at most SECONDS of guest time
# (rig.sh's wait_for counts tries, and a try costs far more on this host than in the
# initramfs guests).
within() {
  _end=$(awk -v s="$1" '{ print $1 + s }' /proc/uptime); shift
  until "$@" 2>/dev/null; do
    awk -v e="$_end" '{ exit !($1 > e) }' /proc/uptime && { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.5
  done
}

pf_netdev() { ls "/sys/bus/pci/devices/$1/net" 2>/dev/null | head -n1; }
unit_times() {
  for unit in vportd.service network-pre.target systemd-networkd.service; do
    systemctl show "$unit" -p ActiveEnterTimestampMonotonic -p InactiveExitTimestampMonotonic \
      -p ExecMainStartTimestampMonotonic | sed "s/^/$unit /"
  done
}
scrape() { /usr/local/lib/rig/busybox wget -q -O "$OUT/$1.metrics" http://127.0.0.1:9477/metrics 2> "$OUT/$1.metrics.err"; }
journal() { journalctl -b --no-pager -o short-monotonic "$@"; }
# The PF's queue interrupts: its MSI-X vectors (sysfs) whose names are a queue's.
queue_irqs() {
  for irq in $(ls /sys/bus/pci/devices/$PF_A/msi_irqs); do
    grep -qE "^ *$irq:.*-(TxRx|rx|tx)-[0-9]+\$" /proc/interrupts && echo $irq
  done
  grep -E -- "-(TxRx|rx|tx)-[0-9]+\$" /proc/interrupts > "$OUT/queue.interrupts"
}

step_install() {
  cat /etc/debian_version > "$OUT/debian_version"
  readlink /proc/1/exe > "$OUT/pid1"
  uname -r > "$OUT/uname"
  dpkg -i /host/vportd.deb > "$OUT/dpkg.out" 2>&1; echo $? > "$OUT/dpkg.rc"
  mkdir -p /etc/vportd
  cp /host/host.toml $CFG
  install -D -m 755 /host/busybox /usr/local/lib/rig/busybox
  systemctl enable vportd > "$OUT/enable.out" 2>&1; echo $? > "$OUT/enable.rc"
  # The operator's network management: systemd-networkd brings the uplinks (igb PFs) up.
  mkdir -p /etc/systemd/network
  printf '[Match]\nDriver=igb\n\n[Link]\nActivationPolicy=always-up\n\n[Network]\nLinkLocalAddressing=no\n' \
    > /etc/systemd/network/50-uplinks.network
  # The test's probe: what the first PF's VFs look like once vportd.service counts as started
  # and before network-pre.target, i.e. what network management first sees.
  cat > /etc/systemd/system/vportd-probe.service <<'UNIT'
[Unit]
Description=vportd test probe: the VFs as network management first sees them
DefaultDependencies=no
After=vportd.service
Before=network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'pf=$(ls /sys/bus/pci/devices/0000:01:00.0/net 2>/dev/null | head -n1); /usr/sbin/ip -d -j link show dev "$pf" > /run/vportd-probe.json 2>&1; cat /proc/uptime >> /run/vportd-probe.uptime'

[Install]
WantedBy=multi-user.target
UNIT
  systemctl enable vportd-probe.service > "$OUT/probe.out" 2>&1
  systemctl show vportd -p Wants -p Before -p After -p Type -p ExecReload > "$OUT/unit.props"
  systemctl is-enabled irqbalance > "$OUT/irqbalance.enabled" 2>&1
  # docs/irqbalance.md's recipe: irqbalance asks vportd's policy script (from the package)
  # which IRQs are vportd's, and leaves those alone.
  echo 'IRQBALANCE_ARGS="--policyscript=/usr/lib/vportd/irqbalance-policy"' >> /etc/default/irqbalance
  ls -l /usr/lib/vportd/irqbalance-policy > "$OUT/policy.ls" 2>&1
  # Nothing is provisioned before the reboot: the boot must do it.
  ip -d -j link show dev "$(pf_netdev $PF_A)" > "$OUT/before.ip.json"
}

# Reboots a second from now, from outside this job (systemd stops the agent that runs it).
step_reboot() {
  systemd-run --on-active=1 --timer-property=AccuracySec=100ms systemctl reboot > "$OUT/reboot.out" 2>&1
}

step_booted() {
  within 60 systemctl is-active -q vportd
  cp /run/vportd-probe.json "$OUT/probe.ip.json"
  within 60 sh -c "/usr/sbin/ip link show dev $(pf_netdev $PF_A) | grep -q 02:00:00:00:01:02"
  systemctl is-active vportd > "$OUT/active"
  unit_times > "$OUT/times"
  ip -d -j link show dev "$(pf_netdev $PF_A)" > "$OUT/boot.ip.json"
  cat /sys/bus/pci/devices/$PF_A/sriov_numvfs > "$OUT/numvfs"
  vportd status --config $CFG --json > "$OUT/status.json" 2> "$OUT/status.err"; echo $? > "$OUT/status.rc"
  SYSTEMD_COLORS=0 systemctl status vportd --no-pager -l -n 0 > "$OUT/systemctl.status" 2>&1
  systemctl show vportd -p Type -p StatusText -p NotifyAccess -p WatchdogUSec > "$OUT/show"
  journal -u vportd -p warning > "$OUT/journal.warning" 2>&1
  journal -u vportd > "$OUT/journal.all" 2>&1
  systemctl is-active irqbalance > "$OUT/irqbalance.active" 2>&1
  scrape boot
  systemctl --failed --no-pager > "$OUT/failed" 2>&1
  { systemd-analyze time; systemd-analyze blame | head -n 12; } > "$OUT/analyze" 2>&1
}

step_hotadd() {
  since=$(cut -d' ' -f1 /proc/uptime)
  t0=$(now_ms)
  within 90 sh -c "pf=\$(ls /sys/bus/pci/devices/$HOT/net 2>/dev/null | head -n1) && [ -n \"\$pf\" ] && /usr/sbin/ip link show dev \$pf | grep -q 02:00:00:00:03:01"
  echo $? > "$OUT/hotadd.rc"
  echo $(( $(now_ms) - t0 )) > "$OUT/hotadd_ms"
  pf=$(pf_netdev $HOT)
  [ -n "$pf" ] && ip -d -j link show dev "$pf" > "$OUT/hotadd.ip.json"
  journal -u vportd > "$OUT/hotadd.journal" 2>&1
  journal -u systemd-udevd > "$OUT/hotadd.udevd" 2>&1
  journal -t vportd > "$OUT/hotadd.journal.tag" 2>&1
  echo "$since" > "$OUT/hotadd.since"
  systemctl is-active vportd > "$OUT/hotadd.active"
}

step_reload() {
  cp /host/host-edited.toml $CFG
  systemctl reload vportd > "$OUT/reload.out" 2>&1; rc=$?; echo $rc > "$OUT/reload.rc"
  # The new rate, as the driver reports it, within 30 s.
  [ $rc -eq 0 ] && within 30 sh -c "/usr/sbin/ip -d link show dev $(pf_netdev $PF_A) | grep -q 'max_tx_rate 400Mbps'"
  ip -d -j link show dev "$(pf_netdev $PF_A)" > "$OUT/reload.ip.json"
  systemctl is-active vportd > "$OUT/reload.active"
  systemctl show vportd -p NRestarts -p MainPID > "$OUT/reload.show"
  journal -u vportd > "$OUT/reload.journal" 2>&1
}

# irqbalance beside vportd: the PF's queue interrupts sampled every 2 s for 30 s (irqbalance
# rebalances every 10 s); the log, status and metrics say whether vportd saw irqbalance.
step_irqbalance() {
  systemctl is-active irqbalance > "$OUT/irqbalance.active" 2>&1
  irqs=$(queue_irqs)
  echo $irqs > "$OUT/irqs"
  i=0
  while [ $i -lt 15 ]; do
    for irq in $irqs; do echo "$i $irq $(cat /proc/irq/$irq/smp_affinity_list)"; done
    sleep 2; i=$((i + 1))
  done > "$OUT/affinity"
  scrape irqbalance
  vportd status --config $CFG > "$OUT/ctl.status" 2>&1
  journalctl -b --no-pager -u irqbalance > "$OUT/irqbalance.journal" 2>&1
  SYSTEMD_COLORS=0 systemctl status vportd --no-pager -l -n 0 > "$OUT/irq.systemctl.status" 2>&1
  journal -u vportd > "$OUT/irq.journal" 2>&1
  # Where a recipe can tell irqbalance about vportd: its defaults file, a drop-in of its
  # unit, its command line.
  { cat /etc/default/irqbalance; systemctl cat irqbalance --no-pager
    tr '\0' ' ' < /proc/$(pidof irqbalance)/cmdline; } > "$OUT/irqbalance.settings" 2>&1
}
