//! The `[[uplink]]` tables: which PF, and how many VFs, queues and RSS spread it gets.

use std::collections::HashMap;
use std::str::FromStr;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use super::checker::{Checker, MAC_HINT, ranged, word};
use super::keys::UPLINK_KEYS;
use super::names::{is_driver_name, is_ifname, normalize_pci};
use super::{Mac, RssSpread, Uplink, UplinkSelector};
use crate::model::edge::NetdevEdge;
use crate::model::location::Location;

/// `[[uplink]]` as written. Every field is optional and spanned so that the parser can report
/// each missing or bad one itself, pointing at the value.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawUplink {
    pci: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    ifname: Option<Spanned<String>>,
    num_vfs: Option<Spanned<i64>>,
    vf_driver: Option<Spanned<String>>,
    channels: Option<Spanned<i64>>,
    rss: Option<Spanned<String>>,
    rss_weights: Option<Spanned<Vec<Spanned<i64>>>>,
    switch_edge: Option<Spanned<String>>,
    switch_vf: Option<Spanned<i64>>,
    bring_up: Option<Spanned<bool>>,
}

/// The uplinks that parsed, and every selector written (valid or not), so that a vPort
/// naming a broken uplink is not reported a second time as naming none.
#[derive(Default)]
pub(super) struct Uplinks {
    pub(super) list: Vec<Uplink>,
    pub(super) written: Vec<String>,
}

/// Every `[[uplink]]`, each PF declared once.
pub(super) fn uplinks(ck: &mut Checker<'_>, tables: &[Spanned<DeTable<'_>>]) -> Uplinks {
    let mut out = Uplinks::default();
    let mut seen: HashMap<UplinkSelector, Location> = HashMap::new();
    for (i, table) in tables.iter().enumerate() {
        let Some(up) = uplink(ck, i, table, &mut out.written) else {
            continue;
        };
        if let Some(first) = seen.get(&up.selector) {
            ck.report(
                &table.span(),
                format!("uplink {} is declared twice; first at {first}", up.selector),
                "declare each PF once, with all its settings in one [[uplink]]",
            );
            continue;
        }
        seen.insert(up.selector.clone(), up.at.clone());
        out.list.push(up);
    }
    out
}

/// One `[[uplink]]`; None when its selector is missing or bad (after reporting why).
fn uplink(
    ck: &mut Checker<'_>,
    i: usize,
    table: &Spanned<DeTable<'_>>,
    written: &mut Vec<String>,
) -> Option<Uplink> {
    let raw: RawUplink = ck.table(
        table,
        &format!("uplink #{}", i + 1),
        "[[uplink]]",
        UPLINK_KEYS,
    );
    let given: Vec<(&str, &Spanned<String>)> = [
        ("pci", &raw.pci),
        ("mac", &raw.mac),
        ("ifname", &raw.ifname),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    written.extend(given.iter().map(|(_, v)| v.get_ref().clone()));
    let what = match given.first() {
        Some((_, v)) => format!("uplink {:?}", v.get_ref()),
        None => format!("uplink #{}", i + 1),
    };
    let selector = selector(ck, &what, table, &given);
    let num_vfs = ranged(
        ck,
        &what,
        "num_vfs",
        &raw.num_vfs,
        (0, 65535),
        "a PF has at most sriov_totalvfs VFs (vportd discover shows it); omit num_vfs to create as many as its vPorts need",
    );
    let vf_driver = vf_driver(ck, &what, &raw);
    let switch_edge = switch_edge(ck, &what, &raw);
    let switch_vf = switch_vf(ck, &what, &raw, num_vfs);
    let channels: Option<u32> = ranged(
        ck,
        &what,
        "channels",
        &raw.channels,
        (1, 4096),
        "channels is the combined queue count ethtool -L sets: at most the maximum ethtool -l shows",
    );
    let rss = rss(ck, &what, &raw, channels);
    Some(Uplink {
        selector: selector?,
        num_vfs,
        vf_driver,
        channels,
        rss,
        switch_edge,
        switch_vf,
        bring_up: raw.bring_up.is_none_or(Spanned::into_inner),
        at: ck.at(&table.span()),
    })
}

/// Exactly one of pci, mac and ifname, valid.
fn selector(
    ck: &mut Checker<'_>,
    what: &str,
    table: &Spanned<DeTable<'_>>,
    given: &[(&str, &Spanned<String>)],
) -> Option<UplinkSelector> {
    match given {
        [] => {
            ck.report(
                &table.span(),
                format!("{what}: says neither pci, mac nor ifname"),
                "name the PF with exactly one of pci = \"0000:01:00.0\" (stable across renames), mac = \"...\" or ifname = \"...\"",
            );
            None
        }
        [(key, v)] => uplink_selector(ck, what, key, v),
        [_, (second, v), ..] => {
            let keys: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
            ck.report(
                &v.span(),
                format!("{what}: names the PF twice ({})", keys.join(" and ")),
                format!("keep exactly one; pci is the one that survives renames (remove {second})"),
            );
            None
        }
    }
}

fn vf_driver(ck: &mut Checker<'_>, what: &str, raw: &RawUplink) -> Option<String> {
    raw.vf_driver.as_ref().and_then(|d| {
        if is_driver_name(d.get_ref()) {
            Some(d.get_ref().clone())
        } else {
            ck.report(
                &d.span(),
                format!("{what}: vf_driver {:?} is not a driver name", d.get_ref()),
                "name a directory of /sys/bus/pci/drivers/, e.g. \"vfio-pci\", or omit vf_driver for the PF's usual VF driver",
            );
            None
        }
    })
}

fn switch_edge(ck: &mut Checker<'_>, what: &str, raw: &RawUplink) -> NetdevEdge {
    word(
        ck,
        what,
        "switch_edge",
        &raw.switch_edge,
        &[
            ("af_packet", NetdevEdge::AfPacket),
            ("af_xdp", NetdevEdge::AfXdp),
            ("auto", NetdevEdge::Auto),
        ],
        "af_packet carries GSO (bulk TCP); af_xdp needs a driver with native XDP for TCP; auto takes AF_XDP where it opens",
    )
    .unwrap_or_default()
}

/// The trunk VF's index, one of the uplink's own VFs when it says how many.
fn switch_vf(
    ck: &mut Checker<'_>,
    what: &str,
    raw: &RawUplink,
    num_vfs: Option<u32>,
) -> Option<u32> {
    let switch_vf: Option<u32> = ranged(
        ck,
        what,
        "switch_vf",
        &raw.switch_vf,
        (0, 65534),
        "switch_vf is a VF index, from 0 to sriov_totalvfs - 1 (vportd discover shows it)",
    );
    if let (Some(vf), Some(n), Some(at)) = (switch_vf, num_vfs, &raw.switch_vf)
        && vf >= n
    {
        ck.report(
            &at.span(),
            format!("{what}: switch_vf {vf} is not one of its {n} VFs (num_vfs = {n})"),
            format!(
                "VF indexes run from 0 to num_vfs - 1: raise num_vfs to at least {} or pick a lower switch_vf",
                vf + 1
            ),
        );
    }
    switch_vf
}

/// `rss = "equal"` or `rss_weights = [..]`, not both.
fn rss(
    ck: &mut Checker<'_>,
    what: &str,
    raw: &RawUplink,
    channels: Option<u32>,
) -> Option<RssSpread> {
    match (&raw.rss, &raw.rss_weights) {
        (Some(_), Some(w)) => {
            ck.report(
                &w.span(),
                format!("{what}: rss and rss_weights both say how to fill the RSS table"),
                "keep rss = \"equal\" for an even spread, or rss_weights for shares per queue",
            );
            None
        }
        (Some(r), None) => word(
            ck,
            what,
            "rss",
            &raw.rss,
            &[("equal", ())],
            "rss = \"equal\" spreads over every channel; rss_weights = [..] gives each queue a share",
        )
        .filter(|_| !r.get_ref().is_empty())
        .map(|_| RssSpread::Equal),
        (None, Some(w)) => rss_weights(ck, what, w, channels).map(RssSpread::Weights),
        (None, None) => None,
    }
}

/// Shares per queue: each 0..=255, at least one above 0, no more than the channels.
fn rss_weights(
    ck: &mut Checker<'_>,
    what: &str,
    w: &Spanned<Vec<Spanned<i64>>>,
    channels: Option<u32>,
) -> Option<Vec<u32>> {
    let mut weights = Vec::new();
    let mut ok = true;
    for x in w.get_ref() {
        match u32::try_from(*x.get_ref()) {
            Ok(v) if v <= 255 => weights.push(v),
            _ => {
                ck.report(
                    &x.span(),
                    format!(
                        "{what}: rss_weights entry {} is outside 0..255",
                        x.get_ref()
                    ),
                    "weights are shares per queue: whole numbers from 0 (no share) to 255",
                );
                ok = false;
            }
        }
    }
    if ok && (weights.is_empty() || weights.iter().all(|x| *x == 0)) {
        ck.report(
            &w.span(),
            format!("{what}: rss_weights gives no queue a share"),
            "give at least one queue a weight above 0, e.g. [1, 1]",
        );
        ok = false;
    }
    if ok
        && let Some(c) = channels
        && weights.len() as u32 > c
    {
        ck.report(
            &w.span(),
            format!(
                "{what}: rss_weights has {} entries but channels = {c}",
                weights.len()
            ),
            "one weight per queue: at most as many entries as channels",
        );
        ok = false;
    }
    ok.then_some(weights)
}

/// A validated selector, or None after reporting why not.
fn uplink_selector(
    ck: &mut Checker<'_>,
    what: &str,
    key: &str,
    value: &Spanned<String>,
) -> Option<UplinkSelector> {
    let v = value.get_ref();
    let span = value.span();
    match key {
        "pci" => match normalize_pci(v) {
            Ok(bdf) => Some(UplinkSelector::Pci(bdf)),
            Err(()) => {
                ck.report(
                    &span,
                    format!("{what}: pci {v:?} is not a PCI address"),
                    "write domain:bus:device.function in hex, as lspci -D shows it, e.g. \"0000:01:00.0\"",
                );
                None
            }
        },
        "mac" => match Mac::from_str(v) {
            Ok(m) if !m.is_multicast() && !m.is_zero() => Some(UplinkSelector::Mac(m.to_string())),
            Ok(m) => {
                ck.report(
                    &span,
                    format!("{what}: mac {m} cannot be a NIC's address"),
                    "a PF's address is unicast and not all zeros: copy it from ip link or vportd discover",
                );
                None
            }
            Err(()) => {
                ck.report(
                    &span,
                    format!("{what}: mac {v:?} is not a MAC address"),
                    MAC_HINT,
                );
                None
            }
        },
        _ => {
            if is_ifname(v) {
                Some(UplinkSelector::Ifname(v.clone()))
            } else {
                ck.report(
                    &span,
                    format!("{what}: ifname {v:?} is not an interface name"),
                    "interface names are 1 to 15 characters without '/', ':' or spaces; pci = \"...\" is more stable anyway",
                );
                None
            }
        }
    }
}
