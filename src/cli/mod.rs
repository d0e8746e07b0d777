//! The command line: one file per subcommand, and the only code that prints and maps
//! errors to exit codes. Exit codes: 0 ok, 1 runtime failure, 2 bad input (config or
//! flags), 3 drift found by `status`.

pub mod args;
pub mod cni;
pub mod ctl;
pub mod libvirt;
pub mod render;
pub mod tap_netns;

mod apply;
mod daemon;
mod discover;
mod generate;
mod irqbalance_policy;
mod plan;
mod profiles;
mod queue_probe;
mod simulate;
mod status;
mod top;

use std::process::ExitCode;

use clap::Parser;

use crate::model::profile::ProfileSet;
use args::{Cli, Command};

/// A failure with the exit code it maps to.
pub(crate) struct Failure {
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
    /// The library's own (exit code, message) answers: the daemon, top, hotplug, ctl.
    fn coded((code, message): (u8, String)) -> Self {
        Self { code, message }
    }
}

/// `vportd`'s `main`: parses the command line, runs the subcommand, and says why it
/// failed on stderr with the exit code of the failure.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Under udev, `vportd hotplug`'s stderr goes nowhere: it writes to the journal too.
    let journal = matches!(cli.command, Command::Hotplug(_));
    let level = cli
        .log_level
        .map_or(log::LevelFilter::Info, args::LogLevel::filter);
    crate::host::journal::init(level, journal);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            crate::host::journal::failure(&f.message);
            ExitCode::from(f.code)
        }
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
            config,
            state_dir,
        } => discover::run(discover::Flags {
            json,
            root,
            fixture,
            record,
            profiles,
            config,
            state_dir,
        }),
        Command::Plan {
            config,
            json,
            allow_disruption,
        } => plan::run(&config, json, allow_disruption),
        Command::Apply {
            config,
            allow_disruption,
            json,
            allow_absent: true,
            wait_uplinks,
            ..
        } => apply::run_allow_absent(
            &config,
            allow_disruption,
            json,
            std::time::Duration::from_secs(wait_uplinks),
        ),
        Command::Apply {
            config,
            dry_run,
            allow_disruption,
            json,
            allow_absent: false,
            ..
        } => apply::run(&config, dry_run, allow_disruption, json),
        Command::Status {
            config,
            state_dir,
            json,
        } => status::run(config, state_dir, json),
        Command::Profiles { check, json } => profiles::run(check.as_deref(), json),
        Command::Daemon(args) => daemon::run(args, cli.log_level.is_some()),
        Command::Top(args) => top::run(args),
        Command::Hotplug(args) => ctl::hotplug_main(args).map_err(Failure::coded),
        Command::Ctl(args) => {
            emit(&ctl::ctl_main(args).map_err(Failure::coded)?);
            Ok(())
        }
        Command::TapNetns(args) => tap_netns::tap_netns_main(args).map_err(Failure::coded),
        Command::LibvirtXml(args) => {
            emit(&libvirt::libvirt_xml_main(args).map_err(Failure::coded)?);
            Ok(())
        }
        Command::IrqbalancePolicy(args) => irqbalance_policy::run(args),
        Command::QueueProbe { ifname } => queue_probe::run(&ifname),
        Command::Simulate { json } => simulate::run(json),
        Command::Generate(args) => generate::run(args),
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

fn load_profiles(dir: Option<&std::path::Path>) -> Result<ProfileSet, Failure> {
    match dir {
        Some(d) => ProfileSet::load_dir(d).map_err(Failure::input),
        None => Ok(ProfileSet::builtin().clone()),
    }
}

fn provision_failure(e: crate::provision::ProvisionError) -> Failure {
    Failure {
        code: e.exit_code(),
        message: e.to_string(),
    }
}

/// With VPORTD_TIMING=1, says on stderr how long a phase took: for finding where the
/// time of a command goes on a slow host.
fn timing(what: &str, since: std::time::Instant) {
    if std::env::var_os("VPORTD_TIMING").is_some() {
        eprintln!(
            "timing: {what}: {:.2} ms",
            since.elapsed().as_secs_f64() * 1e3
        );
    }
}
