//! The flow cache's rules on in-memory NICs posing as kernel ports, with a fake kernel half
//! whose counters the test bumps the way the tc program would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::switch::acl::{Acl, Action, Rule};
use crate::switch::io::mem::{MemEdge, MemPeer, pair};
use crate::switch::io::{Batch, Edge};
use crate::switch::testkit::{Spec, host_mac, read};
use crate::switch::vlan::{VlanMode, VlanSet};
use crate::switch::{DropReason, PortConfig, Switch, SwitchConfig};

#[derive(Default)]
struct Kernel {
    flows: HashMap<FlowKey, (u32, u32)>,
    slots: HashMap<u32, SlotCounters>,
    attached: Vec<PortId>,
    modes: HashMap<FlowKey, Redirect>,
    /// What the fake says of each netdev (none: it cannot tell).
    links: HashMap<u32, LinkFacts>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Kernel>>);

impl Fake {
    /// The kernel forwards `n` frames of `len` bytes for the flow of `key`.
    fn hit(&self, key: &FlowKey, n: u64, len: u64) {
        let mut k = self.0.lock().unwrap();
        let Some(&(slot, _)) = k.flows.get(key) else {
            return; // not cached (any more): the frame went to the switch's ring
        };
        let c = k.slots.entry(slot).or_default();
        c.packets += n;
        c.bytes += n * len;
    }
    fn keys(&self) -> Vec<FlowKey> {
        self.0.lock().unwrap().flows.keys().copied().collect()
    }
}

impl FlowBackend for Fake {
    fn attach(&mut self, port: PortId, _kp: &KernelPort) -> std::io::Result<RawFd> {
        self.0.lock().unwrap().attached.push(port);
        Ok(99)
    }
    fn detach(&mut self, port: PortId) {
        self.0.lock().unwrap().attached.retain(|p| *p != port);
    }
    fn insert(&mut self, key: &FlowKey, slot: u32, out: u32, how: Redirect) -> std::io::Result<()> {
        let mut k = self.0.lock().unwrap();
        k.flows.insert(*key, (slot, out));
        k.modes.insert(*key, how);
        k.slots.entry(slot).or_default().state = SLOT_ARMING;
        Ok(())
    }
    fn remove(&mut self, key: &FlowKey, slot: u32) {
        let mut k = self.0.lock().unwrap();
        k.flows.remove(key);
        k.slots.entry(slot).or_default().state = SLOT_FREE;
    }
    fn read(&self, slot: u32) -> SlotCounters {
        self.0
            .lock()
            .unwrap()
            .slots
            .get(&slot)
            .copied()
            .unwrap_or_default()
    }
    fn slots(&self) -> u32 {
        8
    }
    fn link_facts(&self, ifindex: u32) -> Option<LinkFacts> {
        self.0.lock().unwrap().links.get(&ifindex).cloned()
    }
}

/// An in-memory NIC that says it is kernel netdev `ifindex`.
struct KernelMem {
    inner: MemEdge,
    ifindex: u32,
    filter: Arc<Mutex<Option<RawFd>>>,
}

impl Edge for KernelMem {
    fn kind(&self) -> &'static str {
        "kernel-mem"
    }
    fn recv(&mut self, batch: &mut Batch) -> std::io::Result<()> {
        self.inner.recv(batch)
    }
    fn send(&mut self, batch: &Batch) -> std::io::Result<usize> {
        self.inner.send(batch)
    }
    fn kernel_port(&self) -> Option<KernelPort> {
        Some(KernelPort {
            ifindex: self.ifindex,
            rx_counter: 7,
        })
    }
    fn set_rx_filter(&mut self, prog: Option<RawFd>) -> std::io::Result<()> {
        *self.filter.lock().unwrap() = prog;
        Ok(())
    }
}

struct Rig {
    sw: Switch,
    peers: Vec<MemPeer>,
    fake: Fake,
    filters: Vec<Arc<Mutex<Option<RawFd>>>>,
    now: u64,
}

fn rig(ports: &[PortConfig]) -> Rig {
    let mut sw = Switch::new(SwitchConfig::new("fast"));
    let mut peers = Vec::new();
    let mut filters = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let (inner, peer) = pair();
        let filter = Arc::new(Mutex::new(None));
        let edge = KernelMem {
            inner,
            ifindex: 10 + i as u32,
            filter: filter.clone(),
        };
        sw.add_port(p.clone(), Some(Box::new(edge))).unwrap();
        peers.push(peer);
        filters.push(filter);
    }
    let fake = Fake::default();
    sw.enable_fastpath(Box::new(fake.clone()));
    Rig {
        sw,
        peers,
        fake,
        filters,
        now: 1_000_000_000,
    }
}

impl Rig {
    fn send(&mut self, port: usize, spec: Spec) -> Vec<Vec<(u16, u16, u32)>> {
        self.peers[port].inject(&spec.build());
        while self.sw.poll(self.now) > 0 {}
        self.peers
            .iter()
            .map(|p| {
                p.take()
                    .iter()
                    .filter_map(|f| read(f))
                    .map(|(m, _)| (m.src, m.dst, m.seq))
                    .collect()
            })
            .collect()
    }
    /// h1 on port 0 and h2 on port 1 learned, then one frame h1 -> h2.
    fn learn_and_send(&mut self) {
        self.send(1, Spec::new(2, 0xffff, 0));
        self.send(0, Spec::new(1, 2, 0));
    }
    fn advance(&mut self, ns: u64) {
        self.now += ns;
        self.sw.poll(self.now);
    }
}

fn access(name: &str) -> PortConfig {
    PortConfig::access(name, 1)
}

fn key(ifindex: u32, src: u16, dst: u16) -> FlowKey {
    FlowKey::of_frame(ifindex, &Spec::new(src, dst, 0).build()).unwrap()
}

#[test]
fn every_port_gets_the_filter_and_known_unicast_is_cached() {
    let mut r = rig(&[access("a"), access("b"), access("c")]);
    assert!(r.filters.iter().all(|f| *f.lock().unwrap() == Some(99)));
    r.learn_and_send();
    assert_eq!(r.fake.keys(), [key(10, 1, 2)]);
    let flows = r.sw.flowcache().unwrap().flows();
    assert_eq!(flows.len(), 1);
    assert_eq!((flows[0].1, flows[0].2), (PortId(0), PortId(1)));
    // Flooded frames and broadcasts are not cached.
    r.send(2, Spec::new(3, 77, 0));
    r.send(2, Spec::new(3, 0xffff, 1));
    assert_eq!(r.fake.keys().len(), 1);
}

#[test]
fn hits_are_counted_on_both_ports_and_keep_the_source_fresh() {
    let mut r = rig(&[access("a"), access("b")]);
    r.learn_and_send();
    let before = (
        r.sw.pipeline().stats(PortId(0)),
        r.sw.pipeline().stats(PortId(1)),
    );
    r.fake.hit(&key(10, 1, 2), 1000, 100);
    r.advance(1_000_000_000);
    let (a, b) = (
        r.sw.pipeline().stats(PortId(0)),
        r.sw.pipeline().stats(PortId(1)),
    );
    assert_eq!(a.rx_packets - before.0.rx_packets, 1000);
    assert_eq!(a.rx_bytes - before.0.rx_bytes, 100_000);
    assert_eq!(b.tx_packets - before.1.tx_packets, 1000);
    assert_eq!(r.sw.fastpath_stats().unwrap().hits, 1000);
    // The published counters follow at the next poll.
    r.sw.poll(r.now);
    assert_eq!(r.sw.counters().port(1).tx_packets, b.tx_packets);
    // h1 keeps sending through the kernel for 400 s: it never ages out, while h2 (never
    // seen as a source since) does, and takes the flow with it.
    for _ in 0..40 {
        r.fake.hit(&key(10, 1, 2), 1, 100);
        r.advance(10_000_000_000);
    }
    assert_eq!(
        r.sw.pipeline().fdb().lookup(host_mac(1), 1),
        Some(PortId(0))
    );
    assert_eq!(r.sw.pipeline().fdb().lookup(host_mac(2), 1), None);
    assert!(r.fake.keys().is_empty(), "the flow left with h2's entry");
    // h2 aged out at 301 s: the hits up to the sweep that removed the flow were counted,
    // none after.
    r.advance(1_000_000_000);
    assert_eq!(r.sw.fastpath_stats().unwrap().hits, 1030);
}

#[test]
fn a_mac_move_removes_the_flows_through_it() {
    let mut r = rig(&[access("a"), access("b"), access("c")]);
    r.learn_and_send();
    assert_eq!(r.fake.keys().len(), 1);
    // h2 shows up on c: frames to it must go there, through the pipeline.
    r.send(2, Spec::new(2, 0xffff, 1));
    assert!(r.fake.keys().is_empty());
    let got = r.send(0, Spec::new(1, 2, 5));
    assert_eq!(got[2], [(1, 2, 5)]);
    assert!(got[1].is_empty());
    // and the new path is cached in its turn.
    assert_eq!(r.fake.keys(), [key(10, 1, 2)]);
    assert_eq!(r.sw.flowcache().unwrap().flows()[0].2, PortId(2));
    // The source moving drops its flows too.
    r.send(2, Spec::new(1, 0xffff, 2));
    assert!(r.fake.keys().is_empty());
}

#[test]
fn link_down_and_config_changes_remove_flows() {
    let mut r = rig(&[access("a"), access("b"), access("c")]);
    r.learn_and_send();
    let edge = r.sw.disconnect(PortId(1)).unwrap();
    assert!(r.fake.keys().is_empty());
    assert_eq!(r.fake.0.lock().unwrap().attached.len(), 2);
    assert_eq!(
        *r.filters[1].lock().unwrap(),
        None,
        "the edge got its own filter back"
    );
    r.sw.connect(PortId(1), edge.unwrap()).unwrap();
    assert_eq!(*r.filters[1].lock().unwrap(), Some(99));
    r.learn_and_send();
    assert_eq!(r.fake.keys().len(), 1);
    // An ACL on the source port: the flow goes and the pipeline drops what the ACL denies.
    let mut a = access("a");
    a.ingress_acl = Acl::new(vec![Rule {
        src_mac: Some(host_mac(1)),
        ..Rule::any(Action::Deny)
    }]);
    r.sw.reconfigure(PortId(0), a).unwrap();
    assert!(r.fake.keys().is_empty());
    let got = r.send(0, Spec::new(1, 2, 9));
    assert!(got[1].is_empty());
    assert_eq!(
        r.sw.pipeline()
            .stats(PortId(0))
            .drops_for(DropReason::AclIngress),
        1
    );
    assert!(
        r.fake.keys().is_empty(),
        "a port with an ACL is never cached"
    );
}

#[test]
fn ports_with_per_frame_policy_or_retagging_are_not_cached() {
    let mut limited = access("a");
    limited.learn_limit = Some(10);
    let mut r = rig(&[limited, access("b")]);
    r.learn_and_send();
    assert!(r.fake.keys().is_empty(), "learning limit");

    let mut egress = access("b");
    egress.egress_acl = Acl::new(vec![Rule::any(Action::Allow)]);
    let mut r = rig(&[access("a"), egress]);
    r.learn_and_send();
    assert!(r.fake.keys().is_empty(), "egress ACL");

    // Access in, trunk out: the frame gains a tag on the way.
    let trunk = PortConfig::trunk(
        "t",
        VlanMode::Trunk {
            allowed: VlanSet::from_vids([1]),
            native: None,
        },
    );
    let mut r = rig(&[access("a"), trunk.clone()]);
    r.send(1, Spec::new(2, 0xffff, 0).tagged(1, 0));
    r.send(0, Spec::new(1, 2, 0));
    assert!(r.fake.keys().is_empty(), "tag pushed");

    // Trunk to trunk with the tag kept: cached, keyed on the tag.
    let mut t2 = trunk.clone();
    t2.name = "t2".into();
    let mut r = rig(&[trunk, t2]);
    r.send(1, Spec::new(2, 0xffff, 0).tagged(1, 3));
    r.send(0, Spec::new(1, 2, 0).tagged(1, 3));
    let keys = r.fake.keys();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].tagged());
    assert_eq!(
        keys[0],
        FlowKey::of_frame(10, &Spec::new(1, 2, 7).tagged(1, 3).build()).unwrap()
    );
}

#[test]
fn a_full_table_refuses_and_slots_come_back() {
    let ports: Vec<PortConfig> = (0..2).map(|i| access(&format!("p{i}"))).collect();
    let mut r = rig(&ports);
    r.send(1, Spec::new(2, 0xffff, 0));
    for h in 0..10u16 {
        r.send(0, Spec::new(100 + h, 2, 0));
    }
    let st = r.sw.fastpath_stats().unwrap();
    assert_eq!((st.flows, st.refused), (8, 2));
    r.sw.disconnect(PortId(1)).unwrap();
    r.advance(1_000_000_000);
    assert_eq!(r.sw.fastpath_stats().unwrap().flows, 0);
    assert_eq!(r.sw.flowcache().unwrap().stats().removed, 8);
}

#[test]
fn keys_match_the_kernel_layout() {
    let f = Spec::new(1, 2, 0).tagged(10, 5).build();
    let k = FlowKey::of_frame(0x0102_0304, &f).unwrap();
    assert_eq!(&k.0[0..4], &0x0102_0304u32.to_ne_bytes());
    assert_eq!(&k.0[4..16], &f[0..12]);
    assert_eq!(&k.0[16..18], &((5u16 << 13) | 10).to_ne_bytes());
    assert_eq!(&k.0[18..20], &[0x81, 0x00]);
    assert_eq!(&k.0[20..24], &[0; 4]);
    let u = FlowKey::of_frame(1, &Spec::new(1, 2, 0).build()).unwrap();
    assert!(!u.tagged() && u.0[16..24] == [0; 8]);
    assert_eq!(FlowKey::of_frame(1, &[0; 13]), None);
}

fn facts(kind: Option<&str>, peer_elsewhere: bool, up: bool) -> LinkFacts {
    LinkFacts {
        kind: kind.map(String::from),
        peer_elsewhere,
        up,
    }
}

#[test]
fn only_an_up_veth_with_its_peer_elsewhere_is_peer_redirected() {
    assert_eq!(
        choose_redirect(Some(&facts(Some("veth"), true, true))),
        Redirect::Peer
    );
    for f in [
        facts(Some("veth"), false, true), // peer in our namespace: the kernel would drop
        facts(Some("veth"), true, false), // peer down (no carrier)
        facts(Some("tun"), true, true),   // no peer device at all
        facts(Some("vxlan"), true, true), // a link netns, but no peer
        facts(None, false, true),         // hardware
    ] {
        assert_eq!(choose_redirect(Some(&f)), Redirect::Egress, "{f:?}");
    }
    assert_eq!(choose_redirect(None), Redirect::Egress);
}

#[test]
fn a_peer_moving_away_or_back_recaches_the_flows_into_its_port() {
    let mut r = rig(&[access("a"), access("b")]);
    let mode = |r: &Rig, k: FlowKey| r.fake.0.lock().unwrap().modes.get(&k).copied();
    // Nothing known of the netdevs when they were attached: egress.
    r.learn_and_send();
    r.send(1, Spec::new(2, 1, 0));
    assert_eq!(mode(&r, key(10, 1, 2)), Some(Redirect::Egress));
    assert_eq!(mode(&r, key(11, 2, 1)), Some(Redirect::Egress));
    // b's peer is now in another namespace: the next sweep takes the flows into b, and
    // only those; the next frame caches its flow with the peer redirect.
    let cross = facts(Some("veth"), true, true);
    r.fake.0.lock().unwrap().links.insert(11, cross);
    r.advance(1_000_000_000);
    assert_eq!(r.fake.keys(), [key(11, 2, 1)]);
    let fc = r.sw.flowcache().unwrap();
    assert_eq!(fc.redirect_of(PortId(1)), Some(Redirect::Peer));
    assert_eq!(fc.redirect_of(PortId(0)), Some(Redirect::Egress));
    let got = r.send(0, Spec::new(1, 2, 1));
    assert_eq!(got[1], [(1, 2, 1)]);
    assert_eq!(mode(&r, key(10, 1, 2)), Some(Redirect::Peer));
    // A sweep with nothing changed keeps it.
    r.advance(1_000_000_000);
    assert_eq!(mode(&r, key(10, 1, 2)), Some(Redirect::Peer));
    // The peer comes back into our namespace: egress again, after the next sweep.
    r.fake
        .0
        .lock()
        .unwrap()
        .links
        .insert(11, facts(Some("veth"), false, true));
    r.advance(1_000_000_000);
    assert_eq!(r.fake.keys(), [key(11, 2, 1)]);
    let got = r.send(0, Spec::new(1, 2, 2));
    assert_eq!(got[1], [(1, 2, 2)]);
    assert_eq!(mode(&r, key(10, 1, 2)), Some(Redirect::Egress));
}

#[test]
fn a_spoof_checked_port_is_cached_for_its_own_mac_only() {
    // A software vPort's spoof check: its own source MAC allowed, everything else denied.
    let mut a = access("a");
    a.ingress_acl = Acl::new(vec![
        Rule {
            src_mac: Some(host_mac(1)),
            ..Rule::any(Action::Allow)
        },
        Rule::any(Action::Deny),
    ]);
    let mut r = rig(&[a, access("b")]);
    r.learn_and_send();
    assert_eq!(r.fake.keys().len(), 1, "the vPort's own flow is cached");
    // Another source MAC is another flow: the pipeline drops it, nothing is cached for it.
    let got = r.send(0, Spec::new(3, 2, 9));
    assert!(got[1].is_empty());
    assert_eq!(
        r.sw.pipeline()
            .stats(PortId(0))
            .drops_for(DropReason::AclIngress),
        1
    );
    assert_eq!(r.fake.keys().len(), 1);
    // An ACL looking past the MACs (here the ethertype) keeps every frame in the pipeline.
    let mut b = access("a");
    b.ingress_acl = Acl::new(vec![Rule {
        ethertype: Some(0x86dd),
        ..Rule::any(Action::Deny)
    }]);
    let mut r = rig(&[b, access("b")]);
    r.learn_and_send();
    assert!(r.fake.keys().is_empty());
}
