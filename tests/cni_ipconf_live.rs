//! host::ipconf on the real kernel (root, a private namespace with a veth): IPAM's
//! addresses and routes land on the link, and a second call (a retried ADD) succeeds.

use std::process::Command;

use vportd::host::ipconf::{self, IpRoute};
use vportd::host::netns::Netns;

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn addresses_and_routes_land_inside_and_a_retry_succeeds() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = format!("vpt-ipconf-{}", std::process::id());
    sh(&format!(
        "ip netns add {ns} && ip -n {ns} link add d0 type veth peer name d1 && ip -n {ns} link set d0 up"
    ));
    let ifindex: u32 = sh(&format!("ip netns exec {ns} cat /sys/class/net/d0/ifindex"))
        .trim()
        .parse()
        .unwrap();
    let handle = Netns::open(format!("/var/run/netns/{ns}")).unwrap();
    let addrs = [("10.77.0.5".parse().unwrap(), 24)];
    let routes = [IpRoute {
        dst: "0.0.0.0".parse().unwrap(),
        prefix: 0,
        gw: Some("10.77.0.1".parse().unwrap()),
    }];
    let first = ipconf::configure(&handle, ifindex, &addrs, &routes);
    let again = ipconf::configure(&handle, ifindex, &addrs, &routes);
    let shown = sh(&format!("ip -n {ns} -4 addr show dev d0; ip -n {ns} route"));
    sh(&format!("ip netns del {ns}"));
    first.unwrap();
    again.unwrap();
    assert!(shown.contains("inet 10.77.0.5/24"), "{shown}");
    assert!(shown.contains("default via 10.77.0.1 dev d0"), "{shown}");
}
