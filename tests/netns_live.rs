//! host::netns on this machine's kernel, as root. Each test runs in a private network
//! namespace (the daemon's, in the test) and makes its container namespaces with
//! `ip netns add` under names of its own; a veth end stands in for a VF's netdev. The
//! oracle is `ip -j -n NS link`.

mod common;

use std::time::{Duration, Instant};

use common::sh;
use vportd::host::netns::{self, Deleted, HostIdentity, Netns, Placement};
use vportd::model::mac::Mac;

/// A named namespace (`ip netns add`), deleted when dropped.
struct NamedNs {
    name: String,
}

impl NamedNs {
    fn new(test: &str) -> NamedNs {
        let name = format!("vpt{}-{test}", std::process::id());
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .output();
        sh(&format!("ip netns add {name}"));
        NamedNs { name }
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    fn links(&self) -> Vec<serde_json::Value> {
        links(&format!("ip -j -n {} link", self.name))
    }
}

impl Drop for NamedNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn links(cmd: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&sh(cmd)).expect("ip -j prints JSON")
}

fn ours() -> Vec<serde_json::Value> {
    links("ip -j link")
}

fn by_name<'a>(links: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    links.iter().find(|l| l["ifname"] == name)
}

fn is_up(link: &serde_json::Value) -> bool {
    link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"))
}

fn ifindex(name: &str) -> u32 {
    nix::net::if_::if_nametoindex(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The test thread in a private namespace with a veth pair `va` - `vb`, `vb` carrying `mac`.
fn setup(test: &str, mac: &str) -> bool {
    if !common::require_root(test) {
        return false;
    }
    common::private_netns();
    sh(&format!(
        "ip link add va type veth peer name vb && ip link set vb address {mac} && ip link set va up"
    ));
    true
}

const B_MAC: &str = "02:00:00:aa:00:01";
const C_MAC: &str = "02:00:00:cc:00:09";

#[test]
fn a_link_moves_in_set_up_and_back_under_its_old_name() {
    if !setup("a_link_moves_in_set_up_and_back_under_its_old_name", B_MAC) {
        return;
    }
    let named = NamedNs::new("move");
    let ns = Netns::open(named.path()).unwrap();
    let b = ifindex("vb");
    let want = Placement {
        ifname: "eth0".into(),
        mac: Some(C_MAC.parse().unwrap()),
        mtu: Some(1400),
    };
    let moved = netns::move_into(b, &ns, &want).unwrap();
    assert_eq!(moved.mac.to_string(), C_MAC);
    let host = moved.host.clone().expect("it was ours");
    assert_eq!(host.name, "vb");
    assert_eq!(host.mac.to_string(), B_MAC);
    assert!(by_name(&ours(), "vb").is_none(), "vb is still here");
    let inside = named.links();
    let eth0 = by_name(&inside, "eth0").unwrap_or_else(|| panic!("no eth0 in {inside:?}"));
    assert_eq!(eth0["ifindex"], moved.ifindex);
    assert_eq!(eth0["address"], C_MAC);
    assert_eq!(eth0["mtu"], 1400);
    assert!(is_up(eth0), "{eth0}");
    // The same call again (an ADD retried after a crash) finds it inside.
    let again = netns::move_into(b, &ns, &want).unwrap();
    assert_eq!(
        (again.ifindex, again.mac, again.host),
        (moved.ifindex, moved.mac, None)
    );

    let back = netns::move_back(&ns, moved.ifindex, Some(moved.mac), &host).unwrap();
    let here = ours();
    let b_link = by_name(&here, "vb").unwrap_or_else(|| panic!("no vb in {here:?}"));
    assert_eq!(b_link["ifindex"], back);
    assert_eq!(b_link["address"], B_MAC);
    assert!(!is_up(b_link), "{b_link}");
    assert!(by_name(&named.links(), "eth0").is_none());
    // A DEL repeated: already back is success.
    assert_eq!(
        netns::move_back(&ns, moved.ifindex, Some(moved.mac), &host).unwrap(),
        back
    );
}

/// The container's name is often taken in the host (eth0): the link is renamed inside
/// before it moves.
#[test]
fn a_link_comes_back_even_when_its_container_name_is_taken_here() {
    if !setup(
        "a_link_comes_back_even_when_its_container_name_is_taken_here",
        B_MAC,
    ) {
        return;
    }
    sh("ip link add eth0 type bridge");
    let named = NamedNs::new("taken");
    let ns = Netns::open(named.path()).unwrap();
    let want = Placement {
        ifname: "eth0".into(),
        mac: None,
        mtu: None,
    };
    let moved = netns::move_into(ifindex("vb"), &ns, &want).unwrap();
    assert_eq!(moved.mac.to_string(), B_MAC);
    let host = moved.host.unwrap();
    netns::move_back(&ns, moved.ifindex, Some(moved.mac), &host).unwrap();
    let here = ours();
    assert_eq!(by_name(&here, "vb").unwrap()["address"], B_MAC);
    assert!(by_name(&here, "eth0").is_some());
}

/// A namespace that dies with a veth end inside destroys the pair (a physical netdev
/// would go back to the initial namespace instead: the module's doc says so).
#[test]
fn a_dead_namespace_takes_its_veth_along() {
    if !setup("a_dead_namespace_takes_its_veth_along", B_MAC) {
        return;
    }
    let named = NamedNs::new("dies");
    let ns = Netns::open(named.path()).unwrap();
    let want = Placement {
        ifname: "eth0".into(),
        mac: None,
        mtu: None,
    };
    netns::move_into(ifindex("vb"), &ns, &want).unwrap();
    drop(ns);
    drop(named);
    let start = Instant::now();
    while by_name(&ours(), "va").is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "veth va outlived the namespace its peer was in"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // DEL after that: nothing to delete is success.
    assert_eq!(
        netns::delete_veth("va", None).unwrap(),
        Deleted::AlreadyGone
    );
}

#[test]
fn a_veth_is_made_with_its_peer_inside_and_deleted_once() {
    if !common::require_root("a_veth_is_made_with_its_peer_inside_and_deleted_once") {
        return;
    }
    common::private_netns();
    let named = NamedNs::new("veth");
    let ns = Netns::open(named.path()).unwrap();
    let mac: Mac = C_MAC.parse().unwrap();
    let inside = Placement {
        ifname: "eth0".into(),
        mac: Some(mac),
        mtu: Some(9000),
    };
    let v = netns::create_veth(&ns, "vc-abcdef0-1a2b", &inside).unwrap();
    assert_eq!(v.peer_mac, mac);
    let here = ours();
    let host = by_name(&here, "vc-abcdef0-1a2b").expect("the host end");
    assert_eq!(host["ifindex"], v.host_ifindex);
    assert_eq!(host["mtu"], 9000);
    assert!(is_up(host), "{host}");
    let links = named.links();
    let eth0 = by_name(&links, "eth0").unwrap_or_else(|| panic!("no eth0 in {links:?}"));
    assert_eq!(eth0["ifindex"], v.peer_ifindex);
    assert_eq!(eth0["address"], C_MAC);
    assert_eq!(eth0["mtu"], 9000);
    assert!(is_up(eth0), "{eth0}");
    // An ADD retried: the old pair is replaced, not doubled.
    let again = netns::create_veth(&ns, "vc-abcdef0-1a2b", &inside).unwrap();
    assert_eq!(again.peer_mac, mac);
    assert_eq!(
        named
            .links()
            .iter()
            .filter(|l| l["ifname"] == "eth0")
            .count(),
        1
    );
    // A wrong ifindex is not ours: left alone.
    assert_eq!(
        netns::delete_veth("vc-abcdef0-1a2b", Some(again.host_ifindex + 1000)).unwrap(),
        Deleted::AlreadyGone
    );
    assert_eq!(
        netns::delete_veth("vc-abcdef0-1a2b", Some(again.host_ifindex)).unwrap(),
        Deleted::Deleted
    );
    assert!(by_name(&ours(), "vc-abcdef0-1a2b").is_none());
    assert!(
        by_name(&named.links(), "eth0").is_none(),
        "the peer went too"
    );
    assert_eq!(
        netns::delete_veth("vc-abcdef0-1a2b", Some(again.host_ifindex)).unwrap(),
        Deleted::AlreadyGone
    );
    // A link of that name that is no veth is not ours either.
    sh("ip link add vc-abcdef0-1a2b type bridge");
    assert_eq!(
        netns::delete_veth("vc-abcdef0-1a2b", None).unwrap(),
        Deleted::AlreadyGone
    );
    assert!(by_name(&ours(), "vc-abcdef0-1a2b").is_some());
}

#[test]
fn errors_name_the_namespace_the_ifindex_and_the_step() {
    if !setup("errors_name_the_namespace_the_ifindex_and_the_step", B_MAC) {
        return;
    }
    let named = NamedNs::new("errors");
    let ns = Netns::open(named.path()).unwrap();
    let want = Placement {
        ifname: "eth0".into(),
        mac: None,
        mtu: None,
    };
    let err = netns::move_into(999_999, &ns, &want).unwrap_err();
    assert_eq!(
        err.to_string(),
        "move: no link with ifindex 999999 is in our network namespace"
    );
    let with_mac = Placement {
        mac: Some(C_MAC.parse().unwrap()),
        ..want.clone()
    };
    let err = netns::move_into(999_999, &ns, &with_mac).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "set up the moved link: no link with ifindex 999999 or MAC {C_MAC} is in network namespace {}",
            named.path()
        )
    );
    let err = netns::restore(
        999_999,
        &HostIdentity {
            name: "vb".into(),
            mac: B_MAC.parse().unwrap(),
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "restore: no link with ifindex 999999 is in our network namespace"
    );
    // The name is taken inside: the rename step says so.
    sh(&format!("ip -n {} link add eth0 type bridge", named.name));
    let err = netns::move_into(ifindex("vb"), &ns, &want).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("the kernel refused to rename to eth0 of ifindex ")
            && text.contains(&format!("in network namespace {}: ", named.path())),
        "{text}"
    );
    let host = HostIdentity {
        name: "vb".into(),
        mac: B_MAC.parse().unwrap(),
    };
    let err = netns::move_back(&ns, 999_999, Some(C_MAC.parse().unwrap()), &host).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "move the link back: no link with ifindex 999999 or MAC {C_MAC} is in network namespace {}",
            named.path()
        )
    );
    let err = netns::create_veth(&ns, "sixteen-bytes-xx", &want).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("interface name \"sixteen-bytes-xx\""),
        "{err}"
    );
}

/// The target already uses the link's ifindex: the kernel gives it a new one there, and
/// the link is found by its MAC.
#[test]
fn a_link_whose_ifindex_is_taken_inside_is_found_by_its_mac() {
    if !setup(
        "a_link_whose_ifindex_is_taken_inside_is_found_by_its_mac",
        B_MAC,
    ) {
        return;
    }
    let vb = ifindex("vb");
    let named = NamedNs::new("index");
    // lo is 1 inside; veth pairs take the next indexes until vb's is used.
    let mut n = 0;
    while !named.links().iter().any(|l| l["ifindex"] == vb) {
        sh(&format!(
            "ip -n {0} link add x{n} type veth peer name y{n}",
            named.name
        ));
        n += 1;
        assert!(n < 64, "ifindex {vb} never came up inside");
    }
    let ns = Netns::open(named.path()).unwrap();
    let want = Placement {
        ifname: "eth0".into(),
        mac: None,
        mtu: None,
    };
    let moved = netns::move_into(vb, &ns, &want).unwrap();
    assert_ne!(moved.ifindex, vb);
    let links = named.links();
    let eth0 = by_name(&links, "eth0").unwrap();
    assert_eq!(eth0["ifindex"], moved.ifindex);
    assert_eq!(eth0["address"], B_MAC);
    netns::move_back(&ns, moved.ifindex, Some(moved.mac), &moved.host.unwrap()).unwrap();
    assert_eq!(by_name(&ours(), "vb").unwrap()["address"], B_MAC);
}

/// CNI_NETNS may be a process's own namespace file; one whose process is gone says so.
#[test]
fn a_process_namespace_path_works_and_a_gone_one_is_told_apart() {
    if !setup(
        "a_process_namespace_path_works_and_a_gone_one_is_told_apart",
        B_MAC,
    ) {
        return;
    }
    let mut child = std::process::Command::new("unshare")
        .args(["-n", "sleep", "30"])
        .spawn()
        .expect("unshare runs");
    let path = format!("/proc/{}/ns/net", child.id());
    // unshare(1) switches namespace and then execs sleep: wait until it has.
    let ours_ns = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let start = Instant::now();
    while std::fs::read_link(&path).map_or(true, |l| l == ours_ns) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "unshare never switched"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let ns = Netns::open(&path).unwrap();
    let want = Placement {
        ifname: "eth0".into(),
        mac: None,
        mtu: Some(1280),
    };
    let moved = netns::move_into(ifindex("vb"), &ns, &want).unwrap();
    let inside = links(&format!("nsenter --net={path} ip -j link"));
    assert_eq!(by_name(&inside, "eth0").unwrap()["mtu"], 1280);
    netns::move_back(&ns, moved.ifindex, Some(moved.mac), &moved.host.unwrap()).unwrap();
    drop(ns);
    child.kill().unwrap();
    child.wait().unwrap();
    let err = Netns::open(&path).unwrap_err();
    assert!(err.namespace_gone(), "{err}");
    assert!(
        !Netns::open("/proc/self/status")
            .unwrap_err()
            .namespace_gone()
    );
}

/// A VF that never left, or came back by itself, is put back as it was.
#[test]
fn a_link_here_is_restored_to_its_name_and_mac() {
    if !setup("a_link_here_is_restored_to_its_name_and_mac", B_MAC) {
        return;
    }
    sh(&format!("ip link set vb name dev7 address {C_MAC} up"));
    let host = HostIdentity {
        name: "vb".into(),
        mac: B_MAC.parse().unwrap(),
    };
    let i = ifindex("dev7");
    netns::restore(i, &host).unwrap();
    let here = ours();
    let vb = by_name(&here, "vb").unwrap();
    assert_eq!(vb["ifindex"], i);
    assert_eq!(vb["address"], B_MAC);
    assert!(!is_up(vb));
}
