//! What a PCI address, an interface, vPort or driver name may look like.

use super::MAX_VPORT_NAME;
pub(super) use crate::model::uplink::normalize_pci;

/// The kernel's rule for interface names (`dev_valid_name`).
pub(super) fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && !s.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

pub(super) fn is_vport_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_VPORT_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(super) fn is_driver_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c == '/' || c.is_whitespace())
}
