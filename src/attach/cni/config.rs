//! The network config a runtime passes on stdin: the spec's keys, and vportd's own (where
//! the attachment goes, and the attributes its vPort gets). Every key is checked; an
//! unknown or wrong one is refused with code 7 naming it, because a typo that is dropped
//! silently gives a container the wrong VLAN.

use serde_json::{Map, Value};

use super::env::{Attachment, Command};
use super::error::CniError;
use super::mac::generated_mac;
use super::result::{CniResult, Dns};
use super::{PLUGIN_TYPE, SUPPORTED_VERSIONS};
use crate::model::mac::Mac;
use crate::model::suggest::edit_distance;

/// Where an attachment's vPort is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A VF of this uplink, else its queues or its software switch (as `offload` says).
    Uplink(UplinkRef),
    /// A port on this software switch.
    Switch(String),
    /// A VF from this `[[pool]]` of the host config.
    Pool(String),
}

/// An uplink PF, by the identities that survive renaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkRef {
    /// Normalized: lower case with the domain, `0000:01:00.0`.
    Pci(String),
    Mac(Mac),
}

/// How hard to try for a VF: the words of the host config's `offload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Offload {
    /// A VF or nothing.
    Required,
    /// A VF if one is free, else queues, else the software switch.
    #[default]
    Preferred,
    /// Always the software switch.
    Never,
}

/// The vPort attributes an attachment asks for; None leaves the uplink's or pool's default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    pub vlan: Option<u16>,
    pub qos: Option<u8>,
    pub max_tx_rate_mbps: Option<u32>,
    pub min_tx_rate_mbps: Option<u32>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    pub mtu: Option<u32>,
    pub offload: Offload,
}

/// A checked network config.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// One of [`SUPPORTED_VERSIONS`]: what the answer is written in.
    pub cni_version: &'static str,
    pub name: String,
    pub target: Target,
    pub attrs: Attributes,
    /// The `mac` runtime capability (`runtimeConfig.mac`).
    pub runtime_mac: Option<Mac>,
    /// `ipam.type`: the IPAM plugin to delegate to (a file name in CNI_PATH).
    pub ipam: Option<String>,
    pub dns: Option<Dns>,
    /// CHECK's (and maybe DEL's) copy of ADD's answer.
    pub prev_result: Option<CniResult>,
    /// GC's list of the attachments to keep.
    pub valid_attachments: Option<Vec<Attachment>>,
    /// `socket`: the daemon's control socket, an absolute path (None: the plugin's
    /// default). In the config because a runtime's cleanup process, which sends DEL, may
    /// not carry the environment the ADD had.
    pub socket: Option<std::path::PathBuf>,
}

/// Keys the spec (or a runtime on its behalf) puts in a plugin's config.
const SPEC_KEYS: [&str; 11] = [
    "cniVersion",
    "name",
    "type",
    "capabilities",
    "runtimeConfig",
    "args",
    "ipam",
    "dns",
    "prevResult",
    "cni.dev/valid-attachments",
    // libcni 1.2.0 sent GC's list under this name; later versions send both.
    "cni.dev/attachments",
];

/// vportd's own keys.
const VPORTD_KEYS: [&str; 13] = [
    "uplink",
    "switch",
    "pool",
    "vlan",
    "qos",
    "max_tx_rate_mbps",
    "min_tx_rate_mbps",
    "spoofchk",
    "trust",
    "mtu",
    "offload",
    "mac",
    "socket",
];

/// The version an error about `stdin` is written in: the config's own when this plugin
/// speaks it, else the newest.
pub fn error_version(stdin: &[u8]) -> &'static str {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .and_then(|asked| SUPPORTED_VERSIONS.iter().find(|s| **s == asked).copied())
        .unwrap_or(super::LATEST_VERSION)
}

impl NetConf {
    /// Reads and checks stdin for `command` (CHECK needs `prevResult`, GC its list).
    pub fn parse(stdin: &[u8], command: Command) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| CniError::Decode {
            what: "the network config on stdin".into(),
            problem: e.to_string(),
        })?;
        let Value::Object(obj) = value else {
            return Err(CniError::Decode {
                what: "the network config on stdin".into(),
                problem: "it is not a JSON object".into(),
            });
        };
        let cni_version = version(&obj)?;
        if let Some(key) = obj
            .keys()
            .find(|k| !SPEC_KEYS.contains(&k.as_str()) && !VPORTD_KEYS.contains(&k.as_str()))
        {
            return Err(unknown_key(key));
        }
        if obj.contains_key("mac") {
            return Err(CniError::invalid(
                "mac",
                "a network config holds no MAC: every container on it would share one",
                "a container's MAC comes from the runtime (declare \"capabilities\": {\"mac\": true}; podman run --mac-address) or is derived from the container id",
            ));
        }
        let name = name(&obj)?;
        match obj.get("type") {
            Some(Value::String(t)) if t == PLUGIN_TYPE => {}
            Some(other) => {
                return Err(CniError::invalid(
                    "type",
                    format!("is {other}, and this plugin is \"{PLUGIN_TYPE}\""),
                    "the runtime runs the plugin named by type; vportd's networks say \"type\": \"vportd\"",
                ));
            }
            None => return Err(missing("type", "\"type\": \"vportd\"")),
        }
        let target = target(&obj)?;
        let attrs = attributes(&obj, &target)?;
        let runtime_mac = runtime_mac(&obj)?;
        let ipam = ipam(&obj)?;
        let dns = match obj.get("dns") {
            None => None,
            Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                CniError::invalid(
                    "dns",
                    e.to_string(),
                    "dns is the spec's {nameservers, domain, search, options}",
                )
            })?),
        };
        for key in ["capabilities", "runtimeConfig", "args"] {
            if obj.get(key).is_some_and(|v| !v.is_object()) {
                return Err(CniError::invalid(key, "must be a JSON object", ""));
            }
        }
        let prev_result = prev_result(&obj, command)?;
        let valid_attachments = valid_attachments(&obj, command)?;
        let socket = match obj.get("socket") {
            None => None,
            Some(Value::String(p)) if p.starts_with('/') => Some(std::path::PathBuf::from(p)),
            Some(other) => {
                return Err(CniError::invalid(
                    "socket",
                    format!("{other} is not an absolute path"),
                    "socket is the vportd daemon's control socket, e.g. \"/run/vportd/vportd.sock\"",
                ));
            }
        };
        Ok(NetConf {
            socket,
            cni_version,
            name,
            target,
            attrs,
            runtime_mac,
            ipam,
            dns,
            prev_result,
            valid_attachments,
        })
    }

    /// The attachment's MAC: the runtime's (the `mac` capability, else `CNI_ARGS`' MAC,
    /// `args_mac`, which is where podman 4.3 puts `--mac-address`), else one derived from
    /// the attachment's key, the same on every call.
    pub fn mac_for(&self, a: &Attachment, args_mac: Option<Mac>) -> Mac {
        self.runtime_mac
            .or(args_mac)
            .unwrap_or_else(|| generated_mac(&self.name, &a.container_id, &a.ifname))
    }
}

fn missing(key: &str, example: &str) -> CniError {
    CniError::invalid(key, "is required", format!("add {example}"))
}

fn version(obj: &Map<String, Value>) -> Result<&'static str, CniError> {
    match obj.get("cniVersion") {
        Some(Value::String(v)) => SUPPORTED_VERSIONS
            .iter()
            .find(|s| *s == v)
            .copied()
            .ok_or_else(|| CniError::IncompatibleVersion { asked: v.clone() }),
        Some(other) => Err(CniError::IncompatibleVersion {
            asked: other.to_string(),
        }),
        None => Err(missing("cniVersion", "\"cniVersion\": \"1.0.0\"")),
    }
}

fn unknown_key(key: &str) -> CniError {
    let near = SPEC_KEYS
        .iter()
        .chain(VPORTD_KEYS.iter())
        .filter(|k| **k != "mac")
        .min_by_key(|k| edit_distance(key, k))
        .filter(|k| edit_distance(key, k) <= 2);
    let mut hint = match near {
        Some(k) => format!("did you mean {k}? "),
        None => String::new(),
    };
    hint.push_str("vportd reads uplink, switch, pool, vlan, qos, max_tx_rate_mbps, min_tx_rate_mbps, spoofchk, trust, mtu, offload, socket, ipam and dns");
    CniError::invalid(key, "is not a key vportd knows", hint)
}

/// A name as the spec allows a network's: an alphanumeric, then alphanumerics, '_', '.', '-'.
fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn name_at(obj: &Map<String, Value>, key: &str, what: &str) -> Result<Option<String>, CniError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if is_name(s) => Ok(Some(s.clone())),
        Some(other) => Err(CniError::invalid(
            key,
            format!("{other} is not a {what} name"),
            "names start with a letter or digit and hold only letters, digits, '_', '.' and '-'",
        )),
    }
}

fn name(obj: &Map<String, Value>) -> Result<String, CniError> {
    name_at(obj, "name", "network")?.ok_or_else(|| missing("name", "\"name\": \"NETWORK\""))
}

fn target(obj: &Map<String, Value>) -> Result<Target, CniError> {
    let given: Vec<&str> = ["uplink", "switch", "pool"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    if given.len() > 1 {
        return Err(CniError::invalid(
            given[1],
            format!(
                "goes with {}, and a network has one of uplink, switch or pool",
                given[0]
            ),
            "keep the one the network's vPorts come from",
        ));
    }
    if let Some(s) = name_at(obj, "switch", "software switch")? {
        return Ok(Target::Switch(s));
    }
    if let Some(p) = name_at(obj, "pool", "pool")? {
        return Ok(Target::Pool(p));
    }
    let hint =
        "uplink is the PF's PCI address (\"0000:01:00.0\") or MAC; or name a switch or a pool";
    match obj.get("uplink") {
        None => Err(CniError::invalid(
            "uplink",
            "is missing: a network needs one of uplink, switch or pool",
            hint,
        )),
        Some(Value::String(s)) => uplink_ref(s).map(Target::Uplink).ok_or_else(|| {
            CniError::invalid(
                "uplink",
                format!("{s:?} is neither a PCI address nor a unicast MAC"),
                hint,
            )
        }),
        Some(other) => Err(CniError::invalid(
            "uplink",
            format!("{other} is not a string"),
            hint,
        )),
    }
}

/// `0000:01:00.0` or `01:00.0` (domain 0), or a unicast, non-zero MAC.
fn uplink_ref(s: &str) -> Option<UplinkRef> {
    if let Ok(mac) = s.parse::<Mac>() {
        return (!mac.is_multicast() && !mac.is_zero()).then_some(UplinkRef::Mac(mac));
    }
    let lower = s.to_ascii_lowercase();
    let full = if lower.matches(':').count() == 1 {
        format!("0000:{lower}")
    } else {
        lower
    };
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let (rest, func) = full.rsplit_once('.')?;
    let parts: Vec<&str> = rest.split(':').collect();
    let ok = parts.len() == 3
        && hex(parts[0], 4)
        && hex(parts[1], 2)
        && hex(parts[2], 2)
        && u8::from_str_radix(parts[2], 16).is_ok_and(|d| d < 32)
        && func.len() == 1
        && func.bytes().all(|b| (b'0'..=b'7').contains(&b));
    ok.then_some(UplinkRef::Pci(full))
}

/// An integer key inside `lo..=hi`; None when absent.
fn int(
    obj: &Map<String, Value>,
    key: &str,
    lo: u64,
    hi: u64,
    hint: &str,
) -> Result<Option<u64>, CniError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            _ if v.is_i64() || v.is_u64() => Err(CniError::invalid(
                key,
                format!("{v} is outside {lo} to {hi}"),
                hint,
            )),
            _ => Err(CniError::invalid(
                key,
                format!("{v} is not a whole number"),
                hint,
            )),
        },
    }
}

fn boolean(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, CniError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(CniError::invalid(
            key,
            format!("{other} is not true or false"),
            "",
        )),
    }
}

fn attributes(obj: &Map<String, Value>, target: &Target) -> Result<Attributes, CniError> {
    let vlan = int(
        obj,
        "vlan",
        1,
        4094,
        "802.1Q VLAN ids are 1 to 4094 (0 and 4095 are reserved); omit vlan for untagged traffic",
    )?;
    let qos = int(
        obj,
        "qos",
        0,
        7,
        "qos is the 802.1p priority carried in the VLAN tag: 0 (best effort) to 7",
    )?;
    if qos.is_some() && vlan.is_none() {
        return Err(CniError::invalid(
            "qos",
            "is set without vlan",
            "qos describes the VLAN tag: set vlan too, or remove qos",
        ));
    }
    let rate_hint = "rates are whole Mbit/s from 1; omit the key for no limit";
    let max = int(obj, "max_tx_rate_mbps", 1, u32::MAX.into(), rate_hint)?;
    let min = int(obj, "min_tx_rate_mbps", 1, u32::MAX.into(), rate_hint)?;
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(CniError::invalid(
            "min_tx_rate_mbps",
            format!("{min} is above max_tx_rate_mbps {max}"),
            "a guaranteed rate cannot exceed the cap: lower min_tx_rate_mbps or raise max_tx_rate_mbps",
        ));
    }
    let mtu = int(
        obj,
        "mtu",
        68,
        65535,
        "the MTU is 68 (IPv4's least) to 65535 bytes; omit it for the uplink's",
    )?;
    let offload = match obj.get("offload") {
        None => Offload::default(),
        Some(Value::String(s)) if s == "required" => Offload::Required,
        Some(Value::String(s)) if s == "preferred" => Offload::Preferred,
        Some(Value::String(s)) if s == "never" => Offload::Never,
        Some(other) => {
            return Err(CniError::invalid(
                "offload",
                format!("{other} is not one of \"required\", \"preferred\" or \"never\""),
                "required: a VF or nothing; preferred: a VF if one is free; never: the software switch",
            ));
        }
    };
    match (target, offload) {
        (Target::Switch(_), Offload::Required) => {
            return Err(CniError::invalid(
                "offload",
                "\"required\" asks for a VF, and a software switch has none",
                "use uplink or pool for a VF, or drop offload",
            ));
        }
        (Target::Pool(_), Offload::Never) => {
            return Err(CniError::invalid(
                "offload",
                "\"never\" refuses VFs, and a pool holds only VFs",
                "use uplink or switch for the software path, or drop offload",
            ));
        }
        _ => {}
    }
    let as_u32 = |n: Option<u64>| n.map(|n| u32::try_from(n).expect("range-checked"));
    Ok(Attributes {
        vlan: vlan.map(|n| n as u16),
        qos: qos.map(|n| n as u8),
        max_tx_rate_mbps: as_u32(max),
        min_tx_rate_mbps: as_u32(min),
        spoofchk: boolean(obj, "spoofchk")?,
        trust: boolean(obj, "trust")?,
        mtu: as_u32(mtu),
        offload,
    })
}

fn runtime_mac(obj: &Map<String, Value>) -> Result<Option<Mac>, CniError> {
    let Some(v) = obj.get("runtimeConfig").and_then(|r| r.get("mac")) else {
        return Ok(None);
    };
    let hint = "a container's MAC is six hex bytes with colons, unicast (first byte even) and not all zero";
    let mac = v
        .as_str()
        .and_then(|s| s.parse::<Mac>().ok())
        .ok_or_else(|| {
            CniError::invalid(
                "runtimeConfig.mac",
                format!("{v} is not a MAC address"),
                hint,
            )
        })?;
    if mac.is_multicast() {
        return Err(CniError::invalid(
            "runtimeConfig.mac",
            format!("{mac} is a multicast address"),
            hint,
        ));
    }
    if mac.is_zero() {
        return Err(CniError::invalid(
            "runtimeConfig.mac",
            "00:00:00:00:00:00 is no address",
            hint,
        ));
    }
    Ok(Some(mac))
}

fn ipam(obj: &Map<String, Value>) -> Result<Option<String>, CniError> {
    let Some(ipam) = obj.get("ipam") else {
        return Ok(None);
    };
    let hint = "ipam names the IPAM plugin to run from CNI_PATH: \"ipam\": {\"type\": \"host-local\", ...}";
    match ipam.get("type") {
        _ if !ipam.is_object() => Err(CniError::invalid("ipam", "must be a JSON object", hint)),
        Some(Value::String(t)) if !t.is_empty() && !t.contains('/') && t != "." && t != ".." => {
            Ok(Some(t.clone()))
        }
        Some(other) => Err(CniError::invalid(
            "ipam.type",
            format!("{other} is not a plugin's file name"),
            hint,
        )),
        None => Err(CniError::invalid("ipam.type", "is required", hint)),
    }
}

fn prev_result(obj: &Map<String, Value>, command: Command) -> Result<Option<CniResult>, CniError> {
    match obj.get("prevResult") {
        None if command == Command::Check => Err(CniError::invalid(
            "prevResult",
            "is required by CHECK",
            "the runtime passes ADD's answer as prevResult; a runtime that lost it cannot CHECK",
        )),
        None => Ok(None),
        Some(v) => {
            let bytes = serde_json::to_vec(v).expect("a JSON value serializes");
            CniResult::parse(&bytes, "prevResult")
                .map(Some)
                .map_err(|e| {
                    CniError::invalid(
                        "prevResult",
                        e.to_string(),
                        "prevResult must be ADD's answer, unchanged",
                    )
                })
        }
    }
}

fn valid_attachments(
    obj: &Map<String, Value>,
    command: Command,
) -> Result<Option<Vec<Attachment>>, CniError> {
    let key = ["cni.dev/valid-attachments", "cni.dev/attachments"]
        .into_iter()
        .find(|k| obj.contains_key(*k));
    let Some(key) = key else {
        return if command == Command::Gc {
            Err(CniError::invalid(
                "cni.dev/valid-attachments",
                "is required by GC",
                "without the list of attachments to keep, GC would free every one",
            ))
        } else {
            Ok(None)
        };
    };
    let hint = "a list of {\"containerID\": ..., \"ifname\": ...}";
    let list = obj[key]
        .as_array()
        .ok_or_else(|| CniError::invalid(key, "is not a list", hint))?;
    list.iter()
        .map(|item| {
            let field = |f: &str| item.get(f).and_then(Value::as_str).map(str::to_string);
            match (field("containerID"), field("ifname")) {
                (Some(container_id), Some(ifname)) => Ok(Attachment {
                    container_id,
                    ifname,
                }),
                _ => Err(CniError::invalid(
                    key,
                    format!("{item} lacks containerID or ifname"),
                    hint,
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"cniVersion":"1.0.0","name":"vfnet","type":"vportd","uplink":"0000:01:00.0",
        "vlan":100,"qos":3,"max_tx_rate_mbps":1000,"min_tx_rate_mbps":100,"spoofchk":true,
        "trust":false,"mtu":9000,"offload":"required","capabilities":{"mac":true},
        "runtimeConfig":{"mac":"02:11:22:33:44:55"},"args":{},
        "ipam":{"type":"host-local","subnet":"10.88.7.0/24"},"dns":{"nameservers":["10.88.7.1"]}}"#;

    fn with(key: &str, value: &str) -> String {
        let mut v: Value = serde_json::from_str(GOOD).unwrap();
        let obj = v.as_object_mut().unwrap();
        if value == "<unset>" {
            obj.remove(key);
        } else {
            obj.insert(key.to_string(), serde_json::from_str(value).unwrap());
        }
        v.to_string()
    }

    #[test]
    fn a_full_config_is_read() {
        let c = NetConf::parse(GOOD.as_bytes(), Command::Add).unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.name, "vfnet");
        assert_eq!(
            c.target,
            Target::Uplink(UplinkRef::Pci("0000:01:00.0".into()))
        );
        assert_eq!(
            c.attrs,
            Attributes {
                vlan: Some(100),
                qos: Some(3),
                max_tx_rate_mbps: Some(1000),
                min_tx_rate_mbps: Some(100),
                spoofchk: Some(true),
                trust: Some(false),
                mtu: Some(9000),
                offload: Offload::Required,
            }
        );
        assert_eq!(c.ipam.as_deref(), Some("host-local"));
        assert_eq!(c.dns.as_ref().unwrap().nameservers, vec!["10.88.7.1"]);
        let a = Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        // The capability wins over CNI_ARGS' MAC.
        let args_mac = Some("02:00:00:00:00:09".parse().unwrap());
        assert_eq!(c.mac_for(&a, args_mac).to_string(), "02:11:22:33:44:55");
    }

    #[test]
    fn the_smallest_configs_are_read_with_defaults() {
        for (text, target) in [
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"vportd","switch":"sw0"}"#,
                Target::Switch("sw0".into()),
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"vportd","pool":"gpu-vfs"}"#,
                Target::Pool("gpu-vfs".into()),
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"vportd","uplink":"52:54:00:12:00:01"}"#,
                Target::Uplink(UplinkRef::Mac("52:54:00:12:00:01".parse().unwrap())),
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"vportd","uplink":"01:00.1"}"#,
                Target::Uplink(UplinkRef::Pci("0000:01:00.1".into())),
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"vportd","uplink":"0000:AF:1F.7"}"#,
                Target::Uplink(UplinkRef::Pci("0000:af:1f.7".into())),
            ),
        ] {
            let c = NetConf::parse(text.as_bytes(), Command::Add).unwrap();
            assert_eq!(c.target, target);
            assert_eq!(c.attrs, Attributes::default());
            assert_eq!(
                (&c.ipam, c.runtime_mac, &c.prev_result),
                (&None, None, &None)
            );
            // No runtime MAC: derived from the attachment, the same every time.
            let a = Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into(),
            };
            assert_eq!(c.mac_for(&a, None), generated_mac("n", "c1", "eth0"));
            let args_mac = "02:00:00:00:00:09".parse().unwrap();
            assert_eq!(c.mac_for(&a, Some(args_mac)), args_mac);
        }
    }

    /// Each bad config and the exact error JSON it gets.
    #[test]
    fn bad_configs_get_their_code_naming_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "vlan",
                "5000",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"vlan\": 5000 is outside 1 to 4094","details":"802.1Q VLAN ids are 1 to 4094 (0 and 4095 are reserved); omit vlan for untagged traffic"}"#,
            ),
            (
                "vlan",
                "0",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"vlan\": 0 is outside 1 to 4094","details":"802.1Q VLAN ids are 1 to 4094 (0 and 4095 are reserved); omit vlan for untagged traffic"}"#,
            ),
            (
                "vlan",
                "-1",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"vlan\": -1 is outside 1 to 4094","details":"802.1Q VLAN ids are 1 to 4094 (0 and 4095 are reserved); omit vlan for untagged traffic"}"#,
            ),
            (
                "vlan",
                "\"100\"",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"vlan\": \"100\" is not a whole number","details":"802.1Q VLAN ids are 1 to 4094 (0 and 4095 are reserved); omit vlan for untagged traffic"}"#,
            ),
            (
                "qos",
                "8",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"qos\": 8 is outside 0 to 7","details":"qos is the 802.1p priority carried in the VLAN tag: 0 (best effort) to 7"}"#,
            ),
            (
                "vlan",
                "<unset>",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"qos\": is set without vlan","details":"qos describes the VLAN tag: set vlan too, or remove qos"}"#,
            ),
            (
                "max_tx_rate_mbps",
                "50",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"min_tx_rate_mbps\": 100 is above max_tx_rate_mbps 50","details":"a guaranteed rate cannot exceed the cap: lower min_tx_rate_mbps or raise max_tx_rate_mbps"}"#,
            ),
            (
                "max_tx_rate_mbps",
                "1.5",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"max_tx_rate_mbps\": 1.5 is not a whole number","details":"rates are whole Mbit/s from 1; omit the key for no limit"}"#,
            ),
            (
                "spoofchk",
                "\"yes\"",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"spoofchk\": \"yes\" is not true or false"}"#,
            ),
            (
                "trust",
                "1",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"trust\": 1 is not true or false"}"#,
            ),
            (
                "mtu",
                "67",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"mtu\": 67 is outside 68 to 65535","details":"the MTU is 68 (IPv4's least) to 65535 bytes; omit it for the uplink's"}"#,
            ),
            (
                "offload",
                "\"always\"",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"offload\": \"always\" is not one of \"required\", \"preferred\" or \"never\"","details":"required: a VF or nothing; preferred: a VF if one is free; never: the software switch"}"#,
            ),
            (
                "runtimeConfig",
                r#"{"mac":"03:00:00:00:00:01"}"#,
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"runtimeConfig.mac\": 03:00:00:00:00:01 is a multicast address","details":"a container's MAC is six hex bytes with colons, unicast (first byte even) and not all zero"}"#,
            ),
            (
                "runtimeConfig",
                r#"{"mac":"00:00:00:00:00:00"}"#,
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"runtimeConfig.mac\": 00:00:00:00:00:00 is no address","details":"a container's MAC is six hex bytes with colons, unicast (first byte even) and not all zero"}"#,
            ),
            (
                "runtimeConfig",
                r#"{"mac":"02-00-00-00-00-01"}"#,
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"runtimeConfig.mac\": \"02-00-00-00-00-01\" is not a MAC address","details":"a container's MAC is six hex bytes with colons, unicast (first byte even) and not all zero"}"#,
            ),
            (
                "runtimeConfig",
                "[]",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"runtimeConfig\": must be a JSON object"}"#,
            ),
            (
                "mac",
                "\"02:00:00:00:00:01\"",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"mac\": a network config holds no MAC: every container on it would share one","details":"a container's MAC comes from the runtime (declare \"capabilities\": {\"mac\": true}; podman run --mac-address) or is derived from the container id"}"#,
            ),
            (
                "vlna",
                "100",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"vlna\": is not a key vportd knows","details":"did you mean vlan? vportd reads uplink, switch, pool, vlan, qos, max_tx_rate_mbps, min_tx_rate_mbps, spoofchk, trust, mtu, offload, socket, ipam and dns"}"#,
            ),
            (
                "bridge",
                "\"cni0\"",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"bridge\": is not a key vportd knows","details":"vportd reads uplink, switch, pool, vlan, qos, max_tx_rate_mbps, min_tx_rate_mbps, spoofchk, trust, mtu, offload, socket, ipam and dns"}"#,
            ),
            (
                "uplink",
                "\"01:00:5e:00:00:01\"",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"uplink\": \"01:00:5e:00:00:01\" is neither a PCI address nor a unicast MAC","details":"uplink is the PF's PCI address (\"0000:01:00.0\") or MAC; or name a switch or a pool"}"#,
            ),
            (
                "uplink",
                "\"eth0\"",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"uplink\": \"eth0\" is neither a PCI address nor a unicast MAC","details":"uplink is the PF's PCI address (\"0000:01:00.0\") or MAC; or name a switch or a pool"}"#,
            ),
            (
                "uplink",
                "\"0000:01:00.8\"",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"uplink\": \"0000:01:00.8\" is neither a PCI address nor a unicast MAC","details":"uplink is the PF's PCI address (\"0000:01:00.0\") or MAC; or name a switch or a pool"}"#,
            ),
            (
                "uplink",
                "<unset>",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"uplink\": is missing: a network needs one of uplink, switch or pool","details":"uplink is the PF's PCI address (\"0000:01:00.0\") or MAC; or name a switch or a pool"}"#,
            ),
            (
                "switch",
                "\"sw0\"",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"switch\": goes with uplink, and a network has one of uplink, switch or pool","details":"keep the one the network's vPorts come from"}"#,
            ),
            (
                "type",
                "\"bridge\"",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"type\": is \"bridge\", and this plugin is \"vportd\"","details":"the runtime runs the plugin named by type; vportd's networks say \"type\": \"vportd\""}"#,
            ),
            (
                "name",
                "\"-x\"",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"name\": \"-x\" is not a network name","details":"names start with a letter or digit and hold only letters, digits, '_', '.' and '-'"}"#,
            ),
            (
                "name",
                "<unset>",
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"name\": is required","details":"add \"name\": \"NETWORK\""}"#,
            ),
            (
                "ipam",
                r#"{"subnet":"10.0.0.0/8"}"#,
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"ipam.type\": is required","details":"ipam names the IPAM plugin to run from CNI_PATH: \"ipam\": {\"type\": \"host-local\", ...}"}"#,
            ),
            (
                "ipam",
                r#"{"type":"../../bin/sh"}"#,
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"ipam.type\": \"../../bin/sh\" is not a plugin's file name","details":"ipam names the IPAM plugin to run from CNI_PATH: \"ipam\": {\"type\": \"host-local\", ...}"}"#,
            ),
            (
                "dns",
                r#"{"nameservers":"x"}"#,
                r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"dns\": invalid type: string \"x\", expected a sequence","details":"dns is the spec's {nameservers, domain, search, options}"}"#,
            ),
            (
                "cniVersion",
                "\"0.4.0\"",
                r#"{"cniVersion":"1.1.0","code":1,"msg":"cniVersion \"0.4.0\" is not supported; this plugin speaks 1.0.0 and 1.1.0","details":"set \"cniVersion\": \"1.0.0\" or \"1.1.0\" in the network config"}"#,
            ),
            (
                "cniVersion",
                "<unset>",
                r#"{"cniVersion":"1.1.0","code":7,"msg":"network config key \"cniVersion\": is required","details":"add \"cniVersion\": \"1.0.0\""}"#,
            ),
        ];
        for (key, value, want) in cases {
            let text = with(key, value);
            let err = NetConf::parse(text.as_bytes(), Command::Add)
                .expect_err(&format!("{key} = {value} must be refused"));
            assert_eq!(
                &err.to_json(error_version(text.as_bytes())),
                want,
                "{key} = {value}"
            );
        }
    }

    #[test]
    fn targets_clash_with_the_wrong_offload() {
        for (text, want) in [
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"vportd","switch":"sw","offload":"required"}"#,
                r#"{"cniVersion":"1.1.0","code":7,"msg":"network config key \"offload\": \"required\" asks for a VF, and a software switch has none","details":"use uplink or pool for a VF, or drop offload"}"#,
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"vportd","pool":"p","offload":"never"}"#,
                r#"{"cniVersion":"1.1.0","code":7,"msg":"network config key \"offload\": \"never\" refuses VFs, and a pool holds only VFs","details":"use uplink or switch for the software path, or drop offload"}"#,
            ),
            (
                "[1]",
                r#"{"cniVersion":"1.1.0","code":6,"msg":"the network config on stdin cannot be read: it is not a JSON object"}"#,
            ),
            (
                "{",
                r#"{"cniVersion":"1.1.0","code":6,"msg":"the network config on stdin cannot be read: EOF while parsing an object at line 1 column 1"}"#,
            ),
        ] {
            let err = NetConf::parse(text.as_bytes(), Command::Add).unwrap_err();
            assert_eq!(err.to_json(error_version(text.as_bytes())), want, "{text}");
        }
    }

    #[test]
    fn check_needs_prev_result_and_gc_its_list() {
        let base = r#"{"cniVersion":"1.1.0","name":"n","type":"vportd","switch":"sw""#;
        let err = NetConf::parse(format!("{base}}}").as_bytes(), Command::Check).unwrap_err();
        assert_eq!(
            err.to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"network config key \"prevResult\": is required by CHECK","details":"the runtime passes ADD's answer as prevResult; a runtime that lost it cannot CHECK"}"#
        );
        let prev = r#","prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/c"}],"ips":[{"interface":0,"address":"10.1.0.2/24"}]}}"#;
        let c = NetConf::parse(format!("{base}{prev}").as_bytes(), Command::Check).unwrap();
        assert_eq!(c.prev_result.unwrap().ips[0].address, "10.1.0.2/24");
        let bad = r#","prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.2"}]}}"#;
        let err = NetConf::parse(format!("{base}{bad}").as_bytes(), Command::Check).unwrap_err();
        assert_eq!(
            err.to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"network config key \"prevResult\": prevResult cannot be read: address \"10.1.0.2\" is not IP/prefix","details":"prevResult must be ADD's answer, unchanged"}"#
        );

        let err = NetConf::parse(format!("{base}}}").as_bytes(), Command::Gc).unwrap_err();
        assert_eq!(
            err.to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"network config key \"cni.dev/valid-attachments\": is required by GC","details":"without the list of attachments to keep, GC would free every one"}"#
        );
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            let text = format!(r#"{base},"{key}":[{{"containerID":"c1","ifname":"eth0"}}]}}"#);
            let c = NetConf::parse(text.as_bytes(), Command::Gc).unwrap();
            assert_eq!(
                c.valid_attachments,
                Some(vec![Attachment {
                    container_id: "c1".into(),
                    ifname: "eth0".into()
                }])
            );
        }
        let text = format!(r#"{base},"cni.dev/valid-attachments":[{{"containerID":"c1"}}]}}"#);
        let err = NetConf::parse(text.as_bytes(), Command::Gc).unwrap_err();
        assert_eq!(
            err.to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"network config key \"cni.dev/valid-attachments\": {\"containerID\":\"c1\"} lacks containerID or ifname","details":"a list of {\"containerID\": ..., \"ifname\": ...}"}"#
        );
    }
}
