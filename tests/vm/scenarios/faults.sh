# Issue 8.2 on the real igb driver: kill -9 of `vportd apply` at every journaled step of an
# apply from a clean host (from outside, as the progress line of step K appears; and from
# inside, SIGKILL at the K-th host write, before and after it), each followed by a rerun that
# must converge and a no-op; then faults injected through VPORTD_FAULTS (host::faults), each
# followed by convergence. Outputs in $OUT/all.tar, read by tests/vm/faults.rs.
# Results go to one tar (hundreds of small files would each cost 9p round trips).
O=/tmp/o; rm -rf $O; mkdir -p $O
pf0=$(basename "$(readlink /sys/class/net/eth0/device)")
pf1=$(basename "$(readlink /sys/class/net/eth1/device)")
for i in 0 1; do ip link set eth$i up; done
wait_for 20 sh -c '/usr/sbin/ip link show eth0 | grep -q LOWER_UP'
wait_for 20 sh -c '/usr/sbin/ip link show eth1 | grep -q LOWER_UP'

vport() { printf '[[vport]]\nname = "%s"\nuplink = "%s"\nmac = "%s"\n%b\n\n' "$1" "$2" "$3" "$4"; }
head_() { printf 'state_dir = "/tmp/state"\n[[uplink]]\npci = "%s"\n%b\n[[uplink]]\npci = "%s"\n%b\n' "$pf0" "$1" "$pf1" "$2"; }
# pf0: 3 VFs on pci-stub (bind steps), every attribute igb has; pf1: one VF, one vPort on
# the software path (igb has no VF link state).
vports() {
  vport a0 $pf0 02:00:00:00:08:10 'vlan = 10\nqos = 1'
  vport a1 $pf0 02:00:00:00:08:11 'max_tx_rate_mbps = 100'
  vport a2 $pf0 02:00:00:00:08:12 'trust = true\nspoofchk = false'
  vport b0 $pf1 02:00:00:00:08:20 'vlan = 20'
  vport b1 $pf1 02:00:00:00:08:21 'link_state = "disable"'
}
{ head_ 'vf_driver = "pci-stub"' ''; vports; } > /tmp/f.toml
# From f: a0 removed (its VF reset), a1's rate and a2's trust changed.
{ head_ 'vf_driver = "pci-stub"\nnum_vfs = 3' ''; vports | awk 'BEGIN{RS="";ORS="\n\n"} !/"a0"/' \
  | sed 's/max_tx_rate_mbps = 100/max_tx_rate_mbps = 200/; s/trust = true/trust = false/'; } > /tmp/change.toml
# From f: the VFs back on igbvf (bind steps).
{ head_ 'vf_driver = "igbvf"' ''; vports; } > /tmp/igbvf.toml
# From f: pf0 from 3 to 4 VFs, through 0.
{ head_ 'vf_driver = "pci-stub"\nnum_vfs = 4' ''; vports; } > /tmp/resize.toml

snap() { # NAME: the host as the oracles see it
  ip -d -j link show eth0 > $O/$1.eth0.json
  ip -d -j link show eth1 > $O/$1.eth1.json
  echo "$(cat /sys/class/net/eth0/device/sriov_numvfs) $(cat /sys/class/net/eth1/device/sriov_numvfs)" > $O/$1.numvfs
  for vf in /sys/class/net/eth0/device/virtfn* /sys/class/net/eth1/device/virtfn*; do
    [ -e "$vf" ] || continue
    d=-; [ -e $vf/driver ] && d=$(basename "$(readlink $vf/driver)")
    echo "$(basename "$(readlink $vf)") $d"
  done > $O/$1.vfs
  rm -f $O/$1.state.json $O/$1.journal.json
  [ -f /tmp/state/state.json ] && cp /tmp/state/state.json $O/$1.state.json
  [ -f /tmp/state/journal.json ] && cp /tmp/state/journal.json $O/$1.journal.json
  true
}
step() { # NAME ARGS...: run vportd, record rc/out/err, snapshot the host
  name=$1; shift
  echo "<3>faults.sh: $name" > /dev/kmsg # progress in the console log (loglevel=4 shows <3>)
  vportd "$@" > $O/$name.out 2> $O/$name.err
  echo $? > $O/$name.rc
  snap $name
}
reset() { # a clean host, no state
  for i in 0 1; do echo 0 > /sys/class/net/eth$i/device/sriov_numvfs; done
  rm -rf /tmp/state
}
rounds=""
converge() { # NAME: rerun, then a no-op
  step $1.rerun apply /tmp/f.toml
  step $1.again apply /tmp/f.toml
  rounds="$rounds $1"
}

snap clean
step ref apply /tmp/f.toml
n=$(grep -c '^\[' $O/ref.err)
echo $n > $O/steps

# kill -9 from outside as step K starts (it lands during step K or soon after).
for k in $(seq 1 $n); do
  reset
  vportd apply /tmp/f.toml > /tmp/kill.out 2> /tmp/kill.err &
  pid=$!
  wait_for 60 sh -c "grep -q '^\[$k/' /tmp/kill.err || ! kill -0 $pid 2>/dev/null"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  cp /tmp/kill.err $O/ext$k.killed.err
  snap ext$k.killed
  converge ext$k
done

# SIGKILL from inside right after the K-th host write: every journaled step that writes,
# killed with its change made. (Before the write is proven in the simulator, tests/fault_sim.rs,
# with every other call; the outside kills above also land there.) Ends when K passes the
# last write (the apply then completes).
for when in after; do
  k=1
  while [ $k -le 30 ]; do
    reset
    export VPORTD_FAULTS="write@$k=kill:$when"
    step w$k$when.killed apply /tmp/f.toml
    unset VPORTD_FAULTS
    grep -q 'injected fault' $O/w$k$when.killed.err || break
    converge w$k$when
    k=$((k + 1))
  done
done

# Faults through the layer on the real kernel, each then a clean rerun.
fault() { # NAME CONFIG SPEC [ARGS]: from the reference host, apply CONFIG with SPEC
  c=$1; cfg=$2; spec=$3; shift 3 # not $name: step() sets that
  step $c.before apply /tmp/f.toml
  export VPORTD_FAULTS="$spec"
  step $c apply $cfg "$@"
  unset VPORTD_FAULTS
  step $c.rerun apply /tmp/f.toml
  step $c.again apply /tmp/f.toml
}
reset
fault busy_retried /tmp/change.toml 'set_vf@2=EBUSY'
fault busy_exhausted /tmp/change.toml 'set_vf@2*5=EBUSY'
fault vf_eio_after /tmp/change.toml 'set_vf@3=EIO:after'
fault netlink_timeout /tmp/change.toml 'vf_config@2=timeout'
fault bind_eio /tmp/igbvf.toml 'bind@2=EIO'
fault numvfs_timeout /tmp/resize.toml 'set_num_vfs@2=timeout' --allow-disruption
fault numvfs_enospc /tmp/resize.toml 'set_num_vfs@2=ENOSPC' --allow-disruption
# From a clean host: VF creation that times out (the VFs appear late) is rolled back.
reset
snap create_timeout.before
export VPORTD_FAULTS='set_num_vfs@1=timeout'
step create_timeout apply /tmp/f.toml
unset VPORTD_FAULTS
step create_timeout.rerun apply /tmp/f.toml
step create_timeout.again apply /tmp/f.toml
echo $rounds > $O/rounds
tar -C $O -cf $OUT/all.tar .
