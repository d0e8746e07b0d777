//! Private and internal software switches, run by the real daemon (`vportd apply`, then
//! `vportd daemon --config`) as root, in private network namespaces only (no frame leaves
//! through this machine's NIC):
//! - private switch `lab`: two `attach = "veth"` vPorts, each veth's container end made by
//!   the daemon inside a namespace of its own with the vPort's MAC; the namespaces ping each
//!   other through the switch;
//! - internal switch `office`: the host (the test's namespace) is a member through
//!   `host_netdev`, a veth the daemon makes; the host pings a vPort's namespace;
//! - `vportd status` and the metrics endpoint show each switch with its kind and members;
//! - a vPort removed from the config loses its veth (both ends); an internal switch left
//!   without vPorts goes, and the host's veth with it.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::sh;
use vportd::softpath::Snapshot;

/// A process that exists only to hold a network namespace; killed on drop.
struct Netns(Child);

impl Netns {
    fn new() -> Netns {
        let child = Command::new("unshare")
            .args(["-n", "sleep", "3600"])
            .spawn()
            .expect("unshare runs");
        let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{}/ns/net", child.id())).ok() == Some(ours.clone())
        {
            assert!(Instant::now() < deadline, "unshare -n never switched");
            std::thread::sleep(Duration::from_millis(10));
        }
        Netns(child)
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }

    fn sh(&self, cmd: &str) -> String {
        sh(&format!("nsenter -t {} -n sh -c '{cmd}'", self.0.id()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The daemon, killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(state_dir: &Path, a: &Netns, b: &Netns, c: Option<&Netns>) -> String {
    let mut text = format!(
        "state_dir = \"{}\"\n\
         [[switch]]\nname = \"lab\"\n\
         [[switch]]\nname = \"office\"\nhost_netdev = \"vsw-office\"\n\
         [[vport]]\nname = \"c1\"\nswitch = \"lab\"\nmac = \"02:76:71:00:00:01\"\nattach = \"veth\"\nnetns = \"{}\"\n\
         [[vport]]\nname = \"c2\"\nswitch = \"lab\"\nmac = \"02:76:71:00:00:02\"\nattach = \"veth\"\nnetns = \"{}\"\nifname = \"net1\"\n",
        state_dir.display(),
        a.path(),
        b.path()
    );
    if let Some(c) = c {
        text += &format!(
            "[[vport]]\nname = \"c3\"\nswitch = \"office\"\nmac = \"02:76:71:00:00:03\"\nattach = \"veth\"\nnetns = \"{}\"\n",
            c.path()
        );
    }
    text
}

fn wait_for(what: &str, log: &Path, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened; the daemon's log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn private_and_internal_switches_carry_containers_and_the_host() {
    if !common::require_root("private_and_internal_switches_carry_containers_and_the_host") {
        return;
    }
    common::private_netns();
    sh("ip link set lo up");
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let cfg = dir.path().join("host.toml");
    let (a, b, c) = (Netns::new(), Netns::new(), Netns::new());
    std::fs::write(&cfg, config(&state_dir, &a, &b, Some(&c))).unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let out = common::vportd(&["apply", cfg_s]);
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = dir.path().join("daemon.log");
    let port = 19_000 + (std::process::id() % 1000) as u16;
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_vportd"))
            .args(["daemon", "--config", cfg_s])
            .args(["--metrics", &format!("127.0.0.1:{port}")])
            .args(["--socket", "off", "--no-uevents", "--period-ms", "500"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the vportd binary runs"),
    );
    wait_for("the three veths served", &log, || {
        Snapshot::load(&state_dir).ok().flatten().is_some_and(|s| {
            ["c1", "c2", "c3"]
                .iter()
                .all(|v| s.vport(v).is_some_and(|p| p.edge == "veth"))
        })
    });

    // The containers' ends: inside their namespaces, named and with their vPorts' MACs.
    assert!(a.sh("ip -br link show eth0").contains("02:76:71:00:00:01"));
    assert!(b.sh("ip -br link show net1").contains("02:76:71:00:00:02"));
    // Private: container to container.
    a.sh("ip addr add 10.7.0.1/24 dev eth0");
    b.sh("ip addr add 10.7.0.2/24 dev net1");
    a.sh("busybox ping -c 3 -W 2 10.7.0.2");
    // Internal: the host's own netdev to a container.
    sh("ip addr add 10.8.0.1/24 dev vsw-office && ip link set vsw-office up");
    c.sh("ip addr add 10.8.0.3/24 dev eth0");
    sh("busybox ping -c 3 -W 2 10.8.0.3");
    // The private switch is not the internal one: a container on lab, with an address in
    // office's subnet, is out of the host's reach.
    b.sh("ip addr add 10.8.0.9/24 dev net1");
    let reached = Command::new("busybox")
        .args(["ping", "-c", "1", "-W", "1", "10.8.0.9"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(
        !reached,
        "the host reached a container of the private switch"
    );

    // Switches with their kinds and members: the snapshot, the metrics, status.
    let snap = Snapshot::load(&state_dir).unwrap().unwrap();
    let lab = snap.switch("lab").expect("lab in switch.json");
    assert_eq!(
        (lab.kind.as_str(), lab.members.clone()),
        ("private", vec!["c1".into(), "c2".into()])
    );
    let office = snap.switch("office").expect("office in switch.json");
    assert_eq!(office.kind, "internal");
    assert_eq!(office.host_netdev.as_deref(), Some("vsw-office"));
    assert_eq!(office.members, ["host", "c3"]);
    let text = metrics(port);
    for line in [
        "vportd_switch_info{switch=\"lab\",kind=\"private\",uplink=\"\",host_netdev=\"\"} 1",
        "vportd_switch_info{switch=\"office\",kind=\"internal\",uplink=\"\",host_netdev=\"vsw-office\"} 1",
        "vportd_switch_members{switch=\"lab\"} 2",
        "vportd_switch_members{switch=\"office\"} 2",
    ] {
        assert!(text.contains(line), "no {line} in:\n{text}");
    }
    assert!(
        text.contains("vportd_switch_port_info{switch=\"lab\",port=\"c1\",vport=\"c1\""),
        "{text}"
    );
    let pkts = |sw: &str, p: &str| {
        let samples = vportd::daemon::metrics::parse_samples(&text);
        vportd::daemon::metrics::sample_value(
            &samples,
            "vportd_switch_packets_total",
            &[("switch", sw), ("port", p), ("direction", "rx")],
        )
        .unwrap_or(0.0)
    };
    assert!(
        pkts("lab", "c1") > 0.0 && pkts("office", "host") > 0.0,
        "{text}"
    );
    let out = common::vportd(&["status", "--state-dir", state_dir.to_str().unwrap()]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("lab ") && l.contains("private") && l.contains("c1, c2")),
        "{status}"
    );
    assert!(
        status.lines().any(|l| l.starts_with("office ")
            && l.contains("internal")
            && l.contains("host vsw-office")
            && l.contains("host, c3")),
        "{status}"
    );
    // The JSON lists the same switches, each under its vPorts.
    let out = common::vportd(&[
        "status",
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let on = |vport: &str| {
        json.as_array()
            .expect("status --json is an array of vPorts")
            .iter()
            .find(|v| v["vport"] == vport)
            .unwrap_or_else(|| panic!("no {vport} in {json}"))["software_switch"]
            .clone()
    };
    for vport in ["c1", "c2"] {
        let sw = on(vport);
        assert_eq!(sw["name"], "lab", "{vport}: {sw}");
        assert_eq!(sw["kind"], "private", "{vport}: {sw}");
        assert_eq!(sw["members"], serde_json::json!(["c1", "c2"]), "{sw}");
        assert!(
            sw.get("uplink").is_none() && sw.get("host_netdev").is_none(),
            "{sw}"
        );
    }
    let sw = on("c3");
    assert_eq!(sw["name"], "office", "{sw}");
    assert_eq!(sw["kind"], "internal", "{sw}");
    assert_eq!(sw["host_netdev"], "vsw-office", "{sw}");
    assert_eq!(sw["members"], serde_json::json!(["host", "c3"]), "{sw}");

    // c3 leaves the config: the daemon reads it again and deletes its veth.
    std::fs::write(&cfg, config(&state_dir, &a, &b, None)).unwrap();
    wait_for("c3's veth deleted", &log, || {
        nix::net::if_::if_nametoindex("vp-c3").is_err()
    });
    assert!(!c.sh("ip -br link").contains("eth0"));
    // It was office's last vPort: the internal switch goes, and the host's veth with it.
    wait_for("the internal switch's host veth deleted", &log, || {
        nix::net::if_::if_nametoindex("vsw-office").is_err()
    });
    // The private switch carries on.
    a.sh("busybox ping -c 1 -W 2 10.7.0.2");
}
