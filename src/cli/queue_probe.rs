//! `vportd queue-probe IFNAME` (hidden): each per-vPort queue control tried once on a
//! device, and what the kernel answered, as JSON lines (tests/vm/queues.rs).

use super::{Failure, emit};
use crate::host::ethtool as et;
use crate::model::queues::{FlowRule, FlowTarget, equal_table};
use crate::provision::ops::EthtoolError;

/// A MAC no port holds, for the probe's rules.
const PROBE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x09, 0x01];

pub(super) fn run(ifname: &str) -> Result<(), Failure> {
    let size = et::rss_get(ifname, 0)
        .map(|t| t.indir.len() as u32)
        .unwrap_or(128);
    show(
        "rss-context",
        et::rss_context_create(ifname, &equal_table(size, 0, 2)).map(|c| format!("context {c}")),
    );
    show(
        "ntuple-context",
        et::ntuple_insert(
            ifname,
            &FlowRule {
                dst_mac: PROBE_MAC,
                vlan: Some(100),
                location: 0,
                target: FlowTarget::Context { id: 1 },
            },
        )
        .map(|()| "rule 0".into()),
    );
    show(
        "ntuple-queue",
        et::ntuple_insert(
            ifname,
            &FlowRule {
                dst_mac: PROBE_MAC,
                vlan: None,
                location: 1,
                target: FlowTarget::Queue { index: 1 },
            },
        )
        .map(|()| "rule 1".into()),
    );
    show(
        "l2-fwd-offload",
        et::feature_set(ifname, "l2-fwd-offload", true).map(|()| "on".into()),
    );
    Ok(())
}

/// One JSON line: the control, whether the kernel took it, and its errno if not.
fn show(what: &str, r: Result<String, EthtoolError>) {
    let (ok, detail, errno) = match r {
        Ok(d) => (true, d, String::new()),
        Err(e) => (
            false,
            e.to_string(),
            e.errno().map(|n| format!("{n:?}")).unwrap_or_default(),
        ),
    };
    emit(&format!(
        "{}\n",
        serde_json::json!({"control": what, "ok": ok, "errno": errno, "detail": detail})
    ));
}
