//! VF settings as rtnetlink applies them: MAC, VLAN, rates, spoof checking, trust and link
//! state, with the attributes a driver refuses (EOPNOTSUPP).

use nix::errno::Errno;

use super::{Op, SimHost};
use crate::model::vf::{VfConfig, VlanProto};
use crate::provision::ops::HostError;

impl SimHost {
    pub(super) fn sim_vf_config(
        &mut self,
        pf_ifindex: u32,
        vf: u32,
    ) -> Result<Option<VfConfig>, HostError> {
        self.fault(Op::VfConfig, "vf_config")?;
        let p = self.pf_by_ifindex(pf_ifindex)?;
        Ok(p.vfs.get(vf as usize).map(|v| v.config.clone()))
    }

    /// A simulated PF has carrier exactly when it is administratively up.
    pub(super) fn sim_pf_carrier(&mut self, pf: &str) -> Result<bool, HostError> {
        Ok(self.pfs.iter().any(|p| p.bdf == pf && p.admin_up))
    }

    pub(super) fn sim_set_vf(&mut self, pf_ifindex: u32, cfg: &VfConfig) -> Result<(), HostError> {
        self.fault(Op::SetVf, "set_vf")?;
        self.log.push(format!("set_vf {pf_ifindex} {}", cfg.vf));
        let p = self.pf_by_ifindex(pf_ifindex)?;
        let refuses = p.refuses.clone();
        // igb checks a VF rate against the PF's link speed: no link, EINVAL.
        let no_link = p.driver == "igb" && !p.admin_up;
        let v = p.vfs.get_mut(cfg.vf as usize).ok_or(HostError::Netlink {
            what: format!("VF {}", cfg.vf),
            errno: Some(Errno::EINVAL),
            message: "no such VF".into(),
        })?;
        let fail = |errno: Errno| HostError::Netlink {
            what: format!("setting VF {}", cfg.vf),
            errno: Some(errno),
            message: errno.desc().into(),
        };
        // The kernel applies IFLA_VF_* attributes one after another and stops at the
        // first refusal, leaving the earlier ones applied: a partial write.
        v.config.mac = cfg.mac;
        if cfg.vlan_proto == Some(VlanProto::Dot1Ad) && refuses.contains(&"802.1ad") {
            return Err(fail(Errno::EPROTONOSUPPORT));
        }
        v.config.vlan = cfg.vlan;
        v.config.qos = cfg.qos;
        v.config.vlan_proto = cfg.vlan_proto.or(Some(VlanProto::Dot1Q));
        if cfg.min_tx_rate.is_some() || cfg.max_tx_rate.is_some() {
            if cfg.min_tx_rate.unwrap_or(0) > 0 && refuses.contains(&"min_rate") {
                return Err(fail(Errno::EINVAL));
            }
            if cfg.max_tx_rate.unwrap_or(0) > 0 && no_link {
                return Err(fail(Errno::EINVAL));
            }
            v.config.min_tx_rate = cfg.min_tx_rate.or(Some(0));
            v.config.max_tx_rate = cfg.max_tx_rate.or(Some(0));
        }
        if let Some(s) = cfg.spoofchk {
            v.config.spoofchk = Some(s);
        }
        if let Some(t) = cfg.trust {
            v.config.trust = Some(t);
        }
        if let Some(l) = &cfg.link_state {
            if refuses.contains(&"link_state") {
                return Err(fail(Errno::EOPNOTSUPP));
            }
            v.config.link_state = Some(*l);
        }
        Ok(())
    }
}
