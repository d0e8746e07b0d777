//! A simulated SR-IOV host with the kernel's rules (drivers/pci/iov.c, rtnetlink),
//! for unit tests and demos. It is never the only test of code that touches a
//! kernel: the same paths run in the QEMU guest against the real igb driver.
//!
//! Faults can be injected at any operation, with the errnos the kernel really
//! returns, to prove that apply rolls back and converges.

use std::collections::BTreeMap;

use nix::errno::Errno;

use crate::facts::inventory::{Inventory, Netdev, PciFunction, Role, Sriov, VfEntry};
use crate::host::fs::WriteFailed;
use crate::host::netlink::VfConfig;
use crate::host::sriov::{HostError, SriovOps};
use crate::model::vf::VlanProto;

/// One simulated PF.
#[derive(Debug, Clone)]
pub struct SimPf {
    pub bdf: String,
    pub ifindex: u32,
    pub vendor: u16,
    pub device: u16,
    pub driver: String,
    pub vf_driver: String,
    pub total_vfs: u32,
    /// Attributes the driver refuses with EOPNOTSUPP ("link_state", "min_rate", "802.1ad").
    pub refuses: Vec<&'static str>,
    pub vfs: Vec<SimVf>,
    /// Queue facts the simulated driver reports (None: no channel or RSS control), and
    /// which queue controls it refuses ("channels", "rss").
    pub queue_facts: Option<crate::host::ethtool::QueueFacts>,
    pub queue_refuses: Vec<&'static str>,
    /// Per-vPort steering the simulated driver holds (RSS contexts, ntuple rules,
    /// macvlan stations); `queue_refuses` may name "rss-context", "ntuple", "macvlan"
    /// or "l2-fwd-offload" to refuse them.
    pub steer: SimSteering,
}

/// RSS contexts, ntuple rules and macvlans on a simulated PF, with the kernel's rules:
/// context ids from 1, a context's table only over existing channels, a rule into an
/// existing context or queue, one macvlan per MAC, l2-fwd-offload only when changeable.
#[derive(Debug, Clone, Default)]
pub struct SimSteering {
    pub contexts: BTreeMap<u32, Vec<u32>>,
    pub rules: BTreeMap<u32, crate::host::ethtool::FlowRule>,
    /// (ifindex, name, MAC, in a VMDq pool).
    pub macvlans: Vec<(u32, String, [u8; 6], bool)>,
    /// At most this many contexts (0: none at all).
    pub max_contexts: u32,
}

#[derive(Debug, Clone)]
pub struct SimVf {
    pub bdf: String,
    pub driver: Option<String>,
    pub config: VfConfig,
}

/// Which operation a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    SetNumVfs,
    Bind,
    SetVf,
    VfConfig,
}

/// A simulated host.
#[derive(Debug, Clone, Default)]
pub struct SimHost {
    pub pfs: Vec<SimPf>,
    /// Operations counted so far, per kind, to aim faults.
    pub calls: BTreeMap<&'static str, u32>,
    /// (operation, nth call of it from 1, errno, how many times in a row).
    pub faults: Vec<(Op, u32, Errno, u32)>,
    /// Every mutating operation, in order, for assertions.
    pub log: Vec<String>,
}

impl SimHost {
    /// An 82576-like host: PFs 0000:0N:00.0 with 7 VFs max, igb's refusals.
    pub fn igb(npfs: u32) -> Self {
        let pfs = (0..npfs)
            .map(|i| SimPf {
                bdf: format!("0000:{:02x}:00.0", i + 1),
                ifindex: 10 + i,
                vendor: 0x8086,
                device: 0x10c9,
                driver: "igb".into(),
                vf_driver: "igbvf".into(),
                total_vfs: 7,
                refuses: vec!["link_state", "min_rate", "802.1ad"],
                vfs: Vec::new(),
                // What the emulated 82576 reports without VFs (tests/vm/queues.rs): 4
                // combined channels of at most 8, a 128-entry table, ntuple and
                // l2-fwd-offload fixed off.
                queue_facts: Some(crate::host::ethtool::QueueFacts {
                    combined: Some(4),
                    combined_max: Some(8),
                    rss_table: Some(crate::host::ethtool::equal_table(128, 0, 4)),
                    features: crate::host::ethtool::QueueFeatures {
                        ntuple: Some(crate::host::ethtool::Feature {
                            active: false,
                            changeable: false,
                        }),
                        l2_fwd_offload: Some(crate::host::ethtool::Feature {
                            active: false,
                            changeable: false,
                        }),
                    },
                }),
                queue_refuses: Vec::new(),
                steer: SimSteering::default(),
            })
            .collect();
        SimHost {
            pfs,
            ..Default::default()
        }
    }

    /// A ConnectX-6 (mlx5) host: 8 combined channels, ntuple filters on, RSS contexts.
    pub fn mlx5(npfs: u32) -> Self {
        let mut h = Self::igb(npfs);
        for p in &mut h.pfs {
            p.vendor = 0x15b3;
            p.device = 0x101d;
            p.driver = "mlx5_core".into();
            p.vf_driver = "mlx5_core".into();
            p.refuses.clear();
            p.total_vfs = 8;
            p.steer.max_contexts = 32;
            if let Some(f) = p.queue_facts.as_mut() {
                f.combined = Some(8);
                f.combined_max = Some(8);
                f.rss_table = Some(crate::host::ethtool::equal_table(128, 0, 8));
                f.features.ntuple = Some(crate::host::ethtool::Feature {
                    active: true,
                    changeable: true,
                });
            }
        }
        h
    }

    /// An 82599 (ixgbe) host: l2-fwd-offload off but changeable, ntuple (Flow Director)
    /// changeable, no RSS contexts.
    pub fn ixgbe(npfs: u32) -> Self {
        let mut h = Self::igb(npfs);
        for p in &mut h.pfs {
            p.device = 0x10fb;
            p.driver = "ixgbe".into();
            p.vf_driver = "ixgbevf".into();
            p.refuses = vec!["link_state"];
            p.total_vfs = 63;
            if let Some(f) = p.queue_facts.as_mut() {
                f.combined = Some(8);
                f.combined_max = Some(63);
                f.rss_table = Some(crate::host::ethtool::equal_table(128, 0, 8));
                let changeable = Some(crate::host::ethtool::Feature {
                    active: false,
                    changeable: true,
                });
                f.features.ntuple = changeable;
                f.features.l2_fwd_offload = changeable;
            }
        }
        h
    }

    fn fault(&mut self, op: Op, name: &'static str) -> Result<(), HostError> {
        let n = {
            let c = self.calls.entry(name).or_insert(0);
            *c += 1;
            *c
        };
        for (fop, nth, errno, times) in &self.faults {
            if *fop == op && n >= *nth && n < nth + times {
                return Err(HostError::Netlink {
                    what: format!("{name} (injected fault)"),
                    errno: Some(*errno),
                    message: errno.desc().into(),
                });
            }
        }
        Ok(())
    }

    fn pf_mut(&mut self, bdf: &str) -> Option<&mut SimPf> {
        self.pfs.iter_mut().find(|p| p.bdf == bdf)
    }

    fn pf_by_ifindex(&mut self, ifindex: u32) -> Result<&mut SimPf, HostError> {
        self.pfs
            .iter_mut()
            .find(|p| p.ifindex == ifindex)
            .ok_or(HostError::Netlink {
                what: format!("link {ifindex}"),
                errno: Some(Errno::ENODEV),
                message: "no such device".into(),
            })
    }

    fn vf_mut(&mut self, bdf: &str) -> Option<&mut SimVf> {
        self.pfs
            .iter_mut()
            .flat_map(|p| p.vfs.iter_mut())
            .find(|v| v.bdf == bdf)
    }

    /// The inventory discovery would report for this host.
    pub fn inventory(&self) -> Inventory {
        let mut functions = Vec::new();
        for pf in &self.pfs {
            functions.push(PciFunction {
                bdf: pf.bdf.clone(),
                vendor_id: format!("0x{:04x}", pf.vendor),
                device_id: format!("0x{:04x}", pf.device),
                vendor_name: None,
                device_name: None,
                subsystem_vendor_id: None,
                subsystem_device_id: None,
                class: "0x020000".into(),
                driver: Some(pf.driver.clone()),
                role: Role::Pf,
                numa_node: Some(0),
                local_cpus: vec![0, 1],
                physfn: None,
                vf_index: None,
                virtio_device: None,
                netdevs: vec![Netdev {
                    ifindex: pf.ifindex,
                    name: format!("eth{}", pf.ifindex - 10),
                    mac: Some(format!("52:54:00:00:00:{:02x}", pf.ifindex)),
                    operstate: "up".into(),
                    mtu: Some(1500),
                    speed_mbps: Some(1000),
                    driver: Some(pf.driver.clone()),
                    kind: None,
                    rx_queues: 8,
                    tx_queues: 8,
                    channels: None,
                    queues: pf.queue_facts.clone(),
                }],
                sriov: Some(Sriov {
                    total_vfs: pf.total_vfs,
                    num_vfs: pf.vfs.len() as u32,
                    drivers_autoprobe: Some(true),
                    vfs: pf
                        .vfs
                        .iter()
                        .enumerate()
                        .map(|(i, v)| VfEntry {
                            index: i as u32,
                            bdf: v.bdf.clone(),
                            driver: v.driver.clone(),
                            netdevs: Vec::new(),
                            config: Some(v.config.clone()),
                        })
                        .collect(),
                }),
                irqs: Vec::new(),
                profile: None,
            });
        }
        Inventory {
            schema_version: crate::facts::inventory::SCHEMA_VERSION,
            pci_functions: functions,
            other_netdevs: Vec::new(),
            cpus: crate::facts::inventory::CpuTopology {
                online: vec![0, 1],
                nodes: Vec::new(),
                smt_siblings: Vec::new(),
            },
        }
    }
}

/// The simulated driver's queue controls: igb's rules (channels up to the maximum, RSS
/// table entries below the channel count, the table back to the default after a channel
/// change), with faults injected by name through `queue_refuses`.
impl crate::host::ethtool::QueueOps for SimHost {
    fn facts(
        &mut self,
        ifindex: u32,
    ) -> Result<crate::host::ethtool::QueueFacts, crate::host::ethtool::EthtoolError> {
        let p = self.pfs.iter().find(|p| p.ifindex == ifindex);
        Ok(p.and_then(|p| p.queue_facts.clone()).unwrap_or_default())
    }

    fn set_channels(
        &mut self,
        ifindex: u32,
        combined: u32,
    ) -> Result<(), crate::host::ethtool::EthtoolError> {
        use crate::host::ethtool::{EthtoolError, equal_table};
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

    fn set_rss_table(
        &mut self,
        ifindex: u32,
        indir: &[u32],
    ) -> Result<(), crate::host::ethtool::EthtoolError> {
        use crate::host::ethtool::{EthtoolError, equal_table};
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

    fn rss_context(
        &mut self,
        ifindex: u32,
        id: u32,
    ) -> Result<Option<Vec<u32>>, crate::host::ethtool::EthtoolError> {
        let p = self.steer_pf(ifindex, "report an RSS context", None)?;
        Ok(p.steer.contexts.get(&id).cloned())
    }

    fn create_rss_context(
        &mut self,
        ifindex: u32,
        indir: &[u32],
    ) -> Result<u32, crate::host::ethtool::EthtoolError> {
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

    fn delete_rss_context(
        &mut self,
        ifindex: u32,
        id: u32,
    ) -> Result<(), crate::host::ethtool::EthtoolError> {
        let what = "delete an RSS context";
        let p = self.steer_pf(ifindex, what, Some("rss-context"))?;
        // The kernel refuses to delete a context a rule still steers into (EBUSY).
        if p.steer.rules.values().any(
            |r| matches!(r.target, crate::host::ethtool::FlowTarget::Context { id: c } if c == id),
        ) {
            return Err(sim_refuse(ifindex, what, Errno::EBUSY));
        }
        p.steer
            .contexts
            .remove(&id)
            .ok_or_else(|| sim_refuse(ifindex, what, Errno::ENOENT))?;
        self.log.push(format!("context {ifindex} -{id}"));
        Ok(())
    }

    fn rule(
        &mut self,
        ifindex: u32,
        location: u32,
    ) -> Result<Option<crate::host::ethtool::FlowRule>, crate::host::ethtool::EthtoolError> {
        let p = self.steer_pf(ifindex, "report a flow rule", None)?;
        Ok(p.steer.rules.get(&location).copied())
    }

    fn insert_rule(
        &mut self,
        ifindex: u32,
        rule: &crate::host::ethtool::FlowRule,
    ) -> Result<(), crate::host::ethtool::EthtoolError> {
        use crate::host::ethtool::FlowTarget;
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

    fn delete_rule(
        &mut self,
        ifindex: u32,
        location: u32,
    ) -> Result<(), crate::host::ethtool::EthtoolError> {
        let what = "delete a flow rule";
        let p = self.steer_pf(ifindex, what, Some("ntuple"))?;
        p.steer
            .rules
            .remove(&location)
            .ok_or_else(|| sim_refuse(ifindex, what, Errno::ENOENT))?;
        self.log.push(format!("rule {ifindex} -{location}"));
        Ok(())
    }

    fn set_feature(
        &mut self,
        ifindex: u32,
        name: &str,
        on: bool,
    ) -> Result<(), crate::host::ethtool::EthtoolError> {
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

    fn create_macvlan(
        &mut self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<u32, crate::host::ethtool::EthtoolError> {
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

    fn find_macvlan(
        &mut self,
        parent: u32,
        mac: [u8; 6],
    ) -> Result<Option<u32>, crate::host::ethtool::EthtoolError> {
        let p = self.steer_pf(parent, "list devices", None)?;
        Ok(p.steer.macvlans.iter().find(|m| m.2 == mac).map(|m| m.0))
    }

    fn delete_link(&mut self, ifindex: u32) -> Result<(), crate::host::ethtool::EthtoolError> {
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

fn sim_refuse(ifindex: u32, what: &str, errno: Errno) -> crate::host::ethtool::EthtoolError {
    crate::host::ethtool::EthtoolError::Refused {
        dev: format!("ifindex {ifindex}"),
        what: what.into(),
        errno,
    }
}

impl SimHost {
    /// The PF with `ifindex`, refusing with EOPNOTSUPP when `control` is in its
    /// `queue_refuses`.
    fn steer_pf(
        &mut self,
        ifindex: u32,
        what: &str,
        control: Option<&str>,
    ) -> Result<&mut SimPf, crate::host::ethtool::EthtoolError> {
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

impl SriovOps for SimHost {
    fn queues(&mut self) -> Option<&mut dyn crate::host::ethtool::QueueOps> {
        Some(self)
    }

    fn num_vfs(&mut self, pf: &str) -> Result<u32, HostError> {
        Ok(self.pf_mut(pf).map(|p| p.vfs.len() as u32).unwrap_or(0))
    }

    fn set_num_vfs(&mut self, pf: &str, n: u32) -> Result<u32, HostError> {
        let path = format!("/sys/bus/pci/devices/{pf}/sriov_numvfs");
        let refuse = |errno| {
            HostError::Write(WriteFailed {
                path: path.clone(),
                value: n.to_string(),
                errno,
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

    fn vf_bdf(&mut self, pf: &str, index: u32) -> Result<Option<String>, HostError> {
        Ok(self
            .pf_mut(pf)
            .and_then(|p| p.vfs.get(index as usize))
            .map(|v| v.bdf.clone()))
    }

    fn driver(&mut self, bdf: &str) -> Result<Option<String>, HostError> {
        if let Some(p) = self.pf_mut(bdf) {
            return Ok(Some(p.driver.clone()));
        }
        Ok(self.vf_mut(bdf).and_then(|v| v.driver.clone()))
    }

    fn bind(&mut self, bdf: &str, driver: Option<&str>) -> Result<(), HostError> {
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

    fn vf_config(&mut self, pf_ifindex: u32, vf: u32) -> Result<Option<VfConfig>, HostError> {
        self.fault(Op::VfConfig, "vf_config")?;
        let p = self.pf_by_ifindex(pf_ifindex)?;
        Ok(p.vfs.get(vf as usize).map(|v| v.config.clone()))
    }

    fn pf_carrier(&mut self, _pf: &str) -> Result<bool, HostError> {
        Ok(true)
    }

    fn set_vf(&mut self, pf_ifindex: u32, cfg: &VfConfig) -> Result<(), HostError> {
        self.fault(Op::SetVf, "set_vf")?;
        self.log.push(format!("set_vf {pf_ifindex} {}", cfg.vf));
        let p = self.pf_by_ifindex(pf_ifindex)?;
        let refuses = p.refuses.clone();
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
