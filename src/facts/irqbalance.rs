//! irqbalance next to vportd. Both write IRQ affinities, and the rebalancer leaves alone
//! every IRQ another writer moves (`rebalance::policy`, the backoff), so on a host where
//! irqbalance balances the NIC queues too, vportd ends up moving nothing. Two questions are
//! answered here: is irqbalance running, and with vportd's policy script (so that it keeps
//! its hands off vportd's queues)? And, for that policy script, is this IRQ one vportd
//! balances? The rules are pure; the reads go through [`KernelFs`] (docs/irqbalance.md).
//! A function's netdev is found as discovery finds it, through `/sys/class/net`.

use serde::Serialize;

use crate::facts::parse;
use crate::host::fs::KernelFs;
use crate::model::file_errors::FsError;

/// What went wrong finding out.
#[derive(Debug, thiserror::Error)]
pub enum IrqbalanceError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: parse::ParseError,
    },
    #[error(
        "/proc/interrupts has no line for IRQ {irq}: irqbalance named an IRQ this kernel does not show"
    )]
    NoSuchIrq { irq: u32 },
}

/// One irqbalance process and the settings of its command line that matter to vportd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IrqbalanceProcess {
    pub pid: u32,
    /// `--policyscript=FILE` (or `-l FILE`), as given.
    pub policy_script: Option<String>,
    /// `--banirq=N` (or `-i N`), each.
    pub banned_irqs: Vec<u32>,
}

impl IrqbalanceProcess {
    /// Whether its policy script is vportd's: the shipped wrapper (`irqbalance-policy`,
    /// wherever it is installed), or a script of the operator's own whose path says vportd.
    pub fn uses_vportd_policy(&self) -> bool {
        self.policy_script.as_deref().is_some_and(|s| {
            s.contains("vportd") || s.rsplit('/').next() == Some("irqbalance-policy")
        })
    }
}

/// Whether a process is irqbalance, by its `comm` (15 bytes at most, so the whole name
/// fits) or, when that was renamed, the file name of its executable (`/proc/PID/exe`,
/// which the kernel suffixes with " (deleted)" after an upgrade replaced the file).
pub fn is_irqbalance(comm: &str, exe: Option<&str>) -> bool {
    if comm.trim() == "irqbalance" {
        return true;
    }
    exe.map(|e| e.trim_end_matches(" (deleted)"))
        .and_then(|e| e.rsplit('/').next())
        .is_some_and(|name| name == "irqbalance")
}

/// Reads irqbalance's settings from its `/proc/PID/cmdline` (arguments separated by NUL).
/// The long options take `=VALUE` or the next argument, the short ones the next argument
/// or the rest of the word (getopt's rules).
pub fn parse_cmdline(pid: u32, cmdline: &str) -> IrqbalanceProcess {
    let args: Vec<&str> = cmdline.split('\0').filter(|a| !a.is_empty()).collect();
    let mut p = IrqbalanceProcess {
        pid,
        policy_script: None,
        banned_irqs: Vec::new(),
    };
    let mut i = 1;
    while i < args.len() {
        let a = args[i];
        let mut value = |long: &str, short: &str| -> Option<String> {
            if let Some(v) = a.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
                return Some(v.to_string());
            }
            if a == long || a == short {
                i += 1;
                return args.get(i).map(|v| v.to_string());
            }
            a.strip_prefix(short)
                .filter(|v| !v.is_empty() && !a.starts_with("--"))
                .map(str::to_string)
        };
        if let Some(v) = value("--policyscript", "-l") {
            p.policy_script = Some(v);
        } else if let Some(v) = value("--banirq", "-i")
            && let Ok(n) = v.parse()
        {
            p.banned_irqs.push(n);
        }
        i += 1;
    }
    p
}

/// Every irqbalance process of the host (of `fs`'s `/proc`): `comm` of each process, the
/// command line of the ones that are irqbalance. A process that exits while it is read is
/// simply not there.
pub fn find(fs: &KernelFs) -> Result<Vec<IrqbalanceProcess>, IrqbalanceError> {
    let mut found = Vec::new();
    for entry in fs.list("/proc")? {
        let Ok(pid) = entry.parse::<u32>() else {
            continue;
        };
        let Some(comm) = fs.read_lenient(&format!("/proc/{pid}/comm")) else {
            continue;
        };
        // The exe link only when the name does not already say it: it costs a readlink.
        let exe = match comm.as_str() {
            "irqbalance" => None,
            _ if comm.contains("irqbal") => {
                fs.read_link(&format!("/proc/{pid}/exe")).ok().flatten()
            }
            _ => None,
        };
        if !is_irqbalance(&comm, exe.as_deref()) {
            continue;
        }
        let cmdline = fs
            .read_lenient(&format!("/proc/{pid}/cmdline"))
            .unwrap_or_default();
        found.push(parse_cmdline(pid, &cmdline));
    }
    Ok(found)
}

/// What vportd says about irqbalance: nothing when none runs or each one uses vportd's
/// policy script, else a warning that names what it means and the remedy.
pub fn warning(procs: &[IrqbalanceProcess]) -> Option<String> {
    let bare: Vec<String> = procs
        .iter()
        .filter(|p| !p.uses_vportd_policy())
        .map(|p| p.pid.to_string())
        .collect();
    if bare.is_empty() {
        return None;
    }
    Some(format!(
        "irqbalance is running (pid {}) without vportd's policy script: it moves the NIC queue \
         IRQs too, and vportd backs off from every IRQ another writer moves, so vportd may \
         balance nothing; give irqbalance --policyscript=/usr/lib/vportd/irqbalance-policy \
         (IRQBALANCE_ARGS in /etc/default/irqbalance, docs/irqbalance.md) or stop it",
        bare.join(", ")
    ))
}

/// The policy script's answer for one IRQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// vportd balances it: irqbalance must leave it alone.
    Ban { name: String },
    /// Not vportd's; irqbalance may balance it. Why, for `--explain`.
    Keep { why: String },
}

/// The rule (pure): vportd's rebalancer balances every queue IRQ (by its action name,
/// [`parse::queue_of_irq_name`]) of a PCI function that has a netdev, exactly the IRQs
/// discovery gives it ([`crate::facts::inventory`]), so those are banned and nothing else.
pub fn decide(irq: u32, name: Option<&str>, function_irqs: &[u32], has_netdev: bool) -> Verdict {
    let keep = |why: String| Verdict::Keep { why };
    let Some(name) = name else {
        return keep(format!("IRQ {irq} belongs to no PCI function"));
    };
    if !function_irqs.contains(&irq) {
        return keep(format!(
            "IRQ {irq} ({name}) is not one of the device's IRQs"
        ));
    }
    if !has_netdev {
        return keep(format!("IRQ {irq} ({name}): the device has no netdev"));
    }
    match parse::queue_of_irq_name(name) {
        Some(_) => Verdict::Ban {
            name: name.to_string(),
        },
        None => keep(format!("IRQ {irq} ({name}) is not a queue's")),
    }
}

/// The verdict for the IRQ irqbalance asks about: `device` is the sysfs path it passes
/// (`/sys/bus/pci/devices/BDF`, or `/sys` for an IRQ of no device).
pub fn verdict(fs: &KernelFs, device: &str, irq: u32) -> Result<Verdict, IrqbalanceError> {
    let text = fs
        .read("/proc/interrupts")?
        .ok_or(IrqbalanceError::NoSuchIrq { irq })?;
    let lines = parse::interrupts(&text).map_err(|source| IrqbalanceError::Parse {
        path: "/proc/interrupts".into(),
        source,
    })?;
    let name = lines
        .get(&irq)
        .map(|l| l.name.as_str())
        .ok_or(IrqbalanceError::NoSuchIrq { irq })?;
    let device = device.trim_end_matches('/');
    if !device.starts_with("/sys/") {
        return Ok(decide(irq, None, &[], false));
    }
    let mut irqs: Vec<u32> = fs
        .list(&format!("{device}/msi_irqs"))?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    if irqs.is_empty()
        && let Some(n) = fs.read_parsed::<u32>(&format!("{device}/irq"))
    {
        irqs.push(n);
    }
    Ok(decide(irq, Some(name), &irqs, has_netdev(fs, device)?))
}

/// Whether a netdev sits on the PCI function at `device`: some `/sys/class/net` link goes
/// through it (a virtio NIC's netdev is one level further down, below `virtioN/`).
fn has_netdev(fs: &KernelFs, device: &str) -> Result<bool, IrqbalanceError> {
    let Some(bdf) = device.rsplit('/').next().filter(|b| !b.is_empty()) else {
        return Ok(false);
    };
    for name in fs.list("/sys/class/net")? {
        let target = fs.read_link(&format!("/sys/class/net/{name}"))?;
        if target.is_some_and(|t| t.split('/').any(|c| c == bdf)) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irqbalance_is_known_by_its_name_or_its_executable() {
        assert!(is_irqbalance("irqbalance\n", None));
        assert!(is_irqbalance(
            "irqbal-old",
            Some("/usr/sbin/irqbalance (deleted)")
        ));
        assert!(!is_irqbalance(
            "irqbalance-ui",
            Some("/usr/bin/irqbalance-ui")
        ));
        assert!(!is_irqbalance("bash", None));
    }

    #[test]
    fn the_command_line_gives_the_policy_script_and_banned_irqs() {
        let p = parse_cmdline(
            7,
            &[
                "/usr/sbin/irqbalance",
                "--foreground",
                "--policyscript=/usr/lib/vportd/irqbalance-policy",
                "--banirq=40",
                "-i",
                "41",
                "-i42",
            ]
            .join("\0"),
        );
        assert_eq!(
            p.policy_script.as_deref(),
            Some("/usr/lib/vportd/irqbalance-policy")
        );
        assert_eq!(p.banned_irqs, vec![40, 41, 42]);
        assert!(p.uses_vportd_policy());
        let q = parse_cmdline(8, "irqbalance\0-l\0/etc/mine\0--banirq\0x\0");
        assert_eq!(q.policy_script.as_deref(), Some("/etc/mine"));
        assert!(
            q.banned_irqs.is_empty(),
            "a word that is no number is no IRQ"
        );
        assert!(!q.uses_vportd_policy());
    }

    #[test]
    fn a_warning_only_for_an_irqbalance_without_our_policy() {
        let ours = parse_cmdline(
            1,
            "irqbalance\0--policyscript=/usr/lib/vportd/irqbalance-policy\0",
        );
        let bare = parse_cmdline(2, "irqbalance\0--foreground\0");
        assert_eq!(warning(&[]), None);
        assert_eq!(warning(std::slice::from_ref(&ours)), None);
        let w = warning(&[ours, bare]).unwrap();
        assert!(w.contains("pid 2)") && w.contains("backs off"), "{w}");
    }

    #[test]
    fn only_queue_irqs_of_a_netdev_function_are_banned() {
        let ban = |name: &str| Verdict::Ban { name: name.into() };
        assert_eq!(
            decide(38, Some("virtio2-input.0"), &[37, 38, 39], true),
            ban("virtio2-input.0")
        );
        assert_eq!(
            decide(39, Some("eth0-TxRx-3"), &[39], true),
            ban("eth0-TxRx-3")
        );
        for (irq, name, irqs, netdev) in [
            (37, Some("virtio2-config"), &[37, 38][..], true),
            (36, Some("virtio1-req.0"), &[36], false),
            (38, Some("eth0-rx-0"), &[40], true),
            (24, None, &[], false),
        ] {
            assert!(
                matches!(decide(irq, name, irqs, netdev), Verdict::Keep { .. }),
                "{irq} {name:?}"
            );
        }
    }

    #[test]
    fn find_reads_each_process_name_and_the_command_line_of_irqbalance() {
        let dir = tempfile::tempdir().unwrap();
        let proc_ = |pid: &str, comm: &str, cmdline: &str| {
            let d = dir.path().join("proc").join(pid);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("comm"), comm).unwrap();
            std::fs::write(d.join("cmdline"), cmdline).unwrap();
        };
        proc_("1", "systemd\n", "/sbin/init\0");
        proc_("812", "irqbalance\n", "/usr/sbin/irqbalance\0--banirq=9\0");
        proc_("self", "irqbalance\n", "not a pid\0");
        // A process that exited between the listing and the read: no comm.
        std::fs::create_dir_all(dir.path().join("proc/900")).unwrap();
        let found = find(&KernelFs::at(dir.path())).unwrap();
        assert_eq!(found, vec![parse_cmdline(812, "x\0--banirq=9\0")]);
    }
}
