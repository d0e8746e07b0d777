//! The simulated driver's queue controls (`QueueOps`): channels and the RSS table here, the
//! per-vPort steering (contexts, rules, features, macvlans) in [`super::steering`].

use nix::errno::Errno;

use super::{SimHost, SimPf};
use crate::model::queues::{FlowRule, QueueFacts, equal_table};
use crate::provision::ops::{EthtoolError, QueueOps};

/// The simulated driver's queue controls: igb's rules (channels up to the maximum, RSS
/// table entries below the channel count, the table back to the default after a channel
/// change), with faults injected by name through `queue_refuses`.
impl QueueOps for SimHost {
    fn facts(&mut self, ifindex: u32) -> Result<QueueFacts, EthtoolError> {
        let p = self.pfs.iter().find(|p| p.ifindex == ifindex);
        Ok(p.and_then(|p| p.queue_facts.clone()).unwrap_or_default())
    }

    fn set_channels(&mut self, ifindex: u32, combined: u32) -> Result<(), EthtoolError> {
        let refuse = |errno| EthtoolError::Refused {
            dev: format!("ifindex {ifindex}"),
            what: format!("set {combined} combined channels"),
            errno,
        };
        let p = self
            .pfs
            .iter_mut()
            .find(|p| p.ifindex == ifindex)
            .ok_or(refuse(Errno::ENODEV))?;
        if p.queue_refuses.contains(&"channels") {
            return Err(refuse(Errno::EOPNOTSUPP));
        }
        let f = p.queue_facts.as_mut().ok_or(refuse(Errno::EOPNOTSUPP))?;
        if combined == 0 || f.combined_max.is_some_and(|m| combined > m) {
            return Err(refuse(Errno::EINVAL));
        }
        f.combined = Some(combined);
        if let Some(t) = f.rss_table.as_mut() {
            *t = equal_table(t.len() as u32, 0, combined);
        }
        self.log.push(format!("channels {ifindex} {combined}"));
        Ok(())
    }

    fn set_rss_table(&mut self, ifindex: u32, indir: &[u32]) -> Result<(), EthtoolError> {
        let refuse = |errno| EthtoolError::Refused {
            dev: format!("ifindex {ifindex}"),
            what: "set its RSS indirection table".into(),
            errno,
        };
        let p = self
            .pfs
            .iter_mut()
            .find(|p| p.ifindex == ifindex)
            .ok_or(refuse(Errno::ENODEV))?;
        if p.queue_refuses.contains(&"rss") {
            return Err(refuse(Errno::EOPNOTSUPP));
        }
        let f = p.queue_facts.as_mut().ok_or(refuse(Errno::EOPNOTSUPP))?;
        let n = f.combined.unwrap_or(1);
        let t = f.rss_table.as_mut().ok_or(refuse(Errno::EOPNOTSUPP))?;
        if indir.is_empty() {
            *t = equal_table(t.len() as u32, 0, n);
        } else if indir.len() != t.len() || indir.iter().any(|q| *q >= n) {
            return Err(refuse(Errno::EINVAL));
        } else {
            *t = indir.to_vec();
        }
        self.log.push(format!("rss {ifindex} {}", indir.len()));
        Ok(())
    }

    fn rss_context(&mut self, ifindex: u32, id: u32) -> Result<Option<Vec<u32>>, EthtoolError> {
        self.sim_rss_context(ifindex, id)
    }

    fn create_rss_context(&mut self, ifindex: u32, indir: &[u32]) -> Result<u32, EthtoolError> {
        self.sim_create_rss_context(ifindex, indir)
    }

    fn delete_rss_context(&mut self, ifindex: u32, id: u32) -> Result<(), EthtoolError> {
        self.sim_delete_rss_context(ifindex, id)
    }

    fn rule(&mut self, ifindex: u32, location: u32) -> Result<Option<FlowRule>, EthtoolError> {
        self.sim_rule(ifindex, location)
    }

    fn insert_rule(&mut self, ifindex: u32, rule: &FlowRule) -> Result<(), EthtoolError> {
        self.sim_insert_rule(ifindex, rule)
    }

    fn delete_rule(&mut self, ifindex: u32, location: u32) -> Result<(), EthtoolError> {
        self.sim_delete_rule(ifindex, location)
    }

    fn set_feature(&mut self, ifindex: u32, name: &str, on: bool) -> Result<(), EthtoolError> {
        self.sim_set_feature(ifindex, name, on)
    }

    fn create_macvlan(
        &mut self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<u32, EthtoolError> {
        self.sim_create_macvlan(parent, name, mac)
    }

    fn find_macvlan(&mut self, parent: u32, mac: [u8; 6]) -> Result<Option<u32>, EthtoolError> {
        self.sim_find_macvlan(parent, mac)
    }

    fn delete_link(&mut self, ifindex: u32) -> Result<(), EthtoolError> {
        self.sim_delete_link(ifindex)
    }
}

pub(super) fn sim_refuse(ifindex: u32, what: &str, errno: Errno) -> EthtoolError {
    EthtoolError::Refused {
        dev: format!("ifindex {ifindex}"),
        what: what.into(),
        errno,
    }
}

impl SimHost {
    /// The PF with `ifindex`, refusing with EOPNOTSUPP when `control` is in its
    /// `queue_refuses`.
    pub(super) fn steer_pf(
        &mut self,
        ifindex: u32,
        what: &str,
        control: Option<&str>,
    ) -> Result<&mut SimPf, EthtoolError> {
        let p = self
            .pfs
            .iter_mut()
            .find(|p| p.ifindex == ifindex)
            .ok_or_else(|| sim_refuse(ifindex, what, Errno::ENODEV))?;
        if control.is_some_and(|c| p.queue_refuses.contains(&c)) {
            return Err(sim_refuse(ifindex, what, Errno::EOPNOTSUPP));
        }
        Ok(p)
    }
}
