//! The AF_XDP edge's own promises on this machine's kernel, as root, each test in a private
//! network namespace: the program is attached while the edge is open and gone when it closes
//! or its process is killed with SIGKILL (then a new open succeeds); an interface another
//! edge holds is left alone (the open fails, `auto` falls back to AF_PACKET and says why); frames
//! too big to carry are dropped and counted, the rest of the batch still goes out.
//! The switch's behaviour over this edge is tests/switch_conformance.rs.

mod common;

use common::sh;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vportd::host::afpacket::RawSocket;
use vportd::host::afxdp::{AfXdp, AfXdpError, ModeChoice, PROG_NAME, open_netdev_edge};
use vportd::model::edge::NetdevEdge;
use vportd::switch::io::{Batch, Offload};
use vportd::switch::testkit::{Spec, read};

/// A private network namespace for the calling thread with one veth pair, xa0 - xb0.
fn veth(test: &str) -> bool {
    if !common::require_root(test) {
        return false;
    }
    common::private_netns();
    sh("ip link add xa0 type veth peer name xb0 && ip link set xa0 up && ip link set xb0 up");
    true
}

/// The name of the XDP program attached to `ifname`, as iproute2 reports it.
fn attached(ifname: &str) -> Option<String> {
    let j: serde_json::Value =
        serde_json::from_str(&sh(&format!("ip -j -d link show dev {ifname}"))).unwrap();
    j[0]["xdp"]["prog"]["name"]
        .as_str()
        .or_else(|| j[0]["xdp"]["attached"][0]["prog"]["name"].as_str())
        .map(str::to_string)
}

/// Runs in a child process of `detached_on_close_and_on_kill`, in its network namespace:
/// opens the edge, says so, and waits to be killed.
#[test]
#[ignore = "a helper process; run by detached_on_close_and_on_kill"]
fn hold_edge_for_parent() {
    let ifname = std::env::var("VPORTD_AFXDP_HOLD").expect("started by the parent test");
    let edge = AfXdp::open(&ifname, ModeChoice::Auto).expect("the child opens the edge");
    println!("attached {}", edge.mode().as_str());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn detached_on_close_and_on_kill() {
    if !veth("af_xdp attach and detach") {
        return;
    }
    assert_eq!(attached("xa0"), None);
    let edge = AfXdp::open("xa0", ModeChoice::Auto).expect("open the edge");
    assert_eq!(attached("xa0").as_deref(), Some(PROG_NAME));
    drop(edge);
    assert_eq!(
        attached("xa0"),
        None,
        "closing the edge detaches the program"
    );

    // Another process holds the edge and is killed with SIGKILL: nothing of it may remain.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "hold_edge_for_parent",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("VPORTD_AFXDP_HOLD", "xa0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let said = lines
        .find(|l| l.as_ref().is_ok_and(|l| l.starts_with("attached")))
        .expect("the child reports the edge open")
        .unwrap();
    assert_eq!(said, "attached native", "veth has native XDP");
    assert_eq!(attached("xa0").as_deref(), Some(PROG_NAME));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while attached("xa0").is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        attached("xa0"),
        None,
        "the kernel detached the killed run's program"
    );

    // The next start converges: it opens, and frames flow through it.
    let mut edge = AfXdp::open("xa0", ModeChoice::Auto).expect("reopen after the kill");
    let peer = RawSocket::open("xb0").unwrap();
    peer.send(&Spec::new(1, 2, 7).build()).unwrap();
    let mut batch = Batch::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while batch.is_empty() && Instant::now() < deadline {
        vportd::switch::Edge::recv(&mut edge, &mut batch).unwrap();
    }
    let got: Vec<_> = batch.iter().filter_map(|(f, _)| read(f)).collect();
    assert_eq!(got.len(), 1, "the frame came in through the reopened edge");
    assert_eq!((got[0].0.src, got[0].0.seq), (1, 7));
}

#[test]
fn another_program_is_left_alone() {
    if !veth("af_xdp busy interface") {
        return;
    }
    let _first = AfXdp::open("xa0", ModeChoice::Auto).expect("open the edge");
    // A second edge on the same interface finds the queue taken and touches nothing.
    match AfXdp::open("xa0", ModeChoice::Auto) {
        Err(e @ AfXdpError::QueueBusy { queue: 0, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("xa0") && msg.contains("already has"), "{msg}");
        }
        Err(e) => panic!("expected QueueBusy, got {e}"),
        Ok(_) => panic!("a second edge took the same queue"),
    }
    assert_eq!(
        attached("xa0").as_deref(),
        Some(PROG_NAME),
        "the first stays"
    );

    // auto takes AF_PACKET on this interface and says why.
    let ifindex = nix::net::if_::if_nametoindex("xa0").unwrap();
    let mut notes = Vec::new();
    let edge = open_netdev_edge(ifindex, NetdevEdge::Auto, false, &mut |n| {
        notes.push(n.to_string())
    })
    .expect("auto opens something");
    assert_eq!(edge.kind(), "af_packet");
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].contains("already has an AF_XDP socket"),
        "{notes:?}"
    );
    drop(edge);
    // Where AF_XDP is free, auto takes it.
    sh("ip link add xc0 type veth peer name xd0 && ip link set xc0 up && ip link set xd0 up");
    let ifindex = nix::net::if_::if_nametoindex("xc0").unwrap();
    let edge = open_netdev_edge(ifindex, NetdevEdge::Auto, false, &mut |n| {
        panic!("unexpected fallback: {n}")
    })
    .unwrap();
    assert_eq!(edge.kind(), "af_xdp");
}

#[test]
fn oversize_frames_are_dropped_and_counted() {
    if !veth("af_xdp oversize frames") {
        return;
    }
    sh("ip link set xa0 mtu 9000 && ip link set xb0 mtu 9000");
    let mut edge = AfXdp::open("xa0", ModeChoice::Auto).expect("open the edge");
    let peer = RawSocket::open("xb0").unwrap();
    let max = edge.max_frame();
    let mut batch = Batch::new();
    batch.push(&Spec::new(1, 2, 0).len(64).build(), Offload::default());
    batch.push(
        &Spec::new(1, 2, 1).len(max + CHUNK_SLACK).build(),
        Offload::default(),
    );
    batch.push(&Spec::new(1, 2, 2).len(5000).build(), Offload::default());
    let took = vportd::switch::Edge::send(&mut edge, &batch).unwrap();
    assert_eq!(took, 2, "the oversize frame is not taken");
    assert_eq!(edge.stats().tx_oversize, 1);
    let got: Vec<u32> = peer
        .drain(Duration::from_millis(100))
        .unwrap()
        .iter()
        .filter_map(|f| read(f))
        .map(|(m, _)| m.seq)
        .collect();
    assert_eq!(got, [0, 2], "the others went out, in order");
}

/// More than the edge's maximum by a whole chunk, so no rounding can let it through.
const CHUNK_SLACK: usize = vportd::host::afxdp::CHUNK;

/// A veth with two receive queues: a socket on each, frames from either queue come in, and
/// the descriptor to sleep on wakes for any queue.
#[test]
fn every_receive_queue_is_served() {
    if !common::require_root("af_xdp multi-queue") {
        return;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
    sh(
        "ip link add xa0 numtxqueues 2 numrxqueues 2 type veth peer name xb0 numtxqueues 2 numrxqueues 2",
    );
    sh("ethtool -L xa0 rx 2 tx 2 && ethtool -L xb0 rx 2 tx 2");
    sh("ip link set xa0 up && ip link set xb0 up");
    let mut edge = AfXdp::open("xa0", ModeChoice::Auto).expect("open the edge");
    assert_eq!(edge.queues(), 2);
    let fd = vportd::switch::Edge::raw_fd(&edge).unwrap();
    let peer = RawSocket::open("xb0").unwrap();
    // UDP frames of 32 port pairs: the kernel picks the peer's transmit queue (and so our
    // receive queue) by flow hash, so both queues carry some.
    let sent = 32u32;
    for seq in 0..sent {
        let port = 1000 + seq as u16;
        peer.send(&Spec::new(1, 2, seq).udp(port, port).build())
            .unwrap();
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd, its count passed with it.
    let n = unsafe { libc::poll(&mut pfd, 1, 1000) };
    assert!(
        n == 1 && pfd.revents & libc::POLLIN != 0,
        "the sleep descriptor wakes for waiting frames"
    );
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while got.len() < sent as usize && Instant::now() < deadline {
        let mut batch = Batch::new();
        vportd::switch::Edge::recv(&mut edge, &mut batch).unwrap();
        got.extend(
            batch
                .iter()
                .filter_map(|(f, _)| read(f))
                .map(|(m, _)| m.seq),
        );
    }
    got.sort_unstable();
    assert_eq!(got, (0..sent).collect::<Vec<_>>(), "each frame once");
    {
        // veth counts XDP packets per receive queue: both queues carried frames.
        let stats = sh("ethtool -S xa0");
        for q in 0..2 {
            let key = format!("rx_queue_{q}_xdp_packets:");
            let n: u64 = stats
                .lines()
                .find_map(|l| l.trim().strip_prefix(&key))
                .unwrap_or_else(|| panic!("{key} in ethtool -S xa0:\n{stats}"))
                .trim()
                .parse()
                .unwrap();
            assert!(n > 0, "queue {q} carried no frame:\n{stats}");
        }
    }
}
