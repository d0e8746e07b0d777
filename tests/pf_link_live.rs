//! The live host's link requests of `apply` on a real kernel, as root, in a private network
//! namespace (never this machine's own NIC): a link's IFF_UP read, set and read back over the
//! run's one blocking rtnetlink socket, and a VF request to a link without VFs refused with
//! the kernel's errno, naming the link, after which the same socket still answers.

mod common;

use vportd::host::fs::KernelFs;
use vportd::host::sriov::LiveSriov;
use vportd::model::mac::Mac;
use vportd::model::vf::VfConfig;
use vportd::provision::ops::{HostError, SriovOps};

/// `ip -j link show NAME` (run from this thread, so in its namespace; /sys shows the root's).
fn ip_link(name: &str) -> serde_json::Value {
    let out = common::run_ok("ip", &["-j", "link", "show", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j prints JSON");
    v[0].clone()
}

fn ifindex(name: &str) -> u32 {
    ip_link(name)["ifindex"].as_u64().expect("an ifindex") as u32
}

fn flags_up(name: &str) -> bool {
    ip_link(name)["flags"]
        .as_array()
        .expect("ip shows flags")
        .iter()
        .any(|f| f == "UP")
}

#[test]
fn a_link_is_set_up_and_down_and_a_vf_request_is_refused_with_its_errno() {
    if !common::require_root("a_link_is_set_up_and_down_and_a_vf_request_is_refused_with_its_errno")
    {
        return;
    }
    common::private_netns();
    common::run_ok(
        "ip",
        &[
            "link", "add", "pfl0", "type", "veth", "peer", "name", "pfl1",
        ],
    );
    let i = ifindex("pfl0");
    let mut ops = LiveSriov::new(KernelFs::system());
    assert!(!ops.pf_admin_up(i).unwrap(), "a new veth is down");
    ops.set_pf_admin_up(i, true).unwrap();
    assert!(ops.pf_admin_up(i).unwrap());
    assert!(flags_up("pfl0"), "ip agrees: IFF_UP");
    ops.set_pf_admin_up(i, false).unwrap();
    assert!(!ops.pf_admin_up(i).unwrap());
    assert!(!flags_up("pfl0"));

    let cfg = VfConfig {
        vf: 0,
        mac: Mac::parse_lenient("02:00:00:00:00:01").unwrap(),
        vlan: 0,
        qos: 0,
        vlan_proto: None,
        min_tx_rate: None,
        max_tx_rate: Some(100),
        spoofchk: None,
        trust: None,
        link_state: None,
    };
    match ops.set_vf(i, &cfg) {
        Err(HostError::Netlink { what, errno, .. }) => {
            assert!(what.contains(&format!("link {i}")), "{what}");
            assert!(errno.is_some(), "the kernel's errno is kept");
        }
        other => panic!("a veth has no VFs, yet: {other:?}"),
    }
    assert_eq!(ops.vf_config(i, 0).unwrap(), None, "no VF 0 on a veth");
    assert!(!ops.pf_admin_up(i).unwrap(), "the socket still answers");
    assert_eq!(
        ops.pf_admin_up(999_999).unwrap_err().errno(),
        Some(nix::errno::Errno::ENODEV)
    );
}
