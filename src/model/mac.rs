//! The one MAC address type of the crate: config, state, netlink and the switch's frames
//! all speak it, so an address never changes spelling between layers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A MAC address. Shown and serialized as lower-case `aa:bb:cc:dd:ee:ff`, the way `ip link`
/// and sysfs show it, so values compare as text across JSON, state files and the kernel.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub const ZERO: Mac = Mac([0; 6]);

    /// The 48 address bits in the low bits of a u64, where a hashable key is wanted.
    pub fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The first six bytes of a kernel attribute (netlink pads some MACs to 32 bytes);
    /// None when fewer than six are there.
    pub fn from_slice(bytes: &[u8]) -> Option<Mac> {
        bytes
            .get(..6)
            .map(|b| Mac(b.try_into().expect("six bytes")))
    }

    /// The kernel's and sysfs's spelling as `ip link` and a VF's admin MAC carry it: six
    /// colon-separated hex numbers, where a byte may be one digit (`2:0:0:0:0:1`). Kept apart
    /// from the strict [`FromStr`], which configs and state files go through, so that only
    /// text the kernel wrote is read this leniently.
    pub fn parse_lenient(s: &str) -> Option<Mac> {
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(bytes))
    }

    /// Group addresses (the I/G bit set), broadcast included: never a port's own address.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }

    /// The kernel reads an all-zero VF MAC as "none set", and the VF then makes up its own.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_colon_hex(f, &self.0)
    }
}

/// A link-layer address of any length (rtnetlink's IFLA_ADDRESS: six bytes on Ethernet,
/// four on a sit tunnel, twenty on InfiniBand) in the spelling a [`Mac`] has, so that an
/// Ethernet address reads the same whichever way it came.
pub fn link_address_text(bytes: &[u8]) -> String {
    struct Text<'a>(&'a [u8]);
    impl fmt::Display for Text<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_colon_hex(f, self.0)
        }
    }
    Text(bytes).to_string()
}

/// Lower-case two-digit hex bytes joined by colons: the one spelling of an address.
fn write_colon_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Six two-digit hex bytes separated by colons, in either case. Other spellings (dashes,
/// dots, single digits) are refused rather than guessed at.
impl FromStr for Mac {
    type Err = ();
    fn from_str(s: &str) -> Result<Mac, ()> {
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or(())?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(Mac(bytes))
    }
}

/// As text, so that test failures and debug logs read like `ip link`.
impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Lets state files and plans written as JSON carry MACs back in.
impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        Mac::from_str(&s).map_err(|()| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&s),
                &"a MAC address such as 02:00:00:00:01:01",
            )
        })
    }
}

/// A MAC equals its text in any case (`02:00:00:00:01:01`), so that tests and callers
/// holding the kernel's or a config's spelling compare without parsing first.
impl PartialEq<&str> for Mac {
    fn eq(&self, other: &&str) -> bool {
        other.parse::<Mac>().is_ok_and(|m| m == *self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_lenient_spellings() {
        let m = Mac([2, 0, 0, 0, 0xab, 1]);
        assert_eq!(m.to_string(), "02:00:00:00:ab:01");
        assert_eq!("02:00:00:00:AB:01".parse::<Mac>(), Ok(m));
        assert_eq!("2:0:0:0:ab:1".parse::<Mac>(), Err(()));
        assert_eq!(Mac::parse_lenient("2:0:0:0:ab:1"), Some(m));
        assert_eq!(Mac::parse_lenient("02:00:00:00:ab:01"), Some(m));
        assert_eq!(Mac::parse_lenient("02:00:00:00:ab"), None);
        assert_eq!(Mac::parse_lenient("02:00:00:00:ab:01:02"), None);
        assert_eq!(Mac::parse_lenient("02:00:00:00:ab:g1"), None);
        assert_eq!(Mac::parse_lenient("02:00:00:00:ab:"), None);
    }

    #[test]
    fn link_addresses_of_any_length() {
        assert_eq!(link_address_text(&[]), "");
        assert_eq!(link_address_text(&[10, 0, 0, 1]), "0a:00:00:01");
        let m = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        assert_eq!(link_address_text(&m), Mac(m).to_string());
    }
}
