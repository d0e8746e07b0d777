#!/bin/sh
# CNI ADD+DEL latency of one container attachment, side by side in one run (root):
#   vportd: a `switch = "bench"` network on a private vportd [[switch]] (plugin -> control
#           socket -> daemon: book, veth in the container's namespace, switch port with the
#           flow cache), host-local IPAM;
#   bridge: Debian's bridge plugin on a Linux bridge, the same host-local IPAM.
# Each network first gets a resident attachment that stays for the whole run (a node with
# containers: vportd's switch keeps running, as the Linux bridge stays), then each round
# times ADD then DEL of one more attachment per network, the two networks taking turns; the
# first 3 rounds are warm-up. Prints p50 and p99 (ms) per network and the
# vportd/bridge ratio. Everything runs in private network namespaces: no frame, and no
# device, meets this machine's NIC.
#
# Usage: benches/cni_switch.sh [ROUNDS]   (default 100; VPORTD=path to use a built binary)
set -eu
N=${1:-100}
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "cni_switch.sh: run as root" >&2; exit 1; }
for t in /usr/lib/cni/bridge /usr/lib/cni/host-local nsenter; do
	command -v "$t" >/dev/null || { echo "cni_switch.sh: $t missing: run scripts/setup-host" >&2; exit 1; }
done
if [ -z "${VPORTD:-}" ]; then
	cargo build --release --bin vportd -q
	VPORTD=${CARGO_TARGET_DIR:-target}/release/vportd
fi
VPORTD=$(realpath "$VPORTD")

tmp=$(mktemp -d /tmp/cni_switch.XXXXXX)
host=vpbh$$
ctr=vpbc$$
resident=vpbr$$
daemon=
cleanup() {
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	ip netns del "$ctr" 2>/dev/null || true
	ip netns del "$resident" 2>/dev/null || true
	ip netns del "$host" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
ip netns add "$host"
ip netns add "$ctr"
ip netns add "$resident"
ip -n "$host" link set lo up

mkdir -p "$tmp/plugins" "$tmp/state"
ln -s "$VPORTD" "$tmp/plugins/vportd"
cat >"$tmp/host.toml" <<EOF
state_dir = "$tmp/state"
[[switch]]
name = "bench"
EOF
"$VPORTD" apply "$tmp/host.toml" >/dev/null
nsenter --net=/run/netns/"$host" "$VPORTD" daemon --config "$tmp/host.toml" \
	--socket "$tmp/vportd.sock" --metrics off --no-uevents --period-ms 1000 \
	2>"$tmp/daemon.log" &
daemon=$!
i=0
while [ ! -S "$tmp/vportd.sock" ]; do
	i=$((i + 1))
	[ $i -lt 200 ] || { echo "the daemon did not start:" >&2; cat "$tmp/daemon.log" >&2; exit 1; }
	sleep 0.05
done

ipam() { # subnet
	printf '{"type":"host-local","ranges":[[{"subnet":"%s"}]],"dataDir":"%s/ipam"}' "$1" "$tmp"
}
printf '{"cniVersion":"1.0.0","name":"vp","type":"vportd","switch":"bench","socket":"%s/vportd.sock","ipam":%s}' \
	"$tmp" "$(ipam 10.236.0.0/24)" >"$tmp/vportd.json"
printf '{"cniVersion":"1.0.0","name":"br","type":"bridge","bridge":"vpbenchbr0","ipam":%s}' \
	"$(ipam 10.237.0.0/24)" >"$tmp/bridge.json"

# The timed loop runs inside the host namespace, as a runtime would call its plugins.
cat >"$tmp/loop.sh" <<'EOF'
set -eu
call() { # verb plugin conf [container namespace, interface]
	CNI_COMMAND=$1 CNI_CONTAINERID=bench${4:-} CNI_IFNAME=${5:-eth0} CNI_NETNS=/run/netns/${4:-$CTR} \
		CNI_PATH=$TMP/plugins:/usr/lib/cni "$2" <"$3" >"$TMP/out" ||
		{ echo "$2 $1 failed: $(cat "$TMP/out")" >&2; exit 1; }
}
round() { # name plugin conf
	t0=$(date +%s%N)
	call ADD "$2" "$3"
	call DEL "$2" "$3"
	t1=$(date +%s%N)
	[ "$R" -le 3 ] || echo $(((t1 - t0) / 1000)) >>"$TMP/$1.us"
}
call ADD "$TMP/plugins/vportd" "$TMP/vportd.json" "$RESIDENT"
call ADD /usr/lib/cni/bridge "$TMP/bridge.json" "$RESIDENT" eth1
R=1
while [ "$R" -le $((N + 3)) ]; do
	round vportd "$TMP/plugins/vportd" "$TMP/vportd.json"
	round bridge /usr/lib/cni/bridge "$TMP/bridge.json"
	R=$((R + 1))
done
# CPU time, each network alone for N rounds: the processes this shell ran (plugins, IPAM)
# and, for vportd, the daemon's (less what it spends idle in as long: rebalancer ticks,
# switch workers' polls).
# (`times` runs in this shell: in a command substitution it would count a subshell's.)
daemon_ticks() { awk '{print $14 + $15}' /proc/"$DPID"/stat; }
now_us() { echo $(($(date +%s%N) / 1000)); }
d0=$(daemon_ticks); t0=$(now_us); sleep 2; idle=$(($(daemon_ticks) - d0)); idle_us=$(($(now_us) - t0))
for name in vportd bridge; do
	if [ $name = vportd ]; then p=$TMP/plugins/vportd; else p=/usr/lib/cni/bridge; fi
	times >"$TMP/times"; k0=$(tail -1 "$TMP/times" | sed 's/[ms]/ /g' | awk '{printf "%d", ($1*60+$2+$3*60+$4)*1000000}')
	d0=$(daemon_ticks); t0=$(now_us)
	R=1
	while [ "$R" -le "$N" ]; do
		call ADD "$p" "$TMP/$name.json"
		call DEL "$p" "$TMP/$name.json"
		R=$((R + 1))
	done
	times >"$TMP/times"; k1=$(tail -1 "$TMP/times" | sed 's/[ms]/ /g' | awk '{printf "%d", ($1*60+$2+$3*60+$4)*1000000}')
	d1=$(daemon_ticks); t1=$(now_us)
	dd=0
	if [ $name = vportd ]; then
		dd=$(awk -v d=$((d1 - d0)) -v i="$idle" -v w=$((t1 - t0)) -v iw="$idle_us" \
			'BEGIN {x = (d - i * w / iw) * 10000; if (x < 0) x = 0; printf "%d", x}')
	fi
	echo "$(((k1 - k0) / N)) $((dd / N))" >"$TMP/$name.cpu"
done
call DEL "$TMP/plugins/vportd" "$TMP/vportd.json" "$RESIDENT"
call DEL /usr/lib/cni/bridge "$TMP/bridge.json" "$RESIDENT" eth1
EOF
DPID=$(pgrep -f "socket $tmp/vportd.sock" | tail -1)
CTR=$ctr RESIDENT=$resident TMP=$tmp N=$N DPID=$DPID nsenter --net=/run/netns/"$host" sh "$tmp/loop.sh"

pct() { # file percent -> ms
	sort -n "$1" | awk -v p="$2" '{v[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; printf "%.2f", v[i]/1000}'
}
vp50=$(pct "$tmp/vportd.us" 50)
vp99=$(pct "$tmp/vportd.us" 99)
br50=$(pct "$tmp/bridge.us" 50)
br99=$(pct "$tmp/bridge.us" 99)
echo "CNI ADD+DEL, one attachment, $N rounds (ms), host-local IPAM for both:"
printf '  %-38s p50 %8s  p99 %8s\n' "vportd switch network (private switch)" "$vp50" "$vp99"
printf '  %-38s p50 %8s  p99 %8s\n' "Debian bridge plugin" "$br50" "$br99"
awk -v a="$vp50" -v b="$br50" -v c="$vp99" -v d="$br99" \
	'BEGIN {printf "  ratio vportd/bridge: p50 %.2f  p99 %.2f\n", a/b, c/d}'
read vk vd <"$tmp/vportd.cpu"
read bk bd <"$tmp/bridge.cpu"
echo "CPU per ADD+DEL (ms; each network alone, $N rounds):"
awk -v vk="$vk" -v vd="$vd" -v bk="$bk" 'BEGIN {
	printf "  vportd: plugin+IPAM %.1f + daemon %.1f = %.1f\n", vk/1000, vd/1000, (vk+vd)/1000
	printf "  bridge: plugin+IPAM %.1f\n", bk/1000
	printf "  ratio vportd/bridge: %.2f\n", (vk+vd)/bk }'
echo "  (load average while it ran: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs)"
# Nothing left behind by vportd: no veth once the resident is gone too.
sleep 1
left=$(ip -n "$host" -o link show | grep -c ' vc-' || true)
[ "$left" = 0 ] || { echo "cni_switch.sh: $left vportd veths left" >&2; exit 1; }
