# Sourced by scenarios in a guest booted with Rig::podman() (tests/vm/rig.rs, add_podman).

# podman_setup: the mounts podman needs here (cgroup2, on which crun is happy; a tmpfs on
# /dev/shm for podman's lock manager), the folders of its config, and /rootfs: a static
# busybox with its applet links, the containers' root file system (no image is pulled).
podman_setup() {
  grep -q ' /sys/fs/cgroup ' /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup || return 1
  grep -q ' /dev/shm ' /proc/mounts || mount -t tmpfs tmpfs /dev/shm || return 1
  mkdir -p /run/containers/storage /run/containers/run /etc/cni/net.d /var/lib/cni /var/tmp
  if [ ! -e /rootfs/bin/sh ]; then
    mkdir -p /rootfs/bin /rootfs/proc /rootfs/sys /rootfs/dev /rootfs/etc /rootfs/tmp /rootfs/run
    cp /usr/bin/busybox /rootfs/bin/busybox || return 1
    for applet in $(/usr/bin/busybox --list); do
      [ "$applet" = busybox ] || ln -s busybox "/rootfs/bin/$applet"
    done
  fi
}

# podman_run NETWORK SCRIPT [podman run options...]: one container on NETWORK running
# SCRIPT with busybox's sh; its output is podman's.
podman_run() {
  _net=$1 _script=$2
  shift 2
  /usr/bin/podman run --rm --cgroups=disabled --network "$_net" \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    "$@" --rootfs /rootfs /bin/sh -c "$_script"
}
