//! Podman as a real CNI client in the SR-IOV guest (Rig::podman): the baseline the vportd
//! plugin's guest tests build on, with Debian's `host-device` plugin moving an igbvf VF
//! into the container by PCI address and `host-local` giving it an address.

use std::time::Duration;

use crate::rig::{Rig, rig_or_skip};
use crate::{boot, run};

#[test]
fn podman_runs_a_container_on_a_vf_moved_in_by_host_device() {
    crate::stall_retry(
        "podman_runs_a_container_on_a_vf_moved_in_by_host_device",
        podman_runs_a_container_on_a_vf_moved_in_by_host_device_once,
    );
}

fn podman_runs_a_container_on_a_vf_moved_in_by_host_device_once() {
    let test = "podman_runs_a_container_on_a_vf_moved_in_by_host_device";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(1).podman());
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/cni_podman_vf.sh"),
        Duration::from_secs(300),
    )
    .success();
    let text = |name: &str| o.text(name).trim().to_string();
    assert_eq!(
        text("podman.rc"),
        "0",
        "podman run failed:\n{}\n{}",
        text("inside"),
        text("podman.err")
    );
    eprintln!(
        "{test}: one podman run took {} ms in the guest",
        text("podman_ms")
    );
    let before = text("before");
    let [vf, name, ifindex, mac] = before.split(' ').collect::<Vec<_>>()[..] else {
        panic!("the scenario's record of the VF: {before:?}");
    };
    assert!(vf.starts_with("0000:01:10."), "VF 0's address: {vf}");
    // Inside, the VF itself (same ifindex, same MAC) as eth0, with host-local's address.
    let inside = text("inside");
    let mut lines = inside.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{ifindex} {mac}").as_str()),
        "{inside}"
    );
    assert!(inside.contains("inet 10.77.0."), "{inside}");
    // After the container: the VF is back in the host namespace under its old name, and
    // host-local holds no lease for it.
    assert_eq!(text("after"), format!("{name} {ifindex}"));
    assert!(
        !text("leases").lines().any(|l| l.starts_with("10.77.")),
        "leases left: {}",
        text("leases")
    );
}
