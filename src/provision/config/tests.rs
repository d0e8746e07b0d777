use super::keys::{DAEMON_KEYS, POOL_KEYS, SWITCH_KEYS, TOP_KEYS, UPLINK_KEYS, VPORT_KEYS};
use super::names::normalize_pci;
use super::*;
use proptest::prelude::*;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn parse_ok(text: &str) -> Config {
    parse(Path::new("host.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(Path::new("bad.toml"), text) {
        Ok(c) => panic!("accepted:\n{text}\nas {c:#?}"),
        Err(e) => e.problems().to_vec(),
    }
}

#[test]
fn the_example_parses_and_uses_every_key() {
    let path = repo("examples/host.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.path, path);
    assert_eq!(cfg.state_dir, Path::new("/var/lib/vportd"));
    assert_eq!(cfg.uplinks.len(), 2);
    let u = &cfg.uplinks[0];
    assert_eq!(u.selector, UplinkSelector::Pci("0000:01:00.0".into()));
    assert_eq!(
        (u.num_vfs, u.vf_driver.as_deref()),
        (Some(7), Some("igbvf"))
    );
    assert_eq!(
        cfg.uplinks[1].selector,
        UplinkSelector::Ifname("enp2s0".into())
    );
    let names: Vec<&str> = cfg.vports.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        ["vm1-eth0", "vm2-eth0", "vm3-eth0", "ctr1", "web1", "web2"]
    );
    assert_eq!(cfg.switches.len(), 2);
    assert_eq!(cfg.switch_of(&cfg.vports[4]), Some(&cfg.switches[0]));
    assert_eq!(
        cfg.vports[4].attach,
        Attach::Veth {
            netns: "web1".into(),
            ifname: "eth0".into()
        }
    );
    let v = &cfg.vports[0];
    assert_eq!(v.mac.to_string(), "02:00:00:00:01:01");
    assert_eq!(
        (v.vlan, v.qos, v.vlan_proto),
        (Some(100), 3, VlanProto::Dot1Q)
    );
    assert_eq!(
        (v.max_tx_rate_mbps, v.min_tx_rate_mbps),
        (Some(1000), Some(100))
    );
    assert_eq!((v.spoofchk, v.trust), (true, false));
    assert_eq!(
        (v.link_state, v.offload),
        (LinkState::Auto, Offload::Preferred)
    );
    assert_eq!(
        (cfg.vports[2].queues, cfg.vports[2].placement),
        (Some(2), Some(PathChoice::Queues))
    );
    assert_eq!(
        (cfg.uplinks[0].channels, &cfg.uplinks[0].rss),
        (Some(4), &Some(RssSpread::Equal))
    );
    assert_eq!(cfg.uplinks[1].rss, Some(RssSpread::Weights(vec![1, 1, 2])));
    assert_eq!(cfg.vports[3].offload, Offload::Required);
    assert_eq!(cfg.uplink_of(&cfg.vports[3]), Some(&cfg.uplinks[1]));
    // Every documented key appears in the example, so the README and it cannot drift.
    let p = &cfg.pools[0];
    assert_eq!(
        (p.name.as_str(), &p.uplink, p.count, p.driver.as_deref()),
        (
            "ctr",
            &crate::model::pool::PoolUplink::Pci("0000:01:00.0".into()),
            2,
            Some("igbvf")
        )
    );
    assert_eq!(
        p.defaults,
        crate::model::pool::VfAttributes {
            vlan: Some(200),
            qos: Some(1),
            max_tx_rate_mbps: Some(500),
            min_tx_rate_mbps: Some(50),
            spoofchk: Some(true),
            trust: Some(false),
            mtu: Some(1500),
        }
    );
    assert_eq!(cfg.uplink_of_pool(p), Some(&cfg.uplinks[0]));
    for (key, _) in TOP_KEYS
        .iter()
        .chain(UPLINK_KEYS)
        .chain(VPORT_KEYS)
        .chain(POOL_KEYS)
        .chain(SWITCH_KEYS)
        .chain(DAEMON_KEYS)
    {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key} = "))
                || l == format!("[[{key}]]")
                || l == format!("[{key}]")),
            "examples/host.toml does not show {key}"
        );
    }
}

#[test]
fn defaults() {
    let cfg = parse_ok(
        "[[uplink]]\nifname = \"eth0\"\n[[vport]]\nname = \"a\"\nuplink = \"eth0\"\nmac = \"02:00:00:00:00:01\"\n",
    );
    assert_eq!(cfg.state_dir, Path::new(DEFAULT_STATE_DIR));
    let u = &cfg.uplinks[0];
    assert_eq!((u.num_vfs, u.vf_driver.as_deref()), (None, None));
    let v = &cfg.vports[0];
    assert_eq!((v.vlan, v.qos, v.vlan_proto), (None, 0, VlanProto::Dot1Q));
    assert_eq!((v.max_tx_rate_mbps, v.min_tx_rate_mbps), (None, None));
    assert_eq!((v.spoofchk, v.trust), (true, false));
    assert_eq!(
        (v.link_state, v.offload),
        (LinkState::Auto, Offload::Preferred)
    );
    assert_eq!(
        (v.at.line, v.at.column),
        (3, 1),
        "at is the [[vport]] header"
    );
    assert_eq!(
        (u.at.line, u.at.column),
        (1, 1),
        "at is the [[uplink]] header"
    );

    let empty = parse_ok("");
    assert!(empty.uplinks.is_empty() && empty.vports.is_empty());
}

#[test]
fn num_vfs_zero_with_vports_is_not_a_config_error() {
    let cfg = parse_ok(
        "[[uplink]]\npci = \"0000:01:00.0\"\nnum_vfs = 0\n[[vport]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:00:01\"\n",
    );
    assert_eq!(cfg.uplinks[0].num_vfs, Some(0));
}

#[test]
fn selectors_and_references_are_normalized() {
    let cfg = parse_ok(concat!(
        "[[uplink]]\npci = \"01:00.1\"\n",
        "[[uplink]]\nmac = \"52:54:00:AB:CD:EF\"\n",
        "[[vport]]\nname = \"a\"\nuplink = \"0000:01:00.1\"\nmac = \"02:00:00:00:00:0A\"\n",
        "[[vport]]\nname = \"b\"\nuplink = \"52:54:00:ab:cd:ef\"\nmac = \"02:00:00:00:00:0b\"\n",
    ));
    assert_eq!(
        cfg.uplinks[0].selector,
        UplinkSelector::Pci("0000:01:00.1".into())
    );
    assert_eq!(
        cfg.uplinks[1].selector,
        UplinkSelector::Mac("52:54:00:ab:cd:ef".into())
    );
    assert_eq!(cfg.uplink_of(&cfg.vports[0]), Some(&cfg.uplinks[0]));
    assert_eq!(cfg.uplink_of(&cfg.vports[1]), Some(&cfg.uplinks[1]));
    assert_eq!(cfg.vports[0].uplink, "0000:01:00.1", "kept as written");
    assert_eq!(cfg.vports[0].mac.to_string(), "02:00:00:00:00:0a");
    assert_eq!(normalize_pci("0000:0A:1F.7"), Ok("0000:0a:1f.7".into()));
    assert_eq!(normalize_pci("10000:00:00.0"), Ok("10000:00:00.0".into()));
    for bad in [
        "",
        "01:00",
        "01:20.0",
        "01:00.8",
        "0000:01:00:0",
        "g0:00.0",
        "0:0:0:0.0",
    ] {
        assert_eq!(normalize_pci(bad), Err(()), "{bad:?}");
    }
}

#[test]
fn macs_and_enums_serialize_as_written_in_toml() {
    let m: Mac = "02:AB:00:00:00:01".parse().unwrap();
    assert_eq!(m.to_string(), "02:ab:00:00:00:01");
    assert_eq!(format!("{m:?}"), "Mac(02:ab:00:00:00:01)");
    assert_eq!(serde_json::to_value(m).unwrap(), "02:ab:00:00:00:01");
    assert_eq!(
        serde_json::from_value::<Mac>("02:ab:00:00:00:01".into()).unwrap(),
        m
    );
    for bad in [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:00:00",
        "2:0:0:0:0:1",
        "02-00-00-00-00-01",
        "0g:00:00:00:00:01",
    ] {
        assert!(bad.parse::<Mac>().is_err(), "{bad:?}");
    }
    assert!(Mac([0xff; 6]).is_multicast() && Mac([0xff; 6]).is_broadcast());
    let json = serde_json::json!([
        VlanProto::Dot1Q,
        VlanProto::Dot1Ad,
        LinkState::Enable,
        Offload::Never
    ]);
    assert_eq!(
        json,
        serde_json::json!(["802.1Q", "802.1ad", "enable", "never"])
    );
    assert_eq!(
        serde_json::to_value(UplinkSelector::Pci("0000:01:00.0".into())).unwrap(),
        serde_json::json!({"pci": "0000:01:00.0"})
    );
    let cfg = parse_ok("[[uplink]]\nifname = \"eth0\"\n");
    let json = serde_json::to_value(&cfg).unwrap();
    assert_eq!(json["uplinks"][0]["at"]["line"], 1);
    assert_eq!(json["state_dir"], "/var/lib/vportd");
}

/// One bad input: the whole file, where its one problem is, and words the message must hold.
/// This table is the catalogue of bad input (docs/bad-input.md is to be generated from it).
struct BadCase {
    what: &'static str,
    toml: &'static str,
    at: (usize, usize),
    message: &'static str,
}

/// An uplink and a valid vPort on it (lines 1-6), then the given lines from line 7.
macro_rules! vport_with {
    ($extra:literal) => {
        concat!(
            "[[uplink]]\npci = \"0000:01:00.0\"\n",
            "[[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:01\"\n",
            $extra
        )
    };
}

/// An uplink (lines 1-2), then a vPort whose mac is given (line 6).
macro_rules! vport_mac {
    ($mac:literal) => {
        concat!(
            "[[uplink]]\npci = \"0000:01:00.0\"\n",
            "[[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"",
            $mac,
            "\"\n"
        )
    };
}

const BAD_INPUTS: &[BadCase] = &[
    BadCase {
        what: "TOML syntax error",
        toml: "[[vport]\nname = \"vm1\"\n",
        at: (1, 9),
        message: "not valid TOML: unclosed array table",
    },
    BadCase {
        what: "unquoted string",
        toml: "state_dir = /var/lib/vportd\n",
        at: (1, 13),
        message: "not valid TOML",
    },
    BadCase {
        what: "unknown top-level key",
        toml: "stat_dir = \"/var/lib/vportd\"\n",
        at: (1, 1),
        message: "unknown key stat_dir",
    },
    BadCase {
        what: "relative state_dir",
        toml: "state_dir = \"var/lib/vportd\"\n",
        at: (1, 13),
        message: "is not an absolute path",
    },
    BadCase {
        what: "single [vport] table",
        toml: "[vport]\nname = \"vm1\"\n",
        at: (1, 2),
        message: "[vport] is a single table, but vport is a list",
    },
    BadCase {
        what: "unknown key in [[uplink]]",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\nnumvfs = 3\n",
        at: (3, 1),
        message: "unknown key numvfs",
    },
    BadCase {
        what: "unknown key in [[vport]]",
        toml: vport_with!("vlna = 100\n"),
        at: (7, 1),
        message: "vport \"vm1\": unknown key vlna",
    },
    BadCase {
        what: "value of the wrong type",
        toml: vport_with!("vlan = \"100\"\n"),
        at: (7, 8),
        message: "vlan: expected a whole number, found string",
    },
    BadCase {
        what: "VLAN above 4094",
        toml: vport_with!("vlan = 5000\n"),
        at: (7, 8),
        message: "vport \"vm1\": vlan 5000 is outside 1..4094",
    },
    BadCase {
        what: "VLAN 0",
        toml: vport_with!("vlan = 0\n"),
        at: (7, 8),
        message: "vlan 0 is outside 1..4094",
    },
    BadCase {
        what: "QoS above 7",
        toml: vport_with!("vlan = 10\nqos = 8\n"),
        at: (8, 7),
        message: "qos 8 is outside 0..7",
    },
    BadCase {
        what: "QoS without VLAN",
        toml: vport_with!("qos = 3\n"),
        at: (7, 7),
        message: "qos without vlan",
    },
    BadCase {
        what: "VLAN protocol without VLAN",
        toml: vport_with!("proto = \"802.1ad\"\n"),
        at: (7, 9),
        message: "proto without vlan",
    },
    BadCase {
        what: "unknown VLAN protocol",
        toml: vport_with!("vlan = 10\nproto = \"802.1x\"\n"),
        at: (8, 9),
        message: "proto \"802.1x\" is not one of \"802.1Q\", \"802.1ad\"",
    },
    BadCase {
        what: "optional attribute that cannot be dropped",
        toml: vport_with!("optional = [\"mac\"]\n"),
        at: (7, 13),
        message: "optional names \"mac\", which is not an attribute that can be dropped",
    },
    BadCase {
        what: "optional attribute listed twice",
        toml: vport_with!("optional = [\"trust\", \"trust\"]\n"),
        at: (7, 22),
        message: "optional lists \"trust\" twice",
    },
    BadCase {
        what: "minimum rate above maximum",
        toml: vport_with!("max_tx_rate_mbps = 100\nmin_tx_rate_mbps = 200\n"),
        at: (8, 20),
        message: "min_tx_rate_mbps 200 is above max_tx_rate_mbps 100",
    },
    BadCase {
        what: "zero rate",
        toml: vport_with!("max_tx_rate_mbps = 0\n"),
        at: (7, 20),
        message: "max_tx_rate_mbps 0 is outside 1..4294967295",
    },
    BadCase {
        what: "unknown link state",
        toml: vport_with!("link_state = \"up\"\n"),
        at: (7, 14),
        message: "link_state \"up\" is not one of \"auto\", \"enable\", \"disable\"",
    },
    BadCase {
        what: "unknown offload mode",
        toml: vport_with!("offload = \"always\"\n"),
        at: (7, 11),
        message: "offload \"always\" is not one of",
    },
    BadCase {
        what: "multicast MAC",
        toml: vport_mac!("01:00:5e:00:00:01"),
        at: (6, 7),
        message: "mac 01:00:5e:00:00:01 is a multicast address",
    },
    BadCase {
        what: "broadcast MAC",
        toml: vport_mac!("ff:ff:ff:ff:ff:ff"),
        at: (6, 7),
        message: "is the broadcast address",
    },
    BadCase {
        what: "all-zero MAC",
        toml: vport_mac!("00:00:00:00:00:00"),
        at: (6, 7),
        message: "mac 00:00:00:00:00:00 is all zeros",
    },
    BadCase {
        what: "malformed MAC",
        toml: vport_mac!("02:00:00:00:01"),
        at: (6, 7),
        message: "mac \"02:00:00:00:01\" is not a MAC address",
    },
    BadCase {
        what: "duplicate vPort MAC",
        toml: vport_with!(
            "[[vport]]\nname = \"vm2\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:01\"\n"
        ),
        at: (10, 7),
        message: "vport \"vm2\": mac 02:00:00:00:01:01 is already the MAC of vport \"vm1\" at bad.toml:6:7",
    },
    BadCase {
        what: "duplicate vPort name",
        toml: vport_with!(
            "[[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:02\"\n"
        ),
        at: (8, 8),
        message: "name is already used by the vport at bad.toml:3:1",
    },
    BadCase {
        what: "vPort name with a space",
        toml: "[[uplink]]\nifname = \"eth0\"\n[[vport]]\nname = \"vm 1\"\nuplink = \"eth0\"\nmac = \"02:00:00:00:01:01\"\n",
        at: (4, 8),
        message: "name must be 1 to 64 of",
    },
    BadCase {
        what: "vPort name longer than 64",
        toml: "[[uplink]]\nifname = \"eth0\"\n[[vport]]\nname = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\nuplink = \"eth0\"\nmac = \"02:00:00:00:01:01\"\n",
        at: (4, 8),
        message: "name must be 1 to 64 of",
    },
    BadCase {
        what: "vPort without a MAC",
        toml: "[[uplink]]\nifname = \"eth0\"\n[[vport]]\nname = \"vm1\"\nuplink = \"eth0\"\n",
        at: (3, 1),
        message: "vport \"vm1\": missing mac",
    },
    BadCase {
        what: "vPort on an undeclared uplink",
        toml: "[[uplink]]\nifname = \"eth0\"\n[[vport]]\nname = \"vm1\"\nuplink = \"eth1\"\nmac = \"02:00:00:00:01:01\"\n",
        at: (5, 10),
        message: "uplink \"eth1\" names no [[uplink]]",
    },
    BadCase {
        what: "vPort with its uplink's MAC",
        toml: "[[uplink]]\nmac = \"52:54:00:00:00:01\"\n[[vport]]\nname = \"vm1\"\nuplink = \"52:54:00:00:00:01\"\nmac = \"52:54:00:00:00:01\"\n",
        at: (6, 7),
        message: "is the MAC of the uplink declared at bad.toml:1:1",
    },
    BadCase {
        what: "uplink without pci, mac or ifname",
        toml: "[[uplink]]\nnum_vfs = 4\n",
        at: (1, 1),
        message: "uplink #1: says neither pci, mac nor ifname",
    },
    BadCase {
        what: "uplink with both pci and ifname",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\nifname = \"eth0\"\n",
        at: (3, 10),
        message: "names the PF twice (pci and ifname)",
    },
    BadCase {
        what: "malformed PCI address",
        toml: "[[uplink]]\npci = \"0000:01:00\"\n",
        at: (2, 7),
        message: "pci \"0000:01:00\" is not a PCI address",
    },
    BadCase {
        what: "malformed uplink MAC",
        toml: "[[uplink]]\nmac = \"52:54:00\"\n",
        at: (2, 7),
        message: "mac \"52:54:00\" is not a MAC address",
    },
    BadCase {
        what: "interface name longer than 15",
        toml: "[[uplink]]\nifname = \"enp1s0f0np0-long\"\n",
        at: (2, 10),
        message: "is not an interface name",
    },
    BadCase {
        what: "the same uplink twice",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\n[[uplink]]\npci = \"01:00.0\"\n",
        at: (3, 1),
        message: "uplink pci 0000:01:00.0 is declared twice; first at bad.toml:1:1",
    },
    BadCase {
        what: "negative num_vfs",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\nnum_vfs = -1\n",
        at: (3, 11),
        message: "num_vfs -1 is outside 0..65535",
    },
    BadCase {
        what: "channels zero",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\nchannels = 0\n",
        at: (3, 12),
        message: "channels 0 is outside 1..4096",
    },
    BadCase {
        what: "rss word unknown",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\nrss = \"even\"\n",
        at: (3, 7),
        message: "rss \"even\" is not one of \"equal\"",
    },
    BadCase {
        what: "switch_edge word unknown",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\nswitch_edge = \"xdp\"\n",
        at: (3, 15),
        message: "switch_edge \"xdp\" is not one of \"af_packet\", \"af_xdp\", \"auto\"",
    },
    BadCase {
        what: "rss and rss_weights",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\nrss = \"equal\"\nrss_weights = [1]\n",
        at: (4, 15),
        message: "rss and rss_weights both say how to fill the RSS table",
    },
    BadCase {
        what: "rss_weights all zero",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\nrss_weights = [0, 0]\n",
        at: (3, 15),
        message: "rss_weights gives no queue a share",
    },
    BadCase {
        what: "rss_weights longer than channels",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\nchannels = 2\nrss_weights = [1, 1, 1]\n",
        at: (4, 15),
        message: "rss_weights has 3 entries but channels = 2",
    },
    BadCase {
        what: "rss_weights negative",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\nrss_weights = [1, -1]\n",
        at: (3, 19),
        message: "rss_weights entry -1 is outside 0..255",
    },
    BadCase {
        what: "queues zero",
        toml: vport_with!("queues = 0\n"),
        at: (7, 10),
        message: "queues 0 is outside 1..64",
    },
    BadCase {
        what: "cpus not a list",
        toml: vport_with!("cpus = \"2-x\"\n"),
        at: (7, 8),
        message: "cpus \"2-x\" is not a CPU list",
    },
    BadCase {
        what: "placement unknown",
        toml: vport_with!("placement = \"vmdq\"\n"),
        at: (7, 13),
        message: "placement \"vmdq\" is not one of \"vf\", \"queues\", \"software\"",
    },
    BadCase {
        what: "placement contradicts offload",
        toml: vport_with!("placement = \"queues\"\noffload = \"required\"\n"),
        at: (8, 11),
        message: "placement \"queues\" contradicts offload",
    },
    BadCase {
        what: "driver name with a space",
        toml: "[[uplink]]\npci = \"0000:01:00.0\"\nvf_driver = \"vfio pci\"\n",
        at: (3, 13),
        message: "vf_driver \"vfio pci\" is not a driver name",
    },
];

#[test]
fn every_bad_input_is_located_explained_and_alone() {
    for case in BAD_INPUTS {
        let found = problems(case.toml);
        let text = found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            found.len(),
            1,
            "{}: expected one problem, got:\n{text}",
            case.what
        );
        let p = &found[0];
        assert_eq!(
            (p.at.line, p.at.column),
            case.at,
            "{}: wrong place:\n{text}",
            case.what
        );
        assert!(
            p.message.contains(case.message),
            "{}: message lacks {:?}:\n{text}",
            case.what,
            case.message
        );
        assert!(!p.hint.trim().is_empty(), "{}: no hint", case.what);
        let prefix = format!("bad.toml:{}:{}: ", case.at.0, case.at.1);
        assert!(text.starts_with(&prefix), "{}: {text}", case.what);
        assert!(text.contains("\n  hint: "), "{}: {text}", case.what);
    }
}

#[test]
fn errors_print_as_file_line_col_with_a_hint() {
    let e = parse(Path::new("host.toml"), vport_with!("vlan = 5000\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "host.toml:7:8: vport \"vm1\": vlan 5000 is outside 1..4094\n  \
         hint: 802.1Q VLAN ids are 1 to 4094 (0 and 4095 are reserved); omit vlan for untagged traffic"
    );
    let e = parse(Path::new("host.toml"), vport_with!("vlna = 1\n")).unwrap_err();
    assert!(
        e.to_string().ends_with(
            "hint: did you mean vlan? valid keys in [[vport]]: name, uplink, mac, vlan, qos, proto, max_tx_rate_mbps, min_tx_rate_mbps, spoofchk, trust, link_state, offload, optional, queues, placement, cpus, tap_owner, tap_group, switch, attach, netns, ifname"
        ),
        "{e}"
    );
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = concat!(
        "[[uplink]]\n",                  // 1
        "pci = \"0000:01:00.0\"\n",      // 2
        "colour = \"blue\"\n",           // 3
        "[[vport]]\n",                   // 4
        "name = \"vm1\"\n",              // 5
        "uplink = \"0000:01:00.0\"\n",   // 6
        "mac = \"01:00:00:00:00:01\"\n", // 7
        "vlan = 5000\n",                 // 8
        "qos = 9\n",                     // 9
        "trust = 1\n",                   // 10
        "bogus = true\n",                // 11
        "[[vport]]\n",                   // 12
        "name = \"vm1\"\n",              // 13
        "uplink = \"eth7\"\n",           // 14
        "mac = \"02:00:00:00:00:01\"\n", // 15
    );
    let found = problems(text);
    let at: Vec<(usize, usize)> = found.iter().map(|p| (p.at.line, p.at.column)).collect();
    assert_eq!(
        at,
        [
            (3, 1),
            (7, 7),
            (8, 8),
            (9, 7),
            (10, 9),
            (11, 1),
            (13, 8),
            (14, 10)
        ],
        "{}",
        ConfigError::Invalid(found.clone())
    );
    let shown = ConfigError::Invalid(found).to_string();
    assert_eq!(
        shown.lines().count(),
        16,
        "one line per problem, one per hint:\n{shown}"
    );
}

// --- robustness -------------------------------------------------------------------------

fn toml_ish_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "name",
        "uplink",
        "mac",
        "vlan",
        "qos",
        "proto",
        "pci",
        "ifname",
        "num_vfs",
        "vf_driver",
        "state_dir",
        "max_tx_rate_mbps",
        "min_tx_rate_mbps",
        "spoofchk",
        "trust",
        "link_state",
        "offload",
        "vport",
        "bogus",
        "\"é\"",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0i64..5000).prop_map(|n| n.to_string()),
        "\"[0-9a-fA-F:.]{0,20}\"",
        "\"[a-zA-Z0-9._ é/-]{0,70}\"",
        Just("true".to_string()),
        Just("[1, \"a\"]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("1979-05-27".to_string()),
        "[ -~]{0,12}",
    ];
    prop_oneof![
        Just("[[uplink]]".to_string()),
        Just("[[vport]]".to_string()),
        Just("[vport]".to_string()),
        Just("[uplink.x]".to_string()),
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        "[ -~é]{0,30}",
    ]
}

proptest! {
    #[test]
    fn parse_never_panics_and_explains_every_refusal(
        lines in prop::collection::vec(toml_ish_line(), 0..24)
    ) {
        let text = lines.join("\n");
        match parse(Path::new("p.toml"), &text) {
            Ok(cfg) => {
                for v in &cfg.vports {
                    prop_assert!(cfg.uplink_of(v).is_some());
                    prop_assert!(v.vlan.is_none_or(|id| (1..=4094).contains(&id)));
                    prop_assert!(v.qos <= 7 && !v.mac.is_multicast() && !v.mac.is_zero());
                }
            }
            Err(e) => {
                prop_assert!(!e.problems().is_empty());
                for p in e.problems() {
                    prop_assert!(p.at.line >= 1 && p.at.line <= text.lines().count().max(1) + 1);
                    prop_assert!(!p.hint.is_empty());
                }
            }
        }
    }

    #[test]
    fn parse_never_panics_on_any_text(text in "\\PC{0,300}") {
        let _ = parse(Path::new("p.toml"), &text);
    }
}

fn pool_text(uplink_extra: &str, pools: &str) -> String {
    format!("[[uplink]]\npci = \"0000:01:00.0\"\n{uplink_extra}\n{pools}")
}

#[test]
fn a_pool_names_its_uplink_by_pci_or_mac_in_any_spelling() {
    let cfg = parse_ok(&pool_text(
        "",
        "[[pool]]\nname = \"a\"\nuplink = \"01:00.0\"\ncount = 1\n",
    ));
    assert_eq!(
        cfg.pools[0].uplink,
        crate::model::pool::PoolUplink::Pci("0000:01:00.0".into())
    );
    assert_eq!(cfg.pools[0].defaults, Default::default());
    let cfg = parse_ok(
        "[[uplink]]\nmac = \"52:54:00:12:34:56\"\n[[pool]]\nname = \"a\"\nuplink = \"52:54:00:12:34:56\"\ncount = 3\n",
    );
    assert_eq!(cfg.pools[0].count, 3);
    assert_eq!(cfg.uplink_of_pool(&cfg.pools[0]), Some(&cfg.uplinks[0]));
}

#[test]
fn bad_pools_are_refused_with_where_and_what() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "",
            "[[pool]]\nname = \"a\"\n",
            "bad.toml:4:1: pool \"a\": missing uplink, count",
        ),
        (
            "",
            "[[pool]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\ncount = 0\n",
            "bad.toml:7:9: pool \"a\": count 0 is outside 1..65535",
        ),
        (
            "",
            "[[pool]]\nname = \"a\"\nuplink = \"0000:02:00.0\"\ncount = 1\n",
            "bad.toml:6:10: pool \"a\": uplink \"0000:02:00.0\" names no [[uplink]]",
        ),
        (
            "",
            "[[pool]]\nname = \"a\"\nuplink = \"eth0\"\ncount = 1\n",
            "bad.toml:6:10: pool \"a\": uplink \"eth0\" is neither a PCI address nor a MAC",
        ),
        (
            "",
            "[[pool]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\ncount = 1\ndriver = \"vfio-pci\"\n",
            "bad.toml:8:10: pool \"a\": driver \"vfio-pci\" leaves the VFs no netdev",
        ),
        (
            "",
            "[[pool]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\ncount = 1\nvlan = 5000\n",
            "bad.toml:8:8: pool \"a\": vlan 5000 is outside 1..4094",
        ),
        (
            "",
            "[[pool]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\ncount = 1\nqos = 2\n",
            "bad.toml:8:7: pool \"a\": qos without vlan",
        ),
        (
            "",
            "[[pool]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\ncount = 1\nmtu = 20\n",
            "bad.toml:8:7: pool \"a\": mtu 20 is outside 68..65535",
        ),
        (
            "",
            "[[pool]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\ncount = 1\nvlna = 3\n",
            "bad.toml:8:1: pool \"a\": unknown key vlna",
        ),
        (
            "",
            "[[pool]]\nname = \"a b\"\nuplink = \"0000:01:00.0\"\ncount = 1\n",
            "bad.toml:5:8: pool \"a b\": name must be",
        ),
        (
            "",
            "[[pool]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\ncount = 1\n[[pool]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\ncount = 1\n",
            "bad.toml:9:8: pool \"a\": name is already used by the pool at bad.toml:4:1",
        ),
        (
            "num_vfs = 3\nswitch_vf = 0",
            "[[pool]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\ncount = 2\n[[pool]]\nname = \"b\"\nuplink = \"0000:01:00.0\"\ncount = 1\n",
            "pool \"b\": the pools of uplink pci 0000:01:00.0 (\"a\", \"b\") hold 4 VFs with its switch_vf but it has num_vfs = 3",
        ),
    ];
    for (uplink_extra, pools, want) in cases {
        let text = pool_text(uplink_extra, pools);
        let got: Vec<String> = problems(&text).iter().map(ToString::to_string).collect();
        assert!(
            got.iter().any(|p| p.contains(want)),
            "{text}\nwanted {want:?}\ngot {got:#?}"
        );
    }
}
