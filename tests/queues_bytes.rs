//! The queue controls no driver on the project's machines carries (RSS contexts, ntuple
//! rules into them, single-queue ntuple rules, l2-fwd-offload, macvlan stations) are proven
//! by their request bytes: what vportd's encoders (src/host/ethtool.rs) produce must equal
//! what the `ethtool` and `ip` binaries send for the same command, captured in this test.
//!
//! - ioctl requests (`ethtool -X`, `-N`): the ethtool binary runs with an LD_PRELOAD shim
//!   (tests/queues/ethtool_shim.c, built here with cc) that plays a NIC with 8 rings, a
//!   128-entry table and a 40-byte key, and records each SET request's bytes.
//! - netlink requests (`ethtool -L`, `ethtool -K`, `ip link add ... type macvlan`): the
//!   binaries run under `strace -e write=all`, in a private network namespace, and the
//!   hex dump of their last request is compared with vportd's (sequence number and port id
//!   masked: they are per-socket counters).
//!
//! Needs root (strace, unshare) and fails without it; needs cc, strace, ethtool and ip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use vportd::host::ethtool::{
    ETH_RXFH_CONTEXT_ALLOC, channels_set_request, feature_set_request, link_delete_request,
    macvlan_request, ntuple_decode, ntuple_delete_request, ntuple_get_request,
    ntuple_insert_request, rxfh_set_request,
};
use vportd::model::queues::{FlowRule, FlowTarget, equal_table, weighted_table};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];

fn shim(dir: &Path) -> PathBuf {
    let so = dir.join("shim.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/queues/ethtool_shim.c"
        ))
        .arg("-ldl")
        .output()
        .expect("cc runs (install gcc: scripts/setup)");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Runs `ethtool ARGS` against the shim and returns the SET requests it recorded.
fn ethtool_ioctls(so: &Path, dir: &Path, args: &str) -> Vec<Vec<u8>> {
    let log = dir.join(format!("{}.log", args.replace(' ', "_")));
    let out = Command::new("ethtool")
        .args(args.split(' '))
        .env("LD_PRELOAD", so)
        .env("SHIM_OUT", &log)
        .output()
        .expect("ethtool runs");
    assert!(
        out.status.success(),
        "ethtool {args} failed against the shim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| unhex(l.split(' ').nth(2).expect("ioctl CMD BYTES")))
        .collect()
}

/// Runs a command under strace in a private network namespace (lo only) and returns the
/// bytes of each netlink request it sent.
fn netlink_requests(cmd: &str) -> Vec<Vec<u8>> {
    let out = Command::new("unshare")
        .args([
            "-n",
            "strace",
            "-f",
            "-e",
            "trace=sendto,sendmsg",
            "-e",
            "write=all",
        ])
        .args(cmd.split(' '))
        .output()
        .expect("unshare and strace run");
    let text = String::from_utf8_lossy(&out.stderr);
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("sendto(") || line.starts_with("sendmsg(") {
            msgs.push(Vec::new());
        } else if let Some(rest) = line.strip_prefix(" | ")
            && let Some(m) = msgs.last_mut()
        {
            // " | 00010  12 01 00 00 ...  ascii |": offset, then up to 16 bytes.
            let hex = &rest[7..rest.len().min(7 + 49)];
            m.extend(
                hex.split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).unwrap()),
            );
        }
    }
    assert!(
        !msgs.is_empty(),
        "strace saw no request from {cmd}:\n{text}"
    );
    msgs
}

/// The netlink message of type `kind` (the last one), with seq and pid zeroed.
fn last_of_type(msgs: &[Vec<u8>], kind: u16) -> Vec<u8> {
    let mut m = msgs
        .iter()
        .rev()
        .find(|m| m.len() >= 16 && u16::from_ne_bytes([m[4], m[5]]) == kind)
        .unwrap_or_else(|| panic!("no netlink message of type {kind} in {msgs:x?}"))
        .clone();
    m[8..16].fill(0);
    m
}

fn assert_same(what: &str, ours: &[u8], theirs: &[u8]) {
    if ours != theirs {
        let first = ours
            .iter()
            .zip(theirs)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(theirs.len()));
        panic!(
            "{what}: vportd's request differs from the binary's at byte {first} (lengths {} and {}):\n  vportd: {:02x?}\n  binary: {:02x?}",
            ours.len(),
            theirs.len(),
            ours,
            theirs
        );
    }
}

#[test]
fn ioctl_requests_equal_ethtool_binary() {
    if !common::require_root("ioctl_requests_equal_ethtool_binary") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let so = shim(dir.path());
    let one = |args: &str| -> Vec<u8> {
        let reqs = ethtool_ioctls(&so, dir.path(), args);
        assert_eq!(reqs.len(), 1, "ethtool {args} sent {reqs:x?}");
        reqs[0].clone()
    };

    // PF table: equal spread and weights (what `rss = "equal"` and `rss_weights` write).
    assert_same(
        "-X equal 4",
        &rxfh_set_request(0, &equal_table(128, 0, 4)),
        &one("-X lo equal 4"),
    );
    assert_same(
        "-X weight 1 2 3",
        &rxfh_set_request(0, &weighted_table(128, 0, &[1, 2, 3]).unwrap()),
        &one("-X lo weight 1 2 3"),
    );
    assert_same(
        "-X weight 5 0 1 7",
        &rxfh_set_request(0, &weighted_table(128, 0, &[5, 0, 1, 7]).unwrap()),
        &one("-X lo weight 5 0 1 7"),
    );
    // RSS contexts: create over queues 4..6, delete.
    assert_same(
        "-X context new start 4 equal 2",
        &rxfh_set_request(ETH_RXFH_CONTEXT_ALLOC, &equal_table(128, 4, 2)),
        &one("-X lo context new start 4 equal 2"),
    );
    assert_same(
        "-X context 3 delete",
        &rxfh_set_request(3, &[]),
        &one("-X lo context 3 delete"),
    );

    // ntuple rules. ethtool leaves a parsing leftover in rxnfc.data (bytes 8..16), which
    // the kernel does not read for SRXCLSRLINS: masked.
    let rule = |vlan, target, location| {
        ntuple_insert_request(&FlowRule {
            dst_mac: MAC,
            vlan,
            location,
            target,
        })
    };
    let masked = |mut b: Vec<u8>| {
        b[8..16].fill(0);
        b
    };
    assert_same(
        "-N ether dst context",
        &rule(None, FlowTarget::Context { id: 1 }, 5),
        &masked(one(
            "-N lo flow-type ether dst 02:00:00:00:01:01 context 1 loc 5",
        )),
    );
    assert_same(
        "-N ether dst vlan context",
        &rule(Some(100), FlowTarget::Context { id: 2 }, 9),
        &masked(one(
            "-N lo flow-type ether dst 02:00:00:00:01:01 vlan 100 m 0xf000 context 2 loc 9",
        )),
    );
    assert_same(
        "-N ether dst action (single queue)",
        &rule(None, FlowTarget::Queue { index: 3 }, 7),
        &masked(one(
            "-N lo flow-type ether dst 02:00:00:00:01:01 action 3 loc 7",
        )),
    );
    assert_same(
        "-N ether dst vlan action",
        &rule(Some(4094), FlowTarget::Queue { index: 1 }, 0),
        &masked(one(
            "-N lo flow-type ether dst 02:00:00:00:01:01 vlan 4094 m 0xf000 action 1 loc 0",
        )),
    );
    // For a delete ethtool sets only cmd and fs.location, the two fields the kernel
    // reads, and leaves the rest of its stack buffer as it was: those two are compared.
    let theirs = one("-N lo delete 5");
    let ours = ntuple_delete_request(5);
    assert_same("-N delete (cmd)", &ours[..4], &theirs[..4]);
    assert_same("-N delete (location)", &ours[176..180], &theirs[176..180]);

    // apply's read-back of a rule (`ethtool -n DEV rule L`, ETHTOOL_GRXCLSRULE): the slot
    // is empty in a fresh shim, so ethtool fails after sending; its request is compared
    // (cmd and location, as for the delete).
    let log = dir.path().join("get.log");
    let _ = Command::new("ethtool")
        .args(["-n", "lo", "rule", "5"])
        .env("LD_PRELOAD", &so)
        .env("SHIM_OUT", &log)
        .output()
        .expect("ethtool runs");
    let sent: Vec<Vec<u8>> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| unhex(l.split(' ').nth(2).expect("ioctl CMD BYTES")))
        .collect();
    assert_eq!(sent.len(), 1, "ethtool -n rule 5 sent {sent:x?}");
    let ours = ntuple_get_request(5);
    assert_same("-n rule (cmd)", &ours[..4], &sent[0][..4]);
    assert_same("-n rule (location)", &ours[176..180], &sent[0][176..180]);
    // And what vportd decodes from a rule is what it encoded (the read-back's equality).
    for (vlan, target) in [
        (None, FlowTarget::Context { id: 3 }),
        (Some(100), FlowTarget::Context { id: 1 }),
        (Some(4094), FlowTarget::Queue { index: 7 }),
        (None, FlowTarget::Queue { index: 0 }),
    ] {
        let r = FlowRule {
            dst_mac: MAC,
            vlan,
            location: 9,
            target,
        };
        assert_eq!(ntuple_decode(&ntuple_insert_request(&r)), Some(r));
    }
}

#[test]
fn netlink_requests_equal_ethtool_and_ip_binaries() {
    if !common::require_root("netlink_requests_equal_ethtool_and_ip_binaries") {
        return;
    }
    // ethtool -L (channels; the igb guest test proves it live) and -K l2-fwd-offload.
    let msgs = netlink_requests("ethtool -L lo combined 2");
    let theirs = msgs.last().unwrap().clone();
    let family = u16::from_ne_bytes([theirs[4], theirs[5]]);
    assert_same(
        "ethtool -L combined 2",
        &channels_set_request(family, 0, "lo", 2),
        &last_of_type(&msgs, family),
    );
    // The feature name's attribute (19 bytes at 52) is padded to 20; ethtool leaves the
    // padding byte as its buffer had it, vportd zeroes it, and the kernel reads neither.
    let pad = |mut m: Vec<u8>| {
        m[71] = 0;
        m
    };
    for on in [true, false] {
        let word = if on { "on" } else { "off" };
        let msgs = netlink_requests(&format!("ethtool -K lo l2-fwd-offload {word}"));
        assert_same(
            &format!("ethtool -K l2-fwd-offload {word}"),
            &feature_set_request(family, 0, "lo", "l2-fwd-offload", on),
            &pad(last_of_type(&msgs, family)),
        );
    }
    // ip link add ... type macvlan (RTM_NEWLINK = 16); lo is ifindex 1 in a new netns.
    let msgs = netlink_requests(
        "ip link add link lo name vp0 address 02:00:00:00:01:01 type macvlan mode bridge",
    );
    assert_same(
        "ip link add type macvlan",
        &macvlan_request(0, 1, "vp0", MAC),
        &last_of_type(&msgs, 16),
    );
    // ip link del (RTM_DELLINK = 17), how apply removes a vPort's macvlan: ip resolves the
    // name to the ifindex and sends that alone, as vportd does. A veth stands in for the
    // macvlan (the request does not name the kind).
    let out = Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link add vp0 type veth peer name vp1 && \
             ip -o link show vp0 >&2 && strace -f -e trace=sendto,sendmsg -e write=all ip link del vp0",
        ])
        .output()
        .expect("unshare, ip and strace run");
    let text = String::from_utf8_lossy(&out.stderr);
    let ifindex: u32 = text
        .lines()
        .find_map(|l| l.split_once(": vp0").map(|(n, _)| n.trim().parse().ok()))
        .flatten()
        .unwrap_or_else(|| panic!("no vp0 in:\n{text}"));
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("sendto(") || line.starts_with("sendmsg(") {
            msgs.push(Vec::new());
        } else if let Some(rest) = line.strip_prefix(" | ")
            && let Some(m) = msgs.last_mut()
        {
            let hex = &rest[7..rest.len().min(7 + 49)];
            m.extend(
                hex.split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).unwrap()),
            );
        }
    }
    assert_same(
        "ip link del",
        &link_delete_request(0, ifindex),
        &last_of_type(&msgs, 17),
    );
}
