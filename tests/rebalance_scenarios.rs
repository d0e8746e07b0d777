//! The S1-S8 scenarios in the simulator: ours must beat the drivers' static
//! node-local round-robin on S1, S3, S4, S5a and S6, not lose on S2, and meet the
//! targets checked by `scenario_sim::verdict`. The table is printed on failure (and by
//! `cargo run --release --example rebalance_scenarios`).

use vportd::rebalance::scenario_sim::{self, Comparison};

fn row<'a>(rows: &'a [Comparison], id: &str) -> &'a Comparison {
    rows.iter().find(|r| r.id == id).expect("scenario exists")
}

#[test]
fn ours_beats_static_and_meets_the_targets() {
    let rows = scenario_sim::run_all();
    let table = scenario_sim::table(&rows);
    let r = |id| row(&rows, id);

    let s1 = r("S1");
    assert!(s1.ours.dropped < s1.static_.dropped, "S1 dropped\n{table}");
    assert_eq!(s1.ours.ping_pong, 0, "S1 ping-pong\n{table}");
    assert!(
        s1.ours.reaction.iter().all(|x| x.is_some_and(|p| p <= 2)),
        "S1 reaction\n{table}"
    );

    let s2 = r("S2");
    assert!(
        s2.ours.max_load_p99 <= s2.static_.max_load_p99.max(scenario_sim::LOAD_TARGET),
        "S2 p99\n{table}"
    );
    assert!(s2.ours.imbalance <= 1.2, "S2 imbalance\n{table}");
    assert!(
        s2.ours.steady_moves_per_10min <= 1.0,
        "S2 steady moves\n{table}"
    );
    assert!(
        s2.ours.dropped <= s2.static_.dropped + 1.0,
        "S2 dropped\n{table}"
    );

    let s3 = r("S3");
    assert!(
        s3.ours.cpus_over_bound < s3.static_.cpus_over_bound,
        "S3 CPUs\n{table}"
    );
    assert!(s3.ours.cpus_over_bound <= 1.3, "S3 CPUs vs bound\n{table}");
    assert!(s3.ours.max_load_p99 <= 0.85, "S3 p99\n{table}");

    for id in ["S4", "S7c"] {
        let s = r(id);
        assert!(
            s.ours.max_load_p99 < s.static_.max_load_p99,
            "{id} p99\n{table}"
        );
        assert_eq!(s.ours.reaction[0], Some(1), "{id} reaction\n{table}");
        assert!(
            s.ours.convergence[0].is_some_and(|c| c <= 3),
            "{id} convergence\n{table}"
        );
    }

    let s5a = r("S5a");
    assert!(
        s5a.ours.remote_share < s5a.static_.remote_share,
        "S5a remote\n{table}"
    );
    assert!(s5a.ours.remote_share <= 0.05, "S5a remote target\n{table}");
    assert!(
        r("S5b").ours.dropped < r("S5b").static_.dropped,
        "S5b dropped\n{table}"
    );

    let s6 = r("S6");
    assert!(s6.ours.dropped < s6.static_.dropped, "S6 dropped\n{table}");
    assert!(
        s6.ours.max_load_p99 < s6.static_.max_load_p99,
        "S6 p99\n{table}"
    );
    assert_eq!(s6.ours.ping_pong, 0, "S6 ping-pong\n{table}");
    assert!(
        s6.ours.max_moves_per_queue_10p <= 1,
        "S6 moves per queue\n{table}"
    );

    assert!(
        r("S7a").ours.max_load_p99 < r("S7a").static_.max_load_p99,
        "S7a\n{table}"
    );
    let s7b = r("S7b");
    assert_eq!(
        s7b.ours.external_detected_after,
        Some(1),
        "S7b detection\n{table}"
    );
    assert_eq!(s7b.ours.fights, 0, "S7b fights\n{table}");

    let s8 = r("S8");
    assert!(
        s8.ours.errors.contains_key("EPERM"),
        "S8 exercises EPERM\n{table}"
    );
    assert!(
        s8.ours.errors.contains_key("ENOSPC"),
        "S8 exercises ENOSPC\n{table}"
    );
    assert!(
        s8.ours.max_failed_writes_per_irq <= 1,
        "S8 retry storm\n{table}"
    );
    assert_eq!(s8.ours.offline_targets, 0, "S8 offline CPU\n{table}");

    for c in &rows {
        assert!(
            !scenario_sim::verdict(c)
                .iter()
                .any(|v| v.starts_with("MISS")),
            "{} misses a target\n{table}",
            c.id
        );
    }
}
