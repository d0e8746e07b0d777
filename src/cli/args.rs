//! The command line's flags and subcommands (clap): `--help` is made from the doc
//! comments here, so their wording is the user's documentation.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// vportd gives every virtual switch port the fastest path its NIC allows: an
/// SR-IOV virtual function, dedicated queues, or a software switch, and keeps the
/// queues' interrupts on the right CPUs.
#[derive(Parser)]
#[command(name = "vportd", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// What to log: error, warn, info or debug (default info; the daemon's `[daemon]
    /// log_level` when not given). Under systemd the lines carry their priority.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
}

/// `--log-level`'s words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Show the host's network hardware: PCI functions, VFs, queues, IRQs, CPUs.
    ///
    /// Reads /sys, /proc, rtnetlink and ethtool netlink; changes nothing. Devices are
    /// named by PCI address and ifindex, which do not change when interfaces are renamed.
    Discover {
        /// Print the inventory as JSON (schema: docs/discover-schema.md).
        #[arg(long)]
        json: bool,
        /// Read sysfs and procfs below DIR instead of / (netlink stays live).
        #[arg(long, value_name = "DIR", conflicts_with = "fixture")]
        root: Option<PathBuf>,
        /// Replay a captured host: sysfs/procfs below DIR, netlink from DIR/netlink.json.
        #[arg(long, value_name = "DIR")]
        fixture: Option<PathBuf>,
        /// Capture every kernel file read, and the netlink snapshot, into DIR, as a
        /// fixture that `--fixture DIR` replays.
        #[arg(long, value_name = "DIR")]
        record: Option<PathBuf>,
        /// Hardware profiles directory to use instead of the built-in set.
        #[arg(long, value_name = "DIR")]
        profiles: Option<PathBuf>,
        /// Also show each provisioned vPort's queue set (its queues by index and IRQ, and
        /// its CPU set, `cpus` included) from this config's state.
        #[arg(long, value_name = "CONFIG", conflicts_with = "state_dir")]
        config: Option<PathBuf>,
        /// Also show each provisioned vPort's queue set from the state in DIR.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Show where each vPort of CONFIG would go, and the steps to get there. Changes nothing.
    ///
    /// Placement per vPort: an SR-IOV VF, or the software path with the reason (the NIC
    /// lacks an attribute, no VF is free, offload = "never"). A VF count change that must
    /// go through 0 is marked disruptive with the vPorts it tears down.
    Plan {
        /// The provisioning config (TOML; see examples/host.toml).
        config: PathBuf,
        #[arg(long)]
        json: bool,
        /// Plan VF count changes that tear down existing VFs instead of refusing them.
        #[arg(long)]
        allow_disruption: bool,
    },
    /// Make the host match CONFIG: VF counts, driver binding, VF settings; journaled,
    /// verified by read-back, rolled back on failure. A second apply does nothing.
    Apply {
        /// The provisioning config (TOML; see examples/host.toml).
        config: PathBuf,
        /// Show the plan and stop.
        #[arg(long)]
        dry_run: bool,
        /// Allow VF count changes that tear down existing VFs.
        #[arg(long)]
        allow_disruption: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Apply over the uplinks that are here and only warn about absent ones (their
        /// vPorts are marked lost or waiting, and the daemon provisions them when the uplink
        /// appears): what the systemd unit runs at boot, before every NIC may be up.
        #[arg(long, conflicts_with = "dry_run")]
        allow_absent: bool,
        /// With --allow-absent: first wait up to SECS for configured uplinks whose PCI
        /// function is here but has no driver or netdev yet (udev is still loading it, as at
        /// boot); ends early when they are ready or udev's queue stays empty.
        #[arg(
            long,
            value_name = "SECS",
            requires = "allow_absent",
            default_value_t = 0
        )]
        wait_uplinks: u64,
    },
    /// Each provisioned vPort, its placement, and drift (a VF changed behind our back).
    /// Exit 3 when anything drifted.
    Status {
        /// Read the state directory from this config.
        #[arg(long, value_name = "CONFIG", conflicts_with = "state_dir")]
        config: Option<PathBuf>,
        /// The state directory (default /var/lib/vportd).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List the built-in hardware profiles, or validate a directory of them.
    Profiles {
        /// Validate every *.toml in DIR; exit 2 naming file:line:col of each problem.
        #[arg(long, value_name = "DIR")]
        check: Option<PathBuf>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the agent: rebalance queue interrupts across CPUs (dynamic VMQ) every
    /// period, and serve Prometheus metrics. See docs/rebalance.md.
    Daemon(crate::daemon::DaemonArgs),
    /// A live view of CPUs, queues and moves, from the daemon's metrics endpoint.
    Top(crate::daemon::top::TopArgs),
    /// Run by udev (udev/90-vportd.rules): hand the device event in the environment to the
    /// daemon, or apply the stored config when no daemon runs. See docs/hotplug.md.
    Hotplug(super::ctl::HotplugArgs),
    /// Talk to the running daemon over its control socket: status, plan, apply,
    /// reconcile PCI, rebalance on|off. Prints its answer as JSON.
    Ctl(super::ctl::CtlArgs),
    /// Print the libvirt <interface> element that puts a VM on a vPort (its TAP on the
    /// software path, or its VF bound to vfio-pci).
    LibvirtXml(super::libvirt::LibvirtXmlArgs),
    /// irqbalance's policy script: `ban=true` for the queue IRQs vportd balances, so that
    /// both run on one host (udev/irqbalance-policy wraps it; docs/irqbalance.md).
    IrqbalancePolicy(super::irqbalance_policy::IrqbalancePolicyArgs),
    /// Put a network namespace on a software vPort as a VM would be (tests, trials).
    #[command(hide = true)]
    TapNetns(super::tap_netns::TapNetnsArgs),
    /// Print the rebalance scenario table (S1-S8, static vs ours) from the simulator.
    #[command(hide = true)]
    Simulate {
        #[arg(long)]
        json: bool,
    },
    /// Try each per-vPort queue control on a device once (RSS context, ntuple rule into
    /// it and into one queue, l2-fwd-offload) and print what the kernel answered, as JSON
    /// lines: the refusal paths, proven on a real driver (tests/vm/queues.rs).
    #[command(hide = true)]
    QueueProbe { ifname: String },
    /// Write the man pages or print a shell's completions (scripts/package uses it).
    #[command(hide = true)]
    Generate(super::generate::GenerateArgs),
}
