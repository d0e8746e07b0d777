//! Provisioning speed on the real igb driver, in the rig's guest, side by side in one run:
//! vportd reconciling 7 VFs' attributes from scratch (its journal, read-back and state file
//! included) against the same 35 settings made by iproute2 two ways: one `ip link set`
//! process per attribute (a plain script: mostly process starts under TCG), and all 35 in
//! one `ip -batch` process (the fair peer: one request per attribute, no read-back); where
//! vportd's time goes (`VPORTD_TIMING`: each phase and step); and vportd verifying an
//! unchanged host of 14 VFs (a no-op apply). Run: `cargo bench --bench provision_guest`;
//! with `VPORTD_BENCH_BEFORE=path/to/an/earlier/vportd` that build is timed in the same run too
//! (a before/after of a change, side by side in one guest).
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
    let mut rig = rig::Rig::new().pfs(2);
    if let Some(before) = std::env::var_os("VPORTD_BENCH_BEFORE") {
        let bin = std::fs::read(&before).expect("VPORTD_BENCH_BEFORE names a readable vportd");
        rig = rig.file("/usr/bin/vportd-before", bin, 0o755);
    }
    let mut guest = rig.boot().expect("the guest boots");
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
    let batch = figure("reconcile_ip_batch");
    let verify = figure("verify_unchanged_14_vfs");
    let status = figure("status_14_vfs");
    let ip_show = figure("ip_show_both_pfs");
    let in_process = figure("verify_in_process");
    let start = figure("process_start");
    println!("provisioning on igb (QEMU TCG guest, release build), mean of several runs:");
    println!("  reconcile 7 VFs from scratch (35 settings):");
    println!("    vportd apply (journal, read-back, state)  {vportd:8.1} ms");
    println!(
        "    ip -batch (one process, 35 requests)      {batch:8.1} ms   ip -batch/vportd {:.2}x (target >= 1.0x)",
        batch / vportd
    );
    println!(
        "    iproute2 script (35 ip processes)         {script:8.1} ms   script/vportd {:.1}x (mostly process starts)",
        script / vportd
    );
    let before = figure("reconcile_vportd_before");
    if before > 0.0 {
        println!(
            "    the earlier build (VPORTD_BENCH_BEFORE)   {before:8.1} ms   ip -batch/earlier {:.2}x",
            batch / before
        );
    }
    println!("  where one vportd reconcile's time goes (VPORTD_TIMING, ms):");
    for l in o.text("timing").lines() {
        println!("    {}", l.trim_start_matches("timing: "));
    }
    if before > 0.0 {
        println!("  and the earlier build's:");
        for l in o.text("timing-before").lines() {
            println!("    {}", l.trim_start_matches("timing: "));
        }
    }
    println!(
        "  verify unchanged host, 14 VFs  vportd apply {verify:8.1} ms (target < 50 ms)   vportd status {status:8.1} ms   for scale: ip -d link show x2 {ip_show:8.1} ms"
    );
    println!(
        "  of which: the verification inside vportd {in_process:8.1} ms; starting the process (vportd --version) {start:8.1} ms"
    );
    println!(
        "  VFs with the expected VLAN after the last side / after the timed vportd run: {} / {}",
        o.text("vlan_count").trim(),
        o.text("vlan_count_vportd").trim()
    );
    println!(
        "  in-process runs that were no-ops: {}",
        o.text("noop_count").trim()
    );
    println!("  no-op apply says: {}", o.text("noop.out").trim());
}
