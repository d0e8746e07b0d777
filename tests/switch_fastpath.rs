//! The switch's kernel flow cache (switch::flowcache, host::tcflow) on this machine's kernel,
//! as root, each test in a private network namespace: the kernel carries a flow after its
//! first frame (tagged trunk to trunk too); a MAC move, a link going down, an ACL added and a
//! lost NIC each take the flow out of the kernel at once, and the frames after it go through
//! the pipeline, which sends them where the new state says or drops them; the kernel's hits
//! are in the ports' counters. A switch killed
//! with SIGKILL leaves nothing behind: while it is only stopped the kernel still forwards its
//! cached flows, once it is killed its links and maps are gone and frames stop. Into a veth
//! whose peer is in another namespace the kernel redirects to the peer directly (the veth's
//! transmit counter stands still), anywhere else to the netdev's egress, and a peer moving
//! back into our namespace turns its flows back to egress at the next sweep.
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
use vportd::switch::flowcache::Redirect;
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
        let peers = (0..ports.len())
            .map(|i| RawSocket::open(&format!("vm{i}")).expect("the peer"))
            .collect();
        Rig::with_peers(ports, peers)
    }

    /// A switch on sw0, sw1, ...; `peers` are sockets on their far ends, wherever those are.
    fn with_peers(ports: Vec<PortConfig>, peers: Vec<RawSocket>) -> Rig {
        let mut sw = Switch::new(SwitchConfig::new("fast"));
        for (i, p) in ports.into_iter().enumerate() {
            sw.add_port(p, Some(Box::new(counted_edge(i)))).unwrap();
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

/// Another network namespace, held by a child process (`unshare -n sleep`), for a veth's far
/// end to live in; it goes when the child is killed.
struct Elsewhere {
    child: std::process::Child,
}

impl Elsewhere {
    fn new() -> Elsewhere {
        let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let child = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .spawn()
            .expect("unshare runs");
        let ns = format!("/proc/{}/ns/net", child.id());
        let start = Instant::now();
        while std::fs::read_link(&ns).ok().as_ref() == Some(&ours) {
            assert!(start.elapsed() < Duration::from_secs(5), "unshare -n");
            std::thread::sleep(Duration::from_millis(5));
        }
        Elsewhere { child }
    }

    /// Moves `dev` from this thread's namespace into this one, up.
    fn take(&self, dev: &str) {
        let pid = self.child.id();
        sh(&format!(
            "ip link set {dev} netns {pid} && nsenter -t {pid} -n ip link set {dev} up"
        ));
    }

    /// Moves `dev` back into the calling thread's namespace, up.
    fn give_back(&self, dev: &str) {
        let (pid, tid) = (self.child.id(), nix::unistd::gettid());
        sh(&format!(
            "nsenter -t {pid} -n ip link set {dev} netns {tid} && ip link set {dev} up"
        ));
    }

    /// A packet socket on `dev` in this namespace (a socket stays in the namespace it was
    /// made in).
    fn open(&self, dev: &str) -> RawSocket {
        use nix::sched::{CloneFlags, setns};
        let ours = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
        let there = std::fs::File::open(format!("/proc/{}/ns/net", self.child.id())).unwrap();
        setns(&there, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
        let sock = RawSocket::open(dev);
        setns(&ours, CloneFlags::CLONE_NEWNET).expect("come back");
        sock.expect("a socket on the far end")
    }

    /// `dev`'s received frames, as its namespace counts them.
    fn rx_packets(&self, dev: &str) -> u64 {
        let pid = self.child.id();
        link_stat(
            &format!("nsenter -t {pid} -n ip -j -s link show dev {dev}"),
            "rx",
        )
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A counter of `ip -j -s link show`'s output: stats64.{rx,tx}.packets.
fn link_stat(cmd: &str, dir: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&sh(cmd)).expect("ip's JSON");
    v[0]["stats64"][dir]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no {dir} packets in {v}"))
}

fn tx_packets(dev: &str) -> u64 {
    link_stat(&format!("ip -j -s link show dev {dev}"), "tx")
}

/// Waits until the kernel reports `dev` up with its peer in another namespace, or not.
fn wait_link(dev: &str, elsewhere: bool) {
    let ifindex = nix::net::if_::if_nametoindex(dev).expect("the netdev");
    let start = Instant::now();
    loop {
        let f = tcflow::link_facts(ifindex).expect("read the link");
        if f.up && f.peer_elsewhere == elsewhere {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{dev}: {f:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// b's veth peer is in another namespace (as a VM's or container's would be): the kernel
/// hands h1's frames straight to it with bpf_redirect_peer: each once, in order, and not one
/// through sw1's transmit path (its tx counter stands still while the peer receives them).
/// a's peer is in the switch's own namespace, where the kernel would drop a peer redirect:
/// the reverse flow goes through sw0's egress (its tx counter counts them). When b's peer
/// comes back into our namespace, the next sweep takes b's flows and they return egress.
#[test]
fn a_veth_peer_in_another_namespace_gets_frames_directly() {
    if !veths("fast path peer redirect", 2) {
        return;
    }
    let far = Elsewhere::new();
    far.take("vm1");
    wait_link("sw1", true);
    wait_link("sw0", false);
    let peers = vec![RawSocket::open("vm0").expect("the peer"), far.open("vm1")];
    let mut r = Rig::with_peers(vec![access("a"), access("b")], peers);
    let fc = r.sw.flowcache().unwrap();
    assert_eq!(fc.redirect_of(PortId(1)), Some(Redirect::Peer));
    assert_eq!(fc.redirect_of(PortId(0)), Some(Redirect::Egress));

    // Learn both, cache h1 -> h2 and h2 -> h1.
    r.send(1, &[Spec::new(2, 0xffff, 0)]);
    let got = r.send(0, &burst(1, 2, 0, 33));
    assert_eq!(got[1], burst_marks(1, 2, 0, 33), "h1 -> h2, in order");
    let got = r.send(1, &burst(2, 1, 0, 33));
    assert_eq!(got[0], burst_marks(2, 1, 0, 33), "h2 -> h1, in order");
    let hits = r.hits();
    assert_eq!(hits, 64, "all but each flow's first frame by the kernel");

    // Peer redirect: 257 frames, exactly once and in order, none through sw1's transmit.
    let (sw1_tx, vm1_rx) = (tx_packets("sw1"), far.rx_packets("vm1"));
    let got = r.send(0, &burst(1, 2, 100, 257));
    assert_eq!(got[1], burst_marks(1, 2, 100, 257), "each once, in order");
    assert!(got[0].is_empty());
    assert_eq!(r.hits(), hits + 257, "all by the kernel");
    assert_eq!(tx_packets("sw1"), sw1_tx, "none went out through sw1");
    let vm1_got = far.rx_packets("vm1") - vm1_rx;
    assert!(vm1_got >= 257, "vm1 counted {vm1_got} received");

    // Egress redirect to a, whose peer is here: through sw0's transmit.
    let sw0_tx = tx_packets("sw0");
    let got = r.send(1, &burst(2, 1, 100, 257));
    assert_eq!(got[0], burst_marks(2, 1, 100, 257), "each once, in order");
    assert_eq!(r.hits(), hits + 514, "all by the kernel");
    assert!(tx_packets("sw0") - sw0_tx >= 257, "through sw0's egress");

    // vm1 comes back into our namespace: a peer redirect would now be dropped. The next
    // sweep sees it and takes the flows into b; they come back as egress redirects.
    far.give_back("vm1");
    wait_link("sw1", false);
    r.peers[1] = RawSocket::open("vm1").expect("the peer, here");
    r.hits();
    assert_eq!(
        r.sw.flowcache().unwrap().redirect_of(PortId(1)),
        Some(Redirect::Egress)
    );
    let flows = r.sw.flowcache().unwrap().flows();
    assert!(
        flows.iter().all(|f| f.2 != PortId(1)),
        "flows into b gone: {flows:?}"
    );
    let hits = r.hits();
    let sw1_tx = tx_packets("sw1");
    let got = r.send(0, &burst(1, 2, 1000, 257));
    assert_eq!(got[1], burst_marks(1, 2, 1000, 257), "each once, in order");
    assert_eq!(
        r.hits(),
        hits + 256,
        "the first by the pipeline, then the kernel"
    );
    assert!(tx_packets("sw1") - sw1_tx >= 257, "through sw1's egress");
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

/// A tagged flow, trunk to trunk, into a peer in another namespace: the tag the kernel took
/// out of the frame at sw0 travels with it through bpf_redirect_peer and arrives unchanged.
#[test]
fn a_tagged_flow_keeps_its_tag_through_the_peer_redirect() {
    if !veths("fast path peer redirect, tagged", 2) {
        return;
    }
    let far = Elsewhere::new();
    far.take("vm1");
    wait_link("sw1", true);
    let trunk = |name: &str| {
        PortConfig::trunk(
            name,
            VlanMode::Trunk {
                allowed: VlanSet::from_vids([10]),
                native: None,
            },
        )
    };
    let peers = vec![RawSocket::open("vm0").expect("the peer"), far.open("vm1")];
    let mut r = Rig::with_peers(vec![trunk("t0"), trunk("t1")], peers);
    assert_eq!(
        r.sw.flowcache().unwrap().redirect_of(PortId(1)),
        Some(Redirect::Peer)
    );
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
}
