//! Writes that provision SR-IOV: the VF count, VF driver binding, and per-VF
//! settings over rtnetlink. Each operation is bounded in time, classifies the errno
//! the kernel returns, and leaves verification by read-back to its caller.

use std::time::{Duration, Instant};

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkFlags, LinkMessage, LinkVfInfo, VfInfo, VfInfoLinkState,
    VfInfoMac, VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan, VfLinkState, VfVlan,
    VfVlanInfo, VlanProtocol,
};
use nix::errno::Errno;

use super::fs::KernelFs;
use super::netlink;
use super::nlsock::{Failure, NlSocket};
use crate::model::vf::{LinkState, VfConfig, VlanProto};
use crate::provision::ops::QueueOps;
use crate::provision::ops::{HostError, SriovOps};

/// The real kernel.
pub struct LiveSriov {
    pub fs: KernelFs,
    /// How long VFs may take to appear after `sriov_numvfs` is written
    /// (~1.3 s for 7 igb VFs emulated; over a minute for 125 on ConnectX-6 Lx).
    pub vf_create_timeout: Duration,
    /// How long one rtnetlink request may take (a driver's VF handler runs under the
    /// RTNL lock, which anything else on the host may be holding).
    pub netlink_timeout: Duration,
    /// One blocking rtnetlink socket for the whole run ([`super::nlsock`]), opened at the
    /// first request: no async runtime to start and no connection task to drive, which was a
    /// good part of a short `vportd apply` on a slow host.
    sock: Option<NlSocket>,
    /// PF links as last dumped (with their VF info), until something is written: a
    /// plan reads each VF several times (undo record, convergence) between writes.
    links: std::collections::HashMap<u32, netlink::LinkSnapshot>,
    queue_ops: super::ethtool::LiveQueues,
}

impl LiveSriov {
    /// Must not be called from inside a tokio runtime (the daemon runs apply on a
    /// blocking thread).
    pub fn new(fs: KernelFs) -> Self {
        Self {
            fs,
            vf_create_timeout: Duration::from_secs(120),
            netlink_timeout: Duration::from_secs(30),
            sock: None,
            links: Default::default(),
            queue_ops: super::ethtool::LiveQueues,
        }
    }

    fn pci(bdf: &str) -> String {
        format!("/sys/bus/pci/devices/{bdf}")
    }

    fn virtfns(&self, pf: &str) -> Result<Vec<String>, HostError> {
        Ok(self
            .fs
            .list(&Self::pci(pf))?
            .into_iter()
            .filter(|e| e.starts_with("virtfn"))
            .collect())
    }

    /// Sends one rtnetlink request on the run's socket and returns the reply's messages. A
    /// kernel silent for `netlink_timeout` fails it with [`HostError::Timeout`] (the request
    /// may still be carried out later: callers read back); a socket whose exchange failed is
    /// dropped, so the next request starts on a fresh one.
    fn request(
        &mut self,
        what: impl Fn() -> String,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, HostError> {
        let sock = match &mut self.sock {
            Some(s) => s,
            None => {
                let s = NlSocket::open_within(
                    netlink_sys::constants::NETLINK_ROUTE,
                    self.netlink_timeout,
                )
                .map_err(|e| HostError::Netlink {
                    what: "opening an rtnetlink socket".into(),
                    errno: e.raw_os_error().map(Errno::from_raw),
                    message: e.to_string(),
                })?;
                self.sock.insert(s)
            }
        };
        sock.request(msg, flags).map_err(|failure| {
            if !matches!(failure, Failure::Refused(_)) {
                self.sock = None;
            }
            host_error(what(), failure)
        })
    }

    /// The PF's link with its VFs, as one RTM_GETLINK answers it.
    fn get_link(&mut self, ifindex: u32) -> Result<netlink::LinkSnapshot, HostError> {
        let what = || format!("reading link {ifindex} over rtnetlink");
        let mut get = LinkMessage::default();
        get.header.index = ifindex;
        get.attributes.push(LinkAttribute::ExtMask(vec![
            LinkExtentMask::Vf,
            LinkExtentMask::SkipStats,
        ]));
        let replies = self.request(what, RouteNetlinkMessage::GetLink(get), 0)?;
        replies
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) if l.header.index == ifindex => {
                    Some(netlink::link_from_message(l))
                }
                _ => None,
            })
            .ok_or_else(|| HostError::Netlink {
                what: what(),
                errno: Some(Errno::ENODEV),
                message: "no such link".into(),
            })
    }
}

/// A failed exchange as the provisioning error: the kernel's refusal with its errno, a
/// silent kernel as a timeout.
fn host_error(what: String, failure: Failure) -> HostError {
    match failure {
        Failure::NoReply(waited) => HostError::Timeout { what, waited },
        Failure::Refused(ref e) => {
            let errno = Errno::from_raw(-e.raw_code());
            HostError::Netlink {
                what,
                errno: Some(errno),
                message: format!("{} ({})", errno.desc(), errno),
            }
        }
        other => HostError::Netlink {
            what,
            errno: Some(other.errno()),
            message: other.into_io().to_string(),
        },
    }
}

impl SriovOps for LiveSriov {
    fn queues(&mut self) -> Option<&mut dyn QueueOps> {
        Some(&mut self.queue_ops)
    }

    fn num_vfs(&mut self, pf: &str) -> Result<u32, HostError> {
        // Absent (a PF without SR-IOV) is 0 VFs; a read the kernel refuses is an error,
        // never 0, or a rollback would take the PF's VFs for gone.
        let path = format!("{}/sriov_numvfs", Self::pci(pf));
        Ok(self
            .fs
            .read(&path)?
            .and_then(|t| t.parse().ok())
            .unwrap_or(0))
    }

    fn set_num_vfs(&mut self, pf: &str, n: u32) -> Result<u32, HostError> {
        self.links.clear();
        let path = format!("{}/sriov_numvfs", Self::pci(pf));
        self.fs.write(&path, &n.to_string())?;
        let start = Instant::now();
        let autoprobe = self
            .fs
            .read_parsed::<u8>(&format!("{}/sriov_drivers_autoprobe", Self::pci(pf)))
            .unwrap_or(1)
            != 0;
        loop {
            let now = self.num_vfs(pf)?;
            let links = self.virtfns(pf)?;
            let mut ready = links.len() as u32 == now;
            if ready && autoprobe && now > 0 {
                // With autoprobe on, VFs are usable once their driver has bound.
                for l in &links {
                    if self
                        .fs
                        .link_name(&format!("{}/{l}/driver", Self::pci(pf)))?
                        .is_none()
                    {
                        ready = false;
                    }
                }
            }
            if ready {
                return Ok(now);
            }
            if start.elapsed() > self.vf_create_timeout {
                return Err(HostError::Timeout {
                    what: format!("{n} VFs on {pf} becoming ready"),
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn vf_bdf(&mut self, pf: &str, index: u32) -> Result<Option<String>, HostError> {
        Ok(self
            .fs
            .link_name(&format!("{}/virtfn{index}", Self::pci(pf)))?)
    }

    fn driver(&mut self, bdf: &str) -> Result<Option<String>, HostError> {
        Ok(self.fs.link_name(&format!("{}/driver", Self::pci(bdf)))?)
    }

    fn bind(&mut self, bdf: &str, driver: Option<&str>) -> Result<(), HostError> {
        self.links.clear();
        let base = Self::pci(bdf);
        if let Some(current) = self.driver(bdf)? {
            if Some(current.as_str()) == driver {
                return Ok(());
            }
            self.fs.write(&format!("{base}/driver/unbind"), bdf)?;
        }
        // driver_override pins the choice so that no other driver grabs the function
        // first; an empty override (written as "\n") returns it to normal matching.
        self.fs
            .write(&format!("{base}/driver_override"), driver.unwrap_or("\n"))?;
        if driver.is_some() {
            self.fs.write("/sys/bus/pci/drivers_probe", bdf)?;
            let got = self.driver(bdf)?;
            if got.as_deref() != driver {
                return Err(HostError::Netlink {
                    what: format!("binding {bdf} to {}", driver.unwrap_or("")),
                    errno: None,
                    message: format!(
                        "the function is bound to {} afterwards (is the driver loaded?)",
                        got.as_deref().unwrap_or("no driver")
                    ),
                });
            }
        }
        Ok(())
    }

    fn vf_config(&mut self, pf_ifindex: u32, vf: u32) -> Result<Option<VfConfig>, HostError> {
        if !self.links.contains_key(&pf_ifindex) {
            let link = self.get_link(pf_ifindex)?;
            self.links.insert(pf_ifindex, link);
        }
        Ok(self.links[&pf_ifindex]
            .vfs
            .iter()
            .find(|c| c.vf == vf)
            .cloned())
    }

    fn set_vf(&mut self, pf_ifindex: u32, cfg: &VfConfig) -> Result<(), HostError> {
        self.links.remove(&pf_ifindex);
        let mut msg = LinkMessage::default();
        msg.header.index = pf_ifindex;
        msg.attributes
            .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(
                vf_info_attributes(cfg),
            )]));
        let what = || format!("setting VF {} on link {pf_ifindex}", cfg.vf);
        self.request(what, RouteNetlinkMessage::SetLink(msg), 0)
            .map(drop)
    }

    fn pf_admin_up(&mut self, pf_ifindex: u32) -> Result<bool, HostError> {
        let link = self.get_link(pf_ifindex)?;
        let up = link.admin_up == Some(true);
        self.links.insert(pf_ifindex, link);
        Ok(up)
    }

    fn set_pf_admin_up(&mut self, pf_ifindex: u32, up: bool) -> Result<(), HostError> {
        self.links.remove(&pf_ifindex);
        let mut msg = LinkMessage::default();
        msg.header.index = pf_ifindex;
        // IFF_UP on or off, the other flags left alone: the change mask names only IFF_UP.
        msg.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        msg.header.change_mask = LinkFlags::Up;
        let what = || {
            format!(
                "setting link {pf_ifindex} {}",
                if up { "up" } else { "down" }
            )
        };
        self.request(what, RouteNetlinkMessage::SetLink(msg), 0)
            .map(drop)
    }

    fn pf_carrier(&mut self, pf: &str) -> Result<bool, HostError> {
        let net = format!("{}/net", Self::pci(pf));
        for dev in self.fs.list(&net)? {
            if self
                .fs
                .read_lenient(&format!("{net}/{dev}/carrier"))
                .as_deref()
                == Some("1")
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Builds the IFLA_VF_INFO attributes for one VF, as `ip link set PF vf N ...`
/// would: MAC, VLAN (the list form only for 802.1ad, which the legacy attribute
/// cannot express), rate, spoofchk, trust, link state.
pub fn vf_info_attributes(cfg: &VfConfig) -> Vec<VfInfo> {
    let vf = cfg.vf;
    let mut infos = Vec::new();
    infos.push(VfInfo::Mac(VfInfoMac::new(vf, &cfg.mac.0)));
    match cfg.vlan_proto {
        Some(VlanProto::Dot1Ad) => infos.push(VfInfo::VlanList(vec![VfVlan::Info(
            VfVlanInfo::new(vf, cfg.vlan, cfg.qos, VlanProtocol::Ieee8021Ad),
        )])),
        _ => infos.push(VfInfo::Vlan(VfInfoVlan::new(vf, cfg.vlan, cfg.qos))),
    }
    if cfg.min_tx_rate.is_some() || cfg.max_tx_rate.is_some() {
        infos.push(VfInfo::Rate(VfInfoRate::new(
            vf,
            cfg.min_tx_rate.unwrap_or(0),
            cfg.max_tx_rate.unwrap_or(0),
        )));
    }
    if let Some(s) = cfg.spoofchk {
        infos.push(VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, s)));
    }
    if let Some(t) = cfg.trust {
        infos.push(VfInfo::Trust(VfInfoTrust::new(vf, t)));
    }
    if let Some(l) = cfg.link_state {
        let state = match l {
            LinkState::Enable => VfLinkState::Enable,
            LinkState::Disable => VfLinkState::Disable,
            LinkState::Auto | LinkState::Other(_) => VfLinkState::Auto,
        };
        infos.push(VfInfo::LinkState(VfInfoLinkState::new(vf, state)));
    }
    infos
}
