//! Podman as a real CNI client on this machine (root): a busybox container from a local
//! root file system on a CNI network, in a private network namespace. The baseline with
//! Debian's own `bridge` and `host-local` plugins proves the harness that the vportd
//! plugin's tests use; every frame stays on a private bridge with no uplink.

mod cni_harness;
mod common;

use std::path::Path;

use cni_harness::{DEBIAN_CNI_DIR, Podman, require_podman, shown};
use serde_json::json;

#[test]
fn podman_runs_a_busybox_container_on_debians_bridge_plugin() {
    let test = "podman_runs_a_busybox_container_on_debians_bridge_plugin";
    if !common::require_root(test) || !require_podman(test) {
        return;
    }
    let podman = Podman::new(&[Path::new(DEBIAN_CNI_DIR)]);
    let leases = podman.path("ipam");
    podman.add_network(
        "baseline",
        &json!({
            "cniVersion": "1.0.0",
            "name": "baseline",
            "plugins": [{
                "type": "bridge",
                "bridge": "vpcnibr0",
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.231.7.0/24", "gateway": "10.231.7.1"}]],
                    "dataDir": leases,
                }
            }]
        }),
    );
    let (out, took) = podman.run(
        "baseline",
        &[],
        "ip -o -4 addr show dev eth0; ping -c 1 -W 5 10.231.7.1",
    );
    eprintln!("{test}: one podman run took {took:?}");
    assert!(out.status.success(), "{}", shown(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("inet 10.231.7."), "{stdout}");
    assert!(stdout.contains("1 packets received"), "{stdout}");
    // The bridge is in the private namespace, with the gateway's address, and no NIC of
    // the machine in it (only the bridge and loopback are left after the container).
    let links = podman.ip(&["-o", "link", "show"]);
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    assert_eq!(names, ["lo", "vpcnibr0"], "{links}");
    assert!(
        podman
            .ip(&["-o", "-4", "addr", "show", "dev", "vpcnibr0"])
            .contains("10.231.7.1/24")
    );
    let host_links = cni_harness::run_ok("ip", &["-o", "link", "show"]);
    assert!(
        !host_links.contains("vpcnibr0"),
        "the bridge leaked into the host namespace"
    );
    // DEL gave the address back: host-local keeps no lease file for the container.
    let held: Vec<String> = std::fs::read_dir(leases.join("baseline"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(held.is_empty(), "leases left after the container: {held:?}");
}

/// The vportd binary, linked into a plugin folder as `vportd`, is run by podman as the
/// plugin of a `"type": "vportd"` network: with no daemon on the socket, podman's ADD fails
/// with vportd's own error and the container does not start (tests/cni_switch.rs runs
/// containers with the daemon).
#[test]
fn podman_runs_vportd_as_the_plugin_of_a_vportd_network() {
    let test = "podman_runs_vportd_as_the_plugin_of_a_vportd_network";
    if !common::require_root(test) || !require_podman(test) {
        return;
    }
    let plugins = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vportd"), plugins.path().join("vportd"))
        .unwrap();
    let podman = Podman::new(&[plugins.path(), Path::new(DEBIAN_CNI_DIR)]);
    podman.add_network(
        "vp",
        &json!({
            "cniVersion": "1.0.0",
            "name": "vp",
            "plugins": [{
                "type": "vportd",
                "switch": "sw0",
                "capabilities": {"mac": true},
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.233.0.0/24"}]],
                         "dataDir": podman.path("ipam")}
            }]
        }),
    );
    let (out, _) = podman.run_with_env(
        "vp",
        &["--mac-address", "02:aa:bb:cc:dd:01"],
        "true",
        &[("VPORTD_SOCKET", "/nonexistent/vportd.sock")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", shown(&out));
    assert!(
        stderr.contains(
            "plugin type=\"vportd\" failed (add): cni plugin vportd failed: no vportd daemon answers on /nonexistent/vportd.sock"
        ),
        "{}",
        shown(&out)
    );
}
