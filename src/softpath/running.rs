//! The daemon's software path: the vPorts `plan` put on the software switch (state.json says
//! `VportPath::Software`) get a switch port each, configured from their `[[vport]]`
//! ([`port_config`]), on a TAP device the daemon creates for the VM or host to use.
//!
//! The uplink of a software vPort is its own `uplink` PF, the one the config names for it and
//! the state records by PCI address: what the VF would have reached, the software port reaches
//! through the switch. There is one switch per uplink PF; its trunk port ("uplink") is an
//! AF_PACKET ring on the PF's netdev, found from the PCI address through sysfs and opened by
//! ifindex (names are shown, never trusted). The trunk carries the VLANs of that PF's software
//! vPorts tagged; untagged vPorts are on VLAN 1 (the Linux bridge's default PVID), which the
//! trunk carries untagged, as a VF without a port VLAN would.
//!
//! With `[[uplink]] switch_vf = N` the trunk is that VF's netdev instead (found through the
//! PF's `virtfnN` link, brought up). A VF is not let into unicast promiscuous mode (igb grants
//! its VFs multicast promiscuity at most), so the switch registers every vPort's MAC as a
//! unicast address of the VF ([`UnicastFilter`]); igbvf passes each to the PF as a MAC filter,
//! which igb accepts from a VF it trusts (apply trusts this one). igbvf holds 3 such filters,
//! and says so only in the kernel log when asked for more. The tagged VLANs the trunk carries
//! are joined on the VF too ([`crate::host::vlan`]): a VF hears no tagged frame otherwise.
//!
//! A vPort's TAP belongs to its VM (see [`super::taps`]): persistent, opened by the VM by
//! name, and served on its netdev side by an AF_PACKET edge; it outlives the daemon, and a
//! start adopts the TAPs it made before. A TAP deleted from outside is noticed by the switch
//! worker (its packet socket reports the device gone; the port goes link down, `nic_lost`),
//! and the next reconcile creates it again and connects it: the TAP is known by the record
//! of what vportd made and by ifindex, not by its name, so a device someone else made under
//! that name is refused, not taken over.
//!
//! The switches run the kernel flow cache (switch::flowcache, host::tcflow): a known unicast
//! flow between the trunk and a vPort, or between two vPorts, without per-frame policy is
//! repeated by a tc program on the source netdev, redirecting to the destination's egress
//! (into a TAP, that is the VM's queue).
//!
//! Counters are read through a [`View`] (cheap to clone, shared with the metrics endpoint)
//! and written every second to `switch.json` in the state directory, which `vportd status`
//! reads: status is a separate process, and a file keeps it working without a daemon
//! connection (it says how old the figures are).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::plan::{ExtraPort, PortPlan, SwitchPlan, TrunkAt, UPLINK_PORT, held_taps, plan_with};
use super::plan::{HOST_PORT, SwitchKind};
use super::taps::TapBook;

use crate::host::afpacket::{AfPacket, RingSize, UnicastFilter};
use crate::host::fs::KernelFs;
use crate::host::tap::TapError;
use crate::host::userfiles::{self, UserFiles};
use crate::model::edge::NetdevEdge;
use crate::provision::config::Config;
use crate::provision::state::State;
use crate::switch::vlan::VlanMode;
use crate::switch::{
    Counters, DropReason, Edge, PortConfig, PortId, Switch, SwitchConfig, SwitchError, SwitchHandle,
};

/// Where the daemon publishes the counters, inside the state directory.
pub const SNAPSHOT_FILE: &str = "switch.json";

/// Errors attaching software vPorts. Each names the vPort or uplink; the daemon logs them and
/// keeps the rest of the software path running.
#[derive(Debug, thiserror::Error)]
pub enum SoftpathError {
    /// The uplink PF has no netdev (no driver, or vfio-pci).
    #[error(
        "the software path of uplink {bdf} cannot start: that PCI function has no network interface (is its network driver bound?)"
    )]
    NoUplink { bdf: String },
    /// The uplink's `switch_vf` has no netdev (not created yet, or bound elsewhere).
    #[error(
        "the software path of uplink {bdf} cannot start: its VF {vf} (switch_vf) has no network interface (vportd apply creates it and binds it to the PF's VF driver)"
    )]
    NoSwitchVf { bdf: String, vf: u32 },
    /// The trunk VF could not be brought up, or refused a vPort's MAC as a unicast address.
    #[error("the software path of uplink {bdf} cannot {what} on its VF {vf} ({netdev}): {source}")]
    TrunkVf {
        bdf: String,
        vf: u32,
        netdev: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A vPort's TAP was deleted and its name now belongs to another device.
    #[error(
        "vPort {vport} stays link down: its TAP was deleted and {tap} is now another device (ifindex {ifindex}); remove or rename that device"
    )]
    TapTaken {
        vport: String,
        tap: String,
        ifindex: u32,
    },
    /// The uplink's packet socket could not be set up.
    #[error("the software path of uplink {bdf} cannot open its trunk: {source}")]
    Uplink {
        bdf: String,
        #[source]
        source: crate::host::afxdp::OpenEdgeError,
    },
    /// A device someone else made holds a vPort's TAP name.
    #[error(
        "vPort {vport} stays link down: {tap} (ifindex {ifindex}) exists and is not a TAP vportd made for it; remove or rename that device"
    )]
    TapForeign {
        vport: String,
        tap: String,
        ifindex: u32,
    },
    /// An adopted TAP's owner or group could not be changed to the configured ones.
    #[error(
        "vPort {vport}'s TAP keeps its old owner and group (a VM holding it blocks the change until it lets go): {source}"
    )]
    TapOwners {
        vport: String,
        #[source]
        source: TapError,
    },
    /// `tap_owner` or `tap_group` names no user or group of this host.
    #[error("vPort {vport} stays link down: {key} {name:?} is no user or group on this host")]
    TapUser {
        vport: String,
        key: &'static str,
        name: String,
    },
    /// The switch's packet socket on a vPort's TAP could not be opened.
    #[error("vPort {vport} stays link down: the switch cannot open {tap}: {source}")]
    TapEdge {
        vport: String,
        tap: String,
        #[source]
        source: crate::host::afpacket::AfPacketError,
    },
    /// A removed vPort's TAP could not be deleted.
    #[error("vPort {vport} is gone but its TAP {tap} stays: {why}")]
    TapDelete {
        vport: String,
        tap: String,
        why: String,
    },
    /// The record of the TAPs vportd made is not valid.
    #[error("{}: the record of vportd's TAPs is unreadable ({why}); existing TAPs are refused as strangers until it is fixed or removed", path.display())]
    TapsCorrupt { path: PathBuf, why: String },
    /// The kernel flow cache could not be loaded; the switch runs without it.
    #[error("software switch {switch} runs without the kernel flow cache: {source}")]
    FastPath {
        switch: String,
        #[source]
        source: crate::host::tcflow::TcFlowError,
    },
    /// A container's veth could not be made; the port exists, link down.
    #[error("vPort {vport} is on the software path with its link down: {source}")]
    Veth {
        vport: String,
        #[source]
        source: crate::host::netns::NetnsError,
    },
    /// An internal switch's host veth could not be made or brought up.
    #[error(
        "internal switch {switch} has no host member: its veth {host_netdev} cannot be set up: {why}"
    )]
    HostVeth {
        switch: String,
        host_netdev: String,
        why: String,
    },
    /// A vPort's TAP could not be created; the port exists, link down.
    #[error("vPort {vport} is on the software path with its link down: {source}")]
    Tap {
        vport: String,
        #[source]
        source: TapError,
    },
    /// Two long vPort names shortened to one TAP name.
    #[error(
        "vPort {vport} would get TAP {tap}, already given to vPort {other}; rename one of them"
    )]
    TapClash {
        vport: String,
        tap: String,
        other: String,
    },
    /// A port asked for on a switch the host config has no `[[switch]]` of.
    #[error(
        "{vport} asks for a port on switch {switch}, which is not a [[switch]] of the host config"
    )]
    NoSuchSwitch { vport: String, switch: String },
    /// The switch refused a port or its worker did not start.
    #[error(transparent)]
    Switch(#[from] SwitchError),
    /// The counters could not be written or read.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The state file could not be read to re-plan the software path.
    #[error("the software path keeps its ports as they are: {0}")]
    State(String),
    /// The counters file is not valid.
    #[error("{}: the software switch counters are unreadable ({why}); the daemon rewrites the file every second", path.display())]
    Corrupt { path: PathBuf, why: String },
}

/// The ifindex of the trunk's netdev, from sysfs under `fs`'s root: the PF's, or its VF's
/// found through the PF's `virtfnN` link.
pub fn resolve_live(fs: &KernelFs, at: &TrunkAt) -> Option<u32> {
    let bdf = match at.vf {
        None => at.pf.clone(),
        Some(n) => fs
            .link_name(&format!("/sys/bus/pci/devices/{}/virtfn{n}", at.pf))
            .ok()??,
    };
    let names = fs.list(&format!("/sys/bus/pci/devices/{bdf}/net")).ok()?;
    let name = names.first()?;
    fs.read_lenient(&format!("/sys/class/net/{name}/ifindex"))?
        .trim()
        .parse()
        .ok()
}

/// A port's identity for counters.
#[derive(Debug, Clone)]
struct PortMeta {
    index: usize,
    /// None for the trunk.
    vport: Option<String>,
    netdev: String,
    edge: &'static str,
}

#[derive(Clone)]
struct SwitchView {
    name: String,
    uplink: String,
    kind: &'static str,
    /// The host's netdev on an internal switch.
    host_netdev: Option<String>,
    /// The trunk's port name: `uplink`, or `host` on an internal switch.
    trunk_port: &'static str,
    counters: Arc<Counters>,
    ports: Vec<PortMeta>,
}

/// Read access to the running switches' counters; cheap to clone, safe to share. It follows
/// the software path as [`SoftPath::reconcile`] adds and removes switches and ports.
#[derive(Clone, Default)]
pub struct View {
    switches: Arc<RwLock<Vec<SwitchView>>>,
}

use crate::model::file_errors::FilesError;
use crate::model::port_counters::PortSnapshot;

/// Every port's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the Unix epoch when the daemon took it.
    pub taken_unix_s: u64,
    pub ports: Vec<PortSnapshot>,
    /// Each running switch, its kind and members (absent in files of older daemons).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub switches: Vec<SwitchSnapshot>,
}

/// A running switch as `status` and the metrics show it: a switch is known by what connects
/// to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchSnapshot {
    pub name: String,
    /// `external` (an uplink's), `internal` (the host is a member) or `private`.
    pub kind: String,
    /// The uplink PF's PCI address, on an external switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<String>,
    /// The host's netdev, on an internal switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_netdev: Option<String>,
    /// Its ports by name: `uplink` or `host` for the trunk, then the vPorts.
    pub members: Vec<String>,
}

impl Snapshot {
    /// The snapshot the daemon last wrote, None when there is none (no daemon, no software
    /// vPorts).
    pub fn load(state_dir: &Path) -> Result<Option<Snapshot>, SoftpathError> {
        let path = state_dir.join(SNAPSHOT_FILE);
        let text = match userfiles::read_text(&path) {
            Ok(t) => t,
            Err(FilesError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| SoftpathError::Corrupt {
                path,
                why: e.to_string(),
            })
    }

    /// A switch by name.
    pub fn switch(&self, name: &str) -> Option<&SwitchSnapshot> {
        self.switches.iter().find(|s| s.name == name)
    }

    /// A vPort's port.
    pub fn vport(&self, name: &str) -> Option<&PortSnapshot> {
        self.ports.iter().find(|p| p.vport.as_deref() == Some(name))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl View {
    /// Sums every port's per-worker counters now.
    pub fn snapshot(&self) -> Snapshot {
        let mut ports = Vec::new();
        let mut members = Vec::new();
        let switches = self.switches.read().unwrap_or_else(|p| p.into_inner());
        for sw in switches.iter() {
            members.push(SwitchSnapshot {
                name: sw.name.clone(),
                kind: sw.kind.to_string(),
                uplink: (!sw.uplink.is_empty()).then(|| sw.uplink.clone()),
                host_netdev: sw.host_netdev.clone(),
                members: sw
                    .ports
                    .iter()
                    .map(|p| p.vport.clone().unwrap_or_else(|| sw.trunk_port.to_string()))
                    .collect(),
            });
            for p in &sw.ports {
                let s = sw.counters.port(p.index);
                ports.push(PortSnapshot {
                    switch: sw.name.clone(),
                    uplink: sw.uplink.clone(),
                    port: p.vport.clone().unwrap_or_else(|| sw.trunk_port.to_string()),
                    vport: p.vport.clone(),
                    netdev: p.netdev.clone(),
                    edge: p.edge.to_string(),
                    rx_packets: s.rx_packets,
                    rx_bytes: s.rx_bytes,
                    tx_packets: s.tx_packets,
                    tx_bytes: s.tx_bytes,
                    tx_flooded: s.tx_flooded,
                    learn_limited: s.learn_limited,
                    nic_lost: s.nic_lost,
                    drops: DropReason::ALL
                        .iter()
                        .map(|r| (r.as_str().to_string(), s.drops_for(*r)))
                        .collect(),
                });
            }
        }
        Snapshot {
            taken_unix_s: unix_now(),
            ports,
            switches: members,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.switches
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    fn set(&self, switches: Vec<SwitchView>) {
        *self.switches.write().unwrap_or_else(|p| p.into_inner()) = switches;
    }
}

/// The running software path: its switches (each a worker thread owning its trunk and the
/// packet sockets on its vPorts' TAPs) and the thread publishing their counters. Dropping it
/// stops them and removes the counters file; the TAPs stay, with their VMs (a vPort that
/// leaves the plan loses its TAP in [`SoftPath::reconcile`]).
pub struct SoftPath {
    running: Vec<Running>,
    taps: TapBook,
    /// vPorts whose TAPs stay though no plan has them ([`held_taps`]).
    held: BTreeSet<String>,
    /// Ports on `[[switch]]`es the config does not name (CNI attachments), set by the daemon.
    extra: Vec<ExtraPort>,
    view: View,
    stop: Arc<AtomicBool>,
    publisher: Option<JoinHandle<()>>,
    snapshot_path: Option<PathBuf>,
}

impl SoftPath {
    /// Builds and starts the switches of `plans`. `resolve` maps a trunk's place (the uplink
    /// PF, or its `switch_vf`) to its netdev's ifindex ([`resolve_live`] on a host). Problems are returned beside what
    /// did start: an uplink that cannot open leaves its switch out; a TAP that cannot be
    /// created leaves its port link down.
    pub fn start(
        plans: &[SwitchPlan],
        resolve: &dyn Fn(&TrunkAt) -> Option<u32>,
        state_dir: Option<&Path>,
    ) -> (SoftPath, Vec<SoftpathError>) {
        Self::start_holding(plans, BTreeSet::new(), resolve, state_dir)
    }

    /// [`SoftPath::start`], keeping the TAPs of the vPorts in `held` too ([`held_taps`]).
    pub fn start_holding(
        plans: &[SwitchPlan],
        held: BTreeSet<String>,
        resolve: &dyn Fn(&TrunkAt) -> Option<u32>,
        state_dir: Option<&Path>,
    ) -> (SoftPath, Vec<SoftpathError>) {
        let mut errors = Vec::new();
        let mut sp = SoftPath {
            running: Vec::new(),
            taps: TapBook::load(state_dir, &mut errors),
            held,
            extra: Vec::new(),
            view: View::default(),
            stop: Arc::new(AtomicBool::new(false)),
            publisher: None,
            snapshot_path: state_dir.map(|d| d.join(SNAPSHOT_FILE)),
        };
        errors.extend(sp.reconcile(plans, resolve));
        (sp, errors)
    }

    /// Brings the running switches to `plans`, changing only what differs: a new uplink gets
    /// its switch, a vanished one loses it; within a switch, added vPorts get a port and
    /// TAP, removed ones lose them, and a port whose configuration changed is replaced
    /// (its TAP kept: a VM attached to it stays attached). A trunk whose netdev vanished is
    /// reopened once `resolve` finds the uplink again; a vPort whose TAP was deleted gets a
    /// new one, connected (link up again). The daemon calls this when the state
    /// file changes (an apply or a hotplug reconcile moved vPorts) and every period.
    pub fn reconcile(
        &mut self,
        plans: &[SwitchPlan],
        resolve: &dyn Fn(&TrunkAt) -> Option<u32>,
    ) -> Vec<SoftpathError> {
        let mut errors = Vec::new();
        let mut running = std::mem::take(&mut self.running);
        // Switches whose uplink no plan names any more.
        running.retain_mut(|r| {
            let keep = plans
                .iter()
                .any(|p| p.name == r.plan.name && p.kind == r.plan.kind);
            if !keep {
                if let Some(h) = r.handle.take() {
                    h.stop();
                }
                r.leave_vlans();
                // An internal switch that no plan has (its last vPort went, or the
                // `[[switch]]` did) takes the host's veth along.
                if let SwitchKind::Internal { port, host_netdev } = &r.plan.kind
                    && let Err(e) = crate::host::netns::delete_veth(port, None)
                {
                    errors.push(SoftpathError::HostVeth {
                        switch: r.plan.name.clone(),
                        host_netdev: host_netdev.clone(),
                        why: e.to_string(),
                    });
                }
            }
            keep
        });
        for plan in plans {
            match running.iter_mut().find(|r| r.plan.name == plan.name) {
                Some(r) => r.update(plan, resolve, &mut self.taps, &mut errors),
                None => match start_switch(plan, resolve, &mut self.taps, &mut errors) {
                    Ok(r) => running.push(r),
                    Err(e) => errors.push(e),
                },
            }
        }
        self.running = running;
        // The TAPs of vPorts no plan has any more (their ports are gone by now).
        let keep: BTreeSet<&str> = plans
            .iter()
            .flat_map(|p| p.ports.iter().map(|x| x.vport.as_str()))
            .chain(self.held.iter().map(String::as_str))
            .collect();
        self.taps.retire_except(&keep, &mut errors);
        self.view
            .set(self.running.iter().map(|r| r.view.clone()).collect());
        if self.publisher.is_none()
            && !self.view.is_empty()
            && let Some(path) = &self.snapshot_path
        {
            let (path, view, stop) = (path.clone(), self.view.clone(), self.stop.clone());
            self.publisher = std::thread::Builder::new()
                .name("switch-stats".into())
                .spawn(move || publish_loop(&path, &view, &stop))
                .ok();
        }
        errors
    }

    /// Reads the state and config the daemon was given and starts the software path on the
    /// live host (uplinks resolved through sysfs under `fs`).
    /// `extra` are the ports served beside the config's vPorts from the start (a restart
    /// adopts their veths instead of retiring them).
    pub fn start_live(
        cfg: &Config,
        fs: &KernelFs,
        extra: Vec<ExtraPort>,
    ) -> Result<(SoftPath, Vec<SoftpathError>), crate::provision::state::StateError> {
        let state = State::load(&UserFiles, &cfg.state_dir)?;
        let (plans, mut errors) = plan_with(cfg, &state, &extra);
        let (mut sp, more) = SoftPath::start_holding(
            &plans,
            held_taps(cfg, &state),
            &|at: &TrunkAt| resolve_live(fs, at),
            Some(&cfg.state_dir),
        );
        sp.extra = extra;
        errors.extend(more);
        Ok((sp, errors))
    }

    pub fn view(&self) -> View {
        self.view.clone()
    }

    /// How many switches run.
    pub fn switches(&self) -> usize {
        self.running.len()
    }

    /// Each running switch's kernel flow cache counts, by switch name (None: the cache is
    /// off on it, or its worker did not answer).
    pub fn fastpath_stats(&self) -> Vec<(String, Option<crate::switch::flowcache::FastStats>)> {
        self.running
            .iter()
            .map(|r| {
                let stats = r
                    .handle
                    .as_ref()
                    .and_then(|h| h.fastpath_stats().ok().flatten());
                (r.plan.name.clone(), stats)
            })
            .collect()
    }

    /// The ports the next [`Self::refresh_live`] serves beside the config's vPorts.
    pub fn set_extra_ports(&mut self, extra: Vec<ExtraPort>) {
        self.extra = extra;
    }

    /// Re-plans from the config and the state file and reconciles (see [`Self::reconcile`]).
    pub fn refresh_live(&mut self, cfg: &Config, fs: &KernelFs) -> Vec<SoftpathError> {
        let state = match State::load(&UserFiles, &cfg.state_dir) {
            Ok(s) => s,
            Err(e) => return vec![SoftpathError::State(e.to_string())],
        };
        let (plans, mut errors) = plan_with(cfg, &state, &self.extra);
        if !self.taps.is_stored() {
            // Started without a readable state: the record of our TAPs is read now, before
            // a TAP of ours is taken for a stranger's.
            self.taps = TapBook::load(Some(&cfg.state_dir), &mut errors);
        }
        self.held = held_taps(cfg, &state);
        errors.extend(self.reconcile(&plans, &|at: &TrunkAt| resolve_live(fs, at)));
        errors
    }
}

/// A started switch, the plan it runs, and where each of its ports is.
struct Running {
    plan: SwitchPlan,
    handle: Option<SwitchHandle>,
    view: SwitchView,
    /// The trunk's port and the NIC losses already seen on it.
    /// None on a private switch, which has no trunk.
    trunk: Option<PortId>,
    trunk_lost_seen: u64,
    /// Whether the trunk has its NIC (false once the worker reported it lost, until
    /// reopened).
    trunk_connected: bool,
    /// On a VF trunk, the vPorts' MACs held as the VF's unicast addresses (renewed with
    /// the trunk: the kernel drops them when the netdev goes).
    filter: Option<UnicastFilter>,
    /// On a VF trunk, the tagged VLANs it carries, joined on the VF (VLAN id -> the VLAN
    /// device's ifindex; see [`crate::host::vlan`]).
    vlans: BTreeMap<u16, u32>,
    /// Each vPort's port.
    ports: BTreeMap<String, VportPort>,
}

/// A vPort's port and its TAP.
struct VportPort {
    id: PortId,
    /// The TAP connected to the port, by ifindex; None while the port has no TAP.
    tap: Option<u32>,
    /// NIC losses of this port already seen.
    lost_seen: u64,
}

/// Whether two port configurations are the same setting (a rate limit's bucket level is
/// state, not setting).
fn same_config(a: &PortConfig, b: &PortConfig) -> bool {
    let rate = |c: &PortConfig| c.rate.as_ref().map(|r| (r.rate_bytes_per_s(), r.burst()));
    a.name == b.name
        && a.mac == b.mac
        && a.vlan == b.vlan
        && a.default_pcp == b.default_pcp
        && a.ingress_acl == b.ingress_acl
        && a.egress_acl == b.egress_acl
        && rate(a) == rate(b)
        && a.learning == b.learning
        && a.learn_limit == b.learn_limit
        && a.hairpin == b.hairpin
        && a.admin_down == b.admin_down
}

impl Running {
    fn update(
        &mut self,
        plan: &SwitchPlan,
        resolve: &dyn Fn(&TrunkAt) -> Option<u32>,
        book: &mut TapBook,
        errors: &mut Vec<SoftpathError>,
    ) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let counters = handle.counters();
        if let Some(trunk) = self.trunk {
            self.update_trunk(trunk, plan, &handle, resolve, errors);
        }
        // vPorts gone from the plan, or whose configuration changed.
        let mut taps: BTreeMap<String, (Box<dyn Edge>, Option<u32>)> = BTreeMap::new();
        for old in &self.plan.ports {
            let new = plan.ports.iter().find(|p| p.vport == old.vport);
            if new.is_some_and(|n| n.tap == old.tap && same_config(&n.cfg, &old.cfg)) {
                continue;
            }
            if let Some(port) = self.ports.remove(&old.vport) {
                match handle.remove_port(port.id) {
                    // A changed port keeps its TAP; a removed one closes it.
                    Ok(Some(edge)) if new.is_some_and(|n| n.tap == old.tap) => {
                        taps.insert(old.vport.clone(), (edge, port.tap));
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(e.into()),
                }
            }
            self.view
                .ports
                .retain(|m| m.vport.as_deref() != Some(old.vport.as_str()));
        }
        // Kept vPorts whose TAP the worker lost (deleted from outside), or never had one:
        // a new TAP, connected.
        for p in &plan.ports {
            let Some(port) = self.ports.get_mut(&p.vport) else {
                continue;
            };
            let lost = counters.port(port.id.0).nic_lost;
            if lost != port.lost_seen {
                port.lost_seen = lost;
                port.tap = None;
            }
            if port.tap.is_some() {
                continue;
            }
            if let Some((edge, ifindex)) = book.connect(p, errors) {
                match handle.connect(port.id, edge) {
                    Ok(()) => port.tap = Some(ifindex),
                    Err(e) => errors.push(e.into()),
                }
            }
            let kind = if port.tap.is_some() {
                attach_kind(p)
            } else {
                "none"
            };
            if let Some(m) = self
                .view
                .ports
                .iter_mut()
                .find(|m| m.vport.as_deref() == Some(p.vport.as_str()))
            {
                m.edge = kind;
            }
        }
        // vPorts new to the plan, or replaced above.
        for p in &plan.ports {
            if self.ports.contains_key(&p.vport) {
                continue;
            }
            let (edge, tap, kind) = match taps.remove(&p.vport) {
                Some((edge, tap)) => (Some(edge), tap, attach_kind(p)),
                None => open_tap(p, book, errors),
            };
            match handle.add_port(p.cfg.clone(), edge) {
                Ok(id) => {
                    self.ports.insert(
                        p.vport.clone(),
                        VportPort {
                            id,
                            tap,
                            lost_seen: 0,
                        },
                    );
                    self.view.ports.push(PortMeta {
                        index: id.0,
                        vport: Some(p.vport.clone()),
                        netdev: p.tap.clone(),
                        edge: kind,
                    });
                }
                Err(e) => errors.push(e.into()),
            }
        }
        self.plan = plan.clone();
        self.sync_filter(errors);
        self.sync_vlans(errors);
        self.handle = Some(handle);
    }

    /// The trunk: a new VLAN set replaces the port (same NIC); a lost NIC is reopened.
    /// The loss count is compared for change, not growth: a replaced port starts again
    /// from zero, and at worst that reopens a NIC that was fine, once.
    fn update_trunk(
        &mut self,
        mut trunk: PortId,
        plan: &SwitchPlan,
        handle: &SwitchHandle,
        resolve: &dyn Fn(&TrunkAt) -> Option<u32>,
        errors: &mut Vec<SoftpathError>,
    ) {
        let counters = handle.counters();
        if counters.port(trunk.0).nic_lost != self.trunk_lost_seen
            || plan.trunk_vf != self.plan.trunk_vf
        {
            self.trunk_connected = false;
        }
        if !same_config(&self.plan.trunk, &plan.trunk) {
            let edge = match handle.remove_port(trunk) {
                Ok(edge) => edge,
                Err(e) => {
                    errors.push(e.into());
                    None
                }
            };
            let edge = if self.trunk_connected { edge } else { None };
            self.trunk_connected = edge.is_some();
            match handle.add_port(plan.trunk.clone(), edge) {
                Ok(id) => {
                    trunk = id;
                    self.retarget(None, id);
                }
                Err(e) => errors.push(e.into()),
            }
        }
        if !self.trunk_connected {
            if let Err(e) = handle.disconnect(trunk) {
                errors.push(e.into());
            }
            self.filter = None;
            // Gone with a vanished VF; left when the trunk moves elsewhere.
            self.leave_vlans();
            match open_trunk(plan, resolve) {
                Ok(None) => self.trunk_connected = true,
                Ok(Some(t)) => match handle.connect(trunk, t.edge) {
                    Ok(()) => {
                        self.trunk_connected = true;
                        self.filter = t.filter;
                        if let Some(m) = self.view.ports.iter_mut().find(|m| m.vport.is_none()) {
                            m.netdev = t.netdev;
                            m.edge = t.kind;
                        }
                    }
                    Err(e) => errors.push(e.into()),
                },
                Err(e) => errors.push(e),
            }
        }
        self.trunk_lost_seen = counters.port(trunk.0).nic_lost;
    }

    /// Points the trunk's (None) or a vPort's counters at its new port.
    fn retarget(&mut self, vport: Option<&str>, id: PortId) {
        if vport.is_none() {
            self.trunk = Some(id);
        }
        if let Some(m) = self
            .view
            .ports
            .iter_mut()
            .find(|m| m.vport.as_deref() == vport)
        {
            m.index = id.0;
        }
    }

    /// Makes the VLANs joined on the trunk VF the tagged VLANs the trunk carries.
    fn sync_vlans(&mut self, errors: &mut Vec<SoftpathError>) {
        let (Some(filter), Some(vf)) = (self.filter.as_ref(), self.plan.trunk_vf) else {
            return;
        };
        let parent = filter.ifindex();
        let want: BTreeSet<u16> = match &self.plan.trunk.vlan {
            VlanMode::Trunk { allowed, native } => (1..=4094u16)
                .filter(|v| allowed.contains(*v) && Some(*v) != *native)
                .collect(),
            VlanMode::Access { .. } => BTreeSet::new(),
        };
        let fail = |what: String, source: crate::host::vlan::VlanError| SoftpathError::TrunkVf {
            bdf: self.plan.uplink.clone(),
            vf,
            netdev: netdev_name(parent),
            what,
            source: std::io::Error::other(source),
        };
        let extra: Vec<(u16, u32)> = self
            .vlans
            .iter()
            .filter(|(v, _)| !want.contains(v))
            .map(|(v, i)| (*v, *i))
            .collect();
        for (vid, ifindex) in extra {
            match crate::host::vlan::leave(ifindex) {
                Ok(()) => {
                    self.vlans.remove(&vid);
                }
                Err(e) => errors.push(fail(format!("leave VLAN {vid}"), e)),
            }
        }
        for vid in want {
            if self.vlans.contains_key(&vid) {
                continue;
            }
            match crate::host::vlan::join(parent, vid) {
                Ok(ifindex) => {
                    self.vlans.insert(vid, ifindex);
                }
                Err(e) => errors.push(fail(format!("join VLAN {vid}"), e)),
            }
        }
    }

    /// Deletes the VLAN devices this trunk made (best effort: a vanished VF took them along).
    fn leave_vlans(&mut self) {
        for (_, ifindex) in std::mem::take(&mut self.vlans) {
            let _ = crate::host::vlan::leave(ifindex);
        }
    }

    /// Makes the trunk VF's unicast addresses the plan's vPorts' MACs.
    fn sync_filter(&mut self, errors: &mut Vec<SoftpathError>) {
        let (Some(filter), Some(vf)) = (self.filter.as_mut(), self.plan.trunk_vf) else {
            return;
        };
        let want: BTreeSet<[u8; 6]> = self
            .plan
            .ports
            .iter()
            .filter_map(|p| p.cfg.mac.map(|m| m.0))
            .collect();
        let have: Vec<[u8; 6]> = filter.macs().copied().collect();
        let netdev = netdev_name(filter.ifindex());
        let fail = |what: String, source| SoftpathError::TrunkVf {
            bdf: self.plan.uplink.clone(),
            vf,
            netdev: netdev.clone(),
            what,
            source,
        };
        for mac in have.iter().filter(|m| !want.contains(*m)) {
            if let Err(e) = filter.remove(*mac) {
                errors.push(fail(
                    format!("drop the unicast address {}", crate::model::mac::Mac(*mac)),
                    e,
                ));
            }
        }
        for mac in &want {
            if let Err(e) = filter.add(*mac) {
                errors.push(fail(
                    format!("add the unicast address {}", crate::model::mac::Mac(*mac)),
                    e,
                ));
            }
        }
    }
}

fn netdev_name(ifindex: u32) -> String {
    nix::net::if_::if_indextoname(ifindex)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("ifindex {ifindex}"))
}

/// An opened trunk: its edge, netdev name, edge kind, and on a VF the (empty) filter set.
struct OpenTrunk {
    edge: Box<dyn Edge>,
    netdev: String,
    kind: &'static str,
    filter: Option<UnicastFilter>,
}

/// The trunk of `plan`'s switch by its kind: the uplink's netdev (external), the switch's
/// end of the host veth (internal), none (private).
fn open_trunk(
    plan: &SwitchPlan,
    resolve: &dyn Fn(&TrunkAt) -> Option<u32>,
) -> Result<Option<OpenTrunk>, SoftpathError> {
    match &plan.kind {
        SwitchKind::External => open_uplink(plan, resolve).map(Some),
        SwitchKind::Private => Ok(None),
        SwitchKind::Internal { host_netdev, port } => {
            let ifindex = super::veths::host_port(&plan.name, port, host_netdev)?;
            let edge = AfPacket::open_index_counted(ifindex, true, RingSize::GSO).map_err(|e| {
                SoftpathError::HostVeth {
                    switch: plan.name.clone(),
                    host_netdev: host_netdev.clone(),
                    why: e.to_string(),
                }
            })?;
            Ok(Some(OpenTrunk {
                kind: edge.kind(),
                edge: Box::new(edge),
                netdev: port.clone(),
                filter: None,
            }))
        }
    }
}

fn open_uplink(
    plan: &SwitchPlan,
    resolve: &dyn Fn(&TrunkAt) -> Option<u32>,
) -> Result<OpenTrunk, SoftpathError> {
    let at = TrunkAt {
        pf: plan.uplink.clone(),
        vf: plan.trunk_vf,
    };
    let ifindex = resolve(&at).ok_or_else(|| match plan.trunk_vf {
        None => SoftpathError::NoUplink {
            bdf: plan.uplink.clone(),
        },
        Some(vf) => SoftpathError::NoSwitchVf {
            bdf: plan.uplink.clone(),
            vf,
        },
    })?;
    let netdev = netdev_name(ifindex);
    // A VF's netdev starts down, and nothing else of vportd's brings it up.
    let filter = match plan.trunk_vf {
        None => None,
        Some(vf) => {
            let fail = |what: &str, source| SoftpathError::TrunkVf {
                bdf: plan.uplink.clone(),
                vf,
                netdev: netdev.clone(),
                what: what.to_string(),
                source,
            };
            crate::host::tap::set_link_up(ifindex).map_err(|e| fail("bring the link up", e))?;
            Some(UnicastFilter::open(ifindex).map_err(|e| {
                fail(
                    "open a packet socket for its unicast addresses",
                    std::io::Error::other(e),
                )
            })?)
        }
    };
    let bdf = plan.uplink.clone();
    let uplink_err = |source| SoftpathError::Uplink {
        bdf: plan.uplink.clone(),
        source,
    };
    // AF_PACKET counted: a kernel port the flow cache can serve.
    let edge: Box<dyn Edge> = match plan.edge {
        NetdevEdge::AfPacket => Box::new(
            AfPacket::open_index_counted(ifindex, true, RingSize::GSO)
                .map_err(|e| uplink_err(e.into()))?,
        ),
        other => crate::host::afxdp::open_netdev_edge(ifindex, other, true, &mut |why| {
            log::warn!("the software path of uplink {bdf}: {why}");
        })
        .map_err(uplink_err)?,
    };
    let kind = edge.kind();
    Ok(OpenTrunk {
        edge,
        netdev,
        kind,
        filter,
    })
}

/// What a connected vPort port's NIC is, as status and the metrics name it.
fn attach_kind(p: &PortPlan) -> &'static str {
    match p.attach {
        crate::provision::config::Attach::Tap => "tap",
        crate::provision::config::Attach::Veth { .. } => "veth",
    }
}

/// The vPort's TAP (adopted or made, see [`TapBook::connect`]) with the switch's edge on
/// it and its ifindex; None (and the error) when it cannot be had.
fn open_tap(
    p: &PortPlan,
    book: &mut TapBook,
    errors: &mut Vec<SoftpathError>,
) -> (Option<Box<dyn Edge>>, Option<u32>, &'static str) {
    match book.connect(p, errors) {
        Some((edge, ifindex)) => (Some(edge), Some(ifindex), attach_kind(p)),
        None => (None, None, "none"),
    }
}

fn start_switch(
    plan: &SwitchPlan,
    resolve: &dyn Fn(&TrunkAt) -> Option<u32>,
    book: &mut TapBook,
    errors: &mut Vec<SoftpathError>,
) -> Result<Running, SoftpathError> {
    let trunk = open_trunk(plan, resolve)?;
    let mut sw = Switch::new(SwitchConfig::new(&plan.name));
    match crate::host::tcflow::KernelFlows::new() {
        Ok(kernel) => sw.enable_fastpath(Box::new(kernel)),
        Err(source) => errors.push(SoftpathError::FastPath {
            switch: plan.name.clone(),
            source,
        }),
    }
    let mut metas = Vec::new();
    let trunk_id = match trunk {
        Some(t) => {
            let id = sw.add_port(plan.trunk.clone(), Some(t.edge))?;
            metas.push(PortMeta {
                index: id.0,
                vport: None,
                netdev: t.netdev,
                edge: t.kind,
            });
            Some((id, t.filter))
        }
        None => None,
    };
    let (trunk_id, filter) = match trunk_id {
        Some((id, f)) => (Some(id), f),
        None => (None, None),
    };
    let mut ports = BTreeMap::new();
    for p in &plan.ports {
        let (edge, tap, kind) = open_tap(p, book, errors);
        let id = sw.add_port(p.cfg.clone(), edge)?;
        ports.insert(
            p.vport.clone(),
            VportPort {
                id,
                tap,
                lost_seen: 0,
            },
        );
        metas.push(PortMeta {
            index: id.0,
            vport: Some(p.vport.clone()),
            netdev: p.tap.clone(),
            edge: kind,
        });
    }
    let counters = sw.counters();
    let handle = sw.spawn()?;
    let mut running = Running {
        plan: plan.clone(),
        handle: Some(handle),
        view: SwitchView {
            name: plan.name.clone(),
            uplink: plan.uplink.clone(),
            kind: plan.kind.as_str(),
            host_netdev: match &plan.kind {
                SwitchKind::Internal { host_netdev, .. } => Some(host_netdev.clone()),
                _ => None,
            },
            trunk_port: match plan.kind {
                SwitchKind::Internal { .. } => HOST_PORT,
                _ => UPLINK_PORT,
            },
            counters,
            ports: metas,
        },
        trunk: trunk_id,
        trunk_lost_seen: 0,
        trunk_connected: true,
        filter,
        vlans: BTreeMap::new(),
        ports,
    };
    running.sync_filter(errors);
    running.sync_vlans(errors);
    Ok(running)
}

fn write_snapshot(path: &Path, view: &View) {
    let text = serde_json::to_string_pretty(&view.snapshot()).expect("snapshots serialize");
    if let Err(e) = userfiles::write_atomic(path, text.as_bytes()) {
        log::warn!("the software switch counters are not published: {e}");
    }
}

fn publish_loop(path: &Path, view: &View, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        write_snapshot(path, view);
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SoftPath {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.publisher.take() {
            let _ = t.join();
            // The switches go (their TAPs stay, with the VMs); figures left behind would
            // describe nothing.
            if let Some(p) = &self.snapshot_path {
                let _ = userfiles::remove(p);
            }
        }
        for r in &mut self.running {
            if let Some(h) = r.handle.take() {
                h.stop();
            }
            r.leave_vlans();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Snapshot::load(dir.path()).unwrap(), None);
        let s = Snapshot {
            taken_unix_s: 5,
            ports: Vec::new(),
            switches: Vec::new(),
        };
        std::fs::write(
            dir.path().join(SNAPSHOT_FILE),
            serde_json::to_string(&s).unwrap(),
        )
        .unwrap();
        assert_eq!(Snapshot::load(dir.path()).unwrap(), Some(s));
        std::fs::write(dir.path().join(SNAPSHOT_FILE), "{").unwrap();
        let e = Snapshot::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("switch.json: the software switch counters are unreadable"));
    }
}
