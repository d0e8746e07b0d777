//! The simulated host's `SriovOps`: each operation is answered by the concern that owns
//! it, the VF count and driver binding ([`super::vfs`]) or the VF settings
//! ([`super::vf_settings`]).

use super::SimHost;
use crate::model::vf::VfConfig;
use crate::provision::ops::{HostError, QueueOps, SriovOps};

impl SriovOps for SimHost {
    fn queues(&mut self) -> Option<&mut dyn QueueOps> {
        Some(self)
    }

    fn num_vfs(&mut self, pf: &str) -> Result<u32, HostError> {
        self.sim_num_vfs(pf)
    }

    fn set_num_vfs(&mut self, pf: &str, n: u32) -> Result<u32, HostError> {
        self.sim_set_num_vfs(pf, n)
    }

    fn vf_bdf(&mut self, pf: &str, index: u32) -> Result<Option<String>, HostError> {
        self.sim_vf_bdf(pf, index)
    }

    fn driver(&mut self, bdf: &str) -> Result<Option<String>, HostError> {
        self.sim_driver(bdf)
    }

    fn bind(&mut self, bdf: &str, driver: Option<&str>) -> Result<(), HostError> {
        self.sim_bind(bdf, driver)
    }

    fn vf_config(&mut self, pf_ifindex: u32, vf: u32) -> Result<Option<VfConfig>, HostError> {
        self.sim_vf_config(pf_ifindex, vf)
    }

    fn pf_carrier(&mut self, pf: &str) -> Result<bool, HostError> {
        self.sim_pf_carrier(pf)
    }

    fn pf_admin_up(&mut self, pf_ifindex: u32) -> Result<bool, HostError> {
        Ok(self.pf_by_ifindex(pf_ifindex)?.admin_up)
    }

    fn set_pf_admin_up(&mut self, pf_ifindex: u32, up: bool) -> Result<(), HostError> {
        self.log.push(format!(
            "set_pf_admin_up {pf_ifindex} {}",
            if up { "up" } else { "down" }
        ));
        self.pf_by_ifindex(pf_ifindex)?.admin_up = up;
        Ok(())
    }

    fn set_vf(&mut self, pf_ifindex: u32, cfg: &VfConfig) -> Result<(), HostError> {
        self.sim_set_vf(pf_ifindex, cfg)
    }
}
