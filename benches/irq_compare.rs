//! vportd's rebalancer against Debian's irqbalance on the same real interrupts (the rig's
//! guest: two igb PFs with per-queue MSI-X IRQs, iperf3 -P 4 between them), alternating in one
//! boot so that both see the same conditions: ROUNDS rounds of vportd then irqbalance, each a
//! load step (HOT_S of iperf3) then IDLE_S idle, sampled every 250 ms in the guest. Prints one
//! table row per run and the mean of each contender. Run: `cargo bench --bench irq_compare`
//! (IRQ_COMPARE_ROUNDS, IRQ_COMPARE_HOT_S and IRQ_COMPARE_IDLE_S change the defaults 2, 30, 30).
//!
//! The guest runs under QEMU's TCG on a shared machine: its CPUs get what the host leaves, so
//! the host's load average is printed with the figures.

#[allow(dead_code)]
#[path = "../tests/vm/rig.rs"]
mod rig;

// Its unit tests run in the vm test binary; here they are compiled but not registered.
#[allow(dead_code, unused_imports)]
#[path = "../tests/vm/irq_stats.rs"]
mod irq_stats;

#[allow(dead_code)]
#[path = "../tests/vm/irq_run.rs"]
mod irq_run;

use std::time::Duration;

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let Some(env) = rig::rig_or_skip("irq_compare bench") else {
        return;
    };
    let (rounds, hot, idle) = (
        var("IRQ_COMPARE_ROUNDS", 2),
        var("IRQ_COMPARE_HOT_S", 30),
        var("IRQ_COMPARE_IDLE_S", 30),
    );
    let load_before = irq_run::host_loadavg();
    let mut guest = irq_run::with_irqbalance(rig::Rig::new().pfs(2).cpus(4), env)
        .boot()
        .expect("the guest boots");
    let contenders = vec!["vportd irqbalance"; rounds as usize].join(" ");
    let script = irq_run::script(&[
        ("CONTENDERS", &contenders),
        ("HOT_S", &hot.to_string()),
        ("IDLE_S", &idle.to_string()),
    ]);
    let budget = Duration::from_secs(300 + rounds * 2 * (hot + idle + 30));
    let o = guest
        .run(&script, budget)
        .expect("the bench script runs")
        .success();
    let runs = irq_run::figures(&o);
    println!(
        "IRQ balancing on igb (QEMU TCG guest, 4 vCPUs), {rounds} round(s) of a {hot} s iperf3 -P 4 \
         load step then {idle} s idle, vportd daemon (1 s period) and irqbalance 1.9 \
         (--interval=1) alternating; host load average {load_before} before, {} after; guest \
         load average {} at the end",
        irq_run::host_loadavg(),
        o.text("guest_loadavg.end").trim()
    );
    print!("{}", irq_stats::table(&runs));
    for who in ["vportd", "irqbalance"] {
        let mine: Vec<&irq_stats::Figures> = runs.iter().filter(|f| f.who == who).collect();
        let n = mine.len().max(1) as f64;
        let mean = |f: fn(&irq_stats::Figures) -> f64| mine.iter().map(|x| f(x)).sum::<f64>() / n;
        println!(
            "mean {who}: p95 busiest {:.2}, moves {:.1}, ping-pongs {:.1}, iperf3 {:.0} MB, \
             retransmits {:.0}, drops {:.0}",
            mean(|f| f.p95_busiest),
            mean(|f| f.moves as f64),
            mean(|f| f.ping_pongs as f64),
            mean(|f| f.mbytes),
            mean(|f| f.retransmits as f64),
            mean(|f| (f.drops + f.backlog_drops) as f64),
        );
    }
    guest.shutdown().expect("the guest powers off");
}
