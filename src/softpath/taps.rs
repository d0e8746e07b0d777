//! The software vPorts' TAPs, which belong to their VMs.
//!
//! A vPort's TAP `vp-NAME` is made persistent and single-queue, with the owner and group the
//! vPort's `tap_owner`/`tap_group` name (neither: owned by root, as the kernel would otherwise
//! let any user open it), and vportd keeps no descriptor of it: QEMU or libvirt
//! opens it by name (`-netdev tap,ifname=vp-NAME,script=no,downscript=no`). The switch serves
//! the TAP's netdev side with an AF_PACKET edge opened by ifindex (counted, so the kernel flow
//! cache can take its known flows), as the Linux bridge serves a VM's TAP. The TAP outlives
//! the daemon: a restart finds it, with the VM still attached, and serves it again.
//!
//! Which TAP is ours. Every TAP vportd makes is written down in `taps.json` in the state
//! directory (vPort -> name and ifindex) right after it is made. A device under a vPort's TAP
//! name is adopted only when the record names it with that ifindex and the kernel says it is
//! a persistent single-queue TAP (its rtnetlink link info); anything else under the name is someone
//! else's and is refused, left alone. Ifindexes are not reused until the counter wraps, and
//! persistent TAPs do not survive a reboot, so a record cannot match a stranger by accident.
//! A vPort that leaves the plan (removed from the config, or off the software path) has its
//! TAP deleted (by ifindex) and its record dropped, also when that is first seen at a start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::PortPlan;
use super::running::SoftpathError;
use crate::host::afpacket::{AfPacket, RingSize};
use crate::host::tap::{self, TapAccess, TapError, TapFacts};
use crate::host::userfiles;
use crate::model::file_errors::FilesError;
use crate::provision::config::Attach;
use crate::switch::Edge;

/// The rings on a vPort's TAP: 2,048 slots of 2 KiB, 4 MiB a ring (the trunk's are 16 MiB:
/// one per switch, but a TAP per vPort); GSO super-packets bigger than a slot go through the
/// socket queue (host::afpacket).
pub(super) const TAP_RING: RingSize = RingSize {
    frames: 2048,
    frame_size: 2048,
};

/// The record of the TAPs vportd made, inside the state directory.
pub const TAPS_FILE: &str = "taps.json";

/// One TAP vportd made for a vPort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapRecord {
    pub name: String,
    pub ifindex: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TapFile {
    version: u32,
    taps: BTreeMap<String, TapRecord>,
}

/// What to do about a vPort's TAP name (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No device has the name: make the TAP.
    Make,
    /// The device under the name is the TAP we made for this vPort: serve it.
    Adopt { ifindex: u32 },
    /// Someone else's device has the name; `ours_before` when we had made one under it.
    Foreign { ifindex: u32, ours_before: bool },
}

/// Whether the device under a vPort's TAP name (`device`: its ifindex, and its TAP facts
/// when it is a TUN/TAP) is the TAP `record` says we made.
pub fn judge(record: Option<&TapRecord>, device: Option<u32>, facts: Option<&TapFacts>) -> Verdict {
    let Some(ifindex) = device else {
        return Verdict::Make;
    };
    let recorded = record.is_some_and(|r| r.ifindex == ifindex);
    let tap = facts.is_some_and(|f| f.ifindex == ifindex && f.is_persistent_tap());
    if recorded && tap {
        Verdict::Adopt { ifindex }
    } else {
        Verdict::Foreign {
            ifindex,
            ours_before: record.is_some(),
        }
    }
}

/// The TAPs vportd made, loaded from and saved to the state directory (kept in memory only
/// without one).
pub struct TapBook {
    path: Option<PathBuf>,
    taps: BTreeMap<String, TapRecord>,
}

impl TapBook {
    /// The record in `state_dir`; an unreadable one is reported and taken as empty (its
    /// TAPs are then refused as strangers, never taken over).
    pub fn load(state_dir: Option<&Path>, errors: &mut Vec<SoftpathError>) -> TapBook {
        let path = state_dir.map(|d| d.join(TAPS_FILE));
        let mut taps = BTreeMap::new();
        if let Some(p) = &path {
            match userfiles::read_text(p) {
                Ok(text) => match serde_json::from_str::<TapFile>(&text) {
                    Ok(f) => taps = f.taps,
                    Err(e) => errors.push(SoftpathError::TapsCorrupt {
                        path: p.clone(),
                        why: e.to_string(),
                    }),
                },
                Err(FilesError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(e.into()),
            }
        }
        TapBook { path, taps }
    }

    fn save(&self, errors: &mut Vec<SoftpathError>) {
        let Some(p) = &self.path else {
            return;
        };
        let file = TapFile {
            version: 1,
            taps: self.taps.clone(),
        };
        let text = serde_json::to_string_pretty(&file).expect("records serialize");
        // No fsync: the record names TAPs and veths, which a power loss or kernel crash
        // takes along; rename keeps it whole against our own death (a CNI ADD or DEL pays
        // this write in its latency).
        if let Err(e) = userfiles::write_replace(p, text.as_bytes()) {
            errors.push(e.into());
        }
    }

    /// Whether the record lives in a state directory (not in memory only).
    pub fn is_stored(&self) -> bool {
        self.path.is_some()
    }

    /// The TAP recorded for a vPort.
    pub fn get(&self, vport: &str) -> Option<&TapRecord> {
        self.taps.get(vport)
    }

    /// The vPort's TAP, ours (adopted or made), with the switch's edge on its netdev side;
    /// None, with the reason in `errors`, when it cannot be had.
    pub fn connect(
        &mut self,
        p: &PortPlan,
        errors: &mut Vec<SoftpathError>,
    ) -> Option<(Box<dyn Edge>, u32)> {
        if let Attach::Veth { netns, ifname } = &p.attach {
            return super::veths::connect(self, p, netns, ifname, errors);
        }
        let access = match resolve_access(p) {
            Ok(a) => a,
            Err(e) => {
                errors.push(e);
                return None;
            }
        };
        let device = nix::net::if_::if_nametoindex(p.tap.as_str()).ok();
        let facts = device.and_then(tap::facts);
        let ifindex = match judge(self.taps.get(&p.vport), device, facts.as_ref()) {
            Verdict::Make => self.make(p, access, errors)?,
            Verdict::Adopt { ifindex } => {
                refresh(p, facts.as_ref(), access, errors);
                ifindex
            }
            Verdict::Foreign {
                ifindex,
                ours_before,
            } => {
                let (vport, tap) = (p.vport.clone(), p.tap.clone());
                errors.push(if ours_before {
                    SoftpathError::TapTaken {
                        vport,
                        tap,
                        ifindex,
                    }
                } else {
                    SoftpathError::TapForeign {
                        vport,
                        tap,
                        ifindex,
                    }
                });
                return None;
            }
        };
        match AfPacket::open_index_counted(ifindex, true, TAP_RING) {
            Ok(edge) => Some((Box::new(edge), ifindex)),
            Err(e) => {
                errors.push(SoftpathError::TapEdge {
                    vport: p.vport.clone(),
                    tap: p.tap.clone(),
                    source: e,
                });
                None
            }
        }
    }

    /// Records the device vportd made for a vPort.
    pub(super) fn record(&mut self, vport: &str, rec: TapRecord, errors: &mut Vec<SoftpathError>) {
        self.taps.insert(vport.to_string(), rec);
        self.save(errors);
    }

    /// Makes the vPort's TAP and records it.
    fn make(
        &mut self,
        p: &PortPlan,
        access: TapAccess,
        errors: &mut Vec<SoftpathError>,
    ) -> Option<u32> {
        match tap::create_persistent(&p.tap, access) {
            Ok(ifindex) => {
                let rec = TapRecord {
                    name: p.tap.clone(),
                    ifindex,
                };
                self.taps.insert(p.vport.clone(), rec);
                self.save(errors);
                Some(ifindex)
            }
            Err(source) => {
                errors.push(SoftpathError::Tap {
                    vport: p.vport.clone(),
                    source,
                });
                None
            }
        }
    }

    /// Deletes the TAPs of vPorts not in `keep` (a TAP whose name now names another device
    /// is left alone) and forgets them.
    pub fn retire_except(&mut self, keep: &BTreeSet<&str>, errors: &mut Vec<SoftpathError>) {
        let gone: Vec<String> = self
            .taps
            .keys()
            .filter(|v| !keep.contains(v.as_str()))
            .cloned()
            .collect();
        if gone.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        for vport in gone {
            let Some(rec) = self.taps.remove(&vport) else {
                continue;
            };
            let here = nix::net::if_::if_nametoindex(rec.name.as_str()).ok();
            if here == Some(rec.ifindex)
                && let Err(e) = tap::delete(rec.ifindex)
            {
                errors.push(SoftpathError::TapDelete {
                    vport,
                    tap: rec.name,
                    why: e.to_string(),
                });
            }
        }
        let deleted = started.elapsed();
        self.save(errors);
        log::debug!(
            "retired devices deleted in {deleted:?}, the record saved after {:?}",
            started.elapsed()
        );
    }
}

/// An adopted TAP made as it is made now: the host kept off it (a TAP made by an older vportd,
/// or changed by hand), and the configured owner and group (changed while the daemon was
/// down; a VM holding the TAP blocks that, and it is said).
fn refresh(
    p: &PortPlan,
    facts: Option<&TapFacts>,
    access: TapAccess,
    errors: &mut Vec<SoftpathError>,
) {
    if let Err(source) = tap::keep_host_off(&p.tap) {
        errors.push(SoftpathError::Tap {
            vport: p.vport.clone(),
            source: TapError::Setup {
                name: p.tap.clone(),
                step: "keep the host's own addresses off it (sysctl)",
                source,
            },
        });
    }
    if facts.is_some_and(|f| !f.grants(access))
        && let Err(source) = tap::change_access(&p.tap, access)
    {
        errors.push(SoftpathError::TapOwners {
            vport: p.vport.clone(),
            source,
        });
    }
}

/// The owner and group a vPort's TAP is made with, from its config.
fn resolve_access(p: &PortPlan) -> Result<TapAccess, SoftpathError> {
    let bad = |key: &'static str, name: &str| SoftpathError::TapUser {
        vport: p.vport.clone(),
        key,
        name: name.to_string(),
    };
    let owner = match &p.tap_owner {
        Some(n) => Some(tap::resolve_user(n).ok_or_else(|| bad("tap_owner", n))?),
        None => None,
    };
    let group = match &p.tap_group {
        Some(n) => Some(tap::resolve_group(n).ok_or_else(|| bad("tap_group", n))?),
        None => None,
    };
    // The kernel lets anyone open a persistent TAP with neither an owner nor a group (its
    // check is "not the owner, or not in the group"): without either, root owns it, and only
    // root (CAP_NET_ADMIN) opens it.
    let owner = owner.or(group.is_none().then_some(0));
    Ok(TapAccess { owner, group })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(ifindex: u32, flags: u32) -> TapFacts {
        TapFacts {
            ifindex,
            flags,
            owner: None,
            group: None,
        }
    }

    const PERSISTENT_TAP: u32 = 0x0002 | 0x0800;

    #[test]
    fn a_tap_is_ours_only_when_recorded_with_its_ifindex_and_persistent() {
        let rec = TapRecord {
            name: "vp-vm1".into(),
            ifindex: 7,
        };
        assert_eq!(judge(Some(&rec), None, None), Verdict::Make);
        assert_eq!(judge(None, None, None), Verdict::Make);
        assert_eq!(
            judge(Some(&rec), Some(7), Some(&facts(7, PERSISTENT_TAP))),
            Verdict::Adopt { ifindex: 7 }
        );
        // Recorded under another ifindex: made again by someone else.
        assert_eq!(
            judge(Some(&rec), Some(9), Some(&facts(9, PERSISTENT_TAP))),
            Verdict::Foreign {
                ifindex: 9,
                ours_before: true
            }
        );
        // Never recorded: a persistent TAP someone made under the name.
        assert_eq!(
            judge(None, Some(7), Some(&facts(7, PERSISTENT_TAP))),
            Verdict::Foreign {
                ifindex: 7,
                ours_before: false
            }
        );
        // Recorded, but not a TAP (a veth) or not persistent, or multi-queue.
        assert!(matches!(
            judge(Some(&rec), Some(7), None),
            Verdict::Foreign { .. }
        ));
        assert!(matches!(
            judge(Some(&rec), Some(7), Some(&facts(7, 0x0002))),
            Verdict::Foreign { .. }
        ));
        assert!(matches!(
            judge(
                Some(&rec),
                Some(7),
                Some(&facts(7, PERSISTENT_TAP | 0x0100))
            ),
            Verdict::Foreign { .. }
        ));
    }

    #[test]
    fn the_record_round_trips_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut errors = Vec::new();
        let mut book = TapBook::load(Some(dir.path()), &mut errors);
        assert!(errors.is_empty() && book.get("vm1").is_none());
        book.taps.insert(
            "vm1".into(),
            TapRecord {
                name: "vp-vm1".into(),
                ifindex: 12,
            },
        );
        book.save(&mut errors);
        let again = TapBook::load(Some(dir.path()), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(again.get("vm1").map(|r| r.ifindex), Some(12));
        std::fs::write(dir.path().join(TAPS_FILE), "{").unwrap();
        let broken = TapBook::load(Some(dir.path()), &mut errors);
        assert!(broken.get("vm1").is_none());
        assert!(errors[0].to_string().contains("taps.json"), "{errors:?}");
    }

    #[test]
    fn a_tap_gets_bpf_redirect_to_its_egress() {
        // Frames of a cached flow into a VM's TAP must reach the VM's descriptor: the
        // TAP's egress (tun_net_xmit queues them for the reader), never a peer redirect.
        use crate::switch::flowcache::{LinkFacts, Redirect, choose_redirect};
        let tap = LinkFacts {
            kind: Some("tun".into()),
            peer_elsewhere: false,
            up: true,
        };
        assert_eq!(choose_redirect(Some(&tap)), Redirect::Egress);
    }
}
