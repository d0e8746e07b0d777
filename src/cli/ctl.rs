//! The client commands of the control plane: `vportd hotplug` (run by udev) and `vportd ctl`
//! (a person or a script talking to the daemon).
//!
//! `vportd hotplug` must return fast: udev kills handlers that run long and holds the
//! device's later events until they finish. With a daemon it only validates the event, hands
//! it over and exits (20 ms to connect, 30 ms for the answer); the daemon reconciles later.
//! Without a daemon, on a host booted with systemd, it leaves the apply to
//! `vportd-hotplug@.service` (`--systemd-unit`), which the rules ask systemd for; udev(7)
//! forbids long work in its workers. With udevd alone it applies the stored config itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::daemon::events::{self, Action, Bdf, DeviceEvent, Subsystem};
use crate::daemon::handlers;
use crate::daemon::protocol::{self, ErrorCode, Request, Response};
use crate::host::unix_socket::{self, SocketError};
use crate::host::userfiles::UserFiles;

/// Where `vportd hotplug` finds the config when no daemon runs.
pub const DEFAULT_CONFIG: &str = "/etc/vportd/host.toml";

/// `vportd hotplug` flags; the event itself comes from udev's environment.
#[derive(Debug, Clone, clap::Args)]
pub struct HotplugArgs {
    /// The config to apply when no daemon answers.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The daemon's control socket.
    #[arg(long, value_name = "PATH", default_value = unix_socket::DEFAULT_PATH)]
    pub socket: PathBuf,
    /// How long to wait for the daemon to take the connection.
    #[arg(long, value_name = "MS", default_value_t = 20, hide = true)]
    pub connect_ms: u64,
    /// How long to wait for the daemon's answer.
    #[arg(long, value_name = "MS", default_value_t = 30, hide = true)]
    pub reply_ms: u64,
    /// Print udev properties for the event's netdev instead (udev's IMPORT{program}):
    /// `NM_UNMANAGED=1` when it is a VF of an uplink vportd manages, so that NetworkManager
    /// leaves it alone. The VF is matched by its PF's PCI address, never by a name.
    #[arg(long)]
    pub udev_properties: bool,
    /// Where /proc and /sys are (tests).
    #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
    pub root: PathBuf,
    /// What vportd-hotplug@.service runs, outside udev: no event in the environment; when
    /// no daemon listens, apply the config here (long work udev(7) forbids in its workers).
    /// LABEL (the unit's instance, the netdev udev saw) only names the run in the log.
    #[arg(long, value_name = "LABEL", conflicts_with = "udev_properties")]
    pub systemd_unit: Option<String>,
}

/// `vportd ctl` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CtlArgs {
    /// The daemon's control socket.
    #[arg(long, value_name = "PATH", default_value = unix_socket::DEFAULT_PATH)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub op: CtlOp,
}

/// What to ask the daemon.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CtlOp {
    /// Each vPort's placement, health (provisioned or lost) and drift, as JSON.
    Status,
    /// The plan for the daemon's config against the host now.
    Plan {
        #[arg(long)]
        allow_disruption: bool,
    },
    /// Apply the daemon's config now (waits for the result).
    Apply {
        #[arg(long)]
        allow_disruption: bool,
    },
    /// Ask the daemon to reconcile the device at this PCI address.
    Reconcile {
        /// e.g. 0000:02:00.0
        pci: String,
    },
    /// Turn the IRQ rebalancer on or off.
    Rebalance {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

/// Runs `vportd hotplug`; errors carry the exit code (2: a refused event, 1: runtime).
pub fn hotplug_main(a: HotplugArgs) -> Result<(), (u8, String)> {
    let start = Instant::now();
    // udev waits for us: the hand-off is microseconds of work that should not wait for a CPU
    // behind busy tasks. Best effort (udev runs handlers as root; elsewhere it may be refused).
    let _ = crate::host::sched::set_thread_nice(handlers::SOCKET_NICE);
    if a.udev_properties {
        return udev_properties(&a).map(|text| print!("{text}"));
    }
    if let Some(label) = &a.systemd_unit {
        return systemd_unit(&a, label);
    }
    let event = match events::from_env(std::env::vars_os()) {
        Ok(Some(e)) if e.wants_reconcile() => e,
        Ok(_) => return Ok(()),
        Err(e) => return Err((2, format!("refusing the udev event: {e}"))),
    };
    let line = protocol::encode_request(&Request::Reconcile {
        device: event.clone(),
    });
    let answer = unix_socket::request(
        &a.socket,
        &line,
        Duration::from_millis(a.connect_ms),
        Duration::from_millis(a.reply_ms),
        protocol::MAX_RESPONSE_LEN,
    );
    match answer {
        Ok(bytes) => match protocol::decode_response(&bytes) {
            Ok(Response::Queued { .. }) => {
                log::info!(
                    "{event}: handed to the daemon in {} us",
                    start.elapsed().as_micros()
                );
                Ok(())
            }
            Ok(Response::Error { code, message }) => Err((
                if code == ErrorCode::BadRequest { 2 } else { 1 },
                format!("the daemon refused {event}: {message}"),
            )),
            Ok(other) => Err((1, format!("the daemon answered {other:?} to a reconcile"))),
            Err(e) => Err((1, format!("the daemon's answer is unreadable: {e}"))),
        },
        // A daemon is there but slow: it hears the kernel's own uevent too, so leave it be
        // rather than contend for the apply lock while udev waits.
        Err(e @ SocketError::Timeout { .. }) => {
            log::warn!("{e}; leaving {event} to the daemon");
            Ok(())
        }
        // Under systemd the rules hand the long work to vportd-hotplug@.service (udev(7):
        // no long work in udev's workers); udev alone (no systemd) has only this process.
        Err(SocketError::NoDaemon { .. }) if crate::host::sdnotify::booted() => {
            log::info!(
                "{event}: no daemon answers; a netdev's add starts vportd-hotplug@.service, \
                 which applies {} outside udev",
                a.config.display()
            );
            Ok(())
        }
        Err(SocketError::NoDaemon { .. }) => apply_alone(&a.config, &event, &a.root),
        Err(e) => Err((1, e.to_string())),
    }
}

/// `vportd hotplug --systemd-unit LABEL`: a daemon that listens has the event already (its
/// own uevents, and the rules' `vportd hotplug`); without one, apply the config here.
fn systemd_unit(a: &HotplugArgs, label: &str) -> Result<(), (u8, String)> {
    if unix_socket::listening(&a.socket) {
        log::info!(
            "{label}: the daemon on {} reconciles it",
            a.socket.display()
        );
        return Ok(());
    }
    if !a.config.exists() {
        log::info!(
            "{label}: no daemon and no {}, nothing to do",
            a.config.display()
        );
        return Ok(());
    }
    let outcome = handlers::run_live(&a.config, false, "hotplug", &a.root).map_err(|e| {
        (
            1,
            format!("applying {} after {label}: {e}", a.config.display()),
        )
    })?;
    log::info!("{label}: {}", outcome.summary());
    Ok(())
}

/// No daemon: apply the stored config now. No config file means nothing is provisioned here.
fn apply_alone(config: &Path, event: &DeviceEvent, root: &Path) -> Result<(), (u8, String)> {
    if !config.exists() {
        log::info!(
            "{event}: no daemon and no {}, nothing to do",
            config.display()
        );
        return Ok(());
    }
    let outcome = handlers::run_live(config, false, "hotplug", root).map_err(|e| {
        (
            1,
            format!("applying {} after {event}: {e}", config.display()),
        )
    })?;
    log::info!("{event}: {}", outcome.summary());
    Ok(())
}

/// `vportd hotplug --udev-properties`: the udev properties of the event's netdev, as
/// `KEY=value` lines. A netdev of a VF whose PF is one of the config's uplinks (by PCI
/// address) or holds a vPort in the state file gets `NM_UNMANAGED=1`. Anything else, or no
/// config, prints nothing: udev then leaves the device to the usual rules.
fn udev_properties(a: &HotplugArgs) -> Result<String, (u8, String)> {
    let event = match events::from_env(std::env::vars_os()) {
        Ok(Some(e)) if e.subsystem == Subsystem::Net => e,
        Ok(_) => return Ok(String::new()),
        Err(e) => return Err((2, format!("refusing the udev event: {e}"))),
    };
    if !a.config.exists() {
        return Ok(String::new());
    }
    let cfg =
        crate::provision::config::load(&UserFiles, &a.config).map_err(|e| (2, e.to_string()))?;
    let fs = crate::host::fs::KernelFs::at(&a.root);
    let pf = fs
        .link_name(&format!("/sys/bus/pci/devices/{}/physfn", event.pci))
        .map_err(|e| (1, e.to_string()))?;
    let Some(pf) = pf else {
        return Ok(String::new());
    };
    let state =
        crate::provision::state::State::load(&UserFiles, &cfg.state_dir).unwrap_or_default();
    let uplinks: Vec<String> = cfg
        .uplinks
        .iter()
        .filter_map(|u| match &u.selector {
            crate::model::uplink::UplinkSelector::Pci(p) => Some(p.clone()),
            _ => None,
        })
        .chain(state.vports.values().map(|v| v.uplink.clone()))
        .collect();
    Ok(match events::managed_vf(&pf, &uplinks) {
        true => "NM_UNMANAGED=1\n".to_string(),
        false => String::new(),
    })
}

/// Runs `vportd ctl`: prints the daemon's answer as JSON.
pub fn ctl_main(a: CtlArgs) -> Result<String, (u8, String)> {
    let req = match a.op {
        CtlOp::Status => Request::Status {},
        CtlOp::Plan { allow_disruption } => Request::Plan { allow_disruption },
        CtlOp::Apply { allow_disruption } => Request::Apply { allow_disruption },
        CtlOp::Reconcile { pci } => {
            let pci: Bdf = pci
                .parse()
                .map_err(|_| (2, format!("{pci:?} is not a PCI address like 0000:02:00.0")))?;
            Request::Reconcile {
                device: DeviceEvent {
                    action: Action::Change,
                    subsystem: Subsystem::Pci,
                    pci,
                    ifindex: None,
                    interface: None,
                    driver: None,
                    seqnum: None,
                },
            }
        }
        CtlOp::Rebalance { state } => Request::Rebalance {
            enabled: state == "on",
        },
    };
    let wait = match req {
        Request::Apply { .. } => Duration::from_secs(600),
        _ => Duration::from_secs(60),
    };
    let bytes = unix_socket::request(
        &a.socket,
        &protocol::encode_request(&req),
        Duration::from_secs(2),
        wait,
        protocol::MAX_RESPONSE_LEN,
    )
    .map_err(|e| (1, e.to_string()))?;
    let resp = protocol::decode_response(&bytes)
        .map_err(|e| (1, format!("the daemon's answer is unreadable: {e}")))?;
    match resp {
        Response::Error { code, message } => Err((
            if code == ErrorCode::BadRequest { 2 } else { 1 },
            format!("the daemon says: {message}"),
        )),
        ok => Ok(serde_json::to_string_pretty(&ok).expect("responses serialize") + "\n"),
    }
}
