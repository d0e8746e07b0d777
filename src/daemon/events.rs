//! Device events, from udev's environment (`vportd hotplug`) or from the kernel's uevent
//! netlink messages (the daemon), turned into a validated [`DeviceEvent`].
//!
//! Both sources are untrusted input: udev copies whatever the kernel and earlier rules put in
//! the environment, and anyone who can send to the uevent netlink group could forge a message
//! (the listener checks the sender, this module checks the content). So every key we read is
//! bounded in length, printable ASCII, and parsed strictly; DEVPATH must be a plain absolute
//! path under /devices with no `.`/`..` components; PCI addresses are exact hex. Devices are
//! identified by PCI address and ifindex, never by an interface name (names change under udev,
//! see facts/USERS.md 5 and 7): the name is kept only to be shown.
//!
//! Pure: no I/O, tested without root.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The longest value of a key we read. Kernel DEVPATHs of PCI devices behind several bridges
/// stay well below this; the kernel's whole uevent buffer is 2048 bytes.
pub const MAX_VALUE_LEN: usize = 512;
/// The most key=value pairs in one kernel uevent message.
pub const MAX_KEYS: usize = 64;
/// The largest kernel uevent message accepted: the listener's bound, kept with it.
use crate::host::uevent::MAX_UEVENT_LEN;
/// IFNAMSIZ - 1.
const MAX_IFNAME_LEN: usize = 15;

/// What is wrong with an event; the event is then ignored as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HotplugError {
    /// A key every event has is missing.
    #[error("the event has no {0}")]
    Missing(&'static str),
    /// A value is longer than any real one.
    #[error("{key} is {len} bytes long, more than the {MAX_VALUE_LEN} accepted")]
    TooLong { key: String, len: usize },
    /// A value holds control characters, spaces or non-ASCII bytes.
    #[error("{key} holds bytes other than printable ASCII")]
    NotText { key: String },
    /// The action is not one the kernel sends.
    #[error("ACTION {0:?} is not a kernel action")]
    Action(String),
    /// DEVPATH is not a plain path under /devices.
    #[error("DEVPATH {path:?} is refused: {why}")]
    Devpath { path: String, why: &'static str },
    /// A PCI address is not of the form dddd:bb:dd.f in hex.
    #[error("{key} {value:?} is not a PCI address (dddd:bb:dd.f)")]
    Bdf { key: &'static str, value: String },
    /// PCI_SLOT_NAME names another device than DEVPATH.
    #[error("PCI_SLOT_NAME {slot} does not match DEVPATH, which ends in {devpath}")]
    SlotMismatch { slot: String, devpath: String },
    /// A number is not a number in range.
    #[error("{key} {value:?} is not a valid number")]
    Number { key: &'static str, value: String },
    /// An interface name is not one the kernel would accept.
    #[error("INTERFACE {0:?} is not a valid interface name")]
    Interface(String),
    /// A driver or subsystem name holds unexpected characters.
    #[error("{key} {value:?} is not a plain name")]
    Name { key: &'static str, value: String },
    /// A uevent message is malformed.
    #[error("the uevent message is malformed: {0}")]
    Uevent(&'static str),
}

/// A PCI function address, `domain:bus:device.function`, shown normalized
/// (`0000:01:10.2`: lower-case hex, four-digit domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bdf {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl FromStr for Bdf {
    type Err = ();

    /// Strict: a 4- or 5-digit domain (VMD domains have 5), 2-digit bus and device, 1-digit
    /// function; device below 32 and function below 8, as in the PCI spec.
    fn from_str(s: &str) -> Result<Bdf, ()> {
        let (domain, rest) = s.split_once(':').ok_or(())?;
        let (bus, rest) = rest.split_once(':').ok_or(())?;
        let (device, function) = rest.split_once('.').ok_or(())?;
        let hex = |t: &str, lens: &[usize]| -> Result<u32, ()> {
            if !lens.contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(());
            }
            u32::from_str_radix(t, 16).map_err(|_| ())
        };
        let bdf = Bdf {
            domain: hex(domain, &[4, 5])?,
            bus: hex(bus, &[2])? as u8,
            device: hex(device, &[2])? as u8,
            function: hex(function, &[1])? as u8,
        };
        if bdf.device >= 32 || bdf.function >= 8 {
            return Err(());
        }
        Ok(bdf)
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl Serialize for Bdf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Bdf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bdf, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a PCI address")))
    }
}

/// The kernel's uevent actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Add,
    Remove,
    Change,
    Move,
    Online,
    Offline,
    Bind,
    Unbind,
}

impl FromStr for Action {
    type Err = ();
    fn from_str(s: &str) -> Result<Action, ()> {
        Ok(match s {
            "add" => Action::Add,
            "remove" => Action::Remove,
            "change" => Action::Change,
            "move" => Action::Move,
            "online" => Action::Online,
            "offline" => Action::Offline,
            "bind" => Action::Bind,
            "unbind" => Action::Unbind,
            _ => return Err(()),
        })
    }
}

/// The subsystems vportd reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subsystem {
    /// A PCI function appeared, went, or had its driver bound or unbound.
    Pci,
    /// A network interface appeared, went, or was renamed (`move`).
    Net,
}

/// One validated device event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEvent {
    pub action: Action,
    pub subsystem: Subsystem,
    /// The PCI function the event is about: PCI_SLOT_NAME for pci events, the last PCI
    /// component of DEVPATH for net events (udev's net events carry no PCI_SLOT_NAME).
    pub pci: Bdf,
    /// The interface index of a net event: stable for the life of the netdev, unlike its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// The interface name at the time of the event: shown, never used to find the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The bound driver (pci bind events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Kernel sequence number, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seqnum: Option<u64>,
}

impl DeviceEvent {
    /// Whether the event can change where vPorts go: a PF or VF appearing or going, a driver
    /// bound or unbound, a netdev appearing, going or renamed. `change`, `online` and
    /// `offline` do not.
    pub fn wants_reconcile(&self) -> bool {
        matches!(
            self.action,
            Action::Add | Action::Remove | Action::Move | Action::Bind | Action::Unbind
        )
    }

    /// Re-checks an event that came from elsewhere (the control socket): the same rules as
    /// for the environment.
    pub fn validate(&self) -> Result<(), HotplugError> {
        if let Some(name) = &self.interface {
            check_ifname(name)?;
        }
        if let Some(d) = &self.driver {
            check_name("DRIVER", d)?;
        }
        if self.ifindex == Some(0) {
            return Err(HotplugError::Number {
                key: "IFINDEX",
                value: "0".into(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for DeviceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = serde_json::to_value(self.action).unwrap_or_default();
        let subsystem = serde_json::to_value(self.subsystem).unwrap_or_default();
        write!(
            f,
            "{} {} {}",
            action.as_str().unwrap_or("?"),
            subsystem.as_str().unwrap_or("?"),
            self.pci
        )?;
        if let Some(i) = self.ifindex {
            write!(f, " ifindex {i}")?;
        }
        if let Some(n) = &self.interface {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

/// Whether a VF whose PF is at `pf` belongs to vportd: its PF is one of `uplinks` (PCI
/// addresses from the config and the state file), compared as parsed addresses so that
/// spelling (case, domain digits) does not matter.
pub fn managed_vf(pf: &str, uplinks: &[String]) -> bool {
    let Ok(pf) = pf.parse::<Bdf>() else {
        return false;
    };
    uplinks.iter().any(|u| u.parse::<Bdf>() == Ok(pf))
}

/// The keys read from an event; everything else is ignored.
const KEYS: &[&str] = &[
    "ACTION",
    "SUBSYSTEM",
    "DEVPATH",
    "INTERFACE",
    "IFINDEX",
    "PCI_SLOT_NAME",
    "DRIVER",
    "SEQNUM",
];

/// Builds an event from key/value pairs (udev's environment, or a parsed uevent).
///
/// `Ok(None)`: a valid event vportd has no business with (another subsystem, a virtual
/// netdev with no PCI device under it). `Err`: a malformed or hostile event.
pub fn from_pairs<'a, I>(pairs: I) -> Result<Option<DeviceEvent>, HotplugError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let [
        action,
        subsystem,
        devpath,
        interface,
        ifindex,
        slot,
        driver,
        seqnum,
    ] = known_keys(pairs)?;

    let action = action.ok_or(HotplugError::Missing("ACTION"))?;
    let action: Action = action
        .parse()
        .map_err(|_| HotplugError::Action(action.to_string()))?;
    let subsystem = subsystem.ok_or(HotplugError::Missing("SUBSYSTEM"))?;
    check_name("SUBSYSTEM", subsystem)?;
    let devpath = devpath.ok_or(HotplugError::Missing("DEVPATH"))?;
    let components = check_devpath(devpath)?;
    let seqnum = seqnum
        .map(|s| parse_number::<u64>("SEQNUM", s))
        .transpose()?;
    let driver = driver
        .filter(|d| !d.is_empty())
        .map(|d| check_name("DRIVER", d).map(|_| d.to_string()))
        .transpose()?;

    let (subsystem, pci) = match subsystem {
        "pci" => (Subsystem::Pci, pci_function(devpath, &components, slot)?),
        "net" => match net_function(devpath, &components)? {
            Some(pci) => (Subsystem::Net, pci),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };

    let interface = match (subsystem, interface) {
        (Subsystem::Net, Some(name)) => {
            check_ifname(name)?;
            Some(name.to_string())
        }
        _ => None,
    };
    let ifindex = match (subsystem, ifindex) {
        (Subsystem::Net, Some(i)) => Some(check_ifindex(i)?),
        _ => None,
    };
    Ok(Some(DeviceEvent {
        action,
        subsystem,
        pci,
        ifindex,
        interface,
        driver,
        seqnum,
    }))
}

/// The values of the keys vportd reads ([`KEYS`], in its order), each checked to be short
/// printable text; other keys are skipped.
fn known_keys<'a, I>(pairs: I) -> Result<[Option<&'a str>; KEYS.len()], HotplugError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut got: [Option<&str>; KEYS.len()] = [None; KEYS.len()];
    for (key, value) in pairs {
        let Some(slot) = KEYS.iter().position(|k| *k == key) else {
            continue;
        };
        if value.len() > MAX_VALUE_LEN {
            return Err(HotplugError::TooLong {
                key: key.to_string(),
                len: value.len(),
            });
        }
        if !value.iter().all(|b| b.is_ascii_graphic()) {
            return Err(HotplugError::NotText {
                key: key.to_string(),
            });
        }
        let text = std::str::from_utf8(value).map_err(|_| HotplugError::NotText {
            key: key.to_string(),
        })?;
        got[slot] = Some(text);
    }
    Ok(got)
}

/// A pci event's device: the PCI address its DEVPATH ends in, which PCI_SLOT_NAME (when
/// given) must name too.
fn pci_function(
    devpath: &str,
    components: &[&str],
    slot: Option<&str>,
) -> Result<Bdf, HotplugError> {
    let last = components.last().copied().unwrap_or_default();
    let from_path: Bdf = last.parse().map_err(|_| HotplugError::Devpath {
        path: devpath.to_string(),
        why: "a pci event's DEVPATH must end in the device's PCI address",
    })?;
    if let Some(slot) = slot {
        let named: Bdf = slot.parse().map_err(|_| HotplugError::Bdf {
            key: "PCI_SLOT_NAME",
            value: slot.to_string(),
        })?;
        if named != from_path {
            return Err(HotplugError::SlotMismatch {
                slot: slot.to_string(),
                devpath: last.to_string(),
            });
        }
    }
    Ok(from_path)
}

/// A net event's PCI function: in /devices/pci0000:00/0000:00:03.0/0000:02:00.0/net/eth1
/// the netdev belongs to the last PCI function before "net". None for a virtual netdev
/// (under /devices/virtual).
fn net_function(devpath: &str, components: &[&str]) -> Result<Option<Bdf>, HotplugError> {
    let Some(net_at) = components.iter().rposition(|c| *c == "net") else {
        return Err(HotplugError::Devpath {
            path: devpath.to_string(),
            why: "a net event's DEVPATH must contain a net/ component",
        });
    };
    if net_at + 2 != components.len() {
        return Err(HotplugError::Devpath {
            path: devpath.to_string(),
            why: "a net event's DEVPATH must end in net/<interface>",
        });
    }
    Ok(net_at
        .checked_sub(1)
        .and_then(|i| components[i].parse::<Bdf>().ok()))
}

/// IFINDEX: a number above 0.
fn check_ifindex(i: &str) -> Result<u32, HotplugError> {
    let n = parse_number::<u32>("IFINDEX", i)?;
    if n == 0 {
        return Err(HotplugError::Number {
            key: "IFINDEX",
            value: i.to_string(),
        });
    }
    Ok(n)
}

/// [`from_pairs`] over a process environment (`std::env::vars_os()`); keys that are not
/// UTF-8 cannot be ones we read and are skipped, values are checked as bytes.
pub fn from_env<I>(vars: I) -> Result<Option<DeviceEvent>, HotplugError>
where
    I: IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
{
    use std::os::unix::ffi::OsStrExt;
    let owned: Vec<(String, Vec<u8>)> = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            KEYS.contains(&k.as_str())
                .then(|| (k, v.as_os_str().as_bytes().to_vec()))
        })
        .collect();
    from_pairs(owned.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

/// Splits a kernel uevent message: `ACTION@DEVPATH\0KEY=VALUE\0...`. Messages from udevd
/// (they start with `libudev\0`) are not kernel messages and are refused.
pub fn parse_uevent(buf: &[u8]) -> Result<Vec<(&str, &[u8])>, HotplugError> {
    if buf.len() > MAX_UEVENT_LEN {
        return Err(HotplugError::Uevent("longer than any kernel uevent"));
    }
    let mut parts = buf.split(|b| *b == 0);
    let header = parts.next().unwrap_or_default();
    if header == b"libudev" {
        return Err(HotplugError::Uevent("a udevd message, not a kernel one"));
    }
    if !header.contains(&b'@') {
        return Err(HotplugError::Uevent("the header has no '@'"));
    }
    let mut pairs = Vec::new();
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let eq = part
            .iter()
            .position(|b| *b == b'=')
            .ok_or(HotplugError::Uevent("a field has no '='"))?;
        let key = std::str::from_utf8(&part[..eq])
            .ok()
            .filter(|k| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            })
            .ok_or(HotplugError::Uevent("a key is not an upper-case name"))?;
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(HotplugError::Uevent("a key appears twice"));
        }
        pairs.push((key, &part[eq + 1..]));
        if pairs.len() > MAX_KEYS {
            return Err(HotplugError::Uevent("too many keys"));
        }
    }
    Ok(pairs)
}

/// Checks a DEVPATH and returns its components.
fn check_devpath(path: &str) -> Result<Vec<&str>, HotplugError> {
    let bad = |why| HotplugError::Devpath {
        path: path.to_string(),
        why,
    };
    let rest = path
        .strip_prefix("/devices/")
        .ok_or_else(|| bad("it does not start with /devices/"))?;
    let components: Vec<&str> = rest.split('/').collect();
    for c in &components {
        if c.is_empty() {
            return Err(bad("it has an empty component"));
        }
        if *c == "." || *c == ".." {
            return Err(bad("it has a . or .. component"));
        }
        if !c
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+@".contains(&b))
        {
            return Err(bad("a component holds unexpected characters"));
        }
    }
    Ok(components)
}

fn check_ifname(name: &str) -> Result<(), HotplugError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    ok.then_some(())
        .ok_or_else(|| HotplugError::Interface(name.to_string()))
}

fn check_name(key: &'static str, value: &str) -> Result<(), HotplugError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(()).ok_or_else(|| HotplugError::Name {
        key,
        value: value.to_string(),
    })
}

fn parse_number<T: FromStr>(key: &'static str, s: &str) -> Result<T, HotplugError> {
    let err = || HotplugError::Number {
        key,
        value: s.to_string(),
    };
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    s.parse().map_err(|_| err())
}

/// The PCI functions a PF's VFs occupy when they exist: SR-IOV's routing-ID arithmetic (the
/// first VF at the PF's routing ID plus `offset`, each next one `stride` further), from the
/// PF's `sriov_offset`, `sriov_stride` and `sriov_totalvfs` in sysfs, which hold even while
/// it has no VFs. Functions past the end of the domain's bus range are left out.
pub fn vf_functions(pf: Bdf, offset: u16, stride: u16, total: u16) -> Vec<Bdf> {
    let rid = (u32::from(pf.bus) << 8) | (u32::from(pf.device) << 3) | u32::from(pf.function);
    (0..u32::from(total))
        .map(|i| rid + u32::from(offset) + i * u32::from(stride))
        .take_while(|r| *r <= 0xffff)
        .map(|r| Bdf {
            domain: pf.domain,
            bus: (r >> 8) as u8,
            device: ((r >> 3) & 0x1f) as u8,
            function: (r & 7) as u8,
        })
        .collect()
}

/// How long after its own apply the daemon still takes VF events of its uplinks for that
/// apply's echoes: udev hands them over (`vportd hotplug`) after its rules ran, seconds
/// later on a busy host.
pub const ECHO_SETTLE: Duration = Duration::from_secs(10);
/// Sequence numbers of echoes remembered, to know udev's late copy of a kernel uevent.
const ECHO_SEQNUMS: usize = 4096;

/// The uevents the daemon's own applies caused: VFs of its uplinks made, bound and
/// removed (a failed apply's rollback removes the VFs it made). Reconciling on them again
/// would redo the same apply, whose rollback makes the same events: with an uplink that
/// keeps failing (a PF without link refuses VF rates), a loop every few seconds.
///
/// An event is an echo when it is about one of `ours` (the VF functions of the uplinks,
/// [`vf_functions`]) and arrives during an apply or within [`ECHO_SETTLE`] after it, or
/// when it carries the sequence number of an echo already seen (udev's copy of a kernel
/// uevent the daemon heard itself). A PF's own events are never echoes: a PF comes and goes
/// by hotplug, not by an apply.
#[derive(Debug, Default)]
pub struct Echoes {
    ours: Vec<Bdf>,
    until: Option<Instant>,
    seqnums: std::collections::VecDeque<u64>,
}

impl Echoes {
    /// An apply over the uplinks whose VF functions are `ours` ended at `ended`.
    pub fn applied(&mut self, ours: Vec<Bdf>, ended: Instant) {
        self.ours = ours;
        self.until = Some(ended + ECHO_SETTLE);
    }

    /// Whether `event`, received at `now`, is an echo of the daemon's own apply; an echo's
    /// sequence number is remembered.
    pub fn is_echo(&mut self, event: &DeviceEvent, now: Instant) -> bool {
        if event.seqnum.is_some_and(|n| self.seqnums.contains(&n)) {
            return true;
        }
        // A rename (`move`) is never ours: apply names no netdev, udev and people do, and a
        // renamed VF netdev is worth a look at once.
        let echo = event.action != Action::Move
            && self.until.is_some_and(|u| now <= u)
            && self.ours.contains(&event.pci);
        if echo && let Some(n) = event.seqnum {
            if self.seqnums.len() == ECHO_SEQNUMS {
                self.seqnums.pop_front();
            }
            self.seqnums.push_back(n);
        }
        echo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vf_event(action: Action, pci: &str, seqnum: u64) -> DeviceEvent {
        DeviceEvent {
            action,
            subsystem: Subsystem::Pci,
            pci: pci.parse().unwrap(),
            ifindex: None,
            interface: None,
            driver: None,
            seqnum: Some(seqnum),
        }
    }

    #[test]
    fn vf_functions_follow_offset_and_stride() {
        let pf: Bdf = "0000:01:00.0".parse().unwrap();
        // igb (82576): offset 0x80, stride 2: 0000:02:10.0, 0000:02:10.2, ...
        let vfs: Vec<String> = vf_functions(pf, 0x80, 2, 3)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(vfs, ["0000:01:10.0", "0000:01:10.2", "0000:01:10.4"]);
        let pf: Bdf = "0000:3b:00.1".parse().unwrap();
        let vfs = vf_functions(pf, 0x7f, 1, 2);
        assert_eq!(vfs[0].to_string(), "0000:3b:10.0");
        assert_eq!(vfs[1].to_string(), "0000:3b:10.1");
        // Past bus 0xff: left out.
        let last: Bdf = "0000:ff:1f.0".parse().unwrap();
        assert_eq!(vf_functions(last, 0x80, 1, 4).len(), 0);
    }

    #[test]
    fn the_daemon_ignores_the_echoes_of_its_own_apply_only() {
        let pf: Bdf = "0000:01:00.0".parse().unwrap();
        let ours = vf_functions(pf, 0x80, 2, 8);
        let mut echoes = Echoes::default();
        let t0 = Instant::now();
        // Before any apply, a VF event is real.
        assert!(!echoes.is_echo(&vf_event(Action::Add, "0000:01:10.0", 1), t0));
        echoes.applied(ours, t0);
        // The apply's rollback: VFs of the uplink removed, just after the apply.
        assert!(echoes.is_echo(&vf_event(Action::Remove, "0000:01:10.0", 10), t0));
        assert!(echoes.is_echo(&vf_event(Action::Unbind, "0000:01:10.2", 11), t0));
        // The PF itself, another PF's VF: real.
        assert!(!echoes.is_echo(&vf_event(Action::Remove, "0000:01:00.0", 12), t0));
        assert!(!echoes.is_echo(&vf_event(Action::Add, "0000:03:10.0", 13), t0));
        // A VF netdev renamed by udev or a person, even just after the apply: not an echo.
        assert!(!echoes.is_echo(&vf_event(Action::Move, "0000:01:10.0", 14), t0));
        // After the settle time, a VF event of the uplink is real again...
        let later = t0 + ECHO_SETTLE + Duration::from_secs(1);
        assert!(!echoes.is_echo(&vf_event(Action::Add, "0000:01:10.0", 20), later));
        // ...but udev's late copy of an echo (same sequence number) is still an echo.
        assert!(echoes.is_echo(&vf_event(Action::Remove, "0000:01:10.0", 10), later));
    }

    fn ev(pairs: &[(&str, &str)]) -> Result<Option<DeviceEvent>, HotplugError> {
        from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_bytes())))
    }

    const NET_DEVPATH: &str = "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/net/eth1";

    #[test]
    fn bdf_strict_and_normalized() {
        let b: Bdf = "0000:02:1F.7".parse().unwrap();
        assert_eq!(b.to_string(), "0000:02:1f.7");
        assert_eq!(
            "10000:e1:00.0".parse::<Bdf>().unwrap().to_string(),
            "10000:e1:00.0"
        );
        for bad in [
            "",
            "0000:02:00",
            "02:00.0",
            "0000:02:00.8",
            "0000:02:20.0",
            "0000:2:00.0",
            "000g:02:00.0",
            "0000:02:00.0 ",
            "+000:02:00.0",
            "0000:02:00.0.0",
            "0000:02:00:0",
            "123456:02:00.0",
        ] {
            assert!(bad.parse::<Bdf>().is_err(), "{bad:?} must be refused");
        }
    }

    /// The events facts/VM-RIG.md saw udev deliver on an igb hot-add, and their kin.
    #[test]
    fn good_events() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "pci"),
                    ("DEVPATH", "/devices/pci0000:00/0000:00:03.0/0000:02:00.0"),
                    ("PCI_SLOT_NAME", "0000:02:00.0"),
                    ("PCI_ID", "8086:10C9"),
                    ("SEQNUM", "1234"),
                ],
                "add pci 0000:02:00.0",
            ),
            (
                &[
                    ("ACTION", "bind"),
                    ("SUBSYSTEM", "pci"),
                    ("DEVPATH", "/devices/pci0000:00/0000:00:03.0/0000:02:00.0"),
                    ("PCI_SLOT_NAME", "0000:02:00.0"),
                    ("DRIVER", "igb"),
                ],
                "bind pci 0000:02:00.0",
            ),
            (
                &[
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "net"),
                    ("DEVPATH", NET_DEVPATH),
                    ("INTERFACE", "eth1"),
                    ("IFINDEX", "5"),
                ],
                "add net 0000:02:00.0 ifindex 5 (eth1)",
            ),
            (
                // A VF's netdev renamed by udev: identified by PCI address and ifindex.
                &[
                    ("ACTION", "move"),
                    ("SUBSYSTEM", "net"),
                    (
                        "DEVPATH",
                        "/devices/pci0000:00/0000:00:02.0/0000:01:10.2/net/enp1s16f2",
                    ),
                    (
                        "DEVPATH_OLD",
                        "/devices/pci0000:00/0000:00:02.0/0000:01:10.2/net/eth3",
                    ),
                    ("INTERFACE", "enp1s16f2"),
                    ("IFINDEX", "9"),
                ],
                "move net 0000:01:10.2 ifindex 9 (enp1s16f2)",
            ),
            (
                &[
                    ("ACTION", "remove"),
                    ("SUBSYSTEM", "pci"),
                    ("DEVPATH", "/devices/pci0000:00/0000:00:03.0/0000:02:00.0"),
                ],
                "remove pci 0000:02:00.0",
            ),
        ];
        for (pairs, want) in cases {
            let e = ev(pairs).unwrap().unwrap();
            assert_eq!(e.to_string(), *want);
            assert!(e.wants_reconcile());
            e.validate().unwrap();
        }
    }

    #[test]
    fn events_of_no_interest() {
        for pairs in [
            &[
                ("ACTION", "add"),
                ("SUBSYSTEM", "net"),
                ("DEVPATH", "/devices/virtual/net/veth0"),
                ("INTERFACE", "veth0"),
            ][..],
            &[
                ("ACTION", "add"),
                ("SUBSYSTEM", "block"),
                ("DEVPATH", "/devices/virtual/block/loop0"),
            ][..],
        ] {
            assert_eq!(ev(pairs), Ok(None), "{pairs:?}");
        }
        let change = ev(&[
            ("ACTION", "change"),
            ("SUBSYSTEM", "net"),
            ("DEVPATH", NET_DEVPATH),
        ])
        .unwrap()
        .unwrap();
        assert!(!change.wants_reconcile());
    }

    #[test]
    fn hostile_events() {
        let long = "a".repeat(MAX_VALUE_LEN + 1);
        let long_path = format!("/devices/{long}");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("SUBSYSTEM", "pci"), ("DEVPATH", "/devices/x")],
                "no ACTION",
            ),
            (
                vec![("ACTION", "add"), ("DEVPATH", NET_DEVPATH)],
                "no SUBSYSTEM",
            ),
            (vec![("ACTION", "add"), ("SUBSYSTEM", "net")], "no DEVPATH"),
            (
                vec![
                    ("ACTION", "explode"),
                    ("SUBSYSTEM", "net"),
                    ("DEVPATH", NET_DEVPATH),
                ],
                "not a kernel action",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "net"),
                    ("DEVPATH", &long_path),
                ],
                "more than the 512 accepted",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "pci"),
                    ("DEVPATH", "/devices/pci0000:00/../../etc/0000:02:00.0"),
                ],
                "a . or .. component",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "pci"),
                    ("DEVPATH", "/sys/devices/pci0000:00/0000:02:00.0"),
                ],
                "does not start with /devices/",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "pci"),
                    ("DEVPATH", "/devices/pci0000:00//0000:02:00.0"),
                ],
                "an empty component",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "pci"),
                    ("DEVPATH", "/devices/pci0000:00/0000:00:03.0/0000:02:00.0"),
                    ("PCI_SLOT_NAME", "0000:03:00.0"),
                ],
                "does not match DEVPATH",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "pci"),
                    ("DEVPATH", "/devices/pci0000:00/0000:00:03.0/0000:02:00.0"),
                    ("PCI_SLOT_NAME", "0000:02:00.zz"),
                ],
                "is not a PCI address",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "pci"),
                    ("DEVPATH", "/devices/pci0000:00/0000:00:03.0/0000:0g:00.0"),
                ],
                "must end in the device's PCI address",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "net"),
                    ("DEVPATH", NET_DEVPATH),
                    ("INTERFACE", "eth1\n"),
                ],
                "printable ASCII",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "net"),
                    ("DEVPATH", NET_DEVPATH),
                    ("INTERFACE", "a-name-far-too-long"),
                ],
                "not a valid interface name",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "net"),
                    ("DEVPATH", NET_DEVPATH),
                    ("INTERFACE", "../x"),
                ],
                "not a valid interface name",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "net"),
                    ("DEVPATH", NET_DEVPATH),
                    ("IFINDEX", "-1"),
                ],
                "not a valid number",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "net"),
                    ("DEVPATH", NET_DEVPATH),
                    ("IFINDEX", "99999999999"),
                ],
                "not a valid number",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "net"),
                    ("DEVPATH", NET_DEVPATH),
                    ("IFINDEX", "0"),
                ],
                "not a valid number",
            ),
            (
                vec![
                    ("ACTION", "bind"),
                    ("SUBSYSTEM", "pci"),
                    ("DEVPATH", "/devices/pci0000:00/0000:00:03.0/0000:02:00.0"),
                    ("DRIVER", "igb;rm"),
                ],
                "not a plain name",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "net"),
                    (
                        "DEVPATH",
                        "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/net",
                    ),
                ],
                "must end in net/<interface>",
            ),
            (
                vec![
                    ("ACTION", "add"),
                    ("SUBSYSTEM", "net"),
                    (
                        "DEVPATH",
                        "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/x y",
                    ),
                ],
                "printable ASCII",
            ),
        ];
        for (pairs, want) in cases {
            let err = ev(&pairs).expect_err(want).to_string();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn environment_with_non_utf8_values() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let vars = vec![
            (OsString::from("ACTION"), OsString::from("add")),
            (OsString::from("SUBSYSTEM"), OsString::from("net")),
            (OsString::from("DEVPATH"), OsString::from(NET_DEVPATH)),
            (
                OsString::from("INTERFACE"),
                OsString::from_vec(vec![0xff, b'e']),
            ),
            (OsString::from_vec(vec![0xfe]), OsString::from("ignored")),
            (OsString::from("PATH"), OsString::from("/usr/bin")),
        ];
        let err = from_env(vars).unwrap_err();
        assert_eq!(
            err,
            HotplugError::NotText {
                key: "INTERFACE".into()
            }
        );
    }

    #[test]
    fn kernel_uevent_messages() {
        let msg = b"add@/devices/pci0000:00/0000:00:03.0/0000:02:00.0/net/eth1\0ACTION=add\0\
DEVPATH=/devices/pci0000:00/0000:00:03.0/0000:02:00.0/net/eth1\0SUBSYSTEM=net\0\
INTERFACE=eth1\0IFINDEX=4\0SEQNUM=2001\0";
        let pairs = parse_uevent(msg).unwrap();
        let e = from_pairs(pairs).unwrap().unwrap();
        assert_eq!(e.to_string(), "add net 0000:02:00.0 ifindex 4 (eth1)");
        assert_eq!(e.seqnum, Some(2001));

        assert!(parse_uevent(b"libudev\0\xfe\xed\xca\xfe").is_err());
        assert!(parse_uevent(b"garbage\0A=b\0").is_err());
        assert!(parse_uevent(b"add@/devices/x\0ACTION\0").is_err());
        assert!(parse_uevent(b"add@/devices/x\0ACTION=add\0ACTION=remove\0").is_err());
        assert!(parse_uevent(b"add@/devices/x\0lower=case\0").is_err());
        assert!(parse_uevent(&vec![b'a'; MAX_UEVENT_LEN + 1]).is_err());
        let mut many = b"add@/devices/x\0".to_vec();
        for i in 0..=MAX_KEYS {
            many.extend_from_slice(format!("K{i}=v\0").as_bytes());
        }
        assert!(parse_uevent(&many).is_err());
    }

    #[test]
    fn a_vf_is_managed_when_its_pf_is_an_uplink() {
        let uplinks = vec!["0000:01:00.0".to_string(), "0000:02:00.0".to_string()];
        assert!(managed_vf("0000:01:00.0", &uplinks));
        assert!(managed_vf("0000:02:00.0", &["0000:02:00.0".into()]));
        assert!(!managed_vf("0000:03:00.0", &uplinks));
        assert!(!managed_vf("eth0", &uplinks));
        assert!(!managed_vf("0000:01:00.0", &["eth0".into()]));
        assert!(!managed_vf("0000:01:00.0", &[]));
    }

    #[test]
    fn serde_round_trip_refuses_unknown_fields() {
        let e = ev(&[
            ("ACTION", "add"),
            ("SUBSYSTEM", "net"),
            ("DEVPATH", NET_DEVPATH),
            ("INTERFACE", "eth1"),
            ("IFINDEX", "5"),
        ])
        .unwrap()
        .unwrap();
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<DeviceEvent>(&json).unwrap(), e);
        let extra = json.replace("\"action\"", "\"evil\":1,\"action\"");
        assert!(serde_json::from_str::<DeviceEvent>(&extra).is_err());
        let bad_pci = json.replace("0000:02:00.0", "../../etc");
        assert!(serde_json::from_str::<DeviceEvent>(&bad_pci).is_err());
    }
}
