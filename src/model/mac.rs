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
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
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
