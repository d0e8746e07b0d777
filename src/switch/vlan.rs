//! Per-port 802.1Q modes: which VLAN a frame belongs to as it enters, and whether it leaves
//! tagged. Access ports carry one VLAN untagged; trunk ports carry an allowed list tagged, with
//! an optional native VLAN carried untagged (the Linux bridge's PVID, OVS's `native-untagged`).

use super::packet::VlanTag;

/// The VLANs a trunk carries, as a 4,096-bit set (one bit per VID; 0 and 4095 never set).
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet(Box<[u64; 64]>);

impl VlanSet {
    pub fn empty() -> Self {
        VlanSet(Box::new([0; 64]))
    }

    /// VLANs 1..=4094.
    pub fn all() -> Self {
        let mut s = Self::empty();
        for vid in 1..=4094 {
            s.insert(vid);
        }
        s
    }

    pub fn from_vids(vids: impl IntoIterator<Item = u16>) -> Self {
        let mut s = Self::empty();
        for vid in vids {
            s.insert(vid);
        }
        s
    }

    pub fn insert(&mut self, vid: u16) {
        if (1..=4094).contains(&vid) {
            self.0[usize::from(vid / 64)] |= 1 << (vid % 64);
        }
    }

    pub fn contains(&self, vid: u16) -> bool {
        vid < 4096 && self.0[usize::from(vid / 64)] & (1 << (vid % 64)) != 0
    }
}

impl std::fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vids: Vec<u16> = (1..4095).filter(|v| self.contains(*v)).collect();
        write!(f, "VlanSet({vids:?})")
    }
}

/// How a port treats VLAN tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VlanMode {
    /// Untagged frames belong to `vid`; tagged frames are dropped (a priority-only tag, VID 0,
    /// is accepted as untagged). Frames leave untagged.
    Access { vid: u16 },
    /// Tagged frames of an allowed VLAN are accepted; untagged ones belong to `native` or are
    /// dropped. Frames leave tagged, except those of the native VLAN.
    Trunk {
        allowed: VlanSet,
        native: Option<u16>,
    },
}

impl VlanMode {
    /// The VLAN an incoming frame belongs to and its priority, or None to drop it.
    /// `default_pcp` is the priority given to frames that arrive without one.
    #[inline]
    pub fn ingress(&self, tag: Option<VlanTag>, default_pcp: u8) -> Option<(u16, u8)> {
        let (vid, pcp) = match tag {
            Some(t) if t.vid != 0 => (Some(t.vid), t.pcp),
            Some(t) => (None, t.pcp),
            None => (None, default_pcp),
        };
        match (self, vid) {
            (VlanMode::Access { vid: own }, None) => Some((*own, pcp)),
            (VlanMode::Access { .. }, Some(_)) => None,
            (VlanMode::Trunk { native, .. }, None) => native.map(|n| (n, pcp)),
            (VlanMode::Trunk { allowed, native }, Some(v)) => {
                (allowed.contains(v) || *native == Some(v)).then_some((v, pcp))
            }
        }
    }

    /// Whether this port carries `vid` at all (the flooding domain).
    #[inline]
    pub fn carries(&self, vid: u16) -> bool {
        match self {
            VlanMode::Access { vid: own } => *own == vid,
            VlanMode::Trunk { allowed, native } => allowed.contains(vid) || *native == Some(vid),
        }
    }

    /// The tag a frame of `vid` leaves with, or None for untagged. Only asked for VLANs the
    /// port carries.
    #[inline]
    pub fn egress(&self, vid: u16, pcp: u8) -> Option<VlanTag> {
        match self {
            VlanMode::Access { .. } => None,
            VlanMode::Trunk { native, .. } if *native == Some(vid) => None,
            VlanMode::Trunk { .. } => Some(VlanTag { vid, pcp }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(vid: u16, pcp: u8) -> Option<VlanTag> {
        Some(VlanTag { vid, pcp })
    }

    /// The field's table: (port mode, incoming tag) -> (VLAN, priority) or drop.
    #[test]
    fn ingress_table() {
        let access = VlanMode::Access { vid: 10 };
        let trunk = VlanMode::Trunk {
            allowed: VlanSet::from_vids([10, 20]),
            native: None,
        };
        let native = VlanMode::Trunk {
            allowed: VlanSet::from_vids([20]),
            native: Some(30),
        };
        type Case<'a> = (&'a VlanMode, Option<VlanTag>, Option<(u16, u8)>);
        let cases: &[Case<'_>] = &[
            (&access, None, Some((10, 2))),
            (&access, tag(0, 6), Some((10, 6))),
            (&access, tag(10, 0), None),
            (&access, tag(20, 0), None),
            (&trunk, None, None),
            (&trunk, tag(10, 5), Some((10, 5))),
            (&trunk, tag(20, 7), Some((20, 7))),
            (&trunk, tag(30, 0), None),
            (&trunk, tag(0, 3), None),
            (&native, None, Some((30, 2))),
            (&native, tag(20, 1), Some((20, 1))),
            (&native, tag(30, 4), Some((30, 4))),
            (&native, tag(10, 0), None),
        ];
        for (mode, t, want) in cases {
            assert_eq!(mode.ingress(*t, 2), *want, "{mode:?} {t:?}");
        }
    }

    #[test]
    fn egress_tags_all_but_access_and_native() {
        let native = VlanMode::Trunk {
            allowed: VlanSet::from_vids([20]),
            native: Some(30),
        };
        assert_eq!(native.egress(20, 3), tag(20, 3));
        assert_eq!(native.egress(30, 3), None);
        assert_eq!(VlanMode::Access { vid: 5 }.egress(5, 1), None);
        assert!(native.carries(30) && native.carries(20) && !native.carries(10));
    }

    #[test]
    fn vlan_set_bounds() {
        let all = VlanSet::all();
        assert!(!all.contains(0) && all.contains(1) && all.contains(4094) && !all.contains(4095));
    }
}
