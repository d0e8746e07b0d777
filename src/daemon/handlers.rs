//! The daemon's control plane: the control socket, the kernel uevent listener, and the one
//! worker thread that runs reconciles and applies, one at a time.
//!
//! Threads rather than tasks on the daemon's runtime: apply and discovery are synchronous
//! and start their own netlink runtimes, which cannot nest inside the daemon's. The socket
//! answers a `reconcile` as soon as the event is queued (udev kills slow handlers), and a
//! burst of events (a hot-added NIC sends pci add, bind, net add, then events for each VF
//! the apply creates) collapses into one reconcile after a short quiet period.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::daemon::events::{self, DeviceEvent};
use crate::daemon::protocol::{self, ErrorCode, Request, Response};
use crate::facts::inventory;
use crate::host::fs::KernelFs;
use crate::host::netlink;
use crate::host::sriov::LiveSriov;
use crate::host::uevent::{Uevent, UeventListener};
use crate::host::unix_socket::{self, Access, ControlListener, Peer, SocketError};
use crate::host::userfiles::UserFiles;
use crate::model::inventory::Inventory;
use crate::model::profile::ProfileSet;
use crate::model::uplink::UplinkSelector;
use crate::provision;
use crate::provision::apply::ApplyOptions;
use crate::provision::plan::PlanOptions;
use crate::provision::reconcile::{self, Outcome};
use crate::provision::state::State;

/// Whether the daemon's rebalancer acts (`vportd ctl rebalance on|off`). One daemon per
/// process, so one switch.
static REBALANCE: AtomicBool = AtomicBool::new(true);

/// Whether the rebalancer should act this period.
pub fn rebalance_enabled() -> bool {
    REBALANCE.load(Ordering::Relaxed)
}

/// How long the worker waits for an event burst to end before reconciling.
const QUIET: Duration = Duration::from_millis(250);
/// Jobs waiting for the worker; beyond this a reconcile is already pending anyway.
const QUEUE: usize = 64;
/// The control socket thread's nice value (the unit's `LimitNICE=` allows it without
/// CAP_SYS_NICE).
pub const SOCKET_NICE: i32 = -10;
/// How long a `ctl apply` waits for its result.
const APPLY_WAIT: Duration = Duration::from_secs(600);

/// Errors that keep the control plane from starting.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// A thread could not be started.
    #[error("cannot start the control plane's {what} thread: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
}

/// `vportd daemon` flags of the control plane.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlPlaneArgs {
    /// The control socket (`off` for none); `vportd ctl` and `vportd hotplug` talk to it.
    /// Default /run/vportd/vportd.sock, or `[daemon] socket`.
    #[arg(long, value_name = "PATH|off")]
    pub socket: Option<String>,
    /// Members of this group may use the socket besides root (mode 0660, group-owned).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Do not listen to kernel uevents (rely on udev's `vportd hotplug` alone).
    #[arg(long)]
    pub no_uevents: bool,
}

enum Job {
    /// Reconcile after this event (None: re-read everything, e.g. after lost events).
    Reconcile(Option<DeviceEvent>),
    /// Apply now and answer.
    Apply {
        allow_disruption: bool,
        reply: mpsc::Sender<Result<Outcome, String>>,
    },
}

/// The running control plane; its threads live as long as the process.
pub struct ControlPlane {
    jobs: SyncSender<Job>,
    socket: Option<PathBuf>,
    progress: Arc<Progress>,
}

/// How far the worker's reconciles have come: the daemon's readiness, reload and STATUS
/// line wait on it.
#[derive(Default)]
pub struct Progress {
    inner: Mutex<Done>,
    changed: Condvar,
}

/// Reconciles asked for and done, and how the last one ended.
#[derive(Default, Clone)]
pub struct Done {
    /// Reconciles asked for through [`ControlPlane::request_reconcile`].
    pub requested: u64,
    /// The request number the last finished reconcile covered.
    pub covered: u64,
    /// Reconciles and applies finished.
    pub finished: u64,
    /// The last one's summary, or why it failed.
    pub last: Option<Result<String, String>>,
}

impl Progress {
    /// A copy of where things stand.
    pub fn now(&self) -> Done {
        self.inner
            .lock()
            .expect("progress lock is never poisoned")
            .clone()
    }

    /// Waits until a reconcile covering request `n` finished, or `timeout` passed; answers
    /// where things stand then.
    pub fn wait_covered(&self, n: u64, timeout: Duration) -> Done {
        let guard = self.inner.lock().expect("progress lock is never poisoned");
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |d| d.covered < n)
            .expect("progress lock is never poisoned");
        guard.clone()
    }

    fn record(&self, covered: Option<u64>, result: &Result<Outcome, String>) {
        let mut d = self.inner.lock().expect("progress lock is never poisoned");
        if let Some(n) = covered {
            d.covered = d.covered.max(n);
        }
        d.finished += 1;
        d.last = Some(result.as_ref().map(Outcome::summary).map_err(Clone::clone));
        self.changed.notify_all();
    }

    fn requested(&self) -> u64 {
        self.inner
            .lock()
            .expect("progress lock is never poisoned")
            .requested
    }
}

impl Drop for ControlPlane {
    /// The daemon is stopping: take the socket file away so that `vportd hotplug` falls
    /// back to applying alone at once instead of finding a stale socket.
    fn drop(&mut self) {
        if let Some(path) = &self.socket {
            let _ = crate::host::userfiles::remove(path);
        }
    }
}

impl ControlPlane {
    /// Starts the worker, the socket server and the uevent listener. With a config, the
    /// worker reconciles once at start (the host may have changed while no daemon ran).
    /// `root` is where /proc and /sys are (the daemon's `--root`): every reconcile, status
    /// and plan reads and writes the kernel's files below it.
    pub fn start(
        args: &ControlPlaneArgs,
        config: Option<PathBuf>,
        root: &Path,
    ) -> Result<ControlPlane, ControlPlaneError> {
        Self::start_with(args, config, root, None)
    }

    /// [`ControlPlane::start`], its CNI service serving switch networks through `soft`
    /// (the daemon loop's software path).
    pub fn start_with(
        args: &ControlPlaneArgs,
        config: Option<PathBuf>,
        root: &Path,
        soft: Option<crate::daemon::cni::SoftPathLink>,
    ) -> Result<ControlPlane, ControlPlaneError> {
        let access = match &args.socket_group {
            Some(g) => Access::with_group(g)?,
            None => Access::default(),
        };
        let listener = match args.socket.as_deref().unwrap_or(unix_socket::DEFAULT_PATH) {
            "off" | "none" => None,
            path => Some(ControlListener::bind(Path::new(path), access)?),
        };
        let (jobs, rx) = mpsc::sync_channel(QUEUE);
        let worker_config = config.clone();
        let worker_root = root.to_path_buf();
        let progress = Arc::new(Progress::default());
        let worker_progress = progress.clone();
        spawn("reconcile", move || {
            worker(rx, worker_config, &worker_root, &worker_progress)
        })?;
        let plane = ControlPlane {
            jobs,
            socket: listener.as_ref().map(|l| l.path().to_path_buf()),
            progress,
        };
        if config.is_some() {
            plane.request_reconcile();
        }
        let cni = crate::daemon::cni::CniService::new(state_dir(config.as_deref()))
            .serving_switches(soft);
        for gone in cni.gone_namespaces() {
            log::info!("attachment {gone}");
        }
        if let Some(listener) = listener {
            let ctx = Ctx {
                jobs: plane.jobs.clone(),
                config,
                root: root.to_path_buf(),
                cni,
            };
            spawn("control socket", move || {
                // Answering udev's `vportd hotplug` is a few microseconds of work that must
                // not queue behind CPU-bound tasks (docs/hotplug.md has the figures).
                if let Err(e) = crate::host::sched::set_thread_nice(SOCKET_NICE) {
                    log::warn!("{e}; the control socket runs at normal priority");
                }
                let e = listener.serve(
                    move |peer, line| ctx.handle(peer, line),
                    |peer| {
                        protocol::encode_response(&Response::error(
                            ErrorCode::Forbidden,
                            format!("uid {} is neither root nor in the socket's group", peer.uid),
                        ))
                    },
                );
                log::error!("the control socket stopped: {e}");
            })?;
        }
        if !args.no_uevents {
            let jobs = plane.jobs.clone();
            spawn("uevent", move || match UeventListener::open() {
                Ok(l) => {
                    let e = l.run(|msg| {
                        match msg {
                            Uevent::Message(buf) => {
                                if let Ok(pairs) = events::parse_uevent(buf)
                                    && let Ok(Some(ev)) = events::from_pairs(pairs)
                                    && ev.wants_reconcile()
                                {
                                    let _ = jobs.try_send(Job::Reconcile(Some(ev)));
                                }
                            }
                            Uevent::Overrun => {
                                let _ = jobs.try_send(Job::Reconcile(None));
                            }
                        }
                        true
                    });
                    log::warn!("uevents stopped, hotplug now relies on udev: {e}");
                }
                Err(e) => log::warn!("{e}; hotplug relies on udev's vportd hotplug"),
            })?;
        }
        Ok(plane)
    }

    /// Queues a reconcile, as the control socket does.
    pub fn reconcile(&self, event: Option<DeviceEvent>) {
        let _ = self.jobs.try_send(Job::Reconcile(event));
    }

    /// Queues a full reconcile and answers its request number, for
    /// [`Progress::wait_covered`]: the start-up one and each reload's.
    pub fn request_reconcile(&self) -> u64 {
        let n = {
            let mut d = self
                .progress
                .inner
                .lock()
                .expect("progress lock is never poisoned");
            d.requested += 1;
            d.requested
        };
        // Full: reconciles are pending, and the next one covers this request too.
        let _ = self.jobs.try_send(Job::Reconcile(None));
        n
    }

    /// How far the reconciles have come.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }
}

fn spawn(what: &'static str, f: impl FnOnce() + Send + 'static) -> Result<(), ControlPlaneError> {
    std::thread::Builder::new()
        .name(format!("vportd-{what}"))
        .spawn(f)
        .map(|_| ())
        .map_err(|source| ControlPlaneError::Thread { what, source })
}

/// What the socket handler needs.
struct Ctx {
    jobs: SyncSender<Job>,
    config: Option<PathBuf>,
    root: PathBuf,
    cni: crate::daemon::cni::CniService,
}

/// The state directory the config names (the default without a config, or when it does
/// not parse: the daemon reports that elsewhere).
fn state_dir(config: Option<&Path>) -> PathBuf {
    config
        .and_then(|c| crate::provision::config::load(&UserFiles, c).ok())
        .map(|c| c.state_dir)
        .unwrap_or_else(|| PathBuf::from(crate::provision::config::DEFAULT_STATE_DIR))
}

impl Ctx {
    fn handle(&self, peer: &Peer, line: &[u8]) -> Vec<u8> {
        let resp = match protocol::decode_request(line) {
            Err(e) => protocol::refusal(&e),
            Ok(req) => self.answer(peer, req),
        };
        protocol::encode_response(&resp)
    }

    fn answer(&self, _peer: &Peer, req: Request) -> Response {
        let failed = |e: String| Response::error(ErrorCode::Failed, e);
        let no_config = || {
            Response::error(
                ErrorCode::Unsupported,
                "this daemon runs without --config, so it provisions nothing",
            )
        };
        use crate::daemon::cni::CniRequest;
        match req {
            Request::CniAdd { call } => self.cni.answer(CniRequest::Add(call)),
            Request::CniDel { call } => self.cni.answer(CniRequest::Del(call)),
            Request::CniCheck { call } => self.cni.answer(CniRequest::Check(call)),
            Request::CniGc { network, valid } => self.cni.answer(CniRequest::Gc { network, valid }),
            Request::CniStatus { target, .. } => self.cni.answer(CniRequest::Status { target }),
            Request::Reconcile { device } => {
                match self.jobs.try_send(Job::Reconcile(Some(device.clone()))) {
                    // Full: reconciles are pending, and each re-reads the whole host.
                    Ok(()) | Err(TrySendError::Full(_)) => Response::Queued { pci: device.pci },
                    Err(TrySendError::Disconnected(_)) => {
                        Response::error(ErrorCode::Busy, "the reconcile worker has stopped")
                    }
                }
            }
            Request::Rebalance { enabled } => {
                REBALANCE.store(enabled, Ordering::Relaxed);
                log::info!(
                    "rebalancing turned {} over the control socket",
                    if enabled { "on" } else { "off" }
                );
                Response::Rebalance { enabled }
            }
            Request::Status {} => {
                let dir = match &self.config {
                    Some(c) => match crate::provision::config::load(&UserFiles, c) {
                        Ok(cfg) => cfg.state_dir,
                        Err(e) => return failed(e.to_string()),
                    },
                    None => PathBuf::from(crate::provision::config::DEFAULT_STATE_DIR),
                };
                match status(&dir, &self.root) {
                    Ok(v) => Response::Status { vports: v },
                    Err(e) => failed(e),
                }
            }
            Request::Plan { allow_disruption } => {
                let Some(c) = &self.config else {
                    return no_config();
                };
                match plan(c, allow_disruption, &self.root) {
                    Ok(p) => Response::Plan { plan: p },
                    Err(e) => failed(e),
                }
            }
            Request::Apply { allow_disruption } => {
                if self.config.is_none() {
                    return no_config();
                }
                let (reply, rx) = mpsc::channel();
                if self
                    .jobs
                    .try_send(Job::Apply {
                        allow_disruption,
                        reply,
                    })
                    .is_err()
                {
                    return Response::error(ErrorCode::Busy, "the reconcile queue is full");
                }
                match rx.recv_timeout(APPLY_WAIT) {
                    Ok(Ok(o)) => Response::Applied {
                        result: serde_json::to_value(&o).expect("outcomes serialize"),
                    },
                    Ok(Err(e)) => failed(e),
                    Err(_) => Response::error(ErrorCode::Busy, "the apply did not finish in time"),
                }
            }
        }
    }
}

fn worker(rx: Receiver<Job>, config: Option<PathBuf>, root: &Path, progress: &Progress) {
    let mut deferred = Vec::new();
    let mut echoes = events::Echoes::default();
    let mut absent_said: Vec<String> = Vec::new();
    let mut run_noting = |allow_disruption: bool, why: &str, echoes: &mut events::Echoes| {
        let ours = config
            .as_deref()
            .map(|c| our_vf_functions(c, root))
            .unwrap_or_default();
        let result = run(config.as_deref(), allow_disruption, why, root);
        echoes.applied(ours, Instant::now());
        let absent = match &result {
            Ok(o) => o.absent_uplinks.clone(),
            // A failed apply reports nothing: sysfs says which uplinks are not here.
            Err(_) => config
                .as_deref()
                .map(|c| absent_uplinks(c, root))
                .unwrap_or_default(),
        };
        say_absent(&absent, &mut absent_said);
        result
    };
    while let Ok(job) = rx.recv() {
        match job {
            Job::Apply {
                allow_disruption,
                reply,
            } => {
                let result = run_noting(allow_disruption, "apply", &mut echoes);
                progress.record(None, &result);
                let _ = reply.send(result);
            }
            Job::Reconcile(first) => {
                // Events of this daemon's own apply (its VFs made and rolled back) do not
                // start another: with an uplink that keeps failing that would loop.
                let mut full = first.is_none();
                let mut ignored = 0usize;
                let mut events: Vec<DeviceEvent> = Vec::new();
                let mut take = |e: Option<DeviceEvent>, echoes: &mut events::Echoes| match e {
                    None => full = true,
                    Some(e) if echoes.is_echo(&e, Instant::now()) => ignored += 1,
                    Some(e) => events.push(e),
                };
                take(first, &mut echoes);
                let start = Instant::now();
                // Wait for the burst to end: until QUIET passes with no new event.
                loop {
                    match rx.recv_timeout(QUIET) {
                        Ok(Job::Reconcile(e)) => take(e, &mut echoes),
                        Ok(apply @ Job::Apply { .. }) => deferred.push(apply),
                        Err(_) => break,
                    }
                    if start.elapsed() > QUIET * 8 {
                        break;
                    }
                }
                if ignored > 0 {
                    log::debug!("{ignored} uevent(s) of the daemon's own last apply ignored");
                }
                let why = match events.as_slice() {
                    [] => "a full re-read".to_string(),
                    [one] => one.to_string(),
                    [first, ..] => format!("{first} and {} more event(s)", events.len() - 1),
                };
                // Every request made before this point is covered by this reconcile.
                let covers = progress.requested();
                if config.is_some() && (full || !events.is_empty()) {
                    let result = run_noting(false, "reconcile", &mut echoes);
                    match &result {
                        Ok(o) => log::info!(
                            "reconcile after {why} in {} ms: {}",
                            start.elapsed().as_millis(),
                            o.summary()
                        ),
                        Err(e) => log::error!("reconcile after {why} failed: {e}"),
                    }
                    progress.record(Some(covers), &result);
                }
                for job in deferred.drain(..) {
                    if let Job::Apply {
                        allow_disruption,
                        reply,
                    } = job
                    {
                        let result = run_noting(allow_disruption, "apply", &mut echoes);
                        progress.record(None, &result);
                        let _ = reply.send(result);
                    }
                }
            }
        }
    }
}

/// A warning for each uplink of the config that is not here, said again only when the set
/// changes (a reconcile runs on every hotplug event).
fn say_absent(absent: &[String], said: &mut Vec<String>) {
    if absent == said.as_slice() {
        return;
    }
    for u in absent.iter().filter(|u| !said.contains(u)) {
        log::warn!(
            "uplink {u} is not here (or has no driver yet); its vPorts follow when it appears"
        );
    }
    *said = absent.to_vec();
}

/// The config's uplinks that are not here, as the config names them (as
/// [`Outcome::absent_uplinks`] does).
fn absent_uplinks(config: &Path, root: &Path) -> Vec<String> {
    let Ok(cfg) = crate::provision::config::load(&UserFiles, config) else {
        return Vec::new();
    };
    let fs = KernelFs::at(root);
    cfg.uplinks
        .iter()
        .filter(|u| !crate::host::uplink_wait::present(&fs, &u.selector))
        .map(|u| u.selector.to_string())
        .collect()
}

/// The PCI functions the VFs of the config's uplinks occupy (present or not), for
/// [`events::Echoes`]: every SR-IOV PF in sysfs that one of the uplinks names.
fn our_vf_functions(config: &Path, root: &Path) -> Vec<events::Bdf> {
    let Ok(cfg) = crate::provision::config::load(&UserFiles, config) else {
        return Vec::new();
    };
    let fs = KernelFs::at(root);
    let mut ours = Vec::new();
    for pf in fs.list("/sys/bus/pci/devices").unwrap_or_default() {
        let dir = format!("/sys/bus/pci/devices/{pf}");
        let Some(total) = fs.read_parsed::<u16>(&format!("{dir}/sriov_totalvfs")) else {
            continue;
        };
        let netdevs = fs.list(&format!("{dir}/net")).unwrap_or_default();
        let named = cfg.uplinks.iter().any(|u| match &u.selector {
            UplinkSelector::Pci(_) => u.selector.matches(&pf),
            UplinkSelector::Ifname(name) => netdevs.contains(name),
            UplinkSelector::Mac(_) => netdevs.iter().any(|n| {
                fs.read_lenient(&format!("/sys/class/net/{n}/address"))
                    .is_some_and(|m| u.selector.matches(&m))
            }),
        });
        let (Ok(bdf), Some(offset), Some(stride)) = (
            pf.parse::<events::Bdf>(),
            fs.read_parsed::<u16>(&format!("{dir}/sriov_offset")),
            fs.read_parsed::<u16>(&format!("{dir}/sriov_stride")),
        ) else {
            continue;
        };
        if named {
            ours.extend(events::vf_functions(bdf, offset, stride, total));
        }
    }
    ours
}

/// The host as discovery sees it now, with /proc and /sys below `root` (netlink is live).
pub fn live_inventory(root: &Path) -> Result<Inventory, String> {
    let nl = netlink::snapshot().map_err(|e| e.to_string())?;
    inventory::discover(&KernelFs::at(root), &nl, ProfileSet::builtin()).map_err(|e| e.to_string())
}

/// A reconcile of the live host against the config at `path` (re-read every time, so an
/// edited config takes effect at the next event).
/// `root` is where /proc and /sys are (`/` on a live host).
pub fn run_live(
    path: &Path,
    allow_disruption: bool,
    why: &str,
    root: &Path,
) -> Result<Outcome, String> {
    let cfg = crate::provision::config::load(&UserFiles, path).map_err(|e| e.to_string())?;
    let plan_opts = PlanOptions { allow_disruption };
    // What to read is facts::scope's to decide, as for `vportd apply`.
    let src = crate::facts::scope::Source::at_root(root);
    let read = |cfg: &crate::provision::config::Config| {
        crate::daemon::plan_inputs::plan_inventory(&src, cfg, plan_opts, &mut |_, _| {})
            .map_err(|e| e.to_string())
    };
    let inv = read(&cfg)?;
    let apply_opts = ApplyOptions {
        state_dir: cfg.state_dir.clone(),
        store: &UserFiles,
        retries: 5,
        retry_delay: Duration::from_millis(200),
        link_wait: Duration::from_secs(15),
        run_id: format!(
            "{why}-{}-{}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            std::process::id()
        ),
    };
    let mut ops = LiveSriov::new(KernelFs::at(root));
    let (fallback, for_rediscovery) = (inv.clone(), cfg.clone());
    let mut rediscover =
        |_: &LiveSriov| read(&for_rediscovery).unwrap_or_else(|_| fallback.clone());
    reconcile::reconcile(
        &mut ops,
        cfg,
        inv,
        &mut rediscover,
        ProfileSet::builtin(),
        plan_opts,
        &apply_opts,
        &mut |_, _, _, _| {},
    )
    .map_err(|e| e.to_string())
}

fn run(
    config: Option<&Path>,
    allow_disruption: bool,
    why: &str,
    root: &Path,
) -> Result<Outcome, String> {
    // Netlink is not below --root: an apply there would change live netdevs by the ifindexes
    // of a capture. Replays may plan and show status, never apply.
    if root != Path::new("/") {
        return Err(format!(
            "this daemon reads the kernel below --root {}, but VF settings go through the live \
             kernel's netlink; it plans and reports, and applies nothing",
            root.display()
        ));
    }
    match config {
        Some(p) => run_live(p, allow_disruption, why, root),
        None => Err("this daemon runs without --config, so it provisions nothing".into()),
    }
}

fn status(state_dir: &Path, root: &Path) -> Result<serde_json::Value, String> {
    let state = State::load(&UserFiles, state_dir).map_err(|e| e.to_string())?;
    let inv = live_inventory(root)?;
    let mut list = provision::status(&state, &inv);
    // The programmed steering, read back as `vportd status` does; not below another --root,
    // where ethtool would ask the live kernel about a capture's ifindexes.
    if root == Path::new("/") {
        provision::check_steering(&mut crate::host::ethtool::LiveQueues, &state, &mut list);
    }
    Ok(serde_json::to_value(list).expect("status serializes"))
}

fn plan(config: &Path, allow_disruption: bool, root: &Path) -> Result<serde_json::Value, String> {
    let inv = live_inventory(root)?;
    let config = crate::provision::config::load(&UserFiles, config).map_err(|e| e.to_string())?;
    let opts = PlanOptions { allow_disruption };
    let p = if root == Path::new("/") {
        provision::prepare_config_read_back(
            &UserFiles,
            config,
            &inv,
            ProfileSet::builtin(),
            opts,
            &mut crate::host::ethtool::LiveQueues,
        )
    } else {
        provision::prepare_config(&UserFiles, config, &inv, ProfileSet::builtin(), opts)
    }
    .map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(&p.plan).expect("plans serialize"))
}
