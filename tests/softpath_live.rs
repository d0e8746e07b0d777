//! The daemon's software path on this kernel, as root, in a private network namespace: a
//! config and state whose software vPorts get TAPs, and a veth end standing in for the uplink
//! PF (found by "PCI address" through the resolver, opened by ifindex). Frames sent into a
//! vPort's TAP must leave the uplink tagged with the vPort's VLAN, frames tagged on the uplink
//! must reach only that VLAN's vPort untagged, and the counters (per port, drops by reason)
//! must show it in the view, the published `switch.json` and the metrics text. This kernel
//! has no 8021q: tags are injected and captured with AF_PACKET.
//!
//! A vPort's TAP belongs to its VM: persistent, served by the switch on its netdev side. The
//! tests play the VM by opening the TAP's file side, as QEMU does ([`VmQueue`]): frames the
//! VM sends are written there, frames for the VM are read there.

mod common;

use common::sh;

use std::path::Path;
use std::time::{Duration, Instant};

use vportd::host::afpacket::RawSocket;
use vportd::host::tap::VmQueue;
use vportd::provision::state::{Health, STATE_VERSION, State, VportPath, VportState};
use vportd::softpath::{self, Snapshot, SoftPath, TrunkAt};
use vportd::switch::packet::VlanTag;
use vportd::switch::testkit::{Mark, Spec, read};

const PF: &str = "0000:01:00.0";
const LONG: &str = "tenant-blue-web-frontend";

fn config(state_dir: &Path) -> vportd::provision::config::Config {
    let text = format!(
        r#"
state_dir = "{}"
[[uplink]]
pci = "{PF}"
[[vport]]
name = "vm1"
uplink = "{PF}"
mac = "02:76:70:00:00:01"
vlan = 100
qos = 5
offload = "never"
[[vport]]
name = "{LONG}"
uplink = "{PF}"
mac = "02:76:70:00:00:02"
vlan = 200
offload = "never"
[[vport]]
name = "plain"
uplink = "{PF}"
mac = "02:76:70:00:00:03"
offload = "never"
"#,
        state_dir.display()
    );
    vportd::provision::config::parse(Path::new("host.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn state() -> State {
    state_of(&["vm1", LONG, "plain"])
}

/// In a private network namespace, the fake PF: the switch opens `pf0`; `wire0` is the far
/// end, the physical network.
fn fake_pf() {
    common::private_netns();
    sh("ip link add pf0 type veth peer name wire0 && ip link set pf0 up && ip link set wire0 up");
}

/// Where a test reads frames: the wire's packet socket, or a VM's side of its TAP.
trait Frames {
    fn frames(&self, quiet: Duration) -> Vec<Vec<u8>>;
}

impl Frames for RawSocket {
    fn frames(&self, quiet: Duration) -> Vec<Vec<u8>> {
        self.drain(quiet).unwrap()
    }
}

impl Frames for VmQueue {
    fn frames(&self, quiet: Duration) -> Vec<Vec<u8>> {
        self.drain(quiet).unwrap()
    }
}

/// The VM's side of a vPort's TAP, opened as QEMU opens it.
fn vm(tap: &str) -> VmQueue {
    VmQueue::open(tap).unwrap_or_else(|e| panic!("{e}"))
}

/// Test frames a socket receives until it has been quiet for a while.
fn got(s: &impl Frames) -> Vec<(Mark, Option<VlanTag>)> {
    s.frames(Duration::from_millis(150))
        .iter()
        .filter_map(|f| read(f))
        .collect()
}

/// A frame the vPort's TAP sends as test host `host` leaves the uplink tagged `vid`, alone.
#[track_caller]
fn leaves_tagged(tap: &VmQueue, wire: &RawSocket, host: u16, vid: u16, seq: u32) {
    tap.send(&Spec::new(host, 9, seq).build()).unwrap();
    let tag = Some(VlanTag { vid, pcp: 0 });
    assert_eq!(
        got(wire),
        vec![(
            Mark {
                src: host,
                dst: 9,
                seq
            },
            tag
        )]
    );
}

/// A frame tagged `vid` on the uplink for test host `host` reaches the vPort's TAP untagged,
/// alone.
#[track_caller]
fn arrives_untagged(wire: &RawSocket, tap: &VmQueue, host: u16, vid: u16, seq: u32) {
    wire.send(&Spec::new(9, host, seq).tagged(vid, 0).build())
        .unwrap();
    assert_eq!(
        got(tap),
        vec![(
            Mark {
                src: 9,
                dst: host,
                seq
            },
            None
        )]
    );
}

#[test]
fn software_vports_get_taps_and_reach_the_uplink_tagged() {
    if !common::require_root("software path attachment") {
        return;
    }
    fake_pf();
    let pf_index = nix::net::if_::if_nametoindex("pf0").unwrap();
    // New devices would get IPv6: the software path must turn it off on its TAPs itself.
    sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=0");

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (plans, errors) = softpath::plan(&cfg, &state());
    assert!(errors.is_empty(), "{errors:?}");
    let resolve = |t: &TrunkAt| (t.pf == PF && t.vf.is_none()).then_some(pf_index);
    let (sp, errors) = SoftPath::start(&plans, &resolve, Some(dir.path()));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(sp.switches(), 1);

    // Each vPort has its TAP, named from the vPort and at most 15 bytes.
    let long_tap = softpath::tap_name(LONG);
    assert!(long_tap.len() <= 15 && long_tap != format!("vp-{LONG}"));
    for tap in ["vp-vm1", long_tap.as_str(), "vp-plain"] {
        sh(&format!("ip link show dev {tap} | grep -q UP"));
        // A switch port, not a host interface: no IPv6, no ARP answers of the host's.
        let conf = |f: &str| std::fs::read_to_string(f).unwrap().trim().to_string();
        assert_eq!(
            conf(&format!("/proc/sys/net/ipv4/conf/{tap}/arp_ignore")),
            "8"
        );
        assert_eq!(
            conf(&format!("/proc/sys/net/ipv6/conf/{tap}/disable_ipv6")),
            "1"
        );
    }
    let vm1 = vm("vp-vm1");
    let long = vm(&long_tap);
    let plain = vm("vp-plain");
    let wire = RawSocket::open("wire0").unwrap();

    // VM -> uplink: tagged with the vPort's VLAN (and its qos as priority); untagged for the
    // vPort without a VLAN (VLAN 1, native on the trunk).
    for seq in 0..3 {
        vm1.send(&Spec::new(1, 9, seq).build()).unwrap();
    }
    long.send(&Spec::new(2, 9, 0).build()).unwrap();
    plain.send(&Spec::new(3, 9, 0).build()).unwrap();
    let mut on_wire = got(&wire);
    on_wire.sort_by_key(|(m, _)| (m.src, m.seq));
    let tag = |vid, pcp| Some(VlanTag { vid, pcp });
    let m = |src, seq| Mark { src, dst: 9, seq };
    assert_eq!(
        on_wire,
        vec![
            (m(1, 0), tag(100, 5)),
            (m(1, 1), tag(100, 5)),
            (m(1, 2), tag(100, 5)),
            (m(2, 0), tag(200, 0)),
            (m(3, 0), None),
        ]
    );
    // The VMs' addresses were learned: nothing was flooded between the VLANs' vPorts.
    assert!(got(&vm1).is_empty() && got(&long).is_empty() && got(&plain).is_empty());

    // Uplink -> VM: a frame tagged 100 for vm1 arrives there untagged, nowhere else; one
    // tagged 300 (no vPort has it) is dropped at the trunk.
    wire.send(&Spec::new(9, 1, 0).tagged(100, 0).build())
        .unwrap();
    wire.send(&Spec::new(9, 2, 0).tagged(300, 0).build())
        .unwrap();
    wire.send(&Spec::new(9, 3, 0).build()).unwrap();
    assert_eq!(
        got(&vm1),
        vec![(
            Mark {
                src: 9,
                dst: 1,
                seq: 0
            },
            None
        )]
    );
    assert_eq!(
        got(&plain),
        vec![(
            Mark {
                src: 9,
                dst: 3,
                seq: 0
            },
            None
        )]
    );
    assert!(got(&long).is_empty());

    // Spoof checking (default on) becomes an ingress ACL: another source MAC is dropped.
    vm1.send(&Spec::new(7, 9, 0).build()).unwrap();
    assert!(got(&wire).is_empty());

    // Counters: per port, drops by reason, in the view, the published file and the metrics.
    let deadline = Instant::now() + Duration::from_secs(5);
    let snap = loop {
        let s = Snapshot::load(dir.path()).unwrap();
        if let Some(s) = s
            && s.vport("vm1").is_some_and(|p| p.drops["acl_ingress"] == 1)
            && s.ports
                .iter()
                .any(|p| p.port == "uplink" && p.drops["vlan"] >= 1)
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "switch.json never showed the drops: {:?}",
            sp.view().snapshot()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let p = snap.vport("vm1").unwrap();
    assert_eq!((p.netdev.as_str(), p.edge.as_str()), ("vp-vm1", "tap"));
    assert!(p.rx_packets >= 4 && p.tx_packets >= 1, "{p:?}");
    let up = snap.ports.iter().find(|p| p.port == "uplink").unwrap();
    assert_eq!((up.netdev.as_str(), up.edge.as_str()), ("pf0", "af_packet"));
    assert!(up.tx_packets >= 5, "{up:?}");
    let text = vportd::daemon::metrics::render_switch(&sp.view().snapshot());
    assert!(
        text.contains("vportd_switch_drops_total{switch=\"sw-0000:01:00.0\",port=\"vm1\",reason=\"acl_ingress\"} 1"),
        "{text}"
    );
    assert!(text.contains(
        "vportd_switch_packets_total{switch=\"sw-0000:01:00.0\",port=\"uplink\",direction=\"tx\"}"
    ));

    // Stopping the software path removes the stale figures; the TAPs are the VMs' and stay
    // (a daemon restart keeps the VMs' links), and a new start serves the same devices.
    let vm1_index = nix::net::if_::if_nametoindex("vp-vm1").unwrap();
    drop(sp);
    assert!(Snapshot::load(dir.path()).unwrap().is_none());
    assert_eq!(nix::net::if_::if_nametoindex("vp-vm1").unwrap(), vm1_index);
    assert!(nix::net::if_::if_nametoindex("vp-plain").is_ok());
    // The next start no longer has "plain" (removed from the config meanwhile): its TAP goes,
    // the others are adopted.
    let (plans, _) = softpath::plan(&cfg, &state_of(&["vm1", LONG]));
    let (mut sp, errors) = SoftPath::start(&plans, &resolve, Some(dir.path()));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(nix::net::if_::if_nametoindex("vp-vm1").unwrap(), vm1_index);
    assert!(nix::net::if_::if_nametoindex("vp-plain").is_err());
    leaves_tagged(&long, &wire, 2, 200, 1);
    arrives_untagged(&wire, &long, 2, 200, 0);
    // The vPorts leave the plan: their TAPs go.
    assert!(sp.reconcile(&[], &resolve).is_empty());
    assert!(nix::net::if_::if_nametoindex("vp-vm1").is_err());
    assert!(nix::net::if_::if_nametoindex("vp-plain").is_err());
    drop(sp);
}

fn cfg_of(
    state_dir: &Path,
    vports: &[(&str, &str, Option<u16>)],
) -> vportd::provision::config::Config {
    let mut text = format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"{PF}\"\n",
        state_dir.display()
    );
    for (name, mac, vlan) in vports {
        text += &format!(
            "[[vport]]\nname = \"{name}\"\nuplink = \"{PF}\"\nmac = \"{mac}\"\noffload = \"never\"\n"
        );
        if let Some(v) = vlan {
            text += &format!("vlan = {v}\n");
        }
    }
    vportd::provision::config::parse(Path::new("host.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn state_of(names: &[&str]) -> State {
    let mut s = State {
        version: STATE_VERSION,
        ..Default::default()
    };
    for name in names {
        s.vports.insert(
            name.to_string(),
            VportState {
                uplink: PF.into(),
                path: VportPath::Software,
                reason: "offload = \"never\"".into(),
                vf_bdf: None,
                applied: None,
                health: Health::Provisioned,
            },
        );
    }
    s
}

/// CPU time (user + system, in clock ticks) of this process's threads whose name starts
/// with `prefix`.
fn thread_ticks(prefix: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesized name: state is field 3; utime and stime are 14, 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        total += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    }
    total
}

/// The daemon's software path follows the state as applies move vPorts (added, changed,
/// removed without restarting the switch or recreating a kept TAP), and survives its uplink
/// netdev vanishing (link down, no busy loop) and coming back (reopened by the next
/// reconcile).
#[test]
fn software_path_follows_the_state_and_survives_its_uplink_vanishing() {
    if !common::require_root("software path reconcile") {
        return;
    }
    fake_pf();
    let resolve = |t: &TrunkAt| {
        (t.pf == PF && t.vf.is_none())
            .then(|| nix::net::if_::if_nametoindex("pf0").ok())
            .flatten()
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = ("02:76:70:00:00:01", "02:76:70:00:00:02");

    // Start with vm1 alone.
    let cfg = cfg_of(dir.path(), &[("vm1", a, Some(100))]);
    let (plans, errors) = softpath::plan(&cfg, &state_of(&["vm1"]));
    assert!(errors.is_empty(), "{errors:?}");
    let (mut sp, errors) = SoftPath::start(&plans, &resolve, Some(dir.path()));
    assert!(errors.is_empty(), "{errors:?}");
    let vm1_index = nix::net::if_::if_nametoindex("vp-vm1").unwrap();
    let vm1 = vm("vp-vm1");
    let wire = RawSocket::open("wire0").unwrap();
    vm1.send(&Spec::new(1, 9, 0).build()).unwrap();
    let first = got(&wire);
    assert_eq!(
        first.first().map(|(_, t)| *t),
        Some(Some(VlanTag { vid: 100, pcp: 0 })),
        "{first:?} {:?}",
        sp.view().snapshot()
    );

    // An apply adds vm2 and moves vm1 to VLAN 150: vm2 gets its TAP, vm1 keeps its own.
    let cfg = cfg_of(dir.path(), &[("vm1", a, Some(150)), ("vm2", b, None)]);
    let (plans, _) = softpath::plan(&cfg, &state_of(&["vm1", "vm2"]));
    let errors = sp.reconcile(&plans, &resolve);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(sp.switches(), 1);
    assert_eq!(
        nix::net::if_::if_nametoindex("vp-vm1").unwrap(),
        vm1_index,
        "a changed vPort keeps its TAP"
    );
    let vm2 = vm("vp-vm2");
    vm1.send(&Spec::new(1, 9, 1).build()).unwrap();
    vm2.send(&Spec::new(2, 9, 0).build()).unwrap();
    let mut on_wire = got(&wire);
    on_wire.sort_by_key(|(m, _)| m.src);
    assert_eq!(
        on_wire,
        vec![
            (
                Mark {
                    src: 1,
                    dst: 9,
                    seq: 1
                },
                Some(VlanTag { vid: 150, pcp: 0 })
            ),
            (
                Mark {
                    src: 2,
                    dst: 9,
                    seq: 0
                },
                None
            ),
        ]
    );
    // The view follows: both vPorts' counters are there.
    let snap = sp.view().snapshot();
    assert!(
        snap.vport("vm1").is_some() && snap.vport("vm2").is_some(),
        "{snap:?}"
    );

    // vm2 removed: its TAP goes.
    let cfg = cfg_of(dir.path(), &[("vm1", a, Some(150))]);
    let (plans, _) = softpath::plan(&cfg, &state_of(&["vm1"]));
    assert!(sp.reconcile(&plans, &resolve).is_empty());
    drop(vm2);
    assert!(nix::net::if_::if_nametoindex("vp-vm2").is_err());
    assert!(sp.view().snapshot().vport("vm2").is_none());

    // The uplink netdev vanishes: the trunk goes link down and the worker sleeps.
    drop(wire);
    sh("ip link del pf0");
    std::thread::sleep(Duration::from_millis(300));
    let before = thread_ticks("switch-");
    std::thread::sleep(Duration::from_secs(1));
    let spent = thread_ticks("switch-") - before;
    // 100 ticks a second: a spinning worker would take ~100.
    assert!(
        spent < 20,
        "the switch worker spent {spent} ticks in 1 s with its uplink gone"
    );
    // The worker asks its NICs once a second whether they are still there.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let snap = sp.view().snapshot();
        let up = snap.ports.iter().find(|p| p.port == "uplink").unwrap();
        if up.nic_lost == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lost uplink is not noticed: {up:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // While it is gone, reconciling says so and changes nothing else.
    let errors = sp.reconcile(&plans, &resolve);
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("no network interface")),
        "{errors:?}"
    );

    // It comes back (a new ifindex): the next reconcile reopens the trunk.
    sh("ip link add pf0 type veth peer name wire0 && ip link set pf0 up && ip link set wire0 up");
    let wire = RawSocket::open("wire0").unwrap();
    let errors = sp.reconcile(&plans, &resolve);
    assert!(errors.is_empty(), "{errors:?}");
    leaves_tagged(&vm1, &wire, 1, 150, 2);
    // A further reconcile with nothing changed leaves the trunk alone.
    assert!(sp.reconcile(&plans, &resolve).is_empty());
    vm1.send(&Spec::new(1, 9, 3).build()).unwrap();
    assert_eq!(got(&wire).len(), 1);
    drop(sp);
}

/// `[[uplink]] switch_edge = "af_xdp"`: the trunk opens the PF's netdev through AF_XDP, and
/// the pipeline works the same (the switch never learns what kind of edge it is).
#[test]
fn the_trunk_opens_through_af_xdp_when_the_uplink_asks() {
    if !common::require_root("software path over AF_XDP") {
        return;
    }
    fake_pf();
    let pf_index = nix::net::if_::if_nametoindex("pf0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"{PF}\"\nswitch_edge = \"af_xdp\"\n[[vport]]\nname = \"vm1\"\nuplink = \"{PF}\"\nmac = \"02:76:70:00:00:01\"\nvlan = 100\noffload = \"never\"\n",
        dir.path().display()
    );
    let cfg = vportd::provision::config::parse(Path::new("host.toml"), &text).unwrap();
    let (plans, errors) = softpath::plan(&cfg, &state_of(&["vm1"]));
    assert!(errors.is_empty(), "{errors:?}");
    let resolve = |t: &TrunkAt| (t.pf == PF && t.vf.is_none()).then_some(pf_index);
    let (sp, errors) = SoftPath::start(&plans, &resolve, Some(dir.path()));
    assert!(errors.is_empty(), "{errors:?}");
    let snap = sp.view().snapshot();
    let up = snap.ports.iter().find(|p| p.port == "uplink").unwrap();
    assert_eq!((up.netdev.as_str(), up.edge.as_str()), ("pf0", "af_xdp"));
    let vm1 = vm("vp-vm1");
    let wire = RawSocket::open("wire0").unwrap();
    leaves_tagged(&vm1, &wire, 1, 100, 0);
    arrives_untagged(&wire, &vm1, 1, 100, 0);
    drop(sp);
}

/// The view's port of a vPort, once `ok` holds for it (within 3 s).
fn wait_port(
    sp: &SoftPath,
    vport: &str,
    ok: impl Fn(&vportd::model::port_counters::PortSnapshot) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let snap = sp.view().snapshot();
        if snap.vport(vport).is_some_and(&ok) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{vport} never got there: {:?}",
            snap.vport(vport)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A vPort's TAP deleted from outside: the worker takes it off its port (link down,
/// `nic_lost`), and the next reconcile makes a new TAP (a new ifindex), connects it and the
/// traffic flows again, the other vPort untouched. A device someone else made under the TAP's
/// name meanwhile is refused with a message naming it, and left alone.
#[test]
fn a_deleted_tap_is_made_again_by_the_next_reconcile() {
    if !common::require_root("software path TAP recreation") {
        return;
    }
    fake_pf();
    let pf_index = nix::net::if_::if_nametoindex("pf0").unwrap();
    let resolve = |t: &TrunkAt| (t.pf == PF && t.vf.is_none()).then_some(pf_index);
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg_of(
        dir.path(),
        &[
            ("vm1", "02:76:70:00:00:01", Some(100)),
            ("vm2", "02:76:70:00:00:02", None),
        ],
    );
    let (plans, errors) = softpath::plan(&cfg, &state_of(&["vm1", "vm2"]));
    assert!(errors.is_empty(), "{errors:?}");
    let (mut sp, errors) = SoftPath::start(&plans, &resolve, Some(dir.path()));
    assert!(errors.is_empty(), "{errors:?}");
    let wire = RawSocket::open("wire0").unwrap();
    let first = nix::net::if_::if_nametoindex("vp-vm1").unwrap();
    let vm2_index = nix::net::if_::if_nametoindex("vp-vm2").unwrap();

    sh("ip link del vp-vm1");
    wait_port(&sp, "vm1", |p| p.nic_lost == 1 && p.edge == "tap");
    let errors = sp.reconcile(&plans, &resolve);
    assert!(errors.is_empty(), "{errors:?}");
    let second = nix::net::if_::if_nametoindex("vp-vm1").expect("vp-vm1 is back");
    assert_ne!(second, first, "a new device");
    sh("ip link show dev vp-vm1 | grep -q '<.*UP.*>'");
    assert_eq!(nix::net::if_::if_nametoindex("vp-vm2").unwrap(), vm2_index);
    assert_eq!(sp.view().snapshot().vport("vm1").unwrap().edge, "tap");
    // Link up again: both ways.
    let vm1 = vm("vp-vm1");
    leaves_tagged(&vm1, &wire, 1, 100, 0);
    arrives_untagged(&wire, &vm1, 1, 100, 1);
    // Nothing lost since: a reconcile leaves it alone.
    assert!(sp.reconcile(&plans, &resolve).is_empty());
    assert_eq!(nix::net::if_::if_nametoindex("vp-vm1").unwrap(), second);

    // Deleted again, and the name taken by another device before the reconcile.
    drop(vm1);
    sh("ip link del vp-vm1");
    wait_port(&sp, "vm1", |p| p.nic_lost == 2);
    sh("ip link add vp-vm1 type veth peer name squatter");
    let squatter = nix::net::if_::if_nametoindex("vp-vm1").unwrap();
    let errors = sp.reconcile(&plans, &resolve);
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        text,
        vec![format!(
            "vPort vm1 stays link down: its TAP was deleted and vp-vm1 is now another device (ifindex {squatter}); remove or rename that device"
        )]
    );
    assert_eq!(sp.view().snapshot().vport("vm1").unwrap().edge, "none");
    sh("ip link show dev vp-vm1 | grep -q 'vp-vm1@squatter'");
    // Once it is gone, the next reconcile makes the TAP.
    sh("ip link del vp-vm1");
    assert!(sp.reconcile(&plans, &resolve).is_empty());
    assert_eq!(sp.view().snapshot().vport("vm1").unwrap().edge, "tap");
    let vm1 = vm("vp-vm1");
    vm1.send(&Spec::new(1, 9, 2).build()).unwrap();
    assert_eq!(got(&wire).len(), 1);
    // vm1 leaves the plan: its TAP goes (stopping alone would leave it to its VM).
    assert!(sp.reconcile(&[], &resolve).is_empty());
    drop(sp);
    assert!(nix::net::if_::if_nametoindex("vp-vm1").is_err());
}

/// The unicast addresses `bridge fdb show` lists for a device ("self permanent").
fn unicast_list(dev: &str) -> Vec<String> {
    let out = std::process::Command::new("bridge")
        .args(["fdb", "show", "dev", dev])
        .output()
        .expect("iproute2's bridge runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.ends_with("self permanent") && !l.starts_with("33:33") && !l.starts_with("01:")
        })
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

/// `[[uplink]] switch_vf`: the trunk is the VF's netdev (here a veth standing in for VF 0, which
/// the resolver names; the PF is never asked for), brought up by the software path, and it holds
/// each vPort's MAC as a unicast address of the device (what igbvf turns into MAC filters on its
/// PF; tests/vm/switch_vf.rs shows that on the real driver). The list follows the vPorts and
/// goes with the switch.
#[test]
fn a_vf_trunk_comes_up_and_holds_the_vports_macs_as_unicast_addresses() {
    if !common::require_root("software path on a VF trunk") {
        return;
    }
    common::private_netns();
    // The VF's netdev starts down, as a new VF's does.
    sh("ip link add vf0 type veth peer name wire0 && ip link set wire0 up");
    let asked = std::cell::RefCell::new(Vec::new());
    let resolve = |t: &TrunkAt| {
        asked.borrow_mut().push(t.clone());
        (t.pf == PF && t.vf == Some(0))
            .then(|| nix::net::if_::if_nametoindex("vf0").ok())
            .flatten()
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = |vports: &str| {
        let text = format!(
            "state_dir = \"{}\"\n[[uplink]]\npci = \"{PF}\"\nswitch_vf = 0\n{vports}",
            dir.path().display()
        );
        vportd::provision::config::parse(Path::new("host.toml"), &text).unwrap()
    };
    let vport = |name: &str, mac: &str| {
        format!(
            "[[vport]]\nname = \"{name}\"\nuplink = \"{PF}\"\nmac = \"{mac}\"\noffload = \"never\"\n"
        )
    };
    let both = cfg(&(vport("vm1", "02:76:70:00:00:01") + &vport("vm2", "02:76:70:00:00:02")));
    let (plans, errors) = softpath::plan(&both, &state_of(&["vm1", "vm2"]));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(plans[0].trunk_vf, Some(0));
    let (mut sp, errors) = SoftPath::start(&plans, &resolve, Some(dir.path()));
    assert!(errors.is_empty(), "{errors:?}");
    assert!(asked.borrow().iter().all(|t| t.vf == Some(0)), "{asked:?}");
    sh("ip link show dev vf0 | grep -q '<.*,UP'");
    let mut list = unicast_list("vf0");
    list.sort();
    assert_eq!(list, ["02:76:70:00:00:01", "02:76:70:00:00:02"]);
    let snap = sp.view().snapshot();
    let up = snap.ports.iter().find(|p| p.port == "uplink").unwrap();
    assert_eq!((up.netdev.as_str(), up.edge.as_str()), ("vf0", "af_packet"));

    // Frames cross the VF trunk both ways.
    let wire = RawSocket::open("wire0").unwrap();
    let vm1 = vm("vp-vm1");
    vm1.send(&Spec::new(1, 9, 0).build()).unwrap();
    assert_eq!(got(&wire).len(), 1);
    wire.send(&Spec::new(9, 1, 0).build()).unwrap();
    assert_eq!(got(&vm1).len(), 1);

    // vm2 leaves: its MAC leaves the list.
    let one = cfg(&vport("vm1", "02:76:70:00:00:01"));
    let (plans, _) = softpath::plan(&one, &state_of(&["vm1"]));
    let errors = sp.reconcile(&plans, &resolve);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(unicast_list("vf0"), ["02:76:70:00:00:01"]);
    // The switch goes: so do the addresses.
    drop(sp);
    assert!(unicast_list("vf0").is_empty());
}

/// The daemon's switches run the kernel flow cache, and a known flow into a vPort's TAP is
/// carried by the kernel (`bpf_redirect` to the TAP's egress: the VM's queue) without a frame
/// lost or reordered: the VM reads every frame, in order, and the cache counts the hits.
#[test]
fn the_kernel_carries_known_flows_into_a_vms_tap() {
    if !common::require_root("the flow cache into a TAP") {
        return;
    }
    fake_pf();
    let pf_index = nix::net::if_::if_nametoindex("pf0").unwrap();
    let resolve = |t: &TrunkAt| (t.pf == PF && t.vf.is_none()).then_some(pf_index);
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg_of(dir.path(), &[("plain", "02:76:70:00:00:03", None)]);
    let (plans, errors) = softpath::plan(&cfg, &state_of(&["plain"]));
    assert!(errors.is_empty(), "{errors:?}");
    let (sp, errors) = SoftPath::start(&plans, &resolve, Some(dir.path()));
    assert!(errors.is_empty(), "{errors:?}");
    let vm = vm("vp-plain");
    let wire = RawSocket::open("wire0").unwrap();
    // Both addresses learned: the VM's on its port, the far host's on the trunk.
    vm.send(&Spec::new(3, 9, 0).build()).unwrap();
    assert_eq!(got(&wire).len(), 1);
    const N: u32 = 200;
    for seq in 0..N {
        wire.send(&Spec::new(9, 3, seq).build()).unwrap();
        if seq % 50 == 0 {
            // Room for the flow to turn active (the ring drained) and for the sweep.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let seqs: Vec<u32> = got(&vm).iter().map(|(m, _)| m.seq).collect();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "every frame, in order");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = sp.fastpath_stats();
        assert_eq!(stats.len(), 1);
        let fast = stats[0].1.expect("the flow cache is on");
        if fast.hits >= u64::from(N) - 5 {
            assert!(fast.flows >= 1 && fast.attach_failed == 0, "{fast:?}");
            eprintln!(
                "the kernel carried {} of {N} frames into the TAP",
                fast.hits
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the kernel carried too few frames into the TAP: {fast:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(sp);
}

/// `tap_owner` / `tap_group`: an unprivileged process running as them opens the vPort's TAP
/// (TUNSETIFF passes: what QEMU does as libvirt-qemu), and with neither given no other user
/// can (root owns it). The opener is
/// `vportd tap-netns` run by setpriv as that user: its TUNSETIFF either passes (then it fails
/// later, entering a namespace it may not) or is refused.
#[test]
fn a_vms_tap_opens_for_its_owner_and_no_one_else() {
    if !common::require_root("TAP owner and group") {
        return;
    }
    fake_pf();
    let pf_index = nix::net::if_::if_nametoindex("pf0").unwrap();
    let resolve = |t: &TrunkAt| (t.pf == PF && t.vf.is_none()).then_some(pf_index);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"{PF}\"\n\
         [[vport]]\nname = \"vm1\"\nuplink = \"{PF}\"\nmac = \"02:76:70:00:00:01\"\noffload = \"never\"\ntap_owner = \"nobody\"\ntap_group = \"65534\"\n\
         [[vport]]\nname = \"vm2\"\nuplink = \"{PF}\"\nmac = \"02:76:70:00:00:02\"\noffload = \"never\"\n",
        dir.path().display()
    );
    let cfg = vportd::provision::config::parse(Path::new("host.toml"), &text).unwrap();
    let (plans, errors) = softpath::plan(&cfg, &state_of(&["vm1", "vm2"]));
    assert!(errors.is_empty(), "{errors:?}");
    let (sp, errors) = SoftPath::start(&plans, &resolve, Some(dir.path()));
    assert!(errors.is_empty(), "{errors:?}");
    // iproute2 as the oracle: persistent, owned by nobody (65534) and its group.
    let shown = sh("ip -d link show dev vp-vm1");
    assert!(
        shown.contains("persist on") && shown.contains("user nobody group nogroup"),
        "{shown}"
    );
    // Neither given: root's alone (the kernel would let anyone open a TAP with neither).
    let shown = sh("ip -d link show dev vp-vm2");
    assert!(
        shown.contains("user root") && !shown.contains("user root group"),
        "{shown}"
    );
    let open_as_nobody = |tap: &str| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_vportd"))
            .args(["tap-netns", tap, "/proc/1/ns/net"])
            .output()
            .expect("setpriv runs");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let owned = open_as_nobody("vp-vm1");
    // Past TUNSETIFF, refused only the namespace (nobody may not open or enter it).
    assert!(
        owned.contains("the network namespace for TAP vp-vm1"),
        "{owned}"
    );
    let other = open_as_nobody("vp-vm2");
    assert!(
        other.contains("cannot open the device (TUNSETIFF")
            && other.contains("Operation not permitted"),
        "{other}"
    );
    drop(sp);
}
