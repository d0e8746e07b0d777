//! The daemon's control plane reads /proc and /sys below `--root`, like its rebalancer: a
//! `ctl plan` answered by a daemon rooted in a captured igb host (tests/fixtures) places the
//! config's vPort on that capture's PF, which this machine does not have; the same daemon
//! rooted at / refuses the config, because the uplink is not here.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(root: &Path, config: &Path, socket: &Path) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args([
            "daemon",
            "--metrics",
            "off",
            "--no-uevents",
            "--period-ms",
            "500",
        ])
        .arg("--root")
        .arg(root)
        .arg("--config")
        .arg(config)
        .arg("--socket")
        .arg(socket)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("vportd daemon starts");
    let start = Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon(child)
}

fn plan(socket: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .arg("plan")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn ctl_plan_reads_sysfs_below_the_daemons_root() {
    const PF: &str = "0000:01:00.0";
    assert!(
        !Path::new("/sys/bus/pci/devices").join(PF).exists(),
        "this machine has a {PF}: the test needs a PF the fixture has and the host has not"
    );
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guest-82576-7vfs");
    let ok = Command::new("cp")
        .arg("-r")
        .arg(&fixture)
        .arg(&root)
        .status()
        .unwrap();
    assert!(ok.success());
    // The rebalancer needs a /proc/stat; the capture has none.
    std::fs::write(
        root.join("proc/stat"),
        "cpu  1 0 1 100 0 0 0 0 0 0\ncpu0 1 0 1 100 0 0 0 0 0 0\n",
    )
    .unwrap();
    let config = t.path().join("host.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n\n[[uplink]]\npci = \"{PF}\"\n\n[[vport]]\nname = \"vm1\"\nuplink = \"{PF}\"\nmac = \"02:00:00:00:01:01\"\n",
            t.path().join("state").display()
        ),
    )
    .unwrap();

    let socket = t.path().join("fixture.sock");
    let d = daemon(&root, &config, &socket);
    let (ok, text) = plan(&socket);
    // Applying is refused: netlink is the live kernel's, not the capture's.
    let apply = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .arg("ctl")
        .arg("--socket")
        .arg(&socket)
        .arg("apply")
        .output()
        .unwrap();
    drop(d);
    let said = String::from_utf8_lossy(&apply.stderr);
    assert!(!apply.status.success(), "{said}");
    assert!(said.contains("applies nothing"), "{said}");
    assert!(ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let placements = v["plan"]["placements"].to_string();
    assert!(placements.contains("\"vf\""), "{text}");
    assert!(
        v["plan"]["actions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["pf"] == PF)),
        "{text}"
    );

    let socket = t.path().join("host.sock");
    let d = daemon(Path::new("/"), &config, &socket);
    let (ok, text) = plan(&socket);
    drop(d);
    assert!(
        !ok,
        "a daemon rooted at / planned for a PF this host lacks: {text}"
    );
    assert!(text.contains(PF), "{text}");
}

/// What the systemd unit's ExecStartPre runs at boot: an uplink that is not here is a
/// warning and its vPorts wait (exit 0), where a plain apply refuses the config (exit 2).
#[test]
fn apply_allow_absent_warns_and_waits_for_a_missing_uplink() {
    const PF: &str = "0000:01:00.0";
    assert!(!Path::new("/sys/bus/pci/devices").join(PF).exists());
    let t = tempfile::tempdir().unwrap();
    let config = t.path().join("host.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n\n[[uplink]]\npci = \"{PF}\"\n\n[[vport]]\nname = \"vm1\"\nuplink = \"{PF}\"\nmac = \"02:00:00:00:01:01\"\n",
            t.path().join("state").display()
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vportd"))
            .arg("apply")
            .args(extra)
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&["--allow-absent"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("waiting for their uplink: vm1"), "{stdout}");
    assert!(
        stderr.contains(&format!("warning: uplink pci {PF} is not here")),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("no network PCI function on this host"),
        "{stderr}"
    );
}
