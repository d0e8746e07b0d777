//! `vportd daemon`: the long-running agent's loop and its flags. Every period it takes a
//! changed config, brings the software path to the state file, and runs one tick of the
//! rebalancer ([`crate::rebalance::engine`], which holds all of the rebalancing); beside the
//! loop, on the same current-thread runtime, the metrics endpoint serves the last tick
//! (see [`Daemon::run`]). The control plane runs on threads of its own
//! ([`crate::daemon::handlers`]).
//!
//! The engine's types are re-exported here (`daemon::Rebalancer`, `daemon::TickReport`,
//! ...) for the callers that knew them at this path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::daemon::handlers::{ControlPlane, Done, Progress};
use crate::daemon::metrics::{self, Stats};
use crate::facts::parse;
use crate::host::fs::KernelFs;
use crate::host::http::{self, HttpError};
use crate::host::sdnotify::{Notifier, NotifyError};
use crate::host::userfiles::UserFiles;
use crate::provision::state::State;
use crate::rebalance::policy::PolicyConfig;

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The rebalancer's engine could not sample or learn the host.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The async runtime could not start.
    #[error("cannot start the daemon's runtime: {0}")]
    Runtime(std::io::Error),
}

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where /proc and /sys are (`/` on a live host).
    pub root: PathBuf,
    pub period: Duration,
    /// None: no endpoint.
    pub metrics: Option<SocketAddr>,
    /// Sample twice, decide and act once, print the tick as JSON, exit.
    pub once: bool,
    /// Where `vportd apply` keeps its state, for the vPorts' provisioning metrics.
    pub state_dir: Option<PathBuf>,
    /// Per-NIC CPU sets, by PCI address.
    pub nic_cpus: BTreeMap<String, Vec<u32>>,
    /// CPUs never to put interrupts on (in addition to the kernel's isolated CPUs).
    pub avoid: Vec<u32>,
    /// Also point RPS/XPS of a moved queue at its new CPU.
    pub steering: bool,
    pub policy: PolicyConfig,
    /// The provisioning config: its vPorts on the software path (per the state file) are
    /// attached to the daemon's software switches (see [`crate::softpath`]).
    pub software: Option<crate::provision::config::Config>,
    /// Where `software` was read from: the daemon reads it again when the file changes, so
    /// that a vPort added by an edit and an apply gets its TAP (and its CPU set) without a
    /// restart.
    pub config_path: Option<PathBuf>,
}

/// A config file's identity, by what a rewrite changes: size, modification time and inode
/// (an editor's save-by-rename keeps neither the inode nor, always, the time).
fn file_stamp(path: &std::path::Path) -> Option<(u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
}

/// Follows the daemon's config file between periods.
struct ConfigWatch {
    path: PathBuf,
    stamp: Option<(u64, i64, i64, u64)>,
    /// The last error said, so that a broken file is reported once, not every period.
    said: Option<String>,
}

impl ConfigWatch {
    fn new(path: PathBuf) -> Self {
        let stamp = file_stamp(&path);
        Self {
            path,
            stamp,
            said: None,
        }
    }

    /// The file as it is now counts as taken (a reload read it).
    fn taken(&mut self) {
        self.stamp = file_stamp(&self.path);
        self.said = None;
    }

    /// The config, when the file changed since the last look and parses. A file that no
    /// longer parses (or has gone) keeps the daemon on the config it has, said once.
    fn poll(&mut self) -> Option<crate::provision::config::Config> {
        let stamp = file_stamp(&self.path);
        if stamp == self.stamp {
            return None;
        }
        self.stamp = stamp;
        match crate::provision::config::load(&UserFiles, &self.path) {
            Ok(c) => {
                self.said = None;
                log::info!(
                    "{} changed: the software path and the vPorts' CPU sets follow it",
                    self.path.display()
                );
                Some(c)
            }
            Err(e) => {
                let msg = e.to_string();
                if self.said.as_ref() != Some(&msg) {
                    log::error!(
                        "{} changed but is not used, the daemon keeps the config it has: {msg}",
                        self.path.display()
                    );
                    self.said = Some(msg);
                }
                None
            }
        }
    }
}

use crate::rebalance::engine::{EngineConfig, EngineError, Rebalancer, TickReport, log_lines};

impl From<DaemonConfig> for EngineConfig {
    fn from(c: DaemonConfig) -> Self {
        EngineConfig {
            vport_cpus: c
                .software
                .as_ref()
                .map(crate::provision::vport_cpus)
                .unwrap_or_default(),
            root: c.root,
            period: c.period,
            state_dir: c.state_dir,
            nic_cpus: c.nic_cpus,
            avoid: c.avoid,
            steering: c.steering,
            policy: c.policy,
            uplinks: c.software.as_ref().map(uplinks_of),
        }
    }
}

/// The uplinks of a provisioning config, for the rebalancer: only their queues are its.
fn uplinks_of(c: &crate::provision::config::Config) -> Vec<crate::model::uplink::UplinkSelector> {
    c.uplinks.iter().map(|u| u.selector.clone()).collect()
}

/// The daemon: its tasks share one current-thread runtime.
pub struct Daemon {
    cfg: DaemonConfig,
    service: Service,
}

/// What the daemon has beside its loop when it runs as a service: the control plane whose
/// reconciles readiness and reload wait for, and the service manager to tell.
pub struct Service {
    pub control: Option<ControlPlane>,
    pub notify: Notifier,
    /// `--log-level` was given: a reload leaves the level alone.
    pub log_level_given: bool,
    /// CNI calls asking the software path to serve the attachment book now.
    pub kicks: Option<crate::daemon::cni::KickInbox>,
}

/// How long readiness and a reload wait for their reconcile: below the unit's
/// TimeoutStartSec=180s, so that a slow apply still ends in READY=1 (with a STATUS saying
/// so) rather than in systemd killing the daemon.
const RECONCILE_WAIT: Duration = Duration::from_secs(150);

impl Daemon {
    pub fn new(cfg: DaemonConfig) -> Self {
        Self {
            cfg,
            service: Service {
                control: None,
                notify: Notifier::none(),
                log_level_given: false,
                kicks: None,
            },
        }
    }

    /// The daemon with its control plane, telling the service manager its state.
    pub fn with_service(cfg: DaemonConfig, service: Service) -> Self {
        Self { cfg, service }
    }

    /// Runs until SIGINT/SIGTERM (or one tick with `once`, whose report is returned).
    pub fn run(self) -> Result<Option<TickReport>, DaemonError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DaemonError::Runtime)?;
        rt.block_on(self.run_async())
    }

    async fn run_async(self) -> Result<Option<TickReport>, DaemonError> {
        let (cfg, service) = (self.cfg, self.service);
        let watch = cfg.config_path.clone().map(ConfigWatch::new);
        let stats = Arc::new(Mutex::new(Stats::default()));
        // The software path lives as long as the daemon: its switches go with it, its TAPs
        // stay with their VMs (softpath::taps).
        let soft = match (&cfg.software, cfg.once) {
            (Some(c), false) => Some(start_software(c, &cfg.root)),
            _ => None,
        };
        let soft_view = soft.as_ref().map(crate::softpath::SoftPath::view);
        let mut reb = Rebalancer::new(cfg.clone());
        reb.prime()?;
        let start = Instant::now();
        if cfg.once {
            tokio::time::sleep(cfg.period).await;
            let r = reb.tick(start.elapsed().as_millis() as u64, cfg.period.as_secs_f64())?;
            for l in log_lines(&r) {
                log::info!("{l}");
            }
            return Ok(Some(r));
        }
        let server = match cfg.metrics {
            Some(addr) => Some(serve_metrics(addr, &cfg, stats.clone(), soft_view).await?),
            None => None,
        };
        let mut l = Loop {
            watch,
            cfg,
            reb,
            soft,
            soft_problems: Vec::new(),
            stats,
            start,
            irqbalance: Default::default(),
            service,
            status: String::new(),
            finished: 0,
        };
        l.ready().await;
        let result = l.serve().await;
        tell(l.service.notify.stopping());
        if let Some(s) = server {
            s.abort();
        }
        drop(l);
        result.map(|()| None)
    }
}

impl Loop {
    /// The loop: a period every tick, the watchdog fed, SIGHUP a reload; until SIGINT or
    /// SIGTERM.
    async fn serve(&mut self) -> Result<(), DaemonError> {
        let mut interval = tokio::time::interval(self.cfg.period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let mut last = Instant::now();
        let signal = |k| tokio::signal::unix::signal(k).map_err(DaemonError::Runtime);
        use tokio::signal::unix::SignalKind;
        let (mut term, mut hup) = (
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        );
        // WATCHDOG=1 at half the manager's timeout, from this loop: a period stuck in its
        // work holds the loop, and so the pings, and systemd restarts the daemon.
        let mut watchdog = self.service.notify.watchdog().map(|t| {
            let mut i = tokio::time::interval(t / 2);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = tick_of(&mut watchdog) => {
                    tell(self.service.notify.watchdog_ping());
                    continue;
                }
                _ = hup.recv() => {
                    self.reload().await;
                    continue;
                }
                Some(k) = crate::daemon::cni::next_kick(&mut self.service.kicks) => {
                    self.kicked(&k);
                    continue;
                }
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = term.recv() => return Ok(()),
            }
            let period_s = last.elapsed().as_secs_f64();
            last = Instant::now();
            self.period(period_s);
            self.update_status(false);
        }
    }
}

/// The next tick of an optional interval; never without one.
async fn tick_of(i: &mut Option<tokio::time::Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A notification that could not be sent is logged, never fatal: the daemon's work does
/// not depend on the manager hearing it (a missed watchdog ping restarts it anyway).
fn tell(r: Result<(), NotifyError>) {
    if let Err(e) = r {
        log::warn!("{e}");
    }
}

/// Waits, off the runtime's thread, for the reconcile that covers request `n`, feeding the
/// watchdog meanwhile: the wait is bounded ([`RECONCILE_WAIT`]), and a slow apply is not a
/// stuck daemon.
async fn covered(progress: Arc<Progress>, n: u64, notify: &Notifier) -> Done {
    let mut wait = tokio::task::spawn_blocking(move || progress.wait_covered(n, RECONCILE_WAIT));
    let mut ping = tokio::time::interval(
        notify
            .watchdog()
            .map_or(Duration::from_secs(3600), |t| t / 2),
    );
    loop {
        tokio::select! {
            done = &mut wait => return done.unwrap_or_default(),
            _ = ping.tick() => {
                if notify.watchdog().is_some() {
                    tell(notify.watchdog_ping());
                }
            }
        }
    }
}

/// The STATUS= line: what the daemon serves, from the state file, and how the last
/// reconcile went, e.g. "serving 7 vPorts on 2 uplinks, last reconcile ok".
pub fn status_line(state: Option<&State>, done: &Done) -> String {
    let mut out = match state {
        None => "no --config: rebalancing queue interrupts only".to_string(),
        Some(s) => {
            let uplinks: std::collections::BTreeSet<&str> = s
                .vports
                .values()
                .map(|v| v.uplink.as_str())
                .filter(|u| !u.starts_with("switch:"))
                .collect();
            let lost = s
                .vports
                .values()
                .filter(|v| v.health == crate::provision::state::Health::Lost)
                .count();
            let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
            let mut t = format!(
                "serving {} on {}",
                plural(s.vports.len(), "vPort"),
                plural(uplinks.len(), "uplink")
            );
            if lost > 0 {
                t += &format!(" ({lost} lost)");
            }
            t
        }
    };
    match &done.last {
        None if state.is_some() => out += ", first reconcile still running",
        None => {}
        Some(Ok(_)) => out += ", last reconcile ok",
        Some(Err(e)) => {
            out += ", last reconcile failed: ";
            out += e.lines().next().unwrap_or("");
        }
    }
    out
}

/// Starts the software path of `config`; one that cannot start is said and replaced by
/// an empty one, so that the rebalancer still runs.
fn start_software(
    config: &crate::provision::config::Config,
    root: &std::path::Path,
) -> crate::softpath::SoftPath {
    // The CNI attachments' ports from the start: a restart adopts their veths.
    let cni = crate::daemon::cni::soft_ports(&config.state_dir);
    let (sp, problems) = crate::softpath::SoftPath::start_live(config, &KernelFs::at(root), cni)
        .unwrap_or_else(|e| {
            log::error!("the software path does not start: {e}");
            crate::softpath::SoftPath::start(&[], &|_| None, None)
        });
    for p in problems {
        log::warn!("{p}");
    }
    sp
}

/// Serves the metrics endpoint on `addr`: the rebalancer's last tick, the vPorts of the
/// state file as they are at each scrape, and the software switch's counters.
async fn serve_metrics(
    addr: SocketAddr,
    cfg: &DaemonConfig,
    stats: Arc<Mutex<Stats>>,
    soft_view: Option<crate::softpath::View>,
) -> Result<tokio::task::JoinHandle<()>, DaemonError> {
    let listener = http::bind(addr).await?;
    let state_dir = cfg.state_dir.clone();
    let body = move || {
        let vports = state_dir
            .as_deref()
            .map(|d| State::load(&UserFiles, d))
            .and_then(Result::ok)
            .unwrap_or_default();
        let s = stats.lock().expect("metrics lock is never poisoned");
        let mut text = metrics::render(&s, &vports);
        if let Some(v) = &soft_view {
            text.push_str(&metrics::render_switch(&v.snapshot()));
        }
        text
    };
    Ok(tokio::spawn(http::serve(listener, body)))
}

/// What the daemon's loop carries from one period to the next.
struct Loop {
    cfg: DaemonConfig,
    watch: Option<ConfigWatch>,
    reb: Rebalancer,
    /// The software path, torn down when the loop is dropped.
    soft: Option<crate::softpath::SoftPath>,
    /// The software path's problems as last said.
    soft_problems: Vec<String>,
    stats: Arc<Mutex<Stats>>,
    start: Instant,
    /// Whether irqbalance runs beside us (looked at every few periods).
    irqbalance: crate::daemon::irqbalance::Watch,
    service: Service,
    /// The STATUS= line last sent.
    status: String,
    /// The reconciles finished when the status was last made.
    finished: u64,
}

impl Loop {
    /// READY=1 once the control socket is bound (it is: the control plane started before
    /// the loop) and the first reconcile is done.
    async fn ready(&mut self) {
        if let Some(cp) = &self.service.control {
            let asked = cp.progress().now().requested;
            if asked > 0 {
                covered(cp.progress(), asked, &self.service.notify).await;
            }
        }
        self.update_status(true);
    }

    /// The STATUS= line again when a reconcile finished since (or always, with READY=1).
    fn update_status(&mut self, ready: bool) {
        if !self.service.notify.active() {
            return;
        }
        let done = match &self.service.control {
            Some(cp) => cp.progress().now(),
            None => Done::default(),
        };
        if !ready && done.finished == self.finished {
            return;
        }
        self.finished = done.finished;
        let state = self
            .cfg
            .software
            .as_ref()
            .map(|c| State::load(&UserFiles, &c.state_dir).unwrap_or_default());
        let line = status_line(state.as_ref(), &done);
        if ready {
            tell(self.service.notify.ready(&line));
        } else if line != self.status {
            tell(self.service.notify.status(&line));
        }
        self.status = line;
    }

    /// SIGHUP (`systemctl reload`): RELOADING=1, the config read again and, when it parses,
    /// taken and reconciled; a config that does not parse is logged (file:line:col and the
    /// key) and the daemon keeps the one it has. READY=1 either way.
    async fn reload(&mut self) {
        tell(self.service.notify.reloading());
        let Some(path) = self.cfg.config_path.clone() else {
            log::info!("SIGHUP: this daemon runs without --config, there is nothing to read again");
            self.update_status(true);
            return;
        };
        match crate::provision::config::load(&UserFiles, &path) {
            Err(e) => log::error!(
                "reload: {} is not used, the daemon keeps the config it has: {e}",
                path.display()
            ),
            Ok(c) => {
                log::info!("reload: {} read again", path.display());
                if let Some(w) = self.watch.as_mut() {
                    w.taken();
                }
                self.take_settings(&c);
                self.reb.set_vport_cpus(crate::provision::vport_cpus(&c));
                self.reb.set_uplinks(Some(uplinks_of(&c)));
                self.cfg.software = Some(c);
                if let Some(cp) = &self.service.control {
                    let n = cp.request_reconcile();
                    covered(cp.progress(), n, &self.service.notify).await;
                }
            }
        }
        self.update_status(true);
    }

    /// What of a reloaded `[daemon]` table applies without a restart (the log level); the
    /// rest is said to wait for one.
    fn take_settings(&self, new: &crate::provision::config::Config) {
        let old = self.cfg.software.as_ref().map(|c| &c.daemon);
        if !self.service.log_level_given
            && let Some(l) = &new.daemon.log_level
        {
            crate::host::journal::set_level(level_filter(l));
        }
        let mut a = new.daemon.clone();
        let mut b = old.cloned().unwrap_or_default();
        (a.log_level, b.log_level, a.at, b.at) = (None, None, None, None);
        if a != b {
            log::warn!(
                "reload: [daemon] settings other than log_level take effect when the daemon restarts (systemctl restart vportd)"
            );
        }
    }

    /// One period: a changed config taken, the software path brought to the state file,
    /// and a rebalancer tick (unless the rebalancer is switched off).
    fn period(&mut self, period_s: f64) {
        let mut stats = self.stats.lock().expect("metrics lock is never poisoned");
        self.irqbalance.period(&self.cfg.root, &mut stats);
        drop(stats);
        if let Some(c) = self.watch.as_mut().and_then(ConfigWatch::poll) {
            self.reb.set_vport_cpus(crate::provision::vport_cpus(&c));
            self.reb.set_uplinks(Some(uplinks_of(&c)));
            self.cfg.software = Some(c);
        }
        // Software vPorts follow the state file (an apply or a hotplug reconcile moved
        // some) and trunks whose netdev came back are reopened.
        self.refresh_soft();
        // Off (`vportd ctl rebalance off`): keep the baseline fresh, decide nothing.
        if !crate::daemon::handlers::rebalance_enabled() {
            let _ = self.reb.prime();
            return;
        }
        match self
            .reb
            .tick(self.start.elapsed().as_millis() as u64, period_s)
        {
            Ok(r) => {
                for l in log_lines(&r) {
                    log::info!("{l}");
                }
                self.stats
                    .lock()
                    .expect("metrics lock is never poisoned")
                    .record(&r);
            }
            // A torn read (a CPU going offline mid-read) is retried next period.
            Err(e) => log::warn!("this period is skipped: {e}"),
        }
    }
}

impl Loop {
    /// The software path brought to the state file and the CNI attachment book. A problem
    /// is said once, not every period, until it changes. None: no software path runs.
    fn refresh_soft(&mut self) -> Option<Vec<String>> {
        let (Some(sp), Some(c)) = (self.soft.as_mut(), self.cfg.software.as_ref()) else {
            return None;
        };
        sp.set_extra_ports(crate::daemon::cni::soft_ports(&c.state_dir));
        let problems: Vec<String> = sp
            .refresh_live(c, &KernelFs::at(&self.cfg.root))
            .iter()
            .map(ToString::to_string)
            .collect();
        if problems != self.soft_problems {
            for p in &problems {
                log::warn!("{p}");
            }
            self.soft_problems = problems.clone();
        }
        Some(problems)
    }

    /// A CNI call's kick: the software path refreshed now, answered with its problems
    /// and what it runs.
    fn kicked(&mut self, kick: &crate::daemon::cni::Kick) {
        let started = Instant::now();
        let refreshed = self.refresh_soft();
        log::debug!("a kick's refresh took {:?}", started.elapsed());
        let answer = match refreshed {
            Some(problems) => crate::daemon::cni::SoftAnswer {
                problems,
                snapshot: self.soft.as_ref().map(|s| s.view().snapshot()),
            },
            None => crate::daemon::cni::SoftAnswer {
                problems: vec![
                    "this daemon runs no software path: start it with --config HOST.toml".into(),
                ],
                snapshot: None,
            },
        };
        let _ = kick.send(answer);
    }
}

/// `vportd daemon` flags. Each setting but `--config`, `--root` and `--once` can also be
/// written in the config's `[daemon]` table; a flag given here wins over it.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// The provisioning config: its state directory feeds the vPort metrics, its
    /// `[daemon]` table sets what the flags below do not.
    #[arg(long, value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Read and write /proc and /sys below DIR instead of / (fixtures, replays).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The sampling and decision period [default: 1000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub period_ms: Option<u64>,
    /// Where to serve Prometheus metrics (`off` for nowhere) [default: 127.0.0.1:9477].
    #[arg(long, value_name = "ADDR|off")]
    pub metrics: Option<String>,
    /// Take two samples one period apart, act once, print the tick as JSON, exit.
    #[arg(long)]
    pub once: bool,
    /// Per-NIC CPU set, e.g. `0000:01:00.0=2-7` (repeatable).
    #[arg(long = "nic-cpus", value_name = "BDF=CPULIST")]
    pub nic_cpus: Vec<String>,
    /// CPUs never to put queue interrupts on (application cores), e.g. `0-3,16-19`.
    #[arg(long, value_name = "CPULIST")]
    pub avoid_cpus: Option<String>,
    /// Also point a moved queue's RPS/XPS masks at its new CPU.
    #[arg(long)]
    pub steering: bool,
    /// Upper threshold: a CPU busier than this sheds queues [default: 0.8].
    #[arg(long)]
    pub upper: Option<f64>,
    /// Lower threshold: a CPU idler than this for a while gives its queues away
    /// [default: 0.25].
    #[arg(long)]
    pub lower: Option<f64>,
    /// The control socket and hotplug (issue 7).
    #[command(flatten)]
    pub control: crate::daemon::handlers::ControlPlaneArgs,
}

/// The default metrics endpoint.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9477";

/// `--log-level`'s word (or `[daemon] log_level`'s) as a level.
pub fn level_filter(word: &str) -> log::LevelFilter {
    match word {
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "debug" => log::LevelFilter::Debug,
        _ => log::LevelFilter::Info,
    }
}

/// Runs `vportd daemon`; errors carry the exit code (2: bad flags or config, 1: runtime).
/// `log_level_given`: `--log-level` was on the command line, so `[daemon] log_level` does
/// not change it.
pub fn main(a: DaemonArgs, log_level_given: bool) -> Result<(), (u8, String)> {
    let software = match &a.config {
        Some(c) => {
            Some(crate::provision::config::load(&UserFiles, c).map_err(|e| (2u8, e.to_string()))?)
        }
        None => None,
    };
    let set = software
        .as_ref()
        .map(|c| c.daemon.clone())
        .unwrap_or_default();
    if !log_level_given && let Some(l) = &set.log_level {
        crate::host::journal::set_level(level_filter(l));
    }
    let cfg = daemon_config(&a, &set, software)?;
    let control_args = crate::daemon::handlers::ControlPlaneArgs {
        socket: a.control.socket.clone().or(set.socket.clone()),
        socket_group: a.control.socket_group.clone().or(set.socket_group.clone()),
        no_uevents: a.control.no_uevents || set.uevents == Some(false),
    };
    // The control plane runs beside the rebalancer: socket, uevents, reconciles. Its CNI
    // service asks the loop, which owns the software path, to serve new attachments.
    let (link, inbox) = crate::daemon::cni::soft_link();
    let control = match a.once {
        true => None,
        false => Some(
            crate::daemon::handlers::ControlPlane::start_with(
                &control_args,
                a.config.clone(),
                &a.root,
                Some(link),
            )
            .map_err(|e| (1u8, e.to_string()))?,
        ),
    };
    let notify = match a.once {
        true => Notifier::none(),
        false => Notifier::from_env().unwrap_or_else(|e| {
            log::warn!("{e}; the service manager is not told the daemon's state");
            Notifier::none()
        }),
    };
    let service = Service {
        control,
        notify,
        log_level_given,
        kicks: Some(inbox),
    };
    let report = Daemon::with_service(cfg, service)
        .run()
        .map_err(|e| (1u8, e.to_string()))?;
    if let Some(r) = report {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("tick reports serialize")
        );
    }
    Ok(())
}

/// The daemon's settings: each flag given, else the `[daemon]` key, else the default.
fn daemon_config(
    a: &DaemonArgs,
    set: &crate::provision::config::DaemonSettings,
    software: Option<crate::provision::config::Config>,
) -> Result<DaemonConfig, (u8, String)> {
    let bad = |m: String| (2u8, m);
    let metrics = match a.metrics.as_deref() {
        Some("off" | "none") => None,
        Some(addr) => Some(addr.parse::<SocketAddr>().map_err(|e| {
            bad(format!(
                "--metrics {addr}: not an address like 127.0.0.1:9477 ({e}), or off"
            ))
        })?),
        None => set
            .metrics
            .unwrap_or_else(|| Some(DEFAULT_METRICS.parse().expect("the default address parses"))),
    };
    let mut nic_cpus = set.nic_cpus.clone();
    for spec in &a.nic_cpus {
        let (bdf, list) = spec.split_once('=').ok_or_else(|| {
            bad(format!(
                "--nic-cpus {spec}: expected BDF=CPULIST, e.g. 0000:01:00.0=2-7"
            ))
        })?;
        let cpus = parse::cpulist(list).map_err(|e| bad(format!("--nic-cpus {spec}: {e}")))?;
        nic_cpus.insert(bdf.to_string(), cpus);
    }
    let avoid = match &a.avoid_cpus {
        Some(l) => parse::cpulist(l).map_err(|e| bad(format!("--avoid-cpus: {e}")))?,
        None => set.avoid_cpus.clone().unwrap_or_default(),
    };
    let defaults = PolicyConfig::default();
    let upper = a.upper.or(set.upper).unwrap_or(defaults.upper);
    let lower = a.lower.or(set.lower).unwrap_or(defaults.lower);
    if !(0.0 < lower && lower < upper && upper <= 1.0) {
        return Err(bad(format!(
            "--lower {lower} and --upper {upper} must satisfy 0 < lower < upper <= 1"
        )));
    }
    let policy = PolicyConfig {
        upper,
        target: (upper - 0.1).max(lower + 0.05),
        lower,
        ..defaults
    };
    Ok(DaemonConfig {
        root: a.root.clone(),
        period: Duration::from_millis(a.period_ms.or(set.period_ms).unwrap_or(1000)),
        metrics,
        once: a.once,
        state_dir: software.as_ref().map(|c| c.state_dir.clone()),
        nic_cpus,
        avoid,
        steering: a.steering || set.steering == Some(true),
        policy,
        software,
        config_path: a.config.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::ConfigWatch;

    const GOOD: &str = "[[uplink]]\npci = \"0000:01:00.0\"\n";

    #[test]
    fn the_config_is_read_again_when_it_changes_and_kept_when_it_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.toml");
        std::fs::write(&path, GOOD).unwrap();
        let mut w = ConfigWatch::new(path.clone());
        assert!(w.poll().is_none(), "unchanged since the daemon read it");

        // Saved by rename, as editors do: a new inode, same size.
        let tmp = dir.path().join("host.toml.new");
        std::fs::write(&tmp, GOOD.replace("01:00.0", "02:00.0")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let c = w.poll().expect("a changed file that parses is taken");
        assert_eq!(c.uplinks.len(), 1);
        assert!(w.poll().is_none(), "taken once");

        // A broken file is not taken, and said once.
        std::fs::write(&path, "[[uplink]]\npci = 7\n").unwrap();
        assert!(w.poll().is_none());
        assert!(
            w.said.as_deref().unwrap_or("").contains("pci"),
            "{:?}",
            w.said
        );
        assert!(w.poll().is_none());

        // Mended: taken again.
        std::fs::write(&path, format!("{GOOD}\n")).unwrap();
        assert!(w.poll().is_some());
        assert!(w.said.is_none());

        // Gone: the daemon keeps what it has.
        std::fs::remove_file(&path).unwrap();
        assert!(w.poll().is_none());
        assert!(w.said.is_some());
    }
}
