//! The `[[vport]]` tables: each vPort's own settings, then the checks that look across tables
//! (a name or MAC used twice, an uplink reference that names no `[[uplink]]`).

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use super::checker::{Checker, lookup, port_mac, ranged, word};
use super::keys::{OPTIONAL_ATTRIBUTES, VPORT_KEYS};
use super::names::is_vport_name;
use super::switch::Switches;
use super::uplink::Uplinks;
use super::{
    Attach, LinkState, MAX_VPORT_NAME, Mac, Offload, PathChoice, UplinkSelector, VlanProto,
    VportSpec,
};
use crate::model::location::Location;

/// `[[vport]]` as written; integers as i64 so that out-of-range values get our message.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawVport {
    name: Option<Spanned<String>>,
    uplink: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    vlan: Option<Spanned<i64>>,
    qos: Option<Spanned<i64>>,
    proto: Option<Spanned<String>>,
    max_tx_rate_mbps: Option<Spanned<i64>>,
    min_tx_rate_mbps: Option<Spanned<i64>>,
    spoofchk: Option<Spanned<bool>>,
    trust: Option<Spanned<bool>>,
    link_state: Option<Spanned<String>>,
    offload: Option<Spanned<String>>,
    optional: Option<Spanned<Vec<Spanned<String>>>>,
    queues: Option<Spanned<i64>>,
    placement: Option<Spanned<String>>,
    cpus: Option<Spanned<String>>,
    tap_owner: Option<Spanned<String>>,
    tap_group: Option<Spanned<String>>,
    switch: Option<Spanned<String>>,
    attach: Option<Spanned<String>>,
    netns: Option<Spanned<String>>,
    ifname: Option<Spanned<String>>,
}

/// What earlier `[[vport]]` tables took, for the checks across tables.
#[derive(Default)]
struct Taken {
    names: HashMap<String, Location>,
    macs: HashMap<Mac, (String, Location)>,
}

/// Every `[[vport]]` that parsed, against the uplinks that did.
pub(super) fn vports(
    ck: &mut Checker<'_>,
    tables: &[Spanned<DeTable<'_>>],
    uplinks: &Uplinks,
    switches: &Switches,
) -> Vec<VportSpec> {
    let mut taken = Taken::default();
    tables
        .iter()
        .enumerate()
        .filter_map(|(i, table)| vport(ck, i, table, (uplinks, switches), &mut taken))
        .collect()
}

/// One `[[vport]]`; None after a problem with its name, uplink or MAC was reported.
fn vport(
    ck: &mut Checker<'_>,
    i: usize,
    table: &Spanned<DeTable<'_>>,
    (uplinks, switches): (&Uplinks, &Switches),
    taken: &mut Taken,
) -> Option<VportSpec> {
    let what = match lookup(table, "name").and_then(|n| n.get_ref().as_str()) {
        Some(n) => format!("vport {n:?}"),
        None => format!("vport #{}", i + 1),
    };
    let raw: RawVport = ck.table(table, &what, "[[vport]]", VPORT_KEYS);
    missing(ck, &what, table, &raw);
    let at = ck.at(&table.span());
    let name = unique_name(ck, &what, &raw, &at, &mut taken.names);
    let (uplink, switch) = match &raw.switch {
        None => (uplink_ref(ck, &what, &raw, uplinks), None),
        Some(sw) => (
            Some(String::new()),
            super::switch::switch_ref(ck, &what, sw, raw.uplink.as_ref(), switches),
        ),
    };
    let mac = unique_mac(ck, &what, &raw, &uplinks.list, &mut taken.macs);
    let (vlan, qos, vlan_proto) = vlan_tag(ck, &what, &raw);
    let (max_rate, min_rate) = rates(ck, &what, &raw.max_tx_rate_mbps, &raw.min_tx_rate_mbps);
    let (link_state, offload) = link_and_offload(ck, &what, &raw);
    let optional = optional(ck, &what, &raw);
    let queues: Option<u32> = ranged(
        ck,
        &what,
        "queues",
        &raw.queues,
        (1, 64),
        "queues is how many hardware receive queues the vPort gets without a VF: 1 to 64",
    );
    let placement = placement(ck, &what, &raw, offload);
    let cpus = cpus(ck, &what, &raw);
    let tap_owner = tap_id(ck, &what, "tap_owner", &raw.tap_owner);
    let tap_group = tap_id(ck, &what, "tap_group", &raw.tap_group);
    let attach = attach(ck, &what, &raw, offload, placement);
    // Each of these is None only after a problem was reported.
    Some(VportSpec {
        name: name?,
        uplink: uplink?,
        switch: match raw.switch {
            Some(_) => Some(switch?),
            None => None,
        },
        attach: attach?,
        mac: mac?,
        vlan,
        qos: qos.unwrap_or(0),
        vlan_proto: vlan_proto.unwrap_or_default(),
        max_tx_rate_mbps: max_rate,
        min_tx_rate_mbps: min_rate,
        spoofchk: raw.spoofchk.is_none_or(Spanned::into_inner),
        trust: raw.trust.is_some_and(Spanned::into_inner),
        link_state: link_state.unwrap_or_default(),
        offload: offload.unwrap_or_default(),
        optional,
        queues,
        placement,
        cpus,
        tap_owner,
        tap_group,
        at,
    })
}

/// name, uplink and mac must be there (a key present with a bad type was reported already).
fn missing(ck: &mut Checker<'_>, what: &str, table: &Spanned<DeTable<'_>>, raw: &RawVport) {
    let missing: Vec<&str> = [
        ("name", raw.name.is_none()),
        (
            "uplink",
            raw.uplink.is_none() && raw.switch.is_none() && lookup(table, "switch").is_none(),
        ),
        ("mac", raw.mac.is_none()),
    ]
    .into_iter()
    .filter(|(k, absent)| *absent && lookup(table, k).is_none())
    .map(|(k, _)| k)
    .collect();
    if !missing.is_empty() {
        ck.report(
            &table.span(),
            format!("{what}: missing {}", missing.join(", ")),
            "every [[vport]] needs name, uplink and mac",
        );
    }
}

/// A well-formed name no earlier vPort took.
fn unique_name(
    ck: &mut Checker<'_>,
    what: &str,
    raw: &RawVport,
    at: &Location,
    names: &mut HashMap<String, Location>,
) -> Option<String> {
    let n = raw.name.as_ref()?;
    let s = n.get_ref();
    if !is_vport_name(s) {
        ck.report(
            &n.span(),
            format!("{what}: name must be 1 to {MAX_VPORT_NAME} of A-Z a-z 0-9 . _ -"),
            "names become state keys and metric labels: use letters, digits, '.', '_' and '-'",
        );
        return None;
    }
    if let Some(first) = names.get(s) {
        ck.report(
            &n.span(),
            format!("{what}: name is already used by the vport at {first}"),
            "each vPort needs its own name",
        );
        return None;
    }
    names.insert(s.clone(), at.clone());
    Some(s.clone())
}

/// The uplink reference, as written, when it names a declared `[[uplink]]`. One that names a
/// broken uplink was reported there, and is not reported again here.
fn uplink_ref(
    ck: &mut Checker<'_>,
    what: &str,
    raw: &RawVport,
    uplinks: &Uplinks,
) -> Option<String> {
    let u = raw.uplink.as_ref()?;
    let r = u.get_ref();
    if uplinks.list.iter().any(|up| up.selector.matches(r)) {
        return Some(r.clone());
    }
    if !uplinks.written.iter().any(|w| w == r) {
        let declared: Vec<String> = uplinks
            .list
            .iter()
            .map(|up| format!("{:?}", up.selector.value()))
            .collect();
        let hint = if declared.is_empty() {
            "add an [[uplink]] table for the PF, e.g. [[uplink]] pci = \"0000:01:00.0\"".to_string()
        } else {
            format!(
                "write the pci, mac or ifname of a declared [[uplink]] ({}), or declare this one",
                declared.join(", ")
            )
        };
        ck.report(
            &u.span(),
            format!("{what}: uplink {r:?} names no [[uplink]]"),
            hint,
        );
    }
    None
}

/// A port MAC that no earlier vPort and no uplink selector has.
fn unique_mac(
    ck: &mut Checker<'_>,
    what: &str,
    raw: &RawVport,
    uplinks: &[super::Uplink],
    macs: &mut HashMap<Mac, (String, Location)>,
) -> Option<Mac> {
    let m = raw.mac.as_ref()?;
    let mac = port_mac(ck, what, m)?;
    if let Some((other, first)) = macs.get(&mac) {
        ck.report(
            &m.span(),
            format!("{what}: mac {mac} is already the MAC of {other} at {first}"),
            "two ports with one MAC on the same wire break forwarding: give each vPort its own",
        );
        return None;
    }
    if let Some(up) = uplinks
        .iter()
        .find(|up| up.selector == UplinkSelector::Mac(mac.to_string()))
    {
        ck.report(
            &m.span(),
            format!(
                "{what}: mac {mac} is the MAC of the uplink declared at {}",
                up.at
            ),
            "a vPort must not share its PF's MAC: give it its own",
        );
        return None;
    }
    macs.insert(mac, (what.to_string(), ck.at(&m.span())));
    Some(mac)
}

/// vlan, qos and proto; the latter two only with a vlan.
fn vlan_tag(
    ck: &mut Checker<'_>,
    what: &str,
    raw: &RawVport,
) -> (Option<u16>, Option<u8>, Option<VlanProto>) {
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
    let vlan_proto = word(
        ck,
        what,
        "proto",
        &raw.proto,
        &[("802.1Q", VlanProto::Dot1Q), ("802.1ad", VlanProto::Dot1Ad)],
        "\"802.1Q\" is the usual customer tag; \"802.1ad\" the service tag (QinQ)",
    );
    if raw.vlan.is_none() {
        for (key, span) in [
            ("qos", raw.qos.as_ref().map(Spanned::span)),
            ("proto", raw.proto.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                ck.report(
                    &span,
                    format!("{what}: {key} without vlan"),
                    format!("{key} describes the VLAN tag: set vlan too, or remove {key}"),
                );
            }
        }
    }
    (vlan, qos, vlan_proto)
}

/// The cap and the guarantee, the guarantee not above the cap: a vPort's, and a pool's
/// defaults for its attachments.
pub(super) fn rates(
    ck: &mut Checker<'_>,
    what: &str,
    max_tx_rate_mbps: &Option<Spanned<i64>>,
    min_tx_rate_mbps: &Option<Spanned<i64>>,
) -> (Option<u32>, Option<u32>) {
    let rate_hint = "rates are whole Mbit/s from 1; omit the key for no limit";
    let max_rate: Option<u32> = ranged(
        ck,
        what,
        "max_tx_rate_mbps",
        max_tx_rate_mbps,
        (1, u32::MAX.into()),
        rate_hint,
    );
    let min_rate: Option<u32> = ranged(
        ck,
        what,
        "min_tx_rate_mbps",
        min_tx_rate_mbps,
        (1, u32::MAX.into()),
        rate_hint,
    );
    if let (Some(min), Some(max), Some(span)) = (
        min_rate,
        max_rate,
        min_tx_rate_mbps.as_ref().map(Spanned::span),
    ) && min > max
    {
        ck.report(
            &span,
            format!("{what}: min_tx_rate_mbps {min} is above max_tx_rate_mbps {max}"),
            "a guaranteed rate cannot exceed the cap: lower min_tx_rate_mbps or raise max_tx_rate_mbps",
        );
    }
    (max_rate, min_rate)
}

fn link_and_offload(
    ck: &mut Checker<'_>,
    what: &str,
    raw: &RawVport,
) -> (Option<LinkState>, Option<Offload>) {
    let link_state = word(
        ck,
        what,
        "link_state",
        &raw.link_state,
        &[
            ("auto", LinkState::Auto),
            ("enable", LinkState::Enable),
            ("disable", LinkState::Disable),
        ],
        "auto follows the PF's link; enable and disable force the VF's link up or down",
    );
    let offload = word(
        ck,
        what,
        "offload",
        &raw.offload,
        &[
            ("required", Offload::Required),
            ("preferred", Offload::Preferred),
            ("never", Offload::Never),
        ],
        "required: a VF or fail; preferred: a VF, else queues, else software; never: software only",
    );
    (link_state, offload)
}

/// Attributes that may be dropped, each once.
fn optional(ck: &mut Checker<'_>, what: &str, raw: &RawVport) -> Vec<String> {
    let mut optional: Vec<String> = Vec::new();
    for attr in raw.optional.iter().flat_map(|list| list.get_ref()) {
        let a = attr.get_ref();
        if !OPTIONAL_ATTRIBUTES.contains(&a.as_str()) {
            ck.report(
                &attr.span(),
                format!(
                    "{what}: optional names {a:?}, which is not an attribute that can be dropped"
                ),
                format!("optional may list {}", OPTIONAL_ATTRIBUTES.join(", ")),
            );
        } else if optional.contains(a) {
            ck.report(
                &attr.span(),
                format!("{what}: optional lists {a:?} twice"),
                "list each attribute once",
            );
        } else {
            optional.push(a.clone());
        }
    }
    optional
}

/// A forced path, which must not contradict offload.
fn placement(
    ck: &mut Checker<'_>,
    what: &str,
    raw: &RawVport,
    offload: Option<Offload>,
) -> Option<PathChoice> {
    let placement = word(
        ck,
        what,
        "placement",
        &raw.placement,
        &[
            ("vf", PathChoice::Vf),
            ("queues", PathChoice::Queues),
            ("software", PathChoice::Software),
        ],
        "vf, queues or software forces that path; omit placement to let vportd pick the fastest",
    );
    if let (Some(p), Some(o)) = (placement, raw.offload.as_ref())
        && let Some(clash) = match (p, offload) {
            (PathChoice::Vf, Some(Offload::Never)) => Some("offload = \"never\" refuses VFs"),
            (PathChoice::Queues | PathChoice::Software, Some(Offload::Required)) => {
                Some("offload = \"required\" asks for a VF")
            }
            _ => None,
        }
    {
        ck.report(
            &o.span(),
            format!("{what}: placement {p:?} contradicts offload: {clash}").replace(
                &format!("{p:?}"),
                &format!("\"{}\"", format!("{p:?}").to_lowercase()),
            ),
            "keep one of them: placement forces a path, offload says how hard to try for a VF",
        );
    }
    placement
}

/// A TAP's owner or group as written: a name or a number, resolved when the daemon makes
/// the TAP (the user may not exist on the machine that checks the config).
fn tap_id(
    ck: &mut Checker<'_>,
    what: &str,
    key: &str,
    v: &Option<Spanned<String>>,
) -> Option<String> {
    let v = v.as_ref()?;
    let text = v.get_ref();
    if text.is_empty() || text.contains(|c: char| c.is_whitespace() || c == ':') {
        ck.report(
            &v.span(),
            format!("{what}: {key} {text:?} is not a user or group name"),
            format!("write a name or a number, e.g. {key} = \"libvirt-qemu\""),
        );
        return None;
    }
    Some(text.clone())
}

fn cpus(ck: &mut Checker<'_>, what: &str, raw: &RawVport) -> Option<Vec<u32>> {
    let c = raw.cpus.as_ref()?;
    match crate::facts::parse::cpulist(c.get_ref()) {
        Ok(list) if !list.is_empty() => Some(list),
        _ => {
            ck.report(
                &c.span(),
                format!("{what}: cpus {:?} is not a CPU list", c.get_ref()),
                "write CPU numbers and ranges, e.g. cpus = \"2-5,8\"",
            );
            None
        }
    }
}

/// `attach`, with `netns` and `ifname` for a veth. A veth is made by the software path
/// only, so its vPort must be sure to take it: on a `[[switch]]`, or kept off VFs and queues.
fn attach(
    ck: &mut Checker<'_>,
    what: &str,
    raw: &RawVport,
    offload: Option<Offload>,
    placement: Option<PathChoice>,
) -> Option<Attach> {
    let kind = word(
        ck,
        what,
        "attach",
        &raw.attach,
        &[("tap", false), ("veth", true)],
        "tap: a persistent TAP a VM opens by name; veth: a veth pair into a container's namespace",
    );
    let veth = match (kind, &raw.attach) {
        (Some(v), _) => v,
        (None, None) => false,
        (None, Some(_)) => return None,
    };
    if !veth {
        for (key, v) in [("netns", &raw.netns), ("ifname", &raw.ifname)] {
            if let Some(v) = v {
                ck.report(
                    &v.span(),
                    format!("{what}: {key} without attach = \"veth\""),
                    format!("{key} says where a container's veth goes: set attach = \"veth\", or remove {key}"),
                );
            }
        }
        return Some(Attach::Tap);
    }
    let attach = raw.attach.as_ref()?;
    let software = raw.switch.is_some()
        || offload == Some(Offload::Never)
        || placement == Some(PathChoice::Software);
    if !software {
        ck.report(
            &attach.span(),
            format!("{what}: attach = \"veth\" on a vPort that may get a VF or queues"),
            "the daemon makes veths on the software path only: put the vPort on a [[switch]], or set offload = \"never\"",
        );
    }
    let Some(netns) = raw.netns.as_ref() else {
        ck.report(
            &attach.span(),
            format!("{what}: attach = \"veth\" without netns"),
            "say which namespace gets the container's end: netns = \"NAME\" (under /var/run/netns) or a path",
        );
        return None;
    };
    let n = netns.get_ref();
    let good_name =
        super::names::is_ifname(n) || (n.len() < 256 && !n.contains(char::is_whitespace));
    if n.is_empty() || !good_name || (!n.starts_with('/') && n.contains('/')) {
        ck.report(
            &netns.span(),
            format!("{what}: netns {n:?} is neither a namespace name nor an absolute path"),
            "write a name `ip netns add` made, e.g. \"ctr1\", or a path such as \"/proc/1234/ns/net\"",
        );
        return None;
    }
    let ifname = match raw.ifname.as_ref() {
        None => "eth0".to_string(),
        Some(i) if super::names::is_ifname(i.get_ref()) => i.get_ref().clone(),
        Some(i) => {
            ck.report(
                &i.span(),
                format!("{what}: ifname {:?} is not an interface name", i.get_ref()),
                "write 1 to 15 characters without '/', ':' or spaces, e.g. ifname = \"eth0\"",
            );
            return None;
        }
    };
    software.then(|| Attach::Veth {
        netns: n.clone(),
        ifname,
    })
}
