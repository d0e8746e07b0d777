//! Test frames that carry (source, destination, sequence) in a trailer, so a test can check
//! that every frame was delivered exactly once and in order, whatever headers it had and
//! whatever VLAN tag the switch added or removed on the way. Shared by the unit tests, the
//! conformance suite over every NIC kind, and the benchmarks.

use super::packet::{ETHERTYPE_IPV4, TPID_8021Q, VlanTag};
use crate::model::mac::Mac;

/// The trailer's marker; frames without it (a kernel's own chatter) are not test frames.
pub const MAGIC: [u8; 4] = *b"vPsw";
const TRAILER_LEN: usize = 4 + 2 + 2 + 4;
/// An ethertype from the IEEE's local experimental range, for frames that are not IP.
pub const ETHERTYPE_TEST: u16 = 0x88b5;

/// The MAC address of test host `n`: locally administered, unicast.
pub fn host_mac(n: u16) -> Mac {
    let b = n.to_be_bytes();
    Mac([0x02, 0x76, 0x70, 0x00, b[0], b[1]])
}

/// What a test frame says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark {
    /// The sending test host.
    pub src: u16,
    /// The intended test host (0xffff for broadcast).
    pub dst: u16,
    pub seq: u32,
}

/// A description of a test frame to build.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub src: Mac,
    pub dst: Mac,
    pub tag: Option<VlanTag>,
    /// IPv4/UDP with these ports and last address bytes instead of the test ethertype.
    pub udp: Option<(u16, u16)>,
    /// Total frame length (at least the headers and trailer); 64 for minimum frames.
    pub len: usize,
    pub mark: Mark,
}

impl Spec {
    pub fn new(src: u16, dst: u16, seq: u32) -> Self {
        Spec {
            src: host_mac(src),
            dst: if dst == 0xffff {
                Mac::BROADCAST
            } else {
                host_mac(dst)
            },
            tag: None,
            udp: None,
            len: 64,
            mark: Mark { src, dst, seq },
        }
    }

    pub fn tagged(self, vid: u16, pcp: u8) -> Self {
        Spec {
            tag: Some(VlanTag { vid, pcp }),
            ..self
        }
    }

    pub fn udp(self, sport: u16, dport: u16) -> Self {
        Spec {
            udp: Some((sport, dport)),
            ..self
        }
    }

    pub fn len(self, len: usize) -> Self {
        Spec { len, ..self }
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(self.len.max(64));
        f.extend(self.dst.0);
        f.extend(self.src.0);
        if let Some(tag) = self.tag {
            f.extend(TPID_8021Q.to_be_bytes());
            f.extend(tag.tci().to_be_bytes());
        }
        let min = f.len() + 2 + if self.udp.is_some() { 28 } else { 0 } + TRAILER_LEN;
        let total = self.len.max(min);
        if let Some((sport, dport)) = self.udp {
            f.extend(ETHERTYPE_IPV4.to_be_bytes());
            let ip_len = (total - f.len()) as u16;
            let s = self.mark.src.to_be_bytes();
            let d = self.mark.dst.to_be_bytes();
            let mut ip = [
                0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, s[0], s[1], 10, 0, d[0], d[1],
            ];
            ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
            let sum = ip_checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend(ip);
            f.extend(sport.to_be_bytes());
            f.extend(dport.to_be_bytes());
            f.extend((ip_len - 20).to_be_bytes());
            f.extend([0, 0]); // no UDP checksum
        } else {
            f.extend(ETHERTYPE_TEST.to_be_bytes());
        }
        f.resize(total - TRAILER_LEN, 0);
        f.extend(MAGIC);
        f.extend(self.mark.src.to_be_bytes());
        f.extend(self.mark.dst.to_be_bytes());
        f.extend(self.mark.seq.to_be_bytes());
        f
    }
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The mark and VLAN tag of a received frame, or None for a frame that is not a test frame.
pub fn read(frame: &[u8]) -> Option<(Mark, Option<VlanTag>)> {
    let n = frame.len();
    if n < 14 + TRAILER_LEN || frame[n - TRAILER_LEN..n - 8] != MAGIC {
        return None;
    }
    let t = &frame[n - 8..];
    let mark = Mark {
        src: u16::from_be_bytes([t[0], t[1]]),
        dst: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
    };
    let tag = (u16::from_be_bytes([frame[12], frame[13]]) == TPID_8021Q)
        .then(|| VlanTag::from_tci(u16::from_be_bytes([frame[14], frame[15]])));
    Some((mark, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = Spec::new(1, 2, 77).tagged(10, 3).udp(5, 6);
        let f = s.build();
        assert_eq!(f.len(), 64);
        let (m, t) = read(&f).unwrap();
        assert_eq!(m, s.mark);
        assert_eq!(t, Some(VlanTag { vid: 10, pcp: 3 }));
        let e = crate::switch::packet::EthFrame::new_checked(&f).unwrap();
        assert_eq!(e.five_tuple().unwrap().dport, 6);
        assert_eq!(read(&[0; 64]), None);
    }
}
