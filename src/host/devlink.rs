//! devlink, the generic netlink family through which a NIC's driver exposes its device-wide
//! state: here, each device's eswitch mode (`devlink dev eswitch show`). In `switchdev` a
//! PF's VFs are reached through representor netdevs and drivers refuse the legacy per-VF
//! controls, so provisioning must know the mode before it plans VF steps.
//!
//! The requests go through the one netlink loop ([`super::nlsock`]); what the kernel answers
//! is read by pure functions, tested on bytes laid out as the kernel's devlink_nl_*_fill
//! writes them.

use std::collections::BTreeMap;

use netlink_packet_core::NLM_F_DUMP;
use nix::errno::Errno;

use super::nlsock::{self, Failure, GENL_HEADER, NlSocket};
use crate::model::inventory::EswitchMode;

/// `DEVLINK_CMD_GET` (a dump lists every devlink device).
const CMD_GET: u8 = 1;
/// `DEVLINK_CMD_ESWITCH_GET` (one device, by bus and device name; no dump).
const CMD_ESWITCH_GET: u8 = 29;
const ATTR_BUS_NAME: u16 = 1;
const ATTR_DEV_NAME: u16 = 2;
/// `DEVLINK_ATTR_ESWITCH_MODE`, a u16: `DEVLINK_ESWITCH_MODE_LEGACY` 0, `_SWITCHDEV` 1.
const ATTR_ESWITCH_MODE: u16 = 25;

/// Errors from devlink requests.
#[derive(Debug, thiserror::Error)]
pub enum DevlinkError {
    /// The socket could not be opened, or a request or its reply failed on it.
    #[error("devlink netlink failed while trying to {what}: {source}")]
    Exchange {
        what: String,
        source: std::io::Error,
    },
}

/// A devlink device's handle, as `devlink` prints it: `pci/0000:01:00.0`,
/// `netdevsim/netdevsim10`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DevHandle {
    pub bus: String,
    pub dev: String,
}

impl DevHandle {
    pub fn key(&self) -> String {
        format!("{}/{}", self.bus, self.dev)
    }
}

/// The attributes of a DEVLINK_CMD_ESWITCH_GET request for `dev`.
pub fn eswitch_get_attributes(dev: &DevHandle) -> Vec<u8> {
    let mut a = Vec::new();
    for (kind, text) in [(ATTR_BUS_NAME, &dev.bus), (ATTR_DEV_NAME, &dev.dev)] {
        let mut z = text.as_bytes().to_vec();
        z.push(0);
        nlsock::put_attr(&mut a, kind, &z);
    }
    a
}

/// The device a devlink message (after its netlink header) names; None without both names.
pub fn parse_handle(payload: &[u8]) -> Option<DevHandle> {
    let attrs = nlsock::attrs(payload.get(GENL_HEADER..)?)?;
    let text = |kind: u16| {
        attrs.iter().find(|(k, _)| *k == kind).map(|(_, p)| {
            String::from_utf8_lossy(p.split(|b| *b == 0).next().unwrap_or(&[])).to_string()
        })
    };
    Some(DevHandle {
        bus: text(ATTR_BUS_NAME)?,
        dev: text(ATTR_DEV_NAME)?,
    })
}

/// The eswitch mode in a DEVLINK_CMD_ESWITCH_GET answer; None when it carries none, or a
/// mode vportd does not know.
pub fn parse_eswitch_mode(payload: &[u8]) -> Option<EswitchMode> {
    let attrs = nlsock::attrs(payload.get(GENL_HEADER..)?)?;
    let (_, p) = attrs.iter().find(|(k, _)| *k == ATTR_ESWITCH_MODE)?;
    match u16::from_ne_bytes([*p.first()?, *p.get(1)?]) {
        0 => Some(EswitchMode::Legacy),
        1 => Some(EswitchMode::Switchdev),
        _ => None,
    }
}

/// Every devlink device's eswitch mode, by [`DevHandle::key`]. Empty when the kernel has no
/// devlink family; a device whose driver has no eswitch (it refuses the request, e.g.
/// EOPNOTSUPP for igb) is left out.
pub fn eswitch_modes() -> Result<BTreeMap<String, EswitchMode>, DevlinkError> {
    let fail = |what: &str| {
        let what = what.to_string();
        move |f: Failure| DevlinkError::Exchange {
            what,
            source: f.into_io(),
        }
    };
    let mut sock = NlSocket::open(netlink_sys::constants::NETLINK_GENERIC).map_err(|source| {
        DevlinkError::Exchange {
            what: "open a generic netlink socket".into(),
            source,
        }
    })?;
    let family = match nlsock::genl_family(&mut sock, "devlink") {
        Ok(Some(id)) => id,
        Ok(None) => return Ok(BTreeMap::new()),
        Err(f) if f.errno() == Errno::ENOENT => return Ok(BTreeMap::new()),
        Err(f) => return Err(fail("look up the devlink family")(f)),
    };
    let devices = sock
        .request(nlsock::genl(family, CMD_GET, &[]), NLM_F_DUMP)
        .map_err(fail("list devlink devices"))?;
    let mut modes = BTreeMap::new();
    for dev in devices.iter().filter_map(|m| parse_handle(&m.payload)) {
        let req = nlsock::genl(family, CMD_ESWITCH_GET, &eswitch_get_attributes(&dev));
        match sock.request(req, 0) {
            Ok(replies) => {
                if let Some(mode) = replies.iter().find_map(|m| parse_eswitch_mode(&m.payload)) {
                    modes.insert(dev.key(), mode);
                }
            }
            Err(Failure::Refused(_)) => {}
            Err(f) => {
                return Err(fail(&format!("read the eswitch mode of {}", dev.key()))(f));
            }
        }
    }
    Ok(modes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as the kernel's devlink_nl_eswitch_fill lays it out: genl header (cmd,
    /// version 1), bus and device names, mode (u16), inline mode (u8), encap mode (u8).
    fn eswitch_answer(mode: u16) -> Vec<u8> {
        let mut p = vec![CMD_ESWITCH_GET, 1, 0, 0];
        nlsock::put_attr(&mut p, ATTR_BUS_NAME, b"netdevsim\0");
        nlsock::put_attr(&mut p, ATTR_DEV_NAME, b"netdevsim10\0");
        nlsock::put_attr(&mut p, ATTR_ESWITCH_MODE, &mode.to_ne_bytes());
        nlsock::put_attr(&mut p, 26, &[0]);
        nlsock::put_attr(&mut p, 62, &[0]);
        p
    }

    #[test]
    fn eswitch_answers_parse() {
        assert_eq!(
            parse_eswitch_mode(&eswitch_answer(0)),
            Some(EswitchMode::Legacy)
        );
        assert_eq!(
            parse_eswitch_mode(&eswitch_answer(1)),
            Some(EswitchMode::Switchdev)
        );
        assert_eq!(parse_eswitch_mode(&eswitch_answer(7)), None);
        assert_eq!(
            parse_handle(&eswitch_answer(1)),
            Some(DevHandle {
                bus: "netdevsim".into(),
                dev: "netdevsim10".into()
            })
        );
        // Truncated: no mode, never a guess.
        assert_eq!(parse_eswitch_mode(&eswitch_answer(1)[..40]), None);
        assert_eq!(parse_eswitch_mode(&[1, 2]), None);
    }

    /// The request names the device as `devlink dev eswitch show pci/0000:01:00.0` does
    /// (iproute2's mnl_attr_put_strz): bus name, then device name, each NUL-terminated and
    /// padded to 4 bytes. (The guest test checks the answer against `devlink` itself.)
    #[test]
    fn eswitch_request_names_the_device() {
        let a = eswitch_get_attributes(&DevHandle {
            bus: "pci".into(),
            dev: "0000:01:00.0".into(),
        });
        let mut want = vec![8, 0, 1, 0, b'p', b'c', b'i', 0, 17, 0, 2, 0];
        want.extend_from_slice(b"0000:01:00.0\0\0\0\0");
        assert_eq!(a, want);
    }

    /// A kernel without devlink devices, or without the family (this build machine's), is
    /// an empty map, not an error.
    #[test]
    fn this_host_answers() {
        eswitch_modes().expect("devlink read");
    }
}
