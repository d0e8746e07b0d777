# Podman 4.3 with the CNI backend runs a busybox container whose NIC is VF 0 of the first
# PF, moved in by Debian's host-device plugin (found by its PCI address) with an address
# from host-local: the baseline of the vportd plugin's guest tests. Reports what the
# container saw, and where the VF is before and after.
. /etc/rig/podman.sh
set -u
pf=0000:01:00.0
echo 2 > /sys/bus/pci/devices/$pf/sriov_numvfs
vf=$(basename "$(readlink /sys/bus/pci/devices/$pf/virtfn0)")
wait_for 30 sh -c "ls /sys/bus/pci/devices/$vf/net/ 2>/dev/null | grep -q ."
name=$(ls /sys/bus/pci/devices/$vf/net/)
echo "$vf $name $(cat /sys/class/net/$name/ifindex) $(cat /sys/class/net/$name/address)" > "$OUT/before"

podman_setup || { echo "podman_setup failed" >&2; exit 1; }
cat > /etc/cni/net.d/vfnet.conflist <<CONF
{
  "cniVersion": "1.0.0",
  "name": "vfnet",
  "plugins": [{
    "type": "host-device",
    "pciBusID": "$vf",
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}]], "dataDir": "/run/cni-ipam"}
  }]
}
CONF
start=$(now_ms)
podman_run vfnet 'echo "$(cat /sys/class/net/eth0/ifindex) $(cat /sys/class/net/eth0/address)"; ip -o -4 addr show dev eth0' \
  > "$OUT/inside" 2> "$OUT/podman.err"
echo $? > "$OUT/podman.rc"
echo $(( $(now_ms) - start )) > "$OUT/podman_ms"
after=$(ls /sys/bus/pci/devices/$vf/net/ 2>/dev/null)
echo "$after $(cat /sys/class/net/$after/ifindex 2>/dev/null)" > "$OUT/after"
ls /run/cni-ipam/vfnet > "$OUT/leases" 2>/dev/null || true
