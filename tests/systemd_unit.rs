//! The systemd unit passes `systemd-analyze verify` (syntax, known keys, executables present)
//! with the freshly built vportd installed where the unit expects it, inside a scratch root.
//! A unit with a broken line fails the same check, so the check can fail.
//!
//! The hotplug template (udev/vportd-hotplug@.service) is verified the same way, as the
//! instance the rules ask for; the rules and the units agree on its name.
//!
//! Needs systemd-analyze (Debian: the systemd package); missing, the test fails (under CI=1
//! and everywhere else: there is no skip).

use std::path::Path;
use std::process::Command;

/// `systemd-analyze verify` of `instance` with the file `name` holding `unit_text`.
fn verify_as(unit_text: &str, name: &str, instance: &str) -> (bool, String) {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::create_dir_all(r.join("etc/systemd/system")).unwrap();
    std::fs::create_dir_all(r.join("etc/vportd")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_vportd"), r.join("usr/bin/vportd")).unwrap();
    // ExecReload's /bin/kill, on a merged-/usr root as Debian's.
    std::fs::copy("/usr/bin/kill", r.join("usr/bin/kill")).expect("/usr/bin/kill (procps)");
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    std::fs::write(r.join("etc/systemd/system").join(name), unit_text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", r.display()))
        .arg(Path::new("/etc/systemd/system").join(instance))
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

fn verify(unit_text: &str, name: &str) -> (bool, String) {
    verify_as(unit_text, name, name)
}

/// The words after `key=` on every line of `unit` that sets it.
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .flat_map(|v| v.split_whitespace())
        .collect()
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
        unit.lines().any(|l| l
            == "ExecStartPre=-/usr/bin/vportd apply --allow-absent --wait-uplinks 30 \
                /etc/vportd/host.toml"),
        "{unit}"
    );
    // After udev has queued the boot's uevents (the apply then waits for the uplinks'
    // drivers), and never after settle, which waits for every device.
    assert!(line("After=").contains(&"systemd-udev-trigger.service"));
    for key in ["After=", "Wants=", "Requires="] {
        assert!(
            !line(key).contains(&"systemd-udev-settle.service"),
            "{unit}"
        );
    }
}

/// Issue 19's systemd points, as the unit states them: readiness and a watchdog, reload by
/// SIGHUP, no restart loop on bad input, the runtime directory instead of all of /run, and
/// what switch_edge = "af_xdp" needs.
#[test]
fn the_unit_is_notify_with_watchdog_reload_and_the_af_xdp_grants() {
    let unit = include_str!("../udev/vportd.service");
    assert_eq!(values(unit, "Type"), ["notify"]);
    assert_eq!(values(unit, "NotifyAccess"), ["main"]);
    assert_eq!(values(unit, "WatchdogSec").len(), 1, "{unit}");
    assert_eq!(
        values(unit, "ExecReload"),
        ["/bin/kill", "-HUP", "$MAINPID"]
    );
    assert_eq!(values(unit, "RestartPreventExitStatus"), ["2"]);
    assert_eq!(values(unit, "RuntimeDirectory"), ["vportd"]);
    assert!(
        !values(unit, "ReadWritePaths").contains(&"/run"),
        "all of /run is writable again: {unit}"
    );
    let caps = values(unit, "CapabilityBoundingSet");
    for cap in ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF"] {
        assert!(caps.contains(&cap), "{cap} missing from {caps:?}");
    }
    assert!(!caps.contains(&"CAP_SYS_MODULE"), "{caps:?}");
    // CNI and `netns` vPorts enter containers' network namespaces: setns(2) needs
    // CAP_SYS_ADMIN, and RestrictNamespaces must let network namespaces through.
    assert!(caps.contains(&"CAP_SYS_ADMIN"), "{caps:?}");
    assert_eq!(values(unit, "RestrictNamespaces"), ["net"]);
    assert!(values(unit, "RestrictAddressFamilies").contains(&"AF_XDP"));
    assert!(values(unit, "ProtectKernelModules").contains(&"yes"));
    // The socket the daemon binds by default is in the runtime directory.
    let out = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args(["daemon", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("/run/vportd/vportd.sock"), "{help}");
}

/// The rules hand a NIC's netdev add to vportd-hotplug@.service, and that template verifies
/// as the instance udev asks for.
#[test]
fn the_hotplug_template_verifies_and_the_rules_name_it() {
    let rules = include_str!("../udev/90-vportd.rules");
    let wants: Vec<&str> = rules
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split("ENV{SYSTEMD_WANTS}+=\"").nth(1))
        .collect();
    assert_eq!(wants.len(), 1, "{rules}");
    assert!(
        wants[0].starts_with("vportd-hotplug@%k.service\""),
        "{wants:?}"
    );
    let wants_line = rules
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("SYSTEMD_WANTS"))
        .unwrap();
    assert!(wants_line.contains("TAG+=\"systemd\""), "{wants_line}");
    assert!(
        wants_line.contains("TEST!=\"device/physfn\""),
        "{wants_line}"
    );

    let unit = include_str!("../udev/vportd-hotplug@.service");
    let (ok, said) = verify_as(
        unit,
        "vportd-hotplug@.service",
        "vportd-hotplug@eth1.service",
    );
    assert!(
        ok,
        "systemd-analyze verify vportd-hotplug@eth1.service:\n{said}"
    );
    assert_eq!(values(unit, "Type"), ["oneshot"]);
    assert_eq!(
        values(unit, "ExecStart"),
        ["/usr/bin/vportd", "hotplug", "--systemd-unit", "%I"]
    );
    assert!(values(unit, "After").contains(&"vportd.service"));
    let broken = unit.replace("Type=oneshot", "Type=oneshot\nBogusKey=1");
    let (ok, said) = verify_as(
        &broken,
        "vportd-hotplug@.service",
        "vportd-hotplug@eth1.service",
    );
    assert!(!ok && said.contains("BogusKey"), "{said}");
}

/// What vportd-hotplug@.service runs: with a daemon listening it leaves the work to it and
/// exits at once; with neither daemon nor config there is nothing to provision.
#[test]
fn the_hotplug_unit_leaves_the_work_to_a_listening_daemon() {
    let t = tempfile::tempdir().unwrap();
    let socket = t.path().join("vportd.sock");
    let config = t.path().join("host.toml");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_vportd"))
            .args(["hotplug", "--systemd-unit", "eth1"])
            .arg("--socket")
            .arg(&socket)
            .arg("--config")
            .arg(&config)
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, said) = run();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("eth1: no daemon and no"), "{said}");

    // A config that would be applied, but a daemon listens: it is left to the daemon.
    std::fs::write(&config, "[[uplink]]\npci = \"0000:7f:1f.7\"\n").unwrap();
    let _daemon = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let (code, said) = run();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("eth1: the daemon on"), "{said}");
    assert!(said.contains("reconciles it"), "{said}");
}
