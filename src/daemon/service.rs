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

use crate::daemon::metrics::{self, Stats};
use crate::facts::parse;
use crate::host::fs::KernelFs;
use crate::host::http::{self, HttpError};
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
                eprintln!(
                    "vportd: {} changed: the software path and the vPorts' CPU sets follow it",
                    self.path.display()
                );
                Some(c)
            }
            Err(e) => {
                let msg = e.to_string();
                if self.said.as_ref() != Some(&msg) {
                    eprintln!(
                        "vportd: {} changed but is not used, the daemon keeps the config it has: {msg}",
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
        }
    }
}

/// The daemon: its tasks share one current-thread runtime.
pub struct Daemon {
    cfg: DaemonConfig,
}

impl Daemon {
    pub fn new(cfg: DaemonConfig) -> Self {
        Self { cfg }
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
        let cfg = self.cfg;
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
                eprintln!("vportd: {l}");
            }
            return Ok(Some(r));
        }
        let server = match cfg.metrics {
            Some(addr) => Some(serve_metrics(addr, &cfg, stats.clone(), soft_view).await?),
            None => None,
        };
        let mut interval = tokio::time::interval(cfg.period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let mut last = Instant::now();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(DaemonError::Runtime)?;
        let mut l = Loop {
            watch,
            cfg,
            reb,
            soft,
            soft_problems: Vec::new(),
            stats,
            start,
            irqbalance: Default::default(),
        };
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
            let period_s = last.elapsed().as_secs_f64();
            last = Instant::now();
            l.period(period_s);
        }
        if let Some(s) = server {
            s.abort();
        }
        drop(l);
        Ok(None)
    }
}

/// Starts the software path of `config`; one that cannot start is said and replaced by
/// an empty one, so that the rebalancer still runs.
fn start_software(
    config: &crate::provision::config::Config,
    root: &std::path::Path,
) -> crate::softpath::SoftPath {
    let (sp, problems) = crate::softpath::SoftPath::start_live(config, &KernelFs::at(root))
        .unwrap_or_else(|e| {
            eprintln!("vportd: the software path does not start: {e}");
            crate::softpath::SoftPath::start(&[], &|_| None, None)
        });
    for p in problems {
        eprintln!("vportd: {p}");
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
}

impl Loop {
    /// One period: a changed config taken, the software path brought to the state file,
    /// and a rebalancer tick (unless the rebalancer is switched off).
    fn period(&mut self, period_s: f64) {
        let mut stats = self.stats.lock().expect("metrics lock is never poisoned");
        self.irqbalance.period(&self.cfg.root, &mut stats);
        drop(stats);
        if let Some(c) = self.watch.as_mut().and_then(ConfigWatch::poll) {
            self.reb.set_vport_cpus(crate::provision::vport_cpus(&c));
            self.cfg.software = Some(c);
        }
        // Software vPorts follow the state file (an apply or a hotplug reconcile moved
        // some) and trunks whose netdev came back are reopened.
        // A problem is said once, not every period, until it changes.
        if let (Some(sp), Some(c)) = (self.soft.as_mut(), self.cfg.software.as_ref()) {
            let problems: Vec<String> = sp
                .refresh_live(c, &KernelFs::at(&self.cfg.root))
                .iter()
                .map(ToString::to_string)
                .collect();
            if problems != self.soft_problems {
                for p in &problems {
                    eprintln!("vportd: {p}");
                }
                self.soft_problems = problems;
            }
        }
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
                    eprintln!("vportd: {l}");
                }
                self.stats
                    .lock()
                    .expect("metrics lock is never poisoned")
                    .record(&r);
            }
            // A torn read (a CPU going offline mid-read) is retried next period.
            Err(e) => eprintln!("vportd: this period is skipped: {e}"),
        }
    }
}

/// `vportd daemon` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// The provisioning config: its state directory feeds the vPort metrics.
    #[arg(long, value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Read and write /proc and /sys below DIR instead of / (fixtures, replays).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The sampling and decision period.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub period_ms: u64,
    /// Where to serve Prometheus metrics (`off` for nowhere).
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9477")]
    pub metrics: String,
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
    /// Upper threshold: a CPU busier than this sheds queues.
    #[arg(long, default_value_t = PolicyConfig::default().upper)]
    pub upper: f64,
    /// Lower threshold: a CPU idler than this for a while gives its queues away.
    #[arg(long, default_value_t = PolicyConfig::default().lower)]
    pub lower: f64,
    /// The control socket and hotplug (issue 7).
    #[command(flatten)]
    pub control: crate::daemon::handlers::ControlPlaneArgs,
}

/// Runs `vportd daemon`; errors carry the exit code (2: bad flags, 1: runtime).
pub fn main(a: DaemonArgs) -> Result<(), (u8, String)> {
    let bad = |m: String| (2u8, m);
    let metrics = match a.metrics.as_str() {
        "off" | "none" => None,
        addr => Some(addr.parse::<SocketAddr>().map_err(|e| {
            bad(format!(
                "--metrics {addr}: not an address like 127.0.0.1:9477 ({e}), or off"
            ))
        })?),
    };
    let mut nic_cpus = BTreeMap::new();
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
        None => Vec::new(),
    };
    if !(0.0 < a.lower && a.lower < a.upper && a.upper <= 1.0) {
        return Err(bad(format!(
            "--lower {} and --upper {} must satisfy 0 < lower < upper <= 1",
            a.lower, a.upper
        )));
    }
    let software = match &a.config {
        Some(c) => {
            Some(crate::provision::config::load(&UserFiles, c).map_err(|e| bad(e.to_string()))?)
        }
        None => None,
    };
    let state_dir = software.as_ref().map(|c| c.state_dir.clone());
    let policy = PolicyConfig {
        upper: a.upper,
        target: (a.upper - 0.1).max(a.lower + 0.05),
        lower: a.lower,
        ..PolicyConfig::default()
    };
    let cfg = DaemonConfig {
        root: a.root.clone(),
        period: Duration::from_millis(a.period_ms),
        metrics,
        once: a.once,
        state_dir,
        nic_cpus,
        avoid,
        steering: a.steering,
        policy,
        software,
        config_path: a.config.clone(),
    };
    // The control plane runs beside the rebalancer: socket, uevents, reconciles.
    let _control = match a.once {
        true => None,
        false => Some(
            crate::daemon::handlers::ControlPlane::start(&a.control, a.config.clone(), &a.root)
                .map_err(|e| (1u8, e.to_string()))?,
        ),
    };
    let report = Daemon::new(cfg).run().map_err(|e| (1u8, e.to_string()))?;
    if let Some(r) = report {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("tick reports serialize")
        );
    }
    Ok(())
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
