//! `vportd apply --allow-absent --wait-uplinks SECS`, the boot-time unit's apply: at boot the
//! kernel has enumerated the PCI functions long before udev has loaded their drivers, so an
//! apply that ran at once would find a configured uplink without a netdev, treat it as absent,
//! and let network management see its VFs first. This waits, bounded, for the uplinks whose
//! PCI function is there but not yet usable (no driver bound, or bound without a netdev), and
//! stops as soon as udev's queue has been empty for a while: then nothing is coming.
//! A function that is not in sysfs at all is not waited for: it is hot-plugged later, and
//! the daemon hears it.

use std::time::{Duration, Instant};

use crate::host::fs::KernelFs;
use crate::model::uplink::UplinkSelector;

/// How often sysfs is read again while waiting.
const POLL: Duration = Duration::from_millis(100);
/// How long udev's queue must stay empty, with an uplink still pending, before waiting stops
/// early: the kernel's uevents reach udevd's queue within milliseconds, so a while of an
/// empty queue means no driver is on its way (2 s for a loaded host).
const UDEV_IDLE: Duration = Duration::from_secs(2);
/// The flag file systemd-udevd keeps while it has events queued or running.
const UDEV_QUEUE: &str = "/run/udev/queue";

/// One uplink that was waited for: what it lacked at first, how long it took, and whether it
/// became usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    pub uplink: String,
    pub lacked: String,
    pub after: Duration,
    pub ready: bool,
}

/// Why the wait ended for the uplinks still pending, if it ended with any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    /// The time limit passed.
    Limit,
    /// udev's queue stayed empty: nothing would bind a driver.
    UdevIdle,
}

/// What [`wait`] did: each uplink it waited for, and why it stopped if any is still pending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub waited: Vec<Waited>,
    pub gave_up: Option<GaveUp>,
    /// From the start of the wait to its end.
    pub elapsed: Duration,
}

/// What a configured uplink lacks now, or None when there is nothing to wait for (usable, or
/// no such PCI function at all).
pub fn pending(fs: &KernelFs, uplink: &UplinkSelector) -> Option<String> {
    match uplink {
        UplinkSelector::Pci(bdf) => function_lacks(fs, bdf),
        UplinkSelector::Mac(_) | UplinkSelector::Ifname(_) => {
            if netdev_matches(fs, uplink) {
                return None;
            }
            // Which function it will be is unknown until its netdev exists: wait while any
            // network controller (PCI class 0x02) is still without its driver or netdev.
            let functions = fs.list("/sys/bus/pci/devices").unwrap_or_default();
            functions.iter().find_map(|bdf| {
                let class = fs.read_lenient(&format!("/sys/bus/pci/devices/{bdf}/class"))?;
                if !class.starts_with("0x02") {
                    return None;
                }
                function_lacks(fs, bdf).map(|lack| format!("{lack} (network function {bdf})"))
            })
        }
    }
}

/// Whether a configured uplink is here and usable: its PCI function with a netdev (a PCI
/// address), or a netdev with its MAC or name. The apply's own test (reconcile's ready
/// uplinks) is the same, on the inventory; this one needs no discovery, so that an absent
/// uplink is said even when the apply then fails.
pub fn present(fs: &KernelFs, uplink: &UplinkSelector) -> bool {
    match uplink {
        UplinkSelector::Pci(bdf) => {
            let dir = format!("/sys/bus/pci/devices/{bdf}");
            matches!(fs.link_name(&format!("{dir}/driver")), Ok(Some(_)))
                && !fs
                    .list(&format!("{dir}/net"))
                    .unwrap_or_default()
                    .is_empty()
        }
        UplinkSelector::Mac(_) | UplinkSelector::Ifname(_) => netdev_matches(fs, uplink),
    }
}

/// A PCI function that is in sysfs but not usable yet: what it lacks.
fn function_lacks(fs: &KernelFs, bdf: &str) -> Option<String> {
    let dir = format!("/sys/bus/pci/devices/{bdf}");
    if !fs.exists(&dir) {
        return None;
    }
    let Ok(Some(driver)) = fs.link_name(&format!("{dir}/driver")) else {
        return Some("no driver bound yet".to_string());
    };
    let netdevs = fs.list(&format!("{dir}/net")).unwrap_or_default();
    if netdevs.is_empty() {
        return Some(format!("driver {driver} bound, no netdev yet"));
    }
    // Where udev runs, its netdev must also be handled (renamed, .link applied: udev's
    // database entry n<ifindex> written): a PF brought up under its kernel name keeps that
    // name in its queue interrupts' names after udev renames it.
    if fs.exists("/run/udev/control") {
        for n in &netdevs {
            let Some(ifindex) = fs.read_lenient(&format!("{dir}/net/{n}/ifindex")) else {
                continue;
            };
            if !fs.exists(&format!("/run/udev/data/n{ifindex}")) {
                return Some(format!("netdev {n} not yet handled by udev"));
            }
        }
    }
    None
}

/// Whether a netdev with this MAC or name exists.
fn netdev_matches(fs: &KernelFs, uplink: &UplinkSelector) -> bool {
    let names = fs.list("/sys/class/net").unwrap_or_default();
    match uplink {
        UplinkSelector::Ifname(name) => names.iter().any(|n| n == name),
        UplinkSelector::Mac(_) => names.iter().any(|n| {
            fs.read_lenient(&format!("/sys/class/net/{n}/address"))
                .is_some_and(|mac| uplink.matches(&mac))
        }),
        UplinkSelector::Pci(_) => false,
    }
}

/// Waits up to `limit` for the `uplinks` that [`pending`] names, reading sysfs every 100 ms;
/// stops early once none is pending, or once udev's queue has stayed empty for 2 s.
pub fn wait(fs: &KernelFs, uplinks: &[UplinkSelector], limit: Duration) -> Report {
    let began = Instant::now();
    let mut report = Report::default();
    let mut idle_since: Option<Instant> = None;
    loop {
        let mut any = false;
        for u in uplinks {
            let lack = pending(fs, u);
            let label = u.to_string();
            let seen = report.waited.iter_mut().find(|w| w.uplink == label);
            match (lack, seen) {
                (Some(lacked), None) => {
                    any = true;
                    report.waited.push(Waited {
                        uplink: label,
                        lacked,
                        after: began.elapsed(),
                        ready: false,
                    });
                }
                (Some(_), Some(_)) => any = true,
                (None, Some(w)) if !w.ready => {
                    w.ready = true;
                    w.after = began.elapsed();
                }
                (None, _) => {}
            }
        }
        report.elapsed = began.elapsed();
        if !any {
            return report;
        }
        if report.elapsed >= limit {
            report.gave_up = Some(GaveUp::Limit);
            return report;
        }
        if fs.exists(UDEV_QUEUE) {
            idle_since = None;
        } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= UDEV_IDLE {
            report.gave_up = Some(GaveUp::UdevIdle);
            return report;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A sysfs fixture: one function with a driver and a netdev, one with a driver and no
    /// netdev, one with neither.
    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let devices = root.join("sys/bus/pci/devices");
        let drivers = root.join("sys/bus/pci/drivers/igb");
        fs::create_dir_all(&drivers).unwrap();
        for (bdf, driver, netdev) in [
            ("0000:01:00.0", true, Some("enp1s0")),
            ("0000:02:00.0", true, None),
            ("0000:03:00.0", false, None),
        ] {
            let d = devices.join(bdf);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("class"), "0x020000\n").unwrap();
            if driver {
                symlink("../../drivers/igb", d.join("driver")).unwrap();
            }
            if let Some(n) = netdev {
                fs::create_dir_all(d.join("net").join(n)).unwrap();
                let class = root.join("sys/class/net").join(n);
                fs::create_dir_all(&class).unwrap();
                fs::write(class.join("address"), "52:54:00:12:34:56\n").unwrap();
            }
        }
        dir
    }

    #[test]
    fn pending_names_what_a_function_lacks() {
        let dir = fixture();
        let fs = KernelFs::at(dir.path());
        let pci = |b: &str| UplinkSelector::Pci(b.to_string());
        assert_eq!(pending(&fs, &pci("0000:01:00.0")), None);
        assert_eq!(
            pending(&fs, &pci("0000:02:00.0")).as_deref(),
            Some("driver igb bound, no netdev yet")
        );
        assert_eq!(
            pending(&fs, &pci("0000:03:00.0")).as_deref(),
            Some("no driver bound yet")
        );
        // Not in sysfs: hot-plugged later, nothing to wait for.
        assert_eq!(pending(&fs, &pci("0000:09:00.0")), None);
        assert!(present(&fs, &pci("0000:01:00.0")));
        for absent in ["0000:02:00.0", "0000:03:00.0", "0000:09:00.0"] {
            assert!(!present(&fs, &pci(absent)), "{absent}");
        }
        let mac = UplinkSelector::Mac("52:54:00:12:34:56".to_string());
        assert_eq!(pending(&fs, &mac), None);
        let other = UplinkSelector::Ifname("eth9".to_string());
        assert_eq!(
            pending(&fs, &other).as_deref(),
            Some("driver igb bound, no netdev yet (network function 0000:02:00.0)")
        );
    }

    #[test]
    fn where_udev_runs_its_handling_of_the_netdev_is_waited_for() {
        let dir = fixture();
        let root = dir.path();
        let net = root.join("sys/bus/pci/devices/0000:01:00.0/net/enp1s0");
        fs::write(net.join("ifindex"), "2\n").unwrap();
        fs::create_dir_all(root.join("run/udev/data")).unwrap();
        fs::write(root.join("run/udev/control"), "").unwrap();
        let kfs = KernelFs::at(root);
        let pf = UplinkSelector::Pci("0000:01:00.0".to_string());
        assert_eq!(
            pending(&kfs, &pf).as_deref(),
            Some("netdev enp1s0 not yet handled by udev")
        );
        fs::write(root.join("run/udev/data/n2"), "I:1\n").unwrap();
        assert_eq!(pending(&kfs, &pf), None);
    }

    #[test]
    fn wait_stops_when_udev_is_idle_and_reports_what_it_waited_for() {
        let dir = fixture();
        let fs = KernelFs::at(dir.path());
        let uplinks = [
            UplinkSelector::Pci("0000:01:00.0".to_string()),
            UplinkSelector::Pci("0000:03:00.0".to_string()),
        ];
        // No /run/udev/queue: nothing is coming, so the wait ends after the idle time, well
        // before the limit.
        let began = Instant::now();
        let r = wait(&fs, &uplinks, Duration::from_secs(30));
        assert!(began.elapsed() < Duration::from_secs(10));
        assert_eq!(r.gave_up, Some(GaveUp::UdevIdle));
        assert_eq!(r.waited.len(), 1);
        assert_eq!(r.waited[0].uplink, "pci 0000:03:00.0");
        assert!(!r.waited[0].ready);
    }

    #[test]
    fn wait_ends_when_the_driver_arrives() {
        let dir = fixture();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("run/udev")).unwrap();
        fs::write(root.join("run/udev/queue"), "").unwrap();
        let d = root.join("sys/bus/pci/devices/0000:03:00.0");
        let binder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            symlink("../../drivers/igb", d.join("driver")).unwrap();
            fs::create_dir_all(d.join("net/enp3s0")).unwrap();
        });
        let fs = KernelFs::at(dir.path());
        let uplinks = [UplinkSelector::Pci("0000:03:00.0".to_string())];
        let r = wait(&fs, &uplinks, Duration::from_secs(30));
        binder.join().unwrap();
        assert_eq!(r.gave_up, None);
        assert_eq!(r.waited.len(), 1);
        assert!(r.waited[0].ready);
        assert!(r.waited[0].after >= Duration::from_millis(300));
        assert_eq!(r.waited[0].lacked, "no driver bound yet");
    }
}
