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
//! The file is read through [`crate::host::userfiles`]; everything else here is pure.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::facts::inventory::{Inventory, PciFunction, Role};
use crate::host::userfiles::{self, FilesError};
use crate::model::location::Location;
use crate::model::location::path_lossy;
pub use crate::model::mac::Mac;

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
}

/// How the config names a PF. The PCI address is the stable choice; a MAC or interface name is
/// accepted for convenience and resolved to a PCI address once, by [`check_against`], so that
/// nothing downstream depends on a name that can change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UplinkSelector {
    /// Normalized: `0000:01:00.0`, lower-case, with the domain.
    Pci(String),
    /// Normalized: lower-case `aa:bb:cc:dd:ee:ff`.
    Mac(String),
    Ifname(String),
}

impl UplinkSelector {
    /// The TOML key this selector was written with.
    pub fn key(&self) -> &'static str {
        match self {
            UplinkSelector::Pci(_) => "pci",
            UplinkSelector::Mac(_) => "mac",
            UplinkSelector::Ifname(_) => "ifname",
        }
    }

    /// The normalized value.
    pub fn value(&self) -> &str {
        match self {
            UplinkSelector::Pci(v) | UplinkSelector::Mac(v) | UplinkSelector::Ifname(v) => v,
        }
    }

    /// Whether a vPort's `uplink = "..."` names this uplink. The reference is normalized the
    /// same way, so `01:00.0`, `0000:01:00.0` and `0000:01:00.0` in capitals all name one PF.
    pub fn matches(&self, reference: &str) -> bool {
        match self {
            UplinkSelector::Pci(bdf) => normalize_pci(reference).is_ok_and(|r| r == *bdf),
            UplinkSelector::Mac(mac) => {
                Mac::from_str(reference).is_ok_and(|r| r.to_string() == *mac)
            }
            UplinkSelector::Ifname(name) => reference == name,
        }
    }
}

impl fmt::Display for UplinkSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key(), self.value())
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
    pub switch_edge: crate::switch::io::NetdevEdge,
    /// The VF the software switch trunks through instead of the PF's own netdev: reserved
    /// for it (the planner gives it to no vPort), trusted and without spoof checking, since
    /// it carries the software vPorts' MACs (registered as its unicast filters: a VF is not
    /// let into unicast promiscuous mode). None: the switch trunks through the PF.
    pub switch_vf: Option<u32>,
    /// Where the `[[uplink]]` table starts.
    pub at: Location,
}

/// One `[[vport]]`: a VM's or container's NIC, as the user wants it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VportSpec {
    pub name: String,
    /// Exactly as written; [`UplinkSelector::matches`] it against the uplinks.
    pub uplink: String,
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
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = userfiles::read_text(path)?;
    parse(path, &text)
}

// ---------------------------------------------------------------------------------------------
// Keys. Each table's keys in the order the README documents them, with what each takes: the
// text of unknown-key and wrong-type hints.

const TOP_KEYS: &[(&str, &str)] = &[
    (
        "state_dir",
        "an absolute directory path, e.g. \"/var/lib/vportd\"",
    ),
    ("uplink", "[[uplink]] tables, one per PF"),
    ("vport", "[[vport]] tables, one per vPort"),
];

const UPLINK_KEYS: &[(&str, &str)] = &[
    ("pci", "the PF's PCI address, e.g. \"0000:01:00.0\""),
    ("mac", "the PF's MAC address, e.g. \"52:54:00:12:34:56\""),
    ("ifname", "the PF's interface name, e.g. \"eth0\""),
    ("num_vfs", "a whole number of VFs, e.g. 7"),
    ("vf_driver", "a driver name, e.g. \"vfio-pci\""),
    ("channels", "a whole number of combined channels, e.g. 4"),
    ("rss", "\"equal\""),
    (
        "rss_weights",
        "a list of whole numbers, one per queue, e.g. [1, 1, 2]",
    ),
    ("switch_edge", "\"af_packet\", \"af_xdp\" or \"auto\""),
    (
        "switch_vf",
        "the index of the VF the software switch trunks through, e.g. 0",
    ),
];

const VPORT_KEYS: &[(&str, &str)] = &[
    ("name", "a name such as \"vm1-eth0\""),
    (
        "uplink",
        "the pci, mac or ifname of an [[uplink]], in quotes",
    ),
    ("mac", "a unicast MAC address, e.g. \"02:00:00:00:01:01\""),
    ("vlan", "a VLAN id from 1 to 4094"),
    ("qos", "a priority from 0 to 7"),
    ("proto", "\"802.1Q\" or \"802.1ad\""),
    ("max_tx_rate_mbps", "a whole number of Mbit/s"),
    ("min_tx_rate_mbps", "a whole number of Mbit/s"),
    ("spoofchk", "true or false"),
    ("trust", "true or false"),
    ("link_state", "\"auto\", \"enable\" or \"disable\""),
    ("offload", "\"required\", \"preferred\" or \"never\""),
    (
        "optional",
        "a list of attributes the NIC may lack, e.g. [\"link_state\"]",
    ),
    ("queues", "a whole number of hardware queues, e.g. 2"),
    ("placement", "\"vf\", \"queues\" or \"software\""),
    (
        "cpus",
        "a CPU list for the vPort's queue interrupts, e.g. \"2-5,8\"",
    ),
    (
        "tap_owner",
        "the user a VM runs as, allowed to open the vPort's TAP, e.g. \"libvirt-qemu\"",
    ),
    (
        "tap_group",
        "the group allowed to open the vPort's TAP, e.g. \"kvm\"",
    ),
];

/// Attributes a vPort may list in `optional`: if the NIC cannot set one, it is dropped
/// with a warning instead of sending the vPort to the software path.
pub const OPTIONAL_ATTRIBUTES: &[&str] = &[
    "link_state",
    "proto",
    "min_tx_rate_mbps",
    "max_tx_rate_mbps",
    "trust",
    "spoofchk",
];

/// `[[uplink]]` as written. Every field is optional and spanned so that [`parse`] can report
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
}

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
}

/// Collects problems against one file's text.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn at(&self, span: &Range<usize>) -> Location {
        Location::at(self.path, self.text, span.start)
    }

    fn report(&mut self, span: &Range<usize>, message: impl Into<String>, hint: impl Into<String>) {
        self.problems.push(Problem {
            at: self.at(span),
            message: message.into(),
            hint: hint.into(),
        });
    }

    /// Deserializes one table into `T`, reporting unknown keys and wrongly typed values one by
    /// one (serde alone stops at the first) and leaving those fields unset.
    fn table<T: DeserializeOwned + Default>(
        &mut self,
        table: &Spanned<DeTable<'_>>,
        what: &str,
        header: &str,
        keys: &[(&str, &str)],
    ) -> T {
        let mut good = DeTable::new();
        for (key, value) in table.get_ref().iter() {
            let name = key.get_ref().as_ref();
            let Some((_, takes)) = keys.iter().find(|(k, _)| *k == name) else {
                self.unknown_key(key.span(), what, name, header, keys);
                continue;
            };
            let mut one = DeTable::new();
            one.insert(key.clone(), value.clone());
            match deserialize::<T>(one, table.span()) {
                Ok(_) => {
                    good.insert(key.clone(), value.clone());
                }
                Err(e) => {
                    let span = e.span().unwrap_or(value.span());
                    self.report(
                        &span,
                        format!("{what}: {name}: {}", type_message(e.message())),
                        format!("{name} takes {takes}"),
                    );
                }
            }
        }
        deserialize::<T>(good, table.span()).unwrap_or_else(|e| {
            // Each key passed alone; a failure together is a bug here, but still bad input.
            let span = e.span().unwrap_or(table.span());
            self.report(
                &span,
                format!("{what}: {}", e.message().trim()),
                "see examples/host.toml",
            );
            T::default()
        })
    }

    fn unknown_key(
        &mut self,
        span: Range<usize>,
        what: &str,
        key: &str,
        header: &str,
        keys: &[(&str, &str)],
    ) {
        let valid: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        let mut hint = String::new();
        if let Some(near) = valid
            .iter()
            .find(|k| key.len() > 2 && edit_distance(k, key) <= 2)
        {
            hint = format!("did you mean {near}? ");
        }
        hint += &format!("valid keys in {header}: {}", valid.join(", "));
        self.report(&span, format!("{what}: unknown key {key}"), hint);
    }

    /// The `[[name]]` tables of a top-level key; anything else there is reported.
    fn tables<'i>(
        &mut self,
        key: &Spanned<toml::de::DeString<'i>>,
        value: &Spanned<DeValue<'i>>,
    ) -> Vec<Spanned<DeTable<'i>>> {
        let name = key.get_ref().as_ref();
        let hint = format!("write each one as a [[{name}]] table (double brackets)");
        match value.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::Table(t) => out.push(Spanned::new(item.span(), t.clone())),
                        other => self.report(
                            &item.span(),
                            format!("{name}: expected a table, found {}", other.type_str()),
                            hint.clone(),
                        ),
                    }
                }
                out
            }
            DeValue::Table(_) => {
                self.report(
                    &key.span(),
                    format!("[{name}] is a single table, but {name} is a list"),
                    hint,
                );
                Vec::new()
            }
            other => {
                self.report(
                    &value.span(),
                    format!(
                        "{name}: expected [[{name}]] tables, found {}",
                        other.type_str()
                    ),
                    hint,
                );
                Vec::new()
            }
        }
    }
}

fn deserialize<T: DeserializeOwned>(
    table: DeTable<'_>,
    span: Range<usize>,
) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(Spanned::new(
        span,
        DeValue::Table(table),
    )))
}

/// Rewords serde's "invalid type: string \"x\", expected i64" as "expected an integer, found
/// string \"x\"": what was wanted first, in words rather than Rust types.
fn type_message(raw: &str) -> String {
    let raw = raw.trim();
    let rest = raw
        .strip_prefix("invalid type: ")
        .or_else(|| raw.strip_prefix("invalid value: "));
    let Some((found, expected)) = rest.and_then(|r| r.split_once(", expected ")) else {
        return raw.to_string();
    };
    let expected = match expected {
        "i64" | "u64" | "i32" | "u32" => "a whole number",
        "a boolean" => "true or false",
        "a string" => "a string in quotes",
        other => other,
    };
    format!("expected {expected}, found {found}")
}

/// Levenshtein distance, for "did you mean" on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// `[dddd:]bb:dd.f` in any case, to the kernel's `0000:01:00.0`. The domain defaults to 0, as
/// in lspci's short form.
fn normalize_pci(s: &str) -> Result<String, ()> {
    let hex = |p: &str, max_len: usize| -> Result<u32, ()> {
        if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        u32::from_str_radix(p, 16).map_err(|_| ())
    };
    let (rest, function) = s.rsplit_once('.').ok_or(())?;
    let parts: Vec<&str> = rest.split(':').collect();
    let (domain, bus, device) = match parts.as_slice() {
        [bus, device] => (0, hex(bus, 2)?, hex(device, 2)?),
        [domain, bus, device] => (hex(domain, 8)?, hex(bus, 2)?, hex(device, 2)?),
        _ => return Err(()),
    };
    let function = hex(function, 1)?;
    if device > 0x1f || function > 7 {
        return Err(());
    }
    Ok(format!("{domain:04x}:{bus:02x}:{device:02x}.{function:x}"))
}

/// The kernel's rule for interface names (`dev_valid_name`).
fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && !s.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

fn is_vport_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_VPORT_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_driver_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c == '/' || c.is_whitespace())
}

const MAC_HINT: &str = "write six two-digit hex bytes separated by colons, e.g. \"02:00:00:00:01:01\" (02 as the first byte marks a locally administered address)";

/// A MAC a port can own: well-formed, unicast, not zero. Reports and returns None otherwise.
fn port_mac(ck: &mut Checker<'_>, what: &str, mac: &Spanned<String>) -> Option<Mac> {
    let text = mac.get_ref();
    let span = mac.span();
    let Ok(m) = Mac::from_str(text) else {
        ck.report(
            &span,
            format!("{what}: mac {text:?} is not a MAC address"),
            MAC_HINT,
        );
        return None;
    };
    if m.is_broadcast() {
        ck.report(
            &span,
            format!("{what}: mac {m} is the broadcast address"),
            "a port's own address must be unicast: the first byte must be even, e.g. 02",
        );
    } else if m.is_multicast() {
        ck.report(
            &span,
            format!("{what}: mac {m} is a multicast address"),
            format!(
                "a port's own address must be unicast: the first byte must be even ({:02x} is odd), e.g. 02",
                m.0[0]
            ),
        );
    } else if m.is_zero() {
        ck.report(
            &span,
            format!("{what}: mac {m} is all zeros"),
            "the kernel reads 00:00:00:00:00:00 as \"no address\" and the VF makes one up; give each vPort its own unicast MAC",
        );
    } else {
        return Some(m);
    }
    None
}

/// An integer key within `range`, reported with `hint` when outside it.
fn ranged<T: TryFrom<i64>>(
    ck: &mut Checker<'_>,
    what: &str,
    key: &str,
    value: &Option<Spanned<i64>>,
    range: (i64, i64),
    hint: &str,
) -> Option<T> {
    let v = value.as_ref()?;
    let n = *v.get_ref();
    let converted = T::try_from(n).ok();
    if n < range.0 || n > range.1 || converted.is_none() {
        ck.report(
            &v.span(),
            format!("{what}: {key} {n} is outside {}..{}", range.0, range.1),
            hint,
        );
        return None;
    }
    converted
}

/// One of a closed set of words, reported with the choices when it is not.
fn word<T: Copy>(
    ck: &mut Checker<'_>,
    what: &str,
    key: &str,
    value: &Option<Spanned<String>>,
    choices: &[(&str, T)],
    hint: &str,
) -> Option<T> {
    let v = value.as_ref()?;
    let found = choices
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(v.get_ref()));
    if found.is_none() {
        let list: Vec<String> = choices.iter().map(|(w, _)| format!("{w:?}")).collect();
        ck.report(
            &v.span(),
            format!(
                "{what}: {key} {:?} is not one of {}",
                v.get_ref(),
                list.join(", ")
            ),
            hint,
        );
    }
    found.map(|(_, t)| *t)
}

/// Parses and validates a config: syntax, keys, values, and references between tables.
/// Pure: `path` only names the file in messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut ck = Checker {
        path,
        text,
        problems: Vec::new(),
    };
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().lines().next().unwrap_or("").to_string();
            ck.report(
                &span,
                format!("not valid TOML: {message}"),
                "fix the TOML at that spot (strings need double quotes, tables [[double brackets]]); examples/host.toml shows the layout",
            );
            return Err(ConfigError::Invalid(ck.problems));
        }
    };

    let mut state_dir = PathBuf::from(DEFAULT_STATE_DIR);
    let mut uplink_tables = Vec::new();
    let mut vport_tables = Vec::new();
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "state_dir" => match value.get_ref().as_str() {
                Some(dir) if dir.starts_with('/') => state_dir = PathBuf::from(dir),
                Some(dir) => ck.report(
                    &value.span(),
                    format!("state_dir {dir:?} is not an absolute path"),
                    "apply, hotplug and the daemon run from different directories: give a path starting with /",
                ),
                None => ck.report(
                    &value.span(),
                    format!(
                        "state_dir: expected a string in quotes, found {}",
                        value.get_ref().type_str()
                    ),
                    "state_dir takes an absolute directory path, e.g. \"/var/lib/vportd\"",
                ),
            },
            "uplink" => uplink_tables = ck.tables(key, value),
            "vport" => vport_tables = ck.tables(key, value),
            other => ck.unknown_key(key.span(), "config", other, "the top level", TOP_KEYS),
        }
    }

    // Uplinks. Every selector written, valid or not, so that a vPort naming a broken uplink
    // is not reported a second time as naming none.
    let mut uplinks: Vec<Uplink> = Vec::new();
    let mut written_selectors: Vec<String> = Vec::new();
    let mut seen_selectors: HashMap<UplinkSelector, Location> = HashMap::new();
    for (i, table) in uplink_tables.iter().enumerate() {
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
        written_selectors.extend(given.iter().map(|(_, v)| v.get_ref().clone()));
        let what = match given.first() {
            Some((_, v)) => format!("uplink {:?}", v.get_ref()),
            None => format!("uplink #{}", i + 1),
        };
        let selector = match given.as_slice() {
            [] => {
                ck.report(
                    &table.span(),
                    format!("{what}: says neither pci, mac nor ifname"),
                    "name the PF with exactly one of pci = \"0000:01:00.0\" (stable across renames), mac = \"...\" or ifname = \"...\"",
                );
                None
            }
            [(key, v)] => uplink_selector(&mut ck, &what, key, v),
            [_, (second, v), ..] => {
                let keys: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
                ck.report(
                    &v.span(),
                    format!("{what}: names the PF twice ({})", keys.join(" and ")),
                    format!(
                        "keep exactly one; pci is the one that survives renames (remove {second})"
                    ),
                );
                None
            }
        };
        let num_vfs = ranged(
            &mut ck,
            &what,
            "num_vfs",
            &raw.num_vfs,
            (0, 65535),
            "a PF has at most sriov_totalvfs VFs (vportd discover shows it); omit num_vfs to create as many as its vPorts need",
        );
        let vf_driver = raw.vf_driver.as_ref().and_then(|d| {
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
        });
        let switch_edge = {
            use crate::switch::io::NetdevEdge;
            word(
                &mut ck,
                &what,
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
        };
        let switch_vf: Option<u32> = ranged(
            &mut ck,
            &what,
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
        let channels: Option<u32> = ranged(
            &mut ck,
            &what,
            "channels",
            &raw.channels,
            (1, 4096),
            "channels is the combined queue count ethtool -L sets: at most the maximum ethtool -l shows",
        );
        let rss = match (&raw.rss, &raw.rss_weights) {
            (Some(r), Some(w)) => {
                ck.report(
                    &w.span(),
                    format!("{what}: rss and rss_weights both say how to fill the RSS table"),
                    "keep rss = \"equal\" for an even spread, or rss_weights for shares per queue",
                );
                let _ = r;
                None
            }
            (Some(r), None) => word(
                &mut ck,
                &what,
                "rss",
                &raw.rss,
                &[("equal", ())],
                "rss = \"equal\" spreads over every channel; rss_weights = [..] gives each queue a share",
            )
            .filter(|_| !r.get_ref().is_empty())
            .map(|_| RssSpread::Equal),
            (None, Some(w)) => {
                let mut weights = Vec::new();
                let mut ok = true;
                for x in w.get_ref() {
                    match u32::try_from(*x.get_ref()) {
                        Ok(v) if v <= 255 => weights.push(v),
                        _ => {
                            ck.report(
                                &x.span(),
                                format!("{what}: rss_weights entry {} is outside 0..255", x.get_ref()),
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
                ok.then_some(RssSpread::Weights(weights))
            }
            (None, None) => None,
        };
        let Some(selector) = selector else { continue };
        let at = ck.at(&table.span());
        if let Some(first) = seen_selectors.get(&selector) {
            ck.report(
                &table.span(),
                format!("uplink {selector} is declared twice; first at {first}"),
                "declare each PF once, with all its settings in one [[uplink]]",
            );
            continue;
        }
        seen_selectors.insert(selector.clone(), at.clone());
        uplinks.push(Uplink {
            selector,
            num_vfs,
            vf_driver,
            channels,
            rss,
            switch_edge,
            switch_vf,
            at,
        });
    }

    // vPorts.
    let mut vports: Vec<VportSpec> = Vec::new();
    let mut names: HashMap<String, Location> = HashMap::new();
    let mut macs: HashMap<Mac, (String, Location)> = HashMap::new();
    for (i, table) in vport_tables.iter().enumerate() {
        let peeked_name = lookup(table, "name")
            .and_then(|n| n.get_ref().as_str())
            .map(str::to_string);
        let what = match &peeked_name {
            Some(n) => format!("vport {n:?}"),
            None => format!("vport #{}", i + 1),
        };
        let raw: RawVport = ck.table(table, &what, "[[vport]]", VPORT_KEYS);
        let missing: Vec<&str> = [
            ("name", raw.name.is_none()),
            ("uplink", raw.uplink.is_none()),
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

        let at = ck.at(&table.span());
        let name = raw.name.as_ref().and_then(|n| {
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
        });

        let uplink = raw.uplink.as_ref().and_then(|u| {
            let r = u.get_ref();
            if uplinks.iter().any(|up| up.selector.matches(r)) {
                return Some(r.clone());
            }
            if !written_selectors.iter().any(|w| w == r) {
                let declared: Vec<String> = uplinks
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
                ck.report(&u.span(), format!("{what}: uplink {r:?} names no [[uplink]]"), hint);
            }
            None
        });

        let mac = raw.mac.as_ref().and_then(|m| {
            let mac = port_mac(&mut ck, &what, m)?;
            if let Some((other, first)) = macs.get(&mac) {
                ck.report(
                    &m.span(),
                    format!("{what}: mac {mac} is already the MAC of {other} at {first}"),
                    "two ports with one MAC on the same wire break forwarding: give each vPort its own",
                );
                return None;
            }
            if let Some(up) = uplinks.iter().find(|up| up.selector == UplinkSelector::Mac(mac.to_string())) {
                ck.report(
                    &m.span(),
                    format!("{what}: mac {mac} is the MAC of the uplink declared at {}", up.at),
                    "a vPort must not share its PF's MAC: give it its own",
                );
                return None;
            }
            macs.insert(mac, (what.clone(), ck.at(&m.span())));
            Some(mac)
        });

        let vlan: Option<u16> = ranged(
            &mut ck,
            &what,
            "vlan",
            &raw.vlan,
            (1, 4094),
            "802.1Q VLAN ids are 1 to 4094 (0 and 4095 are reserved); omit vlan for untagged traffic",
        );
        let qos: Option<u8> = ranged(
            &mut ck,
            &what,
            "qos",
            &raw.qos,
            (0, 7),
            "qos is the 802.1p priority carried in the VLAN tag: 0 (best effort) to 7",
        );
        let vlan_proto = word(
            &mut ck,
            &what,
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
        let rate_hint = "rates are whole Mbit/s from 1; omit the key for no limit";
        let max_rate: Option<u32> = ranged(
            &mut ck,
            &what,
            "max_tx_rate_mbps",
            &raw.max_tx_rate_mbps,
            (1, u32::MAX.into()),
            rate_hint,
        );
        let min_rate: Option<u32> = ranged(
            &mut ck,
            &what,
            "min_tx_rate_mbps",
            &raw.min_tx_rate_mbps,
            (1, u32::MAX.into()),
            rate_hint,
        );
        if let (Some(min), Some(max), Some(span)) = (
            min_rate,
            max_rate,
            raw.min_tx_rate_mbps.as_ref().map(Spanned::span),
        ) && min > max
        {
            ck.report(
                &span,
                format!("{what}: min_tx_rate_mbps {min} is above max_tx_rate_mbps {max}"),
                "a guaranteed rate cannot exceed the cap: lower min_tx_rate_mbps or raise max_tx_rate_mbps",
            );
        }
        let link_state = word(
            &mut ck,
            &what,
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
            &mut ck,
            &what,
            "offload",
            &raw.offload,
            &[
                ("required", Offload::Required),
                ("preferred", Offload::Preferred),
                ("never", Offload::Never),
            ],
            "required: a VF or fail; preferred: a VF, else queues, else software; never: software only",
        );

        let mut optional = Vec::new();
        for attr in raw.optional.iter().flat_map(|list| list.get_ref()) {
            let a = attr.get_ref();
            if !OPTIONAL_ATTRIBUTES.contains(&a.as_str()) {
                ck.report(
                    &attr.span(),
                    format!("{what}: optional names {a:?}, which is not an attribute that can be dropped"),
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

        let queues: Option<u32> = ranged(
            &mut ck,
            &what,
            "queues",
            &raw.queues,
            (1, 64),
            "queues is how many hardware receive queues the vPort gets without a VF: 1 to 64",
        );
        let placement = word(
            &mut ck,
            &what,
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

        let cpus =
            raw.cpus
                .as_ref()
                .and_then(|c| match crate::facts::parse::cpulist(c.get_ref()) {
                    Ok(list) if !list.is_empty() => Some(list),
                    _ => {
                        ck.report(
                            &c.span(),
                            format!("{what}: cpus {:?} is not a CPU list", c.get_ref()),
                            "write CPU numbers and ranges, e.g. cpus = \"2-5,8\"",
                        );
                        None
                    }
                });

        let mut tap_id = |key: &str, v: &Option<Spanned<String>>| {
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
        };
        let tap_owner = tap_id("tap_owner", &raw.tap_owner);
        let tap_group = tap_id("tap_group", &raw.tap_group);

        // Each of these is None only after a problem was reported.
        let (Some(name), Some(uplink), Some(mac)) = (name, uplink, mac) else {
            continue;
        };
        vports.push(VportSpec {
            name,
            uplink,
            mac,
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
        });
    }

    if !ck.problems.is_empty() {
        return Err(ConfigError::Invalid(sorted(ck.problems)));
    }
    Ok(Config {
        path: path.to_path_buf(),
        state_dir,
        uplinks,
        vports,
    })
}

/// A key of a table, by its text.
fn lookup<'t, 'i>(table: &'t Spanned<DeTable<'i>>, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
    table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
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

/// In file order, without repeats.
fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by(|a, b| {
        (a.at.line, a.at.column, &a.message).cmp(&(b.at.line, b.at.column, &b.message))
    });
    problems.dedup();
    problems
}

// ---------------------------------------------------------------------------------------------
// Against the host.

/// Checks a parsed config against the discovered host: each uplink must name exactly one PCI
/// function, not a VF, with enough VFs, and no two uplinks the same one; no vPort may take a
/// MAC a PF netdev already has. Returns each uplink's PCI address and netdev ifindex, so that
/// nothing downstream resolves a MAC or interface name again.
///
/// A MAC selector matches a netdev's current MAC. The permanent MAC would survive bonding
/// (which gives every port the bond's MAC), but the inventory does not carry it yet; such
/// MACs match several functions and are refused with a hint to select by pci.
///
/// A function without SR-IOV is a fine uplink: its vPorts take queues or the software switch.
/// VF netdevs are not checked for MAC clashes: a VF holding a vPort's MAC is most likely that
/// vPort, configured by an earlier apply.
pub fn check_against(cfg: &Config, inv: &Inventory) -> Result<Vec<ResolvedUplink>, ConfigError> {
    let mut problems = Vec::new();
    let mut report = |at: &Location, message: String, hint: String| {
        problems.push(Problem {
            at: at.clone(),
            message,
            hint,
        });
    };
    let mut resolved: Vec<ResolvedUplink> = Vec::new();
    for (index, up) in cfg.uplinks.iter().enumerate() {
        let what = format!("uplink {}", up.selector);
        let hits: Vec<(&PciFunction, Option<u32>)> = match &up.selector {
            UplinkSelector::Pci(bdf) => inv
                .pci_functions
                .iter()
                .filter(|f| f.bdf.eq_ignore_ascii_case(bdf))
                .map(|f| (f, f.netdevs.first().map(|d| d.ifindex)))
                .collect(),
            UplinkSelector::Mac(mac) => functions_with_netdev(inv, |d| {
                d.mac
                    .as_deref()
                    .and_then(|m| Mac::from_str(m).ok())
                    .map(|m| m.to_string())
                    == Some(mac.clone())
            }),
            UplinkSelector::Ifname(name) => functions_with_netdev(inv, |d| d.name == *name),
        };
        let (f, ifindex) = match hits.as_slice() {
            [hit] => *hit,
            [] => {
                let other = inv.other_netdevs.iter().find(|d| match &up.selector {
                    UplinkSelector::Ifname(n) => d.name == *n,
                    UplinkSelector::Mac(m) => d.mac.as_deref() == Some(m.as_str()),
                    UplinkSelector::Pci(_) => false,
                });
                let message = match other {
                    Some(d) => match d.kind.as_deref() {
                        Some(kind) => format!(
                            "{what}: {} is a virtual interface ({kind}), not a PCI NIC",
                            d.name
                        ),
                        None => format!("{what}: {} is not a PCI NIC", d.name),
                    },
                    None => format!(
                        "{what}: no network PCI function on this host has that {}",
                        up.selector.key()
                    ),
                };
                report(&up.at, message, host_functions_hint(inv));
                continue;
            }
            many => {
                let bdfs: Vec<&str> = many.iter().map(|(f, _)| f.bdf.as_str()).collect();
                report(
                    &up.at,
                    format!(
                        "{what}: matches several PCI functions ({})",
                        bdfs.join(", ")
                    ),
                    "bonds and teams give their ports one MAC: select the PF by pci instead"
                        .to_string(),
                );
                continue;
            }
        };
        if f.role == Role::Vf {
            let pf = f.physfn.as_deref().unwrap_or("its PF");
            report(
                &up.at,
                format!("{what}: {} is a VF of {pf}, not a PF", f.bdf),
                format!("an uplink is the physical function that owns the VFs: pci = \"{pf}\""),
            );
            continue;
        }
        let total = f.sriov.as_ref().map_or(0, |s| s.total_vfs);
        if let Some(n) = up.num_vfs
            && n > total
        {
            let (message, hint) = if f.sriov.is_some() {
                (
                    format!(
                        "{what}: num_vfs {n} is above the {total} VFs {} supports (sriov_totalvfs)",
                        f.bdf
                    ),
                    format!(
                        "lower num_vfs to at most {total}, or omit it; the firmware may set a lower limit than the NIC"
                    ),
                )
            } else {
                (
                    format!("{what}: num_vfs {n}, but {} has no SR-IOV", f.bdf),
                    "remove num_vfs: this uplink's vPorts will use queues or the software switch"
                        .to_string(),
                )
            };
            report(&up.at, message, hint);
        }
        if let Some(vf) = up.switch_vf
            && vf >= total
        {
            let (message, hint) = if f.sriov.is_some() && total > 0 {
                (
                    format!(
                        "{what}: switch_vf {vf}, but {} has VFs 0 to {} at most (sriov_totalvfs {total})",
                        f.bdf,
                        total.saturating_sub(1)
                    ),
                    "pick a VF index below sriov_totalvfs (vportd discover shows it)".to_string(),
                )
            } else {
                (
                    format!("{what}: switch_vf {vf}, but {} has no SR-IOV", f.bdf),
                    "remove switch_vf: the software switch then trunks through the PF itself"
                        .to_string(),
                )
            };
            report(&up.at, message, hint);
        }
        if let Some(first) = resolved.iter().find(|r| r.bdf == f.bdf) {
            let other = &cfg.uplinks[first.index];
            report(
                &up.at,
                format!(
                    "{what}: is {}, the same PF as uplink {} at {}",
                    f.bdf, other.selector, other.at
                ),
                "declare each PF once, with all its settings in one [[uplink]]".to_string(),
            );
            continue;
        }
        resolved.push(ResolvedUplink {
            index,
            bdf: f.bdf.clone(),
            ifindex,
        });
    }

    for v in &cfg.vports {
        let owner = inv
            .pci_functions
            .iter()
            .filter(|f| f.role != Role::Vf)
            .flat_map(|f| f.netdevs.iter().map(move |d| (f, d)))
            .find(|(_, d)| d.mac.as_deref().and_then(|m| Mac::from_str(m).ok()) == Some(v.mac));
        if let Some((f, d)) = owner {
            report(
                &v.at,
                format!(
                    "vport {:?}: mac {} is already the MAC of {} ({})",
                    v.name, v.mac, d.name, f.bdf
                ),
                "two ports with one MAC on the same wire break forwarding: give the vPort another"
                    .to_string(),
            );
        }
    }

    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(ConfigError::Invalid(sorted(problems)))
    }
}

/// Non-VF functions with a netdev that `pred` picks, and that netdev's ifindex. A VF is
/// included too, so that naming one is reported as such rather than as "not found".
fn functions_with_netdev(
    inv: &Inventory,
    pred: impl Fn(&crate::facts::inventory::Netdev) -> bool,
) -> Vec<(&PciFunction, Option<u32>)> {
    inv.pci_functions
        .iter()
        .filter_map(|f| {
            f.netdevs
                .iter()
                .find(|d| pred(d))
                .map(|d| (f, Some(d.ifindex)))
        })
        .collect()
}

/// What the host has, so a wrong selector can be corrected without another command.
fn host_functions_hint(inv: &Inventory) -> String {
    let listed: Vec<String> = inv
        .pci_functions
        .iter()
        .filter(|f| f.role != Role::Vf)
        .map(|f| {
            let mut s = f.bdf.clone();
            if let Some(d) = f.netdevs.first() {
                s += &format!(" ({}", d.name);
                if let Some(m) = &d.mac {
                    s += &format!(" {m}");
                }
                s += ")";
            }
            s
        })
        .collect();
    if listed.is_empty() {
        "this host has no network PCI functions; vportd discover shows what it sees".to_string()
    } else {
        format!(
            "this host's network PCI functions: {}; vportd discover shows more",
            listed.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::inventory::{self, Sriov, VfEntry};
    use crate::facts::profile::ProfileSet;
    use crate::host::fs::KernelFs;
    use crate::host::netlink::NetlinkSnapshot;
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
        let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
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
        assert_eq!(names, ["vm1-eth0", "vm2-eth0", "vm3-eth0", "ctr1"]);
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
        let text = userfiles::read_text(&path).unwrap();
        for (key, _) in TOP_KEYS.iter().chain(UPLINK_KEYS).chain(VPORT_KEYS) {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{key} = ")) || l == format!("[[{key}]]")),
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
                "hint: did you mean vlan? valid keys in [[vport]]: name, uplink, mac, vlan, qos, proto, max_tx_rate_mbps, min_tx_rate_mbps, spoofchk, trust, link_state, offload, optional, queues, placement, cpus, tap_owner, tap_group"
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

    // --- against the host -------------------------------------------------------------------

    /// The build machine: one virtio-net function 0000:00:03.0 (eth0, ifindex 4,
    /// 02:fc:00:00:00:01) without SR-IOV, plus lo and two ifb devices.
    fn build_machine() -> Inventory {
        let dir = repo("tests/fixtures/build-virtio");
        let nl: NetlinkSnapshot =
            serde_json::from_str(&userfiles::read_text(&dir.join("netlink.json")).unwrap())
                .unwrap();
        inventory::discover(&KernelFs::at(&dir), &nl, ProfileSet::builtin()).unwrap()
    }

    /// The build machine plus an SR-IOV PF 0000:01:00.0 (enp1s0, ifindex 10, 7 VFs at most)
    /// with one VF 0000:01:10.0 (enp1s0v0, ifindex 11), shaped after an 82576.
    fn sriov_host() -> Inventory {
        let mut inv = build_machine();
        let template = inv.pci_functions[0].clone();
        let mut pf = template.clone();
        pf.bdf = "0000:01:00.0".into();
        pf.role = Role::Pf;
        pf.driver = Some("igb".into());
        pf.virtio_device = None;
        pf.netdevs[0].name = "enp1s0".into();
        pf.netdevs[0].ifindex = 10;
        pf.netdevs[0].mac = Some("52:54:00:12:34:56".into());
        pf.sriov = Some(Sriov {
            total_vfs: 7,
            num_vfs: 1,
            drivers_autoprobe: Some(true),
            vfs: vec![VfEntry {
                index: 0,
                bdf: "0000:01:10.0".into(),
                driver: Some("igbvf".into()),
                netdevs: Vec::new(),
                config: None,
            }],
        });
        let mut vf = template;
        vf.bdf = "0000:01:10.0".into();
        vf.role = Role::Vf;
        vf.driver = Some("igbvf".into());
        vf.physfn = Some("0000:01:00.0".into());
        vf.vf_index = Some(0);
        vf.virtio_device = None;
        vf.netdevs[0].name = "enp1s0v0".into();
        vf.netdevs[0].ifindex = 11;
        vf.netdevs[0].mac = Some("02:00:00:00:01:01".into());
        inv.pci_functions.push(pf);
        inv.pci_functions.push(vf);
        inv
    }

    fn check(text: &str, inv: &Inventory) -> Result<Vec<ResolvedUplink>, ConfigError> {
        check_against(&parse_ok(text), inv)
    }

    fn check_err(text: &str, inv: &Inventory) -> String {
        match check(text, inv) {
            Ok(r) => panic!("accepted {text} as {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn uplink_by_pci_mac_or_ifname_resolves_to_one_bdf_and_ifindex() {
        let inv = build_machine();
        for selector in [
            "pci = \"0000:00:03.0\"",
            "pci = \"00:03.0\"",
            "mac = \"02:FC:00:00:00:01\"",
            "ifname = \"eth0\"",
        ] {
            let text = format!(
                "[[uplink]]\n{selector}\n[[vport]]\nname = \"c1\"\nuplink = {}\nmac = \"02:00:00:00:00:01\"\n",
                selector.split_once(" = ").unwrap().1
            );
            let resolved = check(&text, &inv).unwrap_or_else(|e| panic!("{selector}: {e}"));
            assert_eq!(
                resolved,
                [ResolvedUplink {
                    index: 0,
                    bdf: "0000:00:03.0".into(),
                    ifindex: Some(4)
                }],
                "{selector}"
            );
        }
    }

    #[test]
    fn a_uplink_the_host_lacks_is_an_error_listing_what_it_has() {
        let inv = build_machine();
        let e = check_err(
            "state_dir = \"/x\"\n[[uplink]]\npci = \"0000:09:00.0\"\n",
            &inv,
        );
        assert!(
            e.starts_with("host.toml:2:1: uplink pci 0000:09:00.0: no network PCI function on this host has that pci\n"),
            "{e}"
        );
        assert!(
            e.contains(
                "hint: this host's network PCI functions: 0000:00:03.0 (eth0 02:fc:00:00:00:01)"
            ),
            "{e}"
        );
        let e = check_err("[[uplink]]\nifname = \"eth9\"\n", &inv);
        assert!(
            e.contains("no network PCI function on this host has that ifname"),
            "{e}"
        );
        let e = check_err("[[uplink]]\nifname = \"ifb0\"\n", &inv);
        assert!(
            e.contains("ifb0 is a virtual interface (ifb), not a PCI NIC"),
            "{e}"
        );
    }

    #[test]
    fn a_vf_is_not_an_uplink() {
        let e = check_err("[[uplink]]\npci = \"0000:01:10.0\"\n", &sriov_host());
        assert!(
            e.contains("host.toml:1:1: uplink pci 0000:01:10.0: 0000:01:10.0 is a VF of 0000:01:00.0, not a PF"),
            "{e}"
        );
        assert!(
            e.contains(
                "hint: an uplink is the physical function that owns the VFs: pci = \"0000:01:00.0\""
            ),
            "{e}"
        );
        let e = check_err("[[uplink]]\nifname = \"enp1s0v0\"\n", &sriov_host());
        assert!(e.contains("is a VF of 0000:01:00.0"), "{e}");
    }

    #[test]
    fn num_vfs_above_the_pfs_total_is_an_error_naming_the_total() {
        let inv = sriov_host();
        let ok = check("[[uplink]]\nifname = \"enp1s0\"\nnum_vfs = 7\n", &inv).unwrap();
        assert_eq!(ok[0].bdf, "0000:01:00.0");
        assert_eq!(ok[0].ifindex, Some(10));
        let e = check_err("[[uplink]]\nifname = \"enp1s0\"\nnum_vfs = 8\n", &inv);
        assert!(
            e.contains("num_vfs 8 is above the 7 VFs 0000:01:00.0 supports"),
            "{e}"
        );
        assert!(e.contains("hint: lower num_vfs to at most 7"), "{e}");
        let e = check_err("[[uplink]]\npci = \"0000:00:03.0\"\nnum_vfs = 2\n", &inv);
        assert!(
            e.contains("num_vfs 2, but 0000:00:03.0 has no SR-IOV"),
            "{e}"
        );
    }

    #[test]
    fn a_function_without_sriov_is_a_fine_uplink() {
        let text = "[[uplink]]\npci = \"0000:00:03.0\"\nnum_vfs = 0\n[[vport]]\nname = \"c1\"\nuplink = \"0000:00:03.0\"\nmac = \"02:00:00:00:00:01\"\n";
        assert_eq!(check(text, &build_machine()).unwrap().len(), 1);
    }

    #[test]
    fn one_pf_named_twice_is_an_error() {
        let e = check_err(
            "[[uplink]]\npci = \"0000:01:00.0\"\n[[uplink]]\nmac = \"52:54:00:12:34:56\"\n",
            &sriov_host(),
        );
        assert!(
            e.starts_with("host.toml:3:1: uplink mac 52:54:00:12:34:56: is 0000:01:00.0, the same PF as uplink pci 0000:01:00.0 at host.toml:1:1"),
            "{e}"
        );
    }

    #[test]
    fn a_vport_mac_a_pf_already_has_is_an_error_but_a_vf_holding_it_is_not() {
        let inv = sriov_host();
        let vport = |mac: &str| {
            format!(
                "[[uplink]]\npci = \"0000:01:00.0\"\n[[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"{mac}\"\n"
            )
        };
        let e = check_err(&vport("02:fc:00:00:00:01"), &inv);
        assert!(
            e.starts_with("host.toml:3:1: vport \"vm1\": mac 02:fc:00:00:00:01 is already the MAC of eth0 (0000:00:03.0)"),
            "{e}"
        );
        // enp1s0v0 has this MAC: an earlier apply gave it to vm1; applying again is fine.
        assert!(check(&vport("02:00:00:00:01:01"), &inv).is_ok());
    }

    #[test]
    fn host_problems_are_all_reported_together() {
        let e = check_err(
            concat!(
                "[[uplink]]\npci = \"0000:01:10.0\"\n",
                "[[uplink]]\npci = \"0000:01:00.0\"\nnum_vfs = 9\n",
                "[[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"52:54:00:12:34:56\"\n",
            ),
            &sriov_host(),
        );
        let located: Vec<&str> = e.lines().filter(|l| !l.starts_with("  hint:")).collect();
        assert_eq!(located.len(), 3, "{e}");
        assert!(located[0].starts_with("host.toml:1:1:") && located[0].contains("is a VF"));
        assert!(located[1].starts_with("host.toml:3:1:") && located[1].contains("num_vfs 9"));
        assert!(located[2].starts_with("host.toml:6:1:") && located[2].contains("enp1s0"));
    }

    /// The SR-IOV rig's guest: PF 0000:01:00.0 (eth0, 52:54:00:12:00:01) with 7 VFs, one
    /// holding 02:00:00:00:01:01; PF 0000:02:00.0 (eth1, 52:54:00:12:00:02) without VFs.
    fn guest_82576() -> Inventory {
        let dir = repo("tests/fixtures/guest-82576-7vfs");
        let nl: NetlinkSnapshot =
            serde_json::from_str(&userfiles::read_text(&dir.join("netlink.json")).unwrap())
                .unwrap();
        inventory::discover(&KernelFs::at(&dir), &nl, ProfileSet::builtin()).unwrap()
    }

    #[test]
    fn the_82576_guest_resolves_its_pfs_and_refuses_its_vfs() {
        let inv = guest_82576();
        let resolved = check(
            concat!(
                "[[uplink]]\nifname = \"eth0\"\nnum_vfs = 7\nvf_driver = \"igbvf\"\n",
                "[[uplink]]\nmac = \"52:54:00:12:00:02\"\n",
                "[[vport]]\nname = \"vm1\"\nuplink = \"eth0\"\nmac = \"02:00:00:00:01:01\"\nvlan = 100\nqos = 3\n",
            ),
            &inv,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(usize, &str, Option<u32>)> = resolved
            .iter()
            .map(|r| (r.index, r.bdf.as_str(), r.ifindex))
            .collect();
        assert_eq!(
            got,
            [(0, "0000:01:00.0", Some(2)), (1, "0000:02:00.0", Some(3))]
        );

        let e = check_err("[[uplink]]\npci = \"0000:01:10.2\"\n", &inv);
        assert!(
            e.contains("0000:01:10.2 is a VF of 0000:01:00.0, not a PF"),
            "{e}"
        );
        let e = check_err("[[uplink]]\npci = \"0000:01:00.0\"\nnum_vfs = 8\n", &inv);
        assert!(
            e.contains("num_vfs 8 is above the 7 VFs 0000:01:00.0 supports"),
            "{e}"
        );
        let e = check_err(
            "[[uplink]]\npci = \"0000:01:00.0\"\n[[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"52:54:00:12:00:02\"\n",
            &inv,
        );
        assert!(
            e.contains("is already the MAC of eth1 (0000:02:00.0)"),
            "{e}"
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
}
