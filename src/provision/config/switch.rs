//! The `[[switch]]` tables: software switches that exist without an uplink PF, as Hyper-V's
//! vSwitch kinds have them. A switch is known by what connects to it: vPorts only (private:
//! VM to VM, container to container), or vPorts and the host itself through a netdev vportd
//! makes for it (internal, like Hyper-V's host vNIC). The external kind is the switch of an
//! `[[uplink]]` and needs no table.

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use super::checker::{Checker, lookup};
use super::keys::SWITCH_KEYS;
use super::names::{is_ifname, is_vport_name};
use super::{MAX_VPORT_NAME, SwitchSpec};
use crate::model::location::Location;

/// `[[switch]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSwitch {
    name: Option<Spanned<String>>,
    host_netdev: Option<Spanned<String>>,
}

/// The switches that parsed, and every name written (valid or not), so that a vPort naming
/// a broken switch is not reported a second time as naming none.
#[derive(Default)]
pub(super) struct Switches {
    pub(super) list: Vec<SwitchSpec>,
    pub(super) written: Vec<String>,
}

/// Every `[[switch]]`, each name and host netdev used once.
pub(super) fn switches(ck: &mut Checker<'_>, tables: &[Spanned<DeTable<'_>>]) -> Switches {
    let mut out = Switches::default();
    let mut names: HashMap<String, Location> = HashMap::new();
    let mut netdevs: HashMap<String, Location> = HashMap::new();
    for (i, table) in tables.iter().enumerate() {
        let what = match lookup(table, "name").and_then(|n| n.get_ref().as_str()) {
            Some(n) => format!("switch {n:?}"),
            None => format!("switch #{}", i + 1),
        };
        let raw: RawSwitch = ck.table(table, &what, "[[switch]]", SWITCH_KEYS);
        let at = ck.at(&table.span());
        if let Some(n) = &raw.name {
            out.written.push(n.get_ref().clone());
        }
        let name = switch_name(ck, &what, table, &raw, &at, &mut names);
        let host_netdev = host_netdev(ck, &what, &raw, &at, &mut netdevs);
        if let (Some(name), Some(host_netdev)) = (name, host_netdev) {
            out.list.push(SwitchSpec {
                name,
                host_netdev,
                at,
            });
        }
    }
    out
}

/// A well-formed name no earlier switch took.
fn switch_name(
    ck: &mut Checker<'_>,
    what: &str,
    table: &Spanned<DeTable<'_>>,
    raw: &RawSwitch,
    at: &Location,
    names: &mut HashMap<String, Location>,
) -> Option<String> {
    let Some(n) = raw.name.as_ref() else {
        if lookup(table, "name").is_none() {
            ck.report(
                &table.span(),
                format!("{what}: missing name"),
                "every [[switch]] needs a name, which its vPorts write as switch = \"...\"",
            );
        }
        return None;
    };
    let s = n.get_ref();
    if !is_vport_name(s) {
        ck.report(
            &n.span(),
            format!("{what}: name must be 1 to {MAX_VPORT_NAME} of A-Z a-z 0-9 . _ -"),
            "switch names become metric labels: use letters, digits, '.', '_' and '-'",
        );
        return None;
    }
    if let Some(first) = names.get(s) {
        ck.report(
            &n.span(),
            format!("{what}: name is already used by the switch at {first}"),
            "each switch needs its own name",
        );
        return None;
    }
    names.insert(s.clone(), at.clone());
    Some(s.clone())
}

/// The host's netdev on an internal switch: Some(None) for a private switch, None after a
/// problem.
fn host_netdev(
    ck: &mut Checker<'_>,
    what: &str,
    raw: &RawSwitch,
    at: &Location,
    netdevs: &mut HashMap<String, Location>,
) -> Option<Option<String>> {
    let Some(n) = raw.host_netdev.as_ref() else {
        return Some(None);
    };
    let s = n.get_ref();
    if !is_ifname(s) || s.starts_with("vp-") || s.starts_with("vh-") {
        ck.report(
            &n.span(),
            format!("{what}: host_netdev {s:?} is not a name vportd may give an interface"),
            "write an interface name of 1 to 15 characters without '/', ':' or spaces, not starting with vp- or vh- (vportd's own ports), e.g. host_netdev = \"vsw-lab\"",
        );
        return None;
    }
    if let Some(first) = netdevs.get(s) {
        ck.report(
            &n.span(),
            format!(
                "{what}: host_netdev {s:?} is already the host's netdev of the switch at {first}"
            ),
            "give each internal switch its own host netdev",
        );
        return None;
    }
    netdevs.insert(s.clone(), at.clone());
    Some(Some(s.clone()))
}

/// A vPort's `switch = "..."`, when it names a declared `[[switch]]` and no uplink besides.
pub(super) fn switch_ref(
    ck: &mut Checker<'_>,
    what: &str,
    sw: &Spanned<String>,
    uplink: Option<&Spanned<String>>,
    switches: &Switches,
) -> Option<String> {
    if let Some(u) = uplink {
        ck.report(
            &u.span(),
            format!("{what}: names both uplink and switch"),
            "a vPort is on one switch: keep uplink for the switch of a PF, or switch for a [[switch]]",
        );
        return None;
    }
    let name = sw.get_ref();
    if switches.list.iter().any(|s| &s.name == name) {
        return Some(name.clone());
    }
    if !switches.written.iter().any(|w| w == name) {
        let declared: Vec<String> = switches
            .list
            .iter()
            .map(|s| format!("{:?}", s.name))
            .collect();
        let hint = if declared.is_empty() {
            format!("add a [[switch]] table, e.g. [[switch]] name = {name:?}")
        } else {
            format!(
                "write the name of a declared [[switch]] ({}), or declare this one",
                declared.join(", ")
            )
        };
        ck.report(
            &sw.span(),
            format!("{what}: switch {name:?} names no [[switch]]"),
            hint,
        );
    }
    None
}
