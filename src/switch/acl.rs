//! Access control lists: ordered rules matching MACs, ethertype, VLAN and the IPv4/IPv6
//! 5-tuple; the first rule that matches decides, and a frame no rule matches is allowed (a
//! port without rules pays nothing). The 5-tuple is parsed only if some rule asks for it.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use super::packet::{EthFrame, FiveTuple};
use crate::model::mac::Mac;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// An address prefix (`10.0.0.0/8`, `fd00::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let len = u32::from(self.len.min(32));
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let len = u32::from(self.len.min(128));
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// One rule: every field given must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub src_mac: Option<Mac>,
    pub dst_mac: Option<Mac>,
    pub ethertype: Option<u16>,
    pub vlan: Option<u16>,
    pub src_ip: Option<Prefix>,
    pub dst_ip: Option<Prefix>,
    pub proto: Option<u8>,
    pub src_port: Option<RangeInclusive<u16>>,
    pub dst_port: Option<RangeInclusive<u16>>,
}

impl Rule {
    /// A rule matching everything, to narrow with the fields.
    pub fn any(action: Action) -> Self {
        Rule {
            action,
            src_mac: None,
            dst_mac: None,
            ethertype: None,
            vlan: None,
            src_ip: None,
            dst_ip: None,
            proto: None,
            src_port: None,
            dst_port: None,
        }
    }

    fn needs_l3(&self) -> bool {
        self.src_ip.is_some()
            || self.dst_ip.is_some()
            || self.proto.is_some()
            || self.src_port.is_some()
            || self.dst_port.is_some()
    }

    fn matches(&self, frame: &EthFrame<'_>, vid: u16, tuple: Option<&FiveTuple>) -> bool {
        if self.src_mac.is_some_and(|m| m != frame.src())
            || self.dst_mac.is_some_and(|m| m != frame.dst())
            || self.ethertype.is_some_and(|t| t != frame.ethertype())
            || self.vlan.is_some_and(|v| v != vid)
        {
            return false;
        }
        if !self.needs_l3() {
            return true;
        }
        let Some(t) = tuple else { return false };
        self.src_ip.is_none_or(|p| p.contains(t.src))
            && self.dst_ip.is_none_or(|p| p.contains(t.dst))
            && self.proto.is_none_or(|p| p == t.proto)
            && self.src_port.as_ref().is_none_or(|r| r.contains(&t.sport))
            && self.dst_port.as_ref().is_none_or(|r| r.contains(&t.dport))
    }
}

/// An ordered list of rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<Rule>,
    needs_l3: bool,
}

impl Acl {
    pub fn new(rules: Vec<Rule>) -> Self {
        let needs_l3 = rules.iter().any(Rule::needs_l3);
        Acl { rules, needs_l3 }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether every rule looks only at the MACs and the VLAN, so that its decision is the
    /// same for every frame of a flow cache flow (keyed by ingress port, both MACs and the
    /// outer tag): a vPort's spoof check ("only my source MAC") is such an ACL.
    pub fn decided_by_macs_and_vlan(&self) -> bool {
        self.rules.iter().all(|r| {
            r.ethertype.is_none()
                && r.src_ip.is_none()
                && r.dst_ip.is_none()
                && r.proto.is_none()
                && r.src_port.is_none()
                && r.dst_port.is_none()
        })
    }

    /// Whether `frame`, classified into `vid`, may pass.
    #[inline]
    pub fn allows(&self, frame: &EthFrame<'_>, vid: u16) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        let tuple = if self.needs_l3 {
            frame.five_tuple()
        } else {
            None
        };
        self.rules
            .iter()
            .find(|r| r.matches(frame, vid, tuple.as_ref()))
            .is_none_or(|r| r.action == Action::Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::packet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};

    fn udp4(dport: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend(ETHERTYPE_IPV4.to_be_bytes());
        f.extend([
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 2, 3, 10, 9, 9, 9,
        ]);
        f.extend(1234u16.to_be_bytes());
        f.extend(dport.to_be_bytes());
        f.extend([0, 8, 0, 0]);
        f
    }

    fn tcp6(dport: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend(ETHERTYPE_IPV6.to_be_bytes());
        f.extend([0x60, 0, 0, 0, 0, 20, 6, 64]);
        f.extend("fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        f.extend("fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        f.extend(40000u16.to_be_bytes());
        f.extend(dport.to_be_bytes());
        f.extend([0; 16]);
        f
    }

    #[test]
    fn first_match_wins_and_default_allows() {
        let acl = Acl::new(vec![
            Rule {
                proto: Some(17),
                dst_port: Some(53..=53),
                ..Rule::any(Action::Allow)
            },
            Rule {
                dst_ip: Some(Prefix {
                    addr: "10.9.0.0".parse().unwrap(),
                    len: 16,
                }),
                ..Rule::any(Action::Deny)
            },
            Rule {
                dst_ip: Some(Prefix {
                    addr: "fd00::".parse().unwrap(),
                    len: 64,
                }),
                dst_port: Some(22..=22),
                ..Rule::any(Action::Deny)
            },
        ]);
        let f = udp4(53);
        assert!(acl.allows(&EthFrame::new_checked(&f).unwrap(), 1));
        let f = udp4(54);
        assert!(!acl.allows(&EthFrame::new_checked(&f).unwrap(), 1));
        let f = tcp6(22);
        assert!(!acl.allows(&EthFrame::new_checked(&f).unwrap(), 1));
        let f = tcp6(80);
        assert!(acl.allows(&EthFrame::new_checked(&f).unwrap(), 1));
    }

    #[test]
    fn l2_fields() {
        let acl = Acl::new(vec![
            Rule {
                src_mac: Some(Mac([2, 0, 0, 0, 0, 1])),
                vlan: Some(7),
                ..Rule::any(Action::Deny)
            },
            Rule {
                ethertype: Some(ETHERTYPE_IPV6),
                ..Rule::any(Action::Deny)
            },
        ]);
        let f = udp4(1);
        let e = EthFrame::new_checked(&f).unwrap();
        assert!(!acl.allows(&e, 7));
        assert!(acl.allows(&e, 8));
        let f = tcp6(1);
        assert!(!acl.allows(&EthFrame::new_checked(&f).unwrap(), 8));
    }

    #[test]
    fn prefixes() {
        let p = Prefix {
            addr: "0.0.0.0".parse().unwrap(),
            len: 0,
        };
        assert!(p.contains("1.2.3.4".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
    }
}
