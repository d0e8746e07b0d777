//! Writes the policy's moves through [`KernelFs`], verifies them through
//! `effective_affinity_list`, and classifies the kernel's refusals so that the
//! policy neither retries what can never work nor gives up on what might.

use nix::errno::Errno;
use serde::Serialize;

use super::policy::{Move, Outcome};
use crate::facts::parse::{self};
use crate::host::fs::KernelFs;
use crate::model::file_errors::WriteFailed;
use crate::model::inventory::QueueKind;
use crate::model::inventory::QueueRef;

/// Why a move did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActuateError {
    /// EPERM (kernel 6.12 and later) or EIO (before): a managed interrupt.
    #[error("IRQ {irq} is managed by the kernel ({}); vportd leaves it where it is", errno_name(*errno))]
    Managed { irq: u32, errno: Errno },
    /// ENOSPC: the destination has no free interrupt vectors.
    #[error(
        "CPU {cpu} has no free interrupt vectors for IRQ {irq} (ENOSPC); vportd stops using it for a while"
    )]
    CpuFull { irq: u32, cpu: u32 },
    /// Any other refusal, retried after a bounded backoff.
    #[error("moving IRQ {irq} to CPU {cpu} failed: {source}; vportd retries later")]
    Write {
        irq: u32,
        cpu: u32,
        source: WriteFailed,
    },
}

impl ActuateError {
    /// What the policy should learn from it.
    pub fn outcome(&self) -> Outcome {
        match self {
            ActuateError::Managed { .. } => Outcome::Managed,
            ActuateError::CpuFull { .. } => Outcome::CpuFull,
            ActuateError::Write { .. } => Outcome::Failed,
        }
    }

    /// The errno, for metrics.
    pub fn errno(&self) -> Errno {
        match self {
            ActuateError::Managed { errno, .. } => *errno,
            ActuateError::CpuFull { .. } => Errno::ENOSPC,
            ActuateError::Write { source, .. } => source.errno,
        }
    }
}

/// The symbolic name of an errno (`EPERM`), as metrics label it.
pub fn errno_name(e: Errno) -> String {
    format!("{e:?}")
}

/// A move that was written, and where the kernel says the IRQ goes now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub irq: u32,
    pub to: u32,
    /// `effective_affinity_list` after the write (None where the kernel has no
    /// such file). Differs from `to` when the kernel chose another CPU.
    pub effective: Option<u32>,
}

/// Points IRQ `m.irq` at CPU `m.to` and reads back where it went.
pub fn apply(fs: &KernelFs, m: &Move) -> Result<Applied, ActuateError> {
    let path = format!("/proc/irq/{}/smp_affinity_list", m.irq);
    if let Err(source) = fs.write(&path, &m.to.to_string()) {
        return Err(match source.errno {
            Errno::EPERM | Errno::EIO => ActuateError::Managed {
                irq: m.irq,
                errno: source.errno,
            },
            Errno::ENOSPC => ActuateError::CpuFull {
                irq: m.irq,
                cpu: m.to,
            },
            _ => ActuateError::Write {
                irq: m.irq,
                cpu: m.to,
                source,
            },
        });
    }
    let effective = fs
        .read_lenient(&format!("/proc/irq/{}/effective_affinity_list", m.irq))
        .and_then(|t| parse::cpulist(&t).ok())
        .and_then(|c| c.first().copied());
    Ok(Applied {
        irq: m.irq,
        to: m.to,
        effective,
    })
}

/// Where receive packet steering and transmit packet steering go for a queue
/// whose interrupt runs on `cpu`: XPS sends a tx queue's packets from the CPU that
/// completes them; RPS hands an rx queue's packets to that CPU and its SMT sibling
/// (they share the cache the interrupt just warmed). Returns (path, hex mask).
pub fn steering(netdev: &str, queue: QueueRef, cpus: &[u32]) -> Vec<(String, String)> {
    let mask = parse::format_hex_mask(cpus);
    let rx = format!("/sys/class/net/{netdev}/queues/rx-{}/rps_cpus", queue.index);
    let tx = format!("/sys/class/net/{netdev}/queues/tx-{}/xps_cpus", queue.index);
    match queue.kind {
        QueueKind::Rx => vec![(rx, mask)],
        QueueKind::Tx => vec![(tx, mask)],
        QueueKind::Combined => vec![(rx, mask.clone()), (tx, mask)],
    }
}

/// Writes RPS/XPS masks; failures are returned, not fatal (ENOENT on a
/// single-queue device, EINVAL when housekeeping leaves the mask empty).
pub fn apply_steering(fs: &KernelFs, writes: &[(String, String)]) -> Vec<WriteFailed> {
    writes
        .iter()
        .filter_map(|(p, v)| fs.write(p, v).err())
        .collect()
}

/// One RPS/XPS mask as written and as the kernel holds it afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SteeringCheck {
    pub path: String,
    pub wanted: String,
    /// The file's content after the write (None: unreadable). The kernel ANDs RPS masks
    /// with its housekeeping CPUs, so it may hold less than was written.
    pub read_back: Option<String>,
    /// The write failed (errno name).
    pub errno: Option<String>,
}

impl SteeringCheck {
    /// The kernel holds exactly the mask that was written (compared as masks: the kernel
    /// prints them zero-padded and comma-grouped).
    pub fn holds(&self) -> bool {
        let norm = |m: &str| -> Option<Vec<u32>> { parse::hex_mask(m.trim()).ok() };
        self.errno.is_none()
            && self.read_back.as_deref().and_then(norm).is_some()
            && self.read_back.as_deref().and_then(norm) == norm(&self.wanted)
    }
}

/// Writes RPS/XPS masks and reads each back.
pub fn apply_steering_checked(fs: &KernelFs, writes: &[(String, String)]) -> Vec<SteeringCheck> {
    writes
        .iter()
        .map(|(p, v)| {
            let errno = fs.write(p, v).err().map(|e| errno_name(e.errno));
            SteeringCheck {
                path: p.clone(),
                wanted: v.clone(),
                read_back: fs.read_lenient(p).map(|t| t.trim().to_string()),
                errno,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rebalance::policy::Reason;

    fn mv(irq: u32, to: u32) -> Move {
        Move {
            irq,
            from: Some(1),
            to,
            reason: Reason::Spread,
            load: 0.5,
        }
    }

    #[test]
    fn writes_and_reads_back() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("proc/irq/40");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("smp_affinity_list"), "1\n").unwrap();
        std::fs::write(d.join("effective_affinity_list"), "1\n").unwrap();
        let fs = KernelFs::at(t.path());
        let a = apply(&fs, &mv(40, 3)).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("smp_affinity_list")).unwrap(),
            "3"
        );
        // The fixture's kernel did not follow: the read-back says so.
        assert_eq!(a.effective, Some(1));
    }

    #[test]
    fn errnos_are_classified() {
        let t = tempfile::tempdir().unwrap();
        let fs = KernelFs::at(t.path());
        let e = apply(&fs, &mv(41, 3)).unwrap_err();
        assert_eq!(e.errno(), Errno::ENOENT);
        assert_eq!(e.outcome(), Outcome::Failed);
        assert!(e.to_string().contains("IRQ 41"), "{e}");
        let managed = ActuateError::Managed {
            irq: 7,
            errno: Errno::EIO,
        };
        assert_eq!(managed.outcome(), Outcome::Managed);
        assert!(managed.to_string().contains("EIO"));
    }

    #[test]
    fn steering_masks() {
        let w = steering(
            "eth0",
            QueueRef {
                kind: QueueKind::Combined,
                index: 2,
            },
            &[3, 19],
        );
        assert_eq!(w[0].0, "/sys/class/net/eth0/queues/rx-2/rps_cpus");
        assert_eq!(w[1].1, "80008");
    }
}
