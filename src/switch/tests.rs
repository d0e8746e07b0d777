//! The switch driven through in-memory NICs on an injected clock. The full functional suite,
//! run against every NIC kind, is tests/switch_conformance.rs; these cover the switch object
//! itself (ports, links, counters, the worker thread).

use super::io::mem::{MemPeer, pair};
use super::testkit::{Spec, read};
use super::*;

fn switch_with(ports: &[PortConfig]) -> (Switch, Vec<MemPeer>) {
    let mut sw = Switch::new(SwitchConfig::new("t"));
    let mut peers = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let (edge, peer) = pair();
        let mut p = p.clone();
        if ports.iter().filter(|q| q.name == p.name).count() > 1 {
            p.name = format!("{}{i}", p.name);
        }
        sw.add_port(p, Some(Box::new(edge))).unwrap();
        peers.push(peer);
    }
    (sw, peers)
}

fn marks(peer: &MemPeer) -> Vec<(u16, u16, u32)> {
    peer.take()
        .iter()
        .filter_map(|f| read(f))
        .map(|(m, _)| (m.src, m.dst, m.seq))
        .collect()
}

#[test]
fn floods_then_learns_then_delivers() {
    let p = PortConfig::access("p", 1);
    let (mut sw, peers) = switch_with(&[p.clone(), p.clone(), p]);
    peers[0].inject(&Spec::new(1, 2, 0).build());
    sw.poll(0);
    assert_eq!(marks(&peers[1]), [(1, 2, 0)]);
    assert_eq!(marks(&peers[2]), [(1, 2, 0)]);
    assert!(marks(&peers[0]).is_empty(), "no hairpin");
    peers[1].inject(&Spec::new(2, 1, 0).build());
    sw.poll(1);
    assert_eq!(marks(&peers[0]), [(2, 1, 0)]);
    assert!(marks(&peers[2]).is_empty(), "known unicast is not flooded");
    let c = sw.counters().port(0);
    assert_eq!((c.rx_packets, c.tx_packets), (1, 1));
}

#[test]
fn link_down_drops_and_link_up_restores() {
    let p = PortConfig::access("p", 1);
    let (mut sw, peers) = switch_with(&[p.clone(), p]);
    let edge = sw.disconnect(PortId(1)).unwrap().unwrap();
    peers[0].inject(&Spec::new(1, 2, 0).build());
    sw.poll(0);
    assert!(marks(&peers[1]).is_empty());
    assert_eq!(
        sw.counters().port(0).drops_for(DropReason::NoDestination),
        1
    );
    sw.connect(PortId(1), edge).unwrap();
    peers[0].inject(&Spec::new(1, 2, 1).build());
    sw.poll(1);
    assert_eq!(marks(&peers[1]), [(1, 2, 1)]);
}

#[test]
fn ports_are_named_uniquely_and_removed() {
    let (mut sw, _peers) = switch_with(&[PortConfig::access("a", 1)]);
    assert!(matches!(
        sw.add_port(PortConfig::access("a", 1), None),
        Err(SwitchError::Duplicate { .. })
    ));
    let b = sw.add_port(PortConfig::access("b", 1), None).unwrap();
    assert!(!sw.pipeline().link_up(b));
    sw.remove_port(PortId(0)).unwrap();
    assert_eq!(sw.port_id("a"), None);
    assert_eq!(
        sw.add_port(PortConfig::access("c", 1), None).unwrap(),
        PortId(0)
    );
}

#[test]
fn worker_thread_forwards_and_takes_commands() {
    let (sw, peers) = switch_with(&[PortConfig::access("a", 1), PortConfig::access("b", 1)]);
    let h = sw.spawn().unwrap();
    for seq in 0..100 {
        peers[0].inject(&Spec::new(1, 2, seq).build());
    }
    let mut got = Vec::new();
    for _ in 0..2000 {
        got.extend(marks(&peers[1]));
        if got.len() == 100 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(got, (0..100).map(|s| (1, 2, s)).collect::<Vec<_>>());
    let (edge, peer) = pair();
    let c = h
        .add_port(PortConfig::access("c", 1), Some(Box::new(edge)))
        .unwrap();
    assert_eq!(c, PortId(2));
    assert!(h.disconnect(c).unwrap().is_some());
    drop(peer);
    let counters = h.counters();
    let sw = h.stop().unwrap();
    assert_eq!(counters.port(0).rx_packets, 100);
    assert_eq!(sw.pipeline().stats(PortId(1)).tx_packets, 100);
}
