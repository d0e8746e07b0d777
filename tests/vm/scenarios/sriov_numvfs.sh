# The kernel's sriov_numvfs contract on an igb PF (eth0), step by step.
# Prints one line per write: step|value written|ok or fail|error message|sriov_numvfs after.
# Writes $OUT/totalvfs, $OUT/vfs.7 (the VF BDFs with 7 VFs), $OUT/ifindex.before and
# $OUT/ifindex.after (the VF netdevs' ifindexes around writing the same count again),
# $OUT/create_ms (how long creating 7 VFs took).
pf=/sys/class/net/eth0/device

write_numvfs() {
  if err=$( { echo "$2" > $pf/sriov_numvfs; } 2>&1 ); then rc=ok; else rc=fail; fi
  echo "$1|$2|$rc|${err#sh: write error: }|$(cat $pf/sriov_numvfs)"
}

vf_ifindexes() {
  for vf in $pf/virtfn*; do cat "$vf"/net/*/ifindex; done
}

cat $pf/sriov_totalvfs > $OUT/totalvfs
write_numvfs above_total 8
start=$(now_ms)
write_numvfs create 7
echo $(( $(now_ms) - start )) > $OUT/create_ms
# igbvf binds each VF as it appears; wait for all seven netdevs before looking at them.
wait_for 20 sh -c "[ \$(ls -d $pf/virtfn*/net/* | wc -l) -eq 7 ]"
for vf in $pf/virtfn*; do basename "$(readlink -f "$vf")"; done > $OUT/vfs.7
vf_ifindexes > $OUT/ifindex.before
write_numvfs nonzero_to_nonzero 3
write_numvfs same_again 7
vf_ifindexes > $OUT/ifindex.after
write_numvfs not_a_number abc
write_numvfs negative -1
write_numvfs to_zero 0
ls -d $pf/virtfn* 2>/dev/null | wc -l > $OUT/virtfns.0
write_numvfs zero_again 0
write_numvfs zero_to_three 3
write_numvfs back_to_zero 0
