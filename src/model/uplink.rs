//! How a config names an uplink PF: plain data that discovery (which PFs to read) and the
//! config checks (which PF it is) both match against.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::mac::Mac;

/// How the config names a PF. The PCI address is the stable choice; a MAC or interface name is
/// accepted for convenience and resolved to a PCI address once, by the config's check against the host, so that
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

/// `[dddd:]bb:dd.f` in any case, to the kernel's `0000:01:00.0`. The domain defaults to 0, as
/// in lspci's short form.
pub(crate) fn normalize_pci(s: &str) -> Result<String, ()> {
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
