//! Figures of one contender's run in tests/vm/scenarios/irq_compare.sh, computed from what the
//! guest sampled (pure functions, so that the comparison's arithmetic is itself tested): the
//! busiest CPU's interrupt share, IRQ affinity moves and ping-pongs, how fast the NIC's IRQs
//! spread and consolidate, and the work iperf3 delivered and the interfaces dropped.
//! Shared by tests/vm/irq_compare.rs and benches/irq_compare.rs.

use std::collections::{BTreeMap, BTreeSet};

/// A move and a move back within this long is a ping-pong (five periods of the daemon's 1 s,
/// five intervals of irqbalance's `--interval=1`).
pub const PING_PONG_WINDOW_MS: u64 = 5_000;

/// A CPU whose irq+softirq share of a sampling interval is above this is hot: the daemon's
/// upper threshold (src/rebalance/policy.rs), here measured by the kernel, not estimated.
pub const HOT_SHARE: f64 = 0.8;

/// /proc/stat ticks of one CPU: irq + softirq, and all (user .. steal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    pub busy: u64,
    pub total: u64,
}

/// One queue IRQ at one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqState {
    pub name: String,
    pub affinity: String,
    pub effective: String,
    pub count: u64,
}

/// One sample of the guest's sampler.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub ms: u64,
    pub cpus: BTreeMap<u32, CpuTicks>,
    pub irqs: BTreeMap<u32, IrqState>,
}

/// Parses the sampler's "T ms" / "C cpu irq softirq total" / "I irq name aff eff count" lines.
/// A sample cut short (the sampler killed mid-write) is dropped.
pub fn parse_samples(text: &str) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["T", ms] => match ms.parse() {
                Ok(ms) => out.push(Sample {
                    ms,
                    ..Sample::default()
                }),
                Err(_) => continue,
            },
            ["C", cpu, irq, softirq, total] => {
                let (Some(s), Ok(cpu), Ok(irq), Ok(softirq), Ok(total)) = (
                    out.last_mut(),
                    cpu.parse(),
                    irq.parse::<u64>(),
                    softirq.parse::<u64>(),
                    total.parse(),
                ) else {
                    continue;
                };
                s.cpus.insert(
                    cpu,
                    CpuTicks {
                        busy: irq + softirq,
                        total,
                    },
                );
            }
            ["I", irq, name, affinity, effective, count] => {
                let (Some(s), Ok(irq), Ok(count)) = (out.last_mut(), irq.parse(), count.parse())
                else {
                    continue;
                };
                s.irqs.insert(
                    irq,
                    IrqState {
                        name: name.to_string(),
                        affinity: affinity.to_string(),
                        effective: effective.to_string(),
                        count,
                    },
                );
            }
            _ => {}
        }
    }
    if out
        .last()
        .is_some_and(|s| s.cpus.is_empty() || s.irqs.is_empty())
    {
        out.pop();
    }
    out
}

/// A CPU list as in smp_affinity_list ("0-2,5").
pub fn cpu_list(text: &str) -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
            set.extend(a..=b);
        }
    }
    set
}

/// For each interval between two samples ending in [from, to] ms: (end ms, the busiest CPU's
/// irq+softirq share of its time).
pub fn busiest_shares(samples: &[Sample], from: u64, to: u64) -> Vec<(u64, f64)> {
    samples
        .windows(2)
        .filter(|w| w[1].ms > from && w[1].ms <= to)
        .map(|w| {
            let share = w[1]
                .cpus
                .iter()
                .filter_map(|(cpu, b)| {
                    let a = w[0].cpus.get(cpu)?;
                    let total = b.total.checked_sub(a.total)?;
                    let busy = b.busy.checked_sub(a.busy)?;
                    (total > 0).then(|| busy as f64 / total as f64)
                })
                .fold(0.0, f64::max);
            (w[1].ms, share)
        })
        .collect()
}

/// The nearest-rank percentile `p` (0-100) of `values`.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// A change of one IRQ's smp_affinity_list between two samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub ms: u64,
    pub irq: u32,
    pub from: String,
    pub to: String,
}

/// Every affinity change seen between consecutive samples.
pub fn moves(samples: &[Sample]) -> Vec<Move> {
    samples
        .windows(2)
        .flat_map(|w| {
            w[1].irqs.iter().filter_map(move |(irq, b)| {
                let a = w[0].irqs.get(irq)?;
                (cpu_list(&a.affinity) != cpu_list(&b.affinity)).then(|| Move {
                    ms: w[1].ms,
                    irq: *irq,
                    from: a.affinity.clone(),
                    to: b.affinity.clone(),
                })
            })
        })
        .collect()
}

/// Moves of an IRQ away from an affinity followed, within `window_ms`, by a move of the same
/// IRQ back to it (directly or through other CPUs).
pub fn ping_pongs(moves: &[Move], window_ms: u64) -> usize {
    moves
        .iter()
        .enumerate()
        .filter(|(i, m)| {
            moves[i + 1..]
                .iter()
                .filter(|n| n.irq == m.irq && n.ms <= m.ms + window_ms)
                .any(|n| cpu_list(&n.to) == cpu_list(&m.from))
        })
        .count()
}

/// The CPUs the queue IRQs may be served on: the union of their affinities.
pub fn serving(sample: &Sample) -> BTreeSet<u32> {
    sample
        .irqs
        .values()
        .flat_map(|s| cpu_list(&s.affinity))
        .collect()
}

/// The last sample at or before `ms`.
fn at(samples: &[Sample], ms: u64) -> Option<&Sample> {
    samples.iter().rev().find(|s| s.ms <= ms)
}

/// Milliseconds from `start` until the serving set first grew beyond what it was at `start`.
pub fn spread_after(samples: &[Sample], start: u64, until: u64) -> Option<u64> {
    let base = serving(at(samples, start)?).len();
    samples
        .iter()
        .filter(|s| s.ms > start && s.ms <= until)
        .find(|s| serving(s).len() > base)
        .map(|s| s.ms - start)
}

/// Milliseconds from `start` (load fell) to the last sample where the serving set shrank:
/// after it the set stopped shrinking. `None` when it never shrank.
pub fn consolidated_after(samples: &[Sample], start: u64) -> Option<u64> {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.ms >= start).collect();
    let mut last = None;
    let mut prev = serving(at(samples, start)?).len();
    for s in after {
        let n = serving(s).len();
        if n < prev {
            last = Some(s.ms - start);
        }
        prev = n;
    }
    last
}

/// Counters of `ip -s -s link` output, summed over the links it shows: "RX dropped",
/// "RX missed", "TX dropped" and so on (the header line names the columns of the next).
pub fn link_counters(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(dir) = ["RX:", "TX:"].into_iter().find(|d| line.starts_with(d)) else {
            continue;
        };
        let heads = line[dir.len()..].split_whitespace();
        let Some(values) = lines.get(i + 1) else {
            continue;
        };
        for (h, v) in heads.zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<u64>() {
                *out.entry(format!("{} {h}", &dir[..2])).or_insert(0) += v;
            }
        }
    }
    out
}

/// What the interfaces dropped between two `ip -s -s link` readings: RX dropped + missed and
/// TX dropped.
pub fn drops(before: &str, after: &str) -> u64 {
    let (b, a) = (link_counters(before), link_counters(after));
    ["RX dropped", "RX missed", "TX dropped"]
        .iter()
        .map(|k| {
            a.get(*k)
                .unwrap_or(&0)
                .saturating_sub(*b.get(*k).unwrap_or(&0))
        })
        .sum()
}

/// The packets dropped by every CPU's input backlog: the second (hex) column of
/// /proc/net/softnet_stat, summed.
pub fn softnet_dropped(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| u64::from_str_radix(v, 16).ok())
        .sum()
}

/// One contender's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    pub who: String,
    pub p95_busiest: f64,
    pub moves: usize,
    pub moves_hot: usize,
    pub ping_pongs: usize,
    pub spread_ms: Option<u64>,
    /// From the load's start to the end of the first interval with a CPU above HOT_SHARE.
    pub hot_ms: Option<u64>,
    pub serving_hot_start: usize,
    pub serving_hot_max: usize,
    pub serving_end: usize,
    pub consolidate_ms: Option<u64>,
    pub mbytes: f64,
    pub retransmits: u64,
    pub drops: u64,
    /// Packets the kernel's per-CPU backlogs dropped in the load (/proc/net/softnet_stat).
    pub backlog_drops: u64,
}

/// The marks of a run: "ms name" lines.
pub fn marks(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (ms, name) = l.split_once(' ')?;
            Some((name.trim().to_string(), ms.parse().ok()?))
        })
        .collect()
}

/// Every figure of one run, from its samples, marks, iperf3 JSON numbers and link readings.
pub struct RunInput<'a> {
    pub who: &'a str,
    pub samples: &'a [Sample],
    pub hot_start: u64,
    pub hot_stop: u64,
    pub bytes: u64,
    pub retransmits: u64,
    pub link_before: &'a str,
    pub link_after: &'a str,
    pub softnet_before: &'a str,
    pub softnet_after: &'a str,
}

pub fn figures(r: &RunInput) -> Figures {
    let timeline = busiest_shares(r.samples, r.hot_start, r.hot_stop);
    let shares: Vec<f64> = timeline.iter().map(|(_, s)| *s).collect();
    let all = moves(r.samples);
    let hot = r
        .samples
        .iter()
        .filter(|s| s.ms >= r.hot_start && s.ms <= r.hot_stop);
    Figures {
        who: r.who.to_string(),
        p95_busiest: percentile(&shares, 95.0).unwrap_or(0.0),
        moves: all.len(),
        moves_hot: all
            .iter()
            .filter(|m| m.ms > r.hot_start && m.ms <= r.hot_stop)
            .count(),
        ping_pongs: ping_pongs(&all, PING_PONG_WINDOW_MS),
        spread_ms: spread_after(r.samples, r.hot_start, r.hot_stop),
        hot_ms: timeline
            .iter()
            .find(|(_, s)| *s > HOT_SHARE)
            .map(|(ms, _)| ms - r.hot_start),
        serving_hot_start: at(r.samples, r.hot_start).map_or(0, |s| serving(s).len()),
        serving_hot_max: hot.map(|s| serving(s).len()).max().unwrap_or(0),
        serving_end: r.samples.last().map(|s| serving(s).len()).unwrap_or(0),
        consolidate_ms: consolidated_after(r.samples, r.hot_stop),
        mbytes: r.bytes as f64 / 1e6,
        retransmits: r.retransmits,
        drops: drops(r.link_before, r.link_after),
        backlog_drops: softnet_dropped(r.softnet_after)
            .saturating_sub(softnet_dropped(r.softnet_before)),
    }
}

fn secs(ms: Option<u64>) -> String {
    ms.map_or("never".to_string(), |ms| {
        format!("{:.2} s", ms as f64 / 1000.0)
    })
}

/// The comparison as a Markdown table, one row per run.
pub fn table(runs: &[Figures]) -> String {
    let mut t = String::from(
        "| run | p95 busiest CPU (irq+softirq) | IRQ moves (in load) | ping-pongs | CPU hot after, spread after | CPUs serving: load start, max, end | consolidated after | iperf3 MB | TCP retransmits | NIC + backlog drops |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in runs {
        t.push_str(&format!(
            "| {} | {:.2} | {} ({}) | {} | {}, {} | {}, {}, {} | {} | {:.0} | {} | {} + {} |\n",
            f.who,
            f.p95_busiest,
            f.moves,
            f.moves_hot,
            f.ping_pongs,
            secs(f.hot_ms),
            secs(f.spread_ms),
            f.serving_hot_start,
            f.serving_hot_max,
            f.serving_end,
            secs(f.consolidate_ms),
            f.mbytes,
            f.retransmits,
            f.drops,
            f.backlog_drops,
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, cpu: &[(u64, u64)], aff: &[&str]) -> String {
        let mut s = format!("T {ms}\n");
        for (i, (busy, total)) in cpu.iter().enumerate() {
            s += &format!("C {i} {busy} 0 {total}\n");
        }
        for (i, a) in aff.iter().enumerate() {
            s += &format!("I {} eth0-TxRx-{i} {a} {a} {}\n", 40 + i, ms);
        }
        s
    }

    #[test]
    fn parses_samples_and_drops_a_cut_one() {
        let text = sample(0, &[(1, 10), (0, 10)], &["0", "0"]) + "T 250\nC 0 1";
        let s = parse_samples(&text);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].cpus[&0], CpuTicks { busy: 1, total: 10 });
        assert_eq!(s[0].irqs[&41].name, "eth0-TxRx-1");
        assert_eq!(s[0].irqs[&41].count, 0);
    }

    #[test]
    fn cpu_lists_expand_ranges() {
        assert_eq!(cpu_list("0-2,5"), BTreeSet::from([0, 1, 2, 5]));
        assert_eq!(cpu_list("3\n"), BTreeSet::from([3]));
        assert!(cpu_list("").is_empty());
    }

    #[test]
    fn busiest_share_is_the_max_over_cpus_per_interval() {
        let text = sample(0, &[(0, 0), (0, 0)], &["0"])
            + &sample(250, &[(10, 25), (20, 25)], &["0"])
            + &sample(500, &[(30, 50), (21, 50)], &["0"]);
        let s = parse_samples(&text);
        let b = busiest_shares(&s, 0, 500);
        assert_eq!(b, vec![(250, 0.8), (500, 0.8)]);
        assert_eq!(busiest_shares(&s, 250, 500), vec![(500, 0.8)]);
    }

    #[test]
    fn percentile_by_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&v, 100.0), Some(20.0));
        assert_eq!(percentile(&[], 95.0), None);
    }

    #[test]
    fn moves_and_ping_pongs_within_the_window() {
        let text = sample(0, &[(0, 1)], &["0", "0"])
            + &sample(1000, &[(0, 2)], &["1", "0"])
            + &sample(2000, &[(0, 3)], &["2", "0"])
            + &sample(3000, &[(0, 4)], &["0", "3"])
            + &sample(20000, &[(0, 5)], &["0", "0"]);
        let s = parse_samples(&text);
        let m = moves(&s);
        assert_eq!(m.len(), 5);
        // IRQ 40: 0 -> 1 -> 2 -> 0 within 3 s: the first move came back (the second did not
        // return to 1). IRQ 41: 0 -> 3, back after 17 s: outside the window.
        assert_eq!(ping_pongs(&m, 5_000), 1);
        assert_eq!(ping_pongs(&m, 20_000), 2);
    }

    #[test]
    fn spread_and_consolidation_from_the_serving_set() {
        let text = sample(0, &[(0, 1)], &["0", "0", "0"])
            + &sample(1000, &[(0, 2)], &["0", "0", "0"])
            + &sample(2000, &[(0, 3)], &["1", "2", "0"])
            + &sample(5000, &[(0, 4)], &["1", "0", "0"])
            + &sample(7000, &[(0, 5)], &["0", "0", "0"])
            + &sample(9000, &[(0, 6)], &["0", "0", "0"]);
        let s = parse_samples(&text);
        assert_eq!(spread_after(&s, 500, 4000), Some(1500));
        assert_eq!(spread_after(&s, 500, 1500), None);
        assert_eq!(consolidated_after(&s, 4000), Some(3000));
        assert_eq!(consolidated_after(&s, 8000), None);
    }

    const LINK: &str = "3: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500
    link/ether 52:54:00:12:34:00 brd ff:ff:ff:ff:ff:ff
    RX:  bytes packets errors dropped  missed   mcast
         RXB     100      0       DR       MS      0
    RX errors:  length    crc   frame    fifo overrun
                     0      0       0       0       0
    TX:  bytes packets errors dropped carrier collsns
          9000      90      0      TD       0       0
    TX errors: aborted   fifo  window heartbt transns
                     0      0       0       0       2
";

    fn link(rxb: u64, dr: u64, ms: u64, td: u64) -> String {
        LINK.replace("RXB", &rxb.to_string())
            .replace("DR", &format!("{dr:2}"))
            .replace("MS", &format!("{ms:2}"))
            .replace("TD", &format!("{td:2}"))
    }

    #[test]
    fn link_counters_sum_links_and_drops_are_differences() {
        let two = link(5000, 1, 2, 3) + &link(1000, 0, 0, 0);
        let c = link_counters(&two);
        assert_eq!(c["RX bytes"], 6000);
        assert_eq!(c["RX dropped"], 1);
        assert_eq!(c["RX missed"], 2);
        assert_eq!(c["TX dropped"], 3);
        assert!(
            !c.contains_key("RX length"),
            "the error lines are not counters: {c:?}"
        );
        assert_eq!(drops(&link(0, 1, 2, 3), &link(9, 4, 12, 3)), 13);
    }

    #[test]
    fn figures_and_table_of_a_run() {
        let text = sample(0, &[(0, 0), (0, 0)], &["0", "0"])
            + &sample(1000, &[(90, 100), (0, 100)], &["0", "0"])
            + &sample(2000, &[(50, 200), (40, 200)], &["0", "1"])
            + &sample(3000, &[(60, 300), (41, 300)], &["0", "1"])
            + &sample(9000, &[(61, 900), (42, 900)], &["0", "0"]);
        let s = parse_samples(&text);
        let f = figures(&RunInput {
            who: "x",
            samples: &s,
            hot_start: 0,
            hot_stop: 3000,
            bytes: 2_000_000,
            retransmits: 4,
            link_before: &link(0, 0, 0, 0),
            link_after: &link(0, 1, 0, 0),
            softnet_before: "0000000a 00000001 00000000\n0000000b 00000002 00000000\n",
            softnet_after: "0000000a 00000001 00000000\n0000000b 00000012 00000000\n",
        });
        assert_eq!(f.p95_busiest, 0.9);
        assert_eq!((f.moves, f.moves_hot, f.ping_pongs), (2, 1, 0));
        assert_eq!(f.spread_ms, Some(2000));
        assert_eq!(
            f.hot_ms,
            Some(1000),
            "0.9 of the first interval is above {HOT_SHARE}"
        );
        assert_eq!((f.serving_hot_max, f.serving_end), (2, 1));
        assert_eq!(f.consolidate_ms, Some(6000));
        assert_eq!((f.drops, f.backlog_drops), (1, 16));
        let t = table(&[f]);
        assert!(
            t.contains(
                "| x | 0.90 | 2 (1) | 0 | 1.00 s, 2.00 s | 1, 2, 1 | 6.00 s | 2 | 4 | 1 + 16 |"
            ),
            "{t}"
        );
    }
}
