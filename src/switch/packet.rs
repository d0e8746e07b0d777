//! Typed, zero-copy views over Ethernet frame bytes (smoltcp style): the field offsets are
//! private constants, accessors read straight from the buffer, and one small error type says
//! why a frame cannot be read. The pipeline only ever reads a frame through these views, so a
//! short or odd frame is rejected in one place instead of panicking somewhere downstream.

/// The TPID of an 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// The TPID of an 802.1ad service tag.
pub const TPID_8021AD: u16 = 0x88a8;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Why a frame cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The frame is shorter than the header it claims to carry.
    #[error("the frame is too short for its headers")]
    Truncated,
}

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const HEADER_LEN: usize = 14;
    /// With an 802.1Q tag: TCI, then the inner ethertype.
    pub const TCI: Range<usize> = 14..16;
    pub const INNER_ETHERTYPE: Range<usize> = 16..18;
    pub const TAGGED_HEADER_LEN: usize = 18;
}

use crate::model::mac::Mac;

/// An 802.1Q tag as read from or written to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    /// 0 means a priority-only tag (802.1p without a VLAN).
    pub vid: u16,
    pub pcp: u8,
}

impl VlanTag {
    pub fn tci(self) -> u16 {
        (u16::from(self.pcp) << 13) | (self.vid & 0x0fff)
    }

    pub fn from_tci(tci: u16) -> Self {
        VlanTag {
            vid: tci & 0x0fff,
            pcp: (tci >> 13) as u8,
        }
    }
}

/// A read-only view of an Ethernet frame, with an optional 802.1Q tag.
#[derive(Debug, Clone, Copy)]
pub struct EthFrame<'a> {
    bytes: &'a [u8],
}

impl<'a> EthFrame<'a> {
    /// Checks that the frame holds a full Ethernet header (and its tag, when tagged).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, PacketError> {
        if bytes.len() < field::HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        let frame = EthFrame { bytes };
        if frame.outer_ethertype() == TPID_8021Q && bytes.len() < field::TAGGED_HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        Ok(frame)
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn dst(&self) -> Mac {
        Mac(self.bytes[field::DST].try_into().expect("six bytes"))
    }

    pub fn src(&self) -> Mac {
        Mac(self.bytes[field::SRC].try_into().expect("six bytes"))
    }

    fn outer_ethertype(&self) -> u16 {
        u16::from_be_bytes([
            self.bytes[field::ETHERTYPE.start],
            self.bytes[field::ETHERTYPE.start + 1],
        ])
    }

    /// The 802.1Q tag, if the frame carries one.
    pub fn tag(&self) -> Option<VlanTag> {
        (self.outer_ethertype() == TPID_8021Q).then(|| {
            VlanTag::from_tci(u16::from_be_bytes([
                self.bytes[field::TCI.start],
                self.bytes[field::TCI.start + 1],
            ]))
        })
    }

    /// Whether the outer ethertype is a service tag (802.1ad), which no port here accepts.
    pub fn is_service_tagged(&self) -> bool {
        self.outer_ethertype() == TPID_8021AD
    }

    /// The ethertype of the payload, past any 802.1Q tag.
    pub fn ethertype(&self) -> u16 {
        if self.outer_ethertype() == TPID_8021Q {
            u16::from_be_bytes([
                self.bytes[field::INNER_ETHERTYPE.start],
                self.bytes[field::INNER_ETHERTYPE.start + 1],
            ])
        } else {
            self.outer_ethertype()
        }
    }

    /// Length of the Ethernet header, tag included.
    pub fn header_len(&self) -> usize {
        if self.outer_ethertype() == TPID_8021Q {
            field::TAGGED_HEADER_LEN
        } else {
            field::HEADER_LEN
        }
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.header_len()..]
    }

    /// The IP 5-tuple, for ACLs; None when the payload is not IPv4 or IPv6 or is cut short.
    pub fn five_tuple(&self) -> Option<FiveTuple> {
        let p = self.payload();
        match self.ethertype() {
            ETHERTYPE_IPV4 => {
                if p.len() < 20 || p[0] >> 4 != 4 {
                    return None;
                }
                let ihl = usize::from(p[0] & 0x0f) * 4;
                let proto = p[9];
                let src = std::net::Ipv4Addr::new(p[12], p[13], p[14], p[15]);
                let dst = std::net::Ipv4Addr::new(p[16], p[17], p[18], p[19]);
                let frag_off = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
                let (sport, dport) = if frag_off == 0 {
                    ports(proto, p.get(ihl..))
                } else {
                    (0, 0)
                };
                Some(FiveTuple {
                    src: src.into(),
                    dst: dst.into(),
                    proto,
                    sport,
                    dport,
                })
            }
            ETHERTYPE_IPV6 => {
                if p.len() < 40 || p[0] >> 4 != 6 {
                    return None;
                }
                let proto = p[6];
                let src: [u8; 16] = p[8..24].try_into().ok()?;
                let dst: [u8; 16] = p[24..40].try_into().ok()?;
                let (sport, dport) = ports(proto, p.get(40..));
                Some(FiveTuple {
                    src: std::net::Ipv6Addr::from(src).into(),
                    dst: std::net::Ipv6Addr::from(dst).into(),
                    proto,
                    sport,
                    dport,
                })
            }
            _ => None,
        }
    }
}

/// TCP, UDP and SCTP ports; zero for other protocols or a cut-short header.
fn ports(proto: u8, l4: Option<&[u8]>) -> (u16, u16) {
    match (proto, l4) {
        (6 | 17 | 132, Some(l4)) if l4.len() >= 4 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        _ => (0, 0),
    }
}

/// Addresses, protocol and ports of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiveTuple {
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// Writes `frame` to `out` with its 802.1Q tag set to `tag` (inserted, rewritten, or, with
/// None, removed). Returns the new length. `out` must hold `frame.len() + 4` bytes.
pub fn write_retagged(frame: EthFrame<'_>, tag: Option<VlanTag>, out: &mut [u8]) -> usize {
    let bytes = frame.bytes();
    let payload_at = frame.header_len() - 2; // the (inner) ethertype onwards
    let rest = &bytes[payload_at..];
    out[..12].copy_from_slice(&bytes[..12]);
    let mut at = 12;
    if let Some(tag) = tag {
        out[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
        out[14..16].copy_from_slice(&tag.tci().to_be_bytes());
        at = 16;
    }
    out[at..at + rest.len()].copy_from_slice(rest);
    at + rest.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tagged: Option<u16>) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([2, 0, 0, 0, 0, 1]);
        if let Some(tci) = tagged {
            f.extend(TPID_8021Q.to_be_bytes());
            f.extend(tci.to_be_bytes());
        }
        f.extend(ETHERTYPE_IPV4.to_be_bytes());
        // IPv4, UDP 10.0.0.1:1000 -> 10.0.0.2:53
        f.extend([
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend([0x03, 0xe8, 0, 53, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn reads_untagged_and_tagged_headers() {
        let f = frame(None);
        let e = EthFrame::new_checked(&f).unwrap();
        assert!(e.dst().is_multicast());
        assert_eq!(e.src(), Mac([2, 0, 0, 0, 0, 1]));
        assert_eq!(e.tag(), None);
        assert_eq!(e.ethertype(), ETHERTYPE_IPV4);
        let t = e.five_tuple().unwrap();
        assert_eq!((t.proto, t.sport, t.dport), (17, 1000, 53));

        let f = frame(Some(VlanTag { vid: 100, pcp: 5 }.tci()));
        let e = EthFrame::new_checked(&f).unwrap();
        assert_eq!(e.tag(), Some(VlanTag { vid: 100, pcp: 5 }));
        assert_eq!(e.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(e.five_tuple().unwrap().dport, 53);
    }

    #[test]
    fn rejects_short_frames() {
        assert_eq!(
            EthFrame::new_checked(&[0; 13]).unwrap_err(),
            PacketError::Truncated
        );
        let mut f = frame(Some(1));
        f.truncate(16);
        assert!(EthFrame::new_checked(&f).is_err());
    }

    #[test]
    fn retag_inserts_rewrites_and_strips() {
        let plain = frame(None);
        let tagged = frame(Some(VlanTag { vid: 7, pcp: 3 }.tci()));
        let mut out = [0u8; 128];
        let n = write_retagged(
            EthFrame::new_checked(&plain).unwrap(),
            Some(VlanTag { vid: 7, pcp: 3 }),
            &mut out,
        );
        assert_eq!(&out[..n], &tagged[..]);
        let n = write_retagged(EthFrame::new_checked(&tagged).unwrap(), None, &mut out);
        assert_eq!(&out[..n], &plain[..]);
    }
}
