//! The systemd unit passes `systemd-analyze verify` (syntax, known keys, executables present)
//! with the freshly built vportd installed where the unit expects it, inside a scratch root.
//! A unit with a broken line fails the same check, so the check can fail.
//!
//! Needs systemd-analyze (Debian: the systemd package); missing, the test fails.

use std::path::Path;
use std::process::Command;

fn verify(unit_text: &str, name: &str) -> (bool, String) {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::create_dir_all(r.join("etc/systemd/system")).unwrap();
    std::fs::create_dir_all(r.join("etc/vportd")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_vportd"), r.join("usr/bin/vportd")).unwrap();
    std::fs::write(r.join("etc/systemd/system").join(name), unit_text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", r.display()))
        .arg(Path::new("/etc/systemd/system").join(name))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze: {e} (install the systemd package)")
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // systemd-analyze exits 0 on unknown keys and bad values (it only warns): any word
    // from it is a finding.
    (out.status.success() && said.trim().is_empty(), said)
}

#[test]
fn the_unit_verifies_and_a_broken_one_does_not() {
    let unit = include_str!("../udev/vportd.service");
    let (ok, said) = verify(unit, "vportd.service");
    assert!(ok, "systemd-analyze verify udev/vportd.service:\n{said}");

    let broken = unit.replace("LimitNICE=-10", "LimitNICE=banana\nBogusKey=1");
    assert_ne!(broken, unit);
    let (ok, said) = verify(&broken, "vportd.service");
    assert!(!ok, "a broken unit passed:\n{said}");
    assert!(said.contains("BogusKey"), "{said}");

    // Ordered before network management, which waits for network-pre.target, and a boot
    // with an uplink missing still starts the daemon.
    let line = |key: &str| -> Vec<&str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key))
            .flat_map(|v| v.split_whitespace())
            .collect()
    };
    assert!(line("Before=").contains(&"network-pre.target"));
    assert!(line("Wants=").contains(&"network-pre.target"));
    assert!(
        unit.lines().any(
            |l| l == "ExecStartPre=-/usr/bin/vportd apply --allow-absent /etc/vportd/host.toml"
        ),
        "{unit}"
    );
}
