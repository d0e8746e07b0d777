//! The `[[pool]]` tables: VFs of an uplink set aside for attachments (containers through
//! CNI), each pool with a name a network config names, a size, a driver and the attributes an
//! attachment gets where it asks for nothing.

use std::collections::HashMap;
use std::str::FromStr;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use super::checker::{Checker, lookup, ranged};
use super::keys::POOL_KEYS;
use super::names::{is_driver_name, is_vport_name, normalize_pci};
use super::uplink::Uplinks;
use super::vport::rates;
use super::{MAX_VPORT_NAME, Mac, Uplink};
use crate::model::location::Location;
use crate::model::pool::{PoolSpec, PoolUplink, VfAttributes};

/// `[[pool]]` as written; integers as i64 so that out-of-range values get our message.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawPool {
    name: Option<Spanned<String>>,
    uplink: Option<Spanned<String>>,
    count: Option<Spanned<i64>>,
    driver: Option<Spanned<String>>,
    vlan: Option<Spanned<i64>>,
    qos: Option<Spanned<i64>>,
    max_tx_rate_mbps: Option<Spanned<i64>>,
    min_tx_rate_mbps: Option<Spanned<i64>>,
    spoofchk: Option<Spanned<bool>>,
    trust: Option<Spanned<bool>>,
    mtu: Option<Spanned<i64>>,
}

/// A pool that parsed, with where it was written (for the checks across pools).
pub(super) struct ParsedPool {
    pub(super) spec: PoolSpec,
    /// Into [`super::Config::uplinks`].
    uplink: usize,
    count_at: std::ops::Range<usize>,
}

/// Every `[[pool]]` that parsed, each name once, their sizes within their uplinks' num_vfs.
pub(super) fn pools(
    ck: &mut Checker<'_>,
    tables: &[Spanned<DeTable<'_>>],
    uplinks: &Uplinks,
) -> Vec<PoolSpec> {
    let mut names: HashMap<String, Location> = HashMap::new();
    let mut out: Vec<ParsedPool> = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let Some(p) = pool(ck, i, table, uplinks) else {
            continue;
        };
        if let Some(first) = names.get(&p.spec.name) {
            ck.report(
                &lookup(table, "name").map_or(table.span(), |n| n.span()),
                format!(
                    "pool {:?}: name is already used by the pool at {first}",
                    p.spec.name
                ),
                "each pool needs its own name: network configs name it",
            );
            continue;
        }
        names.insert(p.spec.name.clone(), ck.at(&table.span()));
        out.push(p);
    }
    fits_num_vfs(ck, &out, &uplinks.list);
    out.into_iter().map(|p| p.spec).collect()
}

/// One `[[pool]]`; None after a problem with its name, uplink or count was reported.
fn pool(
    ck: &mut Checker<'_>,
    i: usize,
    table: &Spanned<DeTable<'_>>,
    uplinks: &Uplinks,
) -> Option<ParsedPool> {
    let what = match lookup(table, "name").and_then(|n| n.get_ref().as_str()) {
        Some(n) => format!("pool {n:?}"),
        None => format!("pool #{}", i + 1),
    };
    let raw: RawPool = ck.table(table, &what, "[[pool]]", POOL_KEYS);
    let absent: Vec<&str> = [
        ("name", raw.name.is_none()),
        ("uplink", raw.uplink.is_none()),
        ("count", raw.count.is_none()),
    ]
    .into_iter()
    .filter(|(k, gone)| *gone && lookup(table, k).is_none())
    .map(|(k, _)| k)
    .collect();
    if !absent.is_empty() {
        ck.report(
            &table.span(),
            format!("{what}: missing {}", absent.join(", ")),
            "every [[pool]] needs name, uplink and count",
        );
    }
    let name = name(ck, &what, &raw);
    let uplink = uplink_ref(ck, &what, &raw, uplinks);
    let count: Option<u32> = ranged(
        ck,
        &what,
        "count",
        &raw.count,
        (1, 65535),
        "count is how many VFs of the uplink the pool holds: at least 1",
    );
    let driver = driver(ck, &what, &raw);
    let defaults = defaults(ck, &what, &raw);
    let (uplink_at, uplink) = uplink?;
    Some(ParsedPool {
        spec: PoolSpec {
            name: name?,
            uplink,
            count: count?,
            driver,
            defaults,
        },
        uplink: uplink_at,
        count_at: raw.count.as_ref()?.span(),
    })
}

fn name(ck: &mut Checker<'_>, what: &str, raw: &RawPool) -> Option<String> {
    let n = raw.name.as_ref()?;
    if is_vport_name(n.get_ref()) {
        return Some(n.get_ref().clone());
    }
    ck.report(
        &n.span(),
        format!("{what}: name must be 1 to {MAX_VPORT_NAME} of A-Z a-z 0-9 . _ -"),
        "a network config names the pool and its metrics carry it as a label: use letters, digits, '.', '_' and '-'",
    );
    None
}

/// The uplink as a PCI address or MAC (normalized), and the `[[uplink]]` it names.
fn uplink_ref(
    ck: &mut Checker<'_>,
    what: &str,
    raw: &RawPool,
    uplinks: &Uplinks,
) -> Option<(usize, PoolUplink)> {
    let u = raw.uplink.as_ref()?;
    let r = u.get_ref();
    let parsed = match (normalize_pci(r), Mac::from_str(r)) {
        (Ok(bdf), _) => PoolUplink::Pci(bdf),
        (_, Ok(mac)) => PoolUplink::Mac(mac),
        _ => {
            ck.report(
                &u.span(),
                format!("{what}: uplink {r:?} is neither a PCI address nor a MAC"),
                "name the PF as its [[uplink]] does, by pci (e.g. \"0000:01:00.0\") or mac: a pool's VFs must not move with an interface rename",
            );
            return None;
        }
    };
    if let Some(i) = uplinks.list.iter().position(|up| up.selector.matches(r)) {
        return Some((i, parsed));
    }
    if !uplinks.written.iter().any(|w| w == r) {
        ck.report(
            &u.span(),
            format!("{what}: uplink {r:?} names no [[uplink]]"),
            "declare the PF in an [[uplink]] with the same pci or mac (it says how many VFs the PF gets), then name it here",
        );
    }
    None
}

/// A kernel netdev driver: a container needs the VF's netdev, which vfio-pci takes away.
fn driver(ck: &mut Checker<'_>, what: &str, raw: &RawPool) -> Option<String> {
    let d = raw.driver.as_ref()?;
    let v = d.get_ref();
    if !is_driver_name(v) {
        ck.report(
            &d.span(),
            format!("{what}: driver {v:?} is not a driver name"),
            "name a directory of /sys/bus/pci/drivers/, e.g. \"igbvf\", or omit driver for the PF's usual VF driver",
        );
        return None;
    }
    if v == "vfio-pci" {
        ck.report(
            &d.span(),
            format!("{what}: driver \"vfio-pci\" leaves the VFs no netdev to move into a container"),
            "a pool's VFs go into containers' namespaces as network interfaces: omit driver (the PF's usual VF driver) or name a netdev driver such as \"igbvf\"; VMs take VFs as [[vport]]s on an uplink with vf_driver = \"vfio-pci\"",
        );
        return None;
    }
    Some(v.clone())
}

/// What an attachment gets where its network config says nothing.
fn defaults(ck: &mut Checker<'_>, what: &str, raw: &RawPool) -> VfAttributes {
    let vlan: Option<u16> = ranged(
        ck,
        what,
        "vlan",
        &raw.vlan,
        (1, 4094),
        "802.1Q VLAN ids are 1 to 4094 (0 and 4095 are reserved); omit vlan for untagged traffic",
    );
    let qos: Option<u8> = ranged(
        ck,
        what,
        "qos",
        &raw.qos,
        (0, 7),
        "qos is the 802.1p priority carried in the VLAN tag: 0 (best effort) to 7",
    );
    if let (None, Some(q)) = (&raw.vlan, &raw.qos) {
        ck.report(
            &q.span(),
            format!("{what}: qos without vlan"),
            "qos describes the VLAN tag: set vlan too, or remove qos",
        );
    }
    let (max, min) = rates(ck, what, &raw.max_tx_rate_mbps, &raw.min_tx_rate_mbps);
    let mtu: Option<u32> = ranged(
        ck,
        what,
        "mtu",
        &raw.mtu,
        (68, 65535),
        "the MTU the container's interface gets, from 68 (IPv4's minimum) to the VF driver's maximum; omit it for the driver's default",
    );
    VfAttributes {
        vlan,
        qos,
        max_tx_rate_mbps: max,
        min_tx_rate_mbps: min,
        spoofchk: raw.spoofchk.as_ref().map(|b| *b.get_ref()),
        trust: raw.trust.as_ref().map(|b| *b.get_ref()),
        mtu,
    }
}

/// The pools of an uplink that says how many VFs it has fit in them, with its `switch_vf`.
fn fits_num_vfs(ck: &mut Checker<'_>, pools: &[ParsedPool], uplinks: &[Uplink]) {
    for (i, up) in uplinks.iter().enumerate() {
        let Some(n) = up.num_vfs else { continue };
        let on: Vec<&ParsedPool> = pools.iter().filter(|p| p.uplink == i).collect();
        let wanted: u32 =
            on.iter().map(|p| p.spec.count).sum::<u32>() + u32::from(up.switch_vf.is_some());
        if let Some(last) = on.last()
            && wanted > n
        {
            let names: Vec<String> = on.iter().map(|p| format!("{:?}", p.spec.name)).collect();
            ck.report(
                &last.count_at,
                format!(
                    "pool {:?}: the pools of uplink {} ({}) hold {wanted} VFs{} but it has num_vfs = {n}",
                    last.spec.name,
                    up.selector,
                    names.join(", "),
                    if up.switch_vf.is_some() {
                        " with its switch_vf"
                    } else {
                        ""
                    },
                ),
                format!("raise num_vfs to at least {wanted}, or lower the pools' count"),
            );
        }
    }
}
