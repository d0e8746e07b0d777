//! Benchmark (a) of issue 6: the pipeline alone, in memory, 64-byte frames, one core. Two
//! access ports with learned hosts, batches of 32 known-unicast frames through ingress,
//! forwarding and egress (including the copy into the destination's batch); then the same
//! with a trunk tagging on egress and with an ACL and a rate limit on ingress. Prints Mpps
//! per case: the median and range of several runs (the build machine is shared and noisy).
//!
//!     cargo run --release --example switch_bench

use std::hint::black_box;
use std::time::Instant;

use vportd::switch::acl::{Acl, Action, Rule};
use vportd::switch::fdb::Fdb;
use vportd::switch::io::{BATCH, Batch, Offload};
use vportd::switch::qos::TokenBucket;
use vportd::switch::testkit::Spec;
use vportd::switch::vlan::{VlanMode, VlanSet};
use vportd::switch::{Pipeline, PortConfig, PortId};

fn pipeline(dst: PortConfig, src: PortConfig) -> Pipeline {
    let mut p = Pipeline::new(Fdb::new(8192, 300_000_000_000));
    let a = p.add_port(src);
    let b = p.add_port(dst);
    p.set_link(a, true, false);
    p.set_link(b, true, false);
    p
}

fn run(name: &str, mut p: Pipeline, frames: &Batch, reverse: &Batch) {
    let mut tx: Vec<Batch> = (0..2).map(|_| Batch::new()).collect();
    // Learn both hosts.
    p.process(PortId(1), reverse, 0, &mut tx);
    p.process(PortId(0), frames, 0, &mut tx);
    tx.iter_mut().for_each(Batch::clear);
    let iters = 200_000u64;
    let mut results = Vec::new();
    // One clock over all runs (1 us a batch): restarting it would turn time back for the
    // rate limiter, which then drops, and a dropped frame is cheaper than a forwarded one.
    let mut now = 0u64;
    for _ in 0..7 {
        let mut delivered = 0u64;
        let start = Instant::now();
        for _ in 0..iters {
            now += 1000;
            p.process(PortId(0), black_box(frames), now, &mut tx);
            delivered += black_box(&tx[1]).len() as u64;
            tx[1].clear();
        }
        let secs = start.elapsed().as_secs_f64();
        // Only frames that came out count: a case that drops would otherwise look fast.
        assert_eq!(
            delivered,
            iters * frames.len() as u64,
            "{name}: frames were dropped"
        );
        results.push(delivered as f64 / secs / 1e6);
    }
    results.sort_by(f64::total_cmp);
    assert_eq!(
        p.stats(PortId(1)).tx_packets,
        0,
        "tx is counted by the switch, not here"
    );
    println!(
        "{name:<40} {:>6.1} Mpps (range {:.1}-{:.1}, 7 runs)",
        results[3], results[0], results[6]
    );
}

fn batch(specs: impl Iterator<Item = Spec>) -> Batch {
    let mut b = Batch::new();
    for s in specs.take(BATCH) {
        b.push(&s.build(), Offload::default());
    }
    b
}

fn main() {
    let fwd = batch((0..).map(|i| Spec::new(1, 2, i)));
    let back = batch((0..).map(|i| Spec::new(2, 1, i)));
    let access = || PortConfig::access("a", 1);

    run(
        "access -> access, known unicast",
        pipeline(access(), access()),
        &fwd,
        &back,
    );

    let trunk = PortConfig::trunk(
        "t",
        VlanMode::Trunk {
            allowed: VlanSet::from_vids([1, 2, 3]),
            native: None,
        },
    );
    run(
        "access -> trunk (tag on egress)",
        pipeline(trunk, access()),
        &fwd,
        &back,
    );

    let mut policed = access();
    policed.ingress_acl = Acl::new(vec![
        Rule {
            proto: Some(6),
            dst_port: Some(22..=22),
            ..Rule::any(Action::Deny)
        },
        Rule {
            ethertype: Some(0x86dd),
            ..Rule::any(Action::Deny)
        },
    ]);
    policed.rate = Some(TokenBucket::from_mbps(100_000));
    let udp = batch((0..).map(|i| Spec::new(1, 2, i).udp(1000, 53)));
    run(
        "access -> access, 5-tuple ACL + rate limit",
        pipeline(access(), policed),
        &udp,
        &back,
    );

    let flood = batch((0..).map(|i| Spec::new(1, 0xffff, i)));
    run(
        "broadcast to one other port",
        pipeline(access(), access()),
        &flood,
        &back,
    );
}
