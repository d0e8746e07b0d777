//! Turns counters into loads: /proc/stat times into per-CPU busy and interrupt
//! fractions, and /proc/interrupts counts into per-queue interrupt rates and CPU
//! loads. Pure: `host/` reads the text, these functions only compute, so the
//! simulator feeds them the same way the daemon does.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::facts::parse::{CpuTimes, InterruptLine};

/// One CPU's load over a sampling period, as fractions of the period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuLoad {
    /// Time not idle.
    pub busy: f64,
    /// Time in hard and soft interrupt context.
    pub irq: f64,
}

/// Per-CPU loads between two /proc/stat readings. CPUs missing from either reading
/// (offline, hot-added) are left out; a CPU whose counters did not move reads idle.
pub fn cpu_loads(
    prev: &BTreeMap<u32, CpuTimes>,
    cur: &BTreeMap<u32, CpuTimes>,
) -> BTreeMap<u32, CpuLoad> {
    let mut out = BTreeMap::new();
    for (cpu, c) in cur {
        let Some(p) = prev.get(cpu) else { continue };
        let total = c.total().saturating_sub(p.total());
        if total == 0 {
            out.insert(*cpu, CpuLoad::default());
            continue;
        }
        let busy = c.busy().saturating_sub(p.busy()) as f64 / total as f64;
        let irq = c.irq_time().saturating_sub(p.irq_time()) as f64 / total as f64;
        out.insert(
            *cpu,
            CpuLoad {
                busy: busy.clamp(0.0, 1.0),
                irq: irq.clamp(0.0, 1.0),
            },
        );
    }
    out
}

/// Interrupts per IRQ per CPU between two /proc/interrupts readings. `columns`
/// names the CPU of each count column (the header's `CPUn`). An IRQ whose counts
/// went backwards was re-created (ethtool -L): its new counts are taken from zero.
pub fn irq_deltas(
    prev: &BTreeMap<u32, InterruptLine>,
    cur: &BTreeMap<u32, InterruptLine>,
    columns: &[u32],
) -> BTreeMap<u32, BTreeMap<u32, u64>> {
    let mut out = BTreeMap::new();
    for (irq, line) in cur {
        let before = prev.get(irq);
        let reset = before.is_some_and(|b| b.total() > line.total());
        let mut per_cpu = BTreeMap::new();
        for (col, &n) in line.per_cpu.iter().enumerate() {
            let Some(&cpu) = columns.get(col) else { break };
            let was = match before {
                Some(b) if !reset => b.per_cpu.get(col).copied().unwrap_or(0),
                _ => 0,
            };
            let d = n.saturating_sub(was);
            if d > 0 {
                per_cpu.insert(cpu, d);
            }
        }
        out.insert(*irq, per_cpu);
    }
    out
}

/// How per-queue CPU load was estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Accounting {
    /// Each CPU's irq+softirq time split between its IRQs by interrupt counts.
    IrqTime,
    /// The kernel accounts no interrupt time (no CONFIG_IRQ_TIME_ACCOUNTING, or a
    /// hypervisor hides it): interrupts times a configured cost per interrupt.
    InterruptCounts,
}

/// One queue's load over a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct QueueLoad {
    /// Interrupts per second.
    pub rate: f64,
    /// Fraction of one CPU spent serving it.
    pub load: f64,
    /// The CPU that took most of its interrupts (where it really ran).
    pub cpu: Option<u32>,
}

/// Per-queue loads for the IRQs in `queues`. Every IRQ in `deltas` (NIC or not)
/// takes its share of a CPU's interrupt time, so a disk's interrupts are not
/// charged to the NIC sharing its CPU.
pub fn queue_loads(
    deltas: &BTreeMap<u32, BTreeMap<u32, u64>>,
    cpus: &BTreeMap<u32, CpuLoad>,
    queues: &[u32],
    period_s: f64,
    cost_per_interrupt_s: f64,
) -> (BTreeMap<u32, QueueLoad>, Accounting) {
    // Saturating sums: counters near u64::MAX (corrupt or hostile text) must not panic.
    let mut per_cpu_total: BTreeMap<u32, u64> = BTreeMap::new();
    for counts in deltas.values() {
        for (cpu, n) in counts {
            let t = per_cpu_total.entry(*cpu).or_default();
            *t = t.saturating_add(*n);
        }
    }
    let irq_time: f64 = cpus.values().map(|c| c.irq).sum();
    let interrupts = per_cpu_total
        .values()
        .fold(0u64, |a, b| a.saturating_add(*b));
    let accounting = if irq_time <= 1e-9 && interrupts > 0 {
        Accounting::InterruptCounts
    } else {
        Accounting::IrqTime
    };
    let period_s = period_s.max(1e-6);
    let mut out = BTreeMap::new();
    for irq in queues {
        let Some(counts) = deltas.get(irq) else {
            out.insert(*irq, QueueLoad::default());
            continue;
        };
        let total = counts.values().fold(0u64, |a, b| a.saturating_add(*b));
        let mut load = 0.0;
        for (cpu, n) in counts {
            load += match accounting {
                Accounting::IrqTime => {
                    let share = *n as f64 / per_cpu_total[cpu].max(1) as f64;
                    share * cpus.get(cpu).map(|c| c.irq).unwrap_or(0.0)
                }
                Accounting::InterruptCounts => *n as f64 * cost_per_interrupt_s / period_s,
            };
        }
        let cpu = counts
            .iter()
            .max_by_key(|(cpu, n)| (**n, std::cmp::Reverse(**cpu)))
            .map(|(c, _)| *c);
        out.insert(
            *irq,
            QueueLoad {
                rate: total as f64 / period_s,
                load: load.min(1.0),
                cpu,
            },
        );
    }
    (out, accounting)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(busy: u64, idle: u64, irq: u64) -> CpuTimes {
        CpuTimes {
            user: busy - irq,
            idle,
            softirq: irq,
            ..Default::default()
        }
    }

    #[test]
    fn irq_time_is_split_by_interrupt_counts() {
        let prev = BTreeMap::from([(0, times(10, 90, 0)), (1, times(0, 100, 0))]);
        let cur = BTreeMap::from([(0, times(70, 130, 40)), (1, times(10, 190, 0))]);
        let cpus = cpu_loads(&prev, &cur);
        assert!((cpus[&0].busy - 0.6).abs() < 1e-9);
        assert!((cpus[&0].irq - 0.4).abs() < 1e-9);
        let deltas = BTreeMap::from([
            (40, BTreeMap::from([(0, 300)])),
            (41, BTreeMap::from([(0, 100)])),
        ]);
        let (q, acc) = queue_loads(&deltas, &cpus, &[40, 41], 1.0, 10e-6);
        assert_eq!(acc, Accounting::IrqTime);
        assert!((q[&40].load - 0.3).abs() < 1e-9);
        assert!((q[&41].load - 0.1).abs() < 1e-9);
        assert_eq!(q[&40].cpu, Some(0));
    }

    #[test]
    fn without_irq_accounting_counts_times_cost() {
        let cpus = BTreeMap::from([(
            0,
            CpuLoad {
                busy: 0.5,
                irq: 0.0,
            },
        )]);
        let deltas = BTreeMap::from([(40, BTreeMap::from([(0, 20_000)]))]);
        let (q, acc) = queue_loads(&deltas, &cpus, &[40], 1.0, 10e-6);
        assert_eq!(acc, Accounting::InterruptCounts);
        assert!((q[&40].load - 0.2).abs() < 1e-9);
    }

    #[test]
    fn recreated_irq_counts_from_zero() {
        let line = |n: Vec<u64>| InterruptLine {
            irq: 40,
            per_cpu: n,
            name: "eth0-rx-0".into(),
        };
        let prev = BTreeMap::from([(40, line(vec![1000, 0]))]);
        let cur = BTreeMap::from([(40, line(vec![5, 7]))]);
        let d = irq_deltas(&prev, &cur, &[0, 1]);
        assert_eq!(d[&40], BTreeMap::from([(0, 5), (1, 7)]));
    }
}
