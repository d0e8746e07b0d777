//! `vportd irqbalance-policy DEVICE IRQ`: irqbalance's policy script (its `--policyscript`,
//! through the `udev/irqbalance-policy` wrapper, since irqbalance runs a file with no
//! arguments of its own). irqbalance runs it once per IRQ it finds, with the IRQ's device
//! path in sysfs and its number, and reads `key=value` lines back: `ban=true` for a queue
//! IRQ vportd balances, nothing for the others (docs/irqbalance.md).

use std::path::PathBuf;

use super::{Failure, emit};
use crate::facts::irqbalance::{self, Verdict};
use crate::host::fs::KernelFs;
use crate::host::userfiles::UserFiles;
use crate::model::uplink::UplinkSelector;

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
    /// The host config (default /etc/vportd/host.toml, when --root is /): when it exists,
    /// only the queue IRQs of its uplinks (and their VFs) are vportd's, as the daemon with
    /// that config balances only those; without one, every NIC's.
    #[arg(long, value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Read /proc and /sys below DIR instead of / (fixtures).
    #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
    pub root: PathBuf,
}

/// An IRQ that cannot be judged is said on stderr (irqbalance logs it) and exits 1:
/// irqbalance then treats the IRQ as it would without a policy script.
pub(super) fn run(a: IrqbalancePolicyArgs) -> Result<(), Failure> {
    let fs = KernelFs::at(&a.root);
    let mut verdict = irqbalance::verdict(&fs, &a.device, a.irq)
        .map_err(|e| Failure::runtime(format!("irqbalance-policy {} {}: {e}", a.device, a.irq)))?;
    let config = a.config.clone().or_else(|| {
        (a.root == std::path::Path::new("/")).then(|| PathBuf::from("/etc/vportd/host.toml"))
    });
    if let Verdict::Ban { name } = &verdict
        && let Some(config) = config
        && let Some(uplinks) = config_uplinks(&config)
        && !of_uplinks(&fs, &a.device, &uplinks)
    {
        verdict = Verdict::Keep {
            why: format!(
                "IRQ {} ({name}) is a queue of a NIC that is not one of {}'s uplinks",
                a.irq,
                config.display()
            ),
        };
    }
    match verdict {
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

/// The config's uplinks, when the config exists and parses; None: every NIC counts (a host
/// without a config, where the daemon balances every NIC's queues). A config that does not
/// parse is said on stderr (irqbalance logs it).
fn config_uplinks(path: &std::path::Path) -> Option<Vec<UplinkSelector>> {
    if !path.exists() {
        return None;
    }
    match crate::provision::config::load(&UserFiles, path) {
        Ok(c) => Some(c.uplinks.into_iter().map(|u| u.selector).collect()),
        Err(e) => {
            eprintln!("irqbalance-policy: {e}; judging every NIC's queues as vportd's");
            None
        }
    }
}

/// Whether the sysfs `device` (irqbalance's path of a PCI function) is one of `uplinks` or
/// a VF of one.
fn of_uplinks(fs: &KernelFs, device: &str, uplinks: &[UplinkSelector]) -> bool {
    let device = device.trim_end_matches('/');
    let Some(bdf) = device.rsplit('/').next() else {
        return false;
    };
    let pf = match fs.link_name(&format!("{device}/physfn")) {
        Ok(Some(pf)) => pf,
        _ => bdf.to_string(),
    };
    let dir = format!("/sys/bus/pci/devices/{pf}");
    let netdevs = fs.list(&format!("{dir}/net")).unwrap_or_default();
    uplinks.iter().any(|u| match u {
        UplinkSelector::Pci(_) => u.matches(&pf),
        UplinkSelector::Ifname(n) => netdevs.contains(n),
        UplinkSelector::Mac(_) => netdevs.iter().any(|n| {
            fs.read_lenient(&format!("{dir}/net/{n}/address"))
                .is_some_and(|m| u.matches(&m))
        }),
    })
}
