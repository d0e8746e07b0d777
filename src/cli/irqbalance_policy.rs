//! `vportd irqbalance-policy DEVICE IRQ`: irqbalance's policy script (its `--policyscript`,
//! through the `udev/irqbalance-policy` wrapper, since irqbalance runs a file with no
//! arguments of its own). irqbalance runs it once per IRQ it finds, with the IRQ's device
//! path in sysfs and its number, and reads `key=value` lines back: `ban=true` for a queue
//! IRQ vportd balances, nothing for the others (docs/irqbalance.md).

use std::path::PathBuf;

use super::{Failure, emit};
use crate::facts::irqbalance::{self, Verdict};
use crate::host::fs::KernelFs;

/// irqbalance's policy script: prints `ban=true` for an IRQ vportd balances.
#[derive(Debug, Clone, clap::Args)]
pub struct IrqbalancePolicyArgs {
    /// The IRQ's device in sysfs as irqbalance passes it, e.g. /sys/bus/pci/devices/0000:01:00.0
    /// (`/sys` for an IRQ of no device).
    pub device: String,
    /// The IRQ's number.
    pub irq: u32,
    /// Also say on stderr why the IRQ is banned or kept.
    #[arg(long)]
    pub explain: bool,
    /// Read /proc and /sys below DIR instead of / (fixtures).
    #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
    pub root: PathBuf,
}

/// An IRQ that cannot be judged is said on stderr (irqbalance logs it) and exits 1:
/// irqbalance then treats the IRQ as it would without a policy script.
pub(super) fn run(a: IrqbalancePolicyArgs) -> Result<(), Failure> {
    let fs = KernelFs::at(&a.root);
    match irqbalance::verdict(&fs, &a.device, a.irq)
        .map_err(|e| Failure::runtime(format!("irqbalance-policy {} {}: {e}", a.device, a.irq)))?
    {
        Verdict::Ban { name } => {
            if a.explain {
                eprintln!("IRQ {} ({name}) is a queue vportd balances: banned", a.irq);
            }
            emit("ban=true\n");
        }
        Verdict::Keep { why } => {
            if a.explain {
                eprintln!("{why}: left to irqbalance");
            }
        }
    }
    Ok(())
}
