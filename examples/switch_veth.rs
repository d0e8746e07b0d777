//! Runs the software switch on existing netdevs through AF_PACKET rings or AF_XDP sockets, for
//! the end-to-end benchmark (benches/switch_e2e.sh) and for trying the switch by hand. Every
//! interface becomes an access port on VLAN 1. Prints each port's counters when it stops.
//!
//!     switch_veth [--edge af_packet|af_xdp|auto] [--vnet] [--fastpath] [--seconds N] IFNAME...
//!
//! --edge picks the kernel edge (default af_packet; auto is AF_XDP where the kernel allows it,
//! else AF_PACKET). --vnet turns on AF_PACKET's virtio-net header, so GSO super-packets and
//! partial checksums pass through (needed for fast TCP over veth; AF_XDP has no such header).
//! --fastpath turns the kernel flow cache on (switch::flowcache, host::tcflow; AF_PACKET only):
//! after the pipeline forwarded a flow's first frames, the kernel redirects the rest.

use std::time::Duration;

use vportd::host::afpacket::{AfPacket, RingSize};
use vportd::host::afxdp::{AfXdp, KernelStatsProbe, ModeChoice, open_netdev_edge};
use vportd::host::tcflow::KernelFlows;
use vportd::model::edge::NetdevEdge;
use vportd::switch::{DropReason, PortConfig, Switch, SwitchConfig};

fn main() {
    let mut vnet = false;
    let mut fastpath = false;
    let mut kind = NetdevEdge::AfPacket;
    let mut seconds: Option<u64> = None;
    let mut ifnames = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--vnet" => vnet = true,
            "--fastpath" => fastpath = true,
            "--edge" => {
                kind = args.next().unwrap_or_default().parse().unwrap_or_else(|e| {
                    eprintln!("switch_veth: {e}");
                    std::process::exit(2);
                })
            }
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()),
            _ => ifnames.push(a),
        }
    }
    if ifnames.len() < 2 {
        eprintln!(
            "usage: switch_veth [--edge af_packet|af_xdp|auto] [--vnet] [--fastpath] [--seconds N] IFNAME IFNAME..."
        );
        std::process::exit(2);
    }
    if fastpath && kind != NetdevEdge::AfPacket {
        eprintln!("switch_veth: --fastpath needs --edge af_packet");
        std::process::exit(2);
    }
    let mut sw = Switch::new(SwitchConfig::new("bench"));
    let mut probes: Vec<Option<KernelStatsProbe>> = Vec::new();
    for name in &ifnames {
        let ifindex = nix::net::if_::if_nametoindex(name.as_str()).unwrap_or_else(|_| {
            eprintln!("switch_veth: there is no network interface {name}");
            std::process::exit(1);
        });
        // AF_XDP opened here rather than through open_netdev_edge, to keep a probe of the
        // kernel's drop counters for the summary.
        let edge: Box<dyn vportd::switch::Edge> = if kind == NetdevEdge::AfXdp {
            let e = AfXdp::open_index(ifindex, ModeChoice::Auto).unwrap_or_else(|e| {
                eprintln!("switch_veth: {e}");
                std::process::exit(1);
            });
            probes.push(e.kernel_stats_probe().ok());
            Box::new(e)
        } else if fastpath {
            probes.push(None);
            let size = if vnet { RingSize::GSO } else { RingSize::SMALL };
            Box::new(
                AfPacket::open_index_counted(ifindex, vnet, size).unwrap_or_else(|e| {
                    eprintln!("switch_veth: {e}");
                    std::process::exit(1);
                }),
            )
        } else {
            probes.push(None);
            open_netdev_edge(ifindex, kind, vnet, &mut |n| {
                eprintln!("switch_veth: {name}: {n}")
            })
            .unwrap_or_else(|e| {
                eprintln!("switch_veth: {e}");
                std::process::exit(1);
            })
        };
        eprintln!("switch_veth: {name} through {}", edge.kind());
        sw.add_port(PortConfig::access(name, 1), Some(edge))
            .expect("distinct names");
    }
    if fastpath {
        let kernel = KernelFlows::new().unwrap_or_else(|e| {
            eprintln!("switch_veth: {e}");
            std::process::exit(1);
        });
        sw.enable_fastpath(Box::new(kernel));
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
    if let Ok(Some(fast)) = handle.fastpath_stats() {
        println!("fast path: {fast:?}");
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
        if let Some(p) = &probes[i] {
            println!("{name}: af_xdp kernel counters {:?}", p.read());
        }
    }
}
