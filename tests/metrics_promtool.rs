//! Every metric family the daemon can serve passes `promtool check metrics` (Debian's
//! prometheus package; scripts/setup-host): the families the running daemon's endpoint
//! shows are checked in tests/rebalance_live.rs on its real output; here the ones that need
//! a software switch, pools, actuation errors or irqbalance, rendered by the daemon's own
//! renderers from data of each kind, label values that need escaping included.

mod common;

use vportd::daemon::metrics::{self, Stats, parse_samples, sample_value};
use vportd::facts::irqbalance::parse_cmdline;
use vportd::provision::state::State;

const SWITCH: &str = r#"{
  "taken_unix_s": 1700000000,
  "ports": [
    {"switch": "lab", "uplink": "0000:01:00.0", "port": "uplink", "vport": null,
     "netdev": "eth0", "edge": "af_packet", "rx_packets": 10, "rx_bytes": 1000,
     "tx_packets": 20, "tx_bytes": 2000, "tx_flooded": 3, "learn_limited": 0,
     "drops": {"acl": 1, "vlan": 0}},
    {"switch": "lab", "uplink": "0000:01:00.0", "port": "vm \"a\"", "vport": "vm \"a\"",
     "netdev": "vp-vm-a", "edge": "tap", "rx_packets": 5, "rx_bytes": 500,
     "tx_packets": 6, "tx_bytes": 600, "tx_flooded": 0, "learn_limited": 0,
     "drops": {"acl": 0, "vlan": 2}}
  ],
  "switches": [
    {"name": "lab", "kind": "external", "uplink": "0000:01:00.0", "members": ["uplink", "vm \"a\""]},
    {"name": "office", "kind": "internal", "host_netdev": "vsw-office", "members": ["host"]}
  ]
}"#;

const STATE: &str = r#"{"version": 1, "vports": {
  "vm-a": {"uplink": "0000:01:00.0", "path": {"kind": "vf", "index": 0}, "reason": "",
           "vf_bdf": "0000:01:10.0", "applied": null, "health": "provisioned"},
  "vm-b": {"uplink": "0000:01:00.0", "path": {"kind": "software"}, "reason": "no VF free",
           "applied": null, "health": "lost"}},
  "pools": [{"name": "ctr", "pf": "0000:01:00.0", "vfs": [1, 2, 3], "defaults": {}}]}"#;

#[test]
fn every_family_passes_promtool() {
    let mut stats = Stats {
        ticks: 3,
        tick_seconds_sum: 0.004,
        irqbalance: Some(vec![
            parse_cmdline(7, "irqbalance\0--foreground\0"),
            parse_cmdline(
                8,
                "irqbalance\0--policyscript=/usr/lib/vportd/irqbalance-policy\0",
            ),
        ]),
        ..Stats::default()
    };
    stats.tick_buckets[2] = 3;
    stats.moves.insert("spread", 2);
    stats.errors.insert("EIO".into(), 1);
    stats.errors.insert("EPERM \"x\"\n".into(), 1);
    let state: State = serde_json::from_str(STATE).expect("the state parses");
    let snap: vportd::softpath::Snapshot =
        serde_json::from_str(SWITCH).expect("the snapshot parses");
    let text = metrics::render(&stats, &state) + &metrics::render_switch(&snap);
    let s = parse_samples(&text);
    // The data went in: the families are there with their values.
    for (name, labels, want) in [
        ("vportd_irqbalance_running", vec![], 1.0),
        ("vportd_irqbalance_without_policy", vec![], 1.0),
        ("vportd_tick_duration_seconds_count", vec![], 3.0),
        (
            "vportd_tick_duration_seconds_bucket",
            vec![("le", "0.001")],
            3.0,
        ),
        (
            "vportd_tick_duration_seconds_bucket",
            vec![("le", "0.0005")],
            0.0,
        ),
        ("vportd_pool_capacity", vec![("pool", "ctr")], 3.0),
        ("vportd_switch_members", vec![("switch", "lab")], 2.0),
        (
            "vportd_switch_drops_total",
            vec![("port", "vm \"a\""), ("reason", "vlan")],
            2.0,
        ),
        (
            "vportd_actuation_errors_total",
            vec![("errno", "EPERM \"x\"\n")],
            1.0,
        ),
        (
            "vportd_vport_info",
            vec![("vport", "vm-b"), ("path", "software")],
            1.0,
        ),
    ] {
        assert_eq!(
            sample_value(&s, name, &labels),
            Some(want),
            "{name} {labels:?}:\n{text}"
        );
    }
    if let Some(problems) = common::promtool_check(&text) {
        panic!("{problems}\n{text}");
    }
}

/// The linter is no rubber stamp: what the endpoint used to serve (a `_sum` typed as a
/// counter beside a gauge of the same stem) is refused.
#[test]
fn promtool_refuses_a_lone_sum_counter() {
    let old = "# HELP vportd_tick_duration_seconds_sum Time all periods took.\n\
               # TYPE vportd_tick_duration_seconds_sum counter\n\
               vportd_tick_duration_seconds_sum 0.5\n";
    let which = std::process::Command::new("sh")
        .args(["-c", "command -v promtool"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !which && std::env::var_os("CI").is_none() {
        eprintln!("SKIPPED: no promtool (scripts/setup-host)");
        return;
    }
    let said = common::promtool_check(old).expect("promtool refuses it");
    assert!(said.contains("_total") || said.contains("_sum"), "{said}");
}
