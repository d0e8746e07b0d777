//! The daemon's control socket as root on this machine: the file's mode and group, and who
//! may talk to it. Oracles: stat(2) and the answers other users get (through setpriv).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A `vportd daemon` with its socket in a temporary directory; killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(socket: &Path, group: &str) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args([
            "daemon",
            "--metrics",
            "off",
            "--no-uevents",
            "--socket-group",
            group,
        ])
        .arg("--socket")
        .arg(socket)
        .spawn()
        .expect("vportd daemon starts");
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the daemon did not create {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon(child)
}

/// `vportd ctl status` as uid/gid 65534 with the given supplementary groups.
fn ctl_as_nobody(socket: &Path, groups: &str) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534"]);
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={groups}"));
    }
    cmd.arg(env!("CARGO_BIN_EXE_vportd"))
        .args(["ctl", "--socket"])
        .arg(socket)
        .arg("status")
        .output()
        .expect("setpriv runs (util-linux)")
}

#[test]
fn socket_mode_group_and_peer_credentials() {
    if !common::require_root("socket_mode_group_and_peer_credentials") {
        return;
    }
    // Group `daemon` (gid 1) exists on every Debian system and is not nobody's.
    let gid = nix::unistd::Group::from_name("daemon")
        .unwrap()
        .expect("group daemon exists")
        .gid
        .as_raw();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("vportd.sock");
    let _daemon = start_daemon(&socket, "daemon");

    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660, "the socket is mode 0660");
    assert_eq!(meta.uid(), 0, "root owns the socket");
    assert_eq!(meta.gid(), gid, "the configured group owns the socket");

    // Root: answered.
    let out = common::vportd(&["ctl", "--socket", socket.to_str().unwrap(), "status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"reply\": \"status\""));

    // Another user outside the group: the file's mode stops it at connect.
    let out = ctl_as_nobody(&socket, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not allowed to talk to the daemon"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same user as a member of the group: answered.
    let out = ctl_as_nobody(&socket, &gid.to_string());
    assert!(
        out.status.success(),
        "a member of the group is served: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The file's mode loosened behind our back: the peer credentials still refuse outsiders.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = ctl_as_nobody(&socket, "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("uid 65534 is neither root nor in the socket's group"),
        "{err}"
    );
}

/// udev's handler with a daemon running: the event is handed over and the process exits 0;
/// a hostile event is refused with exit 2 before anything is sent.
#[test]
fn hotplug_hands_events_to_the_daemon() {
    if !common::require_root("hotplug_hands_events_to_the_daemon") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vportd.sock");
    let _daemon = start_daemon(&socket, "root");
    let hotplug = |env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_vportd"))
            .args(["hotplug", "--config", "/nonexistent/host.toml", "--socket"])
            .arg(&socket)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let out = hotplug(&[
        ("ACTION", "add"),
        ("SUBSYSTEM", "net"),
        (
            "DEVPATH",
            "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/net/eth1",
        ),
        ("INTERFACE", "eth1"),
        ("IFINDEX", "5"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("handed to the daemon"), "{err}");

    let out = hotplug(&[
        ("ACTION", "add"),
        ("SUBSYSTEM", "pci"),
        ("DEVPATH", "/devices/pci0000:00/../../../etc/passwd"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing the udev event"));

    // No daemon and no config: nothing to do, exit 0.
    drop(_daemon);
    let out = hotplug(&[
        ("ACTION", "remove"),
        ("SUBSYSTEM", "pci"),
        ("DEVPATH", "/devices/pci0000:00/0000:00:03.0/0000:02:00.0"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no daemon and no"), "{err}");
}
