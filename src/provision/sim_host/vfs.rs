//! VF count and driver binding, with the kernel's rules for `sriov_numvfs` (drivers/pci/iov.c):
//! a change from one non-zero count to another is EBUSY, above `sriov_totalvfs` ERANGE.

use nix::errno::Errno;

use super::{Op, SimHost, SimVf};
use crate::model::file_errors::WriteFailed;
use crate::model::vf::VfConfig;
use crate::provision::ops::HostError;

impl SimHost {
    pub(super) fn sim_num_vfs(&mut self, pf: &str) -> Result<u32, HostError> {
        Ok(self.pf_mut(pf).map(|p| p.vfs.len() as u32).unwrap_or(0))
    }

    pub(super) fn sim_set_num_vfs(&mut self, pf: &str, n: u32) -> Result<u32, HostError> {
        let path = format!("/sys/bus/pci/devices/{pf}/sriov_numvfs");
        let refuse = |errno| {
            HostError::Write(WriteFailed {
                path: path.clone(),
                value: n.to_string(),
                errno,
                device: Default::default(),
            })
        };
        if let Err(HostError::Netlink { errno: Some(e), .. }) =
            self.fault(Op::SetNumVfs, "set_num_vfs")
        {
            return Err(refuse(e));
        }
        self.log.push(format!("numvfs {pf} {n}"));
        let p = self.pf_mut(pf).ok_or(refuse(Errno::ENOENT))?;
        let now = p.vfs.len() as u32;
        if n == now {
            return Ok(n);
        }
        if n > p.total_vfs {
            return Err(refuse(Errno::ERANGE));
        }
        if now != 0 && n != 0 {
            return Err(refuse(Errno::EBUSY));
        }
        let bus = u8::from_str_radix(&p.bdf[5..7], 16).unwrap_or(1);
        let vf_driver = p.vf_driver.clone();
        p.vfs = (0..n)
            .map(|i| SimVf {
                bdf: format!("0000:{bus:02x}:10.{i}"),
                driver: Some(vf_driver.clone()),
                config: VfConfig::clean(i),
            })
            .collect();
        Ok(n)
    }

    pub(super) fn sim_vf_bdf(&mut self, pf: &str, index: u32) -> Result<Option<String>, HostError> {
        Ok(self
            .pf_mut(pf)
            .and_then(|p| p.vfs.get(index as usize))
            .map(|v| v.bdf.clone()))
    }

    pub(super) fn sim_driver(&mut self, bdf: &str) -> Result<Option<String>, HostError> {
        if let Some(p) = self.pf_mut(bdf) {
            return Ok(Some(p.driver.clone()));
        }
        Ok(self.vf_mut(bdf).and_then(|v| v.driver.clone()))
    }

    pub(super) fn sim_bind(&mut self, bdf: &str, driver: Option<&str>) -> Result<(), HostError> {
        self.fault(Op::Bind, "bind")?;
        self.log
            .push(format!("bind {bdf} {}", driver.unwrap_or("none")));
        let v = self.vf_mut(bdf).ok_or(HostError::Netlink {
            what: format!("bind {bdf}"),
            errno: Some(Errno::ENODEV),
            message: "no such device".into(),
        })?;
        v.driver = driver.map(str::to_string);
        Ok(())
    }
}
