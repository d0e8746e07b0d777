//! irqbalance and vportd on one host (docs/irqbalance.md):
//! - `vportd irqbalance-policy` on the igb guest fixture: `ban=true` for the queue IRQs of
//!   a PF and a VF, nothing for their misc vectors;
//! - Debian's real irqbalance, run `--oneshot --debug` with the shipped wrapper
//!   `udev/irqbalance-policy` as its `--policyscript`, on this machine's own IRQs: it bans
//!   exactly the NIC queue IRQs (found here by the test's own reading of sysfs and
//!   /proc/interrupts) and keeps every other IRQ in its database. It runs in a private mount
//!   namespace with /proc/irq read-only, so it cannot move this machine's IRQs (checked).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The tests that run irqbalance take turns: two at once would see each other.
static IRQBALANCE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// PATH with the freshly built vportd first, for the wrapper script's `exec vportd`.
fn path_with_vportd() -> String {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_vportd")).parent().unwrap();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/guest-82576-7vfs"
);

fn policy(root: &str, device: &str, irq: u32) -> (String, String, bool) {
    let out = common::vportd(&[
        "irqbalance-policy",
        "--explain",
        "--root",
        root,
        device,
        &irq.to_string(),
    ]);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn the_policy_bans_the_queue_irqs_of_the_fixtures_igb_functions_only() {
    for (device, irq, ban) in [
        ("/sys/bus/pci/devices/0000:01:00.0", 27, true), // eth0-TxRx-0, the PF
        ("/sys/bus/pci/devices/0000:01:00.0", 28, true), // eth0-rx-1
        ("/sys/bus/pci/devices/0000:01:00.0", 26, false), // eth0: the PF's misc vector
        ("/sys/bus/pci/devices/0000:01:10.2", 33, true), // eth3-rx-0, a VF
        ("/sys/bus/pci/devices/0000:01:10.2", 34, false), // eth3: the VF's mailbox
        ("/sys/bus/pci/devices/0000:01:10.2", 27, false), // another function's queue
        ("/sys", 27, false),                             // no device named
    ] {
        let (out, err, ok) = policy(FIXTURE, device, irq);
        assert!(ok, "{device} {irq}: {err}");
        let want = if ban { "ban=true\n" } else { "" };
        assert_eq!(out, want, "{device} {irq}: {err}");
        assert!(!err.is_empty(), "--explain says why: {device} {irq}");
    }
    let (out, err, ok) = policy(FIXTURE, "/sys/bus/pci/devices/0000:01:00.0", 9999);
    assert!(
        !ok && out.is_empty(),
        "an IRQ the kernel does not show fails"
    );
    assert!(err.contains("IRQ 9999"), "{err}");
}

/// With a host config, only its uplinks' queues (and their VFs') are vportd's: the daemon
/// with that config balances no other NIC's.
#[test]
fn with_a_config_only_its_uplinks_queues_are_banned() {
    let dir = tempfile::tempdir().unwrap();
    let judge = |uplink: &str, device: &str, irq: u32| {
        let config = dir.path().join(format!("{uplink}.toml"));
        std::fs::write(&config, format!("[[uplink]]\npci = \"{uplink}\"\n")).unwrap();
        let out = common::vportd(&[
            "irqbalance-policy",
            "--explain",
            "--root",
            FIXTURE,
            "--config",
            config.to_str().unwrap(),
            device,
            &irq.to_string(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), err)
    };
    // The fixture's igb PF is the uplink: its queue and its VF's are banned.
    assert_eq!(
        judge("0000:01:00.0", "/sys/bus/pci/devices/0000:01:00.0", 27).0,
        "ban=true\n"
    );
    assert_eq!(
        judge("0000:01:00.0", "/sys/bus/pci/devices/0000:01:10.2", 33).0,
        "ban=true\n"
    );
    // Another PF is: the igb's queues are left to irqbalance, saying why.
    let (out, err) = judge("0000:02:00.0", "/sys/bus/pci/devices/0000:01:00.0", 27);
    assert_eq!(out, "", "{err}");
    assert!(err.contains("not one of"), "{err}");
    let (out, _) = judge("0000:02:00.0", "/sys/bus/pci/devices/0000:01:10.2", 33);
    assert_eq!(out, "");
}

/// The queue IRQs of this machine's NICs, read by the test itself: each netdev's PCI
/// function (the nearest ancestor with `msi_irqs`), its MSI IRQs, and their names in
/// /proc/interrupts ending in a queue word and number.
fn queue_irqs_here(names: &BTreeMap<u32, String>) -> BTreeSet<u32> {
    let queue = |n: &str| {
        let l = n.to_ascii_lowercase();
        let t: Vec<&str> = l.split(['-', '.', '_']).collect();
        match t.as_slice() {
            [.., w, num] if num.parse::<u32>().is_ok() => {
                ["rx", "tx", "txrx", "input", "output", "combined"].contains(w)
            }
            [.., last] => last.starts_with("comp") && last[4..].parse::<u32>().is_ok(),
            [] => false,
        }
    };
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/sys/class/net").unwrap() {
        let Ok(real) = std::fs::canonicalize(e.unwrap().path()) else {
            continue;
        };
        let Some(function) = real.ancestors().find(|a| a.join("msi_irqs").is_dir()) else {
            continue;
        };
        for i in std::fs::read_dir(function.join("msi_irqs")).unwrap() {
            let irq: u32 = i.unwrap().file_name().to_str().unwrap().parse().unwrap();
            if names.get(&irq).is_some_and(|n| queue(n)) {
                out.insert(irq);
            }
        }
    }
    out
}

/// IRQ number -> action name (the last word) of /proc/interrupts.
fn interrupt_names() -> BTreeMap<u32, String> {
    std::fs::read_to_string("/proc/interrupts")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (n, rest) = l.trim_start().split_once(':')?;
            Some((n.parse().ok()?, rest.split_whitespace().last()?.to_string()))
        })
        .collect()
}

fn affinities() -> BTreeMap<u32, String> {
    interrupt_names()
        .keys()
        .filter_map(|i| {
            let t = std::fs::read_to_string(format!("/proc/irq/{i}/smp_affinity_list")).ok()?;
            Some((*i, t))
        })
        .collect()
}

#[test]
fn debians_irqbalance_bans_what_the_policy_names_and_keeps_the_rest() {
    if !common::require_root("debians_irqbalance_bans_what_the_policy_names_and_keeps_the_rest") {
        return;
    }
    let have = Command::new("sh")
        .args(["-c", "command -v irqbalance && command -v unshare"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "irqbalance is missing: run scripts/setup-host"
        );
        eprintln!("SKIPPED: no irqbalance (scripts/setup-host)");
        return;
    }
    let names = interrupt_names();
    let expected = queue_irqs_here(&names);
    assert!(
        !expected.is_empty(),
        "this machine shows no NIC queue IRQ in /proc/interrupts, so the test proves nothing:\n{names:?}"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("udev/irqbalance-policy");
    let path = path_with_vportd();
    let _turn = IRQBALANCE.lock().unwrap_or_else(|e| e.into_inner());
    let before = affinities();
    // A read-only /proc/irq: irqbalance decides and prints, and its writes fail.
    let run = format!(
        "mount --make-rprivate / && mount --bind /proc/irq /proc/irq && \
         mount -o remount,bind,ro /proc/irq && \
         exec timeout 60 irqbalance --oneshot --debug --policyscript={}",
        script.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &run])
        .env("PATH", &path)
        .output()
        .expect("unshare runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "irqbalance failed:\n{text}");
    let number = |l: &str, pre: &str, post: &str| -> Option<u32> {
        l.trim().strip_prefix(pre)?.strip_suffix(post)?.parse().ok()
    };
    let banned: BTreeSet<u32> = text
        .lines()
        .filter_map(|l| number(l, "IRQ ", " was BANNED."))
        .collect();
    let added: BTreeSet<u32> = text
        .lines()
        .filter_map(|l| number(l, "Adding IRQ ", " to database"))
        .collect();
    assert_eq!(banned, expected, "irqbalance banned these:\n{text}");
    assert!(
        banned.is_disjoint(&added),
        "a banned IRQ in the database:\n{text}"
    );
    let seen: BTreeSet<u32> = banned.union(&added).copied().collect();
    let others: Vec<&u32> = names
        .keys()
        .filter(|i| !seen.contains(i) && Path::new(&format!("/proc/irq/{i}")).is_dir())
        .collect();
    eprintln!("irqbalance banned {banned:?}, balances {added:?}; not in its view: {others:?}");
    assert!(!added.is_empty(), "irqbalance kept no IRQ:\n{text}");
    assert_eq!(
        affinities(),
        before,
        "irqbalance changed this machine's IRQ affinities:\n{text}"
    );
}

/// Starts Debian's irqbalance in the foreground in a private mount namespace where
/// /proc/irq is read-only (it cannot move this machine's IRQs), with `args`.
fn start_irqbalance(args: &str) -> std::process::Child {
    let run = format!(
        "mount --make-rprivate / && mount --bind /proc/irq /proc/irq && \
         mount -o remount,bind,ro /proc/irq && exec irqbalance --foreground {args}"
    );
    Command::new("unshare")
        .args(["-m", "sh", "-c", &run])
        .env("PATH", path_with_vportd())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("unshare runs")
}

/// `vportd status` (text, then --json) until it names `pid` (irqbalance takes a moment to
/// exec), at most 10 s: (stdout, stderr) of each.
fn status_naming(pid: u32, state_dir: &Path) -> ((String, String), (String, String)) {
    let dir = state_dir.to_str().unwrap();
    let run = |json: bool| {
        let mut args = vec!["status", "--state-dir", dir];
        if json {
            args.push("--json");
        }
        let o = common::vportd(&args);
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = run(false);
        if text.0.contains(&pid.to_string()) || text.1.contains(&pid.to_string()) {
            return (text, run(true));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never named irqbalance {pid}: {text:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn status_says_whether_irqbalance_runs_and_with_which_policy() {
    if !common::require_root("status_says_whether_irqbalance_runs_and_with_which_policy") {
        return;
    }
    if Command::new("irqbalance")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "irqbalance is missing: run scripts/setup-host"
        );
        eprintln!("SKIPPED: no irqbalance (scripts/setup-host)");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let _turn = IRQBALANCE.lock().unwrap_or_else(|e| e.into_inner());
    // Without the policy script: a warning on stderr, in text and JSON; stdout of --json
    // stays the list of vPorts.
    let mut bare = start_irqbalance("");
    let ((out, err), (json, json_err)) = status_naming(bare.id(), state.path());
    let _ = bare.kill();
    let _ = bare.wait();
    assert!(
        out.contains("irqbalance: running WITHOUT vportd's policy script"),
        "{out}"
    );
    for e in [&err, &json_err] {
        assert!(
            e.contains("vportd: irqbalance is running (pid")
                && e.contains(&bare.id().to_string())
                && e.contains("vportd backs off"),
            "{e}"
        );
    }
    let list: serde_json::Value = serde_json::from_str(&json).expect("--json stays JSON");
    assert!(list.is_array(), "{json}");

    // With the shipped policy script: said, no warning.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("udev/irqbalance-policy");
    let mut ours = start_irqbalance(&format!("--policyscript={}", script.display()));
    let ((out, err), _) = status_naming(ours.id(), state.path());
    let _ = ours.kill();
    let _ = ours.wait();
    assert!(
        out.contains(&format!(
            "irqbalance: running (pid {}) with vportd's policy script",
            ours.id()
        )),
        "{out}\n{err}"
    );
    assert!(!err.contains("irqbalance is running"), "{err}");
}
