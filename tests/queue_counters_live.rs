//! Per-queue packet counters on this machine's own kernel: netdev netlink qstats (the build
//! machines' virtio_net keeps them; `ethtool -S` there has no per-queue packets) agree with
//! the interface totals in sysfs, and `vportd daemon --once` reports them per queue IRQ.
//! The igb side (ethtool statistics) is proven in the SR-IOV guest (tests/vm/rebalance.rs).

use std::collections::BTreeMap;
use std::process::Command;

use vportd::host::ethtool_stats::Direction;
use vportd::host::qstats::Qstats;

fn read(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

/// Hardware netdevs (with a device link) whose driver keeps per-queue qstats.
fn qstats_netdevs(q: &mut Qstats) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir("/sys/class/net").unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !std::path::Path::new(&format!("/sys/class/net/{name}/device")).exists() {
            continue;
        }
        let ifindex = read(&format!("/sys/class/net/{name}/ifindex")) as u32;
        if q.queue_packets(ifindex).is_ok_and(|p| !p.is_empty()) {
            out.insert(name, ifindex);
        }
    }
    out
}

#[test]
fn qstats_add_up_to_the_interface_totals() {
    let mut q = Qstats::open().expect("this kernel has netdev netlink");
    let devs = qstats_netdevs(&mut q);
    assert!(
        !devs.is_empty(),
        "no netdev here keeps per-queue qstats (virtio_net on Linux 6.18 does): nothing to compare"
    );
    for (name, ifindex) in devs {
        // Each direction's queues summed lie between two readings of the sysfs total
        // (virtio_net's totals are sums of the same per-queue counters).
        let rx0 = read(&format!("/sys/class/net/{name}/statistics/rx_packets"));
        let tx0 = read(&format!("/sys/class/net/{name}/statistics/tx_packets"));
        let p = q.queue_packets(ifindex).unwrap();
        let rx1 = read(&format!("/sys/class/net/{name}/statistics/rx_packets"));
        let tx1 = read(&format!("/sys/class/net/{name}/statistics/tx_packets"));
        let sum =
            |d: Direction| -> u64 { p.iter().filter(|(k, _)| k.0 == d).map(|(_, v)| v).sum() };
        let (rx, tx) = (sum(Direction::Rx), sum(Direction::Tx));
        assert!(
            rx0 <= rx && rx <= rx1,
            "{name}: rx {rx0} <= {rx} <= {rx1} does not hold: {p:?}"
        );
        assert!(
            tx0 <= tx && tx <= tx1,
            "{name}: tx {tx0} <= {tx} <= {tx1} does not hold: {p:?}"
        );
        assert!(rx > 0 && tx > 0, "{name}: no traffic at all? {p:?}");
    }
}

#[test]
fn the_daemon_reports_qstats_per_queue_irq() {
    let mut q = Qstats::open().expect("this kernel has netdev netlink");
    let devs = qstats_netdevs(&mut q);
    let (name, ifindex) = devs.into_iter().next().expect("a netdev with qstats");
    let before = q.queue_packets(ifindex).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args(["daemon", "--once", "--period-ms", "200", "--metrics", "off"])
        .output()
        .unwrap();
    let after = q.queue_packets(ifindex).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON tick");
    let pci = std::fs::read_link(format!("/sys/class/net/{name}/device"))
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut seen = 0;
    for row in report["queues"].as_array().unwrap() {
        let Some(packets) = row["packets"].as_u64() else {
            continue;
        };
        let irq_name = row["name"].as_str().unwrap();
        // virtio: "virtio0-input.0" is rx queue 0, "virtio0-output.0" tx queue 0; the queue's
        // function is the virtio device under the PCI function.
        let (dir, idx) = if let Some(i) = irq_name.split("-input.").nth(1) {
            (Direction::Rx, i.parse::<u32>().unwrap())
        } else if let Some(i) = irq_name.split("-output.").nth(1) {
            (Direction::Tx, i.parse::<u32>().unwrap())
        } else {
            continue;
        };
        if row["nic"].as_str() != Some(pci.as_str()) && !pci.starts_with("virtio") {
            continue;
        }
        let (b, a) = (before[&(dir, idx)], after[&(dir, idx)]);
        assert!(
            b <= packets && packets <= a,
            "{irq_name}: {b} <= {packets} <= {a} does not hold"
        );
        seen += 1;
    }
    assert!(
        seen >= 2,
        "no queue of {name} ({pci}) with packets in the tick: {report}"
    );
}
