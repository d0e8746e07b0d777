//! `vportd daemon --once` against the 82576 guest fixture with synthetic load: two
//! queues made hot on one CPU must be spread, through the fixture's /proc/irq files.
//! Once with `--root DIR`, once as root inside a mount namespace whose /proc and
//! /sys files are bind-mounted fixtures and `--root /` (the daemon unchanged).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/guest-82576-7vfs"
);
const HOT: [u32; 2] = [27, 28];

fn fixture() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .args(["-a", &format!("{FIXTURE}/."), t.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
    for irq in HOT {
        let d = t.path().join(format!("proc/irq/{irq}"));
        std::fs::write(d.join("smp_affinity_list"), "1\n").unwrap();
        std::fs::write(d.join("effective_affinity_list"), "1\n").unwrap();
    }
    write_counters(t.path(), 0);
    t
}

/// /proc/stat and /proc/interrupts after `step` seconds of load: both hot queues
/// interrupt 40,000 times a second on CPU 1, which spends 90 % in softirq.
fn write_counters(root: &Path, step: u64) {
    let text = std::fs::read_to_string(format!("{FIXTURE}/proc/interrupts")).unwrap();
    let lines = vportd::facts::parse::interrupts(&text).unwrap();
    let mut out = String::from("           CPU0       CPU1       CPU2       CPU3\n");
    for (irq, l) in &lines {
        let mut c = l.per_cpu.clone();
        c.resize(4, 0);
        if HOT.contains(irq) {
            c[1] += 40_000 * step;
        }
        out += &format!(
            "{irq:>4}: {:>10} {:>10} {:>10} {:>10}  PCI-MSIX-0000:01:00.0 {irq}-edge {}\n",
            c[0], c[1], c[2], c[3], l.name
        );
    }
    std::fs::write(root.join("proc/interrupts"), out).unwrap();
    let mut stat = String::from("cpu 0 0 0 0 0 0 0 0 0 0\n");
    for cpu in 0..4u64 {
        let (busy, soft) = if cpu == 1 { (95, 90) } else { (5, 0) };
        let user = (busy - soft) * step;
        stat += &format!(
            "cpu{cpu} {user} 0 0 {} 0 0 {} 0 0 0\n",
            (100 - busy) * step + 1000,
            soft * step
        );
    }
    std::fs::write(root.join("proc/stat"), stat).unwrap();
}

/// Starts `cmd` (which runs the daemon with a 2 s period), rewrites the counters
/// while it waits, and returns its JSON report.
fn run_with_load(mut cmd: Command, root: &Path) -> serde_json::Value {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the daemon starts");
    std::thread::sleep(Duration::from_millis(800));
    write_counters(root, 2);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "daemon failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn check(report: &serde_json::Value, root: &Path) {
    let moves = report["moves"].as_array().expect("moves");
    assert!(!moves.is_empty(), "no moves: {report:#}");
    let mut moved = BTreeMap::new();
    for m in moves {
        assert_eq!(m["reason"], "spread", "{m}");
        assert_eq!(m["from"], 1, "{m}");
        assert!(m["errno"].is_null(), "{m}");
        moved.insert(m["irq"].as_u64().unwrap() as u32, m["to"].as_u64().unwrap());
    }
    // One of the two leaves CPU 1; the other stays (it is the anchor).
    assert_eq!(moved.len(), 1, "{report:#}");
    let (irq, to) = moved.into_iter().next().unwrap();
    assert!(HOT.contains(&irq));
    assert_ne!(to, 1);
    let written =
        std::fs::read_to_string(root.join(format!("proc/irq/{irq}/smp_affinity_list"))).unwrap();
    assert_eq!(written.trim(), to.to_string());
    let hot: Vec<f64> = report["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| HOT.contains(&(q["irq"].as_u64().unwrap() as u32)))
        .map(|q| q["load"].as_f64().unwrap())
        .collect();
    assert!(hot.iter().all(|l| *l > 0.3), "loads {hot:?}");
}

#[test]
fn daemon_once_spreads_hot_queues_under_a_fixture_root() {
    let t = fixture();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vportd"));
    cmd.args([
        "daemon",
        "--once",
        "--period-ms",
        "2000",
        "--metrics",
        "off",
        "--root",
    ])
    .arg(t.path());
    let r = run_with_load(cmd, t.path());
    check(&r, t.path());
}

#[test]
fn daemon_works_unchanged_in_a_mount_namespace_of_bind_mounted_fixtures() {
    if !common::require_root("daemon_works_unchanged_in_a_mount_namespace_of_bind_mounted_fixtures")
    {
        return;
    }
    let t = fixture();
    let f = t.path().display().to_string();
    let script = format!(
        "set -e; mount --make-rprivate /; \
         mount --bind {f}/proc/interrupts /proc/interrupts; \
         mount --bind {f}/proc/stat /proc/stat; \
         mount --bind {f}/proc/irq /proc/irq; \
         mount --bind {f}/sys /sys; \
         exec {} daemon --once --period-ms 2000 --metrics off --root /",
        env!("CARGO_BIN_EXE_vportd")
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script]);
    let r = run_with_load(cmd, t.path());
    check(&r, t.path());
    // The host's own files were never touched: the namespace is gone.
    let live = std::fs::read_to_string("/proc/interrupts").unwrap();
    assert!(
        !live.contains("eth0-TxRx-0") || Path::new("/sys/bus/pci/devices/0000:01:00.0").exists()
    );
}
