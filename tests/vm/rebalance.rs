//! `vportd daemon` against real interrupts: real iperf3 traffic between the two igb PFs (each in
//! its own network namespace) makes CPU 0 hot with eth0's queue interrupts, and the daemon must
//! spread them within 3 periods, coalesce once the traffic stops, and report a hand-written
//! affinity (another writer) without undoing it. When CPU 0 is hot is judged by the kernel's own
//! account of it (its irq and softirq time in /proc/stat, sampled by the scenario script), not by
//! the daemon's estimate, so a policy that misjudges load fails here; the daemon's moves come
//! from its metrics endpoint, polled in the guest (tests/vm/scenarios/rebalance.sh), and where
//! the IRQs went from /proc/irq.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::rig::{Outcome, Rig, rig_or_skip};
use crate::{boot, run};

/// The spread must come within this many periods of the load starting (issue 5).
const SPREAD_PERIODS: u64 = 3;
/// Coalescing waits for loads to decay and for 10 low periods: allow twice that and more.
const COALESCE_PERIODS: u64 = 30;
/// Another writer is reported in the period after its write (S7b), or the next.
const EXTERNAL_PERIODS: u64 = 2;
/// CPU 0 is hot when the kernel says it spent at least this share of a second handling
/// interrupts (irq + softirq): the queues' work, which only moving their IRQs takes away.
/// Idle, the share is about 0.03; under this load, with every queue IRQ on CPU 0, one run on
/// a starved build machine measured 0.40 to 0.49 (the rest of CPU 0's time is idle between
/// bursts and the guest's own processes). The daemon's own threshold (0.8) is on its estimate
/// of all busy time with queue peaks, a different measure, so the two are not compared.
const HOT_IRQ_SHARE: f64 = 0.35;
/// A spread is judged on a CPU the kernel says is at least this busy with interrupts
/// (several times the idle share): a policy that moves queues off a cool CPU fails.
const WARM_IRQ_SHARE: f64 = 0.2;
/// The window of CPU 0's interrupt share: about one daemon period.
const SHARE_WINDOW_MS: u64 = 1000;

/// One poll of the metrics endpoint: guest ms, ticks, spread, coalesce, external changes,
/// CPU 0's busy share over the last period and the policy's estimate of CPU 0's load (the
/// daemon's, reported only), and CPU 0's /proc/stat counters as the script read them then
/// (user nice system idle iowait irq softirq).
#[derive(Debug, Clone, Copy)]
struct Poll {
    ms: u64,
    ticks: u64,
    spread: u64,
    coalesce: u64,
    external: u64,
    busy0: f64,
    est0: f64,
    stat0: [u64; 7],
}

fn timeline(text: &str) -> Vec<Poll> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<f64> = l
                .split_whitespace()
                .map(|w| w.parse::<f64>().ok())
                .collect::<Option<_>>()?;
            let [
                ms,
                ticks,
                spread,
                coalesce,
                external,
                busy0,
                est0,
                stat @ ..,
            ] = f.as_slice()
            else {
                return None;
            };
            let stat0: [u64; 7] = stat
                .iter()
                .map(|v| *v as u64)
                .collect::<Vec<_>>()
                .try_into()
                .ok()?;
            Some(Poll {
                ms: *ms as u64,
                ticks: *ticks as u64,
                spread: *spread as u64,
                coalesce: *coalesce as u64,
                external: *external as u64,
                busy0: *busy0,
                est0: *est0,
                stat0,
            })
        })
        .collect()
}

fn marks(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (ms, name) = l.split_once(' ')?;
            Some((name.trim().to_string(), ms.parse().ok()?))
        })
        .collect()
}

/// The last poll at or before `ms` (the state when something began).
fn at(polls: &[Poll], ms: u64) -> Poll {
    *polls
        .iter()
        .rev()
        .find(|p| p.ms <= ms)
        .unwrap_or_else(|| panic!("no poll before {ms} ms: {polls:?}"))
}

/// CPU 0's irq + softirq share of its time over the window ending at `polls[i]`, from the
/// kernel's counters (None until a window's worth of polls precedes it).
fn irq_share(polls: &[Poll], i: usize) -> Option<f64> {
    let end = polls[i];
    let start = polls[..i]
        .iter()
        .rev()
        .find(|p| p.ms + SHARE_WINDOW_MS <= end.ms)?;
    let delta = |k: usize| end.stat0[k].saturating_sub(start.stat0[k]) as f64;
    let total: f64 = (0..7).map(delta).sum();
    (total > 0.0).then(|| (delta(5) + delta(6)) / total)
}

/// Periods from `start` to the first poll after it where `hit` holds, if any.
fn periods_until(polls: &[Poll], start: u64, hit: impl Fn(&Poll, &Poll) -> bool) -> Option<u64> {
    let base = at(polls, start);
    polls
        .iter()
        .filter(|p| p.ms > start)
        .find(|p| hit(&base, p))
        .map(|p| p.ticks - base.ticks)
}

/// One column of the "irq name affinity effective" lines of a snapshot, by IRQ.
fn column(text: &str, i: usize) -> BTreeMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.parse().ok()?, f.get(i)?.to_string()))
        })
        .collect()
}

/// Where each IRQ of a snapshot really goes.
fn effective(text: &str) -> BTreeMap<u32, String> {
    column(text, 3)
}

fn cpus_serving(o: &Outcome, phase: &str) -> BTreeSet<String> {
    ["eth0", "eth1"]
        .iter()
        .flat_map(|d| effective(&o.text(&format!("{d}.{phase}"))).into_values())
        .collect()
}

#[test]
fn daemon_spreads_coalesces_and_respects_another_writer_on_real_interrupts() {
    crate::stall_retry(
        "daemon_spreads_coalesces_and_respects_another_writer_on_real_interrupts",
        daemon_spreads_coalesces_and_respects_another_writer_on_real_interrupts_once,
    );
}

fn daemon_spreads_coalesces_and_respects_another_writer_on_real_interrupts_once() {
    let test = "daemon_spreads_coalesces_and_respects_another_writer_on_real_interrupts";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(2).cpus(4));
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/rebalance.sh"),
        Duration::from_secs(400),
    );
    let log = o.text("daemon.log");
    let queue_loads: String = o
        .files
        .get("metrics.load")
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("vportd_queue_load_ratio") || l.starts_with("vportd_cpu_"))
        .map(|l| format!("{l}\n"))
        .collect();
    let context = format!(
        "--- daemon log ---\n{log}\n--- timeline (ms ticks spread coalesce external busy0 est0, CPU 0's user nice system idle iowait irq softirq) ---\n{}\n--- marks ---\n{}\n--- loads at the end of the load ---\n{queue_loads}--- stderr ---\n{}",
        o.text("timeline"),
        o.text("marks"),
        o.stderr
    );
    assert_eq!(o.status, 0, "the scenario failed\n{context}");
    assert_eq!(o.text("daemon.state").trim(), "alive", "{context}");
    let polls = timeline(&o.text("timeline"));
    let m = marks(&o.text("marks"));
    let mark = |name: &str| {
        *m.get(name)
            .unwrap_or_else(|| panic!("no mark {name}\n{context}"))
    };
    let iperf: serde_json::Value =
        serde_json::from_str(&o.text("iperf3.json")).expect("iperf3 writes JSON");
    let mbit = iperf["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_default()
        / 1e6;
    assert!(mbit > 1.0, "iperf3 moved no traffic ({mbit} Mbit/s)");

    // Pinned: every queue IRQ of eth0 is pointed at CPU 0. (x86 moves an MSI without
    // interrupt remapping when it next fires, so the effective CPU follows with the traffic.)
    let pinned = column(&o.text("eth0.pinned"), 2);
    assert!(!pinned.is_empty(), "{}", o.text("eth0.pinned"));
    assert!(
        pinned.values().all(|c| c == "0"),
        "{}",
        o.text("eth0.pinned")
    );

    // Spread: within 3 periods of CPU 0 getting hot, eth0's queues leave CPU 0. Hot is what
    // the kernel says (CPU 0's interrupt share of the last second, HOT_IRQ_SHARE), not what
    // the daemon estimates. CPU 0 is cool before the load (else the load did not make it
    // hot), and the first spread comes on a CPU that is at least warm (else the daemon moved
    // queues off a CPU that did not need it). Under TCG iperf3 takes a variable few periods
    // from its start to full rate, so that start is only reported.
    let shares: Vec<(usize, f64)> = (0..polls.len())
        .filter_map(|i| irq_share(&polls, i).map(|s| (i, s)))
        .collect();
    let before_load = shares
        .iter()
        .filter(|(i, _)| polls[*i].ms <= mark("load_start"))
        .map(|(_, s)| *s)
        .fold(0.0, f64::max);
    assert!(
        before_load < WARM_IRQ_SHARE,
        "CPU 0 spent {before_load:.2} of a second on interrupts before the load\n{context}"
    );
    let (hot_i, hot_share) = shares
        .iter()
        .find(|(i, s)| polls[*i].ms > mark("load_start") && *s >= HOT_IRQ_SHARE)
        .copied()
        .unwrap_or_else(|| {
            panic!(
                "CPU 0 never got hot (interrupt share >= {HOT_IRQ_SHARE} in /proc/stat) under load\n{context}"
            )
        });
    let hot = polls[hot_i];
    let from_start = periods_until(&polls, mark("load_start"), |b, p| p.spread > b.spread)
        .unwrap_or_else(|| panic!("the daemon never spread under load\n{context}"));
    let base = at(&polls, mark("load_start"));
    let first_spread = polls
        .iter()
        .position(|p| p.ms > mark("load_start") && p.spread > base.spread)
        .expect("a spread was seen above");
    let share_at_spread = irq_share(&polls, first_spread).unwrap_or(0.0);
    assert!(
        share_at_spread >= WARM_IRQ_SHARE,
        "the daemon first spread when the kernel had CPU 0 at {share_at_spread:.2} of its time \
         on interrupts (below {WARM_IRQ_SHARE}: not hot)\n{context}"
    );
    // Periods from the tick before the hot one (a move in the hot tick itself is 1 period, as
    // the simulator's react column counts); a spread the daemon made a little before the
    // kernel's one-second window crossed the line counts as 0.
    let spread = polls[first_spread]
        .ticks
        .saturating_sub(at(&polls, hot.ms - 1).ticks);
    let spread_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("(eth0-") && l.contains("from CPU 0 to CPU") && l.ends_with(')'))
        .filter(|l| l.contains(": spread "))
        .collect();
    assert!(
        !spread_lines.is_empty(),
        "no eth0 queue was spread off CPU 0\n{context}"
    );
    let loaded = effective(&o.text("eth0.load"));
    let off_cpu0 = loaded.values().filter(|c| *c != "0").count();
    assert!(
        off_cpu0 >= 1,
        "after the load eth0's queues are all still on CPU 0: {}\n{context}",
        o.text("eth0.load")
    );
    assert!(
        spread <= SPREAD_PERIODS,
        "spread after {spread} periods (at most {SPREAD_PERIODS})\n{context}"
    );

    // Coalesce: once the traffic stops, queues pack back onto fewer CPUs.
    let coalesce = periods_until(&polls, mark("load_stop"), |b, p| p.coalesce > b.coalesce)
        .unwrap_or_else(|| panic!("the daemon never coalesced after the load\n{context}"));
    assert!(
        coalesce <= COALESCE_PERIODS,
        "coalesced after {coalesce} periods (at most {COALESCE_PERIODS})\n{context}"
    );
    let (busy_cpus, idle_cpus) = (cpus_serving(&o, "load"), cpus_serving(&o, "idle"));
    assert!(
        idle_cpus.len() < busy_cpus.len(),
        "queues on CPUs {busy_cpus:?} under load and {idle_cpus:?} once idle: not coalesced\n{context}"
    );

    // Another writer: reported (log and metric) and left alone.
    let ext = o.text("external");
    let f: Vec<&str> = ext.split_whitespace().collect();
    let [irq, _was, to] = f.as_slice() else {
        panic!("bad $OUT/external: {ext}")
    };
    let seen = periods_until(&polls, mark("external"), |b, p| p.external > b.external)
        .unwrap_or_else(|| panic!("the daemon never reported the write to IRQ {irq}\n{context}"));
    assert!(
        seen <= EXTERNAL_PERIODS,
        "the write was reported after {seen} periods (at most {EXTERNAL_PERIODS})\n{context}"
    );
    assert!(
        log.lines().any(|l| l.contains(&format!("IRQ {irq} "))
            && l.contains("was moved by another writer")
            && l.ends_with("leaving it alone")),
        "no log line for the write to IRQ {irq}\n{context}"
    );
    let metrics = o.text("metrics.end");
    assert!(
        metrics
            .lines()
            .filter_map(|l| l.strip_prefix("vportd_external_changes_total "))
            .any(|v| v.trim().parse::<f64>().is_ok_and(|v| v >= 1.0)),
        "{metrics}"
    );
    let after: Vec<String> = o
        .text("external.after")
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(
        after.first().map(String::as_str),
        Some(*to),
        "the daemon undid the other writer's affinity\n{context}"
    );
    let ticks_left_alone = at(&polls, mark("end")).ticks - at(&polls, mark("external")).ticks;
    let moves_after = log
        .lines()
        .filter(|l| l.starts_with(&format!("vportd: moved IRQ {irq} ")))
        .count();

    eprintln!(
        "{test}: iperf3 {mbit:.0} Mbit/s; CPU 0 {before_load:.2} of its time on interrupts before \
         the load (kernel); hot (kernel {hot_share:.2}; daemon: estimate {:.2}, busy {:.2}) {} \
         period(s) after iperf3 started; first spread at kernel share {share_at_spread:.2}; spread {spread} period(s) after CPU 0 got hot ({from_start} after iperf3 started) \
         ({} spread move(s) of eth0 off CPU 0, {off_cpu0} of {} eth0 queues off CPU 0); \
         coalesced {coalesce} period(s) after it stopped (queues on CPUs {busy_cpus:?} -> \
         {idle_cpus:?}); the hand-written affinity of IRQ {irq} (CPU {to}) reported after \
         {seen} period(s) and left alone for {ticks_left_alone} periods ({moves_after} moves of \
         that IRQ overall)",
        hot.est0,
        hot.busy0,
        hot.ticks - at(&polls, mark("load_start")).ticks,
        spread_lines.len(),
        loaded.len(),
    );
    eprintln!("{test}: the daemon's log:\n{log}");
    guest.shutdown().expect("the guest powers off");
}

/// `ethtool -S` of one netdev: statistic name -> value.
fn ethtool_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `vportd_queue_packets_total` of the metrics text: queue IRQ name -> packets.
fn metric_packets(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| l.starts_with("vportd_queue_packets_total{"))
        .filter_map(|l| {
            let name = l.split("name=\"").nth(1)?.split('"').next()?;
            let v = l.rsplit(' ').next()?.parse().ok()?;
            Some((name.to_string(), v))
        })
        .collect()
}

/// The driver's statistic behind a queue IRQ name of igb (`eth0-rx-2` -> rx_queue_2_packets).
fn igb_counter(irq_name: &str) -> Option<String> {
    let rest = irq_name.strip_prefix("eth0-")?;
    let (dir, index) = rest.split_once('-')?;
    matches!(dir, "rx" | "tx").then(|| format!("{dir}_queue_{index}_packets"))
}

fn hex_cpus(mask: &str) -> BTreeSet<u32> {
    let v = u64::from_str_radix(&mask.trim().replace(',', ""), 16).expect("a hex mask");
    (0..64).filter(|b| v & (1 << b) != 0).collect()
}

#[test]
fn queue_packets_steering_and_a_persistent_writer_on_igb() {
    crate::stall_retry(
        "queue_packets_steering_and_a_persistent_writer_on_igb",
        queue_packets_steering_and_a_persistent_writer_on_igb_once,
    );
}

fn queue_packets_steering_and_a_persistent_writer_on_igb_once() {
    let test = "queue_packets_steering_and_a_persistent_writer_on_igb";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(2).cpus(4));
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/queue_counters.sh"),
        Duration::from_secs(400),
    );
    let log = o.text("daemon.log");
    let context = format!(
        "--- daemon log ---\n{log}\n--- marks ---\n{}\n--- stderr ---\n{}",
        o.text("marks"),
        o.stderr
    );
    assert_eq!(o.status, 0, "the scenario failed\n{context}");
    assert_eq!(o.text("daemon.state").trim(), "alive", "{context}");

    // 1. Per-queue packets: the metrics come from a tick between two `ethtool -S`, so each
    //    queue's figure lies between the two readings, and traffic moved them.
    let mut compared = 0;
    let mut moving = 0;
    let mut shown = Vec::new();
    for n in 1..=3 {
        let before = ethtool_stats(&o.text(&format!("counters.{n}.before")));
        let after = ethtool_stats(&o.text(&format!("counters.{n}.after")));
        let metrics = metric_packets(&o.text(&format!("counters.{n}.metrics")));
        let eth0: BTreeMap<&String, &u64> = metrics
            .iter()
            .filter(|(k, _)| k.starts_with("eth0-"))
            .collect();
        assert!(
            eth0.len() >= 8,
            "round {n}: the metrics have packets for {} eth0 queues: {metrics:?}\n{context}",
            eth0.len()
        );
        for (name, m) in eth0 {
            let stat = igb_counter(name).unwrap_or_else(|| panic!("queue name {name}"));
            let (b, a) = (before[&stat], after[&stat]);
            assert!(
                b <= *m && *m <= a,
                "round {n}: {name} has {m} packets in the metrics, but ethtool -S said {stat} = {b} \
                 before and {a} after\n{context}"
            );
            compared += 1;
            moving += (a > b) as u32;
            if n == 3 {
                shown.push(format!("{name} {b} <= {m} <= {a}"));
            }
        }
    }
    assert!(
        moving >= 6,
        "only {moving} queue readings moved under traffic\n{context}"
    );

    // 2. RPS/XPS: each queue the daemon moved has its mask on the CPU of its last move, as
    //    the daemon read back and as the shell reads it now.
    let mut last_move: BTreeMap<String, u32> = BTreeMap::new();
    for l in log.lines() {
        if let Some(rest) = l.strip_prefix("vportd: moved IRQ ")
            && let Some(name) = rest.split('(').nth(1).and_then(|r| r.split(')').next())
            && let Some(to) = rest
                .split(" to CPU ")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|c| c.parse().ok())
        {
            last_move.insert(name.to_string(), to);
        }
    }
    let eth0_moves: Vec<(&String, &u32)> = last_move
        .iter()
        .filter(|(n, _)| n.starts_with("eth0-"))
        .collect();
    assert!(
        !eth0_moves.is_empty(),
        "the daemon moved no eth0 queue\n{context}"
    );
    let files: BTreeMap<String, String> = o
        .text("steering.end")
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(p, m)| (p.to_string(), m.to_string()))
        })
        .collect();
    for (name, cpu) in &eth0_moves {
        let (dir, index) = name["eth0-".len()..].split_once('-').expect("eth0-rx-N");
        let path = match dir {
            "rx" => format!("/sys/class/net/eth0/queues/rx-{index}/rps_cpus"),
            _ => format!("/sys/class/net/eth0/queues/tx-{index}/xps_cpus"),
        };
        let mask = files
            .get(&path)
            .unwrap_or_else(|| panic!("no {path} in steering.end\n{context}"));
        assert_eq!(
            hex_cpus(mask),
            BTreeSet::from([**cpu]),
            "{path} = {mask}, but {name} last moved to CPU {cpu}\n{context}"
        );
        assert!(
            log.contains(&format!("steering: {path} = ")) && log.contains("(read back)"),
            "the daemon did not log reading back {path}\n{context}"
        );
    }
    assert!(
        !log.contains("but the kernel holds"),
        "a steering mask did not hold\n{context}"
    );

    // 3. A persistent other writer: every change reported, the IRQ never written by the
    //    daemon while it writes, left where it last put it, and shown as yielded.
    let (irq, _) = o
        .text("contender")
        .trim()
        .split_once(' ')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .expect("irq cpu");
    let writes: Vec<String> = o
        .text("contender.writes")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect();
    assert_eq!(writes.len(), 7, "{}", o.text("contender.writes"));
    let from: usize = o
        .text("contender.log_lines")
        .trim()
        .parse()
        .expect("a count");
    let during: Vec<&str> = log.lines().skip(from).collect();
    let reported = during
        .iter()
        .filter(|l| {
            l.contains(&format!("IRQ {irq} (")) && l.contains("was moved by another writer")
        })
        .count();
    let fought = during
        .iter()
        .filter(|l| l.starts_with(&format!("vportd: moved IRQ {irq} ")))
        .count();
    assert!(
        reported >= 5,
        "only {reported} of the other writer's 7 changes were reported\n{context}"
    );
    assert_eq!(
        fought, 0,
        "the daemon wrote IRQ {irq} back {fought} time(s)\n{context}"
    );
    assert_eq!(
        o.text("contender.after").trim(),
        writes.last().unwrap().as_str(),
        "{context}"
    );
    let metrics = o.text("metrics.end");
    assert!(
        metrics.contains(&format!("vportd_irqs_yielded{{irq=\"{irq}\"}} 1")),
        "{metrics}"
    );

    eprintln!(
        "{test}: {compared} per-queue packet figures of the metrics lay between two ethtool -S \
         readings ({moving} moving), e.g. {}; RPS/XPS of {} moved eth0 queues on their new CPU \
         and read back; the other writer's IRQ {irq}: {reported} of 7 changes reported, 0 \
         written back, left on CPU {}",
        shown.join(", "),
        eth0_moves.len(),
        writes.last().unwrap()
    );
    guest.shutdown().expect("the guest powers off");
}
