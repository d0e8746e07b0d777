//! Policy decision time per tick for 1,024 queue IRQs on 256 CPUs (target < 1 ms).
//! `cargo run --release --example rebalance_bench`
//!
//! 2 nodes x 64 cores x 2 threads; 16 NICs x 64 queues, all starting where the
//! drivers hint them; loads drawn per tick so that some CPUs run hot, some cold,
//! which exercises spread, coalesce and NUMA passes every tick.

use std::time::Instant;

use vportd::rebalance::policy::{Observation, Policy, PolicyConfig, QueueObs};
use vportd::rebalance::scenario_sim::Rng;
use vportd::rebalance::{QueueSpec, Topology};

fn main() {
    let topo = Topology::synthetic(2, 64, 2);
    let specs: Vec<QueueSpec> = (0..1024u32)
        .map(|i| QueueSpec {
            irq: 100 + i,
            name: format!("nic{}-TxRx-{}", i / 64, i % 64),
            nic: format!("0000:{:02x}:00.0", i / 64),
            node: Some((i / 64) % 2),
            cpus: Vec::new(),
        })
        .collect();
    let mut cpu_of: Vec<u32> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| topo.local_spread(i % 64, s.node))
        .collect();
    let mut policy = Policy::new(PolicyConfig::default());
    let mut rng = Rng::new(42);
    let mut times = Vec::new();
    for tick in 0..2000u64 {
        let loads: Vec<f64> = (0..1024)
            .map(|i| {
                let hot = (i + tick as usize / 50).is_multiple_of(7);
                if hot {
                    0.3 + 0.3 * rng.f64()
                } else {
                    0.02 * rng.f64()
                }
            })
            .collect();
        let mut busy = std::collections::BTreeMap::new();
        for (i, c) in cpu_of.iter().enumerate() {
            *busy.entry(*c).or_insert(0.0) += loads[i];
        }
        for c in &topo.cpus {
            busy.entry(c.id).or_insert(0.0);
        }
        for v in busy.values_mut() {
            *v = f64::min(*v, 1.0);
        }
        let obs = Observation {
            now_ms: tick * 1000,
            cpu_busy: busy,
            queues: specs
                .iter()
                .enumerate()
                .map(|(i, s)| QueueObs {
                    irq: s.irq,
                    load: loads[i],
                    rate: loads[i] * 100_000.0,
                    cpu: Some(cpu_of[i]),
                    affinity: vec![cpu_of[i]],
                })
                .collect(),
        };
        let t = Instant::now();
        let d = policy.decide(&topo, &specs, &obs);
        times.push(t.elapsed().as_secs_f64());
        for m in d.moves {
            cpu_of[(m.irq - 100) as usize] = m.to;
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize] * 1e6;
    println!(
        "policy decide, 1024 IRQs on 256 CPUs, {} ticks: median {:.0} us, p99 {:.0} us, max {:.0} us (target < 1000 us)",
        times.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}
