//! Hardware profiles as data: what each NIC family's drivers can do at all, with the source of
//! every fact, and the set of them indexed by PCI id. Reading and validating profile files is
//! `facts::profile`'s; the planner only matches functions against a set, here.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Unexpected};
use serde::{Deserialize, Serialize};

/// A PCI vendor or device id. Profiles write it as exactly 4 hex digits, the way `lspci -n`
/// and sysfs show it, so that a profile can be checked against those by eye.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciId(pub u16);

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}", self.0)
    }
}

impl fmt::Debug for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for PciId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = PciId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string of 4 hex digits")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PciId, E> {
                if v.len() == 4 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    u16::from_str_radix(v, 16)
                        .map(PciId)
                        .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
                } else {
                    Err(E::invalid_value(Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// A count the profile knows, or one only the device can tell (`"firmware"`): mlx5 and bnxt
/// take VF and queue counts from NVM settings, so no file can hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(u32),
    Firmware,
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Firmware => f.write_str("firmware"),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Count(n) => s.serialize_u32(*n),
            Amount::Firmware => s.serialize_str("firmware"),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or \"firmware\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                u32::try_from(v)
                    .map(Amount::Count)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                u32::try_from(v)
                    .map(Amount::Count)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                if v == "firmware" {
                    Ok(Amount::Firmware)
                } else {
                    Err(E::invalid_value(Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// One NIC family: how to recognise its functions, and what its drivers can do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The file name without `.toml`; a name inside the file could disagree with it.
    #[serde(skip_deserializing)]
    pub name: String,
    /// Marketing name(s) of the NICs, for people.
    pub family: String,
    #[serde(rename = "match")]
    pub ids: MatchRules,
    pub capabilities: Capabilities,
    /// Driver behaviour a planner must work around (errors it will see, retries it needs).
    #[serde(default)]
    pub quirks: Vec<Quirk>,
}

/// PCI ids and drivers of the family's functions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRules {
    pub vendor: PciId,
    pub pf_devices: Vec<PciId>,
    /// VF ids only this family's PFs create.
    #[serde(default)]
    pub vf_devices: Vec<PciId>,
    /// VF ids other families' PFs create too (Intel's adaptive VF 8086:1889 under i40e and
    /// ice): listing them here says the repeat is deliberate, and only the PF can tell.
    #[serde(default)]
    pub shared_vf_devices: Vec<PciId>,
    /// The PCI driver (sysfs `driver` link) of the PF.
    pub pf_driver: String,
    #[serde(default)]
    pub vf_driver: Option<String>,
    pub source: String,
}

/// What the family's drivers can do at all; a value read from the host (`sriov_totalvfs`,
/// ethtool's queue facts) overrides any of these. The eswitch mode is read from the host
/// (devlink, `facts::switchdev`), never taken from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub sriov: Sriov,
    pub steering: Steering,
    /// Per-VF controls through the PF; absent for families without SR-IOV.
    #[serde(default)]
    pub vf: Option<VfControls>,
    pub eswitch: Eswitch,
}

/// SR-IOV and VMDq sizing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sriov {
    /// 0 for families without SR-IOV.
    pub max_vfs: Amount,
    /// Queue pairs a VF gets by default; `None` where the sources do not say.
    #[serde(default)]
    pub queue_pairs_per_vf: Option<Amount>,
    /// The most queue pairs a VF can be given, where that differs from the default.
    #[serde(default)]
    pub max_queue_pairs_per_vf: Option<Amount>,
    /// VMDq pools (queue sets without a VF); 0 where the NIC has none; absent where the
    /// sources do not say ([`Sriov::has_vmdq`]).
    #[serde(default)]
    pub vmdq_pools: Option<Amount>,
    #[serde(default)]
    pub note: Option<String>,
    pub source: String,
}

impl Sriov {
    /// Whether the family has VMDq pools, as far as its profile says: `vmdq_pools = 0` is
    /// none (ice, virtio-net), a count or `"firmware"` is some, and a profile without the
    /// key does not say (None), which leaves the answer to what the driver reports
    /// (l2-fwd-offload).
    pub fn has_vmdq(&self) -> Option<bool> {
        self.vmdq_pools.map(|pools| pools != Amount::Count(0))
    }
}

/// Receive steering: RSS and flow rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steering {
    /// Entries in the PF's RSS indirection table (the largest the driver uses).
    #[serde(default)]
    pub pf_rss_table: Option<Amount>,
    /// Entries in a VF's own RSS table; `None` where a VF has none of its own.
    #[serde(default)]
    pub vf_rss_table: Option<Amount>,
    #[serde(default)]
    pub rss_key_bytes: Option<Amount>,
    /// Extra RSS contexts (`ethtool -X ... context new`), the basis of per-vPort queue sets.
    pub rss_contexts: bool,
    /// ntuple / flow director rules (`ethtool -N`).
    pub ntuple: bool,
    #[serde(default)]
    pub note: Option<String>,
    pub source: String,
}

/// What `ip link set PF vf N ...` accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VfControls {
    pub min_rate: bool,
    pub max_rate: bool,
    pub trust: bool,
    pub spoofchk: bool,
    pub link_state: bool,
    pub vlan_protocols: Vec<VlanProtocol>,
    /// How many unicast addresses besides its own a VF's driver asks its PF to filter for it
    /// (what a software switch trunked through a VF needs, one per vPort); absent: not known.
    #[serde(default)]
    pub unicast_filters: Option<u32>,
    #[serde(default)]
    pub note: Option<String>,
    pub source: String,
}

/// A VLAN tag protocol a VF's port VLAN can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VlanProtocol {
    #[serde(rename = "802.1Q")]
    Dot1Q,
    #[serde(rename = "802.1ad")]
    Dot1Ad,
}

/// The embedded switch's modes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eswitch {
    /// `devlink dev eswitch set ... mode switchdev`, with VF representors: whether the family
    /// can, for people; the planner reads the mode the host is in (`Inventory`'s
    /// `eswitch_mode`) instead.
    pub switchdev: bool,
    #[serde(default)]
    pub note: Option<String>,
    pub source: String,
}

/// A driver behaviour that a planner should expect: an error, and whether a bounded retry
/// can succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quirk {
    pub action: Action,
    /// The errno name the kernel returns (`"EOPNOTSUPP"`), where known.
    #[serde(default)]
    pub errno: Option<String>,
    /// The error is transient: retry with a bound, then read back.
    #[serde(default)]
    pub retry: bool,
    pub note: String,
    pub source: String,
}

/// Host operations a quirk can concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    SriovNumvfs,
    VfMac,
    VfVlan,
    VfVlanProtocol,
    VfMinRate,
    VfMaxRate,
    VfTrust,
    VfSpoofchk,
    VfLinkState,
    Channels,
    Rss,
    Ntuple,
    EswitchMode,
}

/// Whether a function matched a profile as its physical or its virtual function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Pf,
    Vf,
}

impl Role {
    /// "pf" or "vf", as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pf => "pf",
            Role::Vf => "vf",
        }
    }
}

/// The outcome of [`ProfileSet::match_function`].
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'a> {
    pub profile: &'a Profile,
    pub role: Role,
    /// Other profiles that list the same VF id, empty for nearly every id. Some VF ids are
    /// shared by families (8086:1889 under i40e and ice, 15b3:101e under ConnectX-6 Dx and
    /// ConnectX-7): then `profile` is only the first candidate by name, and the VF's PF
    /// tells which family it really is.
    pub shared_with: Vec<&'a Profile>,
}

impl Match<'_> {
    /// "pf" or "vf", as in the JSON output.
    pub fn role_name(&self) -> &'static str {
        self.role.as_str()
    }

    /// The matched profile's capabilities as JSON, for callers that merge runtime values in.
    pub fn capabilities_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.profile.capabilities)
            .expect("capabilities serialize to JSON: plain strings, numbers and bools")
    }
}

/// A validated set of profiles with an index from PCI ids to profiles.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    pub(crate) profiles: Vec<Profile>,
    pub(crate) by_id: HashMap<(PciId, PciId), Vec<(usize, Role)>>,
}

impl ProfileSet {
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Finds the profile of a PCI function by its ids. The driver only narrows a VF id that
    /// several families share: a function bound to vfio-pci or pci-stub still matches by ids.
    pub fn match_function(
        &self,
        vendor: u16,
        device: u16,
        driver: Option<&str>,
    ) -> Option<Match<'_>> {
        let hits = self.by_id.get(&(PciId(vendor), PciId(device)))?;
        let mut candidates: Vec<(&Profile, Role)> = hits
            .iter()
            .map(|&(i, role)| (&self.profiles[i], role))
            .collect();
        // Validation lets only shared VF ids repeat; the driver may single one out.
        if candidates.len() > 1 && driver.is_some() {
            let same_driver = |p: &Profile| p.ids.vf_driver.as_deref() == driver;
            if candidates.iter().filter(|(p, _)| same_driver(p)).count() == 1 {
                candidates.retain(|(p, _)| same_driver(p));
            }
        }
        candidates.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let (&(profile, role), rest) = candidates.split_first()?;
        Some(Match {
            profile,
            role,
            shared_with: rest.iter().map(|(p, _)| *p).collect(),
        })
    }

    /// Ids of `profile` that collide with profiles already in the set, as (field, message).
    pub(crate) fn clashes(&self, profile: &Profile) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let vendor = profile.ids.vendor;
        for (field, device, role, shared) in id_fields(&profile.ids) {
            for &(i, other_role) in self.by_id.get(&(vendor, device)).into_iter().flatten() {
                let other = &self.profiles[i];
                let both_shared = shared
                    && other_role == Role::Vf
                    && other.ids.shared_vf_devices.contains(&device);
                if both_shared {
                    continue;
                }
                let mut message = format!(
                    "{vendor}:{device} is already a {} id of profile {}",
                    other_role.as_str().to_uppercase(),
                    other.name
                );
                if role == Role::Vf && other_role == Role::Vf {
                    message += "; if both families' PFs really create this VF, list it under match.shared_vf_devices in both";
                }
                out.push((field.clone(), message));
            }
        }
        out
    }

    pub(crate) fn insert(&mut self, profile: Profile) {
        let index = self.profiles.len();
        for (_, device, role, _) in id_fields(&profile.ids) {
            self.by_id
                .entry((profile.ids.vendor, device))
                .or_default()
                .push((index, role));
        }
        self.profiles.push(profile);
    }
}

/// Every device id of a profile with its field path, role and whether it is declared shared.
pub(crate) fn id_fields(ids: &MatchRules) -> Vec<(String, PciId, Role, bool)> {
    let lists = [
        ("pf_devices", &ids.pf_devices, Role::Pf, false),
        ("vf_devices", &ids.vf_devices, Role::Vf, false),
        ("shared_vf_devices", &ids.shared_vf_devices, Role::Vf, true),
    ];
    lists
        .into_iter()
        .flat_map(|(key, list, role, shared)| {
            list.iter()
                .enumerate()
                .map(move |(i, id)| (format!("match.{key}[{i}]"), *id, role, shared))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Amount, Sriov};

    fn sriov(vmdq_pools: Option<Amount>) -> Sriov {
        Sriov {
            max_vfs: Amount::Count(0),
            queue_pairs_per_vf: None,
            max_queue_pairs_per_vf: None,
            vmdq_pools,
            note: None,
            source: String::new(),
        }
    }

    #[test]
    fn zero_vmdq_pools_is_none_and_a_missing_key_says_nothing() {
        assert_eq!(sriov(Some(Amount::Count(0))).has_vmdq(), Some(false));
        assert_eq!(sriov(Some(Amount::Count(64))).has_vmdq(), Some(true));
        assert_eq!(sriov(Some(Amount::Firmware)).has_vmdq(), Some(true));
        assert_eq!(sriov(None).has_vmdq(), None);
    }
}
