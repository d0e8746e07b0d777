//! Issue 8, point 2, without root: the fault-injection layer (src/host/faults.rs) over the
//! simulated host (src/sim.rs). Every operation apply uses fails, with every errno the
//! kernel really returns here and with a timeout, at every call position of a run; and the
//! process "dies" (kill -9, simulated by unwinding out of apply) at every call, before and
//! after it happens. After each: the host is as it was (or as planned), no VF leaked or
//! orphaned, the state file and the journal parse, and a clean rerun converges, after
//! which a third apply writes nothing. The same layer runs on the real igb driver in the
//! guest (tests/vm/faults.rs).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use nix::errno::Errno;
use vportd::host::faults::{Failure, Fault, FaultOp, FaultyOps, Killed};
use vportd::host::userfiles::UserFiles;
use vportd::model::profile::ProfileSet;
use vportd::provision::apply::{ApplyError, ApplyOptions};
use vportd::provision::config;
use vportd::provision::plan::PlanOptions;
use vportd::provision::sim_host::SimHost;
use vportd::provision::{self, ProvisionError};

type Host = FaultyOps<SimHost>;

/// The errnos the kernel returns to these operations (drivers, sysfs, rtnetlink, ethtool).
const ERRNOS: [Errno; 8] = [
    Errno::EBUSY,
    Errno::EAGAIN,
    Errno::EOPNOTSUPP,
    Errno::ENOENT,
    Errno::ERANGE,
    Errno::ENOSPC,
    Errno::EPERM,
    Errno::EIO,
];

/// Kills print nothing; every other panic (a failed assertion) is reported as usual.
fn quiet_kills() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Killed>().is_none() {
                default(info);
            }
        }));
    });
}

fn vport(name: &str, pf: u32, i: u32, extra: &str) -> String {
    format!(
        "[[vport]]\nname = \"{name}\"\nuplink = \"0000:0{pf}:00.0\"\nmac = \"02:00:00:00:0{pf}:{i:02x}\"\n{extra}\n"
    )
}

fn config(dir: &Path, uplink1: &str, uplink2: &str, vports: &[String]) -> String {
    format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"0000:01:00.0\"\n{uplink1}\n[[uplink]]\npci = \"0000:02:00.0\"\n{uplink2}\n{}",
        dir.display(),
        vports.concat()
    )
}

/// A scenario: the host is brought to `start` by a clean apply, then `change` is applied.
struct Scenario {
    name: &'static str,
    host: fn() -> SimHost,
    start: Option<fn(&Path) -> String>,
    change: fn(&Path) -> String,
}

/// From a clean host: VF counts, a driver change, every VF attribute, channels and RSS.
fn create(dir: &Path) -> String {
    config(
        dir,
        "vf_driver = \"vfio-pci\"\nchannels = 2\nrss = \"equal\"",
        "",
        &[
            vport("a", 1, 1, "vlan = 10\nqos = 2\nmax_tx_rate_mbps = 300"),
            vport("b", 1, 2, "trust = true\nspoofchk = false"),
            vport("c", 1, 3, ""),
            vport("d", 2, 1, "vlan = 20"),
            vport("soft", 2, 2, "offload = \"never\""),
        ],
    )
}

/// From `create`: a vPort removed (its VF reset), attributes changed, a newcomer, drivers
/// back to the default, channels back up.
fn release(dir: &Path) -> String {
    config(
        dir,
        "channels = 4\nrss = \"equal\"\nnum_vfs = 3",
        "",
        &[
            vport("a", 1, 1, "vlan = 11\nmax_tx_rate_mbps = 100"),
            vport("c", 1, 3, "trust = true"),
            vport("d", 2, 1, "vlan = 20"),
            vport("e", 2, 5, "spoofchk = false"),
        ],
    )
}

/// From `create`: a VF count change through 0 (allowed), which destroys and recreates the
/// VFs; a rollback must bring back the old ones with their drivers and settings.
fn resize(dir: &Path) -> String {
    config(
        dir,
        "vf_driver = \"vfio-pci\"\nnum_vfs = 5\nchannels = 2\nrss = \"equal\"",
        "",
        &[
            vport("a", 1, 1, "vlan = 10\nqos = 2\nmax_tx_rate_mbps = 300"),
            vport("b", 1, 2, "trust = true\nspoofchk = false"),
            vport("c", 1, 3, ""),
            vport("d", 2, 1, "vlan = 20"),
        ],
    )
}

fn one_pf(dir: &Path, vports: &[String]) -> String {
    format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"0000:01:00.0\"\nnum_vfs = 0\n{}",
        dir.display(),
        vports.concat()
    )
}

/// mlx5: an RSS context and the rule into it for one vPort, a single-queue rule for another.
fn steer(dir: &Path) -> String {
    one_pf(
        dir,
        &[
            vport("a", 1, 1, "queues = 4"),
            vport("b", 1, 2, "queues = 4\nvlan = 7"),
        ],
    )
}

/// From `steer`: a's rule and context deleted (their undo recreates them).
fn unsteer(dir: &Path) -> String {
    one_pf(dir, &[vport("b", 1, 2, "queues = 4\nvlan = 7")])
}

/// ixgbe: l2-fwd-offload on, then a VMDq macvlan station.
fn macvlan(dir: &Path) -> String {
    one_pf(dir, &[vport("m", 1, 1, "placement = \"queues\"")])
}

/// From `macvlan`: the station deleted, the feature off again.
fn unmacvlan(dir: &Path) -> String {
    one_pf(dir, &[])
}

const SCENARIOS: [Scenario; 7] = [
    Scenario {
        name: "create",
        host: igb2,
        start: None,
        change: create,
    },
    Scenario {
        name: "release",
        host: igb2,
        start: Some(create),
        change: release,
    },
    Scenario {
        name: "resize",
        host: igb2,
        start: Some(create),
        change: resize,
    },
    Scenario {
        name: "steer",
        host: mlx5,
        start: None,
        change: steer,
    },
    Scenario {
        name: "unsteer",
        host: mlx5,
        start: Some(steer),
        change: unsteer,
    },
    Scenario {
        name: "macvlan",
        host: ixgbe,
        start: None,
        change: macvlan,
    },
    Scenario {
        name: "unmacvlan",
        host: ixgbe,
        start: Some(macvlan),
        change: unmacvlan,
    },
];

fn igb2() -> SimHost {
    SimHost::igb(2)
}

fn mlx5() -> SimHost {
    SimHost::mlx5(1)
}

fn ixgbe() -> SimHost {
    SimHost::ixgbe(1)
}

/// A state directory. In memory where the machine has /dev/shm: these thousands of runs
/// test apply's logic and atomic renames, not the disk's fsync (seconds per hundred runs).
fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

fn opts(dir: &Path, run: &str) -> ApplyOptions {
    ApplyOptions {
        state_dir: dir.to_path_buf(),
        store: &UserFiles,
        retries: 3,
        retry_delay: Duration::ZERO,
        link_wait: Duration::from_secs(1),
        run_id: run.into(),
    }
}

fn apply(host: &mut Host, text: &str, run: &str) -> Result<bool, ApplyError> {
    let cfg = config::parse(Path::new("host.toml"), text).expect("config parses");
    let o = opts(&cfg.state_dir.clone(), run);
    let inv = host.inner.inventory();
    let mut rediscover = |h: &Host| h.inner.inventory();
    match provision::apply_config(
        host,
        cfg,
        inv,
        &mut rediscover,
        ProfileSet::builtin(),
        PlanOptions {
            allow_disruption: true,
        },
        &o,
        &mut |_, _, _, _| {},
    ) {
        Ok((_, r)) => Ok(r.noop),
        Err(ProvisionError::Apply(e)) => Err(*e),
        Err(e) => panic!("{run}: not an apply error: {e}"),
    }
}

/// Everything apply may change on the host: per PF its VFs (address, driver, every
/// attribute) and its queue facts.
fn snapshot(h: &SimHost) -> String {
    h.pfs
        .iter()
        .map(|p| {
            let vfs: Vec<String> = p
                .vfs
                .iter()
                .map(|v| format!("{} {:?} {:?}", v.bdf, v.driver, v.config))
                .collect();
            // Steering by content: a context recreated by a rollback may get another id,
            // a macvlan another ifindex (both are found again by table and MAC).
            let tables: Vec<&Vec<u32>> = p.steer.contexts.values().collect();
            let rules: Vec<String> = p
                .steer
                .rules
                .iter()
                .map(|(loc, r)| {
                    let target = match r.target {
                        vportd::model::queues::FlowTarget::Context { id } => {
                            format!("context {:?}", p.steer.contexts.get(&id))
                        }
                        t => format!("{t:?}"),
                    };
                    format!("{loc} {:?} {:?} {target}", r.dst_mac, r.vlan)
                })
                .collect();
            let macvlans: Vec<String> = p
                .steer
                .macvlans
                .iter()
                .map(|(_, name, mac, pool)| format!("{name} {mac:?} {pool}"))
                .collect();
            format!(
                "{} vfs {:?} queues {:?} contexts {tables:?} rules {rules:?} macvlans {macvlans:?}",
                p.bdf, vfs, p.queue_facts
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The state file as JSON (it must parse), without the run id.
fn state_json(dir: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(dir.join("state.json")).ok()?;
    let mut v: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("the state file is not JSON ({e})"));
    v.as_object_mut().map(|o| o.remove("last_run"));
    // A placement's reason says whether the VF was kept or newly taken, which depends on
    // the run, not on the host.
    if let Some(vports) = v.get_mut("vports").and_then(|x| x.as_object_mut()) {
        for vp in vports.values_mut() {
            vp.as_object_mut().map(|o| o.remove("reason"));
        }
    }
    Some(v)
}

fn journal_parses(dir: &Path) -> bool {
    match std::fs::read(dir.join("journal.json")) {
        Ok(bytes) => {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .unwrap_or_else(|e| panic!("the journal is not JSON ({e})"));
            true
        }
        Err(_) => false,
    }
}

/// A scenario prepared: the starting host (state directory included), and what a clean
/// apply of the change gives (host, state, calls per operation).
struct Prepared {
    start_host: SimHost,
    start_state: Option<Vec<u8>>,
    target_host: String,
    target_state: Option<serde_json::Value>,
    calls: std::collections::BTreeMap<FaultOp, u32>,
}

fn prepare(s: &Scenario) -> Prepared {
    let dir = tempdir();
    let mut host = FaultyOps::new((s.host)(), Vec::new());
    if let Some(start) = s.start {
        apply(&mut host, &start(dir.path()), "start").unwrap();
    }
    let start_host = host.inner.clone();
    let start_state = std::fs::read(dir.path().join("state.json")).ok();
    host.calls.clear();
    let noop = apply(&mut host, &(s.change)(dir.path()), "clean").unwrap();
    assert!(!noop, "{}: the change has work to do", s.name);
    let calls = host.calls.clone();
    let target_host = snapshot(&host.inner);
    let target_state = state_json(dir.path());
    assert!(
        apply(&mut host, &(s.change)(dir.path()), "again").unwrap(),
        "{}: a second clean apply is a no-op",
        s.name
    );
    Prepared {
        start_host,
        start_state,
        target_host,
        target_state,
        calls,
    }
}

/// A fresh state directory holding the scenario's starting state.
fn start(p: &Prepared, faults: Vec<Fault>) -> (tempfile::TempDir, Host) {
    let dir = tempdir();
    if let Some(bytes) = &p.start_state {
        std::fs::write(dir.path().join("state.json"), bytes).unwrap();
    }
    (dir, FaultyOps::new(p.start_host.clone(), faults))
}

/// After whatever happened: a clean apply converges to the target, a third writes nothing.
fn converges(p: &Prepared, s: &Scenario, dir: &Path, host: &mut Host, case: &str) {
    host.faults.clear();
    let text = (s.change)(dir);
    apply(host, &text, "rerun").unwrap_or_else(|e| panic!("{case}: the rerun failed: {e}"));
    assert_eq!(snapshot(&host.inner), p.target_host, "{case}: converged");
    assert_eq!(state_json(dir), p.target_state, "{case}: state");
    assert!(!journal_parses(dir), "{case}: no journal after a clean run");
    host.calls.clear();
    assert!(
        apply(host, &text, "third").unwrap(),
        "{case}: a third apply is a no-op"
    );
    assert_eq!(
        host.calls.get(&FaultOp::Write),
        None,
        "{case}: the no-op wrote"
    );
}

/// The failures tried on an operation: every errno before it happens; for writes also EIO
/// after it happened (the kernel did it, then reported an error); a timeout where the live
/// code has a time bound (after: the kernel finished late).
fn failures(op: FaultOp) -> Vec<(Failure, bool)> {
    let mut out: Vec<(Failure, bool)> =
        ERRNOS.iter().map(|e| (Failure::Errno(*e), false)).collect();
    let write = matches!(
        op,
        FaultOp::SetNumVfs
            | FaultOp::Bind
            | FaultOp::SetVf
            | FaultOp::SetChannels
            | FaultOp::SetRssTable
    );
    if write {
        out.push((Failure::Errno(Errno::EIO), true));
    }
    if op.can_time_out() {
        out.push((Failure::Timeout, true));
        out.push((Failure::Timeout, false));
    }
    out
}

#[test]
fn every_operation_fails_with_every_errno_at_every_call_and_apply_recovers() {
    let mut cases = 0;
    let mut by_outcome = std::collections::BTreeMap::<&str, u32>::new();
    for s in &SCENARIOS {
        let p = prepare(s);
        for op in FaultOp::ALL {
            let n = p.calls.get(&op).copied().unwrap_or(0);
            for nth in 1..=n {
                for (failure, after) in failures(op) {
                    let fault = Fault {
                        op,
                        nth,
                        times: Some(1),
                        failure,
                        after,
                    };
                    let case = format!("{}: {fault:?}", s.name);
                    let (dir, mut host) = start(&p, vec![fault]);
                    let text = (s.change)(dir.path());
                    let result = apply(&mut host, &text, "faulty");
                    assert_eq!(host.hits.len(), 1, "{case}: the fault struck once");
                    let transient = matches!(failure, Failure::Errno(Errno::EBUSY | Errno::EAGAIN));
                    let outcome = match result {
                        // Retried (EBUSY/EAGAIN), or a step that did not need the answer.
                        Ok(_) => {
                            assert_eq!(snapshot(&host.inner), p.target_host, "{case}: as planned");
                            assert_eq!(state_json(dir.path()), p.target_state, "{case}: state");
                            assert!(!journal_parses(dir.path()), "{case}: journal removed");
                            if transient { "retried" } else { "absorbed" }
                        }
                        Err(ApplyError::RolledBack { .. }) => {
                            assert_eq!(
                                snapshot(&host.inner),
                                snapshot(&p.start_host),
                                "{case}: rolled back to the start"
                            );
                            assert_eq!(
                                std::fs::read(dir.path().join("state.json")).ok(),
                                p.start_state,
                                "{case}: the state file is untouched"
                            );
                            assert!(!journal_parses(dir.path()), "{case}: journal removed");
                            "rolled back"
                        }
                        Err(e) => panic!("{case}: {e}"),
                    };
                    *by_outcome.entry(outcome).or_default() += 1;
                    converges(&p, s, dir.path(), &mut host, &case);
                    cases += 1;
                }
            }
        }
    }
    eprintln!("{cases} faulty applies: {by_outcome:?}");
    assert!(by_outcome.get("rolled back").copied().unwrap_or(0) > cases / 2);
    assert!(by_outcome.get("retried").copied().unwrap_or(0) > 0);
}

/// A device gone bad: from some call on, every call of one operation fails (EIO), the
/// rollback's too. The journal is kept and parses; once the device is back, the next apply
/// rolls the interrupted run back and converges.
#[test]
fn a_persistent_fault_that_breaks_the_rollback_too_is_recovered_by_the_next_run() {
    let mut kept = 0;
    for s in &SCENARIOS {
        let p = prepare(s);
        for op in FaultOp::ALL {
            for nth in 1..=p.calls.get(&op).copied().unwrap_or(0) {
                let fault = Fault {
                    op,
                    nth,
                    times: None,
                    failure: Failure::Errno(Errno::EIO),
                    after: false,
                };
                let case = format!("{}: {fault:?}", s.name);
                let (dir, mut host) = start(&p, vec![fault]);
                let text = (s.change)(dir.path());
                match apply(&mut host, &text, "bad") {
                    Ok(_) => {
                        assert_eq!(snapshot(&host.inner), p.target_host, "{case}");
                    }
                    Err(ApplyError::RolledBack { .. }) => {
                        assert_eq!(snapshot(&host.inner), snapshot(&p.start_host), "{case}");
                        assert!(!journal_parses(dir.path()), "{case}");
                    }
                    Err(ApplyError::RollbackFailed { .. }) => {
                        assert!(journal_parses(dir.path()), "{case}: the journal is kept");
                        assert_eq!(
                            std::fs::read(dir.path().join("state.json")).ok(),
                            p.start_state,
                            "{case}: the state file is untouched"
                        );
                        kept += 1;
                    }
                    Err(e) => panic!("{case}: {e}"),
                }
                converges(&p, s, dir.path(), &mut host, &case);
            }
        }
    }
    assert!(kept > 0, "some rollbacks met the bad device");
}

/// kill -9 at every call apply makes, before and after it happens (so at every journaled
/// step, and between the journal write and the step's writes), then a rerun: it rolls the
/// killed run back and converges. A second kill during that recovery is survived too.
#[test]
fn a_kill_at_any_call_then_a_rerun_converges() {
    quiet_kills();
    let mut kills = 0;
    for s in &SCENARIOS {
        let p = prepare(s);
        for op in FaultOp::ALL.into_iter().chain([FaultOp::Write]) {
            let n = p.calls.get(&op).copied().unwrap_or(0);
            for nth in 1..=n {
                for after in [false, true] {
                    let fault = Fault {
                        op,
                        nth,
                        times: Some(1),
                        failure: Failure::Kill,
                        after,
                    };
                    let case = format!("{}: {fault:?}", s.name);
                    let (dir, mut host) = start(&p, vec![fault]);
                    let text = (s.change)(dir.path());
                    let died = catch_unwind(AssertUnwindSafe(|| apply(&mut host, &text, "killed")));
                    match died {
                        Err(payload) if payload.downcast_ref::<Killed>().is_some() => {}
                        Err(payload) => std::panic::resume_unwind(payload),
                        Ok(r) => panic!("{case}: not killed: {r:?}"),
                    }
                    kills += 1;
                    // What a dead process leaves: both files whole (or absent).
                    let _ = state_json(dir.path());
                    let journal = journal_parses(dir.path());
                    if op == FaultOp::Write && journal {
                        // The recovery is killed at its first write, if it has one.
                        host.faults = vec![Fault {
                            op: FaultOp::Write,
                            nth: 1,
                            times: Some(1),
                            failure: Failure::Kill,
                            after: true,
                        }];
                        host.calls.clear();
                        let again =
                            catch_unwind(AssertUnwindSafe(|| apply(&mut host, &text, "killed2")));
                        if let Err(payload) = again
                            && payload.downcast_ref::<Killed>().is_none()
                        {
                            std::panic::resume_unwind(payload);
                        }
                        let _ = state_json(dir.path());
                        journal_parses(dir.path());
                    }
                    converges(&p, s, dir.path(), &mut host, &case);
                }
            }
        }
    }
    eprintln!("{kills} kills");
    assert!(kills > 100);
}
