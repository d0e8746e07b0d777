# Real traffic between the two igb PFs: eth0 in namespace a (10.0.0.1), eth1 in namespace b
# (10.0.0.2), on the same QEMU hub. Writes $OUT/interrupts.before and .after (/proc/interrupts
# around the traffic), $OUT/ping and $OUT/iperf3.json.
set -e
ip netns add a
ip netns add b
ip link set eth0 netns a
ip link set eth1 netns b
ip -n a link set lo up
ip -n b link set lo up
ip -n a addr add 10.0.0.1/24 dev eth0
ip -n b addr add 10.0.0.2/24 dev eth1
ip -n a link set eth0 up
ip -n b link set eth1 up
wait_for 20 sh -c '/usr/sbin/ip -n a link show eth0 | grep -q LOWER_UP'
wait_for 20 sh -c '/usr/sbin/ip -n b link show eth1 | grep -q LOWER_UP'
# igb requests its queue interrupts when the link goes up: count from here.
cat /proc/interrupts > $OUT/interrupts.before
ip netns exec a ping -c 3 -w 20 10.0.0.2 > $OUT/ping
ip netns exec b /usr/bin/iperf3 --server --one-off --daemon
wait_for 20 sh -c "/usr/sbin/ip netns exec b netstat -ltn | grep -q ':5201 '"
ip netns exec a /usr/bin/iperf3 --client 10.0.0.2 --parallel 4 --time 3 --json > $OUT/iperf3.json
cat /proc/interrupts > $OUT/interrupts.after
