//! The MAC an attachment gets when the runtime asks for none: derived from the spec's key
//! of an attachment (network, container id, interface name), so that a repeated ADD after
//! a crash, a CHECK and the daemon's journal all agree on it without storing it first.

use crate::model::mac::Mac;

/// A locally administered unicast address (first byte `x2`, `x6`, `xa` or `xe`): it can
/// never clash with a vendor's burnt-in address, and is never a group address. 46 bits
/// of FNV-1a over the three fields, each ended by a NUL so that ("ab","c") and ("a","bc")
/// differ. FNV rather than std's hasher: std's output may change between Rust releases,
/// and a MAC must not change with the compiler.
pub fn generated_mac(network: &str, container_id: &str, ifname: &str) -> Mac {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for field in [network, container_id, ifname] {
        for b in field.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    let b = h.to_be_bytes();
    Mac([(b[2] & 0xfc) | 0x02, b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_same_attachment_always_gets_the_same_mac() {
        let a = generated_mac("net1", "c0ffee", "eth0");
        assert_eq!(a, generated_mac("net1", "c0ffee", "eth0"));
        // Pinned: a change of this value changes every container's MAC after an upgrade.
        assert_eq!(a.to_string(), "26:b3:c1:1b:d8:ef");
    }

    #[test]
    fn generated_macs_are_local_unicast_and_spread() {
        let mut seen = HashSet::new();
        for c in 0..10_000 {
            for ifname in ["eth0", "net1"] {
                let m = generated_mac("net", &format!("container{c}"), ifname);
                assert!(!m.is_multicast(), "{m}");
                assert_eq!(m.0[0] & 0x02, 0x02, "{m} is not locally administered");
                assert!(seen.insert(m), "{m} came twice");
            }
        }
        assert_ne!(
            generated_mac("ab", "c", "eth0"),
            generated_mac("a", "bc", "eth0")
        );
    }
}
