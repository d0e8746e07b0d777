//! Fuzz target bodies: one function per input format vportd reads from something it does not
//! control, each taking raw bytes. They live in the library so that two engines drive the
//! same code: libFuzzer through `cargo fuzz` (the `fuzz/` crate, nightly) and proptest in
//! `tests/fuzz_props.rs` (stable, part of every `cargo test`); `scripts/fuzz` runs whichever
//! is available for a bounded time.
//!
//! A target panics (which both engines report as a crash) when an invariant breaks:
//! - the code under test panics (overflow, slice bounds, an `expect`);
//! - a rejected input's error is empty or does not say where and what (a file:line:col, a
//!   line number, the key or the text at fault);
//! - where a format can be written back, parse -> format -> parse is not the identity.
//!
//! Not a stable API: only the fuzzers and tests call this.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use crate::daemon::events::{self, DeviceEvent};
use crate::daemon::protocol::{self, Request, Response};
use crate::facts::inventory;
use crate::facts::parse;
use crate::facts::pciids::PciIds;
use crate::facts::profile;
use crate::host::fs::KernelFs;
use crate::host::netlink::NetlinkSnapshot;
use crate::model::inventory::Inventory;
use crate::model::mac::Mac;
use crate::model::profile::ProfileSet;
use crate::provision::config;
use crate::provision::plan::{self, PlanOptions};
use crate::provision::state::State;
use crate::rebalance::sample;
use crate::switch::io::mem::{self, MemPeer};
use crate::switch::packet::{EthFrame, VlanTag, write_retagged};
use crate::switch::vlan::{VlanMode, VlanSet};
use crate::switch::{PortConfig, Switch, SwitchConfig};

/// A fuzz target: checks its invariants on one input, panicking when one breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name `cargo fuzz` and `scripts/fuzz` know it.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("hwprofile", hwprofile),
    ("cpulist", cpulist),
    ("hex_mask", hex_mask),
    ("proc_interrupts", proc_interrupts),
    ("proc_stat", proc_stat),
    ("uevent", uevent),
    ("udev_env", udev_env),
    ("control_request", control_request),
    ("control_response", control_response),
    ("frame", frame),
    ("pci_ids", pci_ids),
];

/// Looks a target up by name.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Asserts that an error message is a sentence worth showing: not empty, not just spaces,
/// and mentioning `must_name` (where or what).
fn says(message: &str, must_name: &str, input: &dyn std::fmt::Debug) {
    assert!(
        !message.trim().is_empty(),
        "an empty error message for {input:?}"
    );
    assert!(
        message.contains(must_name),
        "the error {message:?} does not name {must_name:?} (input {input:?})"
    );
}

/// The inventory configs are checked against: the captured 82576 guest (a PF with VFs, a
/// virtio NIC), so that fuzzed configs naming its PCI addresses reach the planner.
fn fixture_inventory() -> &'static Inventory {
    static INV: OnceLock<Inventory> = OnceLock::new();
    INV.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guest-82576-7vfs");
        let text = std::fs::read_to_string(dir.join("netlink.json"))
            .expect("the fixture tests/fixtures/guest-82576-7vfs is part of the source tree");
        let nl: NetlinkSnapshot =
            serde_json::from_str(&text).expect("the fixture's netlink.json parses");
        inventory::discover(&KernelFs::at(&dir), &nl, ProfileSet::builtin())
            .expect("discovery over the fixture succeeds")
    })
}

/// The provisioning config: parse and validate, then check against the fixture host and
/// plan. Rejections must carry `fuzz.toml:line:col` and a hint for every problem.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // `config::load` refuses non-UTF-8 before parsing (a FilesError)
    };
    let path = Path::new("fuzz.toml");
    let cfg = match config::parse(path, text) {
        Ok(c) => c,
        Err(e) => {
            check_config_error(&e, text);
            return;
        }
    };
    let again = config::parse(path, text).expect("a config that parsed once parses again");
    assert_eq!(cfg, again, "parsing is deterministic");
    let inv = fixture_inventory();
    match config::check_against(&cfg, inv) {
        Ok(uplinks) => {
            for opts in [
                PlanOptions::default(),
                PlanOptions {
                    allow_disruption: true,
                },
            ] {
                if let Err(e) = plan::plan(
                    inv,
                    ProfileSet::builtin(),
                    &cfg,
                    &uplinks,
                    &State::default(),
                    opts,
                ) {
                    says(&e.to_string(), "", &text);
                }
            }
        }
        Err(e) => check_config_error(&e, text),
    }
}

fn check_config_error(e: &config::ConfigError, text: &str) {
    let shown = e.to_string();
    says(&shown, "fuzz.toml:", &text);
    assert!(
        !e.problems().is_empty(),
        "an invalid config with no problem"
    );
    for p in e.problems() {
        assert!(p.at.line >= 1 && p.at.column >= 1, "{p:?}");
        says(&p.message, "", &text);
        says(&p.hint, "", &text);
    }
}

/// A hardware profile: parse and validate; an accepted profile written back as TOML parses
/// to the same profile.
pub fn hwprofile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("hwprofiles/fuzz.toml");
    match profile::parse_profile(path, text) {
        Ok(p) => {
            // `name` comes from the file name, not the text: leave it out of the text.
            let mut table = toml::Table::try_from(&p).expect("a valid profile serializes");
            table.remove("name");
            let written = toml::to_string(&table).expect("a TOML table serializes");
            let back = profile::parse_profile(path, &written)
                .unwrap_or_else(|e| panic!("a written-back profile is refused: {e}\n{written}"));
            assert_eq!(p, back, "profile round trip");
        }
        Err(e) => {
            for one in e.errors() {
                says(&one.to_string(), "hwprofiles/fuzz.toml", &text);
            }
        }
    }
}

/// A cpulist (`0-3,8`): accepted lists are sorted, deduplicated, bounded, and survive
/// format -> parse.
pub fn cpulist(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse::cpulist(&text) {
        Ok(cpus) => {
            assert!(
                cpus.windows(2).all(|w| w[0] < w[1]),
                "sorted, no duplicates"
            );
            assert!(cpus.iter().all(|c| *c <= parse::MAX_CPU));
            let formatted = parse::format_cpulist(&cpus);
            assert_eq!(
                parse::cpulist(&formatted).as_ref(),
                Ok(&cpus),
                "{formatted}"
            );
        }
        Err(e) => says(&e.to_string(), "is not a CPU list", &text),
    }
}

/// The system's PCI id database (pci.ids, a file another package installs): an error names
/// the file and a line that exists; parsing is deterministic; a comment or the class list
/// appended changes no lookup.
pub fn pci_ids(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match PciIds::parse(&text, "fuzz.ids") {
        Ok(ids) => {
            let again = PciIds::parse(&text, "fuzz.ids").expect("parses again");
            assert_eq!(ids.counts(), again.counts(), "parsing is deterministic");
            let more = format!("{text}\n# a comment\nC 02  Network controller\n\t00  Ethernet\n");
            let more = PciIds::parse(&more, "fuzz.ids").expect("a comment and classes appended");
            assert_eq!(ids.counts(), more.counts(), "{text:?}");
        }
        Err(e) => {
            says(&e.to_string(), &format!("fuzz.ids:{}: ", e.line), &text);
            assert!(
                e.line >= 1 && e.line <= text.lines().count(),
                "line {} of {} in {text:?}",
                e.line,
                text.lines().count()
            );
        }
    }
}

/// A hex CPU mask (`ff,00000001`): accepted masks survive format -> parse.
pub fn hex_mask(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse::hex_mask(&text) {
        Ok(cpus) => {
            assert!(
                cpus.windows(2).all(|w| w[0] < w[1]),
                "sorted, no duplicates"
            );
            let formatted = parse::format_hex_mask(&cpus);
            assert_eq!(
                parse::hex_mask(&formatted).as_ref(),
                Ok(&cpus),
                "{formatted}"
            );
        }
        Err(e) => says(&e.to_string(), "is not a hexadecimal CPU mask", &text),
    }
}

/// /proc/interrupts, and what the rebalancer derives from two readings of it.
pub fn proc_interrupts(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let columns = parse::interrupt_columns(&text);
    match parse::interrupts(&text) {
        Ok(lines) => {
            let width = text
                .lines()
                .next()
                .map_or(0, |h| h.split_whitespace().count());
            for (irq, l) in &lines {
                assert_eq!(*irq, l.irq);
                assert!(l.per_cpu.len() <= width, "more counts than CPU columns");
                let _ = l.total();
                let _ = parse::queue_of_irq_name(&l.name);
            }
            // A reading against itself and against nothing: no interrupts happened.
            let same = sample::irq_deltas(&lines, &lines, &columns);
            let none = sample::irq_deltas(&BTreeMap::new(), &lines, &columns);
            // Every numbered IRQ as a queue, with and without IRQ time to share out.
            let irqs: Vec<u32> = lines.keys().copied().collect();
            let busy = BTreeMap::from([(
                0,
                sample::CpuLoad {
                    busy: 0.5,
                    irq: 0.25,
                },
            )]);
            for (deltas, cpus) in [(&none, &BTreeMap::new()), (&none, &busy), (&same, &busy)] {
                let (loads, _) = sample::queue_loads(deltas, cpus, &irqs, 1.0, 2e-6);
                for l in loads.values() {
                    assert!(l.load.is_finite() && l.rate.is_finite() && l.load >= 0.0);
                }
            }
        }
        Err(e) => says(&e.to_string(), "of /proc/interrupts is malformed", &text),
    }
}

/// /proc/stat, and the CPU loads the rebalancer derives from two readings of it.
pub fn proc_stat(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse::proc_stat(&text) {
        Ok(cpus) => {
            for t in cpus.values() {
                let _ = (t.total(), t.busy(), t.irq_time());
            }
            for l in sample::cpu_loads(&cpus, &cpus)
                .values()
                .chain(sample::cpu_loads(&BTreeMap::new(), &cpus).values())
            {
                assert!((0.0..=1.0).contains(&l.busy) && (0.0..=1.0).contains(&l.irq));
            }
        }
        Err(e) => says(&e.to_string(), "of /proc/stat is malformed", &text),
    }
}

/// An accepted device event must pass the control socket's re-validation and survive the
/// trip through a reconcile request.
fn check_event(ev: &DeviceEvent) {
    ev.validate()
        .unwrap_or_else(|e| panic!("an accepted event fails validation: {e}: {ev:?}"));
    assert!(!ev.to_string().is_empty());
    let req = Request::Reconcile { device: ev.clone() };
    let line = protocol::encode_request(&req);
    let back = protocol::decode_request(&line)
        .unwrap_or_else(|e| panic!("an accepted event does not cross the socket: {e}: {ev:?}"));
    assert_eq!(back, req);
}

fn check_hotplug_error(e: &events::HotplugError, input: &dyn std::fmt::Debug) {
    let shown = e.to_string();
    says(&shown, "", input);
    // Each refusal names the key or the part of the message at fault.
    let names_something = ["ACTION", "SUBSYSTEM", "DEVPATH", "event", "uevent"]
        .iter()
        .chain(hotplug_keys().iter())
        .any(|k| shown.contains(k));
    assert!(names_something, "{shown:?} names no key ({input:?})");
}

fn hotplug_keys() -> &'static [&'static str] {
    &["INTERFACE", "IFINDEX", "PCI_SLOT_NAME", "DRIVER", "SEQNUM"]
}

/// A kernel uevent message from the netlink socket (`ACTION@DEVPATH\0KEY=VALUE\0...`).
pub fn uevent(data: &[u8]) {
    match events::parse_uevent(data) {
        Ok(pairs) => match events::from_pairs(pairs.iter().copied()) {
            Ok(Some(ev)) => check_event(&ev),
            Ok(None) => {}
            Err(e) => check_hotplug_error(&e, &data),
        },
        Err(e) => check_hotplug_error(&e, &data),
    }
}

/// udev's environment for `vportd hotplug`: lines of KEY=VALUE, values as raw bytes.
pub fn udev_env(data: &[u8]) {
    let pairs: Vec<(&str, &[u8])> = data
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let eq = line.iter().position(|b| *b == b'=')?;
            Some((std::str::from_utf8(&line[..eq]).ok()?, &line[eq + 1..]))
        })
        .collect();
    match events::from_pairs(pairs.iter().copied()) {
        Ok(Some(ev)) => check_event(&ev),
        Ok(None) => {}
        Err(e) => check_hotplug_error(&e, &data),
    }
}

/// A request line as the daemon reads it from its control socket: accepted requests
/// round-trip; refused ones get an error response that itself round-trips.
pub fn control_request(data: &[u8]) {
    match protocol::decode_request(data) {
        Ok(req) => {
            if let Request::Reconcile { device } = &req {
                check_event(device);
            }
            let line = protocol::encode_request(&req);
            assert_eq!(protocol::decode_request(&line).ok().as_ref(), Some(&req));
        }
        Err(e) => {
            says(&e.to_string(), "", &data);
            let resp = protocol::refusal(&e);
            let line = protocol::encode_response(&resp);
            let back = protocol::decode_response(&line)
                .unwrap_or_else(|e| panic!("a refusal does not decode: {e}"));
            assert_eq!(back, resp);
            let Response::Error { message, .. } = back else {
                panic!("a refusal that is not an error: {back:?}")
            };
            says(&message, "", &data);
        }
    }
}

/// A response line as `vportd ctl` and `vportd hotplug` read it from the daemon.
pub fn control_response(data: &[u8]) {
    match protocol::decode_response(data) {
        Ok(resp) => {
            let line = protocol::encode_response(&resp);
            let back = protocol::decode_response(&line)
                .unwrap_or_else(|e| panic!("a decoded response does not re-decode: {e}"));
            // JSON numbers may change form (1.0 -> 1), so compare as JSON values.
            assert_eq!(
                serde_json::to_value(&back).ok(),
                serde_json::to_value(&resp).ok()
            );
        }
        Err(e) => says(&e.to_string(), "", &data),
    }
}

/// An Ethernet frame from a VM or the wire: the packet views, re-tagging, and the whole
/// switch pipeline (an access port, a trunk, a trunk with a native VLAN) fed the frame on
/// every port.
pub fn frame(data: &[u8]) {
    if let Ok(f) = EthFrame::new_checked(data) {
        let _ = (f.dst(), f.src(), f.is_service_tagged(), f.ethertype());
        let _ = (f.payload(), f.five_tuple());
        let mut out = vec![0u8; data.len() + 4];
        for tag in [None, Some(VlanTag { vid: 42, pcp: 5 })] {
            let n = write_retagged(f, tag, &mut out);
            // The addresses, then the new tag if any, then everything from the inner
            // ethertype on, unchanged. (Untagging a double-tagged frame leaves its inner tag
            // as the outer one, as on any bridge, even when that tag is cut short.)
            assert_eq!(&out[..12], &data[..12]);
            let rest = &data[f.header_len() - 2..];
            let at = if tag.is_some() { 16 } else { 12 };
            assert_eq!(&out[at..n], rest);
            if tag.is_some() {
                let g = EthFrame::new_checked(&out[..n]).expect("a tagged frame is a frame");
                assert_eq!(g.tag(), tag);
            }
        }
    } else {
        let e = EthFrame::new_checked(data).unwrap_err();
        says(&e.to_string(), "frame", &data);
    }
    switch_once(data);
}

fn switch_once(data: &[u8]) {
    let mut sw = Switch::new(SwitchConfig::new("fuzz"));
    let mut access = PortConfig::access("a", 10);
    access.mac = Some(Mac([2, 0, 0, 0, 0, 1]));
    let ports = [
        access,
        PortConfig::trunk(
            "t",
            VlanMode::Trunk {
                allowed: VlanSet::from_vids([10, 20]),
                native: None,
            },
        ),
        PortConfig::trunk(
            "n",
            VlanMode::Trunk {
                allowed: VlanSet::from_vids([20]),
                native: Some(10),
            },
        ),
    ];
    let mut peers: Vec<MemPeer> = Vec::new();
    for p in ports {
        let (edge, peer) = mem::pair();
        sw.add_port(p, Some(Box::new(edge)))
            .expect("a fresh switch takes three ports");
        peers.push(peer);
    }
    for peer in &peers {
        assert!(peer.inject(data));
        while sw.poll(1_000_000_000) > 0 {}
    }
    for peer in &peers {
        for out in peer.take() {
            assert!(
                out.len() >= 14,
                "the switch sent a runt of {} bytes",
                out.len()
            );
        }
    }
}
