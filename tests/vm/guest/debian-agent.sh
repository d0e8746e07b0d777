# The test harness's control channel in a system-disk guest (tests/vm/debian_host.rs), run by
# the image's vportd-rig-agent.service (tests/vm/setup) from the 9p share mounted on /host.
# The protocol is guest/init's `serve`: the host writes "RUN <id>", the job
# /host/jobs/<id>/script.sh runs with /host/rig.sh sourced and $OUT naming its result
# directory, and the guest answers "DONE <id> <status>". READY comes once systemd says the
# boot is over (running, or degraded), so a test starts on a booted host; after a reboot the
# unit starts again and says READY again.
stty -F /dev/ttyS1 raw -echo
exec 3<>/dev/ttyS1
systemctl is-system-running --wait > /dev/null 2>&1
echo "READY $(cut -d' ' -f1 /proc/uptime) $(systemctl is-system-running)" >&3

# What every process is doing, for a job that overran: systemd's jobs, the process list with
# wait channels, and the kernel's blocked tasks on the console.
dump_tasks() {
  echo "uptime $(cut -d' ' -f1 /proc/uptime) s"
  systemctl list-jobs --no-pager
  systemctl --failed --no-pager
  ps -eo pid,ppid,stat,wchan:32,args
  echo w > /proc/sysrq-trigger
}

while read -r cmd id <&3; do
  case $cmd in
    RUN)
      job=/host/jobs/$id
      mkdir -p "$job/files"
      ( ( cd "$job" && OUT=$job/files sh -c '. /host/rig.sh; . ./script.sh' \
            > "$job/stdout" 2> "$job/stderr" < /dev/null )
        echo "DONE $id $?" >&3 ) &
      ;;
    DUMP)
      dump_tasks > /host/jobs/dump.txt 2>&1
      echo "DUMPED" >&3 ;;
    POWEROFF)
      # The overlay is thrown away: no need for an orderly shutdown.
      sync
      systemctl poweroff --force --force ;;
    *) echo "ERROR unknown command '$cmd'" >&3 ;;
  esac
done
