//! Queues of a vPort's own: which kind of steering a vPort without a VF gets (RSS context
//! and rule, VMDq pool, ntuple queue), the queues and rule slots handed out on one PF, and
//! the actions that remove steering.

use std::collections::BTreeSet;

use super::abilities::SteeringAbilities;
use super::action::Action;
use crate::model::queues::{Feature, QueueFacts};
use crate::provision::config::VportSpec;
use crate::provision::state::{QueueMode, Steering, VportPath};

/// Picks a vPort's own queues: an RSS context with a rule into it, a VMDq pool, or one
/// ntuple queue, from the profile and what the NIC reports now. Queues for contexts and
/// ntuple come off the top of the channel range (queue 0 stays with the PF's own RSS).
/// Err: every refusal, as sentences.
pub(super) fn choose_queues(
    v: &VportSpec,
    driver: &str,
    ifname: &str,
    facts: Option<&QueueFacts>,
    steering: Option<&SteeringAbilities>,
    alloc: &mut Alloc,
) -> Result<(VportPath, String), Vec<String>> {
    let family = steering
        .map(|s| format!("{driver} ({} hwprofile)", s.family))
        .unwrap_or_else(|| format!("{driver} (no hwprofile)"));
    let features = facts.map(|q| q.features).unwrap_or_default();
    let ntuple = match features.ntuple {
        Some(f) if f.active || f.changeable => Ok(()),
        Some(_) => Err(format!("{ifname} reports ntuple-filters off [fixed]")),
        None if steering.is_some_and(|s| s.ntuple) => Ok(()),
        None => Err(format!("{family} has no ntuple-filters")),
    };
    let mut chooser = Chooser {
        v,
        ifname,
        family,
        l2_fwd_offload: features.l2_fwd_offload,
        steering,
        ntuple,
        refusals: Vec::new(),
    };
    let chosen = chooser
        .rss_context(alloc)
        .or_else(|| chooser.vmdq())
        .or_else(|| chooser.ntuple_queue(alloc));
    match chosen {
        Some((path, how)) if chooser.refusals.is_empty() => Ok((path, how)),
        Some((path, how)) => Ok((path, format!("{}; {how}", chooser.refusals.join("; ")))),
        None => Err(chooser.refusals),
    }
}

/// Whether a macvlan on `ifname` can have a VMDq pool. The profile's `vmdq_pools = 0` (`said`
/// `Some(false)`) refuses outright; otherwise the driver's l2-fwd-offload decides, since a
/// profile that does not say (None) may still belong to a driver that offers it.
fn vmdq_refusal(
    said: Option<bool>,
    l2fwd: Option<Feature>,
    ifname: &str,
    family: &str,
) -> Result<(), String> {
    match (said, l2fwd) {
        (Some(false), _) => Err(format!("{family} has no VMDq pools")),
        (_, Some(f)) if f.active || f.changeable => Ok(()),
        (_, Some(_)) => Err(format!(
            "no VMDq pool: {ifname} reports l2-fwd-offload off [fixed], so a macvlan cannot have one"
        )),
        (Some(true), None) => Err(format!(
            "no VMDq pool: {ifname} does not report l2-fwd-offload"
        )),
        (None, None) => Err(format!(
            "no VMDq pool: {ifname} does not report l2-fwd-offload (and {family} does not say it has VMDq pools)"
        )),
    }
}

/// Queues and ntuple slots on one PF: taken by vPorts that keep their steering first,
/// then handed out to new ones (queues from the top of the channel range, slots from 0).
pub(super) struct Alloc {
    pub(super) channels: u32,
    pub(super) queues: BTreeSet<u32>,
    pub(super) locations: BTreeSet<u32>,
}

impl Alloc {
    /// The highest free run of `n` queues above queue 0.
    fn take(&mut self, n: u32) -> Result<u32, String> {
        let mut first = self.channels.saturating_sub(n);
        while first >= 1 {
            if (first..first + n).all(|q| !self.queues.contains(&q)) {
                self.queues.extend(first..first + n);
                return Ok(first);
            }
            first -= 1;
        }
        let free = (1..self.channels)
            .filter(|q| !self.queues.contains(q))
            .count();
        Err(format!("{free} queue(s) left above queue 0, not {n}"))
    }

    fn location(&mut self) -> u32 {
        let l = (0..).find(|l| !self.locations.contains(l)).unwrap_or(0);
        self.locations.insert(l);
        l
    }
}

/// One vPort's choice of queues, with the refusals met on the way.
struct Chooser<'a> {
    v: &'a VportSpec,
    ifname: &'a str,
    /// The PF's driver and its hwprofile, as refusals name them.
    family: String,
    l2_fwd_offload: Option<Feature>,
    steering: Option<&'a SteeringAbilities>,
    /// Whether ntuple rules can be inserted (Err: why not).
    ntuple: Result<(), String>,
    refusals: Vec<String>,
}

impl Chooser<'_> {
    fn take(&self, n: u32, alloc: &mut Alloc) -> Result<u32, String> {
        alloc
            .take(n)
            .map_err(|e| format!("{} has {e}", self.ifname))
    }

    /// An RSS context over the vPort's queues, with a rule into it.
    fn rss_context(&mut self, alloc: &mut Alloc) -> Option<(VportPath, String)> {
        let (v, want) = (self.v, self.v.queues.unwrap_or(1));
        if !self.steering.is_some_and(|s| s.rss_contexts) {
            self.refusals
                .push(format!("{} has no RSS contexts", self.family));
            return None;
        }
        if let Err(e) = &self.ntuple {
            self.refusals.push(format!(
                "no RSS context: {e}, so no rule can steer into one"
            ));
            return None;
        }
        match self.take(want, alloc) {
            Ok(first) => {
                let loc = alloc.location();
                Some((
                    VportPath::Queues {
                        mode: QueueMode::RssContext,
                        first,
                        count: want,
                        location: Some(loc),
                    },
                    format!(
                        "an RSS context over queues {first}-{} with a rule on {}{} takes it",
                        first + want - 1,
                        v.mac,
                        v.vlan.map(|x| format!(" vlan {x}")).unwrap_or_default()
                    ),
                ))
            }
            Err(e) => {
                self.refusals.push(format!("no RSS context: {e}"));
                None
            }
        }
    }

    /// A VMDq pool through a macvlan.
    fn vmdq(&mut self) -> Option<(VportPath, String)> {
        let said = self.steering.and_then(|s| s.vmdq);
        match vmdq_refusal(said, self.l2_fwd_offload, self.ifname, &self.family) {
            Ok(()) => Some((
                VportPath::Queues {
                    mode: QueueMode::Vmdq,
                    first: 0,
                    count: self.v.queues.unwrap_or(1),
                    location: None,
                },
                format!(
                    "a macvlan on {} with l2-fwd-offload gets a VMDq pool",
                    self.ifname
                ),
            )),
            Err(refusal) => {
                self.refusals.push(refusal);
                None
            }
        }
    }

    /// One queue through an ntuple rule.
    fn ntuple_queue(&mut self, alloc: &mut Alloc) -> Option<(VportPath, String)> {
        let taken = match &self.ntuple {
            Ok(()) => self.take(1, alloc),
            Err(e) => Err(e.clone()),
        };
        match taken {
            Ok(first) => {
                let loc = alloc.location();
                Some((
                    VportPath::Queues {
                        mode: QueueMode::Ntuple,
                        first,
                        count: 1,
                        location: Some(loc),
                    },
                    format!(
                        "an ntuple rule on {} into queue {first} takes it",
                        self.v.mac
                    ),
                ))
            }
            Err(e) => {
                self.refusals.push(format!("no ntuple queue: {e}"));
                None
            }
        }
    }
}

/// The macvlan station's name for a vPort: `vq-` and the name, cut to 15 bytes with a
/// hash of the whole name when it is longer (the device is found by its MAC, the name is
/// only for people).
pub fn macvlan_name(vport: &str) -> String {
    let full = format!("vq-{vport}");
    if full.len() <= 15 {
        return full;
    }
    let hash = vport.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let head: String = vport.chars().take(7).collect();
    format!("vq-{head}-{:04x}", hash & 0xffff)
}

/// The actions that remove a vPort's programmed steering from its PF: the rule before the
/// context it points into, the macvlan station by MAC.
pub(super) fn release_steering(pf: &str, name: &str, st: &Steering, resets: &mut Vec<Action>) {
    let (ifx, vport) = (st.pf_ifindex, name.to_string());
    if let Some(location) = st.location {
        resets.push(Action::DeleteRule {
            pf: pf.into(),
            pf_ifindex: ifx,
            vport: vport.clone(),
            location,
        });
    }
    match st.mode {
        QueueMode::RssContext => resets.push(Action::DeleteRssContext {
            pf: pf.into(),
            pf_ifindex: ifx,
            vport,
            context: st.context,
            table: st.table.clone(),
        }),
        QueueMode::Vmdq => resets.push(Action::DeleteMacvlan {
            pf: pf.into(),
            pf_ifindex: ifx,
            vport,
            mac: st.mac.clone(),
        }),
        QueueMode::Ntuple => {}
    }
}

#[cfg(test)]
mod tests {
    use super::vmdq_refusal;
    use crate::model::queues::Feature;

    const ON: Feature = Feature {
        active: true,
        changeable: true,
    };
    const FIXED_OFF: Feature = Feature {
        active: false,
        changeable: false,
    };

    /// `vmdq_pools = 0` (ice, virtio-net) is no VMDq whatever the feature says; a profile
    /// without the key leaves it to the driver's l2-fwd-offload.
    #[test]
    fn vmdq_follows_the_profile_then_the_driver() {
        let ask = |said, l2fwd| vmdq_refusal(said, l2fwd, "eth0", "ice (ice-e810 hwprofile)");
        let no = ask(Some(false), Some(ON)).unwrap_err();
        assert_eq!(no, "ice (ice-e810 hwprofile) has no VMDq pools");
        assert_eq!(ask(Some(false), None).unwrap_err(), no);
        assert_eq!(ask(Some(true), Some(ON)), Ok(()));
        assert_eq!(ask(None, Some(ON)), Ok(()));
        assert!(
            ask(None, Some(FIXED_OFF))
                .unwrap_err()
                .contains("off [fixed]")
        );
        assert!(
            ask(Some(true), None)
                .unwrap_err()
                .ends_with("does not report l2-fwd-offload")
        );
        assert!(
            ask(None, None)
                .unwrap_err()
                .contains("does not say it has VMDq pools")
        );
    }
}
