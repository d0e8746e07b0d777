//! The rebalancer's engine: one tick samples the kernel's counters, asks the pure policy
//! what to move (time passed in), actuates the moves and keeps what the next tick needs
//! (the last sample, the learned topology and CPU sets, the affinity cache). The daemon's
//! loop ([`crate::daemon::service`]) only calls [`Rebalancer::prime`] and
//! [`Rebalancer::tick`] each period; the engine lives here so that the loop holds no
//! rebalancing logic and the metrics render from [`TickReport`], rebalance data.
//!
//! All kernel I/O goes through [`KernelFs`] under `root`, so the same engine runs on the
//! live host, on a fixture tree (`--root DIR`), or inside a mount namespace whose /proc and
//! /sys files are bind-mounted fixtures.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::facts::inventory::{self, InventoryError};
use crate::facts::parse::{self, CpuTimes, InterruptLine, ParseError};
use crate::host::fs::KernelFs;
use crate::host::netlink::NetlinkSnapshot;
use crate::host::userfiles::UserFiles;
use crate::model::file_errors::FsError;
use crate::model::inventory::{Inventory, QueueKind, QueueRef};
use crate::model::profile::ProfileSet;
use crate::model::uplink::UplinkSelector;
use crate::provision::state::State;
use crate::rebalance::actuate;
use crate::rebalance::cpusets::{NicCpuSet, NicFacts, SetSource, nic_cpu_sets};
use crate::rebalance::policy::{Event, Move, Observation, Outcome, Policy, PolicyConfig, QueueObs};
use crate::rebalance::sample::{self, Accounting};
use crate::rebalance::{QueueSpec, Topology};

/// Errors that skip a tick (or, at the first sample, stop the daemon).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A kernel file could not be read.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// /proc/stat or /proc/interrupts could not be parsed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Discovering the NICs and CPUs failed.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// A file the engine needs every period is missing under the root.
    #[error("{path} does not exist under {root}: is --root pointing at a /proc and /sys tree?")]
    Missing { path: String, root: String },
}

/// What the engine needs of the daemon's configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where /proc and /sys are (`/` on a live host).
    pub root: PathBuf,
    /// The daemon's period, of which a tick may take [`TICK_BUDGET`].
    pub period: Duration,
    /// Where `vportd apply` keeps its state: the vPorts whose queues are grouped.
    pub state_dir: Option<PathBuf>,
    /// Per-NIC CPU sets, by PCI address.
    pub nic_cpus: BTreeMap<String, Vec<u32>>,
    /// CPUs never to put interrupts on (in addition to the kernel's isolated CPUs).
    pub avoid: Vec<u32>,
    /// Also point RPS/XPS of a moved queue at its new CPU.
    pub steering: bool,
    pub policy: PolicyConfig,
    /// Each vPort's configured `cpus`, by name: the hard limit of its queue set.
    pub vport_cpus: BTreeMap<String, Vec<u32>>,
    /// The provisioning config's uplinks: only their queues, and their VFs', are balanced
    /// (the NICs vportd does not manage are another writer's, irqbalance's or the
    /// operator's). None (a daemon without a config): every NIC's queues.
    pub uplinks: Option<Vec<UplinkSelector>>,
}

/// One CPU in a tick.
#[derive(Debug, Clone, Serialize)]
pub struct CpuRow {
    pub cpu: u32,
    pub busy: f64,
    pub irq: f64,
    /// The policy's estimate of the CPU's load, which its thresholds judge
    /// ([`crate::rebalance::policy::Decision::estimates`]).
    pub estimate: f64,
}

/// One queue in a tick.
#[derive(Debug, Clone, Serialize)]
pub struct QueueRow {
    pub irq: u32,
    pub name: String,
    pub nic: String,
    /// The vPort whose queue set this queue is in (state file), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vport: Option<String>,
    pub cpu: Option<u32>,
    pub affinity: Vec<u32>,
    pub interrupts: u64,
    pub rate: f64,
    pub load: f64,
    /// Packets the queue carried since the driver started counting, from the driver's
    /// per-queue ethtool statistics (`rx_queue_N_packets`, ...); rx and tx summed for a
    /// combined queue. None where the driver has no such counters, the netdev lives in
    /// another network namespace, or `--root` is not the live kernel.
    pub packets: Option<u64>,
}

/// A move and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct MoveResult {
    #[serde(flatten)]
    pub mv: Move,
    /// Where the kernel says the IRQ goes after the write.
    pub effective: Option<u32>,
    /// Errno name when the write failed.
    pub errno: Option<String>,
    pub error: Option<String>,
    /// With `--steering`: the queue's RPS/XPS masks as written and read back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steering: Vec<actuate::SteeringCheck>,
}

/// The share of the period a tick (sample, decide, act) may take. The daemon runs on the
/// CPUs whose interrupts it balances, so its own cost must stay small and bounded; a tick
/// over budget is counted (`vportd_tick_overruns_total`), and examples/tick_bench.rs measures
/// the tick on a 10,000-IRQ host against it.
pub const TICK_BUDGET: f64 = 0.10;

/// What one tick saw and did.
#[derive(Debug, Clone, Serialize)]
pub struct TickReport {
    pub now_ms: u64,
    pub accounting: Accounting,
    pub relearned: bool,
    pub cpus: Vec<CpuRow>,
    pub queues: Vec<QueueRow>,
    pub moves: Vec<MoveResult>,
    pub events: Vec<Event>,
    /// IRQs left alone because another writer changed them (each further change doubles
    /// the time).
    pub yielded: Vec<u32>,
    /// Each NIC's CPU set (PF and VFs grouped; configured or NUMA-local by default).
    pub nic_sets: BTreeMap<String, NicCpuSet>,
    pub tick_seconds: f64,
    /// [`TICK_BUDGET`] of the configured period.
    pub budget_seconds: f64,
    /// The tick took longer than its budget.
    pub over_budget: bool,
}

struct Sample {
    stat: BTreeMap<u32, CpuTimes>,
    intr: BTreeMap<u32, InterruptLine>,
    columns: Vec<u32>,
}

/// The rebalancer: owns the policy and the last sample.
pub struct Rebalancer {
    fs: KernelFs,
    cfg: EngineConfig,
    policy: Policy,
    topo: Topology,
    queues: Vec<QueueSpec>,
    steering: HashMap<u32, (String, QueueRef)>,
    /// Each NIC's CPU set, as last learned (shown in `--once` reports).
    nic_sets: BTreeMap<String, NicCpuSet>,
    /// Each queue IRQ's netdev (by ifindex) and queue, for its packet counters.
    counters: HashMap<u32, (u32, QueueRef)>,
    /// Reads drivers' per-queue packet counters; None off the live kernel (`--root`
    /// elsewhere: a fixture's ifindexes mean nothing to this kernel) or without a socket.
    stats: Option<crate::host::ethtool_stats::StatsReader>,
    /// Netdev netlink qstats, tried first (None off the live kernel or before Linux 6.2).
    qstats: Option<crate::host::qstats::Qstats>,
    /// Netdevs whose counters failed, so that each failure is logged once.
    stats_failed: std::collections::BTreeSet<u32>,
    /// The vPort each grouped queue IRQ belongs to (see `rebalance::group_by_vport`).
    vport_of: BTreeMap<u32, String>,
    /// What the topology was learned from: IRQ numbers and names, online CPUs.
    learned_from: (Vec<(u32, String)>, String),
    prev: Option<Sample>,
    /// Each queue IRQ's `smp_affinity_list` and `effective_affinity_list` as last read (or
    /// as last written by us), and where the next tick's rotating re-read starts.
    affinity: HashMap<u32, (Vec<u32>, Vec<u32>)>,
    affinity_from: usize,
    /// Why the state file could not be read at the last relearn (said once per reason).
    state_failed: Option<String>,
}

/// How many queue IRQs have their affinity files re-read per tick. Up to this many, every
/// tick reads every one (another writer is noticed within one period); above it, a rotating
/// window of this many plus every IRQ not yet read, so that a 10,000-IRQ host spends its
/// tick on the decision, not on 20,000 file reads (another writer is then noticed within
/// ceil(IRQs / this) periods). Our own writes update the cached values as they happen.
pub const AFFINITY_READS_PER_TICK: usize = 1024;

/// Whether `f` is one of `uplinks` (by PCI address, or a netdev's MAC or name) or a VF of
/// one.
fn managed(
    inv: &Inventory,
    f: &crate::model::inventory::PciFunction,
    uplinks: &[UplinkSelector],
) -> bool {
    let names = |f: &crate::model::inventory::PciFunction, u: &UplinkSelector| match u {
        UplinkSelector::Pci(_) => u.matches(&f.bdf),
        UplinkSelector::Mac(_) => f
            .netdevs
            .iter()
            .any(|d| d.mac.as_deref().is_some_and(|m| u.matches(m))),
        UplinkSelector::Ifname(n) => f.netdevs.iter().any(|d| d.name == *n),
    };
    let pf = match &f.physfn {
        Some(pf) => inv.pci_functions.iter().find(|p| p.bdf == *pf),
        None => Some(f),
    };
    pf.is_some_and(|pf| uplinks.iter().any(|u| names(pf, u)))
}

impl Rebalancer {
    /// An engine for `cfg` (a [`crate::daemon::DaemonConfig`] converts into one); the
    /// drivers' packet counters are read only when `root` is the live kernel's `/`.
    pub fn new(cfg: impl Into<EngineConfig>) -> Self {
        let cfg = cfg.into();
        let live = cfg.root == std::path::Path::new("/");
        Self {
            fs: KernelFs::at(&cfg.root),
            policy: Policy::new(cfg.policy.clone()),
            cfg,
            topo: Topology::default(),
            queues: Vec::new(),
            steering: HashMap::new(),
            counters: HashMap::new(),
            nic_sets: BTreeMap::new(),
            stats: match live {
                true => crate::host::ethtool_stats::StatsReader::new()
                    .map_err(|e| log::warn!("no per-queue packet counts: {e}"))
                    .ok(),
                false => None,
            },
            qstats: match live {
                true => crate::host::qstats::Qstats::open().ok(),
                false => None,
            },
            stats_failed: Default::default(),
            vport_of: BTreeMap::new(),
            learned_from: (Vec::new(), String::new()),
            prev: None,
            affinity: HashMap::new(),
            affinity_from: 0,
            state_failed: None,
        }
    }

    /// Takes the vPorts' CPU sets of a re-read provisioning config: the next tick learns
    /// the vPorts' queue groups and CPU sets afresh.
    pub fn set_vport_cpus(&mut self, vport_cpus: BTreeMap<String, Vec<u32>>) {
        self.cfg.vport_cpus = vport_cpus;
        self.learned_from = (Vec::new(), String::new());
    }

    /// Takes the uplinks of a re-read provisioning config: the next tick balances their
    /// queues only.
    pub fn set_uplinks(&mut self, uplinks: Option<Vec<UplinkSelector>>) {
        self.cfg.uplinks = uplinks;
        self.learned_from = (Vec::new(), String::new());
    }

    fn must_read(&self, path: &str) -> Result<String, EngineError> {
        self.fs.read(path)?.ok_or_else(|| EngineError::Missing {
            path: path.into(),
            root: self.fs.root().display().to_string(),
        })
    }

    fn read_sample(&self) -> Result<Sample, EngineError> {
        let stat = parse::proc_stat(&self.must_read("/proc/stat")?)?;
        let text = self.must_read("/proc/interrupts")?;
        Ok(Sample {
            stat,
            intr: parse::interrupts(&text)?,
            columns: parse::interrupt_columns(&text),
        })
    }

    /// Re-discovers NICs and CPUs when the IRQs (ethtool -L, VF add/remove) or the
    /// online CPUs changed since the last time. Netlink is not needed: sysfs names
    /// every function's IRQs and node.
    fn relearn(&mut self, s: &Sample) -> Result<bool, EngineError> {
        let key_irqs: Vec<(u32, String)> =
            s.intr.values().map(|l| (l.irq, l.name.clone())).collect();
        let online = self
            .fs
            .read("/sys/devices/system/cpu/online")?
            .unwrap_or_default();
        if self.learned_from.0 == key_irqs
            && self.learned_from.1 == online
            && !self.topo.cpus.is_empty()
        {
            return Ok(false);
        }
        let inv =
            inventory::discover(&self.fs, &NetlinkSnapshot::default(), ProfileSet::builtin())?;
        let mut avoid = self.cfg.avoid.clone();
        if let Some(t) = self.fs.read("/sys/devices/system/cpu/isolated")? {
            avoid.extend(parse::cpulist(&t)?);
        }
        let mut cpus = inv.cpus.clone();
        if cpus.online.is_empty() {
            // A fixture without sysfs CPUs: the columns of /proc/interrupts are online.
            cpus.online = s.columns.clone();
        }
        self.topo = Topology::from_inventory(&cpus, &avoid);
        // Per-NIC CPU sets: a PF and its VFs share one; configured ones bind, the default
        // (the PF's NUMA-local CPUs) is a home the policy fills first.
        let (sets, problems) = nic_cpu_sets(&nic_facts(&inv), &self.cfg.nic_cpus, &self.topo);
        for p in problems {
            log::warn!("{p}");
        }
        self.policy.set_homes(
            sets.iter()
                .filter(|(_, s)| s.source == SetSource::Local)
                .map(|(b, s)| (b.clone(), s.cpus.clone()))
                .collect(),
        );
        self.learn_queues(&inv, &sets);
        self.nic_sets = sets;
        // Each provisioned vPort's queues (a VF's own, or the PF queues steered to it)
        // as one group with the vPort's CPU set.
        let vports = self.load_state();
        let sets = crate::provision::state::queue_sets(&vports, &inv, &self.cfg.vport_cpus);
        let (vport_of, problems) =
            crate::rebalance::group_by_vport(&mut self.queues, &sets, &self.topo);
        for p in problems {
            log::warn!("{p}");
        }
        self.vport_of = vport_of;
        self.learned_from = (key_irqs, online);
        Ok(true)
    }

    /// Every queue IRQ of the inventory, with its NIC's hard CPU set when one is
    /// configured, and its netdev's name and ifindex for steering and packet counters.
    fn learn_queues(&mut self, inv: &Inventory, sets: &BTreeMap<String, NicCpuSet>) {
        self.queues.clear();
        self.steering.clear();
        self.counters.clear();
        for f in &inv.pci_functions {
            if let Some(uplinks) = &self.cfg.uplinks
                && !managed(inv, f, uplinks)
            {
                continue;
            }
            for irq in &f.irqs {
                let Some(q) = irq.queue else { continue };
                self.queues.push(QueueSpec {
                    irq: irq.irq,
                    name: irq.name.clone(),
                    nic: f.bdf.clone(),
                    node: f.numa_node,
                    cpus: sets
                        .get(&f.bdf)
                        .filter(|s| s.source == SetSource::Configured)
                        .map(|s| s.cpus.clone())
                        .unwrap_or_default(),
                });
                if let Some(dev) = f.netdevs.first() {
                    self.steering.insert(irq.irq, (dev.name.clone(), q));
                    self.counters.insert(irq.irq, (dev.ifindex, q));
                }
            }
        }
    }

    /// The provisioning state, for the vPorts' queue groups. A state file that cannot be
    /// read leaves the vPorts ungrouped this time, said once per reason.
    fn load_state(&mut self) -> State {
        match self
            .cfg
            .state_dir
            .as_deref()
            .map(|d| State::load(&UserFiles, d))
        {
            Some(Ok(state)) => {
                self.state_failed = None;
                state
            }
            Some(Err(e)) => {
                let msg = e.to_string();
                if self.state_failed.as_ref() != Some(&msg) {
                    log::warn!("the vPorts' queues are not grouped: {msg}");
                    self.state_failed = Some(msg);
                }
                State::default()
            }
            None => State::default(),
        }
    }

    /// The drivers' per-queue packet counters of every netdev with queue IRQs, by ifindex.
    /// A netdev whose counters cannot be read is logged once and left out.
    fn read_packets(&mut self) -> HashMap<u32, crate::host::ethtool_stats::QueuePackets> {
        let mut out = HashMap::new();
        let Some(reader) = self.stats.as_mut() else {
            return out;
        };
        let mut ifindexes: Vec<u32> = self.counters.values().map(|(i, _)| *i).collect();
        ifindexes.sort_unstable();
        ifindexes.dedup();
        reader.retain(&ifindexes);
        for i in ifindexes {
            // qstats where the driver keeps them, else its ethtool statistics.
            if let Some(q) = self.qstats.as_mut()
                && let Ok(p) = q.queue_packets(i)
                && !p.is_empty()
            {
                self.stats_failed.remove(&i);
                out.insert(i, p);
                continue;
            }
            match reader.queue_packets(i) {
                Ok(p) => {
                    self.stats_failed.remove(&i);
                    out.insert(i, p);
                }
                Err(e) => {
                    if self.stats_failed.insert(i) {
                        log::warn!("no per-queue packet counts for this netdev: {e}");
                    }
                }
            }
        }
        out
    }

    /// Takes the first sample (loads need two).
    pub fn prime(&mut self) -> Result<(), EngineError> {
        let s = self.read_sample()?;
        self.relearn(&s)?;
        self.prev = Some(s);
        // Every queue's affinity once, outside any tick: ticks then re-read a window.
        self.affinity.clear();
        let read: Vec<_> = self
            .queues
            .iter()
            .map(|q| (q.irq, self.read_affinity(q.irq)))
            .collect();
        self.affinity.extend(read);
        Ok(())
    }

    /// IRQ `irq`'s `smp_affinity_list` and `effective_affinity_list` (empty when unreadable).
    fn read_affinity(&self, irq: u32) -> (Vec<u32>, Vec<u32>) {
        let read_cpus = |file: &str| -> Vec<u32> {
            self.fs
                .read_lenient(&format!("/proc/irq/{irq}/{file}"))
                .and_then(|t| parse::cpulist(&t).ok())
                .unwrap_or_default()
        };
        (
            read_cpus("smp_affinity_list"),
            read_cpus("effective_affinity_list"),
        )
    }

    /// One period: sample, decide, act. `now_ms` is a monotonic time, and
    /// `period_s` the time since the last sample.
    pub fn tick(&mut self, now_ms: u64, period_s: f64) -> Result<TickReport, EngineError> {
        let started = Instant::now();
        let cur = self.read_sample()?;
        let relearned = self.relearn(&cur)?;
        if relearned {
            // IRQ numbers may have been re-created for other queues.
            self.affinity.clear();
        }
        let prev = self.prev.take().unwrap_or(Sample {
            stat: BTreeMap::new(),
            intr: BTreeMap::new(),
            columns: Vec::new(),
        });
        let cpu_loads = sample::cpu_loads(&prev.stat, &cur.stat);
        let deltas = sample::irq_deltas(&prev.intr, &cur.intr, &cur.columns);
        let irqs: Vec<u32> = self.queues.iter().map(|q| q.irq).collect();
        let (loads, accounting) = sample::queue_loads(
            &deltas,
            &cpu_loads,
            &irqs,
            period_s,
            self.cfg.policy.cost_per_interrupt_s,
        );
        let (rows, qobs) = self.observe_queues(&cur, &loads);
        let obs = Observation {
            now_ms,
            cpu_busy: cpu_loads.iter().map(|(c, l)| (*c, l.busy)).collect(),
            queues: qobs,
        };
        let d = self.policy.decide(&self.topo, &self.queues, &obs);
        let moves = d
            .moves
            .into_iter()
            .map(|m| self.actuate(m, now_ms))
            .collect();
        self.prev = Some(cur);
        let tick_seconds = started.elapsed().as_secs_f64();
        let budget_seconds = self.cfg.period.as_secs_f64() * TICK_BUDGET;
        Ok(TickReport {
            now_ms,
            accounting,
            relearned,
            cpus: cpu_loads
                .iter()
                .map(|(c, l)| CpuRow {
                    cpu: *c,
                    busy: l.busy,
                    irq: l.irq,
                    estimate: d.estimates.get(c).copied().unwrap_or(0.0),
                })
                .collect(),
            queues: rows,
            moves,
            events: d.events,
            yielded: self.policy.yielded(now_ms),
            nic_sets: self.nic_sets.clone(),
            tick_seconds,
            budget_seconds,
            over_budget: tick_seconds > budget_seconds,
        })
    }

    /// Each queue as this tick sees it: a row for the report and an observation for the
    /// policy. Affinities are re-read in a rotating window (see
    /// [`AFFINITY_READS_PER_TICK`]), the rest come from the cache.
    fn observe_queues(
        &mut self,
        cur: &Sample,
        loads: &BTreeMap<u32, sample::QueueLoad>,
    ) -> (Vec<QueueRow>, Vec<QueueObs>) {
        let packets = self.read_packets();
        let mut rows = Vec::new();
        let mut qobs = Vec::new();
        let n = self.queues.len();
        let window = AFFINITY_READS_PER_TICK.min(n);
        let from = if n == 0 { 0 } else { self.affinity_from % n };
        self.affinity_from = from + window;
        for i in 0..n {
            let irq = self.queues[i].irq;
            let in_window = (i + n - from) % n.max(1) < window;
            let (affinity, effective) = self.affinity_of(irq, in_window);
            let l = loads.get(&irq).copied().unwrap_or_default();
            // Where it really runs: the effective CPU when there is exactly one,
            // else where its interrupts were counted, else the first allowed CPU.
            let cpu = match effective.as_slice() {
                [one] => Some(*one),
                _ => l.cpu.or_else(|| affinity.first().copied()),
            };
            let q = &self.queues[i];
            rows.push(QueueRow {
                irq,
                name: q.name.clone(),
                nic: q.nic.clone(),
                vport: self.vport_of.get(&irq).cloned(),
                cpu,
                affinity: affinity.clone(),
                interrupts: cur.intr.get(&irq).map(InterruptLine::total).unwrap_or(0),
                rate: l.rate,
                load: l.load,
                packets: self.packets_of(irq, &packets),
            });
            qobs.push(QueueObs {
                irq,
                load: l.load,
                rate: l.rate,
                cpu,
                affinity,
            });
        }
        (rows, qobs)
    }

    /// IRQ `irq`'s affinity and effective affinity: read again when it is in this tick's
    /// window or not cached yet, else as cached.
    fn affinity_of(&mut self, irq: u32, in_window: bool) -> (Vec<u32>, Vec<u32>) {
        let cached = self.affinity.get(&irq).filter(|_| !in_window).cloned();
        match cached {
            Some(c) => c,
            None => {
                let read = self.read_affinity(irq);
                self.affinity.insert(irq, read.clone());
                read
            }
        }
    }

    /// The packets of queue IRQ `irq`'s queue from its netdev's counters: rx or tx, or
    /// both summed for a combined queue; None where the driver counts neither.
    fn packets_of(
        &self,
        irq: u32,
        packets: &HashMap<u32, crate::host::ethtool_stats::QueuePackets>,
    ) -> Option<u64> {
        use crate::host::ethtool_stats::Direction;
        let (ifindex, qr) = self.counters.get(&irq)?;
        let per = packets.get(ifindex)?;
        let rx = per.get(&(Direction::Rx, qr.index)).copied();
        let tx = per.get(&(Direction::Tx, qr.index)).copied();
        match qr.kind {
            QueueKind::Rx => rx,
            QueueKind::Tx => tx,
            QueueKind::Combined => match (rx, tx) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
            },
        }
    }

    /// Writes one move (and, with `--steering`, the queue's RPS/XPS masks), tells the
    /// policy what came of it, and keeps the affinity cache true to our write.
    fn actuate(&mut self, m: Move, now_ms: u64) -> MoveResult {
        let mut steered = Vec::new();
        let (outcome, effective, errno, error) = match actuate::apply(&self.fs, &m) {
            Ok(a) => {
                self.affinity.insert(
                    m.irq,
                    (vec![m.to], a.effective.map(|c| vec![c]).unwrap_or_default()),
                );
                if self.cfg.steering
                    && let Some((dev, q)) = self.steering.get(&m.irq)
                {
                    let w = actuate::steering(dev, *q, &[m.to]);
                    steered = actuate::apply_steering_checked(&self.fs, &w);
                }
                (
                    Outcome::Done {
                        effective: a.effective,
                    },
                    a.effective,
                    None,
                    None,
                )
            }
            Err(e) => (
                e.outcome(),
                None,
                Some(actuate::errno_name(e.errno())),
                Some(e.to_string()),
            ),
        };
        self.policy.feedback(&m, outcome, now_ms);
        MoveResult {
            mv: m,
            effective,
            errno,
            error,
            steering: steered,
        }
    }
}

/// What the NICs' CPU sets are made from: every function with queue IRQs, and every PF
/// without any (a VF's PF has queue IRQs of its own almost always; when it has none, its
/// local CPUs still make the group's home).
fn nic_facts(inv: &Inventory) -> Vec<NicFacts> {
    inv.pci_functions
        .iter()
        .filter(|f| f.irqs.iter().any(|i| i.queue.is_some()))
        .map(|f| NicFacts {
            bdf: f.bdf.clone(),
            physfn: f.physfn.clone(),
            local_cpus: f.local_cpus.clone(),
            node: f.numa_node,
        })
        .chain(
            inv.pci_functions
                .iter()
                .filter(|f| f.sriov.is_some() && !f.irqs.iter().any(|i| i.queue.is_some()))
                .map(|f| NicFacts {
                    bdf: f.bdf.clone(),
                    physfn: None,
                    local_cpus: f.local_cpus.clone(),
                    node: f.numa_node,
                }),
        )
        .collect()
}

/// One line per move and event, for the journal (stderr).
pub fn log_lines(r: &TickReport) -> Vec<String> {
    let name = |irq: u32| {
        r.queues
            .iter()
            .find(|q| q.irq == irq)
            .map(|q| q.name.clone())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for m in &r.moves {
        let from =
            m.mv.from
                .map(|c| c.to_string())
                .unwrap_or_else(|| "?".into());
        match &m.error {
            None => out.push(format!(
                "moved IRQ {} ({}) from CPU {from} to CPU {}: {} (load {:.2})",
                m.mv.irq,
                name(m.mv.irq),
                m.mv.to,
                m.mv.reason.as_str(),
                m.mv.load
            )),
            Some(e) => out.push(e.clone()),
        }
        for c in &m.steering {
            out.push(match (&c.errno, c.holds()) {
                (Some(e), _) => format!("writing {} to {} failed: {e}", c.wanted, c.path),
                (None, true) => format!("steering: {} = {} (read back)", c.path, c.wanted),
                (None, false) => format!(
                    "steering: wrote {} to {} but the kernel holds {}",
                    c.wanted,
                    c.path,
                    c.read_back.as_deref().unwrap_or("nothing readable")
                ),
            });
        }
    }
    for e in &r.events {
        match e {
            Event::External { irq, was, now } => out.push(format!(
                "IRQ {irq} ({}) was moved by another writer from CPUs {} to {}: leaving it alone",
                name(*irq),
                parse::format_cpulist(was),
                parse::format_cpulist(now)
            )),
            Event::NodeGuessed { nic, node } => out.push(format!(
                "{nic} reports no NUMA node; its interrupts are cheapest on node {node}, so it is treated as local there"
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inventory::{CpuTopology, Netdev, PciFunction, Role, SCHEMA_VERSION};

    fn function(bdf: &str, physfn: Option<&str>, netdev: &str, mac: &str) -> PciFunction {
        PciFunction {
            bdf: bdf.into(),
            vendor_id: "0x8086".into(),
            device_id: "0x10c9".into(),
            vendor_name: None,
            device_name: None,
            subsystem_vendor_id: None,
            subsystem_device_id: None,
            class: "0x020000".into(),
            driver: Some("igb".into()),
            role: if physfn.is_some() { Role::Vf } else { Role::Pf },
            numa_node: None,
            local_cpus: Vec::new(),
            physfn: physfn.map(Into::into),
            vf_index: None,
            virtio_device: None,
            netdevs: vec![Netdev {
                ifindex: 2,
                name: netdev.into(),
                mac: Some(mac.into()),
                operstate: "up".into(),
                admin_up: Some(true),
                mtu: None,
                speed_mbps: None,
                driver: None,
                kind: None,
                rx_queues: 1,
                tx_queues: 1,
                channels: None,
                queues: Default::default(),
            }],
            sriov: None,
            irqs: Vec::new(),
            profile: None,
            eswitch_mode: None,
            representors: Vec::new(),
            iommu_group: None,
        }
    }

    /// With a config, only its uplinks (by PCI address, MAC or name) and their VFs are the
    /// rebalancer's; another NIC's queues are left to whoever balances them.
    #[test]
    fn only_the_configs_uplinks_and_their_vfs_are_managed() {
        let inv = Inventory {
            schema_version: SCHEMA_VERSION,
            pci_functions: vec![
                function("0000:01:00.0", None, "enp1s0", "52:54:00:00:00:01"),
                function(
                    "0000:01:10.0",
                    Some("0000:01:00.0"),
                    "enp1s0v0",
                    "02:00:00:00:00:01",
                ),
                function("0000:02:00.0", None, "enp2s0", "52:54:00:00:00:02"),
                function(
                    "0000:02:10.0",
                    Some("0000:02:00.0"),
                    "enp2s0v0",
                    "02:00:00:00:00:02",
                ),
            ],
            other_netdevs: Vec::new(),
            cpus: CpuTopology {
                online: vec![0, 1],
                nodes: Vec::new(),
                smt_siblings: Vec::new(),
            },
        };
        let ours = |uplinks: &[UplinkSelector]| -> Vec<&str> {
            inv.pci_functions
                .iter()
                .filter(|f| managed(&inv, f, uplinks))
                .map(|f| f.bdf.as_str())
                .collect()
        };
        let pci = [UplinkSelector::Pci("0000:01:00.0".into())];
        assert_eq!(ours(&pci), ["0000:01:00.0", "0000:01:10.0"]);
        let mac = [UplinkSelector::Mac("52:54:00:00:00:02".into())];
        assert_eq!(ours(&mac), ["0000:02:00.0", "0000:02:10.0"]);
        let name = [UplinkSelector::Ifname("enp2s0".into())];
        assert_eq!(ours(&name), ["0000:02:00.0", "0000:02:10.0"]);
        assert!(ours(&[]).is_empty());
    }
}
