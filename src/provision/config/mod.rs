//! The provisioning config: which PFs are uplinks, and which vPorts to give each one (issue 4,
//! "Declarative provisioning").
//!
//! [`parse`] checks everything the text alone can tell (syntax, unknown keys, ranges, MACs,
//! duplicates, references between tables); [`check_against`] then checks the config against
//! the discovered host (does the uplink exist, is it a PF, does it have that many VFs). Both
//! report every problem at once, each as `file:line:col: message` with a `hint:` line, so one
//! edit-and-retry round fixes them all, and neither touches the host: bad input exits 2
//! before anything is written.
//!
//! The file is read through a [`Store`]; everything else here is pure.

mod against;
mod checker;
mod daemon;
mod keys;
mod names;
mod pool;
mod switch;
mod top;
mod uplink;
mod vport;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::file_errors::FilesError;
use crate::model::location::Location;
use crate::model::location::path_lossy;
use crate::model::mac::Mac;
use crate::model::pool::PoolSpec;
use crate::model::uplink::UplinkSelector;
use crate::provision::store::Store;
pub use against::check_against;
pub use daemon::{DaemonSettings, LOG_LEVELS};
pub use keys::OPTIONAL_ATTRIBUTES;

use checker::Checker;

/// Where allocations are recorded when the config does not say.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vportd";

/// Longest vPort name: names become state-file keys and Prometheus label values, and a
/// bounded length keeps both (and every table that prints them) sane.
pub const MAX_VPORT_NAME: usize = 64;

/// The provisioning config, validated as far as the text alone allows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The file it came from, for messages.
    #[serde(serialize_with = "path_lossy")]
    pub path: PathBuf,
    #[serde(serialize_with = "path_lossy")]
    pub state_dir: PathBuf,
    pub uplinks: Vec<Uplink>,
    pub vports: Vec<VportSpec>,
    /// The `[[pool]]`s: VFs set aside for attachments (containers through CNI).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolSpec>,
    /// The `[[switch]]` tables: private and internal software switches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub switches: Vec<SwitchSpec>,
    /// The `[daemon]` table: `vportd daemon`'s settings (its flags win).
    #[serde(skip_serializing_if = "DaemonSettings::is_empty")]
    pub daemon: DaemonSettings,
}

/// One `[[switch]]`: a software switch without an uplink PF. Private when `host_netdev` is
/// None (vPorts only), internal when the host is a member through that netdev.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchSpec {
    pub name: String,
    /// The host's own interface on the switch: one end of a veth pair vportd makes, the other
    /// end the switch's port. None: a private switch.
    pub host_netdev: Option<String>,
    /// Where the `[[switch]]` table starts.
    pub at: Location,
}

/// How a software vPort reaches its VM or container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Attach {
    /// A persistent TAP `vp-NAME` that the VM opens by name.
    #[default]
    Tap,
    /// A veth pair the daemon makes: the container's end inside `netns` as `ifname` with the
    /// vPort's MAC, the host end `vp-NAME` a switch port.
    Veth {
        /// A name under /var/run/netns, or a path (`/proc/PID/ns/net`).
        netns: String,
        ifname: String,
    },
}

impl Attach {
    fn is_tap(&self) -> bool {
        *self == Attach::Tap
    }

    /// The namespace's path: a bare name is one `ip netns add` made.
    pub fn netns_path(netns: &str) -> PathBuf {
        if netns.starts_with('/') {
            PathBuf::from(netns)
        } else {
            Path::new("/var/run/netns").join(netns)
        }
    }
}

/// One `[[uplink]]`: a PF whose VFs (or queues) vPorts use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Uplink {
    pub selector: UplinkSelector,
    /// None: as many as its vPorts need.
    pub num_vfs: Option<u32>,
    /// None: the PF's usual VF driver; `vfio-pci` for VM passthrough.
    pub vf_driver: Option<String>,
    /// Combined channels (`ethtool -L`); None leaves the driver's count alone.
    pub channels: Option<u32>,
    /// The PF's RSS indirection table (`ethtool -X`); None leaves it alone.
    pub rss: Option<RssSpread>,
    /// How the software switch of this uplink's software vPorts opens the PF: AF_PACKET
    /// rings (the default: they carry GSO super-packets), AF_XDP, or AF_XDP where it opens.
    pub switch_edge: crate::model::edge::NetdevEdge,
    /// The VF the software switch trunks through instead of the PF's own netdev: reserved
    /// for it (the planner gives it to no vPort), trusted and without spoof checking, since
    /// it carries the software vPorts' MACs (registered as its unicast filters: a VF is not
    /// let into unicast promiscuous mode). None: the switch trunks through the PF.
    pub switch_vf: Option<u32>,
    /// Whether apply brings the PF's netdev up when it is administratively down (the
    /// default): a PF left down at boot has no link, and drivers such as igb refuse VF rates
    /// without one. `bring_up = false` leaves the PF's link to whoever manages it.
    pub bring_up: bool,
    /// Where the `[[uplink]]` table starts.
    pub at: Location,
}

/// One `[[vport]]`: a VM's or container's NIC, as the user wants it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VportSpec {
    pub name: String,
    /// Exactly as written; [`UplinkSelector::matches`] it against the uplinks. Empty when
    /// the vPort names a `switch` instead.
    pub uplink: String,
    /// The `[[switch]]` the vPort is on (instead of an uplink): always the software path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch: Option<String>,
    /// How the software path connects it: a VM's TAP, or a container's veth.
    #[serde(skip_serializing_if = "Attach::is_tap")]
    pub attach: Attach,
    pub mac: Mac,
    /// 1..=4094; None for untagged.
    pub vlan: Option<u16>,
    /// 802.1p priority, 0..=7; only with a VLAN.
    pub qos: u8,
    pub vlan_proto: VlanProto,
    pub max_tx_rate_mbps: Option<u32>,
    pub min_tx_rate_mbps: Option<u32>,
    pub spoofchk: bool,
    pub trust: bool,
    pub link_state: LinkState,
    pub offload: Offload,
    /// Attributes (from [`OPTIONAL_ATTRIBUTES`]) the NIC may lack: dropped with a
    /// warning rather than costing the vPort its VF.
    pub optional: Vec<String>,
    /// Hardware queues of its own when the vPort gets no VF (RSS context, VMDq pool or
    /// ntuple queue); None: one queue if the planner goes that way at all.
    pub queues: Option<u32>,
    /// Forces one path; None lets the planner pick the fastest the NIC allows.
    pub placement: Option<PathChoice>,
    /// The CPUs the rebalancer keeps this vPort's queue interrupts on (`cpus = "2-5"`);
    /// None: the local CPUs of the function its queues live on.
    pub cpus: Option<Vec<u32>>,
    /// On the software path, who besides root may open the vPort's TAP (`tap_owner`,
    /// `tap_group`: a user or group name, or a number), so that an unprivileged QEMU can;
    /// resolved when the daemon makes the TAP. Neither: root only.
    pub tap_owner: Option<String>,
    pub tap_group: Option<String>,
    /// Where the `[[vport]]` table starts.
    pub at: Location,
}

/// The tag protocol of a vPort's VLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum VlanProto {
    /// The customer tag, TPID 0x8100: what nearly everyone means by "VLAN".
    #[default]
    #[serde(rename = "802.1Q")]
    Dot1Q,
    /// The service tag, TPID 0x88a8 (QinQ).
    #[serde(rename = "802.1ad")]
    Dot1Ad,
}

impl VlanProto {
    /// As written in the config and by `ip link ... vlan-protocol`.
    pub fn as_str(&self) -> &'static str {
        match self {
            VlanProto::Dot1Q => "802.1Q",
            VlanProto::Dot1Ad => "802.1ad",
        }
    }
}

/// A VF's link state (`ip link set PF vf N state ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Follows the PF's link.
    #[default]
    Auto,
    /// Up regardless of the PF (VM-to-VM traffic on one host survives a cable pull).
    Enable,
    Disable,
}

/// How hard to try for an SR-IOV VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Offload {
    /// A VF or nothing: the plan fails if none can be had.
    Required,
    /// A VF if one is free, else queues, else the software switch.
    #[default]
    Preferred,
    /// Always the software switch (to mirror, filter or count in software).
    Never,
}

/// How the PF's RSS indirection table spreads hash buckets over its queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RssSpread {
    /// Every queue the same share (`ethtool -X DEV equal N`, N the channel count).
    Equal,
    /// Queue i gets weights[i] shares (`ethtool -X DEV weight ...`); 0 leaves a queue out
    /// of RSS, for instance to keep it for steered vPort traffic.
    Weights(Vec<u32>),
}

/// A path a vPort's config can force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathChoice {
    Vf,
    Queues,
    Software,
}

/// An uplink resolved to the PCI function it names on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedUplink {
    /// Into [`Config::uplinks`].
    pub index: usize,
    pub bdf: String,
    /// The PF's netdev: the one the selector named, else its first. None when the PF has no
    /// netdev (no driver bound, or bound to vfio-pci).
    pub ifindex: Option<u32>,
}

impl Config {
    /// The `[[uplink]]` a vPort's `uplink = "..."` names. Always Some for a parsed config.
    pub fn uplink_of(&self, v: &VportSpec) -> Option<&Uplink> {
        self.uplinks.iter().find(|u| u.selector.matches(&v.uplink))
    }

    /// The `[[switch]]` a vPort's `switch = "..."` names.
    pub fn switch_of(&self, v: &VportSpec) -> Option<&SwitchSpec> {
        let name = v.switch.as_deref()?;
        self.switches.iter().find(|s| s.name == name)
    }

    /// The `[[uplink]]` a pool's `uplink` names. Always Some for a parsed config.
    pub fn uplink_of_pool(&self, p: &PoolSpec) -> Option<&Uplink> {
        let reference = match &p.uplink {
            crate::model::pool::PoolUplink::Pci(bdf) => bdf.clone(),
            crate::model::pool::PoolUplink::Mac(mac) => mac.to_string(),
        };
        self.uplinks.iter().find(|u| u.selector.matches(&reference))
    }

    /// How each `[[uplink]]` names its PF, in file order.
    pub fn selectors(&self) -> impl Iterator<Item = &UplinkSelector> {
        self.uplinks.iter().map(|u| &u.selector)
    }
}

/// One thing wrong with a config: where, what, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub at: Location,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n  hint: {}", self.at, self.message, self.hint)
    }
}

/// Why a config cannot be used. Either way it is bad input (exit 2) and nothing was touched.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] FilesError),
    /// The file was read but breaks rules: every problem found, in file order, one per line,
    /// each followed by its hint.
    #[error("{}", join_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The individual problems; empty for a read failure.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(list) => list,
            ConfigError::Read(_) => &[],
        }
    }
}

fn join_problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Reads and parses a config file.
pub fn load(store: &dyn Store, path: &Path) -> Result<Config, ConfigError> {
    let text = store.read_text(path)?;
    parse(path, &text)
}

/// Parses and validates a config: syntax, keys, values, and references between tables.
/// Pure: `path` only names the file in messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut ck = Checker {
        path,
        text,
        problems: Vec::new(),
    };
    let Some(top) = top::top(&mut ck, text) else {
        return Err(ConfigError::Invalid(ck.problems));
    };
    let uplinks = uplink::uplinks(&mut ck, &top.uplinks);
    let switches = switch::switches(&mut ck, &top.switches);
    let vports = vport::vports(&mut ck, &top.vports, &uplinks, &switches);
    let pools = pool::pools(&mut ck, &top.pools, &uplinks);
    if !ck.problems.is_empty() {
        return Err(ConfigError::Invalid(sorted(ck.problems)));
    }
    Ok(Config {
        path: path.to_path_buf(),
        state_dir: top.state_dir,
        uplinks: uplinks.list,
        vports,
        switches: switches.list,
        pools,
        daemon: top.daemon,
    })
}

/// In file order, without repeats.
fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by(|a, b| {
        (a.at.line, a.at.column, &a.message).cmp(&(b.at.line, b.at.column, &b.message))
    });
    problems.dedup();
    problems
}

#[cfg(test)]
mod tests;
