//! The daemon's metrics in the Prometheus text format (version 0.0.4), written by
//! hand: a handful of families does not justify a client library, and the
//! format is stable. Each family group renders from the data that produces it: the
//! rebalancer's from [`Stats`] (its ticks' [`TickReport`]s), the vPorts' from the state
//! file, the software switch's from its snapshot. `vportd top` reads the same text back
//! ([`parse_samples`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::provision::state::{Health, State, VportPath};
use crate::rebalance::engine::{QueueRow, TickReport};

/// The upper bounds (seconds) of the tick duration histogram's buckets, `+Inf` implied.
/// A tick's budget is 10 % of its period ([`crate::rebalance::engine::TICK_BUDGET`]): 100 ms
/// at the default 1 s. A small host ticks in well under a millisecond and a 10,000-IRQ one
/// in tens (examples/tick_bench.rs), so the buckets run from 0.25 ms to past the period.
pub const TICK_BUCKETS: [f64; 13] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Counters since start, and the last tick's gauges.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub ticks: u64,
    pub tick_seconds_sum: f64,
    /// Ticks whose duration was at most each of [`TICK_BUCKETS`] (not cumulative: one
    /// count per bucket, summed when rendered).
    pub tick_buckets: [u64; TICK_BUCKETS.len()],
    /// Ticks that took longer than their budget (`daemon::TICK_BUDGET` of the period).
    pub tick_overruns: u64,
    pub moves: BTreeMap<&'static str, u64>,
    pub errors: BTreeMap<String, u64>,
    pub external_changes: u64,
    pub last: Option<TickReport>,
    /// The newest moves, for `vportd top`: (ms, irq, from, to, reason).
    pub recent: Vec<(u64, u32, Option<u32>, u32, &'static str)>,
    /// The irqbalance processes found at the last look (None: not looked yet, or the
    /// daemon reads another root than the live one's processes).
    pub irqbalance: Option<Vec<crate::facts::irqbalance::IrqbalanceProcess>>,
}

impl Stats {
    pub fn record(&mut self, r: &TickReport) {
        self.ticks += 1;
        self.tick_seconds_sum += r.tick_seconds;
        if let Some(b) = TICK_BUCKETS.iter().position(|le| r.tick_seconds <= *le) {
            self.tick_buckets[b] += 1;
        }
        self.tick_overruns += u64::from(r.over_budget);
        for m in &r.moves {
            match &m.errno {
                None => {
                    *self.moves.entry(m.mv.reason.as_str()).or_default() += 1;
                    self.recent.push((
                        r.now_ms,
                        m.mv.irq,
                        m.mv.from,
                        m.mv.to,
                        m.mv.reason.as_str(),
                    ));
                }
                Some(e) => *self.errors.entry(e.clone()).or_default() += 1,
            }
        }
        let keep = self.recent.len().saturating_sub(10);
        self.recent.drain(..keep);
        self.external_changes += r
            .events
            .iter()
            .filter(|e| matches!(e, crate::rebalance::policy::Event::External { .. }))
            .count() as u64;
        self.last = Some(r.clone());
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every family: the rebalancer's (from its last [`TickReport`]) and the vPorts'
/// (from the state file).
pub fn render(s: &Stats, vports: &State) -> String {
    let mut o = String::new();
    render_build_info(&mut o);
    render_counters(&mut o, s);
    render_irqbalance(&mut o, s);
    if let Some(r) = &s.last {
        render_cpus(&mut o, r);
        render_queues(&mut o, r);
    }
    render_vports(&mut o, vports);
    render_pools(&mut o, vports);
    o
}

/// Each `[[pool]]`'s size and how many of its VFs attachments hold (the attachment book).
fn render_pools(o: &mut String, state: &State) {
    let pools = state.pool_use();
    if pools.is_empty() {
        return;
    }
    family(
        o,
        "vportd_pool_capacity",
        "gauge",
        "VFs each pool holds for attachments (containers through CNI).",
    );
    for p in &pools {
        let _ = writeln!(
            o,
            "vportd_pool_capacity{{pool=\"{}\",uplink=\"{}\"}} {}",
            esc(&p.pool),
            esc(&p.uplink),
            p.capacity
        );
    }
    family(
        o,
        "vportd_pool_allocated",
        "gauge",
        "VFs of each pool held by an attachment (attached, or reserved by an ADD not finished).",
    );
    for p in &pools {
        let _ = writeln!(
            o,
            "vportd_pool_allocated{{pool=\"{}\",uplink=\"{}\"}} {}",
            esc(&p.pool),
            esc(&p.uplink),
            p.allocated
        );
    }
}

/// The rebalancer's counters since start: ticks, their cost, moves, errors, other writers.
fn render_counters(o: &mut String, s: &Stats) {
    family(o, "vportd_ticks_total", "counter", "Rebalance periods run.");
    let _ = writeln!(o, "vportd_ticks_total {}", s.ticks);
    render_tick_histogram(o, s);
    family(
        o,
        "vportd_tick_overruns_total",
        "counter",
        "Periods whose tick took longer than its budget (10 % of the period).",
    );
    let _ = writeln!(o, "vportd_tick_overruns_total {}", s.tick_overruns);
    family(
        o,
        "vportd_moves_total",
        "counter",
        "Interrupt moves by reason (spread, coalesce, numa, cpu_set: into a hard CPU set).",
    );
    for r in ["spread", "coalesce", "numa", "cpu_set"] {
        let _ = writeln!(
            o,
            "vportd_moves_total{{reason=\"{r}\"}} {}",
            s.moves.get(r).copied().unwrap_or(0)
        );
    }
    family(
        o,
        "vportd_actuation_errors_total",
        "counter",
        "Affinity writes the kernel refused, by errno.",
    );
    for (e, n) in &s.errors {
        let _ = writeln!(
            o,
            "vportd_actuation_errors_total{{errno=\"{}\"}} {n}",
            esc(e)
        );
    }
    family(
        o,
        "vportd_external_changes_total",
        "counter",
        "Affinity changes made by another writer (left alone).",
    );
    let _ = writeln!(o, "vportd_external_changes_total {}", s.external_changes);
    family(
        o,
        "vportd_irqs_yielded",
        "gauge",
        "Queue IRQs left alone now because another writer changed them (1 per IRQ).",
    );
    for irq in s.last.iter().flat_map(|r| &r.yielded) {
        let _ = writeln!(o, "vportd_irqs_yielded{{irq=\"{irq}\"}} 1");
    }
}

/// How long ticks take: the last one as a gauge, all of them as a histogram.
fn render_tick_histogram(o: &mut String, s: &Stats) {
    family(
        o,
        "vportd_last_tick_duration_seconds",
        "gauge",
        "Time the last period took to sample, decide and act.",
    );
    let last_tick = s.last.as_ref().map(|r| r.tick_seconds).unwrap_or(0.0);
    let _ = writeln!(o, "vportd_last_tick_duration_seconds {last_tick}");
    family(
        o,
        "vportd_tick_duration_seconds",
        "histogram",
        "Time each period took to sample, decide and act.",
    );
    let mut cumulative = 0;
    for (le, n) in TICK_BUCKETS.iter().zip(s.tick_buckets) {
        cumulative += n;
        let _ = writeln!(
            o,
            "vportd_tick_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        o,
        "vportd_tick_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        s.ticks
    );
    let _ = writeln!(o, "vportd_tick_duration_seconds_sum {}", s.tick_seconds_sum);
    let _ = writeln!(o, "vportd_tick_duration_seconds_count {}", s.ticks);
}

/// The build: version, compiler and cargo features, as the usual `_build_info` 1.
fn render_build_info(o: &mut String) {
    family(
        o,
        "vportd_build_info",
        "gauge",
        "The running vportd's version, the rustc that built it and its cargo features (always 1).",
    );
    let features: &[&str] = if cfg!(feature = "fault-injection") {
        &["fault-injection"]
    } else {
        &[]
    };
    let _ = writeln!(
        o,
        "vportd_build_info{{version=\"{}\",rustc=\"{}\",features=\"{}\"}} 1",
        esc(env!("CARGO_PKG_VERSION")),
        esc(option_env!("VPORTD_RUSTC_VERSION").unwrap_or("unknown")),
        esc(&features.join(","))
    );
}

/// Whether irqbalance runs beside the daemon, with vportd's policy script or without, and
/// how many IRQs the rebalancer is backing off from now (docs/irqbalance.md).
fn render_irqbalance(o: &mut String, s: &Stats) {
    if let Some(procs) = &s.irqbalance {
        family(
            o,
            "vportd_irqbalance_running",
            "gauge",
            "1 when an irqbalance process runs on the host (found by its name in /proc).",
        );
        let _ = writeln!(
            o,
            "vportd_irqbalance_running {}",
            u8::from(!procs.is_empty())
        );
        family(
            o,
            "vportd_irqbalance_without_policy",
            "gauge",
            "irqbalance processes running without vportd's policy script: they move vportd's queue IRQs, and vportd backs off from them.",
        );
        let bare = procs.iter().filter(|p| !p.uses_vportd_policy()).count();
        let _ = writeln!(o, "vportd_irqbalance_without_policy {bare}");
    }
    family(
        o,
        "vportd_yielded_irqs",
        "gauge",
        "How many queue IRQs the rebalancer leaves alone now because another writer changed them.",
    );
    let n = s.last.as_ref().map(|r| r.yielded.len()).unwrap_or(0);
    let _ = writeln!(o, "vportd_yielded_irqs {n}");
}

/// Each CPU's busy, interrupt and estimated load over the last period.
fn render_cpus(o: &mut String, r: &TickReport) {
    family(
        o,
        "vportd_cpu_busy_ratio",
        "gauge",
        "Busy share of each CPU over the last period.",
    );
    for c in &r.cpus {
        let _ = writeln!(
            o,
            "vportd_cpu_busy_ratio{{cpu=\"{}\"}} {:.4}",
            c.cpu, c.busy
        );
    }
    family(
        o,
        "vportd_cpu_irq_ratio",
        "gauge",
        "Share of each CPU in hard and soft interrupts over the last period.",
    );
    for c in &r.cpus {
        let _ = writeln!(o, "vportd_cpu_irq_ratio{{cpu=\"{}\"}} {:.4}", c.cpu, c.irq);
    }
    family(
        o,
        "vportd_cpu_load_estimate_ratio",
        "gauge",
        "The policy's estimate of each CPU's load (queue peaks plus other load), which the spread and coalesce thresholds judge.",
    );
    for c in &r.cpus {
        let _ = writeln!(
            o,
            "vportd_cpu_load_estimate_ratio{{cpu=\"{}\"}} {:.4}",
            c.cpu, c.estimate
        );
    }
}

/// Each queue's interrupts, packets, rate and load over the last period, and how load is
/// accounted.
fn render_queues(o: &mut String, r: &TickReport) {
    family(
        o,
        "vportd_queue_interrupts_total",
        "counter",
        "Interrupts of each queue IRQ since boot (/proc/interrupts).",
    );
    // `vport`: the vPort whose queue set the queue is in (empty for the PF's own), so
    // that one vPort's queues can be summed across IRQs.
    let labels = |q: &QueueRow| {
        format!(
            "irq=\"{}\",name=\"{}\",nic=\"{}\",vport=\"{}\",cpu=\"{}\"",
            q.irq,
            esc(&q.name),
            esc(&q.nic),
            esc(q.vport.as_deref().unwrap_or("")),
            q.cpu.map(|c| c.to_string()).unwrap_or_default()
        )
    };
    for q in &r.queues {
        let _ = writeln!(
            o,
            "vportd_queue_interrupts_total{{{}}} {}",
            labels(q),
            q.interrupts
        );
    }
    family(
        o,
        "vportd_queue_packets_total",
        "counter",
        "Packets of each queue, from the driver's per-queue ethtool statistics (rx + tx for a combined queue); absent where the driver has none.",
    );
    for q in &r.queues {
        if let Some(p) = q.packets {
            let _ = writeln!(o, "vportd_queue_packets_total{{{}}} {p}", labels(q));
        }
    }
    family(
        o,
        "vportd_queue_interrupt_rate",
        "gauge",
        "Interrupts per second of each queue over the last period.",
    );
    for q in &r.queues {
        let _ = writeln!(
            o,
            "vportd_queue_interrupt_rate{{{}}} {:.1}",
            labels(q),
            q.rate
        );
    }
    family(
        o,
        "vportd_queue_load_ratio",
        "gauge",
        "Estimated share of a CPU each queue used over the last period.",
    );
    for q in &r.queues {
        let _ = writeln!(o, "vportd_queue_load_ratio{{{}}} {:.4}", labels(q), q.load);
    }
    family(
        o,
        "vportd_load_accounting",
        "gauge",
        "1 for how queue load is estimated (irq_time or interrupt_counts).",
    );
    let mode = match r.accounting {
        crate::rebalance::sample::Accounting::IrqTime => "irq_time",
        crate::rebalance::sample::Accounting::InterruptCounts => "interrupt_counts",
    };
    let _ = writeln!(o, "vportd_load_accounting{{mode=\"{mode}\"}} 1");
}

/// Each provisioned vPort's path and health, from the state file.
fn render_vports(o: &mut String, vports: &State) {
    family(
        o,
        "vportd_vport_info",
        "gauge",
        "Each provisioned vPort: its path (vf or software) and health, from the state file.",
    );
    for (name, v) in &vports.vports {
        let path = match v.path {
            VportPath::Vf { .. } => "vf",
            VportPath::Software => "software",
            VportPath::Queues { .. } => "queues",
        };
        let health = match v.health {
            Health::Provisioned => "provisioned",
            Health::Lost => "lost",
        };
        let _ = writeln!(
            o,
            "vportd_vport_info{{vport=\"{}\",uplink=\"{}\",path=\"{path}\",health=\"{health}\"}} 1",
            esc(name),
            esc(&v.uplink)
        );
    }
}

/// The software switch's families: per port packets, bytes and floods, and drops by reason
/// (every reason, zeros included, so a rate query has a series from the start).
pub fn render_switch(snap: &crate::softpath::Snapshot) -> String {
    let mut o = String::new();
    if snap.ports.is_empty() {
        return o;
    }
    let labels = |p: &crate::model::port_counters::PortSnapshot| {
        format!("switch=\"{}\",port=\"{}\"", esc(&p.switch), esc(&p.port))
    };
    render_switch_info(&mut o, snap);
    family(
        &mut o,
        "vportd_switch_port_info",
        "gauge",
        "Each software switch port: its vPort, uplink PF, netdev and NIC kind (none: link down).",
    );
    for p in &snap.ports {
        let _ = writeln!(
            o,
            "vportd_switch_port_info{{{},vport=\"{}\",uplink=\"{}\",netdev=\"{}\",edge=\"{}\"}} 1",
            labels(p),
            esc(p.vport.as_deref().unwrap_or("")),
            esc(&p.uplink),
            esc(&p.netdev),
            esc(&p.edge)
        );
    }
    render_switch_counters(&mut o, snap);
    o
}

/// Each software switch by kind (external, internal, private), with its uplink PF or host
/// netdev; its members are the `vportd_switch_port_info` series of that switch.
fn render_switch_info(o: &mut String, snap: &crate::softpath::Snapshot) {
    if snap.switches.is_empty() {
        return;
    }
    family(
        o,
        "vportd_switch_info",
        "gauge",
        "Each software switch: its kind (external: an uplink PF; internal: the host is a member through host_netdev; private: vPorts only) and member count.",
    );
    for s in &snap.switches {
        let _ = writeln!(
            o,
            "vportd_switch_info{{switch=\"{}\",kind=\"{}\",uplink=\"{}\",host_netdev=\"{}\"}} 1",
            esc(&s.name),
            esc(&s.kind),
            esc(s.uplink.as_deref().unwrap_or("")),
            esc(s.host_netdev.as_deref().unwrap_or(""))
        );
    }
    family(
        o,
        "vportd_switch_members",
        "gauge",
        "How many ports each software switch has: its trunk (uplink or host), if any, and its vPorts.",
    );
    for s in &snap.switches {
        let _ = writeln!(
            o,
            "vportd_switch_members{{switch=\"{}\"}} {}",
            esc(&s.name),
            s.members.len()
        );
    }
}

/// Each software switch port's packets, bytes, floods and drops.
fn render_switch_counters(o: &mut String, snap: &crate::softpath::Snapshot) {
    let labels = |p: &crate::model::port_counters::PortSnapshot| {
        format!("switch=\"{}\",port=\"{}\"", esc(&p.switch), esc(&p.port))
    };
    family(
        o,
        "vportd_switch_packets_total",
        "counter",
        "Frames each software switch port received (rx) and sent (tx).",
    );
    for p in &snap.ports {
        for (dir, v) in [("rx", p.rx_packets), ("tx", p.tx_packets)] {
            let _ = writeln!(
                o,
                "vportd_switch_packets_total{{{},direction=\"{dir}\"}} {v}",
                labels(p)
            );
        }
    }
    family(
        o,
        "vportd_switch_bytes_total",
        "counter",
        "Bytes each software switch port received (rx) and sent (tx).",
    );
    for p in &snap.ports {
        for (dir, v) in [("rx", p.rx_bytes), ("tx", p.tx_bytes)] {
            let _ = writeln!(
                o,
                "vportd_switch_bytes_total{{{},direction=\"{dir}\"}} {v}",
                labels(p)
            );
        }
    }
    family(
        o,
        "vportd_switch_flooded_total",
        "counter",
        "Frames flooded out of each port (unknown unicast, broadcast, multicast).",
    );
    for p in &snap.ports {
        let _ = writeln!(
            o,
            "vportd_switch_flooded_total{{{}}} {}",
            labels(p),
            p.tx_flooded
        );
    }
    family(
        o,
        "vportd_switch_drops_total",
        "counter",
        "Frames dropped, by the port charged and the reason.",
    );
    for p in &snap.ports {
        for (reason, v) in &p.drops {
            let _ = writeln!(
                o,
                "vportd_switch_drops_total{{{},reason=\"{}\"}} {v}",
                labels(p),
                esc(reason)
            );
        }
    }
}

/// One sample line of the text format: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleLine {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Reads sample lines back (comments skipped; label values unescaped).
pub fn parse_samples(text: &str) -> Vec<SampleLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while let Some((k, after)) = rest.split_once("=\"") {
            let mut val = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(if n == 'n' { '\n' } else { n });
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => val.push(c),
                }
            }
            map.insert(k.trim_start_matches(',').to_string(), val);
            rest = &after[end..];
        }
        out.push(SampleLine {
            name: name.to_string(),
            labels: map,
            value,
        });
    }
    out
}

/// The value of the first sample of `name` whose labels include each of `labels` (others may
/// be there too): how a reader picks one series out of [`parse_samples`].
pub fn sample_value(samples: &[SampleLine], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses_back() {
        let mut s = Stats::default();
        s.moves.insert("spread", 3);
        s.errors.insert("EPERM".into(), 1);
        let text = render(&s, &State::default());
        let samples = parse_samples(&text);
        let spread = samples
            .iter()
            .find(|x| x.name == "vportd_moves_total" && x.labels["reason"] == "spread")
            .unwrap();
        assert_eq!(spread.value, 3.0);
        assert!(text.contains("vportd_actuation_errors_total{errno=\"EPERM\"} 1"));
        let odd = parse_samples("m{a=\"x\\\"y\",b=\"z\"} 2");
        assert_eq!(odd[0].labels["a"], "x\"y");
        assert_eq!(odd[0].labels["b"], "z");
    }

    #[test]
    fn pools_show_their_capacity_and_allocation_only_when_there_are_some() {
        let mut state = State::default();
        assert!(!render(&Stats::default(), &state).contains("vportd_pool"));
        state.pools.push(crate::model::pool::Pool {
            name: "ctr".into(),
            pf: "0000:01:00.0".into(),
            vfs: vec![1, 2, 3],
            driver: None,
            defaults: Default::default(),
        });
        state
            .pool_holders
            .insert(("0000:01:00.0".into(), 2), "container c1's eth0".into());
        let samples = parse_samples(&render(&Stats::default(), &state));
        let labels = [("pool", "ctr"), ("uplink", "0000:01:00.0")];
        assert_eq!(
            sample_value(&samples, "vportd_pool_capacity", &labels),
            Some(3.0)
        );
        assert_eq!(
            sample_value(&samples, "vportd_pool_allocated", &labels),
            Some(1.0)
        );
    }
}
