//! vportd's rebalancer and Debian's irqbalance in turn on the same real interrupts of the two
//! igb PFs, under the same iperf3 load step (a hot period, then idle), in one guest so that
//! both see the same conditions (tests/vm/scenarios/irq_compare.sh; figures by
//! tests/vm/irq_stats.rs). The longer side-by-side is benches/irq_compare.rs.

use std::time::Duration;

use crate::irq_run;
use crate::irq_stats::{self, Figures};
use crate::rig::{Rig, rig_or_skip};
use crate::{boot, run};

/// The daemon's period in the script (`--period-ms 1000`).
const PERIOD_MS: u64 = 1000;
/// From the first sampled interval the kernel shows a CPU hot to the spread: the daemon sees
/// it at its next tick (up to a period later) and moves in the tick after at the latest (the
/// policy's estimate may also run ahead of the measure); plus a sampling interval.
const SPREAD_AFTER_HOT_MS: u64 = 2 * PERIOD_MS + 250;

fn find<'a>(runs: &'a [Figures], who: &str) -> &'a Figures {
    runs.iter()
        .find(|f| f.who == who)
        .unwrap_or_else(|| panic!("no {who} run in {runs:?}"))
}

#[test]
fn rebalancer_beside_irqbalance_on_a_load_step() {
    crate::stall_retry(
        "rebalancer_beside_irqbalance_on_a_load_step",
        rebalancer_beside_irqbalance_on_a_load_step_once,
    );
}

fn rebalancer_beside_irqbalance_on_a_load_step_once() {
    let test = "rebalancer_beside_irqbalance_on_a_load_step";
    let Some(env) = rig_or_skip(test) else { return };
    let load_before = irq_run::host_loadavg();
    let mut guest = boot(
        test,
        irq_run::with_irqbalance(Rig::new().pfs(2).cpus(4), env),
    );
    let script = irq_run::script(&[
        ("CONTENDERS", "vportd irqbalance"),
        ("HOT_S", "15"),
        ("IDLE_S", "20"),
    ]);
    let o = run(&mut guest, test, &script, Duration::from_secs(600));
    let context = |n: usize| {
        format!(
            "--- contender log ---\n{}\n--- marks ---\n{}\n--- stderr ---\n{}",
            o.files
                .get(&format!("contender.{n}.log"))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
            o.files
                .get(&format!("marks.{n}"))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
            o.stderr
        )
    };
    assert_eq!(o.status, 0, "the scenario failed\n{}", context(1));
    for n in 1..=2 {
        assert_eq!(
            o.text(&format!("state.{n}")).trim(),
            "alive",
            "{}",
            context(n)
        );
    }
    let runs = irq_run::figures(&o);
    eprintln!(
        "{test}: host load average {load_before} before, {} after\n{}",
        irq_run::host_loadavg(),
        irq_stats::table(&runs)
    );
    let (v, i) = (find(&runs, "vportd"), find(&runs, "irqbalance"));
    for f in [v, i] {
        assert!(
            f.mbytes > 1.0,
            "{}: iperf3 moved {:.1} MB\n{runs:?}",
            f.who,
            f.mbytes
        );
    }
    // vportd: spreads under the load step, never moves an IRQ back and forth, and packs the
    // queues onto fewer CPUs once the load falls.
    assert_eq!(
        v.ping_pongs,
        0,
        "vportd ping-ponged\n{runs:?}\n{}",
        context(1)
    );
    let spread = v
        .spread_ms
        .unwrap_or_else(|| panic!("vportd never spread under load\n{runs:?}\n{}", context(1)));
    assert!(
        v.consolidate_ms.is_some() && v.serving_end < v.serving_hot_max,
        "vportd did not consolidate after the load\n{runs:?}\n{}",
        context(1)
    );
    if let Some(hot) = v.hot_ms {
        assert!(
            spread.saturating_sub(hot) <= SPREAD_AFTER_HOT_MS,
            "vportd spread {spread} ms after the load started, {hot} ms after a CPU was \
             measured hot (at most {SPREAD_AFTER_HOT_MS} ms)\n{runs:?}\n{}",
            context(1)
        );
    }
    // Point 9: no more work lost on the load step than irqbalance.
    assert!(
        v.drops + v.backlog_drops <= i.drops + i.backlog_drops,
        "vportd dropped more than irqbalance on the same load step\n{runs:?}"
    );
    // irqbalance: it acts on the same IRQs (else the comparison compares nothing).
    assert!(
        i.moves >= 1,
        "irqbalance moved no queue IRQ\n{runs:?}\n{}",
        context(2)
    );
    eprintln!(
        "{test}: vportd spread {:.1} periods after the load started ({} after a CPU was measured hot)",
        spread as f64 / PERIOD_MS as f64,
        v.hot_ms.map_or("never".into(), |h| format!(
            "{:.1} periods",
            spread.saturating_sub(h) as f64 / PERIOD_MS as f64
        ))
    );
    guest.shutdown().expect("the guest powers off");
}
