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

mod cni_podman;
mod cni_pool;
mod cni_vf;
mod debian_host;
mod faults;
mod hotplug;
mod irq_compare;
mod irq_run;
mod irq_stats;
mod irqbalance;
mod netdevsim;
mod numa;
mod provision;
mod queue_groups;
mod queues;
mod rebalance;
mod switch_vf;
mod vfio;

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

/// What the guest's kernel logs when QEMU's TCG never fires a vCPU's timer again.
const TIMER_STALL: &str = "rcu_preempt kthread timer wakeup didn't happen";

/// What QEMU prints on its stderr (which the rig's error carries) when a race in its
/// multi-threaded TCG trips its own assertion and it aborts (seen once in a full CI run, while
/// a guest booted: nothing of the scenario had run yet).
const TCG_CRASH: &str = "iotlb_to_section: Assertion";

/// The emulator, not vportd, fails now and then on this 2-core machine:
/// - TCG can starve a vCPU thread for good: the guest's kernel logs RCU stalls with
///   TIMER_STALL and stops answering, and a scenario times out (seen twice in full CI runs, at
///   30 s of guest time, in different tests);
/// - QEMU itself can abort with TCG_CRASH.
///
/// A test that fails with either in its error runs once more from the start on fresh guests,
/// said loudly. Any other failure, and a second one, fails the test. A task stuck in the
/// kernel is a hung task, not this.
fn stall_retry(test: &str, body: fn()) {
    let Err(panic) = std::panic::catch_unwind(body) else {
        return;
    };
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("");
    let Some(cause) = [TIMER_STALL, TCG_CRASH]
        .into_iter()
        .find(|signature| message.contains(signature))
    else {
        std::panic::resume_unwind(panic);
    };
    eprintln!("{test}: QEMU's TCG failed under the guest ({cause}); RUNNING THE TEST AGAIN");
    body();
}

/// Runs a scenario script and says how long it took.
fn run(guest: &mut Guest, what: &str, script: &str, timeout: Duration) -> Outcome {
    // Display, not expect's Debug: the message carries the serial log, which stall_retry reads.
    let outcome = match guest.run(script, timeout) {
        Ok(o) => o,
        Err(e) => panic!("the guest runs the scenario: {e}"),
    };
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
    crate::stall_retry("sriov_numvfs_contract", sriov_numvfs_contract_once);
}

fn sriov_numvfs_contract_once() {
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
    crate::stall_retry(
        "traffic_between_pfs_raises_queue_interrupts",
        traffic_between_pfs_raises_queue_interrupts_once,
    );
}

fn traffic_between_pfs_raises_queue_interrupts_once() {
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
    crate::stall_retry("hotplug_igb_with_udev", hotplug_igb_with_udev_once);
}

fn hotplug_igb_with_udev_once() {
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

/// The harness's own promise: a scenario that hangs is cut off at its timeout, QEMU is killed,
/// and the error shows the guest's serial log and what each of its tasks was waiting in.
#[test]
fn a_hung_guest_is_killed_and_its_serial_log_shown() {
    let test = "a_hung_guest_is_killed_and_its_serial_log_shown";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(1));
    let started = std::time::Instant::now();
    let error = guest
        .run(
            "echo 'rig: about to hang' > /dev/console; sleep 600",
            Duration::from_secs(3),
        )
        .expect_err("a scenario that sleeps past its timeout fails");
    let message = error.to_string();
    eprintln!("{test}: the harness reported:\n{message}");
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "the timeout must cut the scenario short, well before its 600 s sleep"
    );
    assert!(message.contains("the guest hung"), "{message}");
    assert!(
        message.contains("rig: about to hang") && message.contains("guest up after"),
        "the error must carry the serial log:\n{message}"
    );
    // The task list says what the scenario waited in: the sleep, in clock_nanosleep (system
    // call 230 on x86-64), with its kernel stack.
    let tasks = message
        .split("----- tasks -----")
        .nth(1)
        .and_then(|rest| rest.split("----- end of tasks -----").next())
        .unwrap_or_else(|| panic!("the error must carry the guest's task list:\n{message}"));
    let sleep = tasks
        .split("=== pid ")
        .find(|task| task.lines().next().is_some_and(|l| l.contains("sleep 600")))
        .unwrap_or_else(|| panic!("the task list must show the hanging `sleep 600`:\n{tasks}"));
    assert!(
        sleep.contains(" S ") && sleep.contains("syscall=230 ") && sleep.contains("[<0>] hrtimer"),
        "the hanging sleep must be shown asleep in nanosleep with its kernel stack:\n{sleep}"
    );
}

/// One network PCI function as sysfs shows it (the discover scenario's sysfs.txt).
#[derive(Debug, Default)]
struct SysfsFunction {
    vendor: String,
    device: String,
    driver: String,
    physfn: String,
    /// (sriov_totalvfs, sriov_numvfs), for a PF.
    sriov: Option<(u64, u64)>,
    /// VF index to VF BDF, from the virtfnN links.
    virtfns: BTreeMap<u64, String>,
    /// (name, ifindex, MAC) of each netdev.
    netdevs: Vec<(String, u64, String)>,
    msi_irqs: Vec<u64>,
}

fn parse_sysfs_facts(text: &str) -> BTreeMap<String, SysfsFunction> {
    let mut functions: BTreeMap<String, SysfsFunction> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(kind), Some(bdf)) = (words.first(), words.get(1)) else {
            continue;
        };
        let f = functions.entry(bdf.to_string()).or_default();
        let value = |key: &str| {
            words
                .iter()
                .find_map(|word| word.strip_prefix(&format!("{key}=")))
                .unwrap_or_default()
                .to_string()
        };
        let number = |text: &str| text.parse::<u64>().expect("sysfs.txt holds numbers here");
        match *kind {
            "function" => {
                f.vendor = value("vendor");
                f.device = value("device");
                f.driver = value("driver");
                f.physfn = value("physfn");
            }
            "sriov" => f.sriov = Some((number(&value("total")), number(&value("num")))),
            "virtfn" => {
                f.virtfns.insert(number(words[2]), words[3].to_string());
            }
            "netdev" => f.netdevs.push((
                words[2].to_string(),
                number(&value("ifindex")),
                value("mac"),
            )),
            "irqs" => f.msi_irqs = words[2..].iter().map(|irq| number(irq)).collect(),
            _ => {}
        }
    }
    functions
}

/// Per-IRQ name from /proc/interrupts (the last column), where the IRQ has one.
fn interrupt_names(text: &str) -> BTreeMap<u64, String> {
    let mut names = BTreeMap::new();
    let mut lines = text.lines();
    let cpus = lines
        .next()
        .map_or(0, |header| header.split_whitespace().count());
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(irq) = words
            .first()
            .and_then(|word| word.trim_end_matches(':').parse::<u64>().ok())
        else {
            continue;
        };
        // IRQ, one count per CPU, chip, hwirq-trigger, then the name if any.
        if words.len() > cpus + 3 {
            names.insert(irq, words[cpus + 3..].join(" "));
        }
    }
    names
}

/// The queue an IRQ serves, from its driver-given name: eth0-rx-1, eth0-tx-1, eth0-TxRx-1.
fn queue_of_irq_name(name: &str) -> Option<(&'static str, u64)> {
    let (head, index) = name.rsplit_once('-')?;
    let index = index.parse().ok()?;
    let kind = match head.rsplit_once('-')?.1 {
        "rx" => "rx",
        "tx" => "tx",
        "TxRx" => "combined",
        _ => return None,
    };
    Some((kind, index))
}

fn text_or_empty(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// Disagreements between vportd and an oracle, collected so that a failure lists them all.
#[derive(Default)]
struct Disagreements(Vec<String>);

impl Disagreements {
    fn check(&mut self, what: String, vportd: String, oracle: String) {
        if vportd != oracle {
            self.0.push(format!(
                "{what}: vportd says {vportd:?}, the kernel {oracle:?}"
            ));
        }
    }
}

/// Everything on which `vportd discover --json` disagrees with sysfs, /proc/interrupts or
/// iproute2; empty when they agree.
fn discover_disagreements(
    discover: &serde_json::Value,
    sysfs: &BTreeMap<String, SysfsFunction>,
    ip_links: &[serde_json::Value],
    irq_names: &BTreeMap<u64, String>,
) -> Vec<String> {
    let mut problems = Disagreements::default();
    let functions = discover["pci_functions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let listed: Vec<String> = functions.iter().map(|f| text_or_empty(&f["bdf"])).collect();
    problems.check(
        "network PCI functions".into(),
        format!("{listed:?}"),
        format!("{:?}", sysfs.keys().collect::<Vec<_>>()),
    );
    let ip_by_ifindex: BTreeMap<u64, &serde_json::Value> = ip_links
        .iter()
        .filter_map(|link| Some((link["ifindex"].as_u64()?, link)))
        .collect();
    for f in &functions {
        let bdf = text_or_empty(&f["bdf"]);
        let Some(sys) = sysfs.get(&bdf) else { continue };
        problems.check(
            format!("{bdf} vendor"),
            text_or_empty(&f["vendor_id"]),
            sys.vendor.clone(),
        );
        problems.check(
            format!("{bdf} device"),
            text_or_empty(&f["device_id"]),
            sys.device.clone(),
        );
        problems.check(
            format!("{bdf} driver"),
            text_or_empty(&f["driver"]),
            sys.driver.clone(),
        );
        problems.check(
            format!("{bdf} physfn"),
            text_or_empty(&f["physfn"]),
            sys.physfn.clone(),
        );
        let role = if sys.sriov.is_some() {
            "pf"
        } else if !sys.physfn.is_empty() {
            "vf"
        } else {
            "plain"
        };
        problems.check(
            format!("{bdf} role"),
            text_or_empty(&f["role"]),
            role.into(),
        );

        let netdevs: Vec<(String, u64, String)> = f["netdevs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                (
                    text_or_empty(&n["name"]),
                    n["ifindex"].as_u64().unwrap_or_default(),
                    text_or_empty(&n["mac"]),
                )
            })
            .collect();
        problems.check(
            format!("{bdf} netdevs (name, ifindex, MAC)"),
            format!("{netdevs:?}"),
            format!("{:?}", sys.netdevs),
        );
        for (name, ifindex, mac) in &netdevs {
            let Some(link) = ip_by_ifindex.get(ifindex) else {
                problems.0.push(format!(
                    "{bdf}: ip link knows no ifindex {ifindex} ({name})"
                ));
                continue;
            };
            problems.check(
                format!("{bdf} ifindex {ifindex} name per ip"),
                name.clone(),
                text_or_empty(&link["ifname"]),
            );
            problems.check(
                format!("{bdf} {name} MAC per ip"),
                mac.clone(),
                text_or_empty(&link["address"]),
            );
            problems.check(
                format!("{name} parent device per ip"),
                bdf.clone(),
                text_or_empty(&link["parentdev"]),
            );
        }

        let mut irqs: Vec<u64> = f["irqs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|irq| irq["irq"].as_u64())
            .collect();
        irqs.sort_unstable();
        problems.check(
            format!("{bdf} IRQs (msi_irqs)"),
            format!("{irqs:?}"),
            format!("{:?}", sys.msi_irqs),
        );
        for irq in f["irqs"].as_array().into_iter().flatten() {
            let number = irq["irq"].as_u64().unwrap_or_default();
            let Some(name) = irq_names.get(&number) else {
                continue;
            };
            problems.check(
                format!("{bdf} IRQ {number} name"),
                text_or_empty(&irq["name"]),
                name.clone(),
            );
            let queue = irq["queue"].is_object().then(|| {
                format!(
                    "{}-{}",
                    text_or_empty(&irq["queue"]["kind"]),
                    irq["queue"]["index"]
                )
            });
            let expected = queue_of_irq_name(name).map(|(kind, index)| format!("{kind}-{index}"));
            problems.check(
                format!("{bdf} IRQ {number} ({name}) queue"),
                format!("{queue:?}"),
                format!("{expected:?}"),
            );
        }

        if sys.sriov.is_none() {
            if !f["sriov"].is_null() {
                problems
                    .0
                    .push(format!("{bdf}: vportd reports SR-IOV where sysfs has none"));
            }
            continue;
        }
        let sriov = &f["sriov"];
        let (total, num) = sys.sriov.unwrap_or_default();
        problems.check(
            format!("{bdf} sriov_totalvfs"),
            sriov["total_vfs"].to_string(),
            total.to_string(),
        );
        problems.check(
            format!("{bdf} sriov_numvfs"),
            sriov["num_vfs"].to_string(),
            num.to_string(),
        );
        let vfs = sriov["vfs"].as_array().cloned().unwrap_or_default();
        let listed: BTreeMap<u64, String> = vfs
            .iter()
            .map(|vf| {
                (
                    vf["index"].as_u64().unwrap_or(u64::MAX),
                    text_or_empty(&vf["bdf"]),
                )
            })
            .collect();
        problems.check(
            format!("{bdf} VFs (index to BDF)"),
            format!("{listed:?}"),
            format!("{:?}", sys.virtfns),
        );
        let ip_pf = netdevs
            .first()
            .and_then(|(_, ifindex, _)| ip_by_ifindex.get(ifindex));
        let ip_vfs: BTreeMap<u64, &serde_json::Value> = ip_pf
            .and_then(|link| link["vfinfo_list"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|vf| Some((vf["vf"].as_u64()?, vf)))
            .collect();
        for vf in &vfs {
            let index = vf["index"].as_u64().unwrap_or(u64::MAX);
            let vf_bdf = text_or_empty(&vf["bdf"]);
            let vf_sys = sysfs.get(&vf_bdf);
            problems.check(
                format!("VF {index} of {bdf} driver"),
                text_or_empty(&vf["driver"]),
                vf_sys.map(|s| s.driver.clone()).unwrap_or_default(),
            );
            let names: Vec<String> = vf["netdevs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| text_or_empty(&n["name"]))
                .collect();
            problems.check(
                format!("VF {index} of {bdf} netdevs"),
                format!("{names:?}"),
                format!(
                    "{:?}",
                    vf_sys
                        .map(|s| s.netdevs.iter().map(|n| n.0.clone()).collect::<Vec<_>>())
                        .unwrap_or_default()
                ),
            );
            let Some(ip_vf) = ip_vfs.get(&index) else {
                problems.0.push(format!(
                    "VF {index} of {bdf}: ip -d link show lists no such VF"
                ));
                continue;
            };
            let config = &vf["config"];
            let vlan = &ip_vf["vlan_list"][0];
            for (field, vportd, oracle) in [
                (
                    "MAC",
                    text_or_empty(&config["mac"]),
                    text_or_empty(&ip_vf["address"]),
                ),
                (
                    "VLAN",
                    config["vlan"].to_string(),
                    vlan["vlan"].as_u64().unwrap_or(0).to_string(),
                ),
                (
                    "QoS",
                    config["qos"].to_string(),
                    vlan["qos"].as_u64().unwrap_or(0).to_string(),
                ),
                (
                    "spoofchk",
                    config["spoofchk"].to_string(),
                    ip_vf["spoofchk"].to_string(),
                ),
                (
                    "trust",
                    config["trust"].to_string(),
                    ip_vf["trust"].to_string(),
                ),
                (
                    "max_tx_rate",
                    config["max_tx_rate"].to_string(),
                    ip_vf["rate"]["max_tx"].to_string(),
                ),
                (
                    "min_tx_rate",
                    config["min_tx_rate"].to_string(),
                    ip_vf["rate"]["min_tx"].to_string(),
                ),
                (
                    "link state",
                    text_or_empty(&config["link_state"]),
                    text_or_empty(&ip_vf["link_state"]),
                ),
            ] {
                problems.check(format!("VF {index} of {bdf} {field}"), vportd, oracle);
            }
        }
    }
    problems.0
}

/// `vportd discover --json` in a guest with 2 PFs and 7 VFs on the first (some configured)
/// agrees with sysfs, /proc/interrupts and `ip -d link show` on every PF, VF, netdev, MAC,
/// driver, VF setting and IRQ. Its `--record` capture replays on the host to the same JSON.
/// With VPORTD_UPDATE_FIXTURES=1 that capture replaces tests/fixtures/guest-82576-7vfs.
#[test]
fn discover_agrees_with_sysfs_and_iproute2() {
    let test = "discover_agrees_with_sysfs_and_iproute2";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(2));
    let outcome = run(
        &mut guest,
        test,
        include_str!("scenarios/discover.sh"),
        Duration::from_secs(180),
    )
    .success();
    let discover: serde_json::Value =
        serde_json::from_str(&outcome.text("discover.json")).expect("discover prints JSON");
    let ip_links: Vec<serde_json::Value> =
        serde_json::from_str(&outcome.text("ip-link.json")).expect("ip -j prints JSON");
    let sysfs = parse_sysfs_facts(&outcome.text("sysfs.txt"));
    let irq_names = interrupt_names(&outcome.text("interrupts"));

    // The scene is what the scenario set up, or the comparison would prove little.
    assert_eq!(
        sysfs.len(),
        9,
        "2 PFs and 7 VFs:\n{}",
        outcome.text("sysfs.txt")
    );
    let pf = &sysfs["0000:01:00.0"];
    assert_eq!(pf.sriov, Some((7, 7)));
    let ip_eth0 = ip_links
        .iter()
        .find(|link| link["ifname"] == "eth0")
        .expect("ip lists eth0");
    let vf1 = &ip_eth0["vfinfo_list"][1];
    assert_eq!(
        (
            &vf1["address"],
            &vf1["vlan_list"][0]["vlan"],
            &vf1["trust"],
            &vf1["spoofchk"]
        ),
        (
            &"02:00:00:00:01:01".into(),
            &100.into(),
            &true.into(),
            &false.into()
        ),
        "VF 1 carries the settings the scenario gave it"
    );
    assert!(
        irq_names.values().any(|name| name.starts_with("eth0-")),
        "the PFs are up, so their queue IRQs have names"
    );

    let problems = discover_disagreements(&discover, &sysfs, &ip_links, &irq_names);
    assert!(
        problems.is_empty(),
        "vportd discover disagrees with the kernel on {} points:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );

    // Record, then replay on the host: the same inventory, without the guest.
    let unpacked = tempfile::tempdir().expect("a temporary directory");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(unpacked.path())
        .arg("-xf")
        .arg(outcome.files_dir.join("fixture.tar"))
        .status()
        .expect("tar runs");
    assert!(status.success(), "the guest's recording unpacks");
    let fixture = unpacked.path().join("fixture");
    let replay = std::process::Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args(["discover", "--json", "--fixture"])
        .arg(&fixture)
        .output()
        .expect("vportd runs on the host");
    assert!(
        replay.status.success(),
        "vportd discover --fixture fails on the guest's recording: {}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let replayed: serde_json::Value =
        serde_json::from_slice(&replay.stdout).expect("the replay prints JSON");
    let recorded: serde_json::Value = serde_json::from_str(&outcome.text("recorded.json"))
        .expect("the recording run prints JSON");
    assert!(
        replayed == recorded,
        "replaying the guest's recording gives another inventory than the guest saw"
    );
    if std::env::var("VPORTD_UPDATE_FIXTURES").is_ok_and(|value| value == "1") {
        let dest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/guest-82576-7vfs");
        let _ = std::fs::remove_dir_all(&dest);
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&fixture)
            .arg(&dest)
            .status()
            .expect("cp runs");
        assert!(
            status.success(),
            "copying the fixture to {} failed",
            dest.display()
        );
        // Git keeps no empty directories, and a queue directory (queues/rx-0) is one: without
        // a file in it, a fresh clone would see a NIC without queues.
        let status = std::process::Command::new("find")
            .arg(&dest)
            .args(["-type", "d", "-empty", "-exec", "touch", "{}/.gitkeep", ";"])
            .status()
            .expect("find runs");
        assert!(
            status.success(),
            "marking the fixture's empty directories failed"
        );
        eprintln!("{test}: wrote {}", dest.display());
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
