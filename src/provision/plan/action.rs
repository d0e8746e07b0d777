//! The steps a plan asks for, and how each reads in a plan and a journal.

use serde::Serialize;

use crate::model::vf::VfConfig;

/// One step on the host.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Write `sriov_numvfs`; `to` differs from `from`, and one of them is 0.
    /// `pf_ifindex` lets a rollback restore the settings of VFs this step destroys.
    SetNumVfs {
        pf: String,
        pf_ifindex: Option<u32>,
        from: u32,
        to: u32,
    },
    /// Bind VF `vf` of `pf` to `driver` (through driver_override).
    BindVf { pf: String, vf: u32, driver: String },
    /// Set a VF's attributes in one rtnetlink request on its PF.
    ConfigureVf {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        config: VfConfig,
    },
    /// Return a released VF to a clean state (no admin MAC, VLAN 0, no rate limit,
    /// spoofchk on, trust off).
    ResetVf {
        pf: String,
        pf_ifindex: u32,
        released_from: String,
        config: VfConfig,
    },
    /// Set the PF's netdev administratively up (`ip link set PF up`): it was down, so it had
    /// no link, and drivers such as igb refuse VF rates without one.
    SetPfLink {
        pf: String,
        pf_ifindex: u32,
        up: bool,
    },
    /// No host change: the state records this placement (software path, release).
    Record { vport: String, what: String },
    /// Set the PF's combined channel count (`ethtool -L`). Drivers re-create the queue
    /// interrupts: a topology change the rebalancer re-learns (new IRQ numbers).
    SetChannels {
        pf: String,
        pf_ifindex: u32,
        from: Option<u32>,
        to: u32,
    },
    /// Set the PF's RSS indirection table (`ethtool -X`); empty: the driver's default
    /// (needed before lowering channels below what a table set earlier uses).
    SetRssTable {
        pf: String,
        pf_ifindex: u32,
        spread: String,
        table: Vec<u32>,
    },
    /// Turn a PF feature on or off (`ethtool -K`): l2-fwd-offload before a VMDq macvlan,
    /// off again when the last one goes.
    SetFeature {
        pf: String,
        pf_ifindex: u32,
        feature: String,
        on: bool,
    },
    /// Create an RSS context spreading over the vPort's queues `first..first+count`
    /// (`ethtool -X DEV context new start FIRST equal COUNT`); the driver picks its id.
    CreateRssContext {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        first: u32,
        count: u32,
        table: Vec<u32>,
    },
    /// Insert an ntuple rule on the vPort's destination MAC (and VLAN id) at `location`:
    /// into `queue`, or with None into the RSS context the step before created for it.
    InsertRule {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        mac: String,
        vlan: Option<u16>,
        location: u32,
        queue: Option<u32>,
    },
    /// Create the vPort's macvlan station on the PF (a VMDq pool with l2-fwd-offload).
    CreateMacvlan {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        name: String,
        mac: String,
        /// True when this plan turned l2-fwd-offload on for it.
        feature_set: bool,
    },
    /// Delete a vPort's ntuple rule (released, or steered anew).
    DeleteRule {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        location: u32,
    },
    /// Delete a vPort's RSS context, found by id and checked by its table.
    DeleteRssContext {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        context: Option<u32>,
        table: Vec<u32>,
    },
    /// Delete a vPort's macvlan station, found on the PF by its MAC.
    DeleteMacvlan {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        mac: String,
    },
}
