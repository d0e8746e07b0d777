# Real traffic between the two igb PFs: eth0 in namespace a (10.0.0.1), eth1 in namespace b
# (10.0.0.2), on the same QEMU hub. Writes $OUT/interrupts.before and .after (/proc/interrupts
# around the traffic), $OUT/ping and $OUT/iperf3.json.
set -e
pf_pair 20
# igb requests its queue interrupts when the link goes up: count from here.
cat /proc/interrupts > $OUT/interrupts.before
ip netns exec a ping -c 3 -w 20 10.0.0.2 > $OUT/ping
ip netns exec b /usr/bin/iperf3 --server --one-off --daemon
wait_for 20 sh -c "/usr/sbin/ip netns exec b netstat -ltn | grep -q ':5201 '"
ip netns exec a /usr/bin/iperf3 --client 10.0.0.2 --parallel 4 --time 3 --json > $OUT/iperf3.json
cat /proc/interrupts > $OUT/interrupts.after
