//! A MAC flood on the software switch: one port sends frames from 100,000 random source MACs
//! while three other ports have learned their hosts. The forwarding table must stay within
//! its capacity (8,192), the other ports must keep their entries (fair eviction takes from
//! the port holding the most), and unicast between them must still go to its one port, not
//! flood. Once over in-memory edges, once as root over AF_PACKET rings on veth pairs in a
//! private network namespace (as tests/switch_conformance.rs does).

mod common;

use common::sh;

use std::time::Duration;

use vportd::host::afpacket::{AfPacket, RawSocket, RingSize};
use vportd::model::mac::Mac;
use vportd::switch::fdb::DEFAULT_CAPACITY;
use vportd::switch::io::mem::{self, MemPeer};
use vportd::switch::testkit::{Spec, host_mac, read};
use vportd::switch::{Edge, PortConfig, PortId, Switch, SwitchConfig};

const FLOOD: u32 = 100_000;

trait Peer {
    fn inject(&self, frame: &[u8]);
    fn capture(&self) -> Vec<Vec<u8>>;
}

impl Peer for MemPeer {
    fn inject(&self, frame: &[u8]) {
        assert!(MemPeer::inject(self, frame));
    }
    fn capture(&self) -> Vec<Vec<u8>> {
        self.take()
    }
}

impl Peer for RawSocket {
    fn inject(&self, frame: &[u8]) {
        self.send(frame).expect("the peer socket sends");
    }
    fn capture(&self) -> Vec<Vec<u8>> {
        self.drain(Duration::from_millis(25))
            .expect("the peer socket receives")
    }
}

/// A xorshift generator: the flood's MACs, reproducible.
struct Rng(u64);

impl Rng {
    fn mac(&mut self) -> Mac {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let b = self.0.to_be_bytes();
        // Unicast, locally administered: every one is learnable.
        Mac([(b[2] & 0xfc) | 0x02, b[3], b[4], b[5], b[6], b[7]])
    }
}

fn flood(kernel: bool) {
    let mut sw = Switch::new(SwitchConfig::new("flood"));
    let mut peers: Vec<Box<dyn Peer>> = Vec::new();
    for i in 0..4 {
        let (edge, peer): (Box<dyn Edge>, Box<dyn Peer>) = if kernel {
            sh(&format!(
                "ip link add sw{i} type veth peer name vm{i} && ip link set sw{i} up && ip link set vm{i} up"
            ));
            let e = AfPacket::open(&format!("sw{i}"), false, RingSize::SMALL).expect("rings");
            let p = RawSocket::open(&format!("vm{i}")).expect("the peer socket");
            (Box::new(e), Box::new(p))
        } else {
            let (e, p) = mem::pair();
            (Box::new(e), Box::new(p))
        };
        sw.add_port(PortConfig::access(&format!("p{i}"), 1), Some(edge))
            .expect("a port");
        peers.push(peer);
    }
    let mut now = 1_000_000_000u64;
    let pump = |sw: &mut Switch, now: u64| {
        let mut quiet = 0;
        while quiet < if kernel { 40 } else { 1 } {
            if sw.poll(now) > 0 {
                quiet = 0;
            } else {
                quiet += 1;
                if kernel {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        }
    };
    // Hosts 1, 2, 3 behind ports 1, 2, 3 announce themselves.
    for h in 1..4u16 {
        peers[usize::from(h)].inject(&Spec::new(h, 0xffff, 0).build());
        pump(&mut sw, now);
    }
    for p in &peers {
        p.capture();
    }
    for h in 1..4u16 {
        assert_eq!(
            sw.pipeline().fdb().lookup(host_mac(h), 1),
            Some(PortId(usize::from(h)))
        );
    }

    // Port 0 floods: 100,000 source MACs, each frame to host 1 (known unicast).
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut max_len = 0;
    for n in 0..FLOOD {
        let mut spec = Spec::new(0, 1, n);
        spec.src = rng.mac();
        peers[0].inject(&spec.build());
        if n % 64 == 63 {
            pump(&mut sw, now);
            max_len = max_len.max(sw.pipeline().fdb().len());
            // Keep the peers' sockets from overflowing; what host 1 got is not the point.
            if kernel && n % 4096 == 4095 {
                peers[1].capture();
            }
        }
        if n % 10_000 == 9_999 {
            now += 1_000_000; // 1 ms of switch time per 10,000 frames: no aging during the flood
        }
    }
    pump(&mut sw, now);
    let fdb = sw.pipeline().fdb();
    max_len = max_len.max(fdb.len());
    let kind = if kernel { "af_packet" } else { "mem" };
    eprintln!(
        "{kind}: after {FLOOD} flooded MACs: table {} entries (max seen {max_len}, capacity {DEFAULT_CAPACITY}), {} evictions, flooder holds {}",
        fdb.len(),
        fdb.evictions(),
        fdb.port_count(PortId(0))
    );
    assert!(
        max_len <= DEFAULT_CAPACITY,
        "{kind}: the table grew to {max_len}"
    );
    assert!(
        fdb.evictions() >= u64::from(FLOOD) - DEFAULT_CAPACITY as u64,
        "{kind}: the flood filled the table and was evicted from"
    );
    for h in 1..4u16 {
        assert_eq!(
            fdb.lookup(host_mac(h), 1),
            Some(PortId(usize::from(h))),
            "{kind}: host {h} kept its entry"
        );
        assert_eq!(fdb.port_count(PortId(usize::from(h))), 1);
    }
    for p in &peers {
        p.capture();
    }

    // Unicast between the learned hosts still goes to its one port.
    for (from, to, other) in [(1u16, 2u16, 3usize), (2, 3, 1), (3, 1, 2)] {
        peers[usize::from(from)].inject(&Spec::new(from, to, 7).build());
        pump(&mut sw, now);
        let got: Vec<Vec<_>> = peers
            .iter()
            .map(|p| p.capture().iter().filter_map(|f| read(f)).collect())
            .collect();
        let marks =
            |i: usize| -> Vec<(u16, u16)> { got[i].iter().map(|(m, _)| (m.src, m.dst)).collect() };
        assert_eq!(marks(usize::from(to)), [(from, to)], "{kind}: delivered");
        assert!(
            marks(0).is_empty() && marks(other).is_empty(),
            "{kind}: {from} -> {to} was flooded: port 0 got {:?}, port {other} got {:?}",
            marks(0),
            marks(other)
        );
    }
}

#[test]
fn mac_flood_in_memory() {
    flood(false);
}

#[test]
fn mac_flood_over_af_packet() {
    if !common::require_root("the MAC flood over AF_PACKET") {
        return;
    }
    common::private_netns();
    flood(true);
}
