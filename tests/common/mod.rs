//! Support shared by the integration tests.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Tests that need root fail loudly without it. A person (never CI) may opt out
/// with VPORTD_SKIP_ROOT=1, and then the test says it skipped.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let asked = std::env::var("VPORTD_SKIP_ROOT").as_deref() == Ok("1");
    let ci = std::env::var_os("CI").is_some();
    if asked && !ci {
        eprintln!("SKIPPED {test}: needs root (VPORTD_SKIP_ROOT=1)");
        return false;
    }
    panic!(
        "{test} needs root: run the tests as root (sudo -E cargo test), or set VPORTD_SKIP_ROOT=1 to skip it on purpose"
    );
}

/// Runs the freshly built vportd.
pub fn vportd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args(args)
        .output()
        .expect("the vportd binary runs")
}

/// Runs a command that must succeed, returning its stdout.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (is it installed? run tests/setup)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command that must succeed; returns its stdout.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Moves the calling test thread into a new, empty network namespace, quiet: no IPv6
/// autoconfiguration chatter on the links made in it. Each test thread gets its own, so
/// tests run in parallel without seeing each other's devices.
pub fn private_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("unshare a network namespace (needs root)");
    sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
}

/// `promtool check metrics` (Debian's prometheus package) on a Prometheus text: None when
/// it is clean, else what it said. Missing promtool fails under CI=1, and outside CI says
/// it skipped and counts as clean.
pub fn promtool_check(text: &str) -> Option<String> {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool cannot run ({e}): run scripts/setup-host (Debian's prometheus package)"
            );
            eprintln!("SKIPPED promtool check metrics: no promtool ({e}; scripts/setup-host)");
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    match out.status.success() && said.trim().is_empty() {
        true => None,
        false => Some(format!("promtool check metrics ({}): {said}", out.status)),
    }
}
