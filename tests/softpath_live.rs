//! The daemon's software path on this kernel, as root, in a private network namespace: a
//! config and state whose software vPorts get TAPs, and a veth end standing in for the uplink
//! PF (found by "PCI address" through the resolver, opened by ifindex). Frames sent into a
//! vPort's TAP must leave the uplink tagged with the vPort's VLAN, frames tagged on the uplink
//! must reach only that VLAN's vPort untagged, and the counters (per port, drops by reason)
//! must show it in the view, the published `switch.json` and the metrics text. This kernel
//! has no 8021q: tags are injected and captured with AF_PACKET.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use vportd::host::afpacket::RawSocket;
use vportd::softpath::{self, Snapshot, SoftPath};
use vportd::state::{Health, STATE_VERSION, State, VportPath, VportState};
use vportd::switch::packet::VlanTag;
use vportd::switch::testkit::{Mark, Spec, read};

const PF: &str = "0000:01:00.0";
const LONG: &str = "tenant-blue-web-frontend";

fn sh(cmd: &str) {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn config(state_dir: &Path) -> vportd::config::Config {
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
    vportd::config::parse(Path::new("host.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn state() -> State {
    let mut s = State {
        version: STATE_VERSION,
        ..Default::default()
    };
    for name in ["vm1", LONG, "plain"] {
        s.vports.insert(
            name.into(),
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

/// Test frames a socket receives until it has been quiet for a while.
fn got(s: &RawSocket) -> Vec<(Mark, Option<VlanTag>)> {
    s.drain(Duration::from_millis(150))
        .unwrap()
        .iter()
        .filter_map(|f| read(f))
        .collect()
}

#[test]
fn software_vports_get_taps_and_reach_the_uplink_tagged() {
    if !common::require_root("software path attachment") {
        return;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("unshare a network namespace (needs root)");
    sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
    // The fake PF: the switch opens `pf0`; `wire0` is the far end, the physical network.
    sh("ip link add pf0 type veth peer name wire0 && ip link set pf0 up && ip link set wire0 up");
    let pf_index = nix::net::if_::if_nametoindex("pf0").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (plans, errors) = softpath::plan(&cfg, &state());
    assert!(errors.is_empty(), "{errors:?}");
    let resolve = |bdf: &str| (bdf == PF).then_some(pf_index);
    let (sp, errors) = SoftPath::start(&plans, &resolve, Some(dir.path()));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(sp.switches(), 1);

    // Each vPort has its TAP, named from the vPort and at most 15 bytes.
    let long_tap = softpath::tap_name(LONG);
    assert!(long_tap.len() <= 15 && long_tap != format!("vp-{LONG}"));
    for tap in ["vp-vm1", long_tap.as_str(), "vp-plain"] {
        sh(&format!("ip link show dev {tap} | grep -q UP"));
    }
    let vm1 = RawSocket::open("vp-vm1").unwrap();
    let long = RawSocket::open(&long_tap).unwrap();
    let plain = RawSocket::open("vp-plain").unwrap();
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
    let text = vportd::metrics::render_switch(&sp.view().snapshot());
    assert!(
        text.contains("vportd_switch_drops_total{switch=\"sw-0000:01:00.0\",port=\"vm1\",reason=\"acl_ingress\"} 1"),
        "{text}"
    );
    assert!(text.contains(
        "vportd_switch_packets_total{switch=\"sw-0000:01:00.0\",port=\"uplink\",direction=\"tx\"}"
    ));

    // Stopping the software path removes the TAPs and the stale figures.
    drop(sp);
    assert!(Snapshot::load(dir.path()).unwrap().is_none());
    assert!(nix::net::if_::if_nametoindex("vp-vm1").is_err());
}
