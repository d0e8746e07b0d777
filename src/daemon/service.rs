//! `vportd daemon`: the long-running agent. Today it hosts one task, the
//! rebalancer (sample, decide, actuate every period) and the metrics endpoint;
//! the software switch and the control socket plug in as further tasks on the
//! same runtime (see [`Daemon::run`]).
//!
//! All kernel I/O goes through [`KernelFs`] under `root`, so the same loop runs on
//! the live host, on a fixture tree (`--root DIR`), or inside a mount namespace
//! whose /proc and /sys files are bind-mounted fixtures.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::daemon::metrics::{self, Stats};
use crate::facts::inventory::{self, InventoryError};
use crate::facts::parse::{self, CpuTimes, InterruptLine, ParseError, QueueRef};
use crate::facts::profile::ProfileSet;
use crate::host::fs::{FsError, KernelFs};
use crate::host::http::{self, HttpError};
use crate::host::netlink::NetlinkSnapshot;
use crate::provision::state::State;
use crate::rebalance::actuate;
use crate::rebalance::cpusets::{NicCpuSet, NicFacts, SetSource, nic_cpu_sets};
use crate::rebalance::policy::{Event, Move, Observation, Outcome, Policy, PolicyConfig, QueueObs};
use crate::rebalance::sample::{self, Accounting};
use crate::rebalance::{QueueSpec, Topology};

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A kernel file could not be read.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// /proc/stat or /proc/interrupts could not be parsed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Discovering the NICs and CPUs failed.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A file the loop needs every period is missing under the root.
    #[error("{path} does not exist under {root}: is --root pointing at a /proc and /sys tree?")]
    Missing { path: String, root: String },
    /// The async runtime could not start.
    #[error("cannot start the daemon's runtime: {0}")]
    Runtime(std::io::Error),
}

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where /proc and /sys are (`/` on a live host).
    pub root: PathBuf,
    pub period: Duration,
    /// None: no endpoint.
    pub metrics: Option<SocketAddr>,
    /// Sample twice, decide and act once, print the tick as JSON, exit.
    pub once: bool,
    /// Where `vportd apply` keeps its state, for the vPorts' provisioning metrics.
    pub state_dir: Option<PathBuf>,
    /// Per-NIC CPU sets, by PCI address.
    pub nic_cpus: BTreeMap<String, Vec<u32>>,
    /// CPUs never to put interrupts on (in addition to the kernel's isolated CPUs).
    pub avoid: Vec<u32>,
    /// Also point RPS/XPS of a moved queue at its new CPU.
    pub steering: bool,
    pub policy: PolicyConfig,
    /// The provisioning config: its vPorts on the software path (per the state file) are
    /// attached to the daemon's software switches (see [`crate::softpath`]).
    pub software: Option<crate::provision::config::Config>,
    /// Where `software` was read from: the daemon reads it again when the file changes, so
    /// that a vPort added by an edit and an apply gets its TAP (and its CPU set) without a
    /// restart.
    pub config_path: Option<PathBuf>,
}

/// A config file's identity, by what a rewrite changes: size, modification time and inode
/// (an editor's save-by-rename keeps neither the inode nor, always, the time).
fn file_stamp(path: &std::path::Path) -> Option<(u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
}

/// Follows the daemon's config file between periods.
struct ConfigWatch {
    path: PathBuf,
    stamp: Option<(u64, i64, i64, u64)>,
    /// The last error said, so that a broken file is reported once, not every period.
    said: Option<String>,
}

impl ConfigWatch {
    fn new(path: PathBuf) -> Self {
        let stamp = file_stamp(&path);
        Self {
            path,
            stamp,
            said: None,
        }
    }

    /// The config, when the file changed since the last look and parses. A file that no
    /// longer parses (or has gone) keeps the daemon on the config it has, said once.
    fn poll(&mut self) -> Option<crate::provision::config::Config> {
        let stamp = file_stamp(&self.path);
        if stamp == self.stamp {
            return None;
        }
        self.stamp = stamp;
        match crate::provision::config::load(&self.path) {
            Ok(c) => {
                self.said = None;
                eprintln!(
                    "vportd: {} changed: the software path and the vPorts' CPU sets follow it",
                    self.path.display()
                );
                Some(c)
            }
            Err(e) => {
                let msg = e.to_string();
                if self.said.as_ref() != Some(&msg) {
                    eprintln!(
                        "vportd: {} changed but is not used, the daemon keeps the config it has: {msg}",
                        self.path.display()
                    );
                    self.said = Some(msg);
                }
                None
            }
        }
    }
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
    cfg: DaemonConfig,
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

impl Rebalancer {
    pub fn new(cfg: DaemonConfig) -> Self {
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
                    .map_err(|e| eprintln!("vportd: no per-queue packet counts: {e}"))
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

    /// Takes a re-read provisioning config: the next tick learns the vPorts' queue groups
    /// and CPU sets afresh.
    pub fn set_software(&mut self, software: Option<crate::provision::config::Config>) {
        self.cfg.software = software;
        self.learned_from = (Vec::new(), String::new());
    }

    fn must_read(&self, path: &str) -> Result<String, DaemonError> {
        self.fs.read(path)?.ok_or_else(|| DaemonError::Missing {
            path: path.into(),
            root: self.fs.root().display().to_string(),
        })
    }

    fn read_sample(&self) -> Result<Sample, DaemonError> {
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
    fn relearn(&mut self, s: &Sample) -> Result<bool, DaemonError> {
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
        let facts: Vec<NicFacts> = inv
            .pci_functions
            .iter()
            .filter(|f| f.irqs.iter().any(|i| i.queue.is_some()))
            .map(|f| NicFacts {
                bdf: f.bdf.clone(),
                physfn: f.physfn.clone(),
                local_cpus: f.local_cpus.clone(),
                node: f.numa_node,
            })
            .chain(
                // A VF's PF has queue IRQs of its own almost always; when it has none, its
                // local CPUs still make the group's home.
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
            .collect();
        let (sets, problems) = nic_cpu_sets(&facts, &self.cfg.nic_cpus, &self.topo);
        for p in problems {
            eprintln!("vportd: {p}");
        }
        self.policy.set_homes(
            sets.iter()
                .filter(|(_, s)| s.source == SetSource::Local)
                .map(|(b, s)| (b.clone(), s.cpus.clone()))
                .collect(),
        );
        self.nic_sets = sets.clone();
        self.queues.clear();
        self.steering.clear();
        self.counters.clear();
        for f in &inv.pci_functions {
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
        // Each provisioned vPort's queues (a VF's own, or the PF queues steered to it)
        // as one group with the vPort's CPU set.
        // A state file that cannot be read leaves the vPorts ungrouped this time, said once.
        let vports = match self.cfg.state_dir.as_deref().map(State::load) {
            Some(Ok(state)) => {
                self.state_failed = None;
                state
            }
            Some(Err(e)) => {
                let msg = e.to_string();
                if self.state_failed.as_ref() != Some(&msg) {
                    eprintln!("vportd: the vPorts' queues are not grouped: {msg}");
                    self.state_failed = Some(msg);
                }
                State::default()
            }
            None => State::default(),
        };
        let vport_cpus = self
            .cfg
            .software
            .as_ref()
            .map(crate::provision::vport_cpus)
            .unwrap_or_default();
        let sets = crate::provision::state::queue_sets(&vports, &inv, &vport_cpus);
        let (vport_of, problems) =
            crate::rebalance::group_by_vport(&mut self.queues, &sets, &self.topo);
        for p in problems {
            eprintln!("vportd: {p}");
        }
        self.vport_of = vport_of;
        self.learned_from = (key_irqs, online);
        Ok(true)
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
                        eprintln!("vportd: no per-queue packet counts for this netdev: {e}");
                    }
                }
            }
        }
        out
    }

    /// Takes the first sample (loads need two).
    pub fn prime(&mut self) -> Result<(), DaemonError> {
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
    pub fn tick(&mut self, now_ms: u64, period_s: f64) -> Result<TickReport, DaemonError> {
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
        let packets = self.read_packets();
        let mut rows = Vec::new();
        let mut qobs = Vec::new();
        let n = self.queues.len();
        let window = AFFINITY_READS_PER_TICK.min(n);
        let from = if n == 0 { 0 } else { self.affinity_from % n };
        self.affinity_from = from + window;
        for (i, q) in self.queues.iter().enumerate() {
            let in_window = (i + n - from) % n.max(1) < window;
            let cached = self.affinity.get(&q.irq).filter(|_| !in_window).cloned();
            let (affinity, effective) = match cached {
                Some(c) => c,
                None => {
                    let read = self.read_affinity(q.irq);
                    self.affinity.insert(q.irq, read.clone());
                    read
                }
            };
            let l = loads.get(&q.irq).copied().unwrap_or_default();
            // Where it really runs: the effective CPU when there is exactly one,
            // else where its interrupts were counted, else the first allowed CPU.
            let cpu = match effective.as_slice() {
                [one] => Some(*one),
                _ => l.cpu.or_else(|| affinity.first().copied()),
            };
            rows.push(QueueRow {
                irq: q.irq,
                name: q.name.clone(),
                nic: q.nic.clone(),
                vport: self.vport_of.get(&q.irq).cloned(),
                cpu,
                affinity: affinity.clone(),
                interrupts: cur.intr.get(&q.irq).map(InterruptLine::total).unwrap_or(0),
                rate: l.rate,
                load: l.load,
                packets: self.counters.get(&q.irq).and_then(|(ifindex, qr)| {
                    use crate::host::ethtool_stats::Direction;
                    let per = packets.get(ifindex)?;
                    let rx = per.get(&(Direction::Rx, qr.index)).copied();
                    let tx = per.get(&(Direction::Tx, qr.index)).copied();
                    match qr.kind {
                        parse::QueueKind::Rx => rx,
                        parse::QueueKind::Tx => tx,
                        parse::QueueKind::Combined => match (rx, tx) {
                            (None, None) => None,
                            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
                        },
                    }
                }),
            });
            qobs.push(QueueObs {
                irq: q.irq,
                load: l.load,
                rate: l.rate,
                cpu,
                affinity,
            });
        }
        let obs = Observation {
            now_ms,
            cpu_busy: cpu_loads.iter().map(|(c, l)| (*c, l.busy)).collect(),
            queues: qobs,
        };
        let d = self.policy.decide(&self.topo, &self.queues, &obs);
        let mut moves = Vec::new();
        for m in d.moves {
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
            moves.push(MoveResult {
                mv: m,
                effective,
                errno,
                error,
                steering: steered,
            });
        }
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

/// The daemon: its tasks share one current-thread runtime.
pub struct Daemon {
    cfg: DaemonConfig,
}

impl Daemon {
    pub fn new(cfg: DaemonConfig) -> Self {
        Self { cfg }
    }

    /// Runs until SIGINT/SIGTERM (or one tick with `once`, whose report is returned).
    pub fn run(self) -> Result<Option<TickReport>, DaemonError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DaemonError::Runtime)?;
        rt.block_on(self.run_async())
    }

    async fn run_async(self) -> Result<Option<TickReport>, DaemonError> {
        let mut cfg = self.cfg;
        let mut watch = cfg.config_path.clone().map(ConfigWatch::new);
        let stats = Arc::new(Mutex::new(Stats::default()));
        // The software path lives as long as the daemon: its switches go with it, its TAPs
        // stay with their VMs (softpath::taps).
        let mut soft = match (&cfg.software, cfg.once) {
            (Some(c), false) => {
                let (sp, problems) =
                    crate::softpath::SoftPath::start_live(c, &KernelFs::at(&cfg.root))
                        .unwrap_or_else(|e| {
                            eprintln!("vportd: the software path does not start: {e}");
                            crate::softpath::SoftPath::start(&[], &|_| None, None)
                        });
                for p in problems {
                    eprintln!("vportd: {p}");
                }
                Some(sp)
            }
            _ => None,
        };
        let soft_view = soft.as_ref().map(crate::softpath::SoftPath::view);
        let mut reb = Rebalancer::new(cfg.clone());
        reb.prime()?;
        let start = Instant::now();
        if cfg.once {
            tokio::time::sleep(cfg.period).await;
            let r = reb.tick(start.elapsed().as_millis() as u64, cfg.period.as_secs_f64())?;
            for l in log_lines(&r) {
                eprintln!("vportd: {l}");
            }
            return Ok(Some(r));
        }
        let server = match cfg.metrics {
            Some(addr) => {
                let listener = http::bind(addr).await?;
                let (stats, state_dir) = (stats.clone(), cfg.state_dir.clone());
                let soft_view = soft_view.clone();
                let body = move || {
                    let vports = state_dir
                        .as_deref()
                        .map(State::load)
                        .and_then(Result::ok)
                        .unwrap_or_default();
                    let s = stats.lock().expect("metrics lock is never poisoned");
                    let mut text = metrics::render(&s, &vports);
                    if let Some(v) = &soft_view {
                        text.push_str(&metrics::render_switch(&v.snapshot()));
                    }
                    text
                };
                Some(tokio::spawn(http::serve(listener, body)))
            }
            None => None,
        };
        let mut interval = tokio::time::interval(cfg.period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let mut last = Instant::now();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(DaemonError::Runtime)?;
        let mut soft_problems: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
            let period_s = last.elapsed().as_secs_f64();
            last = Instant::now();
            if let Some(c) = watch.as_mut().and_then(ConfigWatch::poll) {
                reb.set_software(Some(c.clone()));
                cfg.software = Some(c);
            }
            // Software vPorts follow the state file (an apply or a hotplug reconcile moved
            // some) and trunks whose netdev came back are reopened.
            // A problem is said once, not every period, until it changes.
            if let (Some(sp), Some(c)) = (soft.as_mut(), cfg.software.as_ref()) {
                let problems: Vec<String> = sp
                    .refresh_live(c, &KernelFs::at(&cfg.root))
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                if problems != soft_problems {
                    for p in &problems {
                        eprintln!("vportd: {p}");
                    }
                    soft_problems = problems;
                }
            }
            // Off (`vportd ctl rebalance off`): keep the baseline fresh, decide nothing.
            if !crate::daemon::handlers::rebalance_enabled() {
                let _ = reb.prime();
                continue;
            }
            match reb.tick(start.elapsed().as_millis() as u64, period_s) {
                Ok(r) => {
                    for l in log_lines(&r) {
                        eprintln!("vportd: {l}");
                    }
                    stats
                        .lock()
                        .expect("metrics lock is never poisoned")
                        .record(&r);
                }
                // A torn read (a CPU going offline mid-read) is retried next period.
                Err(e) => eprintln!("vportd: this period is skipped: {e}"),
            }
        }
        if let Some(s) = server {
            s.abort();
        }
        drop(soft);
        Ok(None)
    }
}

/// `vportd daemon` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// The provisioning config: its state directory feeds the vPort metrics.
    #[arg(long, value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Read and write /proc and /sys below DIR instead of / (fixtures, replays).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The sampling and decision period.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub period_ms: u64,
    /// Where to serve Prometheus metrics (`off` for nowhere).
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9477")]
    pub metrics: String,
    /// Take two samples one period apart, act once, print the tick as JSON, exit.
    #[arg(long)]
    pub once: bool,
    /// Per-NIC CPU set, e.g. `0000:01:00.0=2-7` (repeatable).
    #[arg(long = "nic-cpus", value_name = "BDF=CPULIST")]
    pub nic_cpus: Vec<String>,
    /// CPUs never to put queue interrupts on (application cores), e.g. `0-3,16-19`.
    #[arg(long, value_name = "CPULIST")]
    pub avoid_cpus: Option<String>,
    /// Also point a moved queue's RPS/XPS masks at its new CPU.
    #[arg(long)]
    pub steering: bool,
    /// Upper threshold: a CPU busier than this sheds queues.
    #[arg(long, default_value_t = PolicyConfig::default().upper)]
    pub upper: f64,
    /// Lower threshold: a CPU idler than this for a while gives its queues away.
    #[arg(long, default_value_t = PolicyConfig::default().lower)]
    pub lower: f64,
    /// The control socket and hotplug (issue 7).
    #[command(flatten)]
    pub control: crate::daemon::handlers::ControlPlaneArgs,
}

/// Runs `vportd daemon`; errors carry the exit code (2: bad flags, 1: runtime).
pub fn main(a: DaemonArgs) -> Result<(), (u8, String)> {
    let bad = |m: String| (2u8, m);
    let metrics = match a.metrics.as_str() {
        "off" | "none" => None,
        addr => Some(addr.parse::<SocketAddr>().map_err(|e| {
            bad(format!(
                "--metrics {addr}: not an address like 127.0.0.1:9477 ({e}), or off"
            ))
        })?),
    };
    let mut nic_cpus = BTreeMap::new();
    for spec in &a.nic_cpus {
        let (bdf, list) = spec.split_once('=').ok_or_else(|| {
            bad(format!(
                "--nic-cpus {spec}: expected BDF=CPULIST, e.g. 0000:01:00.0=2-7"
            ))
        })?;
        let cpus = parse::cpulist(list).map_err(|e| bad(format!("--nic-cpus {spec}: {e}")))?;
        nic_cpus.insert(bdf.to_string(), cpus);
    }
    let avoid = match &a.avoid_cpus {
        Some(l) => parse::cpulist(l).map_err(|e| bad(format!("--avoid-cpus: {e}")))?,
        None => Vec::new(),
    };
    if !(0.0 < a.lower && a.lower < a.upper && a.upper <= 1.0) {
        return Err(bad(format!(
            "--lower {} and --upper {} must satisfy 0 < lower < upper <= 1",
            a.lower, a.upper
        )));
    }
    let software = match &a.config {
        Some(c) => Some(crate::provision::config::load(c).map_err(|e| bad(e.to_string()))?),
        None => None,
    };
    let state_dir = software.as_ref().map(|c| c.state_dir.clone());
    let policy = PolicyConfig {
        upper: a.upper,
        target: (a.upper - 0.1).max(a.lower + 0.05),
        lower: a.lower,
        ..PolicyConfig::default()
    };
    let cfg = DaemonConfig {
        root: a.root.clone(),
        period: Duration::from_millis(a.period_ms),
        metrics,
        once: a.once,
        state_dir,
        nic_cpus,
        avoid,
        steering: a.steering,
        policy,
        software,
        config_path: a.config.clone(),
    };
    // The control plane runs beside the rebalancer: socket, uevents, reconciles.
    let _control = match a.once {
        true => None,
        false => Some(
            crate::daemon::handlers::ControlPlane::start(&a.control, a.config.clone(), &a.root)
                .map_err(|e| (1u8, e.to_string()))?,
        ),
    };
    let report = Daemon::new(cfg).run().map_err(|e| (1u8, e.to_string()))?;
    if let Some(r) = report {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("tick reports serialize")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ConfigWatch;

    const GOOD: &str = "[[uplink]]\npci = \"0000:01:00.0\"\n";

    #[test]
    fn the_config_is_read_again_when_it_changes_and_kept_when_it_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.toml");
        std::fs::write(&path, GOOD).unwrap();
        let mut w = ConfigWatch::new(path.clone());
        assert!(w.poll().is_none(), "unchanged since the daemon read it");

        // Saved by rename, as editors do: a new inode, same size.
        let tmp = dir.path().join("host.toml.new");
        std::fs::write(&tmp, GOOD.replace("01:00.0", "02:00.0")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let c = w.poll().expect("a changed file that parses is taken");
        assert_eq!(c.uplinks.len(), 1);
        assert!(w.poll().is_none(), "taken once");

        // A broken file is not taken, and said once.
        std::fs::write(&path, "[[uplink]]\npci = 7\n").unwrap();
        assert!(w.poll().is_none());
        assert!(
            w.said.as_deref().unwrap_or("").contains("pci"),
            "{:?}",
            w.said
        );
        assert!(w.poll().is_none());

        // Mended: taken again.
        std::fs::write(&path, format!("{GOOD}\n")).unwrap();
        assert!(w.poll().is_some());
        assert!(w.said.is_none());

        // Gone: the daemon keeps what it has.
        std::fs::remove_file(&path).unwrap();
        assert!(w.poll().is_none());
        assert!(w.said.is_some());
    }
}
