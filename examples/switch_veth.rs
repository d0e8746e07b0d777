//! Runs the software switch on existing netdevs through AF_PACKET rings, for the end-to-end
//! benchmark (benches/switch_e2e.sh) and for trying the switch by hand. Every interface
//! becomes an access port on VLAN 1. Prints each port's counters when it stops.
//!
//!     switch_veth [--vnet] [--seconds N] IFNAME...
//!
//! --vnet turns on the virtio-net header, so GSO super-packets and partial checksums pass
//! through (needed for TCP over veth).

use std::time::Duration;

use vportd::host::afpacket::{AfPacket, RingSize};
use vportd::switch::{DropReason, PortConfig, Switch, SwitchConfig};

fn main() {
    let mut vnet = false;
    let mut seconds: Option<u64> = None;
    let mut ifnames = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--vnet" => vnet = true,
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()),
            _ => ifnames.push(a),
        }
    }
    if ifnames.len() < 2 {
        eprintln!("usage: switch_veth [--vnet] [--seconds N] IFNAME IFNAME...");
        std::process::exit(2);
    }
    let mut sw = Switch::new(SwitchConfig::new("bench"));
    for name in &ifnames {
        let size = if vnet { RingSize::GSO } else { RingSize::SMALL };
        let edge = AfPacket::open(name, vnet, size).unwrap_or_else(|e| {
            eprintln!("switch_veth: {e}");
            std::process::exit(1);
        });
        sw.add_port(PortConfig::access(name, 1), Some(Box::new(edge)))
            .expect("distinct names");
    }
    let counters = sw.counters();
    let handle = sw.spawn().expect("the worker starts");
    eprintln!("switch_veth: switching {}", ifnames.join(" "));
    match seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
    drop(handle);
    for (i, name) in ifnames.iter().enumerate() {
        let c = counters.port(i);
        let drops: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| c.drops_for(**r) > 0)
            .map(|r| format!("{}={}", r.as_str(), c.drops_for(*r)))
            .collect();
        println!(
            "{name}: rx {} tx {} drops [{}]",
            c.rx_packets,
            c.tx_packets,
            drops.join(" ")
        );
    }
}
