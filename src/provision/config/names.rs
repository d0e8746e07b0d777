//! What a PCI address, an interface, vPort or driver name may look like.

use super::MAX_VPORT_NAME;

/// `[dddd:]bb:dd.f` in any case, to the kernel's `0000:01:00.0`. The domain defaults to 0, as
/// in lspci's short form.
pub(super) fn normalize_pci(s: &str) -> Result<String, ()> {
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
