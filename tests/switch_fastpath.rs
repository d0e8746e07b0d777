//! The switch's kernel flow cache (switch::flowcache, host::tcflow) on this machine's kernel,
//! as root, each test in a private network namespace: the kernel carries a flow after its
//! first frame (tagged trunk to trunk too); a MAC move, a link going down, an ACL added and a
//! lost NIC each take the flow out of the kernel at once, and the frames after it go through
//! the pipeline, which sends them where the new state says or drops them; the kernel's hits
//! are in the ports' counters. A switch killed
//! with SIGKILL leaves nothing behind: while it is only stopped the kernel still forwards its
//! cached flows, once it is killed its links and maps are gone and frames stop.
//! The whole functional suite with the cache on is tests/switch_conformance.rs
//! (af_packet_fastpath).

mod common;

use common::sh;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vportd::host::afpacket::{AfPacket, RawSocket, RingSize};
use vportd::host::tcflow::{self, KernelFlows};
use vportd::switch::acl::{Acl, Action, Rule};
use vportd::switch::testkit::{Spec, host_mac, read};
use vportd::switch::vlan::{VlanMode, VlanSet};
use vportd::switch::{DropReason, PortConfig, PortId, Switch, SwitchConfig};

/// A private network namespace with `n` veth pairs swI - vmI, up.
fn veths(test: &str, n: usize) -> bool {
    if !common::require_root(test) {
        return false;
    }
    common::private_netns();
    for i in 0..n {
        sh(&format!(
            "ip link add sw{i} type veth peer name vm{i} && ip link set sw{i} up && ip link set vm{i} up"
        ));
    }
    true
}

fn counted_edge(i: usize) -> AfPacket {
    let ifindex = nix::net::if_::if_nametoindex(format!("sw{i}").as_str()).expect("veth");
    AfPacket::open_index_counted(ifindex, true, RingSize::GSO).expect("open rings")
}

fn marks(frames: &[Vec<u8>]) -> Vec<(u16, u16, u32)> {
    frames
        .iter()
        .filter_map(|f| read(f))
        .map(|(m, _)| (m.src, m.dst, m.seq))
        .collect()
}

struct Rig {
    sw: Switch,
    peers: Vec<RawSocket>,
    now: u64,
}

impl Rig {
    fn new(ports: Vec<PortConfig>) -> Rig {
        let mut sw = Switch::new(SwitchConfig::new("fast"));
        let mut peers = Vec::new();
        for (i, p) in ports.into_iter().enumerate() {
            sw.add_port(p, Some(Box::new(counted_edge(i)))).unwrap();
            peers.push(RawSocket::open(&format!("vm{i}")).expect("the peer"));
        }
        sw.enable_fastpath(Box::new(KernelFlows::new().expect("load the programs")));
        Rig {
            sw,
            peers,
            now: 1_000_000_000,
        }
    }

    fn pump(&mut self) {
        let mut quiet = Instant::now();
        while quiet.elapsed() < Duration::from_millis(20) {
            if self.sw.poll(self.now) > 0 {
                quiet = Instant::now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Sends `frames` from `port`'s far side, pumping the switch, and returns what each far
    /// side received.
    fn send(&mut self, port: usize, frames: &[Spec]) -> Vec<Vec<(u16, u16, u32)>> {
        for f in frames {
            self.peers[port].send(&f.build()).unwrap();
            self.sw.poll(self.now);
        }
        self.pump();
        self.peers
            .iter()
            .map(|p| marks(&p.drain(Duration::from_millis(25)).unwrap()))
            .collect()
    }

    /// The kernel's hits so far (a sweep reads them: it runs once a second of switch time).
    fn hits(&mut self) -> u64 {
        self.now += 1_000_000_000;
        self.sw.poll(self.now);
        self.sw.fastpath_stats().unwrap().hits
    }
}

fn burst(src: u16, dst: u16, from: u32, n: u32) -> Vec<Spec> {
    (from..from + n).map(|s| Spec::new(src, dst, s)).collect()
}

fn access(name: &str) -> PortConfig {
    PortConfig::access(name, 1)
}

#[test]
fn invalidation_takes_flows_out_of_the_kernel() {
    if !veths("fast path invalidation", 3) {
        return;
    }
    let mut r = Rig::new(vec![access("a"), access("b"), access("c")]);
    r.send(1, &[Spec::new(2, 0xffff, 0)]); // h2 on b
    let got = r.send(0, &burst(1, 2, 0, 50));
    assert_eq!(got[1], burst_marks(1, 2, 0, 50), "h1 -> h2 on b, in order");
    assert!(got[2].is_empty());
    assert_eq!(
        r.hits(),
        49,
        "all but the first frame carried by the kernel"
    );
    let rx_a = r.sw.pipeline().stats(PortId(0)).rx_packets;
    assert_eq!(rx_a, 50, "the kernel's hits are in a's counters");

    // h2 moves to c: the flow leaves the kernel, frames follow h2 through the pipeline, and
    // the new path is cached in its turn.
    r.send(2, &[Spec::new(2, 0xffff, 1)]);
    assert_eq!(
        r.sw.fastpath_stats().unwrap().flows,
        0,
        "flow removed on the move"
    );
    let got = r.send(0, &burst(1, 2, 100, 20));
    assert_eq!(got[2], burst_marks(1, 2, 100, 20), "followed the move");
    assert!(got[1].is_empty(), "nothing to the old port");
    assert_eq!(r.hits(), 49 + 19);

    // c's link goes down: the flow goes, h2 is forgotten, frames to it flood to b.
    let parked = r.sw.disconnect(PortId(2)).unwrap();
    assert_eq!(
        r.sw.fastpath_stats().unwrap().flows,
        0,
        "flow removed on link down"
    );
    let got = r.send(0, &burst(1, 2, 200, 5));
    assert_eq!(got[1], burst_marks(1, 2, 200, 5), "flooded to b");
    assert!(got[2].is_empty(), "c is down");
    assert_eq!(r.hits(), 68, "none of them through the kernel");
    r.sw.connect(PortId(2), parked.unwrap()).unwrap();

    // An ACL on a denying h1: the flow goes and the pipeline drops h1's frames.
    r.send(1, &[Spec::new(2, 0xffff, 2)]); // h2 back on b
    r.send(0, &burst(1, 2, 300, 10));
    assert_eq!(r.sw.fastpath_stats().unwrap().flows, 1);
    let mut a = access("a");
    a.ingress_acl = Acl::new(vec![Rule {
        src_mac: Some(host_mac(1)),
        ..Rule::any(Action::Deny)
    }]);
    r.sw.reconfigure(PortId(0), a).unwrap();
    assert_eq!(
        r.sw.fastpath_stats().unwrap().flows,
        0,
        "flow removed on the ACL"
    );
    let hits = r.hits();
    let got = r.send(0, &burst(1, 2, 400, 10));
    assert!(got.iter().all(Vec::is_empty), "denied: {got:?}");
    assert_eq!(
        r.sw.pipeline()
            .stats(PortId(0))
            .drops_for(DropReason::AclIngress),
        10
    );
    assert_eq!(r.hits(), hits, "the kernel forwarded none of them");
}

/// Trunk to trunk with the tag kept: the kernel carries the tagged flow (keyed on the tag the
/// kernel took out of the frame), the tag arrives unchanged; another VLAN is another flow.
#[test]
fn tagged_trunk_to_trunk() {
    if !veths("fast path tagged trunks", 2) {
        return;
    }
    let trunk = |name: &str| {
        PortConfig::trunk(
            name,
            VlanMode::Trunk {
                allowed: VlanSet::from_vids([10, 20]),
                native: None,
            },
        )
    };
    let mut r = Rig::new(vec![trunk("t0"), trunk("t1")]);
    r.send(1, &[Spec::new(2, 0xffff, 0).tagged(10, 0)]);
    let frames: Vec<Spec> = (0..40).map(|s| Spec::new(1, 2, s).tagged(10, 5)).collect();
    for f in &frames {
        r.peers[0].send(&f.build()).unwrap();
        r.sw.poll(r.now);
    }
    r.pump();
    let got: Vec<_> = r.peers[1]
        .drain(Duration::from_millis(25))
        .unwrap()
        .iter()
        .filter_map(|f| read(f))
        .collect();
    let want: Vec<_> = frames.iter().map(|f| (f.mark, f.tag)).collect();
    assert_eq!(got, want, "each once, in order, tag (10, pcp 5) kept");
    assert_eq!(r.hits(), 39);
    // h2 is not known on VLAN 20: flooded (to t1 alone), through the pipeline.
    let got = r.send(0, &[Spec::new(1, 2, 100).tagged(20, 0)]);
    assert_eq!(got[1], [(1, 2, 100)]);
    assert_eq!(r.hits(), 39);
}

/// A port's netdev deleted under a cached flow: the switch finds its NIC gone, the flow goes
/// with it, and the port's link is down.
#[test]
fn a_lost_nic_takes_its_flows() {
    if !veths("fast path NIC lost", 2) {
        return;
    }
    let mut r = Rig::new(vec![access("a"), access("b")]);
    r.send(1, &[Spec::new(2, 0xffff, 0)]);
    r.send(0, &burst(1, 2, 0, 10));
    assert_eq!(r.hits(), 9);
    assert_eq!(r.sw.fastpath_stats().unwrap().flows, 1);
    sh("ip link del sw1");
    r.hits(); // a poll a second later asks every NIC whether it is still there
    assert_eq!(r.sw.pipeline().stats(PortId(1)).nic_lost, 1);
    assert!(!r.sw.pipeline().link_up(PortId(1)));
    let fast = r.sw.fastpath_stats().unwrap();
    assert_eq!((fast.flows, fast.removed), (0, 1), "{fast:?}");
    assert!(!r.sw.flowcache().unwrap().attached(PortId(1)));
}

fn burst_marks(src: u16, dst: u16, from: u32, n: u32) -> Vec<(u16, u16, u32)> {
    (from..from + n).map(|s| (src, dst, s)).collect()
}

/// Runs in a child process of `kill_leaves_nothing_behind`, in its network namespace: a
/// switch with the flow cache on sw0 and sw1, its worker running; prints the ids of its tcx
/// links and maps, then waits to be killed.
#[test]
#[ignore = "a helper process; run by kill_leaves_nothing_behind"]
fn hold_fastpath_for_parent() {
    std::env::var("VPORTD_FASTPATH_HOLD").expect("started by the parent test");
    let mut sw = Switch::new(SwitchConfig::new("held"));
    for i in 0..2 {
        sw.add_port(access(&format!("p{i}")), Some(Box::new(counted_edge(i))))
            .unwrap();
    }
    sw.enable_fastpath(Box::new(KernelFlows::new().expect("load the programs")));
    let (links, maps) = sw.flowcache().unwrap().kernel_ids();
    let handle = sw.spawn().expect("the worker starts");
    println!("links {}", join(&links));
    println!("maps {}", join(&maps));
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
    drop(handle);
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

#[test]
fn kill_leaves_nothing_behind() {
    if !veths("fast path kill -9", 2) {
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hold_fastpath_for_parent",
            "--ignored",
            "--nocapture",
        ])
        .env("VPORTD_FASTPATH_HOLD", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut maps = Vec::new();
    let mut links = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("the child says ready")
            .expect("read the child");
        let ids = |s: &str| s.split(' ').map(|s| s.parse::<u32>().unwrap()).collect();
        if let Some(s) = line.strip_prefix("maps ") {
            maps = ids(s);
        }
        if let Some(s) = line.strip_prefix("links ") {
            links = ids(s);
        }
        if line == "ready" {
            break;
        }
    }
    assert_eq!(maps.len(), 3, "flows, state, scratch");
    assert_eq!(links.len(), 2, "a tcx link per port");
    assert!(links.iter().all(|l| tcflow::link_exists(*l)));
    assert!(maps.iter().all(|m| tcflow::map_exists(*m)));

    let a = RawSocket::open("vm0").unwrap();
    let b = RawSocket::open("vm1").unwrap();
    b.send(&Spec::new(2, 0xffff, 0).build()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let send = |from: u32, n: u32| {
        for s in from..from + n {
            a.send(&Spec::new(1, 2, s).build()).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    send(0, 20);
    let got = marks(&b.drain(Duration::from_millis(100)).unwrap());
    assert_eq!(got, burst_marks(1, 2, 0, 20), "the running switch forwards");

    // Stopped, the switch cannot forward: what arrives now, the kernel carried.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    send(100, 20);
    let got = marks(&b.drain(Duration::from_millis(100)).unwrap());
    assert_eq!(
        got,
        burst_marks(1, 2, 100, 20),
        "the kernel forwards for a stopped switch"
    );

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while (links.iter().any(|l| tcflow::link_exists(*l))
        || maps.iter().any(|m| tcflow::map_exists(*m)))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for l in &links {
        assert!(
            !tcflow::link_exists(*l),
            "tcx link {l} outlived its process"
        );
    }
    for m in &maps {
        assert!(!tcflow::map_exists(*m), "map {m} outlived its process");
    }
    send(200, 20);
    let got = marks(&b.drain(Duration::from_millis(100)).unwrap());
    assert!(
        got.is_empty(),
        "nothing forwards for a dead switch: {got:?}"
    );

    // A new switch on the same netdevs works from scratch.
    let mut r = Rig {
        sw: Switch::new(SwitchConfig::new("again")),
        peers: vec![a, b],
        now: 1_000_000_000,
    };
    for i in 0..2 {
        r.sw.add_port(access(&format!("p{i}")), Some(Box::new(counted_edge(i))))
            .unwrap();
    }
    r.sw.enable_fastpath(Box::new(KernelFlows::new().expect("load the programs")));
    r.send(1, &[Spec::new(2, 0xffff, 1)]);
    let got = r.send(0, &burst(1, 2, 300, 10));
    assert_eq!(got[1], burst_marks(1, 2, 300, 10));
    assert_eq!(r.hits(), 9);
}
