# igb's VF MAC filter slots run out (tests/vm/switch_vf.rs). On this kernel igb refuses a VF's
# request to clear its filters ("attempted to set invalid MAC filter": the address check comes
# before the request type, and a clear carries no address), so every change of the VF's address
# lists adds its unicast filters again without freeing the old ones, until "no space for it".
# After switch_vf_common.sh; s1 and s2 untagged (10.0.0.11, 10.0.0.12). Files in $OUT:
#   pre.*, churn.*       pings before and after 20 unicast addresses added and removed by hand
#   churn.dmesg          what igb said meanwhile
#   s3.*                 a third vPort added after that (daemon restarted with the new config):
#                        its MAC on the VF's unicast list (s3.fdb), igb's answer (s3.dmesg), pings
vf_trunk_setup
apply apply
vfdev=$(trunk_vfdev)
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
add_s3
stop_daemon
dmesg -c > /dev/null
apply s3apply
start_daemon
wait_for 30 sh -c '/usr/sbin/ip link show vp-s3' > /dev/null
attach
ping_from s3 b 10.0.0.11
attach 3
ping_from s3 b 10.0.0.13
ping_from s3 s3 10.0.0.2
dmesg > $OUT/s3.dmesg
bridge fdb show dev $vfdev > $OUT/s3.fdb
stop_daemon
cp /run/daemon.log $OUT/daemon.log
true
