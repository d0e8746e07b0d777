//! CNI networks on a vportd `[[switch]]` (the software path), with the real daemon and
//! podman as the client, as root, everything inside one private network namespace (the
//! daemon's, podman's and the switch's host member's): no frame meets this machine's NIC.
//! - two podman containers on an internal switch ping each other and the host's netdev;
//!   one MAC given by podman (`--mac-address`, CNI_ARGS), one derived by vportd;
//! - the plugin called as the spec says (env and stdin): ADD's result lists the host veth
//!   and the sandbox's, CHECK names a difference, DEL twice and for an unknown container
//!   succeeds, GC frees what `cni.dev/valid-attachments` leaves out;
//! - a daemon killed (-9) during ADDs, restarted, then DEL and GC: nothing left.

mod cni_harness;
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cni_harness::{DEBIAN_CNI_DIR, Podman, require_podman, run_ok, shown};
use serde_json::{Value, json};

/// The daemon, in the namespace `netns`, killed on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(netns: &str, cfg: &Path, socket: &Path, log: &Path) -> Daemon {
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .arg(env!("CARGO_BIN_EXE_vportd"))
            .args(["daemon", "--config", cfg.to_str().unwrap()])
            .args(["--socket", socket.to_str().unwrap()])
            .args(["--metrics", "off", "--no-uevents", "--period-ms", "500"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("nsenter runs the daemon");
        let d = Daemon {
            child,
            log: log.to_path_buf(),
        };
        d.wait_for("the control socket", || socket.exists());
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, what: &str, ok: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "{what} never happened; the daemon's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A host config with an internal switch `ctrs` (the host's netdev `vsw-cni`) and a
/// private switch `quiet`.
fn host_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("host.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\n[[switch]]\nname = \"ctrs\"\nhost_netdev = \"vsw-cni\"\n[[switch]]\nname = \"quiet\"\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    let out = common::vportd(&["apply", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", shown(&out));
    cfg
}

/// The link names in `netns`.
fn links(netns: &str) -> Vec<String> {
    run_ok("ip", &["-n", netns, "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

fn book(dir: &Path) -> Value {
    std::fs::read_to_string(dir.join("state/attachments.json"))
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(json!({"attachments": []}))
}

fn attachments(dir: &Path) -> usize {
    book(dir)["attachments"].as_array().map_or(0, Vec::len)
}

fn wait_file(path: &Path, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(t) = std::fs::read_to_string(path)
            && !t.is_empty()
        {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_podman_containers_on_an_internal_vportd_switch_ping_each_other_and_the_host() {
    let test = "two_podman_containers_on_an_internal_vportd_switch_ping_each_other_and_the_host";
    if !common::require_root(test) || !require_podman(test) {
        return;
    }
    let plugins = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vportd"), plugins.path().join("vportd"))
        .unwrap();
    let podman = Podman::new(&[plugins.path(), Path::new(DEBIAN_CNI_DIR)]);
    let dir = podman.path("vportd");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = host_config(&dir);
    let socket = dir.join("vportd.sock");
    let daemon = Daemon::start(&podman.netns, &cfg, &socket, &dir.join("daemon.log"));
    let leases = podman.path("ipam");
    podman.add_network(
        "vpsw",
        &json!({
            "cniVersion": "1.0.0",
            "name": "vpsw",
            "plugins": [{
                "type": "vportd",
                "switch": "ctrs",
                "socket": socket,
                "mtu": 1400,
                "capabilities": {"mac": true},
                "ipam": {"type": "host-local",
                         "ranges": [[{"subnet": "10.234.0.0/24", "gateway": "10.234.0.1"}]],
                         "dataDir": leases}
            }]
        }),
    );
    let shared = podman.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(podman.rootfs.join("shared")).unwrap();
    let volume = format!("{}:/shared", shared.display());
    let sock = socket.to_str().unwrap().to_string();
    let env = [("VPORTD_SOCKET", sock.as_str())];
    // Container a: its address and link out, then waits for the host's address, pings
    // the host, and stays until b is done.
    let a_script = "ip -o -4 addr show dev eth0 > /shared/a.tmp; ip -o link show dev eth0 >> /shared/a.tmp; mv /shared/a.tmp /shared/a; \
         i=0; while [ ! -e /shared/go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; \
         ping -c 2 -W 3 10.234.0.1 > /shared/a-host 2>&1; \
         i=0; while [ ! -e /shared/done ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done";
    let a = {
        let (podman_ref, a_volume, env) = (&podman, volume.clone(), env);
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                podman_ref.run_with_env(
                    "vpsw",
                    &["-v", &a_volume, "--mac-address", "02:76:5c:00:00:0a"],
                    a_script,
                    &env,
                )
            });
            let a_seen = wait_file(&shared.join("a"), Duration::from_secs(120));
            let a_ip = a_seen
                .split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)
                .and_then(|c| c.split('/').next())
                .unwrap_or_else(|| panic!("no address in {a_seen}; log:\n{}", daemon.log()))
                .to_string();
            assert!(a_seen.contains("02:76:5c:00:00:0a"), "{a_seen}");
            assert!(a_seen.contains("mtu 1400"), "{a_seen}");
            // The host's member of the internal switch exists now: its address.
            run_ok(
                "ip",
                &[
                    "-n",
                    &podman.netns,
                    "addr",
                    "add",
                    "10.234.0.1/24",
                    "dev",
                    "vsw-cni",
                ],
            );
            run_ok("ip", &["-n", &podman.netns, "link", "set", "vsw-cni", "up"]);
            std::fs::write(shared.join("go"), "").unwrap();
            let (b, _) = podman.run_with_env(
                "vpsw",
                &["-v", &volume],
                &format!(
                    "ip -o link show dev eth0; ping -c 2 -W 3 {a_ip} && ping -c 2 -W 3 10.234.0.1"
                ),
                &env,
            );
            std::fs::write(shared.join("done"), "").unwrap();
            let a_out = h.join().unwrap();
            (b, a_out.0, a_seen)
        })
    };
    let (b, a_out, _) = a;
    assert!(
        b.status.success(),
        "b: {}\ndaemon:\n{}",
        shown(&b),
        daemon.log()
    );
    let b_said = String::from_utf8_lossy(&b.stdout);
    assert_eq!(b_said.matches("2 packets received").count(), 2, "{b_said}");
    // b's MAC is vportd's derived one: locally administered unicast.
    assert!(b_said.contains("link/ether "), "{b_said}");
    assert!(a_out.status.success(), "a: {}", shown(&a_out));
    let a_host = std::fs::read_to_string(shared.join("a-host")).unwrap();
    assert!(a_host.contains("2 packets received"), "{a_host}");
    // Both containers gone: no attachment, no veth, no lease; the namespace holds only
    // the switch's host member (no NIC of this machine).
    daemon.wait_for("the attachments released", || attachments(&dir) == 0);
    daemon.wait_for("the veths gone", || {
        !links(&podman.netns).iter().any(|l| l.starts_with("vc-"))
    });
    // The internal switch had no port left, so it went with the host's veth: the
    // namespace is empty again (and never held a NIC of this machine).
    daemon.wait_for("the switch gone with its last port", || {
        links(&podman.netns) == ["lo"]
    });
    let held: Vec<String> = std::fs::read_dir(leases.join("vpsw"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(held.is_empty(), "leases left: {held:?}");
}

/// Runs the plugin as a runtime does: `vars` and `conf` on stdin.
fn plugin(socket: &Path, vars: &[(&str, &str)], conf: &Value) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .env_clear()
        .env("VPORTD_SOCKET", socket)
        .env("CNI_PATH", DEBIAN_CNI_DIR)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn verb<'a>(cmd: &'a str, id: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", id),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", netns),
    ]
}

/// A namespace made with `ip netns add`, deleted on drop.
struct Ns(String);

impl Ns {
    fn new(name: &str) -> Ns {
        let name = format!("{name}-{}", std::process::id());
        run_ok("ip", &["netns", "add", &name]);
        Ns(name)
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn the_plugin_serves_add_check_del_and_gc_on_a_switch_and_a_killed_daemon_leaks_nothing() {
    let test =
        "the_plugin_serves_add_check_del_and_gc_on_a_switch_and_a_killed_daemon_leaks_nothing";
    if !common::require_root(test) || !require_podman(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let host = Ns::new("vpcnisw");
    let cfg = host_config(dir);
    let socket = dir.join("vportd.sock");
    let mut daemon = Daemon::start(&host.0, &cfg, &socket, &dir.join("daemon.log"));
    let conf = json!({
        "cniVersion": "1.0.0", "name": "q", "type": "vportd", "switch": "quiet", "vlan": 12,
        "socket": socket,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.235.0.0/24"}]],
                 "dataDir": dir.join("ipam")}
    });
    let (c1, c2) = (Ns::new("vpc1"), Ns::new("vpc2"));
    let (p1, p2) = (c1.path(), c2.path());

    // ADD: the host veth and the sandbox's in the result, the address on the sandbox's.
    let out = plugin(&socket, &verb("ADD", "c1", &p1), &conf);
    assert!(out.status.success(), "{}\n{}", shown(&out), daemon.log());
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ifaces = result["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 2, "{result}");
    let host_end = ifaces[0]["name"].as_str().unwrap().to_string();
    assert!(host_end.starts_with("vc-c1-"), "{result}");
    assert!(ifaces[0].get("sandbox").is_none(), "{result}");
    assert_eq!(ifaces[1]["name"], "eth0");
    assert_eq!(ifaces[1]["sandbox"], p1.as_str());
    assert_eq!(result["ips"][0]["interface"], 1, "{result}");
    assert!(links(&host.0).contains(&host_end));
    let inside = run_ok("ip", &["-n", &c1.0, "-o", "addr", "show", "dev", "eth0"]);
    assert!(inside.contains("10.235.0."), "{inside}");
    // The same ADD again is the same attachment (without IPAM: host-local refuses a
    // second address for one container).
    let mut bare = conf.clone();
    bare.as_object_mut().unwrap().remove("ipam");
    let again = plugin(&socket, &verb("ADD", "c1", &p1), &bare);
    assert!(again.status.success(), "{}", shown(&again));
    assert_eq!(attachments(dir), 1);

    // CHECK: fine, then the difference named once the container's link is renamed.
    let mut checked = conf.clone();
    checked["prevResult"] = result.clone();
    let ok = plugin(&socket, &verb("CHECK", "c1", &p1), &checked);
    assert!(ok.status.success(), "{}", shown(&ok));
    run_ok("ip", &["-n", &c1.0, "link", "set", "eth0", "down"]);
    run_ok("ip", &["-n", &c1.0, "link", "set", "eth0", "name", "eth9"]);
    let bad = plugin(&socket, &verb("CHECK", "c1", &p1), &checked);
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stdout);
    assert!(said.contains("named eth9, not eth0"), "{said}");

    // DEL twice, and for a container never attached: all succeed; the veth is gone.
    for _ in 0..2 {
        let del = plugin(&socket, &verb("DEL", "c1", &p1), &conf);
        assert!(del.status.success(), "{}", shown(&del));
    }
    let unknown = plugin(&socket, &verb("DEL", "nobody", &p2), &conf);
    assert!(unknown.status.success(), "{}", shown(&unknown));
    assert!(!links(&host.0).contains(&host_end));
    assert_eq!(attachments(dir), 0);

    // A container that stays through the daemon's restarts keeps its veth (adopted, not
    // made again: same ifindex on both ends) and passes CHECK after each.
    let c3 = Ns::new("vpc3");
    let p3 = c3.path();
    let out = plugin(&socket, &verb("ADD", "keeper", &p3), &conf);
    assert!(out.status.success(), "{}", shown(&out));
    let keeper: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keeper_end = keeper["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let ifindexes = || {
        let here = run_ok(
            "ip",
            &["-n", &host.0, "-o", "link", "show", "dev", &keeper_end],
        );
        let inside = run_ok("ip", &["-n", &c3.0, "-o", "link", "show", "dev", "eth0"]);
        (
            here.split(':').next().unwrap().to_string(),
            inside.split(':').next().unwrap().to_string(),
        )
    };
    let before = ifindexes();
    let mut keeper_check = conf.clone();
    keeper_check["prevResult"] = keeper.clone();

    // A daemon killed -9 while ADDs run (at different moments), restarted: DEL and GC
    // leave no entry, no veth and no lease.
    for (round, delay_ms) in [0u64, 30, 120].into_iter().enumerate() {
        let id = format!("k{round}");
        let adds: Vec<_> = [(&p1, &id), (&p2, &format!("{id}b"))]
            .into_iter()
            .map(|(p, id)| {
                let (socket, conf, p, id) = (socket.clone(), conf.clone(), p.clone(), id.clone());
                std::thread::spawn(move || plugin(&socket, &verb("ADD", &id, &p), &conf))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(delay_ms));
        daemon.kill9();
        for a in adds {
            let _ = a.join();
        }
        let _ = std::fs::remove_file(&socket);
        daemon = Daemon::start(&host.0, &cfg, &socket, &dir.join("daemon.log"));
        let del = plugin(&socket, &verb("DEL", &id, &p1), &conf);
        assert!(del.status.success(), "{}", shown(&del));
        let mut gc = conf.clone();
        gc["cniVersion"] = json!("1.1.0");
        gc["cni.dev/valid-attachments"] = json!([{"containerID": "keeper", "ifname": "eth0"}]);
        let out = plugin(&socket, &[("CNI_COMMAND", "GC")], &gc);
        assert!(out.status.success(), "{}", shown(&out));
        assert_eq!(attachments(dir), 1, "round {round}: {}", book(dir));
        daemon.wait_for("no veth left but the keeper's", || {
            links(&host.0)
                .iter()
                .filter(|l| l.starts_with("vc-"))
                .eq([&keeper_end])
        });
        assert_eq!(
            ifindexes(),
            before,
            "round {round}: the keeper's veth was made again"
        );
        let ok = plugin(&socket, &verb("CHECK", "keeper", &p3), &keeper_check);
        assert!(ok.status.success(), "round {round}: {}", shown(&ok));
    }
    let del = plugin(&socket, &verb("DEL", "keeper", &p3), &conf);
    assert!(del.status.success(), "{}", shown(&del));
    assert_eq!(attachments(dir), 0, "{}", book(dir));

    // The plugin killed -9 during its ADD (the daemon finishes what reached it), then the
    // runtime's DEL: nothing left.
    for delay_ms in [0u64, 20, 80] {
        let id = format!("pk{delay_ms}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vportd"))
            .env_clear()
            .env("CNI_PATH", DEBIAN_CNI_DIR)
            .envs(verb("ADD", &id, &p1))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes());
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let del = plugin(&socket, &verb("DEL", &id, &p1), &conf);
        assert!(del.status.success(), "{}", shown(&del));
        assert_eq!(attachments(dir), 0, "{}", book(dir));
        daemon.wait_for("no veth left after a killed plugin", || {
            !links(&host.0).iter().any(|l| l.starts_with("vc-"))
        });
    }
    // GC freed the addresses host-local gave too? GC is vportd's; the leases of the
    // killed ADDs are the IPAM plugin's, freed by the runtime's DEL: those that got an
    // address are released here the way a runtime would.
    for round in 0..3 {
        for (id, p) in [(format!("k{round}"), &p1), (format!("k{round}b"), &p2)] {
            let del = plugin(&socket, &verb("DEL", &id, p), &conf);
            assert!(del.status.success(), "{}", shown(&del));
        }
    }
    let held: Vec<String> = std::fs::read_dir(dir.join("ipam/q"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("10."))
                .collect()
        })
        .unwrap_or_default();
    assert!(held.is_empty(), "leases left: {held:?}");
}
