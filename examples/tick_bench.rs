//! The rebalancer's tick on a 10,000-IRQ host against its budget.
//! `cargo run --release --example tick_bench [-- TICKS]`
//!
//! Builds the fixture root of tests/load_fixture (80 NICs x 125 queues, 128 CPUs in two
//! NUMA nodes) in a temporary directory, then runs TICKS (default 30) ticks of the daemon's
//! `Rebalancer` over it, rewriting the counters between ticks as the kernel would (not
//! timed). Prints the tick's duration p50/p99/max next to its budget
//! (`rebalance::engine::TICK_BUDGET` of a 1 s period) as a ratio: above 1.00 the tick overruns.

#[path = "../tests/load_fixture/mod.rs"]
mod load_fixture;

use std::time::Instant;

use load_fixture::Shape;
use vportd::rebalance::engine::{Rebalancer, TICK_BUDGET};

fn main() {
    let ticks: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("TICKS is a number"))
        .unwrap_or(30);
    let shape = Shape::BIG;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    let t = Instant::now();
    load_fixture::build(root, shape);
    println!(
        "fixture: {} IRQs on {} NICs, {} CPUs, /proc/interrupts {:.1} MB (built in {:.1} s)",
        shape.irqs(),
        shape.nics,
        shape.cpus,
        std::fs::metadata(root.join("proc/interrupts"))
            .unwrap()
            .len() as f64
            / 1e6,
        t.elapsed().as_secs_f64()
    );
    let cfg = load_fixture::daemon_config(root);
    let budget = cfg.period.as_secs_f64() * TICK_BUDGET;
    let mut reb = Rebalancer::new(cfg);
    let t = Instant::now();
    reb.prime().expect("the first sample");
    println!(
        "first sample and discovery: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut times = Vec::new();
    let mut moves = 0;
    for step in 1..=ticks {
        load_fixture::write_counters(root, shape, step);
        let t = Instant::now();
        let r = reb.tick(step * 1000, 1.0).expect("a tick");
        let wall = t.elapsed().as_secs_f64();
        assert!(r.moves.iter().all(|m| m.error.is_none()));
        moves += r.moves.len();
        let mv: Vec<(u32, u32)> = r.moves.iter().map(|m| (m.mv.irq, m.mv.to)).collect();
        load_fixture::kernel_follows(root, &mv);
        times.push(wall);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let (p50, p99, max) = (pct(0.50), pct(0.99), times[times.len() - 1]);
    println!(
        "{ticks} ticks ({moves} moves): tick p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; budget {:.0} ms ({:.0} % of a {:.0} s period)",
        p50 * 1e3,
        p99 * 1e3,
        max * 1e3,
        budget * 1e3,
        TICK_BUDGET * 100.0,
        budget / TICK_BUDGET
    );
    println!(
        "ratio to budget: p50 {:.2}, p99 {:.2} ({})",
        p50 / budget,
        p99 / budget,
        if p99 <= budget {
            "within budget"
        } else {
            "OVER BUDGET"
        }
    );
}
