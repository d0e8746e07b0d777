//! What vportd has allocated, persisted in the state directory: which vPort holds
//! which VF, what it was configured to, and which vPorts went to the software path.
//! Written atomically (temporary file, fsync, rename), so a crash leaves the old or
//! the new state, never a torn one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::file_errors::FilesError;
use crate::model::pool::Pool;
use crate::model::vf::VfConfig;
use crate::provision::store::Store;

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// Errors from loading or saving state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state file could not be read or written.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The state file exists but is not valid.
    #[error("{}: the state file is corrupt ({why}); move it aside to start over, vportd will re-learn from the host", path.display())]
    Corrupt { path: PathBuf, why: String },
}

/// Where a vPort's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum VportPath {
    /// VF `index` of the uplink PF.
    Vf { index: u32 },
    /// The software switch.
    Software,
    /// Hardware queues of the uplink PF steered to this vPort (no VF): receive queues
    /// `first..first+count` (for a VMDq pool, the driver picks them and `first` is 0).
    Queues {
        mode: QueueMode,
        first: u32,
        count: u32,
        /// The steering rule's slot in the PF's ntuple table (RSS context and ntuple).
        location: Option<u32>,
    },
}

impl VportPath {
    /// A short label for tables and metrics: "vf 3", "queues 4-5 (rss-context)", "software".
    pub fn label(&self) -> String {
        match self {
            VportPath::Vf { index } => format!("vf {index}"),
            VportPath::Software => "software".into(),
            VportPath::Queues {
                mode, first, count, ..
            } => match mode {
                QueueMode::Vmdq => format!("queues {count} ({})", mode.as_str()),
                _ if *count == 1 => format!("queue {first} ({})", mode.as_str()),
                _ => format!("queues {first}-{} ({})", first + count - 1, mode.as_str()),
            },
        }
    }
}

/// How a vPort's own hardware queues are steered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueMode {
    /// An RSS context over the queues plus an ntuple rule on the vPort's MAC (and VLAN)
    /// into it (mlx5, bnxt).
    RssContext,
    /// A VMDq pool, through a macvlan on the PF with l2-fwd-offload (ixgbe, i40e).
    Vmdq,
    /// One queue, through an ntuple (Flow Director) rule on the vPort's MAC.
    Ntuple,
}

impl QueueMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            QueueMode::RssContext => "rss-context",
            QueueMode::Vmdq => "vmdq",
            QueueMode::Ntuple => "ntuple",
        }
    }
}

/// How a vPort is doing, as recorded by the last apply (or the daemon).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Provisioned,
    /// Its uplink disappeared (hot-unplug); restored when it returns.
    Lost,
}

/// One vPort's allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VportState {
    /// The uplink PF's PCI address.
    pub uplink: String,
    pub path: VportPath,
    /// Why this path (for the software path: what the NIC could not do).
    pub reason: String,
    /// The VF's PCI address when it was provisioned.
    pub vf_bdf: Option<String>,
    /// The VF settings applied, to detect drift.
    pub applied: Option<VfConfig>,
    pub health: Health,
}

/// The whole state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub vports: BTreeMap<String, VportState>,
    /// The apply run that wrote this state; a journal of the same run is finished.
    #[serde(default)]
    pub last_run: Option<String>,
    /// What apply programmed on a PF for each vPort on hardware queues, so that a later
    /// run finds it (by PF ifindex, context table, rule slot, macvlan ifindex and MAC)
    /// and removes it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steering: BTreeMap<String, Steering>,
    /// Each `[[pool]]`'s VFs as the planner chose them: chosen once and kept, so that an
    /// attachment's VF never changes pool under it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<Pool>,
    /// In memory only, read by [`State::load`] from the daemon's attachment book
    /// ([`ATTACHMENTS_FILE`]): who holds each pool VF, by (PF, VF index), so that the
    /// planner refuses to take a VF from under a container.
    #[serde(skip)]
    pub pool_holders: BTreeMap<(String, u32), String>,
}

/// A pool's VFs and who holds them: what `vportd status`, `discover --config` and the
/// metrics show of a `[[pool]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolUse {
    pub pool: String,
    /// The PF's PCI address.
    pub uplink: String,
    pub vfs: Vec<u32>,
    pub capacity: usize,
    pub allocated: usize,
    /// The attachments holding VFs (attached, or reserved by an ADD not finished), by index.
    pub holders: BTreeMap<u32, String>,
}

/// The daemon's attachment book, in the state directory next to the state file.
pub const ATTACHMENTS_FILE: &str = "attachments.json";

/// A vPort's steering as programmed on its PF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steering {
    pub pf_ifindex: u32,
    pub mode: QueueMode,
    /// The vPort's MAC and VLAN id the rule or macvlan matches.
    pub mac: String,
    pub vlan: Option<u16>,
    /// The RSS context's id as the driver gave it, and its table: the table identifies
    /// the context if the id is lost (a run killed between creating and journaling it).
    pub context: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub table: Vec<u32>,
    /// The ntuple rule's slot.
    pub location: Option<u32>,
    /// The macvlan station's ifindex (VMDq).
    pub macvlan: Option<u32>,
    /// True when apply turned l2-fwd-offload on for this vPort's macvlan (removing the
    /// last such vPort turns it off again).
    #[serde(default)]
    pub feature_set: bool,
    /// Set (in memory only) when the host no longer holds this steering as applied
    /// (`provision::check_steering`): the planner then programs it afresh instead of
    /// keeping it.
    #[serde(skip)]
    pub drifted: bool,
}

/// One queue of a vPort's queue set: its index on the function that owns it, and its
/// interrupt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueIrq {
    /// "rx", "tx" or "combined", as the IRQ's name says.
    pub kind: String,
    pub index: u32,
    pub irq: u32,
    pub name: String,
}

/// A vPort's queues as one group: the function they live on (a VF's own PCI function,
/// or the PF for RSS-context and ntuple queues), each queue's index and IRQ, and the
/// CPUs the rebalancer keeps them on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VportQueueSet {
    pub vport: String,
    /// The PCI address of the function whose queues these are.
    pub function: String,
    pub queues: Vec<QueueIrq>,
    /// The vPort's CPU set (its `cpus`, else the function's local CPUs).
    pub cpus: Vec<u32>,
    /// Where `cpus` came from: "vport" (its `cpus`: a hard limit the rebalancer keeps the
    /// queues inside, over any `--nic-cpus`) or "function" (the function's local CPUs:
    /// only shown; the rebalancer then uses the NIC's own set, configured or default).
    pub cpus_from: &'static str,
}

/// Each provisioned vPort's queue set, from the state and discovery. `cpus` holds the
/// vPorts' configured CPU sets. A VMDq pool's queues are the driver's choice and cannot
/// be named by index, so such a vPort has an empty set; software vPorts have none.
pub fn queue_sets(
    state: &State,
    inv: &crate::model::inventory::Inventory,
    cpus: &BTreeMap<String, Vec<u32>>,
) -> Vec<VportQueueSet> {
    let mut out = Vec::new();
    for (name, v) in &state.vports {
        let pf = inv.pci_functions.iter().find(|f| f.bdf == v.uplink);
        let (function, range) = match &v.path {
            VportPath::Vf { index } => {
                let bdf = pf
                    .and_then(|f| f.sriov.as_ref())
                    .and_then(|s| s.vfs.iter().find(|e| e.index == *index))
                    .map(|e| e.bdf.clone())
                    .or_else(|| v.vf_bdf.clone());
                match bdf {
                    Some(b) => (b, None),
                    None => continue,
                }
            }
            VportPath::Queues {
                mode: QueueMode::RssContext | QueueMode::Ntuple,
                first,
                count,
                ..
            } => (v.uplink.clone(), Some(*first..*first + *count)),
            VportPath::Queues { .. } => (v.uplink.clone(), Some(0..0)),
            VportPath::Software => continue,
        };
        let f = inv.pci_functions.iter().find(|f| f.bdf == function);
        let queues = f
            .map(|f| {
                f.irqs
                    .iter()
                    .filter_map(|i| {
                        let q = i.queue?;
                        if range.as_ref().is_some_and(|r| !r.contains(&q.index)) {
                            return None;
                        }
                        Some(QueueIrq {
                            kind: format!("{:?}", q.kind).to_lowercase(),
                            index: q.index,
                            irq: i.irq,
                            name: i.name.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (cpu_set, cpus_from) = match cpus.get(name) {
            Some(c) => (c.clone(), "vport"),
            None => (
                f.or(pf).map(|f| f.local_cpus.clone()).unwrap_or_default(),
                "function",
            ),
        };
        out.push(VportQueueSet {
            vport: name.clone(),
            function,
            queues,
            cpus: cpu_set,
            cpus_from,
        });
    }
    out
}

impl State {
    /// The file name inside the state directory.
    pub const FILE: &'static str = "state.json";

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(Self::FILE)
    }

    /// Loads the state; a missing file is an empty state (first run).
    pub fn load(store: &dyn Store, dir: &Path) -> Result<State, StateError> {
        let path = Self::path(dir);
        let text = match store.read_text(&path) {
            Ok(t) => t,
            Err(FilesError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(State {
                    version: STATE_VERSION,
                    ..Default::default()
                });
            }
            Err(e) => return Err(e.into()),
        };
        let mut state = Self::parse(&path, &text)?;
        state.pool_holders = pool_holders(store, dir)?;
        Ok(state)
    }

    /// Parses state text, refusing versions this build does not know.
    pub fn parse(path: &Path, text: &str) -> Result<State, StateError> {
        let state: State = serde_json::from_str(text).map_err(|e| StateError::Corrupt {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Corrupt {
                path: path.to_path_buf(),
                why: format!(
                    "version {} is not the {STATE_VERSION} this vportd reads",
                    state.version
                ),
            });
        }
        Ok(state)
    }

    /// Saves atomically.
    pub fn save(&self, store: &dyn Store, dir: &Path) -> Result<(), StateError> {
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        store.write_atomic(&Self::path(dir), text.as_bytes())?;
        Ok(())
    }

    /// Each pool's VFs and who holds them (from the attachment book [`State::load`] read).
    pub fn pool_use(&self) -> Vec<PoolUse> {
        self.pools
            .iter()
            .map(|p| {
                let holders: BTreeMap<u32, String> = p
                    .vfs
                    .iter()
                    .filter_map(|vf| {
                        let h = self.pool_holders.get(&(p.pf.clone(), *vf))?;
                        Some((*vf, h.clone()))
                    })
                    .collect();
                PoolUse {
                    pool: p.name.clone(),
                    uplink: p.pf.clone(),
                    vfs: p.vfs.clone(),
                    capacity: p.vfs.len(),
                    allocated: holders.len(),
                    holders,
                }
            })
            .collect()
    }

    /// The VF indexes the pools hold on a PF.
    pub fn pool_vfs_on(&self, pf: &str) -> std::collections::BTreeSet<u32> {
        self.pools
            .iter()
            .filter(|p| p.pf == pf)
            .flat_map(|p| p.vfs.iter().copied())
            .collect()
    }

    /// The VF indexes held on a PF, by vPort.
    pub fn vfs_on(&self, pf: &str) -> BTreeMap<u32, &str> {
        self.vports
            .iter()
            .filter(|(_, v)| v.uplink == pf)
            .filter_map(|(name, v)| match v.path {
                VportPath::Vf { index } => Some((index, name.as_str())),
                VportPath::Software | VportPath::Queues { .. } => None,
            })
            .collect()
    }
}

/// What a vPort on a `[[switch]]` records as its `uplink`: no PF, the switch's name.
pub const SWITCH_MEMBER_PREFIX: &str = "switch:";

/// The `[[switch]]` a state's `uplink` names, None when it names a PF.
pub fn switch_member(uplink: &str) -> Option<&str> {
    uplink.strip_prefix(SWITCH_MEMBER_PREFIX)
}

/// Who holds each pool VF according to the attachment book in `dir` (none when the daemon
/// never wrote one). Only the fields the planner needs are read: the book's own module
/// (`attach::book`) owns the format and its version.
fn pool_holders(
    store: &dyn Store,
    dir: &Path,
) -> Result<BTreeMap<(String, u32), String>, StateError> {
    #[derive(Deserialize)]
    struct Book {
        attachments: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        container_id: String,
        ifname: String,
        alloc: Alloc,
    }
    #[derive(Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Alloc {
        Vf {
            pf: String,
            vf: u32,
        },
        #[serde(other)]
        Other,
    }
    let path = dir.join(ATTACHMENTS_FILE);
    let text = match store.read_text(&path) {
        Ok(t) => t,
        Err(FilesError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(BTreeMap::new());
        }
        Err(e) => return Err(e.into()),
    };
    let book: Book = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
        path: path.clone(),
        why: e.to_string(),
    })?;
    Ok(book
        .attachments
        .into_iter()
        .filter_map(|e| match e.alloc {
            Alloc::Vf { pf, vf } => Some((
                (pf, vf),
                format!("container {}'s {}", e.container_id, e.ifname),
            )),
            Alloc::Other => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::store::MemStore;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemStore::new();
        assert_eq!(State::load(&store, dir.path()).unwrap().vports.len(), 0);
        let mut s = State {
            version: STATE_VERSION,
            ..Default::default()
        };
        s.vports.insert(
            "vm1".into(),
            VportState {
                uplink: "0000:01:00.0".into(),
                path: VportPath::Vf { index: 2 },
                reason: "free VF".into(),
                vf_bdf: Some("0000:01:10.4".into()),
                applied: None,
                health: Health::Provisioned,
            },
        );
        s.save(&store, dir.path()).unwrap();
        assert_eq!(State::load(&store, dir.path()).unwrap(), s);
        store
            .write_atomic(&State::path(dir.path()), b"{\"version\": 1, \"vports\": ")
            .unwrap();
        let e = State::load(&store, dir.path()).unwrap_err().to_string();
        assert!(e.contains("state.json: the state file is corrupt"), "{e}");
    }

    #[test]
    fn queue_sets_follow_the_function_and_the_queue_range() {
        use crate::model::inventory::{Irq, QueueKind, QueueRef};
        use crate::provision::ops::SriovOps;
        let mut host = crate::provision::sim_host::SimHost::igb(1);
        host.set_num_vfs("0000:01:00.0", 1).unwrap();
        let mut inv = host.inventory();
        let irq = |irq: u32, name: &str, kind, index| Irq {
            irq,
            name: name.into(),
            queue: Some(QueueRef { kind, index }),
            affinity: vec![],
            effective_affinity: vec![],
            count: 0,
        };
        // The PF's 4 combined queues, and the VF as its own function with rx/tx vectors.
        inv.pci_functions[0].irqs = (0..4)
            .map(|i| irq(30 + i, &format!("eth0-TxRx-{i}"), QueueKind::Combined, i))
            .collect();
        let mut vf = inv.pci_functions[0].clone();
        vf.bdf = "0000:01:10.0".into();
        vf.local_cpus = vec![1];
        vf.irqs = vec![
            irq(40, "eth2-rx-0", QueueKind::Rx, 0),
            irq(41, "eth2-tx-0", QueueKind::Tx, 0),
        ];
        inv.pci_functions.push(vf);
        let mut s = State::default();
        let vport = |path| VportState {
            uplink: "0000:01:00.0".into(),
            path,
            reason: String::new(),
            vf_bdf: None,
            applied: None,
            health: Health::Provisioned,
        };
        s.vports
            .insert("vf".into(), vport(VportPath::Vf { index: 0 }));
        s.vports.insert(
            "ctx".into(),
            vport(VportPath::Queues {
                mode: QueueMode::RssContext,
                first: 2,
                count: 2,
                location: Some(0),
            }),
        );
        s.vports.insert("sw".into(), vport(VportPath::Software));
        let cpus = BTreeMap::from([("ctx".to_string(), vec![0])]);
        let sets = queue_sets(&s, &inv, &cpus);
        assert_eq!(sets.len(), 2, "{sets:?}");
        let ctx = &sets[0];
        assert_eq!(ctx.vport, "ctx");
        assert_eq!(ctx.function, "0000:01:00.0");
        let irqs: Vec<(u32, u32)> = ctx.queues.iter().map(|q| (q.index, q.irq)).collect();
        assert_eq!(irqs, [(2, 32), (3, 33)]);
        assert_eq!(ctx.cpus, [0]);
        let vf = &sets[1];
        assert_eq!(vf.function, "0000:01:10.0");
        let kinds: Vec<(&str, u32)> = vf.queues.iter().map(|q| (q.kind.as_str(), q.irq)).collect();
        assert_eq!(kinds, [("rx", 40), ("tx", 41)]);
        assert_eq!(vf.cpus, [1], "the VF's local CPUs by default");
        assert_eq!((ctx.cpus_from, vf.cpus_from), ("vport", "function"));
    }
}
