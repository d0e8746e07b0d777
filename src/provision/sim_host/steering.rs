//! Steering on a simulated PF: RSS contexts, ntuple rules, the l2-fwd-offload feature and
//! macvlan stations, with the kernel's refusals.

use nix::errno::Errno;

use super::SimHost;
use super::queues::sim_refuse;
use crate::model::queues::{FlowRule, FlowTarget};
use crate::provision::ops::EthtoolError;

impl SimHost {
    pub(super) fn sim_rss_context(
        &mut self,
        ifindex: u32,
        id: u32,
    ) -> Result<Option<Vec<u32>>, EthtoolError> {
        let p = self.steer_pf(ifindex, "report an RSS context", None)?;
        Ok(p.steer.contexts.get(&id).cloned())
    }

    pub(super) fn sim_create_rss_context(
        &mut self,
        ifindex: u32,
        indir: &[u32],
    ) -> Result<u32, EthtoolError> {
        let what = "create an RSS context";
        let p = self.steer_pf(ifindex, what, Some("rss-context"))?;
        let n = p.queue_facts.as_ref().and_then(|f| f.combined).unwrap_or(1);
        let size = p
            .queue_facts
            .as_ref()
            .and_then(|f| f.rss_table.as_ref().map(|t| t.len()))
            .unwrap_or(0);
        if p.steer.max_contexts == 0 {
            return Err(sim_refuse(ifindex, what, Errno::EOPNOTSUPP));
        }
        if indir.len() != size || indir.iter().any(|q| *q >= n) {
            return Err(sim_refuse(ifindex, what, Errno::EINVAL));
        }
        let Some(id) = (1..=p.steer.max_contexts).find(|i| !p.steer.contexts.contains_key(i))
        else {
            return Err(sim_refuse(ifindex, what, Errno::ENOSPC));
        };
        p.steer.contexts.insert(id, indir.to_vec());
        self.log.push(format!("context {ifindex} +{id}"));
        Ok(id)
    }

    pub(super) fn sim_delete_rss_context(
        &mut self,
        ifindex: u32,
        id: u32,
    ) -> Result<(), EthtoolError> {
        let what = "delete an RSS context";
        let p = self.steer_pf(ifindex, what, Some("rss-context"))?;
        // The kernel refuses to delete a context a rule still steers into (EBUSY).
        if p.steer
            .rules
            .values()
            .any(|r| matches!(r.target, FlowTarget::Context { id: c } if c == id))
        {
            return Err(sim_refuse(ifindex, what, Errno::EBUSY));
        }
        p.steer
            .contexts
            .remove(&id)
            .ok_or_else(|| sim_refuse(ifindex, what, Errno::ENOENT))?;
        self.log.push(format!("context {ifindex} -{id}"));
        Ok(())
    }

    pub(super) fn sim_rule(
        &mut self,
        ifindex: u32,
        location: u32,
    ) -> Result<Option<FlowRule>, EthtoolError> {
        let p = self.steer_pf(ifindex, "report a flow rule", None)?;
        Ok(p.steer.rules.get(&location).copied())
    }

    pub(super) fn sim_insert_rule(
        &mut self,
        ifindex: u32,
        rule: &FlowRule,
    ) -> Result<(), EthtoolError> {
        let what = "insert a flow rule";
        let p = self.steer_pf(ifindex, what, Some("ntuple"))?;
        let f = p.queue_facts.clone().unwrap_or_default();
        if !f.features.ntuple.is_some_and(|x| x.active || x.changeable) {
            return Err(sim_refuse(ifindex, what, Errno::EOPNOTSUPP));
        }
        let ok = match rule.target {
            FlowTarget::Queue { index } => index < u64::from(f.combined.unwrap_or(1)),
            FlowTarget::Context { id } => p.steer.contexts.contains_key(&id),
        };
        if !ok {
            return Err(sim_refuse(ifindex, what, Errno::EINVAL));
        }
        p.steer.rules.insert(rule.location, *rule);
        self.log.push(format!("rule {ifindex} +{}", rule.location));
        Ok(())
    }

    pub(super) fn sim_delete_rule(
        &mut self,
        ifindex: u32,
        location: u32,
    ) -> Result<(), EthtoolError> {
        let what = "delete a flow rule";
        let p = self.steer_pf(ifindex, what, Some("ntuple"))?;
        p.steer
            .rules
            .remove(&location)
            .ok_or_else(|| sim_refuse(ifindex, what, Errno::ENOENT))?;
        self.log.push(format!("rule {ifindex} -{location}"));
        Ok(())
    }

    pub(super) fn sim_set_feature(
        &mut self,
        ifindex: u32,
        name: &str,
        on: bool,
    ) -> Result<(), EthtoolError> {
        let what = "set a feature";
        let p = self.steer_pf(ifindex, what, Some("l2-fwd-offload"))?;
        let busy = p.steer.macvlans.iter().any(|m| m.3);
        let f = p
            .queue_facts
            .as_mut()
            .and_then(|f| match name {
                "l2-fwd-offload" => f.features.l2_fwd_offload.as_mut(),
                _ => f.features.ntuple.as_mut(),
            })
            .ok_or_else(|| sim_refuse(ifindex, what, Errno::EOPNOTSUPP))?;
        if !f.changeable {
            // As the kernel: accepted, left as it was ([fixed]); the caller reads back.
            return Ok(());
        }
        if !on && busy {
            // ixgbe keeps offloaded stations' pools until they go.
            return Err(sim_refuse(ifindex, what, Errno::EBUSY));
        }
        f.active = on;
        self.log.push(format!("feature {ifindex} {name} {on}"));
        Ok(())
    }

    pub(super) fn sim_create_macvlan(
        &mut self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<u32, EthtoolError> {
        let what = "create a macvlan";
        let next = 100
            + self
                .pfs
                .iter()
                .flat_map(|p| p.steer.macvlans.iter().map(|m| m.0 - 99))
                .max()
                .unwrap_or(0);
        let p = self.steer_pf(parent, what, Some("macvlan"))?;
        if p.steer.macvlans.iter().any(|m| m.1 == name || m.2 == mac) {
            return Err(sim_refuse(parent, what, Errno::EEXIST));
        }
        let pool = p
            .queue_facts
            .as_ref()
            .and_then(|f| f.features.l2_fwd_offload)
            .is_some_and(|f| f.active);
        p.steer.macvlans.push((next, name.to_string(), mac, pool));
        self.log.push(format!("macvlan {parent} +{next}"));
        Ok(next)
    }

    pub(super) fn sim_find_macvlan(
        &mut self,
        parent: u32,
        mac: [u8; 6],
    ) -> Result<Option<u32>, EthtoolError> {
        let p = self.steer_pf(parent, "list devices", None)?;
        Ok(p.steer.macvlans.iter().find(|m| m.2 == mac).map(|m| m.0))
    }

    pub(super) fn sim_delete_link(&mut self, ifindex: u32) -> Result<(), EthtoolError> {
        for p in &mut self.pfs {
            if p.queue_refuses.contains(&"macvlan-delete") {
                return Err(sim_refuse(ifindex, "delete the device", Errno::EBUSY));
            }
            if let Some(i) = p.steer.macvlans.iter().position(|m| m.0 == ifindex) {
                p.steer.macvlans.remove(i);
                self.log.push(format!("macvlan -{ifindex}"));
                return Ok(());
            }
        }
        Err(sim_refuse(ifindex, "delete the device", Errno::ENODEV))
    }
}
