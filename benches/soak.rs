//! Soak: the daemon (release build) in the rig's guest under churn for N minutes, its resident
//! memory, open files, threads and netlink sockets printed at the start, every minute and at
//! the end. A daemon that runs for months must stay flat.
//!
//! Churn, round after round: an igb NIC hot-added through QEMU's monitor (udev and the
//! daemon give its vPort a VF), control-socket requests (`vportd ctl status`), `vportd status`,
//! a config reload (the file edited, then `vportd ctl apply`, which re-reads it; SIGHUP with
//! VPORTD_SOAK_SIGHUP=1 once the daemon has it), metrics scrapes, CNI ADD and DEL through the
//! plugin from a `[[pool]]`, and the NIC removed again.
//!
//! Run: `cargo bench --bench soak` (5 minutes) or `cargo bench --bench soak -- --minutes 30`.

#[allow(dead_code)]
#[path = "../tests/vm/rig.rs"]
mod rig;

use std::time::{Duration, Instant};

const STEPS: &str = include_str!("soak.sh");

/// One "SAMPLE uptime rss fds threads netlink" line.
#[derive(Debug, Clone, Copy)]
struct Sample {
    minute: f64,
    rss_kb: u64,
    fds: u64,
    threads: u64,
    netlink: u64,
}

fn parse_sample(stdout: &str, started: Instant) -> Option<Sample> {
    let line = stdout.lines().find(|l| l.starts_with("SAMPLE "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(2)
        .filter_map(|w| w.parse().ok())
        .collect();
    Some(Sample {
        minute: started.elapsed().as_secs_f64() / 60.0,
        rss_kb: *v.first()?,
        fds: *v.get(1)?,
        threads: *v.get(2)?,
        netlink: *v.get(3)?,
    })
}

fn step(guest: &mut rig::Guest, name: &str, args: &str) -> rig::Outcome {
    let script = format!("{STEPS}\nstep_{name} {args}\n");
    match guest.run(&script, Duration::from_secs(300)) {
        Ok(o) if o.status == 0 => o,
        Ok(o) => panic!(
            "the soak's step {name} failed ({}):\n{}\n{}",
            o.status, o.stdout, o.stderr
        ),
        Err(e) => panic!("the soak's step {name} did not finish: {e}"),
    }
}

fn print(sample: &Sample, what: &str) {
    println!(
        "  {:5.1} min  {what:<6} rss {:7} kB   fds {:4}   threads {:3}   netlink sockets {:3}",
        sample.minute, sample.rss_kb, sample.fds, sample.threads, sample.netlink
    );
}

fn main() {
    let mut minutes = 5.0_f64;
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--minutes") {
        minutes = args
            .get(at + 1)
            .and_then(|m| m.parse().ok())
            .filter(|m| *m > 0.0)
            .expect("--minutes takes a positive number");
    }
    let Some(_) = rig::rig_or_skip("soak bench") else {
        return;
    };
    let mut guest = rig::Rig::new()
        .pfs(1)
        .spare_ports(1)
        .udev()
        .boot_timeout(Duration::from_secs(300))
        .boot()
        .expect("the guest boots");
    println!("soak: the daemon under churn for {minutes} min (QEMU TCG guest, release build)");
    let started = Instant::now();
    let first = parse_sample(&step(&mut guest, "start", "").stdout, started)
        .expect("the start step samples the daemon");
    print(&first, "start");
    let mut samples = vec![first];
    let (mut rounds, mut hotplugs, mut next_minute) = (0u64, 0u64, 1.0);
    while started.elapsed().as_secs_f64() < minutes * 60.0 {
        guest
            .hotplug_igb("hot0")
            .expect("QEMU hot-plugs an igb NIC");
        step(&mut guest, "added", "");
        step(&mut guest, "churn", "3");
        guest
            .unplug("hot0", Duration::from_secs(60))
            .expect("the guest releases the NIC");
        step(&mut guest, "removed", "");
        hotplugs += 1;
        rounds += 3;
        if started.elapsed().as_secs_f64() >= next_minute * 60.0 {
            let s =
                parse_sample(&step(&mut guest, "sample", "").stdout, started).expect("a sample");
            print(&s, "");
            samples.push(s);
            next_minute += 1.0;
        }
    }
    let end = step(&mut guest, "finish", "");
    let last = parse_sample(&end.stdout, started).expect("the last sample");
    print(&last, "end");
    samples.push(last);
    let count = |key: &str| {
        end.stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    println!(
        "soak: {hotplugs} hot-add/remove cycles, {rounds} rounds of ctl status + status + reload + \
         scrape + CNI ADD/DEL; the daemon logged {} reconciles, {} error lines",
        count("RECONCILES "),
        count("ERRORS ")
    );
    for line in end.stdout.lines().filter_map(|l| l.strip_prefix("ERROR ")) {
        println!("soak: daemon log: {}", line.trim());
    }
    // Growth after the first minute (start-up allocations and lazily opened sockets are not
    // a leak): the second sample against the last.
    let base = samples.get(1).copied().unwrap_or(first);
    println!(
        "soak: from minute {:.1} to the end: rss {:+} kB ({:.2}x), fds {:+}, threads {:+}, netlink sockets {:+}",
        base.minute,
        last.rss_kb as i64 - base.rss_kb as i64,
        last.rss_kb as f64 / base.rss_kb as f64,
        last.fds as i64 - base.fds as i64,
        last.threads as i64 - base.threads as i64,
        last.netlink as i64 - base.netlink as i64
    );
    guest.shutdown().expect("the guest powers off");
}
