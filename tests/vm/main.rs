//! Scenarios in the SR-IOV rig: a QEMU guest whose emulated Intel 82576 NICs run the real igb
//! and igbvf drivers (see tests/vm/rig.rs and tests/vm/README.md).
//!
//! Run with `cargo test --test vm`. Without the rig the tests fail and say how to install it
//! (tests/vm/setup); VPORTD_SKIP_VM=1 skips them, except under CI. Each test boots its own
//! guest (about 6 s under TCG) and runs several checks in it; `-- --nocapture` shows the
//! boot and scenario times.

// The harness offers more than today's scenarios use (later issues' scenarios use the rest).
#[allow(dead_code)]
mod rig;

use std::collections::BTreeMap;
use std::time::Duration;

use rig::{Guest, Mode, Outcome, Rig, rig_or_skip};

/// Boots a guest and says how long it took, for the timing report in the test output.
fn boot(test: &str, rig: Rig) -> Guest {
    let guest = rig.boot().expect("the guest boots");
    eprintln!(
        "{test}: guest booted in {:.1} s",
        guest.boot_time().as_secs_f64()
    );
    guest
}

/// Runs a scenario script and says how long it took.
fn run(guest: &mut Guest, what: &str, script: &str, timeout: Duration) -> Outcome {
    let outcome = guest
        .run(script, timeout)
        .expect("the guest runs the scenario");
    eprintln!(
        "{what}: {:.1} s in the guest",
        outcome.elapsed.as_secs_f64()
    );
    outcome
}

/// One write to sriov_numvfs, as the scenario script reports it.
#[derive(Debug)]
struct NumVfsWrite {
    value: String,
    ok: bool,
    error: String,
    numvfs_after: String,
}

fn parse_numvfs_writes(stdout: &str) -> BTreeMap<String, NumVfsWrite> {
    stdout
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            let [step, value, rc, error, after] = fields.as_slice() else {
                return None;
            };
            Some((
                step.to_string(),
                NumVfsWrite {
                    value: value.to_string(),
                    ok: *rc == "ok",
                    error: error.to_string(),
                    numvfs_after: after.to_string(),
                },
            ))
        })
        .collect()
}

/// The kernel's sriov_numvfs contract, as the igb driver shows it. Later code (apply's VF
/// count changes) relies on every clause here:
/// - sriov_totalvfs is 7 on an 82576;
/// - a count above the total fails with ERANGE and changes nothing;
/// - from 0 to N works; from one non-zero count to another fails with EBUSY (go through 0);
/// - writing the current count again succeeds and does nothing (the VFs are not re-created);
/// - a value that is not a number fails with EINVAL;
/// - 0 removes every VF, and 0 again is fine.
#[test]
fn sriov_numvfs_contract() {
    let test = "sriov_numvfs_contract";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(1));
    let outcome = run(
        &mut guest,
        test,
        include_str!("scenarios/sriov_numvfs.sh"),
        Duration::from_secs(120),
    )
    .success();
    let writes = parse_numvfs_writes(&outcome.stdout);
    let step = |name: &str| {
        writes
            .get(name)
            .unwrap_or_else(|| panic!("the script reported no step {name}:\n{}", outcome.stdout))
    };
    let refused = |name: &str, errno_text: &str, numvfs: &str| {
        let write = step(name);
        assert!(
            !write.ok && write.error.contains(errno_text) && write.numvfs_after == numvfs,
            "{name}: writing {} must fail with '{errno_text}' and leave sriov_numvfs at {numvfs}; \
             got {write:?}",
            write.value
        );
    };
    let accepted = |name: &str, numvfs: &str| {
        let write = step(name);
        assert!(
            write.ok && write.numvfs_after == numvfs,
            "{name}: writing {} must succeed and leave sriov_numvfs at {numvfs}; got {write:?}",
            write.value
        );
    };

    assert_eq!(
        outcome.text("totalvfs").trim(),
        "7",
        "an 82576 offers 7 VFs"
    );
    refused("above_total", "Numerical result out of range", "0"); // ERANGE
    accepted("create", "7");
    let vfs: Vec<String> = outcome.text("vfs.7").lines().map(str::to_string).collect();
    assert_eq!(
        vfs,
        [
            "0000:01:10.0",
            "0000:01:10.2",
            "0000:01:10.4",
            "0000:01:10.6",
            "0000:01:11.0",
            "0000:01:11.2",
            "0000:01:11.4"
        ],
        "the VFs of the PF at 0000:01:00.0 sit at offset 0x80, stride 2"
    );
    refused("nonzero_to_nonzero", "Device or resource busy", "7"); // EBUSY
    accepted("same_again", "7");
    assert_eq!(
        outcome.text("ifindex.before"),
        outcome.text("ifindex.after"),
        "writing the current count again must not re-create the VFs (their netdevs keep their \
         ifindexes)"
    );
    refused("not_a_number", "Invalid argument", "7"); // EINVAL
    refused("negative", "Invalid argument", "7"); // EINVAL
    accepted("to_zero", "0");
    assert_eq!(
        outcome.text("virtfns.0").trim(),
        "0",
        "0 VFs leave no virtfn links"
    );
    accepted("zero_again", "0");
    accepted("zero_to_three", "3");
    accepted("back_to_zero", "0");
    eprintln!(
        "{test}: creating 7 VFs took {} ms in the guest",
        outcome.text("create_ms").trim()
    );
}

/// Per-IRQ interrupt totals (all CPUs) by the name /proc/interrupts gives the IRQ.
fn interrupts_by_name(text: &str) -> BTreeMap<String, u64> {
    let mut lines = text.lines();
    let cpus = lines
        .next()
        .map_or(0, |header| header.split_whitespace().count());
    let mut totals = BTreeMap::new();
    for line in lines {
        let mut words = line.split_whitespace();
        let Some(irq) = words.next() else { continue };
        if !irq
            .trim_end_matches(':')
            .chars()
            .all(|c| c.is_ascii_digit())
        {
            continue; // NMI, LOC, ...: per-CPU rows, not device IRQs
        }
        let words: Vec<&str> = words.collect();
        let total = words
            .iter()
            .take(cpus)
            .filter_map(|count| count.parse::<u64>().ok())
            .sum();
        if let Some(name) = words.last() {
            totals.insert(name.to_string(), total);
        }
    }
    totals
}

/// The two PFs, each in its own network namespace, exchange real traffic (ping, then iperf3
/// with 4 streams), and the per-queue interrupts of both rise: the load a rebalancer acts on.
#[test]
fn traffic_between_pfs_raises_queue_interrupts() {
    let test = "traffic_between_pfs_raises_queue_interrupts";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(2));
    let outcome = run(
        &mut guest,
        test,
        include_str!("scenarios/traffic.sh"),
        Duration::from_secs(180),
    )
    .success();
    let ping = outcome.text("ping");
    assert!(
        ping.contains("3 packets received"),
        "eth0 must reach eth1 across the hub:\n{ping}"
    );
    let iperf: serde_json::Value =
        serde_json::from_str(&outcome.text("iperf3.json")).expect("iperf3 writes JSON");
    let bits_per_second = iperf["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_default();
    assert!(
        bits_per_second > 1e6,
        "iperf3 must move real traffic; it reported {bits_per_second} bit/s"
    );
    let before = interrupts_by_name(&outcome.text("interrupts.before"));
    let after = interrupts_by_name(&outcome.text("interrupts.after"));
    for pf in ["eth0", "eth1"] {
        let mut rises: Vec<(String, u64)> = after
            .iter()
            .filter(|(name, _)| name.starts_with(&format!("{pf}-")))
            .map(|(name, count)| {
                let rise = count.saturating_sub(before.get(name).copied().unwrap_or(0));
                (name.clone(), rise)
            })
            .collect();
        rises.sort();
        assert!(
            !rises.is_empty(),
            "{pf} must have per-queue interrupts ({pf}-rx-N, {pf}-tx-N or {pf}-TxRx-N):\n{}",
            outcome.text("interrupts.after")
        );
        let total: u64 = rises.iter().map(|(_, rise)| rise).sum();
        assert!(
            rises.iter().any(|(_, rise)| *rise >= 100),
            "traffic must raise {pf}'s queue interrupts; they rose by {rises:?}"
        );
        eprintln!("{test}: {pf} queue interrupts rose by {total}: {rises:?}");
    }
    eprintln!(
        "{test}: iperf3 moved {:.0} Mbit/s between the PFs",
        bits_per_second / 1e6
    );
}

/// A udev rule that logs every pci and net event it sees, with the keys hotplug code reads.
const LOGGING_RULE: &str = "SUBSYSTEM==\"pci|net\", ACTION==\"add|remove|bind|unbind\", \
    RUN+=\"/bin/sh -c 'echo $env{ACTION} $env{SUBSYSTEM} slot=$env{PCI_SLOT_NAME} \
    id=$env{PCI_ID} driver=$env{DRIVER} interface=$env{INTERFACE} devpath=$env{DEVPATH} \
    >> /run/rig-udev.log'\"\n";

/// An igb NIC hot-plugged through QEMU's monitor appears in the guest (PCI function bound to
/// igb, with a netdev), the real systemd-udevd runs rules on its events, and unplugging it
/// removes it again, with events of its own.
#[test]
fn hotplug_igb_with_udev() {
    let test = "hotplug_igb_with_udev";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(
        test,
        Rig::new()
            .pfs(1)
            .spare_ports(1)
            .udev_rule("99-rig-log.rules", LOGGING_RULE),
    );
    let before = run(
        &mut guest,
        "before hot-plug",
        "igb_pfs > $OUT/pfs; pidof systemd-udevd > $OUT/udevd",
        Duration::from_secs(30),
    )
    .success();
    assert_eq!(before.text("pfs").trim(), "0000:01:00.0");
    assert!(
        !before.text("udevd").trim().is_empty(),
        "systemd-udevd must be running in the guest"
    );

    let bdf = guest
        .hotplug_igb("hot0")
        .expect("QEMU hot-plugs an igb NIC");
    let added = run(
        &mut guest,
        "hot-plug",
        &format!(
            "wait_for 60 [ -e /sys/bus/pci/devices/{bdf}/net ]\n\
             udevadm settle --timeout=30\n\
             igb_pfs > $OUT/pfs\n\
             ls /sys/bus/pci/devices/{bdf}/net > $OUT/netdev\n\
             cat /run/rig-udev.log > $OUT/events"
        ),
        Duration::from_secs(90),
    )
    .success();
    assert_eq!(
        added.text("pfs").lines().collect::<Vec<_>>(),
        ["0000:01:00.0", bdf.as_str()],
        "the hot-plugged NIC must be bound to igb"
    );
    let netdev = added.text("netdev").trim().to_string();
    let events = added.text("events");
    for expected in [
        format!("add pci slot={bdf} id=8086:10C9"),
        format!("bind pci slot={bdf} id=8086:10C9 driver=igb"),
        format!("add net slot= id= driver= interface={netdev} devpath=/devices/"),
    ] {
        assert!(
            events
                .lines()
                .any(|line| line.starts_with(&expected) && line.contains(&bdf)),
            "udev must report '{expected}...'; it logged:\n{events}"
        );
    }

    guest
        .unplug("hot0", Duration::from_secs(60))
        .expect("the guest releases the unplugged NIC");
    let removed = run(
        &mut guest,
        "unplug",
        &format!(
            "wait_for 60 sh -c '! [ -e /sys/bus/pci/devices/{bdf} ]'\n\
             udevadm settle --timeout=30\n\
             igb_pfs > $OUT/pfs\n\
             cat /run/rig-udev.log > $OUT/events"
        ),
        Duration::from_secs(90),
    )
    .success();
    assert_eq!(removed.text("pfs").trim(), "0000:01:00.0");
    let events = removed.text("events");
    for expected in [
        format!("remove net slot= id= driver= interface={netdev}"),
        format!("remove pci slot={bdf} id=8086:10C9"),
    ] {
        assert!(
            events.lines().any(|line| line.starts_with(&expected)),
            "udev must report '{expected}...'; it logged:\n{events}"
        );
    }
}

/// Not a test: tests/vm/lab runs this to build the lab's initramfs and QEMU command line into
/// $VPORTD_LAB_DIR, then runs QEMU itself on the terminal.
#[test]
#[ignore = "run by tests/vm/lab"]
fn lab_prepare() {
    let Some(dir) = std::env::var_os("VPORTD_LAB_DIR") else {
        eprintln!("lab_prepare: VPORTD_LAB_DIR is not set; run tests/vm/lab instead");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let mode = match std::env::var("VPORTD_LAB_MODE").as_deref() {
        Ok("tour") => Mode::Tour,
        _ => Mode::Lab,
    };
    let rig = rig::RigEnv::locate().expect("the rig is installed");
    let args = Rig::new()
        .pfs(2)
        .prepare(&rig, &dir, mode)
        .expect("the lab's initramfs builds");
    std::fs::write(dir.join("qemu.args"), args.join("\n") + "\n").expect("qemu.args is written");
}
