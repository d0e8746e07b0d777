//! A trace-driven simulator: a model of the kernel that turns per-queue demand into
//! per-CPU served load, run in a closed loop with a contender that places the
//! queue interrupts. The policy sees only what the daemon would read (CPU busy and
//! interrupt time, interrupts per CPU) and goes through the same [`super::sample`]
//! code, so what is measured here is the real policy.
//!
//! The model, per 100 ms step:
//! - a queue with demand `d` (CPU-seconds per second when served on its NIC's node)
//!   costs `d * REMOTE_PENALTY` on a CPU of another node;
//! - a CPU's capacity is 1, less `SMT_PENALTY` times its sibling's load of the last
//!   step (two busy threads share one core);
//! - load above capacity is dropped work; interrupts are `d / COST_PER_INTERRUPT`.
//!
//! Contenders start from the same placement, the drivers' hint
//! (`cpumask_local_spread`, per device): *static* never changes it, *ours* runs
//! [`super::policy::Policy`] once per period.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::policy::{Event, Move, Observation, Outcome, Policy, PolicyConfig, QueueObs};
use super::sample::{self, CpuLoad};
use super::{QueueSpec, Topology};

/// CPU time per interrupt (10 us), the scenarios' unit of interrupt work.
pub const COST_PER_INTERRUPT: f64 = 10e-6;
/// Extra cost of serving a queue on a remote node.
pub const REMOTE_PENALTY: f64 = 1.3;
/// Capacity a thread loses when its SMT sibling is fully busy.
pub const SMT_PENALTY: f64 = 0.3;
const STEPS: u32 = 10;
const PERIOD_MS: u64 = 1000;
/// "Max load <= 0.85": the load target every scenario is judged against.
pub const LOAD_TARGET: f64 = 0.85;

/// A NIC (PF or VF) in a scenario.
#[derive(Debug, Clone)]
pub struct SimNic {
    pub name: String,
    /// The node it is really attached to (remote work is measured against this).
    pub real_node: u32,
    /// The node sysfs reports; None for -1.
    pub reported_node: Option<u32>,
    pub queues: u32,
}

/// Something that happens to the host during a scenario.
#[derive(Debug, Clone)]
pub enum SimEvent {
    /// Another writer points queue `queue` of `nic` at `cpu`.
    Foreign {
        nic: usize,
        queue: u32,
        cpu: u32,
    },
    /// A CPU goes offline; the kernel moves its interrupts.
    Offline(u32),
    /// `ethtool -L`: the NIC's IRQs are re-created, with new numbers.
    Channels {
        nic: usize,
        queues: u32,
    },
    /// A NIC appears (VF added) or disappears.
    AddNic(SimNic),
    RemoveNic(usize),
}

type Demand = Box<dyn Fn(f64, usize, u32) -> f64>;
type Background = Box<dyn Fn(f64, u32) -> f64>;

/// One scenario: a machine, NICs, demand over time, events and how it is judged.
pub struct Scenario {
    pub id: &'static str,
    pub title: &'static str,
    pub topo: Topology,
    pub nics: Vec<SimNic>,
    pub seconds: u32,
    /// Demand of queue `q` of NIC `n` at time `t` (seconds), in CPUs.
    pub demand: Demand,
    /// Non-interrupt load on CPU `c` at time `t` (applications, vCPUs).
    pub background: Background,
    pub events: Vec<(u32, SimEvent)>,
    /// Times (s) from which reaction and convergence are measured.
    pub marks: Vec<u32>,
    pub irq_accounting: bool,
    /// (nic, queue) whose affinity the kernel manages: writes fail with EPERM.
    pub managed: Vec<(usize, u32)>,
    /// CPUs whose vector space is full: writes naming them fail with ENOSPC.
    pub full: Vec<u32>,
    /// CPUs the operator asked to keep free (`--avoid-cpus`).
    pub avoid: Vec<u32>,
}

/// Who places the interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Contender {
    Static,
    Ours,
}

/// The figures of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    pub max_load_mean: f64,
    pub max_load_p95: f64,
    pub max_load_p99: f64,
    /// Mean over windows of max/mean load across CPUs serving queues.
    pub imbalance: f64,
    pub moves: u32,
    /// Moves back to a CPU the queue left within 30 s.
    pub ping_pong: u32,
    /// The most moves any one queue made within 10 periods.
    pub max_moves_per_queue_10p: u32,
    /// Periods from each mark to the first move (None: no move).
    pub reaction: Vec<Option<u32>>,
    /// Periods from each mark until 5 windows in a row have max load <= 0.85 and
    /// imbalance <= 1.25 (None: never).
    pub convergence: Vec<Option<u32>>,
    /// Moves more than 60 s after every mark (steady state), per 10 minutes.
    pub steady_moves_per_10min: f64,
    /// Share of queue work served on a node other than the NIC's.
    pub remote_share: f64,
    pub cpus_in_use: f64,
    /// CPU-seconds in use over the lower bound (ceil(work / 0.85) CPUs per window).
    pub cpus_over_bound: f64,
    /// CPU-seconds of work dropped above 100 %.
    pub dropped: f64,
    /// Failed writes by errno name.
    pub errors: BTreeMap<String, u32>,
    /// The most writes that failed with one errno on one IRQ (a retry storm if large).
    pub max_failed_writes_per_irq: u32,
    /// Periods from a foreign write to its detection (None: not detected).
    pub external_detected_after: Option<u32>,
    /// Moves of foreign-written IRQs after the foreign write (fights).
    pub fights: u32,
    /// Moves naming an offline CPU.
    pub offline_targets: u32,
}

#[derive(Debug, Clone)]
struct SimQueue {
    irq: u32,
    nic: usize,
    index: u32,
    cpu: u32,
    affinity: Vec<u32>,
    managed: bool,
}

/// A deterministic random source (splitmix64), so runs are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Deterministic noise in [-1, 1] for (t, n, q): demand functions stay pure.
fn noise(t: f64, n: usize, q: u32) -> f64 {
    let mut r = Rng::new(((t * 10.0).round() as u64) << 20 ^ (n as u64) << 10 ^ q as u64);
    r.next_u64();
    r.f64() * 2.0 - 1.0
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((p * (s.len() - 1) as f64).round() as usize).min(s.len() - 1);
    s[i]
}

struct World {
    topo: Topology,
    nics: Vec<Option<SimNic>>,
    queues: Vec<SimQueue>,
    next_irq: u32,
}

impl World {
    fn add_queues(&mut self, nic: usize) {
        let Some(n) = &self.nics[nic] else { return };
        for i in 0..n.queues {
            let cpu = self.topo.local_spread(i as usize, n.reported_node);
            self.queues.push(SimQueue {
                irq: self.next_irq,
                nic,
                index: i,
                cpu,
                affinity: vec![cpu],
                managed: false,
            });
            self.next_irq += 1;
        }
    }
}

/// What a run accumulates over its periods, summed up in [`Tally::finish`].
#[derive(Default)]
struct Tally {
    m: Metrics,
    maxes: Vec<f64>,
    imbs: Vec<f64>,
    stable: Vec<bool>,
    work: f64,
    remote: f64,
    in_use_sum: f64,
    bound_sum: f64,
    /// (second, irq, from, to)
    move_log: Vec<(u32, u32, Option<u32>, u32)>,
    failed: BTreeMap<(u32, String), u32>,
    /// (irq, second) of each foreign write.
    foreign: Vec<(u32, u32)>,
}

/// One period of the kernel model: per CPU slot, the period's sums.
struct Period {
    util_sum: Vec<f64>,
    busy_sum: Vec<f64>,
    irq_sum: Vec<f64>,
    qwork_cpu: Vec<f64>,
    /// Interrupts per IRQ and CPU.
    intr: BTreeMap<u32, BTreeMap<u32, u64>>,
}

/// Runs one scenario with one contender.
pub fn run(s: &Scenario, who: Contender) -> Metrics {
    let mut w = World {
        topo: s.topo.clone(),
        nics: s.nics.iter().cloned().map(Some).collect(),
        queues: Vec::new(),
        next_irq: 100,
    };
    for n in 0..w.nics.len() {
        w.add_queues(n);
    }
    w.mark_managed(s);
    let mut topo_view = s.topo.clone();
    topo_view.avoid = s.avoid.clone();
    let mut policy = Policy::new(PolicyConfig::default());
    let mut prev_util = vec![0.0; s.topo.slots()];
    let mut tally = Tally::default();

    for sec in 0..s.seconds {
        for (at, ev) in &s.events {
            if *at == sec {
                w.apply_event(s, ev, sec, &mut topo_view, &mut tally);
            }
        }
        let p = w.period(s, sec, &mut prev_util, &mut tally);
        tally.window(&w, &p);
        if who == Contender::Static {
            continue;
        }
        let now = (sec as u64 + 1) * PERIOD_MS;
        let (obs, specs) = w.observe(s, &p, now);
        let d = policy.decide(&topo_view, &specs, &obs);
        for e in &d.events {
            if let Event::External { irq, .. } = e
                && let Some((_, at)) = tally.foreign.iter().find(|(i, _)| i == irq)
                && tally.m.external_detected_after.is_none()
            {
                tally.m.external_detected_after = Some(sec + 1 - at);
            }
        }
        for mv in &d.moves {
            if let Some(outcome) = w.actuate(s, mv, sec, &mut tally) {
                policy.feedback(mv, outcome, now);
            }
        }
    }
    tally.finish(s)
}

impl World {
    fn mark_managed(&mut self, s: &Scenario) {
        for q in self.queues.iter_mut() {
            q.managed = s.managed.contains(&(q.nic, q.index));
        }
    }

    /// What happens to the host at second `sec`.
    fn apply_event(
        &mut self,
        s: &Scenario,
        ev: &SimEvent,
        sec: u32,
        topo_view: &mut Topology,
        tally: &mut Tally,
    ) {
        match ev {
            SimEvent::Foreign { nic, queue, cpu } => {
                if let Some(q) = self
                    .queues
                    .iter_mut()
                    .find(|q| q.nic == *nic && q.index == *queue)
                {
                    q.cpu = *cpu;
                    q.affinity = vec![*cpu];
                    tally.foreign.push((q.irq, sec));
                }
            }
            SimEvent::Offline(c) => {
                self.topo.cpus.retain(|x| x.id != *c);
                topo_view.cpus.retain(|x| x.id != *c);
                let node = s.topo.get(*c).map(|x| x.node);
                let fallback = self
                    .topo
                    .cpus
                    .iter()
                    .find(|x| Some(x.node) == node)
                    .map(|x| x.id)
                    .unwrap_or(self.topo.cpus[0].id);
                let all: Vec<u32> = self.topo.cpus.iter().map(|x| x.id).collect();
                for q in self.queues.iter_mut().filter(|q| q.cpu == *c) {
                    q.cpu = fallback;
                    q.affinity = all.clone();
                }
            }
            SimEvent::Channels { nic, queues } => {
                self.queues.retain(|q| q.nic != *nic);
                if let Some(n) = self.nics[*nic].as_mut() {
                    n.queues = *queues;
                }
                self.add_queues(*nic);
                self.mark_managed(s);
            }
            SimEvent::AddNic(n) => {
                self.nics.push(Some(n.clone()));
                self.add_queues(self.nics.len() - 1);
            }
            SimEvent::RemoveNic(n) => {
                self.queues.retain(|q| q.nic != *n);
                self.nics[*n] = None;
            }
        }
    }

    /// The kernel model over one period of `STEPS` steps: demand served where each queue
    /// points, remote and SMT penalties, work above capacity dropped.
    fn period(
        &self,
        s: &Scenario,
        sec: u32,
        prev_util: &mut Vec<f64>,
        tally: &mut Tally,
    ) -> Period {
        let slots = s.topo.slots();
        let mut p = Period {
            util_sum: vec![0.0; slots],
            busy_sum: vec![0.0; slots],
            irq_sum: vec![0.0; slots],
            qwork_cpu: vec![0.0; slots],
            intr: BTreeMap::new(),
        };
        let dt = 1.0 / STEPS as f64;
        for k in 0..STEPS {
            let t = sec as f64 + k as f64 * dt;
            let irq_load = self.irq_load(s, t, dt, &mut p, tally);
            let mut util = vec![0.0; slots];
            for c in &self.topo.cpus {
                let i = c.id as usize;
                let sib = self
                    .topo
                    .cpus
                    .iter()
                    .find(|x| x.core == c.core && x.id != c.id)
                    .map(|x| prev_util[x.id as usize])
                    .unwrap_or(0.0);
                let cap = 1.0 - SMT_PENALTY * f64::min(sib, 1.0);
                let bg = (s.background)(t, c.id);
                let demand = bg + irq_load[i];
                util[i] = demand / cap;
                if demand > cap {
                    tally.m.dropped += (demand - cap) * dt;
                }
                p.util_sum[i] += util[i] * dt;
                p.busy_sum[i] += util[i].min(1.0) * dt;
                p.irq_sum[i] += (irq_load[i] / cap).min(1.0) * dt;
                p.qwork_cpu[i] += irq_load[i] * dt;
            }
            *prev_util = util;
        }
        p
    }

    /// Each CPU slot's interrupt load at time `t`, the queues' interrupts counted.
    fn irq_load(
        &self,
        s: &Scenario,
        t: f64,
        dt: f64,
        p: &mut Period,
        tally: &mut Tally,
    ) -> Vec<f64> {
        let mut irq_load = vec![0.0; s.topo.slots()];
        for q in &self.queues {
            let nic = self.nics[q.nic]
                .as_ref()
                .expect("queues of removed NICs are gone");
            let d = (s.demand)(t, q.nic, q.index).max(0.0);
            let node = s.topo.get(q.cpu).map(|c| c.node).unwrap_or(0);
            let cost = if node == nic.real_node {
                d
            } else {
                tally.remote += d * dt;
                d * REMOTE_PENALTY
            };
            tally.work += d * dt;
            irq_load[q.cpu as usize] += cost;
            let n = (d * dt / COST_PER_INTERRUPT).round() as u64;
            *p.intr.entry(q.irq).or_default().entry(q.cpu).or_default() += n;
        }
        irq_load
    }

    /// What the daemon would read, through the daemon's own sampling code, and the queues
    /// as it would learn them.
    fn observe(&self, s: &Scenario, p: &Period, now: u64) -> (Observation, Vec<QueueSpec>) {
        let cpus: BTreeMap<u32, CpuLoad> = self
            .topo
            .cpus
            .iter()
            .map(|c| {
                let i = c.id as usize;
                let irq = if s.irq_accounting { p.irq_sum[i] } else { 0.0 };
                (
                    c.id,
                    CpuLoad {
                        busy: p.busy_sum[i],
                        irq,
                    },
                )
            })
            .collect();
        let irqs: Vec<u32> = self.queues.iter().map(|q| q.irq).collect();
        let (loads, _) = sample::queue_loads(&p.intr, &cpus, &irqs, 1.0, COST_PER_INTERRUPT);
        let obs = Observation {
            now_ms: now,
            cpu_busy: cpus.iter().map(|(c, l)| (*c, l.busy)).collect(),
            queues: self
                .queues
                .iter()
                .map(|q| {
                    let l = loads[&q.irq];
                    QueueObs {
                        irq: q.irq,
                        load: l.load,
                        rate: l.rate,
                        cpu: Some(q.cpu),
                        affinity: q.affinity.clone(),
                    }
                })
                .collect(),
        };
        let specs: Vec<QueueSpec> = self
            .queues
            .iter()
            .map(|q| {
                let n = self.nics[q.nic].as_ref().expect("live NIC");
                QueueSpec {
                    irq: q.irq,
                    name: format!("{}-TxRx-{}", n.name, q.index),
                    nic: n.name.clone(),
                    node: n.reported_node,
                    cpus: Vec::new(),
                }
            })
            .collect();
        (obs, specs)
    }

    /// Writes one move as the kernel would take it (EPERM for a managed IRQ, EINVAL for
    /// an offline CPU, ENOSPC for a full one); None for an IRQ that is gone.
    fn actuate(&mut self, s: &Scenario, mv: &Move, sec: u32, tally: &mut Tally) -> Option<Outcome> {
        let q = self.queues.iter_mut().find(|q| q.irq == mv.irq)?;
        let m = &mut tally.m;
        let errno = if q.managed {
            Some("EPERM")
        } else if !self.topo.is_online(mv.to) {
            m.offline_targets += 1;
            Some("EINVAL")
        } else if s.full.contains(&mv.to) {
            Some("ENOSPC")
        } else {
            None
        };
        Some(match errno {
            None => {
                q.cpu = mv.to;
                q.affinity = vec![mv.to];
                tally.move_log.push((sec, mv.irq, mv.from, mv.to));
                if tally.foreign.iter().any(|(i, _)| *i == mv.irq) {
                    m.fights += 1;
                }
                Outcome::Done {
                    effective: Some(mv.to),
                }
            }
            Some(e) => {
                *m.errors.entry(e.to_string()).or_default() += 1;
                *tally.failed.entry((mv.irq, e.to_string())).or_default() += 1;
                match e {
                    "EPERM" => Outcome::Managed,
                    "ENOSPC" => Outcome::CpuFull,
                    _ => Outcome::Failed,
                }
            }
        })
    }
}

impl Tally {
    /// One period's window: the busiest CPU, the imbalance among CPUs serving queues,
    /// whether it is stable, and the CPUs in use against their lower bound.
    fn window(&mut self, w: &World, p: &Period) {
        let loads: Vec<(u32, f64)> = w
            .topo
            .cpus
            .iter()
            .map(|c| (c.id, p.util_sum[c.id as usize]))
            .collect();
        let max = loads.iter().map(|l| l.1).fold(0.0, f64::max);
        let used: Vec<f64> = loads
            .iter()
            .filter(|(c, _)| p.qwork_cpu[*c as usize] > 0.005)
            .map(|l| l.1)
            .collect();
        let mean = used.iter().sum::<f64>() / used.len().max(1) as f64;
        let imb = if mean > 0.0 {
            used.iter().copied().fold(0.0, f64::max) / mean
        } else {
            1.0
        };
        self.maxes.push(max);
        self.imbs.push(imb);
        self.stable.push(max <= LOAD_TARGET && imb <= 1.25);
        let total_work: f64 = p.qwork_cpu.iter().sum();
        self.in_use_sum += used.len() as f64;
        if total_work > 0.0 {
            self.bound_sum += (total_work / LOAD_TARGET).ceil().max(1.0);
        }
    }

    /// The run's figures from what the periods accumulated.
    fn finish(mut self, s: &Scenario) -> Metrics {
        let m = &mut self.m;
        let n = self.maxes.len().max(1) as f64;
        m.max_load_mean = self.maxes.iter().sum::<f64>() / n;
        m.max_load_p95 = percentile(&self.maxes, 0.95);
        m.max_load_p99 = percentile(&self.maxes, 0.99);
        m.imbalance = self.imbs.iter().sum::<f64>() / n;
        m.moves = self.move_log.len() as u32;
        m.remote_share = if self.work > 0.0 {
            self.remote / self.work
        } else {
            0.0
        };
        m.cpus_in_use = self.in_use_sum / n;
        m.cpus_over_bound = if self.bound_sum > 0.0 {
            self.in_use_sum / self.bound_sum
        } else {
            1.0
        };
        m.max_failed_writes_per_irq = self.failed.values().copied().max().unwrap_or(0);
        self.move_figures(s);
        self.m
    }

    /// The figures of the move log: steady-state moves, ping-pong, moves per queue, and
    /// reaction and convergence after each mark.
    fn move_figures(&mut self, s: &Scenario) {
        let (m, move_log) = (&mut self.m, &self.move_log);
        let settling = |t: u32| s.marks.iter().any(|&mk| t >= mk && t < mk + 60);
        let steady_secs = (0..s.seconds).filter(|t| !settling(*t)).count().max(1);
        m.steady_moves_per_10min = move_log.iter().filter(|(t, ..)| !settling(*t)).count() as f64
            * 600.0
            / steady_secs as f64;
        for (i, (t, irq, _, to)) in move_log.iter().enumerate() {
            let back = move_log[..i]
                .iter()
                .any(|(t0, irq0, from0, _)| irq0 == irq && *from0 == Some(*to) && t - t0 < 30);
            m.ping_pong += back as u32;
            let recent = move_log[..=i]
                .iter()
                .filter(|(t0, irq0, ..)| irq0 == irq && t - t0 < 10)
                .count() as u32;
            m.max_moves_per_queue_10p = m.max_moves_per_queue_10p.max(recent);
        }
        for &mark in &s.marks {
            m.reaction.push(
                move_log
                    .iter()
                    .find(|(t, ..)| *t >= mark)
                    .map(|(t, ..)| t + 1 - mark),
            );
            let stable = &self.stable;
            let conv = (mark as usize..stable.len().saturating_sub(4))
                .find(|&w| stable[w..w + 5].iter().all(|x| *x))
                .map(|w| (w - mark as usize) as u32);
            m.convergence.push(conv);
        }
    }
}

fn nic(name: &str, node: u32, queues: u32) -> SimNic {
    SimNic {
        name: name.into(),
        real_node: node,
        reported_node: Some(node),
        queues,
    }
}

fn base(id: &'static str, title: &'static str, nics: Vec<SimNic>, seconds: u32) -> Scenario {
    Scenario {
        id,
        title,
        topo: Topology::synthetic(2, 8, 2),
        nics,
        seconds,
        demand: Box::new(|_, _, _| 0.0),
        background: Box::new(|_, _| 0.0),
        events: Vec::new(),
        marks: vec![0],
        irq_accounting: true,
        managed: Vec::new(),
        full: Vec::new(),
        avoid: Vec::new(),
    }
}

/// Toggles between hot and cold with dwell times of 0.5-5 periods, seeded per group.
fn alternating(seed: u64, seconds: u32) -> Vec<(f64, bool)> {
    let mut r = Rng::new(seed);
    let mut out = Vec::new();
    let (mut t, mut hot) = (0.0, seed.is_multiple_of(2));
    while t < seconds as f64 {
        out.push((t, hot));
        let choices = [0.5, 1.0, 2.0, 3.0, 5.0];
        t += choices[(r.next_u64() % 5) as usize];
        hot = !hot;
    }
    out
}

fn is_hot(sched: &[(f64, bool)], t: f64) -> bool {
    let i = sched.partition_point(|(s, _)| *s <= t);
    i > 0 && sched[i - 1].1
}

/// The eight scenarios of docs/rebalance.md (S5 and S7 in three parts each).
pub fn scenarios() -> Vec<Scenario> {
    let mut v = Vec::new();

    let mut s = base(
        "S1",
        "elephant 1.2 CPU on A/q0 + light queues; moves to A/q5 at 150 s",
        vec![nic("A", 0, 8), nic("B", 0, 8)],
        300,
    );
    s.demand = Box::new(|t, n, q| {
        let e = if t < 150.0 { 0 } else { 5 };
        if n == 0 && q == e { 1.2 } else { 0.05 }
    });
    s.marks = vec![0, 150];
    v.push(s);

    let mut s = base(
        "S2",
        "mice on 16 queues at 30/60/90 % of 8 cores, +-10 % noise",
        vec![nic("A", 0, 16)],
        1800,
    );
    s.demand = Box::new(|t, n, q| {
        let share = if t < 600.0 {
            0.3
        } else if t < 1200.0 {
            0.6
        } else {
            0.9
        };
        share * 8.0 / 16.0 * (1.0 + 0.1 * noise(t, n, q))
    });
    s.marks = vec![0, 600, 1200];
    v.push(s);

    let mut s = base(
        "S3",
        "diurnal 0.3 -> 6 -> 0.3 CPU over 32 queues (2 NICs)",
        vec![nic("A", 0, 16), nic("B", 0, 16)],
        1200,
    );
    s.demand = Box::new(|t, n, q| {
        let total = 0.3 + 5.7 * (1.0 - (2.0 * std::f64::consts::PI * t / 1200.0).cos()) / 2.0;
        total / 32.0 * (1.0 + 0.05 * noise(t, n, q))
    });
    v.push(s);

    let mut s = base(
        "S4",
        "hot VM: 4 VFs x 4 queues idle, then 0.5 CPU per queue at 120 s",
        (0..4).map(|i| nic(&format!("vf{i}"), 0, 4)).collect(),
        300,
    );
    s.demand = Box::new(|t, _, _| if t < 120.0 { 0.005 } else { 0.5 });
    s.marks = vec![120];
    v.push(s);

    let mut s = base(
        "S5a",
        "NIC on node 1 reports numa_node -1; 16 queues x 0.3",
        vec![SimNic {
            reported_node: None,
            ..nic("A", 1, 16)
        }],
        300,
    );
    s.demand = Box::new(|t, n, q| 0.3 * (1.0 + 0.05 * noise(t, n, q)));
    v.push(s);

    let mut s = base(
        "S5b",
        "local node 70 % busy; 16 queues x 0.2",
        vec![nic("A", 0, 16)],
        300,
    );
    let topo = s.topo.clone();
    s.demand = Box::new(|t, n, q| 0.2 * (1.0 + 0.05 * noise(t, n, q)));
    s.background = Box::new(move |_, c| {
        // 0.55 of work per thread reads as ~70 % busy once both threads share a core.
        if topo.get(c).is_some_and(|x| x.node == 0) {
            0.55
        } else {
            0.0
        }
    });
    v.push(s);

    let mut s = base(
        "S5c",
        "VM vCPUs busy on node 1; NIC on node 0, 8 queues x 0.3",
        vec![nic("A", 0, 8)],
        300,
    );
    let topo = s.topo.clone();
    s.demand = Box::new(|t, n, q| 0.3 * (1.0 + 0.05 * noise(t, n, q)));
    s.background = Box::new(move |_, c| {
        if topo.get(c).is_some_and(|x| x.node == 1) {
            0.6
        } else {
            0.0
        }
    });
    v.push(s);

    let mut s = base(
        "S6",
        "2 groups x 8 queues alternating hot 0.6 / cold at 0.5-5 periods + microbursts",
        vec![nic("A", 0, 8), nic("B", 0, 8)],
        900,
    );
    let (ga, gb) = (alternating(7, 900), alternating(8, 900));
    s.demand = Box::new(move |t, n, q| {
        let hot = is_hot(if n == 0 { &ga } else { &gb }, t);
        let burst = noise(t, n, q) > 0.98;
        (if hot { 0.6 } else { 0.02 }) + if burst { 1.0 } else { 0.0 }
    });
    v.push(s);

    let mut s = base(
        "S7a",
        "apps on half of node 0 (CPUs 0-3,16-19 at 0.6), asked to avoid them; 16 x 0.3",
        vec![nic("A", 0, 16)],
        300,
    );
    s.demand = Box::new(|t, n, q| 0.3 * (1.0 + 0.05 * noise(t, n, q)));
    s.background = Box::new(|_, c| {
        if c < 4 || (16..20).contains(&c) {
            0.6
        } else {
            0.0
        }
    });
    s.avoid = vec![0, 1, 2, 3, 16, 17, 18, 19];
    v.push(s);

    let mut s = base(
        "S7b",
        "another writer moves 2 IRQs to CPU 9 at 100 s; 16 x 0.2",
        vec![nic("A", 0, 16)],
        300,
    );
    s.demand = Box::new(|t, n, q| 0.2 * (1.0 + 0.05 * noise(t, n, q)));
    s.events = vec![
        (
            100,
            SimEvent::Foreign {
                nic: 0,
                queue: 0,
                cpu: 9,
            },
        ),
        (
            100,
            SimEvent::Foreign {
                nic: 0,
                queue: 1,
                cpu: 9,
            },
        ),
    ];
    s.marks = vec![100];
    v.push(s);

    let mut s = base(
        "S7c",
        "no IRQ time accounting; S4's hot VM",
        (0..4).map(|i| nic(&format!("vf{i}"), 0, 4)).collect(),
        300,
    );
    s.demand = Box::new(|t, _, _| if t < 120.0 { 0.005 } else { 0.5 });
    s.marks = vec![120];
    s.irq_accounting = false;
    v.push(s);

    let mut s = base(
        "S8",
        "idle then 16 x 0.35 at 60 s; EPERM on 2 IRQs, ENOSPC on CPU 3, CPU 5 offline at 100 s, -L 16->8->16 at 150/200 s, VF add/remove",
        vec![nic("A", 0, 16)],
        300,
    );
    s.demand = Box::new(|t, n, q| {
        // Idle first (the policy coalesces, and meets the managed IRQs), then busy.
        let base = if t < 60.0 {
            0.01
        } else if n == 1 {
            0.3
        } else {
            0.35
        };
        base * (1.0 + 0.05 * noise(t, n, q))
    });
    s.managed = vec![(0, 0), (0, 1)];
    s.full = vec![3];
    s.events = vec![
        (100, SimEvent::Offline(5)),
        (
            120,
            SimEvent::AddNic(SimNic {
                name: "vf0".into(),
                real_node: 0,
                reported_node: Some(0),
                queues: 4,
            }),
        ),
        (150, SimEvent::Channels { nic: 0, queues: 8 }),
        (200, SimEvent::Channels { nic: 0, queues: 16 }),
        (250, SimEvent::RemoveNic(1)),
    ];
    s.marks = vec![60, 100, 120, 150, 200, 250];
    v.push(s);
    v
}

/// Both contenders on one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub id: &'static str,
    pub title: &'static str,
    pub static_: Metrics,
    pub ours: Metrics,
}

pub fn compare(s: &Scenario) -> Comparison {
    Comparison {
        id: s.id,
        title: s.title,
        static_: run(s, Contender::Static),
        ours: run(s, Contender::Ours),
    }
}

fn periods(v: &[Option<u32>]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(|x| x.map(|p| p.to_string()).unwrap_or_else(|| "never".into()))
        .collect::<Vec<_>>()
        .join("/")
}

/// The comparison table, one block per scenario.
pub fn table(rows: &[Comparison]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<6} {:>5} {:>5} {:>5} {:>5} {:>5} {:>3} {:>5} {:>11} {:>11} {:>6} {:>5} {:>5} {:>7} errors",
        "scen",
        "who",
        "p95",
        "p99",
        "imbal",
        "moves",
        "pp",
        "m10",
        "st10m",
        "react",
        "converge",
        "remote",
        "cpus",
        "/lb",
        "dropped",
    );
    for r in rows {
        let _ = writeln!(out, "{}: {}", r.id, r.title);
        for (who, m) in [("static", &r.static_), ("ours", &r.ours)] {
            let errors = if m.errors.is_empty() {
                "-".to_string()
            } else {
                m.errors
                    .iter()
                    .map(|(e, n)| format!("{e}={n}"))
                    .collect::<Vec<_>>()
                    .join(",")
                    + &format!(" (max/irq {})", m.max_failed_writes_per_irq)
            };
            let (react, conv) = if who == "static" {
                ("-".to_string(), periods(&m.convergence))
            } else {
                (periods(&m.reaction), periods(&m.convergence))
            };
            let _ = writeln!(
                out,
                "{:<5} {:<6} {:>5.2} {:>5.2} {:>5.2} {:>5} {:>5} {:>3} {:>5.1} {:>11} {:>11} {:>5.1}% {:>5.1} {:>5.2} {:>7.1} {}",
                "",
                who,
                m.max_load_p95,
                m.max_load_p99,
                m.imbalance,
                m.moves,
                m.ping_pong,
                m.max_moves_per_queue_10p,
                m.steady_moves_per_10min,
                react,
                conv,
                m.remote_share * 100.0,
                m.cpus_in_use,
                m.cpus_over_bound,
                m.dropped,
                errors
            );
        }
        let _ = writeln!(out, "      verdict: {}", verdict(r).join("; "));
    }
    out
}

/// Checks against the scenario targets, as "ok ..." or "MISS ...".
pub fn verdict(r: &Comparison) -> Vec<String> {
    let mut v = Checks(Vec::new());
    let (s, o) = (&r.static_, &r.ours);
    match r.id {
        "S1" => {
            v.check(
                o.dropped < s.dropped,
                format!("dropped {:.1} < static {:.1}", o.dropped, s.dropped),
            );
            v.check(
                o.reaction.iter().all(|x| x.is_some_and(|p| p <= 2)),
                format!("reaction {} <= 2 periods", periods(&o.reaction)),
            );
            v.check(o.ping_pong == 0, format!("ping-pong {}", o.ping_pong));
        }
        "S2" | "S3" => v.load_targets(r.id, s, o),
        "S4" | "S7c" => v.reaction_targets(r.id, s, o),
        "S5a" | "S5b" | "S5c" => v.numa_targets(r.id, s, o),
        "S6" | "S7a" | "S7b" | "S8" => v.churn_targets(r.id, s, o),
        _ => {}
    }
    v.0
}

/// A verdict's lines.
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: String) {
        self.0
            .push(format!("{} {what}", if ok { "ok" } else { "MISS" }));
    }

    /// S2 (steady load) and S3 (packing): the busiest CPU, churn, and CPUs in use.
    fn load_targets(&mut self, id: &str, s: &Metrics, o: &Metrics) {
        if id == "S2" {
            self.check(
                o.max_load_p99 <= s.max_load_p99.max(LOAD_TARGET),
                format!("p99 {:.2} not above max(static, 0.85)", o.max_load_p99),
            );
            self.check(
                o.steady_moves_per_10min <= 1.0,
                format!(
                    "{:.1} steady-state moves per 10 min <= 1",
                    o.steady_moves_per_10min
                ),
            );
            self.check(
                o.imbalance <= 1.2,
                format!("imbalance {:.2} <= 1.2", o.imbalance),
            );
            return;
        }
        self.check(
            o.cpus_over_bound < s.cpus_over_bound,
            format!(
                "CPUs/bound {:.2} < static {:.2}",
                o.cpus_over_bound, s.cpus_over_bound
            ),
        );
        self.check(
            o.cpus_over_bound <= 1.3,
            format!("CPUs/bound {:.2} <= 1.3", o.cpus_over_bound),
        );
        self.check(
            o.max_load_p99 <= 0.85,
            format!("p99 {:.2} <= 0.85", o.max_load_p99),
        );
    }

    /// S4 and S7c: a step in load answered in one period and settled within three.
    fn reaction_targets(&mut self, id: &str, s: &Metrics, o: &Metrics) {
        if id == "S4" {
            self.check(
                o.max_load_p99 < s.max_load_p99,
                format!("p99 {:.2} < static {:.2}", o.max_load_p99, s.max_load_p99),
            );
        }
        self.check(
            o.reaction[0] == Some(1),
            format!("reaction {}", periods(&o.reaction)),
        );
        self.check(
            o.convergence[0].is_some_and(|c| c <= 3),
            format!("converged in {} <= 3", periods(&o.convergence)),
        );
    }

    /// S5a-c: work kept on the NIC's node, spilled only when it must.
    fn numa_targets(&mut self, id: &str, s: &Metrics, o: &Metrics) {
        match id {
            "S5a" => {
                self.check(
                    o.remote_share < s.remote_share,
                    format!(
                        "remote {:.1}% < static {:.1}%",
                        o.remote_share * 100.0,
                        s.remote_share * 100.0
                    ),
                );
                self.check(
                    o.remote_share <= 0.05,
                    format!("remote {:.1}% <= 5%", o.remote_share * 100.0),
                );
            }
            "S5b" => {
                self.check(
                    o.dropped <= s.dropped,
                    format!("dropped {:.1} <= static {:.1}", o.dropped, s.dropped),
                );
                self.check(
                    true,
                    format!("spilled {:.1}% remote", o.remote_share * 100.0),
                );
            }
            _ => self.check(
                o.remote_share <= 0.05,
                format!("remote {:.1}%", o.remote_share * 100.0),
            ),
        }
    }

    /// S6-S8: bursts without ping-pong, other writers left alone, failed writes not
    /// retried into a storm.
    fn churn_targets(&mut self, id: &str, s: &Metrics, o: &Metrics) {
        match id {
            "S6" => {
                self.check(
                    o.dropped < s.dropped || o.max_load_p99 < s.max_load_p99,
                    format!(
                        "dropped {:.1} vs static {:.1}, p99 {:.2} vs {:.2}",
                        o.dropped, s.dropped, o.max_load_p99, s.max_load_p99
                    ),
                );
                self.check(o.ping_pong == 0, format!("ping-pong {}", o.ping_pong));
                self.check(
                    o.max_moves_per_queue_10p <= 1,
                    format!(
                        "{} moves per queue per 10 periods",
                        o.max_moves_per_queue_10p
                    ),
                );
            }
            "S7a" => self.check(
                o.dropped < s.dropped || o.max_load_p99 < s.max_load_p99,
                format!("p99 {:.2} vs static {:.2}", o.max_load_p99, s.max_load_p99),
            ),
            "S7b" => {
                self.check(
                    o.external_detected_after == Some(1),
                    format!("detected after {:?} period(s)", o.external_detected_after),
                );
                self.check(o.fights == 0, format!("{} fights", o.fights));
            }
            _ => {
                self.check(
                    o.max_failed_writes_per_irq <= 1,
                    format!(
                        "at most {} failed write(s) per IRQ and errno",
                        o.max_failed_writes_per_irq
                    ),
                );
                self.check(
                    o.offline_targets == 0,
                    format!("{} moves to an offline CPU", o.offline_targets),
                );
            }
        }
    }
}

/// Runs every scenario; the rows of [`table`].
pub fn run_all() -> Vec<Comparison> {
    scenarios().iter().map(compare).collect()
}
