//! What the software path attaches (pure): from the config and the state, the switches to
//! run and each one's ports. A switch is known by what connects to it, as Hyper-V's vSwitch
//! kinds are: *external* (an `[[uplink]]`'s: its trunk is the PF, or a VF with `switch_vf`),
//! *internal* (a `[[switch]]` with `host_netdev`: the host is a member through a veth pair
//! vportd makes, the host's end named `host_netdev`, the switch's end `vh-<switch>`) and
//! *private* (a `[[switch]]` without: vPorts only). Each vPort's port is a VM's TAP or a
//! container's veth (`attach`), named `vp-<name>` on the host either way.

use std::collections::{BTreeMap, BTreeSet};

use super::running::SoftpathError;
use crate::model::edge::NetdevEdge;
use crate::model::mac::Mac;
use crate::provision::config::{Attach, Config, LinkState, VportSpec};
use crate::provision::state::{Health, State, VportPath, switch_member};
use crate::switch::PortConfig;
use crate::switch::acl::{Acl, Action, Rule};
use crate::switch::port::DEFAULT_VLAN;
use crate::switch::qos::TokenBucket;
use crate::switch::vlan::{VlanMode, VlanSet};

/// The trunk port's name on every software switch with a NIC.
pub const UPLINK_PORT: &str = "uplink";

/// The host's port on an internal switch.
pub const HOST_PORT: &str = "host";

/// Longest interface name (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// The TAP device name for a vPort: `vp-<name>` when it fits 15 bytes, else `vp-`, the first
/// seven characters, `-` and four hex digits of a hash of the whole name (stable across runs,
/// so a VM's config can name it).
pub fn tap_name(vport: &str) -> String {
    short_name("vp", vport)
}

/// The switch's end of an internal switch's host veth: `vh-<switch>`, cut as [`tap_name`] is.
pub fn host_port_name(switch: &str) -> String {
    short_name("vh", switch)
}

fn short_name(prefix: &str, vport: &str) -> String {
    let full = format!("{prefix}-{vport}");
    if full.len() <= IFNAME_MAX {
        return full;
    }
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in vport.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let head: String = vport.chars().take(7).collect();
    format!("{prefix}-{head}-{:04x}", (h ^ (h >> 16)) & 0xffff)
}

/// One vPort's port on a switch.
#[derive(Debug, Clone)]
pub struct PortPlan {
    pub vport: String,
    /// The port's netdev on the host: the TAP, or the veth's host end.
    pub tap: String,
    pub cfg: PortConfig,
    /// `tap_owner` / `tap_group` as the config writes them.
    pub tap_owner: Option<String>,
    pub tap_group: Option<String>,
    /// A VM's TAP, or a container's veth.
    pub attach: Attach,
    /// A container veth's MTU (both ends); None: the kernel's default. A CNI network's `mtu`.
    pub mtu: Option<u32>,
}

/// A port the config does not name but the daemon serves on one of its `[[switch]]`es: a
/// CNI attachment's veth (`daemon::cni` builds these from the attachment book).
#[derive(Debug, Clone)]
pub struct ExtraPort {
    /// The `[[switch]]` it belongs to.
    pub switch: String,
    pub port: PortPlan,
}

/// What connects to a switch besides its vPorts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchKind {
    /// An uplink PF (or its `switch_vf`) is the trunk.
    External,
    /// The host is a member: `host_netdev` is its end of a veth pair whose other end,
    /// `port`, is the switch's trunk.
    Internal { host_netdev: String, port: String },
    /// vPorts only.
    Private,
}

impl SwitchKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            SwitchKind::External => "external",
            SwitchKind::Internal { .. } => "internal",
            SwitchKind::Private => "private",
        }
    }
}

/// One software switch: what it trunks to and its vPorts.
#[derive(Debug, Clone)]
pub struct SwitchPlan {
    /// The uplink PF's PCI address; empty for a `[[switch]]`.
    pub uplink: String,
    pub kind: SwitchKind,
    /// `[[uplink]] switch_vf`: the trunk is this VF of the uplink, with the vPorts' MACs
    /// as its unicast addresses; None: the PF's own netdev.
    pub trunk_vf: Option<u32>,
    /// How the trunk opens the PF's netdev (`[[uplink]] switch_edge`).
    pub edge: NetdevEdge,
    /// `sw-<PCI address>` for an uplink's switch, the `[[switch]]`'s name otherwise.
    pub name: String,
    /// The trunk's port: the uplink, or the host on an internal switch (unused on a
    /// private switch, which has none).
    pub trunk: PortConfig,
    pub ports: Vec<PortPlan>,
}

/// Where a vPort's switch comes from: an uplink (by PCI address) or a `[[switch]]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SwitchKey {
    Uplink(String),
    Named(String),
}

/// The switches the state asks for (pure): every provisioned vPort on the software path that
/// the config still has, grouped by uplink PF or `[[switch]]`. A TAP name clash is reported
/// and its vPort left out.
pub fn plan(cfg: &Config, state: &State) -> (Vec<SwitchPlan>, Vec<SoftpathError>) {
    plan_with(cfg, state, &[])
}

/// [`plan`] with `extra` ports on the config's `[[switch]]`es: a switch that has only
/// those runs too (its trunk carries their VLANs). One on a switch the config lacks, or
/// whose netdev name a vPort has, is reported and left out.
pub fn plan_with(
    cfg: &Config,
    state: &State,
    extra: &[ExtraPort],
) -> (Vec<SwitchPlan>, Vec<SoftpathError>) {
    let mut by_switch: BTreeMap<SwitchKey, Vec<PortPlan>> = BTreeMap::new();
    let mut taps: BTreeMap<String, String> = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, v) in &state.vports {
        if v.path != VportPath::Software || v.health != Health::Provisioned {
            continue;
        }
        let Some(spec) = cfg.vports.iter().find(|s| &s.name == name) else {
            continue;
        };
        let key = match (switch_member(&v.uplink), &spec.switch) {
            (Some(s), Some(now)) if s == now => SwitchKey::Named(s.to_string()),
            // Moved between a switch and an uplink since the apply: wait for the next.
            (Some(_), _) | (None, Some(_)) => continue,
            (None, None) => SwitchKey::Uplink(v.uplink.clone()),
        };
        let tap = tap_name(name);
        if let Some(other) = taps.insert(tap.clone(), name.clone()) {
            errors.push(SoftpathError::TapClash {
                vport: name.clone(),
                tap,
                other,
            });
            continue;
        }
        by_switch.entry(key).or_default().push(PortPlan {
            vport: name.clone(),
            tap,
            cfg: port_config(spec),
            tap_owner: spec.tap_owner.clone(),
            tap_group: spec.tap_group.clone(),
            attach: spec.attach.clone(),
            mtu: None,
        });
    }
    for x in extra {
        if !cfg.switches.iter().any(|s| s.name == x.switch) {
            errors.push(SoftpathError::NoSuchSwitch {
                vport: x.port.vport.clone(),
                switch: x.switch.clone(),
            });
            continue;
        }
        if let Some(other) = taps.insert(x.port.tap.clone(), x.port.vport.clone()) {
            errors.push(SoftpathError::TapClash {
                vport: x.port.vport.clone(),
                tap: x.port.tap.clone(),
                other,
            });
            continue;
        }
        by_switch
            .entry(SwitchKey::Named(x.switch.clone()))
            .or_default()
            .push(x.port.clone());
    }
    let plans = by_switch
        .into_iter()
        .filter_map(|(key, ports)| switch_plan(cfg, key, ports))
        .collect();
    (plans, errors)
}

/// One switch's plan; None for a `[[switch]]` no longer in the config.
fn switch_plan(cfg: &Config, key: SwitchKey, ports: Vec<PortPlan>) -> Option<SwitchPlan> {
    let vids: BTreeSet<u16> = ports
        .iter()
        .filter_map(|p| match p.cfg.vlan {
            VlanMode::Access { vid } => Some(vid),
            VlanMode::Trunk { .. } => None,
        })
        .collect();
    let native = vids.contains(&DEFAULT_VLAN).then_some(DEFAULT_VLAN);
    let allowed = VlanSet::from_vids(vids.into_iter().filter(|v| *v != DEFAULT_VLAN));
    let vlan = VlanMode::Trunk { allowed, native };
    Some(match key {
        SwitchKey::Uplink(uplink) => {
            let up = cfg.uplinks.iter().find(|u| {
                cfg.vports
                    .iter()
                    .any(|s| s.name == ports[0].vport && u.selector.matches(&s.uplink))
            });
            SwitchPlan {
                name: format!("sw-{uplink}"),
                kind: SwitchKind::External,
                trunk_vf: up.and_then(|u| u.switch_vf),
                edge: up.map(|u| u.switch_edge).unwrap_or_default(),
                uplink,
                trunk: PortConfig::trunk(UPLINK_PORT, vlan),
                ports,
            }
        }
        SwitchKey::Named(name) => {
            let spec = cfg.switches.iter().find(|s| s.name == name)?;
            let kind = match &spec.host_netdev {
                Some(h) => SwitchKind::Internal {
                    host_netdev: h.clone(),
                    port: host_port_name(&name),
                },
                None => SwitchKind::Private,
            };
            SwitchPlan {
                uplink: String::new(),
                kind,
                trunk_vf: None,
                edge: NetdevEdge::default(),
                trunk: PortConfig::trunk(HOST_PORT, vlan),
                name,
                ports,
            }
        }
    })
}

/// The software vPorts whose TAPs stay although no switch serves them now: those the config
/// still has whose uplink is lost (pure). Their VMs keep their link's device, and the switch
/// serves it again when the uplink is back.
pub fn held_taps(cfg: &Config, state: &State) -> BTreeSet<String> {
    state
        .vports
        .iter()
        .filter(|(name, v)| {
            v.path == VportPath::Software
                && v.health == Health::Lost
                && cfg.vports.iter().any(|s| &s.name == *name)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Where a switch's trunk is: the uplink PF itself (`vf` None) or one of its VFs. What
/// [`super::SoftPath::start`] asks its resolver for an ifindex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkAt {
    /// The uplink PF's PCI address.
    pub pf: String,
    pub vf: Option<u32>,
}

/// The switch port for a vPort the plan put on the software path: its VLAN and priority,
/// its TX rate as an ingress limit (what the VM sends is what the VF would have limited),
/// spoof checking as an ACL allowing only its own source MAC, and its link state.
pub fn port_config(spec: &VportSpec) -> PortConfig {
    let mac = Mac(spec.mac.0);
    let mut port = PortConfig::access(&spec.name, spec.vlan.unwrap_or(DEFAULT_VLAN));
    port.default_pcp = spec.qos;
    port.mac = (!spec.mac.is_zero()).then_some(mac);
    port.rate = spec.max_tx_rate_mbps.map(TokenBucket::from_mbps);
    if spec.spoofchk && port.mac.is_some() {
        port.ingress_acl = Acl::new(vec![
            Rule {
                src_mac: Some(mac),
                ..Rule::any(Action::Allow)
            },
            Rule::any(Action::Deny),
        ]);
    }
    port.admin_down = spec.link_state == LinkState::Disable;
    port
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::state::{STATE_VERSION, VportState};
    use std::path::Path;

    #[test]
    fn tap_names_fit_and_are_stable() {
        assert_eq!(tap_name("vm1"), "vp-vm1");
        assert_eq!(tap_name("abcdefghijkl"), "vp-abcdefghijkl");
        let long = tap_name("vm1-eth0-with-a-long-name");
        assert_eq!(long.len(), 15, "{long}");
        assert!(long.starts_with("vp-vm1-eth-"), "{long}");
        assert_eq!(long, tap_name("vm1-eth0-with-a-long-name"));
        assert_ne!(long, tap_name("vm1-eth0-with-a-long-nam"));
    }

    const CONFIG: &str = r#"
state_dir = "/var/lib/vportd"
[[uplink]]
pci = "0000:01:00.0"
[[uplink]]
pci = "0000:02:00.0"
[[vport]]
name = "a"
uplink = "0000:01:00.0"
mac = "02:00:00:00:00:01"
vlan = 100
offload = "never"
[[vport]]
name = "b"
uplink = "0000:01:00.0"
mac = "02:00:00:00:00:02"
offload = "never"
[[vport]]
name = "c"
uplink = "0000:02:00.0"
mac = "02:00:00:00:00:03"
vlan = 7
[[vport]]
name = "d"
uplink = "0000:02:00.0"
mac = "02:00:00:00:00:04"
"#;

    fn state(entries: &[(&str, &str, VportPath)]) -> State {
        let mut s = State {
            version: STATE_VERSION,
            ..Default::default()
        };
        for (name, uplink, path) in entries {
            s.vports.insert(
                name.to_string(),
                VportState {
                    uplink: uplink.to_string(),
                    path: path.clone(),
                    reason: String::new(),
                    vf_bdf: None,
                    applied: None,
                    health: Health::Provisioned,
                },
            );
        }
        s
    }

    #[test]
    fn plan_groups_software_vports_by_uplink_with_a_trunk_of_their_vlans() {
        let cfg = crate::provision::config::parse(Path::new("host.toml"), CONFIG).unwrap();
        let st = state(&[
            ("a", "0000:01:00.0", VportPath::Software),
            ("b", "0000:01:00.0", VportPath::Software),
            ("c", "0000:02:00.0", VportPath::Vf { index: 0 }),
            ("d", "0000:02:00.0", VportPath::Software),
            ("gone", "0000:02:00.0", VportPath::Software),
        ]);
        let (plans, errors) = plan(&cfg, &st);
        assert!(errors.is_empty());
        assert_eq!(plans.len(), 2);
        let p = &plans[0];
        assert_eq!(p.uplink, "0000:01:00.0");
        let names: Vec<_> = p.ports.iter().map(|x| x.tap.as_str()).collect();
        assert_eq!(names, ["vp-a", "vp-b"]);
        let VlanMode::Trunk { allowed, native } = &p.trunk.vlan else {
            panic!("the uplink is a trunk");
        };
        assert!(allowed.contains(100) && !allowed.contains(7) && !allowed.contains(1));
        assert_eq!(*native, Some(DEFAULT_VLAN));
        // c holds a VF; "gone" is no longer in the config.
        let q = &plans[1];
        assert_eq!(q.ports.len(), 1);
        assert_eq!(q.ports[0].vport, "d");
    }

    #[test]
    fn a_lost_software_vport_keeps_its_tap() {
        let cfg = crate::provision::config::parse(Path::new("host.toml"), CONFIG).unwrap();
        let mut st = state(&[
            ("a", "0000:01:00.0", VportPath::Software),
            ("b", "0000:01:00.0", VportPath::Software),
            ("c", "0000:02:00.0", VportPath::Vf { index: 0 }),
            ("gone", "0000:02:00.0", VportPath::Software),
        ]);
        for v in st.vports.values_mut() {
            v.health = Health::Lost;
        }
        st.vports.get_mut("b").unwrap().health = Health::Provisioned;
        let held: Vec<String> = held_taps(&cfg, &st).into_iter().collect();
        assert_eq!(held, ["a"]);
        // Not in any plan: no switch serves it meanwhile.
        let (plans, _) = plan(&cfg, &st);
        assert!(plans.iter().all(|p| p.ports.iter().all(|x| x.vport != "a")));
    }

    #[test]
    fn extra_ports_run_a_switch_of_their_own_with_their_vlans_and_bad_ones_are_said() {
        let text = "state_dir = \"/var/lib/vportd\"\n[[switch]]\nname = \"office\"\nhost_netdev = \"vsw-office\"\n";
        let cfg = crate::provision::config::parse(Path::new("host.toml"), text).unwrap();
        let st = state(&[]);
        let port = |vport: &str, tap: &str, vid: u16| PortPlan {
            vport: vport.into(),
            tap: tap.into(),
            cfg: PortConfig::access(vport, vid),
            tap_owner: None,
            tap_group: None,
            attach: Attach::Veth {
                netns: "/run/netns/x".into(),
                ifname: "eth0".into(),
            },
            mtu: Some(1400),
        };
        let extra = |switch: &str, vport: &str, tap: &str, vid: u16| ExtraPort {
            switch: switch.into(),
            port: port(vport, tap, vid),
        };
        let (plans, errors) = plan_with(
            &cfg,
            &st,
            &[
                extra("office", "cni:vc-a", "vc-a", 1),
                extra("office", "cni:vc-b", "vc-b", 30),
                extra("nowhere", "cni:vc-c", "vc-c", 1),
                extra("office", "cni:vc-d", "vc-a", 1),
            ],
        );
        assert_eq!(plans.len(), 1);
        let office = &plans[0];
        assert_eq!(office.kind.as_str(), "internal");
        let vports: Vec<&str> = office.ports.iter().map(|p| p.vport.as_str()).collect();
        assert_eq!(vports, ["cni:vc-a", "cni:vc-b"]);
        assert_eq!(office.ports[0].mtu, Some(1400));
        assert_eq!(
            office.trunk.vlan,
            VlanMode::Trunk {
                allowed: VlanSet::from_vids([30]),
                native: Some(DEFAULT_VLAN)
            }
        );
        let said: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].contains("switch nowhere, which is not a [[switch]]"),
            "{said:?}"
        );
        assert!(
            said[1].contains("vc-a, already given to vPort cni:vc-a"),
            "{said:?}"
        );
        // Without extra ports a switch with no vPort does not run.
        assert!(plan(&cfg, &st).0.is_empty());
    }

    #[test]
    fn switch_members_get_a_private_or_internal_switch_of_their_own() {
        let text = r#"
state_dir = "/var/lib/vportd"
[[switch]]
name = "lab"
[[switch]]
name = "office"
host_netdev = "vsw-office"
[[vport]]
name = "c1"
switch = "lab"
mac = "02:00:00:00:00:11"
attach = "veth"
netns = "ctr1"
[[vport]]
name = "c2"
switch = "lab"
mac = "02:00:00:00:00:12"
attach = "veth"
netns = "/proc/1/ns/net"
ifname = "net1"
[[vport]]
name = "vm"
switch = "office"
mac = "02:00:00:00:00:13"
"#;
        let cfg = crate::provision::config::parse(Path::new("host.toml"), text).unwrap();
        let st = state(&[
            ("c1", "switch:lab", VportPath::Software),
            ("c2", "switch:lab", VportPath::Software),
            ("vm", "switch:office", VportPath::Software),
        ]);
        let (plans, errors) = plan(&cfg, &st);
        assert!(errors.is_empty());
        let names: Vec<_> = plans
            .iter()
            .map(|p| (p.name.as_str(), p.kind.as_str()))
            .collect();
        assert_eq!(names, [("lab", "private"), ("office", "internal")]);
        assert_eq!(
            plans[0].ports[1].attach,
            Attach::Veth {
                netns: "/proc/1/ns/net".into(),
                ifname: "net1".into()
            }
        );
        assert_eq!(
            plans[1].kind,
            SwitchKind::Internal {
                host_netdev: "vsw-office".into(),
                port: "vh-office".into()
            }
        );
        assert_eq!(plans[1].ports[0].attach, Attach::Tap);
    }
}
