//! The rebalancer on a big host: 10,000 queue IRQs of 80 NICs on 128 CPUs (two NUMA nodes,
//! SMT pairs), a fixture root written by tests/load_fixture. Not timed (the tick's time
//! against its budget is measured by `cargo run --release --example tick_bench`): this
//! checks that every tick there succeeds, sees every queue and CPU, and makes sound
//! decisions: the hot CPUs shed queues to NUMA-local CPUs, every write succeeds, and the
//! second round needs fewer moves than the first.

#[path = "load_fixture/mod.rs"]
mod load_fixture;

use load_fixture::Shape;
use vportd::rebalance::engine::Rebalancer;

#[test]
fn ticks_on_ten_thousand_irqs() {
    let shape = Shape::BIG;
    assert_eq!(shape.irqs(), 10_000);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    load_fixture::build(root, shape);
    let mut reb = Rebalancer::new(load_fixture::daemon_config(root));
    reb.prime().expect("the first sample of the big fixture");

    let mut moved_per_tick = Vec::new();
    for step in 1..=3u64 {
        load_fixture::write_counters(root, shape, step);
        let r = reb
            .tick(step * 1000, 1.0)
            .unwrap_or_else(|e| panic!("tick {step} fails: {e}"));
        assert_eq!(r.queues.len(), 10_000, "tick {step}: every queue IRQ seen");
        assert_eq!(r.cpus.len(), 128, "tick {step}: every CPU seen");
        assert!(
            r.queues.iter().all(|q| q.cpu.is_some()),
            "tick {step}: every queue placed on a CPU"
        );
        let hot = r.cpus.iter().filter(|c| c.busy > 0.8).count();
        let errors: Vec<_> = r.moves.iter().filter_map(|m| m.error.clone()).collect();
        assert!(errors.is_empty(), "tick {step}: failed writes: {errors:?}");
        for m in &r.moves {
            let q = r.queues.iter().find(|q| q.irq == m.mv.irq).unwrap();
            let (nic_node, cpu_node) = load_fixture::nodes(shape, &q.nic, m.mv.to);
            assert_eq!(
                nic_node, cpu_node,
                "tick {step}: IRQ {} of {} moved off its NUMA node to CPU {}",
                m.mv.irq, q.nic, m.mv.to
            );
        }
        let moves: Vec<(u32, u32)> = r.moves.iter().map(|m| (m.mv.irq, m.mv.to)).collect();
        eprintln!(
            "tick {step}: {hot} hot CPUs, {} moves, {:.1} ms (budget {:.0} ms)",
            moves.len(),
            r.tick_seconds * 1e3,
            r.budget_seconds * 1e3
        );
        if step == 1 {
            assert!(hot > 0, "the fixture's load makes CPUs hot");
            assert!(!moves.is_empty(), "hot CPUs shed queues");
        }
        load_fixture::kernel_follows(root, &moves);
        moved_per_tick.push(moves.len());
    }
    assert!(
        moved_per_tick[2] < moved_per_tick[0],
        "the load settles: moves per tick {moved_per_tick:?}"
    );
}
