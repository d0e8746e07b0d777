//! The `vportd` command line: parse, call the library, print. Exit codes: 0 ok,
//! 1 runtime failure, 2 bad input (config or flags), 3 drift found by `status`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vportd::cli::render;
use vportd::facts::inventory;
use vportd::facts::profile::ProfileSet;
use vportd::host::fs::KernelFs;
use vportd::host::sriov::LiveSriov;
use vportd::host::{netlink, userfiles};
use vportd::provision;
use vportd::provision::apply::ApplyOptions;
use vportd::provision::plan::PlanOptions;
use vportd::provision::state::State;

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
    Daemon(vportd::daemon::DaemonArgs),
    /// A live view of CPUs, queues and moves, from the daemon's metrics endpoint.
    Top(vportd::daemon::top::TopArgs),
    /// Run by udev (udev/90-vportd.rules): hand the device event in the environment to the
    /// daemon, or apply the stored config when no daemon runs. See docs/hotplug.md.
    Hotplug(vportd::cli::ctl::HotplugArgs),
    /// Talk to the running daemon over its control socket: status, plan, apply,
    /// reconcile PCI, rebalance on|off. Prints its answer as JSON.
    Ctl(vportd::cli::ctl::CtlArgs),
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
    if vportd::cli::cni::invoked_as_plugin() {
        return vportd::cli::cni::main();
    }
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

/// What provisioning needs of the live host (no IRQs, CPUs or channels).
fn live_inventory() -> Result<inventory::Inventory, Failure> {
    let t = std::time::Instant::now();
    let nl = netlink::snapshot_scoped(false).map_err(Failure::runtime)?;
    timing("netlink snapshot", t);
    let t = std::time::Instant::now();
    let inv = inventory::discover_scoped(
        &KernelFs::system(),
        &nl,
        ProfileSet::builtin(),
        inventory::Scope::Provisioning,
    )
    .map_err(Failure::runtime);
    timing("sysfs discovery", t);
    inv
}

/// [`live_inventory`], narrowed to the PFs the config and the state name when they name
/// them all (a no-op apply on a host with many NICs reads only its own). A killed run's
/// journal, an uplink that does not resolve to one PCI network function, or a vPort MAC
/// held elsewhere gets the full read, so that errors and their hints are the same.
fn provisioning_inventory(
    cfg: &vportd::provision::config::Config,
) -> Result<inventory::Inventory, Failure> {
    if cfg
        .state_dir
        .join(vportd::provision::apply::JOURNAL_FILE)
        .exists()
    {
        return live_inventory();
    }
    let Ok(state) = vportd::provision::state::State::load(&cfg.state_dir) else {
        return live_inventory();
    };
    let t = std::time::Instant::now();
    let nl = netlink::snapshot_scoped(false).map_err(Failure::runtime)?;
    timing("netlink snapshot", t);
    let t = std::time::Instant::now();
    let fs = KernelFs::system();
    let uplinks = state.vports.values().map(|v| v.uplink.clone());
    let Some(pfs) =
        inventory::uplink_functions(&fs, &nl, cfg, uplinks).map_err(Failure::runtime)?
    else {
        return live_inventory();
    };
    let inv =
        inventory::discover_pfs(&fs, &nl, ProfileSet::builtin(), &pfs).map_err(Failure::runtime)?;
    let macs = cfg.vports.iter().map(|v| v.mac.to_string()).collect();
    if inventory::mac_outside(&inv, &nl, &macs) {
        return live_inventory();
    }
    timing("sysfs discovery (uplinks only)", t);
    Ok(inv)
}

/// The inventory for planning `cfg`: what provisioning needs, plus what the PFs report
/// of their queues (channels, RSS table, ntuple, l2-fwd-offload) when the plan can use
/// it. Probing costs several ethtool requests per PF, so a config whose vPorts all get
/// VFs and that sets no PF queues (the common no-op apply) goes without.
fn planning_inventory(
    cfg: &vportd::provision::config::Config,
    opts: PlanOptions,
) -> Result<inventory::Inventory, Failure> {
    let mut inv = provisioning_inventory(cfg)?;
    let asks = cfg
        .uplinks
        .iter()
        .any(|u| u.channels.is_some() || u.rss.is_some())
        || cfg
            .vports
            .iter()
            .any(|v| v.queues.is_some() || v.placement.is_some());
    // Without facts the planner trusts the hwprofile, so a plan that puts every vPort
    // that may be offloaded on a VF is the same with them.
    let needs = asks
        || provision::prepare_config(cfg.clone(), &inv, ProfileSet::builtin(), opts)
            .map(|p| {
                p.plan.placements.iter().any(|pl| {
                    !matches!(pl.path, vportd::provision::state::VportPath::Vf { .. })
                        && cfg.vports.iter().any(|v| {
                            v.name == pl.vport
                                && v.offload != vportd::provision::config::Offload::Never
                        })
                })
            })
            .unwrap_or(true);
    if needs {
        let t = std::time::Instant::now();
        for f in &mut inv.pci_functions {
            if f.role != inventory::Role::Vf {
                for n in &mut f.netdevs {
                    n.queues = Some(vportd::host::ethtool::queue_facts(&n.name));
                }
            }
        }
        timing("queue facts", t);
    }
    Ok(inv)
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

fn provision_failure(e: provision::ProvisionError) -> Failure {
    Failure {
        code: e.exit_code(),
        message: e.to_string(),
    }
}

fn apply_cmd(
    config: &std::path::Path,
    dry_run: bool,
    allow_disruption: bool,
    json: bool,
) -> Result<(), Failure> {
    let began = std::time::Instant::now();
    let cfg = vportd::provision::config::load(config).map_err(Failure::input)?;
    timing("config", began);
    let plan_opts = PlanOptions { allow_disruption };
    let inv = planning_inventory(&cfg, plan_opts)?;
    let t = std::time::Instant::now();
    if dry_run {
        let p = provision::prepare_config_read_back(
            cfg,
            &inv,
            ProfileSet::builtin(),
            plan_opts,
            &mut vportd::host::ethtool::LiveQueues,
        )
        .map_err(provision_failure)?;
        emit(&render::plan(&p.plan));
        return Ok(());
    }
    let apply_opts = ApplyOptions {
        state_dir: cfg.state_dir.clone(),
        retries: 5,
        retry_delay: std::time::Duration::from_millis(200),
        link_wait: std::time::Duration::from_secs(15),
        run_id: format!(
            "{}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            std::process::id()
        ),
    };
    #[cfg_attr(not(feature = "fault-injection"), allow(unused_mut))]
    let mut ops: Box<dyn vportd::host::sriov::SriovOps> =
        Box::new(LiveSriov::new(KernelFs::system()));
    // Test builds only: VPORTD_FAULTS makes chosen host operations fail (tests/vm/README.md).
    #[cfg(feature = "fault-injection")]
    {
        ops = match vportd::host::faults::from_env(ops).map_err(Failure::input)? {
            Ok(faulty) => Box::new(faulty),
            Err(live) => live,
        };
    }
    let for_rediscovery = cfg.clone();
    let mut rediscover =
        |_: &_| planning_inventory(&for_rediscovery, plan_opts).unwrap_or_else(|_| inv.clone());
    // Steps can be long (VF creation: seconds to over a minute on big NICs), so each
    // line says when it started and how long it took.
    let mut started = std::time::Instant::now();
    let mut progress =
        |step: usize,
         total: usize,
         what: &str,
         done: Option<&Result<(), vportd::provision::apply::StepError>>| {
            if json {
                return;
            }
            let took = || format!("{:.1} s", started.elapsed().as_secs_f64());
            match done {
                None => {
                    started = std::time::Instant::now();
                    eprint!("[{step}/{total}] {what} ... ")
                }
                Some(Ok(())) => eprintln!("ok ({})", took()),
                Some(Err(e)) => eprintln!("FAILED after {}: {e}", took()),
            }
        };
    let (prepared, report) = provision::apply_config(
        &mut ops,
        cfg,
        inv.clone(),
        &mut rediscover,
        ProfileSet::builtin(),
        plan_opts,
        &apply_opts,
        &mut progress,
    )
    .map_err(provision_failure)?;
    timing("plan and apply", t);
    if json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            plan: &'a vportd::provision::plan::Plan,
            report: &'a vportd::provision::apply::ApplyReport,
            /// From reading the config to the end: the work, without process start.
            elapsed_ms: f64,
        }
        emit(
            &(to_json(&Out {
                plan: &prepared.plan,
                report: &report,
                elapsed_ms: began.elapsed().as_secs_f64() * 1e3,
            }) + "\n"),
        );
        return Ok(());
    }
    if report.recovered_steps > 0 {
        eprintln!(
            "rolled back {} step(s) of an interrupted earlier apply first",
            report.recovered_steps
        );
    }
    for w in &prepared.plan.warnings {
        eprintln!("warning: {w}");
    }
    if report.noop {
        emit("nothing to do: the host already matches the config\n");
    } else {
        emit(&format!("applied {} step(s)\n", report.steps.len()));
    }
    Ok(())
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
        } => {
            let profiles = load_profiles(profiles.as_ref())?;
            // Bad input first: a config or state that cannot be read changes nothing.
            let config = config
                .map(|c| vportd::provision::config::load(&c).map_err(Failure::input))
                .transpose()?;
            let vports = match (&config, &state_dir) {
                (Some(c), _) => Some((
                    State::load(&c.state_dir).map_err(Failure::input)?,
                    provision::vport_cpus(c),
                )),
                (None, Some(d)) => {
                    Some((State::load(d).map_err(Failure::input)?, Default::default()))
                }
                (None, None) => None,
            };
            let (mut fs, nl) = match &fixture {
                Some(dir) => {
                    let text =
                        userfiles::read_text(&dir.join("netlink.json")).map_err(Failure::input)?;
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
                userfiles::write_atomic(&dir.join("netlink.json"), to_json(&nl).as_bytes())
                    .map_err(Failure::runtime)?;
            }
            let inv = inventory::discover(&fs, &nl, &profiles).map_err(Failure::runtime)?;
            let sets = vports
                .map(|(state, cpus)| vportd::provision::state::queue_sets(&state, &inv, &cpus));
            match (json, sets) {
                (true, None) => emit(&(to_json(&inv) + "\n")),
                (true, Some(sets)) => {
                    let mut v = serde_json::to_value(&inv).expect("inventories serialize");
                    v["vport_queue_sets"] =
                        serde_json::to_value(&sets).expect("queue sets serialize");
                    emit(&(to_json(&v) + "\n"));
                }
                (false, sets) => {
                    let mut text = render::inventory(&inv);
                    if let Some(sets) = sets {
                        text += &render::queue_sets(&sets.iter().collect::<Vec<_>>());
                    }
                    emit(&text);
                }
            }
            Ok(())
        }
        Command::Plan {
            config,
            json,
            allow_disruption,
        } => {
            let opts = PlanOptions { allow_disruption };
            let cfg = vportd::provision::config::load(&config).map_err(Failure::input)?;
            let inv = planning_inventory(&cfg, opts)?;
            let p = provision::prepare_config_read_back(
                cfg,
                &inv,
                ProfileSet::builtin(),
                opts,
                &mut vportd::host::ethtool::LiveQueues,
            )
            .map_err(provision_failure)?;
            if json {
                emit(&(to_json(&p.plan) + "\n"));
            } else {
                emit(&render::plan(&p.plan));
            }
            Ok(())
        }
        Command::Apply {
            config,
            allow_disruption,
            json,
            allow_absent: true,
            ..
        } => {
            // Bad input is still refused before anything is touched.
            vportd::provision::config::load(&config).map_err(Failure::input)?;
            let o = vportd::daemon::handlers::run_live(
                &config,
                allow_disruption,
                "apply",
                std::path::Path::new("/"),
            )
            .map_err(Failure::runtime)?;
            for u in &o.absent_uplinks {
                eprintln!(
                    "vportd: warning: uplink {u} is not here (or has no driver yet); its vPorts \
                     follow when it appears (the daemon hears its hotplug event)"
                );
            }
            if json {
                emit(&(to_json(&o) + "\n"));
            } else {
                emit(&format!("{}\n", o.summary()));
            }
            Ok(())
        }
        Command::Apply {
            config,
            dry_run,
            allow_disruption,
            json,
            allow_absent: false,
        } => apply_cmd(&config, dry_run, allow_disruption, json),
        Command::Status {
            config,
            state_dir,
            json,
        } => {
            let config = config
                .map(|c| vportd::provision::config::load(&c).map_err(Failure::input))
                .transpose()?;
            let dir = match (&config, state_dir) {
                (Some(c), _) => c.state_dir.clone(),
                (None, Some(d)) => d,
                (None, None) => PathBuf::from(vportd::provision::config::DEFAULT_STATE_DIR),
            };
            let cpus = config
                .as_ref()
                .map(provision::vport_cpus)
                .unwrap_or_default();
            let state = State::load(&dir).map_err(Failure::runtime)?;
            // Full discovery: the vPorts' queue sets need every function's IRQs.
            let nl = netlink::snapshot_scoped(false).map_err(Failure::runtime)?;
            let inv = inventory::discover(&KernelFs::system(), &nl, ProfileSet::builtin())
                .map_err(Failure::runtime)?;
            let mut list = provision::status_with(&state, &inv, &cpus);
            // The steering apply programmed (RSS contexts, rules, macvlans), read back.
            provision::check_steering(&mut vportd::host::ethtool::LiveQueues, &state, &mut list);
            // The daemon's published counters for the software vPorts, when it runs.
            let snap = vportd::softpath::Snapshot::load(&dir).map_err(Failure::runtime)?;
            for s in &mut list {
                s.switch = snap.as_ref().and_then(|x| x.vport(&s.vport)).cloned();
            }
            if json {
                emit(&(to_json(&list) + "\n"));
            } else {
                emit(&render::status(&list));
            }
            if list.iter().any(|s| !s.drift.is_empty()) {
                return Err(Failure {
                    code: 3,
                    message: "drift: the host no longer matches what was applied (vportd apply restores it)".into(),
                });
            }
            Ok(())
        }
        Command::Profiles { check, json } => {
            let text = vportd::facts::profile::run_profiles(check.as_deref(), json)
                .map_err(Failure::input)?;
            emit(&text);
            Ok(())
        }
        Command::Daemon(args) => {
            vportd::daemon::main(args).map_err(|(code, message)| Failure { code, message })
        }
        Command::Top(args) => {
            vportd::daemon::top::main(args).map_err(|(code, message)| Failure { code, message })
        }
        Command::Hotplug(args) => vportd::cli::ctl::hotplug_main(args)
            .map_err(|(code, message)| Failure { code, message }),
        Command::Ctl(args) => {
            let text = vportd::cli::ctl::ctl_main(args)
                .map_err(|(code, message)| Failure { code, message })?;
            emit(&text);
            Ok(())
        }
        Command::QueueProbe { ifname } => {
            use vportd::host::ethtool as et;
            let mac = [0x02, 0, 0, 0, 0x09, 0x01];
            let show = |what: &str, r: Result<String, et::EthtoolError>| {
                let (ok, detail, errno) = match r {
                    Ok(d) => (true, d, String::new()),
                    Err(e) => (
                        false,
                        e.to_string(),
                        e.errno().map(|n| format!("{n:?}")).unwrap_or_default(),
                    ),
                };
                emit(&format!(
                    "{}\n",
                    serde_json::json!({"control": what, "ok": ok, "errno": errno, "detail": detail})
                ));
            };
            let size = et::rss_get(&ifname, 0)
                .map(|t| t.indir.len() as u32)
                .unwrap_or(128);
            show(
                "rss-context",
                et::rss_context_create(&ifname, &et::equal_table(size, 0, 2))
                    .map(|c| format!("context {c}")),
            );
            show(
                "ntuple-context",
                et::ntuple_insert(
                    &ifname,
                    &et::FlowRule {
                        dst_mac: mac,
                        vlan: Some(100),
                        location: 0,
                        target: et::FlowTarget::Context { id: 1 },
                    },
                )
                .map(|()| "rule 0".into()),
            );
            show(
                "ntuple-queue",
                et::ntuple_insert(
                    &ifname,
                    &et::FlowRule {
                        dst_mac: mac,
                        vlan: None,
                        location: 1,
                        target: et::FlowTarget::Queue { index: 1 },
                    },
                )
                .map(|()| "rule 1".into()),
            );
            show(
                "l2-fwd-offload",
                et::feature_set(&ifname, "l2-fwd-offload", true).map(|()| "on".into()),
            );
            Ok(())
        }
        Command::Simulate { json } => {
            let rows = vportd::rebalance::scenario_sim::run_all();
            if json {
                emit(&(to_json(&rows) + "\n"));
            } else {
                emit(&vportd::rebalance::scenario_sim::table(&rows));
            }
            Ok(())
        }
    }
}
