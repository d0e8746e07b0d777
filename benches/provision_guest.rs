//! Provisioning speed on the real igb driver, in the rig's guest, side by side in one run:
//! vportd reconciling 7 VFs' attributes from scratch against an iproute2 script that sets
//! the same attributes one `ip link set` call at a time; and vportd verifying an unchanged
//! host of 14 VFs (a no-op apply). Run: `cargo bench --bench provision_guest`.
//!
//! The guest runs under QEMU's TCG (no KVM here), so absolute times are several times
//! those of real hardware; the ratio is the figure that carries over.

#[allow(dead_code)]
#[path = "../tests/vm/rig.rs"]
mod rig;

use std::time::Duration;

fn main() {
    let Some(_) = rig::rig_or_skip("provision_guest bench") else {
        return;
    };
    let mut guest = rig::Rig::new().pfs(2).boot().expect("the guest boots");
    let o = guest
        .run(
            include_str!("provision_guest.sh"),
            Duration::from_secs(1200),
        )
        .expect("the bench script runs")
        .success();
    if !o.stderr.trim().is_empty() {
        panic!("the bench script reported errors:\n{}", o.stderr);
    }
    let figure = |name: &str| -> f64 {
        o.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{}", o.stdout))
    };
    let vportd = figure("reconcile_vportd");
    let script = figure("reconcile_ip_script");
    let verify = figure("verify_unchanged_14_vfs");
    let status = figure("status_14_vfs");
    let ip_show = figure("ip_show_both_pfs");
    let in_process = figure("verify_in_process");
    let start = figure("process_start");
    println!("provisioning on igb (QEMU TCG guest, release build), mean of several runs:");
    println!(
        "  reconcile 7 VFs from scratch   vportd {vportd:8.1} ms   iproute2 script (35 calls) {script:8.1} ms   speed-up {:.1}x (target >= 5x)",
        script / vportd
    );
    println!(
        "  verify unchanged host, 14 VFs  vportd apply {verify:8.1} ms (target < 50 ms)   vportd status {status:8.1} ms   for scale: ip -d link show x2 {ip_show:8.1} ms"
    );
    println!(
        "  of which: the verification inside vportd {in_process:8.1} ms; starting the process (vportd --version) {start:8.1} ms"
    );
    println!(
        "  VFs with the expected VLAN after both: {}",
        o.text("vlan_count").trim()
    );
    println!(
        "  in-process runs that were no-ops: {}",
        o.text("noop_count").trim()
    );
    println!("  no-op apply says: {}", o.text("noop.out").trim());
}
