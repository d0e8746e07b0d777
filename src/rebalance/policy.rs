//! The rebalance policy: per-queue and per-CPU loads in, interrupt moves with reasons
//! out. Pure and deterministic: the time is part of the input, and the only state is
//! the history the policy keeps between ticks, so a trace replays to the same moves.
//!
//! The shape is Hyper-V's dynamic VMQ, a threshold controller per CPU:
//! - a CPU above `upper` sheds queues (the smaller ones first, never the one
//!   queue that is the load by itself) to the nearest CPU that stays under `target`;
//! - a CPU under `lower` for `coalesce_after` periods gives its queues back to their
//!   NIC's home CPU or another CPU already serving queues, so idle cores can sleep;
//! - nearest means: the NIC's NUMA node, then physical cores before SMT siblings,
//!   then not CPU 0, then CPUs already in use (packing) before idle ones.
//!
//! Hysteresis, so that nothing ping-pongs: each queue's load is a peak that decays
//! slowly (a queue that was hot a few periods ago still counts as hot), a moved queue
//! stays put for `dwell_ms`, and it never returns within `return_ms` to a CPU it left.
//!
//! [`Policy::decide`] is these rules in order, each a function over one tick's tables:
//! the queues' history (peaks, other writers, node costs), the CPUs' estimates, hard CPU
//! sets, spread, NUMA home, coalesce.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{QueueSpec, Topology};

/// Thresholds and timings. Loads are fractions of one CPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyConfig {
    /// A CPU above this sheds queues.
    pub upper: f64,
    /// Moves never fill a CPU beyond this; the gap to `upper` absorbs noise.
    pub target: f64,
    /// A CPU below this for `coalesce_after` periods gives its queues away.
    pub lower: f64,
    pub coalesce_after: u32,
    /// Per-period decay of a queue's peak load (0.85: a spike counts for ~15 periods).
    pub peak_decay: f64,
    /// A moved queue stays where it was put for this long...
    pub dwell_ms: u64,
    /// ...unless its CPU drops work (above 100 %), and then after this long.
    pub emergency_dwell_ms: u64,
    /// A queue never goes back within this long to a CPU it left.
    pub return_ms: u64,
    /// After another writer changed an IRQ's affinity, leave that IRQ alone this long.
    pub external_backoff_ms: u64,
    /// A CPU whose vectors are full (ENOSPC) is not a destination for this long.
    pub full_cpu_ms: u64,
    /// First and largest delay before retrying an IRQ whose write failed otherwise.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// At most this many moves per tick (no storms, even after a topology change).
    pub max_moves_per_tick: usize,
    /// Keep interrupts off CPU 0 (housekeeping, timers) when anything else fits.
    pub avoid_cpu0: bool,
    /// CPU time per interrupt assumed before a queue's own cost is learned.
    pub cost_per_interrupt_s: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            upper: 0.80,
            target: 0.70,
            lower: 0.25,
            coalesce_after: 10,
            peak_decay: 0.85,
            dwell_ms: 10_000,
            emergency_dwell_ms: 3_000,
            return_ms: 30_000,
            external_backoff_ms: 300_000,
            full_cpu_ms: 60_000,
            retry_base_ms: 1_000,
            retry_max_ms: 60_000,
            max_moves_per_tick: 32,
            avoid_cpu0: true,
            cost_per_interrupt_s: 10e-6,
        }
    }
}

/// A queue lighter than this (fraction of a CPU) is never spread: it would relieve
/// nothing and only cost a move.
const MIN_MOVE_LOAD: f64 = 0.01;

/// Why a queue moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Its CPU was above the upper threshold.
    Spread,
    /// Its CPU was below the lower threshold: packed onto a CPU already in use.
    Coalesce,
    /// It ran on another NUMA node than its NIC and the NIC's node has room.
    Numa,
    /// Its affinity allowed CPUs outside its hard CPU set (`--nic-cpus`, or its vPort's
    /// `cpus`): a hard limit holds whatever the load, so it is brought inside at once.
    CpuSet,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Spread => "spread",
            Reason::Coalesce => "coalesce",
            Reason::Numa => "numa",
            Reason::CpuSet => "cpu_set",
        }
    }
}

/// One decision: point `irq` at CPU `to`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Move {
    pub irq: u32,
    pub from: Option<u32>,
    pub to: u32,
    pub reason: Reason,
    /// The queue's load as the policy counted it.
    pub load: f64,
}

/// Something the policy noticed that is not a move.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Another writer (irqbalance, tuned, a person) changed an IRQ's affinity. The
    /// policy adopts it and leaves the IRQ alone for `external_backoff_ms`.
    External {
        irq: u32,
        was: Vec<u32>,
        now: Vec<u32>,
    },
    /// A NIC reports no NUMA node; the policy measured which node serves it cheaper.
    NodeGuessed { nic: String, node: u32 },
}

/// One queue in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueObs {
    pub irq: u32,
    /// Fraction of a CPU spent serving it.
    pub load: f64,
    /// Interrupts per second.
    pub rate: f64,
    /// Where it ran (effective affinity, or where its interrupts were counted).
    pub cpu: Option<u32>,
    /// `smp_affinity_list` as read: a change nobody here made is another writer.
    pub affinity: Vec<u32>,
}

/// Everything the policy sees in one tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observation {
    /// Milliseconds on a monotonic clock; the policy never reads a clock.
    pub now_ms: u64,
    /// Busy fraction per online CPU.
    pub cpu_busy: BTreeMap<u32, f64>,
    pub queues: Vec<QueueObs>,
}

/// What came of a move, as the actuator found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Written; `effective` is where the kernel really sends it now.
    Done { effective: Option<u32> },
    /// EPERM/EIO: the kernel manages this IRQ's affinity. Never retried.
    Managed,
    /// ENOSPC: the destination CPU has no free vectors.
    CpuFull,
    /// Anything else: retried after a bounded backoff.
    Failed,
}

/// One tick's output.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    pub moves: Vec<Move>,
    pub events: Vec<Event>,
    /// Each online CPU's estimated load at the start of the tick (its queues' decaying peaks
    /// plus its non-queue load): what `upper` and `lower` were judged against. It runs ahead
    /// of the measured busy share while a queue's peak outlives its load, so a spread can
    /// come before the CPU is measured above `upper`; exported so that a reader can see why.
    pub estimates: BTreeMap<u32, f64>,
}

#[derive(Debug, Clone, Default)]
struct IrqState {
    peak: f64,
    moved_at: Option<u64>,
    /// CPUs this IRQ left, and when (the newest few).
    left: Vec<(u32, u64)>,
    /// The affinity read last tick.
    seen: Option<Vec<u32>>,
    /// The affinity we wrote, until the kernel shows it.
    ours: Option<Vec<u32>>,
    frozen_until: u64,
    /// How many times another writer changed this IRQ: each time the policy stays away
    /// twice as long, so a persistent writer (irqbalance every 10 s) wins without a fight.
    external: u32,
    managed: bool,
    failures: u32,
    retry_at: u64,
    /// CPU seconds per interrupt, learned while its CPU had room. On a saturated
    /// CPU the measured share is censored (every queue gets a slice of 100 %), so
    /// the demand is estimated as rate times this cost instead.
    cost: Option<f64>,
}

/// Cost per interrupt by node, to place a NIC whose node the firmware hides.
#[derive(Debug, Clone, Default)]
struct NodeCost {
    by_node: BTreeMap<u32, f64>,
    guess: Option<u32>,
}

/// The policy and its history.
#[derive(Debug, Clone)]
pub struct Policy {
    pub cfg: PolicyConfig,
    irqs: HashMap<u32, IrqState>,
    low_streak: HashMap<u32, u32>,
    full_until: HashMap<u32, u64>,
    nodes: HashMap<String, NodeCost>,
    /// Each NIC's home CPUs (by PCI address; see [`super::cpusets`]): filled first, left
    /// only by the excess, like a NUMA node.
    homes: HashMap<String, Vec<u32>>,
}

/// Preference of a destination, lower is better: remote, the source's SMT
/// sibling, a secondary thread, CPU 0, idle.
type Rank = (u8, u8, u8, u8, u8);

/// Per-tick working view of one queue.
struct Q<'a> {
    spec: &'a QueueSpec,
    cpu: Option<u32>,
    peak: f64,
    node: Option<u32>,
    movable: bool,
    moved: bool,
    /// Its affinity or the CPU it runs on lies outside its hard CPU set.
    outside: bool,
}

/// One tick's working tables, which each rule reads and the moves update.
struct Tick<'a> {
    topo: &'a Topology,
    now: u64,
    qs: Vec<Q<'a>>,
    /// Each CPU slot's estimated load, updated by every move.
    est: Vec<f64>,
    /// Queues on each CPU slot, updated by every move.
    nqueues: Vec<u32>,
    /// Each CPU slot's measured busy share.
    busy: Vec<f64>,
    /// Queues by the CPU they started the tick on.
    by_cpu: Vec<Vec<usize>>,
    moves: Vec<Move>,
    /// At most this many moves.
    budget: usize,
}

/// Another writer's change of an IRQ's affinity (one we did not make, and not the
/// kernel's when all its CPUs went offline) is an event, and the policy leaves the IRQ
/// alone for the backoff, doubled for each further change.
#[allow(clippy::too_many_arguments)]
fn notice_writer(
    cfg: &PolicyConfig,
    st: &mut IrqState,
    topo: &Topology,
    irq: u32,
    affinity: &[u32],
    now: u64,
    events: &mut Vec<Event>,
) {
    if let Some(seen) = &st.seen
        && seen.as_slice() != affinity
    {
        let ours = st.ours.as_deref() == Some(affinity);
        // The kernel rewrites the affinity of an IRQ whose CPUs all went
        // offline: that is not another writer.
        let forced = seen.iter().all(|c| !topo.is_online(*c));
        if !ours && !forced {
            events.push(Event::External {
                irq,
                was: seen.clone(),
                now: affinity.to_vec(),
            });
            st.external = st.external.saturating_add(1);
            st.frozen_until = now
                + cfg
                    .external_backoff_ms
                    .saturating_mul(1 << (st.external - 1).min(6));
        }
        st.ours = None;
    }
    st.seen = Some(affinity.to_vec());
}

impl Policy {
    pub fn new(cfg: PolicyConfig) -> Self {
        Self {
            cfg,
            irqs: HashMap::new(),
            low_streak: HashMap::new(),
            full_until: HashMap::new(),
            nodes: HashMap::new(),
            homes: HashMap::new(),
        }
    }

    /// Sets each NIC's home CPUs (the default per-NIC CPU sets); a NIC without one has
    /// only its NUMA node as home.
    pub fn set_homes(&mut self, homes: HashMap<String, Vec<u32>>) {
        self.homes = homes;
    }

    /// IRQs left alone now because another writer changed them.
    pub fn yielded(&self, now_ms: u64) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .irqs
            .iter()
            .filter(|(_, s)| s.frozen_until > now_ms)
            .map(|(i, _)| *i)
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether `cpu` is away from the queue's home: another NUMA node than its NIC's, or
    /// outside its NIC's home CPUs. A queue with a hard CPU set (a vPort's `cpus`,
    /// `--nic-cpus`) has that set as its home: whoever chose it chose the node too, and
    /// the NIC's node or default home must not pull the queue against it.
    fn away(&self, q: &Q, cpu: &super::Cpu) -> bool {
        if !q.spec.cpus.is_empty() {
            return false;
        }
        q.node.is_some_and(|n| n != cpu.node)
            || self
                .homes
                .get(&q.spec.nic)
                .is_some_and(|h| !h.contains(&cpu.id))
    }

    /// The NUMA node the policy uses for a NIC: reported, or measured.
    pub fn node_of(&self, spec: &QueueSpec) -> Option<u32> {
        spec.node
            .or_else(|| self.nodes.get(&spec.nic).and_then(|n| n.guess))
    }

    /// True when the IRQ was found kernel-managed (never written again).
    pub fn is_managed(&self, irq: u32) -> bool {
        self.irqs.get(&irq).is_some_and(|s| s.managed)
    }

    /// Decides this tick's moves. `queues` are the IRQs the policy may move, with
    /// their NIC; `obs` is what the last period measured. The rules run in order, each on
    /// what the ones before left: the queues' history (hysteresis), the per-CPU estimates,
    /// hard CPU sets, spread, NUMA home, coalesce.
    pub fn decide(&mut self, topo: &Topology, queues: &[QueueSpec], obs: &Observation) -> Decision {
        let now = obs.now_ms;
        let mut events = Vec::new();
        let by_irq: HashMap<u32, &QueueObs> = obs.queues.iter().map(|q| (q.irq, q)).collect();
        self.irqs.retain(|irq, _| by_irq.contains_key(irq));
        self.full_until.retain(|_, until| *until > now);

        let mut qs: Vec<Q> = Vec::with_capacity(queues.len());
        for spec in queues {
            if let Some(o) = by_irq.get(&spec.irq) {
                qs.push(self.observe(topo, spec, o, obs, &mut events));
            }
        }
        self.guess_nodes(&mut events);
        for q in qs.iter_mut() {
            q.node = self.node_of(q.spec);
        }
        let mut t = self.estimate(topo, obs, &by_irq, qs);
        let estimates: BTreeMap<u32, f64> = topo
            .cpus
            .iter()
            .map(|c| (c.id, t.est[c.id as usize]))
            .collect();

        self.hard_cpu_sets(&mut t);
        self.spread(&mut t);
        self.numa_home(&mut t);
        self.coalesce(&mut t);
        Decision {
            moves: t.moves,
            events,
            estimates,
        }
    }

    /// Hysteresis, one queue: its decaying peak (the demand of a saturated CPU's queue from
    /// its learned cost per interrupt), another writer's change noticed and backed off
    /// from, its node's cost learned, and whether it may move this tick.
    fn observe<'a>(
        &mut self,
        topo: &Topology,
        spec: &'a QueueSpec,
        o: &QueueObs,
        obs: &Observation,
        events: &mut Vec<Event>,
    ) -> Q<'a> {
        let now = obs.now_ms;
        let cfg = &self.cfg;
        let st = self.irqs.entry(spec.irq).or_default();
        let saturated = o
            .cpu
            .and_then(|c| obs.cpu_busy.get(&c))
            .is_some_and(|b| *b >= 0.98);
        let mut load = o.load;
        if saturated {
            let cost = st.cost.unwrap_or(cfg.cost_per_interrupt_s);
            load = load.max(o.rate * cost);
        } else if o.rate > 100.0 && o.load > 0.0 {
            let c = o.load / o.rate;
            st.cost = Some(st.cost.map_or(c, |old| 0.7 * old + 0.3 * c));
        }
        st.peak = load.max(st.peak * cfg.peak_decay);
        notice_writer(cfg, st, topo, spec.irq, &o.affinity, now, events);
        let cpu = o
            .cpu
            .or_else(|| o.affinity.first().copied())
            .filter(|c| topo.is_online(*c));
        let in_dwell = |d: u64| st.moved_at.is_some_and(|m| now < m + d);
        let movable = !st.managed
            && now >= st.frozen_until
            && now >= st.retry_at
            && cpu.is_some()
            && !in_dwell(cfg.emergency_dwell_ms);
        let peak = st.peak;
        if spec.node.is_none()
            && let Some(c) = cpu.and_then(|c| topo.get(c))
            && o.rate > 100.0
            && o.load > 0.0
        {
            let cost = o.load / o.rate;
            let nc = self.nodes.entry(spec.nic.clone()).or_default();
            let e = nc.by_node.entry(c.node).or_insert(cost);
            *e = 0.7 * *e + 0.3 * cost;
        }
        Q {
            spec,
            cpu,
            peak,
            node: spec.node,
            // The ordinary dwell is checked where it applies (`settled`): only a
            // CPU that drops work may cut it short, down to the emergency dwell.
            movable,
            moved: false,
            // By the mask we write, when it is known: the effective CPU of an MSI
            // follows the mask only at the IRQ's next interrupt (x86 without interrupt
            // remapping), so an idle queue moved inside still runs outside until it fires
            // (seen on igbvf in the guest) and must not be moved again and again.
            outside: !spec.cpus.is_empty()
                && match o.affinity.is_empty() {
                    false => o.affinity.iter().any(|c| !spec.cpus.contains(c)),
                    true => cpu.is_some_and(|c| !spec.cpus.contains(&c)),
                },
        }
    }

    /// A NIC without a reported node gets the node whose CPUs serve its interrupts
    /// clearly cheaper (10 %), once two nodes have been measured; said once per change.
    fn guess_nodes(&mut self, events: &mut Vec<Event>) {
        for (nic, nc) in self.nodes.iter_mut() {
            if nc.by_node.len() >= 2 {
                let (best, cost) = nc
                    .by_node
                    .iter()
                    .min_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(n, c)| (*n, *c))
                    .expect("two nodes");
                let worst = nc.by_node.values().copied().fold(0.0, f64::max);
                let sure = cost < 0.9 * worst;
                if sure && nc.guess != Some(best) {
                    nc.guess = Some(best);
                    events.push(Event::NodeGuessed {
                        nic: nic.clone(),
                        node: best,
                    });
                }
            }
        }
    }

    /// Per-CPU estimates: background (non-queue) load plus queue peaks; and each CPU's
    /// streak of periods below `lower`, which coalescing waits for.
    fn estimate<'a>(
        &mut self,
        topo: &'a Topology,
        obs: &Observation,
        by_irq: &HashMap<u32, &QueueObs>,
        qs: Vec<Q<'a>>,
    ) -> Tick<'a> {
        let slots = topo.slots();
        let mut queue_now = vec![0.0; slots];
        let mut est = vec![0.0; slots];
        let mut nqueues = vec![0u32; slots];
        for q in &qs {
            if let Some(c) = q.cpu {
                queue_now[c as usize] += by_irq[&q.spec.irq].load;
                est[c as usize] += q.peak;
                nqueues[c as usize] += 1;
            }
        }
        let mut busy = vec![0.0; slots];
        for (c, b) in &obs.cpu_busy {
            if (*c as usize) < slots {
                busy[*c as usize] = *b;
            }
        }
        for c in &topo.cpus {
            let i = c.id as usize;
            let bg = (busy[i] - queue_now[i]).max(0.0);
            est[i] += bg;
            let streak = self.low_streak.entry(c.id).or_default();
            if est[i] < self.cfg.lower {
                *streak += 1;
            } else {
                *streak = 0;
            }
        }
        self.low_streak.retain(|c, _| topo.is_online(*c));
        // Queues by the CPU they started the tick on (moved ones are skipped by the rules).
        let mut by_cpu: Vec<Vec<usize>> = vec![Vec::new(); slots];
        for (i, q) in qs.iter().enumerate() {
            if let Some(c) = q.cpu {
                by_cpu[c as usize].push(i);
            }
        }
        Tick {
            topo,
            now: obs.now_ms,
            qs,
            est,
            nqueues,
            busy,
            by_cpu,
            moves: Vec::new(),
            budget: self.cfg.max_moves_per_tick,
        }
    }

    /// Hard CPU sets first: a queue allowed outside its set (a vPort's `cpus`, or
    /// `--nic-cpus`) goes inside now, idle or not, since the set is a limit and not a
    /// preference. It stays on its CPU when that CPU is in the set (only the mask was too
    /// wide), else takes the best CPU of the set, the least loaded one when every CPU
    /// there is full. No dwell: a queue just learned has not moved yet.
    fn hard_cpu_sets(&mut self, t: &mut Tick) {
        let topo = t.topo;
        for i in 0..t.qs.len() {
            if t.moves.len() >= t.budget {
                break;
            }
            let q = &t.qs[i];
            let Some(src) = q.cpu else {
                continue;
            };
            if !q.outside || !q.movable {
                continue;
            }
            let est = &t.est;
            let dst = if q.spec.cpus.contains(&src) {
                Some(src)
            } else {
                self.destination(topo, q, src, est, &t.nqueues, self.cfg.target, t.now, false)
                    .or_else(|| {
                        q.spec
                            .cpus
                            .iter()
                            .copied()
                            .filter(|c| topo.is_online(*c) && !topo.avoid.contains(c))
                            .min_by(|a, b| est[*a as usize].total_cmp(&est[*b as usize]))
                    })
            };
            if let Some(dst) = dst {
                self.commit(t, i, dst, Reason::CpuSet);
            }
        }
    }

    /// Spread: CPUs above `upper`, hottest first, shed queues until under `target`.
    fn spread(&mut self, t: &mut Tick) {
        let mut hot: Vec<u32> = t
            .topo
            .cpus
            .iter()
            .map(|c| c.id)
            .filter(|c| t.est[*c as usize] > self.cfg.upper && t.nqueues[*c as usize] > 0)
            .collect();
        hot.sort_by(|a, b| t.est[*b as usize].total_cmp(&t.est[*a as usize]));
        for src in hot {
            self.spread_cpu(t, src);
        }
    }

    /// One hot CPU sheds queues, one at a time, while it is above `target` and something
    /// can go. The biggest queue is the anchor: the others leave first. An elephant cannot
    /// be split, so moving it only moves the problem.
    fn spread_cpu(&mut self, t: &mut Tick, src: u32) {
        let mut on: Vec<usize> = t.by_cpu[src as usize].clone();
        on.sort_by(|a, b| t.qs[*b].peak.total_cmp(&t.qs[*a].peak));
        let emergency = t.busy[src as usize] >= 0.99;
        let anchor = on.first().copied();
        while t.est[src as usize] > self.cfg.target && t.moves.len() < t.budget {
            let excess = t.est[src as usize] - self.cfg.target;
            let qs = &t.qs;
            let mut cands: Vec<usize> = on
                .iter()
                .copied()
                .filter(|&i| Some(i) != anchor || on.len() == 1)
                .filter(|&i| !qs[i].moved && qs[i].movable)
                // An idle queue takes no load with it: moving it is churn (seen
                // in the guest: idle tx queues left a CPU hot with its anchor).
                .filter(|&i| qs[i].peak >= MIN_MOVE_LOAD)
                .filter(|&i| emergency || self.settled(qs[i].spec.irq, t.now))
                .collect();
            if cands.is_empty() {
                break;
            }
            // Smallest queue that clears the excess alone, else biggest first.
            cands.sort_by(|a, b| qs[*a].peak.total_cmp(&qs[*b].peak));
            let first_enough = cands.iter().position(|&i| qs[i].peak >= excess);
            let order: Vec<usize> = match first_enough {
                Some(p) => cands[p..]
                    .iter()
                    .copied()
                    .chain(cands[..p].iter().rev().copied())
                    .collect(),
                None => cands.iter().rev().copied().collect(),
            };
            if !self.spread_one(t, src, anchor, &order) {
                break;
            }
        }
    }

    /// Moves the first queue of `order` that has a destination; false when none has.
    fn spread_one(
        &mut self,
        t: &mut Tick,
        src: u32,
        anchor: Option<usize>,
        order: &[usize],
    ) -> bool {
        for &i in order {
            // Moving the anchor itself (alone on its CPU with background
            // load) must leave both sides better off.
            let limit = self.cfg.target;
            if let Some(dst) = self.destination(
                t.topo, &t.qs[i], src, &t.est, &t.nqueues, limit, t.now, false,
            ) {
                if Some(i) == anchor && t.est[dst as usize] + t.qs[i].peak >= t.est[src as usize] {
                    continue;
                }
                self.commit(t, i, dst, Reason::Spread);
                return true;
            }
        }
        false
    }

    /// NUMA home: queues away from their NIC's node (or home CPUs) come home when it has
    /// room below `target` - 0.1.
    fn numa_home(&mut self, t: &mut Tick) {
        let topo = t.topo;
        for i in 0..t.qs.len() {
            if t.moves.len() >= t.budget {
                break;
            }
            let q = &t.qs[i];
            let Some(src) = q.cpu else {
                continue;
            };
            if q.moved || !q.movable || !self.settled(q.spec.irq, t.now) {
                continue;
            }
            if topo.get(src).is_none_or(|c| !self.away(q, c)) {
                continue;
            }
            let limit = self.cfg.target - 0.1;
            if let Some(dst) =
                self.destination(topo, q, src, &t.est, &t.nqueues, limit, t.now, true)
                && topo.get(dst).is_some_and(|c| !self.away(q, c))
            {
                self.commit(t, i, dst, Reason::Numa);
            }
        }
    }

    /// Coalesce: CPUs low for long enough, least loaded first, give all their queues away
    /// or none (half-emptied CPUs save nothing).
    fn coalesce(&mut self, t: &mut Tick) {
        let slots = t.est.len();
        let mut low: Vec<u32> = t
            .topo
            .cpus
            .iter()
            .map(|c| c.id)
            .filter(|c| {
                t.nqueues[*c as usize] > 0
                    && t.est[*c as usize] < self.cfg.lower
                    && self.low_streak.get(c).copied().unwrap_or(0) >= self.cfg.coalesce_after
            })
            .collect();
        low.sort_by(|a, b| t.est[*a as usize].total_cmp(&t.est[*b as usize]));
        let mut receiving = vec![false; slots];
        let mut emptied = vec![false; slots];
        for src in low {
            if receiving[src as usize] || t.moves.len() >= t.budget {
                continue;
            }
            let Some(plan) = self.coalesce_plan(t, src, &emptied) else {
                continue;
            };
            emptied[src as usize] = true;
            for (i, dst) in plan {
                receiving[dst as usize] = true;
                self.commit(t, i, dst, Reason::Coalesce);
            }
        }
    }

    /// A destination for every queue of low CPU `src`, or None: one of them cannot go,
    /// is not settled, or the moves would exceed the tick's budget.
    fn coalesce_plan(&self, t: &mut Tick, src: u32, emptied: &[bool]) -> Option<Vec<(usize, u32)>> {
        let qs = &t.qs;
        let on: Vec<usize> = t.by_cpu[src as usize]
            .iter()
            .copied()
            .filter(|&i| qs[i].cpu == Some(src) && !qs[i].moved)
            .collect();
        if on.is_empty()
            || on.len() + t.moves.len() > t.budget
            || on
                .iter()
                .any(|&i| !qs[i].movable || !self.settled(qs[i].spec.irq, t.now))
        {
            return None;
        }
        // Plan on the live tables and undo: no per-CPU copies, which would
        // dominate at 1,024 IRQs on 256 CPUs.
        let (est, nqueues) = (&mut t.est, &mut t.nqueues);
        let src_n = nqueues[src as usize];
        nqueues[src as usize] = 0;
        let mut plan = Vec::new();
        for &i in &on {
            match self.coalesce_destination(t.topo, &qs[i], src, est, nqueues, emptied, t.now) {
                Some(dst) => {
                    est[dst as usize] += qs[i].peak;
                    nqueues[dst as usize] += 1;
                    plan.push((i, dst));
                }
                None => break,
            }
        }
        for &(i, dst) in &plan {
            est[dst as usize] -= qs[i].peak;
            nqueues[dst as usize] -= 1;
        }
        nqueues[src as usize] = src_n;
        (plan.len() == on.len()).then_some(plan)
    }

    /// Past the ordinary dwell time since its last move.
    fn settled(&self, irq: u32, now: u64) -> bool {
        self.irqs
            .get(&irq)
            .and_then(|s| s.moved_at)
            .is_none_or(|m| now >= m + self.cfg.dwell_ms)
    }

    fn left_recently(&self, irq: u32, cpu: u32, now: u64) -> bool {
        self.irqs.get(&irq).is_some_and(|s| {
            s.left
                .iter()
                .any(|(c, t)| *c == cpu && now < t + self.cfg.return_ms)
        })
    }

    fn allowed(&self, topo: &Topology, q: &Q, cpu: u32, now: u64) -> bool {
        (q.spec.cpus.is_empty() || q.spec.cpus.contains(&cpu))
            && !topo.avoid.contains(&cpu)
            && self.full_until.get(&cpu).is_none_or(|u| *u <= now)
            && !self.left_recently(q.spec.irq, cpu, now)
    }

    /// The nearest CPU that takes `q` and stays under `limit`: NIC-local node, a
    /// physical core (not the source's sibling), not CPU 0, already in use (pack),
    /// fullest first; idle CPUs after, lowest id first.
    #[allow(clippy::too_many_arguments)]
    fn destination(
        &self,
        topo: &Topology,
        q: &Q,
        src: u32,
        est: &[f64],
        nqueues: &[u32],
        limit: f64,
        now: u64,
        local_only: bool,
    ) -> Option<u32> {
        let src_core = topo.get(src).map(|c| c.core);
        let mut best: Option<(Rank, f64, u32)> = None;
        for c in &topo.cpus {
            if c.id == src {
                continue;
            }
            let e = est[c.id as usize];
            let remote = self.away(q, c) as u8;
            // A remote CPU costs more per packet than a local one a little fuller:
            // local CPUs may fill to halfway between target and upper, so that only
            // the excess spills to another node.
            let limit = if remote == 0 && !local_only {
                limit.max((self.cfg.target + self.cfg.upper) / 2.0)
            } else {
                limit
            };
            if e + q.peak > limit {
                continue;
            }
            if local_only && remote == 1 {
                continue;
            }
            // The cheap tests first: this runs for every CPU of every candidate.
            if !self.allowed(topo, q, c.id, now) {
                continue;
            }
            let key = (
                remote,
                (Some(c.core) == src_core) as u8,
                (!c.primary) as u8,
                (self.cfg.avoid_cpu0 && c.id == 0) as u8,
                (nqueues[c.id as usize] == 0) as u8,
            );
            // Among equals: in use -> fullest (best fit); idle -> lowest id.
            let tiebreak = if nqueues[c.id as usize] > 0 { -e } else { 0.0 };
            let better = match &best {
                None => true,
                Some((k, t, _)) => key < *k || (key == *k && tiebreak < *t),
            };
            if better {
                best = Some((key, tiebreak, c.id));
            }
        }
        best.map(|b| b.2)
    }

    /// Where a queue of a low CPU goes: a CPU already serving queues (its NIC's
    /// home, i.e. the first such CPU in preference order, wins ties), never one that
    /// is being emptied, never beyond `target`.
    #[allow(clippy::too_many_arguments)]
    fn coalesce_destination(
        &self,
        topo: &Topology,
        q: &Q,
        src: u32,
        est: &[f64],
        nqueues: &[u32],
        emptied: &[bool],
        now: u64,
    ) -> Option<u32> {
        let mut best: Option<((u8, u8, u8), f64, u32)> = None;
        for c in &topo.cpus {
            let i = c.id as usize;
            if c.id == src || emptied[i] || nqueues[i] == 0 || est[i] + q.peak > self.cfg.target {
                continue;
            }
            if !self.allowed(topo, q, c.id, now) {
                continue;
            }
            let key = (
                self.away(q, c) as u8,
                (!c.primary) as u8,
                (self.cfg.avoid_cpu0 && c.id == 0) as u8,
            );
            let better = match &best {
                None => true,
                Some((k, t, _)) => key < *k || (key == *k && -est[i] < *t),
            };
            if better {
                best = Some((key, -est[i], c.id));
            }
        }
        // Coalescing onto a remote node would trade locality for idle cores.
        let src_remote = topo.get(src).is_some_and(|c| self.away(q, c));
        best.filter(|b| b.0.0 == 0 || src_remote).map(|b| b.2)
    }

    /// Points queue `i` at `dst` for `reason`: the tick's tables follow the move, and the
    /// queue's history records it (dwell, the CPU it left, the mask we wrote).
    fn commit(&mut self, t: &mut Tick, i: usize, dst: u32, reason: Reason) {
        let now = t.now;
        let q = &mut t.qs[i];
        if let Some(src) = q.cpu {
            t.est[src as usize] -= q.peak;
            t.nqueues[src as usize] -= 1;
        }
        t.est[dst as usize] += q.peak;
        t.nqueues[dst as usize] += 1;
        let st = self.irqs.entry(q.spec.irq).or_default();
        st.moved_at = Some(now);
        if let Some(src) = q.cpu.filter(|s| *s != dst) {
            st.left.push((src, now));
            if st.left.len() > 4 {
                st.left.remove(0);
            }
        }
        st.ours = Some(vec![dst]);
        t.moves.push(Move {
            irq: q.spec.irq,
            from: q.cpu,
            to: dst,
            reason,
            load: q.peak,
        });
        q.cpu = Some(dst);
        q.moved = true;
    }

    /// Tells the policy what came of a move it decided at `now`.
    pub fn feedback(&mut self, m: &Move, outcome: Outcome, now: u64) {
        let st = self.irqs.entry(m.irq).or_default();
        match outcome {
            Outcome::Done { .. } => {
                st.failures = 0;
                st.retry_at = 0;
            }
            Outcome::Managed => {
                st.managed = true;
                st.ours = None;
            }
            Outcome::CpuFull => {
                st.ours = None;
                self.full_until.insert(m.to, now + self.cfg.full_cpu_ms);
            }
            Outcome::Failed => {
                st.ours = None;
                st.failures = st.failures.saturating_add(1);
                let delay = self
                    .cfg
                    .retry_base_ms
                    .saturating_mul(1u64 << st.failures.min(16))
                    .min(self.cfg.retry_max_ms);
                st.retry_at = now + delay;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(irq: u32, nic: &str) -> QueueSpec {
        QueueSpec {
            irq,
            name: format!("{nic}-rx-{irq}"),
            nic: nic.into(),
            node: Some(0),
            cpus: vec![],
        }
    }

    fn obs(now_ms: u64, busy: &[(u32, f64)], qs: &[(u32, f64, u32)]) -> Observation {
        Observation {
            now_ms,
            cpu_busy: busy.iter().copied().collect(),
            queues: qs
                .iter()
                .map(|&(irq, load, cpu)| QueueObs {
                    irq,
                    load,
                    rate: load * 100_000.0,
                    cpu: Some(cpu),
                    affinity: vec![cpu],
                })
                .collect(),
        }
    }

    #[test]
    fn the_elephant_stays_and_the_mice_leave() {
        let topo = Topology::synthetic(2, 4, 2);
        let mut p = Policy::new(PolicyConfig::default());
        let specs = vec![spec(40, "a"), spec(41, "a"), spec(42, "b")];
        let d = p.decide(
            &topo,
            &specs,
            &obs(
                1000,
                &[(1, 1.0)],
                &[(40, 0.9, 1), (41, 0.05, 1), (42, 0.05, 1)],
            ),
        );
        let moved: Vec<u32> = d.moves.iter().map(|m| m.irq).collect();
        assert_eq!(moved.len(), 2, "{d:?}");
        assert!(!moved.contains(&40));
        for m in &d.moves {
            assert_eq!(m.reason, Reason::Spread);
            let c = topo.get(m.to).unwrap();
            assert!(c.primary && c.node == 0 && m.to != 0, "{m:?}");
        }
    }

    /// The estimate the thresholds judge is the queues' peaks plus the CPU's other load: it
    /// follows a rise at once and outlives a fall, so it can be above `upper` while the
    /// measured busy share is not (seen in the guest: a spread at a measured 0.78).
    #[test]
    fn the_estimate_is_peaks_plus_other_load_and_outlives_a_fall() {
        let topo = Topology::synthetic(1, 4, 1);
        let mut p = Policy::new(PolicyConfig::default());
        let specs = vec![spec(40, "a")];
        let d = p.decide(&topo, &specs, &obs(1000, &[(1, 0.95)], &[(40, 0.85, 1)]));
        assert!((d.estimates[&1] - 0.95).abs() < 1e-9, "{d:?}");
        assert_eq!(d.estimates[&2], 0.0, "{d:?}");
        assert_eq!(d.estimates.len(), 4, "{d:?}");
        let d = p.decide(&topo, &specs, &obs(2000, &[(1, 0.75)], &[(40, 0.65, 1)]));
        assert!(d.estimates[&1] > 0.8, "{d:?}");
    }

    #[test]
    fn an_external_write_is_reported_once_and_respected() {
        let topo = Topology::synthetic(1, 4, 1);
        let mut p = Policy::new(PolicyConfig::default());
        let specs = vec![spec(40, "a"), spec(41, "a")];
        p.decide(&topo, &specs, &obs(0, &[], &[(40, 0.5, 1), (41, 0.5, 1)]));
        let d = p.decide(
            &topo,
            &specs,
            &obs(1000, &[(3, 1.0)], &[(40, 0.5, 3), (41, 0.5, 3)]),
        );
        let ext = d
            .events
            .iter()
            .filter(|e| matches!(e, Event::External { .. }))
            .count();
        assert_eq!(ext, 2);
        // Both are hot on CPU 3 now, but another writer put them there.
        assert!(d.moves.is_empty(), "{d:?}");
    }

    /// A hard CPU set holds whatever the load: idle queues outside it come in at once (the
    /// least loaded CPU of the set), a queue running inside it with a wider mask is pinned
    /// where it runs, and the NIC's default home does not pull them out again.
    #[test]
    fn queues_outside_their_hard_set_come_inside_at_once() {
        let topo = Topology::synthetic(1, 4, 1);
        let mut p = Policy::new(PolicyConfig::default());
        p.set_homes(HashMap::from([("vf".to_string(), vec![0, 1])]));
        let mut specs: Vec<QueueSpec> = (40..43).map(|i| spec(i, "vf")).collect();
        for s in &mut specs {
            s.cpus = vec![2, 3];
        }
        specs.push(spec(50, "pf"));
        let mut o = obs(
            1000,
            &[(2, 0.4)],
            &[(40, 0.0, 0), (41, 0.0, 1), (42, 0.0, 3), (50, 0.0, 0)],
        );
        // 42 runs on CPU 3 but may run anywhere (the kernel's default mask).
        o.queues[2].affinity = vec![0, 1, 2, 3];
        let d = p.decide(&topo, &specs, &o);
        let moves: Vec<(u32, u32, Reason)> =
            d.moves.iter().map(|m| (m.irq, m.to, m.reason)).collect();
        assert_eq!(
            moves,
            [
                (40, 3, Reason::CpuSet),
                (41, 3, Reason::CpuSet),
                (42, 3, Reason::CpuSet)
            ],
            "{d:?}"
        );
        // Next period, inside and idle: nothing moves (no NUMA or home pull back to 0-1),
        // not even 41, whose interrupt has not fired since, so that it still runs on CPU 1
        // (its effective CPU) although its mask says 3.
        let mut o = obs(
            3_000_000,
            &[],
            &[(40, 0.0, 3), (41, 0.0, 1), (42, 0.0, 3), (50, 0.0, 0)],
        );
        o.queues[1].affinity = vec![3];
        let d = p.decide(&topo, &specs, &o);
        assert!(d.moves.iter().all(|m| m.irq == 50), "{d:?}");
    }

    /// The default per-NIC CPU set (the PF's local CPUs, VFs grouped under it) is a home:
    /// spreading fills it first, although CPU 1 is nearer by id and idle, and only the
    /// excess leaves it.
    #[test]
    fn a_nic_spreads_inside_its_home_first() {
        let topo = Topology::synthetic(1, 8, 1);
        let mut p = Policy::new(PolicyConfig::default());
        p.set_homes(HashMap::from([("vf".to_string(), vec![4, 5])]));
        let mut specs: Vec<QueueSpec> = (40..44).map(|i| spec(i, "vf")).collect();
        for s in &mut specs {
            s.node = None;
        }
        let qs = [(40, 0.5, 4), (41, 0.3, 4), (42, 0.3, 4), (43, 0.3, 4)];
        let d = p.decide(&topo, &specs, &obs(1000, &[(4, 1.0)], &qs));
        let to: Vec<u32> = d.moves.iter().map(|m| m.to).collect();
        // CPU 4 keeps its anchor (0.5); two 0.3 fit on CPU 5 (home CPUs may fill to 0.75);
        // only the third spills outside the home.
        assert_eq!(to, [5, 5, 1], "{d:?}");
        // Without a home the nearest idle CPU (1, not CPU 0) takes the first.
        let mut p = Policy::new(PolicyConfig::default());
        let d = p.decide(&topo, &specs, &obs(1000, &[(4, 1.0)], &qs));
        assert_eq!(d.moves.first().map(|m| m.to), Some(1), "{d:?}");
    }

    /// Queues spilled outside their home come back once it has room.
    #[test]
    fn spilled_queues_come_home() {
        let topo = Topology::synthetic(1, 8, 1);
        let mut p = Policy::new(PolicyConfig::default());
        p.set_homes(HashMap::from([("pf".to_string(), vec![4, 5])]));
        let specs = vec![spec(40, "pf")];
        let mut moved = None;
        for t in 0..40u64 {
            let d = p.decide(&topo, &specs, &obs(t * 1000, &[(1, 0.1)], &[(40, 0.1, 1)]));
            if let Some(m) = d.moves.first() {
                moved = Some((t, m.clone()));
                break;
            }
        }
        let (_, m) = moved.expect("the queue never came home");
        assert!([4, 5].contains(&m.to), "{m:?}");
        assert_eq!(m.reason, Reason::Numa);
    }

    /// A writer that keeps changing an IRQ back (irqbalance every 10 s) is not fought: each
    /// change doubles the time the policy leaves that IRQ alone, and it never writes it
    /// while it does.
    #[test]
    fn a_persistent_writer_wins_without_a_fight() {
        let topo = Topology::synthetic(1, 4, 1);
        let cfg = PolicyConfig::default();
        let backoff = cfg.external_backoff_ms;
        let mut p = Policy::new(cfg);
        let specs = vec![spec(40, "a"), spec(41, "a")];
        p.decide(&topo, &specs, &obs(0, &[], &[(40, 0.5, 1), (41, 0.5, 1)]));
        // The other writer puts both on CPU 3 and flips IRQ 40 between 3 and 2 every 10 s;
        // CPU 3 and 2 stay hot, which would make the policy spread if it were free to.
        let mut changes = 0;
        let mut writes_to_40 = 0;
        let mut now = 1000;
        let mut cpu40 = 3;
        while now < 3 * backoff {
            if now % 10_000 == 1000 {
                cpu40 = if cpu40 == 3 { 2 } else { 3 };
            }
            let d = p.decide(
                &topo,
                &specs,
                &obs(
                    now,
                    &[(2, 1.0), (3, 1.0)],
                    &[(40, 0.5, cpu40), (41, 0.5, 3)],
                ),
            );
            changes += d
                .events
                .iter()
                .filter(|e| matches!(e, Event::External { irq: 40, .. }))
                .count();
            writes_to_40 += d.moves.iter().filter(|m| m.irq == 40).count();
            now += 1000;
        }
        assert!(changes >= 80, "{changes} changes seen");
        assert_eq!(writes_to_40, 0, "the policy fought the other writer");
        // IRQ 41 was changed once, 300 s ago and more: free again.
        assert_eq!(p.yielded(now), vec![40]);
        // One change, then none: the IRQ is free again after the first backoff.
        let mut q = Policy::new(PolicyConfig::default());
        q.decide(&topo, &specs, &obs(0, &[], &[(40, 0.5, 1), (41, 0.5, 1)]));
        q.decide(
            &topo,
            &specs,
            &obs(1000, &[], &[(40, 0.5, 2), (41, 0.5, 1)]),
        );
        assert_eq!(q.yielded(1000 + backoff - 1), vec![40]);
        assert!(q.yielded(1000 + backoff).is_empty());
        // Two changes: twice as long.
        q.decide(
            &topo,
            &specs,
            &obs(2000, &[], &[(40, 0.5, 3), (41, 0.5, 1)]),
        );
        assert_eq!(q.yielded(2000 + 2 * backoff - 1), vec![40]);
        assert!(q.yielded(2000 + 2 * backoff).is_empty());
    }

    #[test]
    fn a_managed_irq_is_never_moved_again() {
        let topo = Topology::synthetic(1, 4, 1);
        let mut p = Policy::new(PolicyConfig::default());
        let specs = vec![spec(40, "a"), spec(41, "a")];
        let d = p.decide(
            &topo,
            &specs,
            &obs(0, &[(1, 1.0)], &[(40, 0.6, 1), (41, 0.4, 1)]),
        );
        assert_eq!(d.moves.len(), 1);
        p.feedback(&d.moves[0], Outcome::Managed, 0);
        assert!(p.is_managed(d.moves[0].irq));
        for t in 1..30 {
            let d = p.decide(
                &topo,
                &specs,
                &obs(t * 1000, &[(1, 1.0)], &[(40, 0.6, 1), (41, 0.4, 1)]),
            );
            assert!(d.moves.iter().all(|m| m.irq != 41), "{d:?}");
        }
    }
}
