//! The `vportd` command line: parse, call the library, print. Exit codes: 0 ok,
//! 1 runtime failure, 2 bad input (config or flags), 3 drift found by `status`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vportd::host::fs::KernelFs;
use vportd::host::{files, netlink};
use vportd::inventory;
use vportd::profile::ProfileSet;
use vportd::render;

/// vportd gives every virtual switch port the fastest path its NIC allows: an
/// SR-IOV virtual function, dedicated queues, or a software switch, and keeps the
/// queues' interrupts on the right CPUs.
#[derive(Parser)]
#[command(name = "vportd", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn runtime(e: impl std::fmt::Display) -> Self {
        Self {
            code: 1,
            message: e.to_string(),
        }
    }
    fn input(e: impl std::fmt::Display) -> Self {
        Self {
            code: 2,
            message: e.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("vportd: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Prints to stdout; a closed pipe (`vportd discover | head`) ends quietly.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("inventory types always serialize")
}

fn load_profiles(dir: Option<&PathBuf>) -> Result<ProfileSet, Failure> {
    match dir {
        Some(d) => ProfileSet::load_dir(d).map_err(Failure::input),
        None => Ok(ProfileSet::builtin().clone()),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Discover {
            json,
            root,
            fixture,
            record,
            profiles,
        } => {
            let profiles = load_profiles(profiles.as_ref())?;
            let (mut fs, nl) = match &fixture {
                Some(dir) => {
                    let text =
                        files::read_text(&dir.join("netlink.json")).map_err(Failure::input)?;
                    let nl: netlink::NetlinkSnapshot =
                        serde_json::from_str(&text).map_err(|e| {
                            Failure::input(format!(
                                "{}: not a netlink snapshot: {e}",
                                dir.join("netlink.json").display()
                            ))
                        })?;
                    (KernelFs::at(dir), nl)
                }
                None => (
                    root.map(KernelFs::at).unwrap_or_else(KernelFs::system),
                    netlink::snapshot().map_err(Failure::runtime)?,
                ),
            };
            if let Some(dir) = &record {
                fs = fs.recording_into(dir);
                files::write_atomic(&dir.join("netlink.json"), to_json(&nl).as_bytes())
                    .map_err(Failure::runtime)?;
            }
            let inv = inventory::discover(&fs, &nl, &profiles).map_err(Failure::runtime)?;
            if json {
                emit(&(to_json(&inv) + "\n"));
            } else {
                emit(&render::inventory(&inv));
            }
            Ok(())
        }
        Command::Profiles { check, json } => {
            let text =
                vportd::profile::run_profiles(check.as_deref(), json).map_err(Failure::input)?;
            emit(&text);
            Ok(())
        }
    }
}
