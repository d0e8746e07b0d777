//! Time to set up hardware queues for 16 vPorts on one PF: vportd's apply against the
//! equivalent `ethtool` command sequence, in the same run, as a ratio.
//!
//! What it measures, plainly: no NIC on the project's machines accepts RSS contexts or
//! ntuple rules (docs/queues.md), so both sides talk to the same fake NIC, the LD_PRELOAD
//! shim of tests/queues_bytes.rs (tests/queues/ethtool_shim.c, here with 64 rings), which
//! answers every `SIOCETHTOOL` ioctl in the calling process and remembers contexts and
//! rules as a driver would. So the figures are the user-space and syscall cost of each
//! side's requests, not a driver's work (which is the same for both: the same requests).
//!
//! - vportd: one `apply::apply` of a plan with, per vPort, "create an RSS context over 2
//!   queues" and "insert an ntuple rule on its MAC into it", through `LiveQueues` on `lo`
//!   (the shim intercepts before the kernel): each step journaled before it runs (a write
//!   and a rename, no fsync: `Journal::save` in src/apply.rs says why), the rule slot
//!   checked first, each result read back, the state file written once with fsync.
//! - ethtool: per vPort, `ethtool -X lo context new start S equal 2` and `ethtool -N lo
//!   flow-type ether dst MAC context C loc L`, 32 processes in sequence, no read-back. Under
//!   this shim a process start is most of each call, so this ratio mostly measures fork and
//!   exec.
//! - the fair peer, the same 32 requests in one process: ethtool has no batch mode (6.1 has
//!   only `--json`, for output; no `-batch` as `ip` has), so the one-process peer is the
//!   requests alone, sent through the same encoders (`LiveQueues`) in a loop: no journal, no
//!   rule-slot check, no read-back, no state file. What vportd adds to it is the cost of being
//!   safe to kill and roll back.
//!
//! Run: `cargo bench --bench queues_setup` (needs cc and ethtool; no root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vportd::host::ethtool::LiveQueues;
use vportd::host::userfiles::UserFiles;
use vportd::model::queues::{FlowRule, FlowTarget, equal_table};
use vportd::model::vf::VfConfig;
use vportd::provision::apply::{self, ApplyOptions};
use vportd::provision::ops::{HostError, QueueOps, SriovOps};
use vportd::provision::plan::{Action, Placement, Plan};
use vportd::provision::state::{QueueMode, State, VportPath};

const VPORTS: u32 = 16;
const QUEUES_EACH: u32 = 2;
const RINGS: u32 = 64;
const ROUNDS: usize = 15;

fn mac(i: u32) -> String {
    format!("02:00:00:00:0a:{i:02x}")
}

/// The plan apply would make for 16 vPorts with `queues = 2` on a PF with 64 channels.
fn plan() -> Plan {
    let pf = "0000:00:00.0".to_string();
    let mut actions = Vec::new();
    let mut placements = Vec::new();
    for i in 0..VPORTS {
        let vport = format!("vp{i:02}");
        let first = RINGS - QUEUES_EACH * (i + 1);
        actions.push(Action::CreateRssContext {
            pf: pf.clone(),
            pf_ifindex: 1,
            vport: vport.clone(),
            first,
            count: QUEUES_EACH,
            table: equal_table(128, first, QUEUES_EACH),
        });
        actions.push(Action::InsertRule {
            pf: pf.clone(),
            pf_ifindex: 1,
            vport: vport.clone(),
            mac: mac(i),
            vlan: None,
            location: i,
            queue: None,
        });
        placements.push(Placement {
            vport,
            uplink: pf.clone(),
            path: VportPath::Queues {
                mode: QueueMode::RssContext,
                first,
                count: QUEUES_EACH,
                location: Some(i),
            },
            reason: "bench".into(),
            vf_config: None,
        });
    }
    Plan {
        placements,
        actions,
        disruptions: Vec::new(),
        warnings: Vec::new(),
        blockers: Vec::new(),
        pools: Vec::new(),
    }
}

/// A host whose only controls are the live queue ones (the plan has no VF steps).
struct QueuesOnly(LiveQueues);

impl SriovOps for QueuesOnly {
    fn num_vfs(&mut self, _: &str) -> Result<u32, HostError> {
        Ok(0)
    }
    fn set_num_vfs(&mut self, _: &str, _: u32) -> Result<u32, HostError> {
        unreachable!("no VF steps in this plan")
    }
    fn vf_bdf(&mut self, _: &str, _: u32) -> Result<Option<String>, HostError> {
        Ok(None)
    }
    fn driver(&mut self, _: &str) -> Result<Option<String>, HostError> {
        Ok(None)
    }
    fn bind(&mut self, _: &str, _: Option<&str>) -> Result<(), HostError> {
        unreachable!("no VF steps in this plan")
    }
    fn vf_config(&mut self, _: u32, _: u32) -> Result<Option<VfConfig>, HostError> {
        Ok(None)
    }
    fn set_vf(&mut self, _: u32, _: &VfConfig) -> Result<(), HostError> {
        unreachable!("no VF steps in this plan")
    }
    fn pf_carrier(&mut self, _: &str) -> Result<bool, HostError> {
        Ok(true)
    }
    fn pf_admin_up(&mut self, _: u32) -> Result<bool, HostError> {
        Ok(true)
    }
    fn set_pf_admin_up(&mut self, _: u32, _: bool) -> Result<(), HostError> {
        unreachable!("the PF is up in this plan")
    }
    fn queues(&mut self) -> Option<&mut dyn QueueOps> {
        Some(&mut self.0)
    }
}

/// In the child (LD_PRELOAD set): one apply with its state directory in `base`, timed;
/// prints the milliseconds.
fn child(base: &Path) {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let o = ApplyOptions {
        state_dir: dir.path().to_path_buf(),
        store: &UserFiles,
        retries: 1,
        retry_delay: Duration::ZERO,
        run_id: "bench".into(),
        link_wait: Duration::ZERO,
    };
    let p = plan();
    let mut host = QueuesOnly(LiveQueues);
    let start = Instant::now();
    let (report, state) = apply::apply(&mut host, &p, &State::default(), &o, &mut |_, _, _, _| {})
        .unwrap_or_else(|e| panic!("apply against the shim failed: {e}"));
    let ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(report.steps.len(), (2 * VPORTS) as usize);
    assert_eq!(state.steering.len(), VPORTS as usize);
    // The shim handed out context ids 1..=16, and every rule steers into its own.
    let ids: std::collections::BTreeSet<u32> =
        state.steering.values().filter_map(|s| s.context).collect();
    assert_eq!(ids.len(), VPORTS as usize);
    println!("{ms:.3}");
}

/// In the child (LD_PRELOAD set): the same 32 requests alone, timed; prints the milliseconds.
fn child_requests_only() {
    let mut q = LiveQueues;
    let start = Instant::now();
    for i in 0..VPORTS {
        let first = RINGS - QUEUES_EACH * (i + 1);
        let id = q
            .create_rss_context(1, &equal_table(128, first, QUEUES_EACH))
            .unwrap_or_else(|e| panic!("create context against the shim: {e}"));
        let dst_mac = vportd::model::mac::Mac::parse_lenient(&mac(i)).unwrap().0;
        q.insert_rule(
            1,
            &FlowRule {
                dst_mac,
                vlan: None,
                location: i,
                target: FlowTarget::Context { id },
            },
        )
        .unwrap_or_else(|e| panic!("insert rule against the shim: {e}"));
    }
    println!("{:.3}", start.elapsed().as_secs_f64() * 1e3);
}

fn shim(dir: &Path) -> PathBuf {
    let so = dir.join("shim.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&so)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/queues/ethtool_shim.c"
        ))
        .arg("-ldl")
        .output()
        .expect("cc runs");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

fn ethtool(so: &Path, args: &[&str]) {
    let out = Command::new("ethtool")
        .args(args)
        .env("LD_PRELOAD", so)
        .env("SHIM_RINGS", RINGS.to_string())
        .output()
        .expect("ethtool runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ethtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The ethtool command sequence an operator would run for the same 16 vPorts.
fn ethtool_sequence(so: &Path) -> f64 {
    let start = Instant::now();
    for i in 0..VPORTS {
        let first = (RINGS - QUEUES_EACH * (i + 1)).to_string();
        let n = QUEUES_EACH.to_string();
        ethtool(
            so,
            &["-X", "lo", "context", "new", "start", &first, "equal", &n],
        );
        // Each ethtool process sees a fresh shim, so its new context is always 1.
        let loc = i.to_string();
        ethtool(
            so,
            &[
                "-N",
                "lo",
                "flow-type",
                "ether",
                "dst",
                &mac(i),
                "context",
                "1",
                "loc",
                &loc,
            ],
        );
    }
    start.elapsed().as_secs_f64() * 1e3
}

fn vportd_apply(so: &Path, base: &Path) -> f64 {
    child_ms(so, "VPORTD_QUEUES_BENCH_CHILD", base)
}

fn requests_only(so: &Path) -> f64 {
    child_ms(so, "VPORTD_QUEUES_BENCH_REQUESTS", Path::new("1"))
}

/// Runs this bench again as a child under the shim, in the mode `var` selects; its figure.
fn child_ms(so: &Path, var: &str, value: &Path) -> f64 {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .env(var, value)
        .env("LD_PRELOAD", so)
        .env("SHIM_RINGS", RINGS.to_string())
        .output()
        .expect("the bench re-runs itself");
    assert!(
        out.status.success(),
        "vportd side failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("milliseconds")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if let Some(base) = std::env::var_os("VPORTD_QUEUES_BENCH_CHILD") {
        child(Path::new(&base));
        return;
    }
    if std::env::var_os("VPORTD_QUEUES_BENCH_REQUESTS").is_some() {
        child_requests_only();
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let so = shim(dir.path());
    // The journal and state go to a disk directory (as /var/lib/vportd would: every step
    // is journaled before it runs, and the state file is fsynced once at the end), and to
    // tmpfs, where fsync costs nothing and what remains is the requests and read-backs.
    let disk = std::env::temp_dir();
    let tmpfs = Path::new("/dev/shm");
    let (mut on_disk, mut on_tmpfs, mut theirs, mut bare) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Interleaved rounds, so that all sides see the same machine state.
    for _ in 0..ROUNDS {
        on_disk.push(vportd_apply(&so, &disk));
        if tmpfs.is_dir() {
            on_tmpfs.push(vportd_apply(&so, tmpfs));
        }
        theirs.push(ethtool_sequence(&so));
        bare.push(requests_only(&so));
    }
    let t = median(theirs);
    let b = median(bare);
    println!(
        "queues for {VPORTS} vPorts ({QUEUES_EACH} queues each: RSS context + ntuple rule) on one PF, \
         against the LD_PRELOAD fake NIC, median of {ROUNDS} rounds:"
    );
    println!("  ethtool command sequence (32 processes, no read-back): {t:8.2} ms");
    println!("  the 32 requests alone in one process (ethtool has no batch mode):  {b:8.2} ms");
    let o = median(on_disk);
    println!(
        "  vportd apply, journal on disk ({}):  {o:8.2} ms   ethtool/vportd {:5.2}x   requests-alone/vportd {:5.2}x",
        disk.display(),
        t / o,
        b / o
    );
    if !on_tmpfs.is_empty() {
        let o = median(on_tmpfs);
        println!(
            "  vportd apply, journal on tmpfs (/dev/shm):  {o:8.2} ms   ethtool/vportd {:5.2}x   requests-alone/vportd {:5.2}x",
            t / o,
            b / o
        );
    } else {
        println!("  vportd apply, journal on tmpfs: not measured (no /dev/shm)");
    }
}
