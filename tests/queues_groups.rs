//! Each vPort's queue set handed to the rebalancer as one group (issue 9, point 3), without
//! a guest: the daemon's own loop (`Rebalancer`) on the 82576 guest fixture, with a state
//! file that puts vPort `vm1` on VF 1 (0000:01:10.2, IRQs 32 and 33) and a config giving it
//! `cpus = "2"`, while `--nic-cpus` limits the VF's PF group to CPU 1. The vPort's own set
//! must win for its queues (they are moved inside it although idle), the PF's queues must
//! stay inside the PF's set, and the metrics must carry `vport="vm1"` on exactly the vPort's
//! queues. The same on real igbvf interrupts: tests/vm/queue_groups.rs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vportd::daemon::DaemonConfig;
use vportd::daemon::metrics::{self, Stats};
use vportd::host::userfiles::UserFiles;
use vportd::provision::state::{Health, State, VportPath, VportState};
use vportd::rebalance::engine::Rebalancer;
use vportd::rebalance::policy::PolicyConfig;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/guest-82576-7vfs"
);
const PF: &str = "0000:01:00.0";
const VF1: &str = "0000:01:10.2";

fn fixture() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .args(["-a", &format!("{FIXTURE}/."), t.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
    // An idle machine: every queue is far below any threshold, so only the CPU sets move
    // anything.
    let mut stat = String::from("cpu 0 0 0 0 0 0 0 0 0 0\n");
    for cpu in 0..4 {
        stat += &format!("cpu{cpu} 10 0 10 1000 0 0 0 0 0 0\n");
    }
    std::fs::write(t.path().join("proc/stat"), stat).unwrap();
    t
}

fn state_dir(config_dir: &Path) -> std::path::PathBuf {
    let dir = config_dir.join("state");
    // An empty state of this build's version, as a first run loads it.
    let mut s = State::load(&UserFiles, &dir).unwrap();
    s.vports.insert(
        "vm1".into(),
        VportState {
            uplink: PF.into(),
            path: VportPath::Vf { index: 1 },
            reason: "a free VF".into(),
            vf_bdf: Some(VF1.into()),
            applied: None,
            health: Health::Provisioned,
        },
    );
    s.save(&UserFiles, &dir).unwrap();
    dir
}

fn affinity(root: &Path, irq: u32) -> String {
    std::fs::read_to_string(root.join(format!("proc/irq/{irq}/smp_affinity_list")))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_vports_queues_are_one_group_inside_its_cpus_and_labelled_in_the_metrics() {
    let root = fixture();
    let work = tempfile::tempdir().unwrap();
    let dir = state_dir(work.path());
    let text = format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"{PF}\"\n[[vport]]\nname = \"vm1\"\nuplink = \"{PF}\"\nmac = \"02:00:00:00:01:02\"\ncpus = \"2\"\n",
        dir.display()
    );
    let config =
        vportd::provision::config::parse(Path::new("host.toml"), &text).expect("config parses");
    // The VF's queues start outside CPU 2: the kernel's default mask (0-3), running on 3 and 0.
    assert_eq!(affinity(root.path(), 32), "0-3");
    assert_eq!(affinity(root.path(), 33), "0-3");
    let mut r = Rebalancer::new(DaemonConfig {
        root: root.path().to_path_buf(),
        period: Duration::from_secs(1),
        metrics: None,
        once: true,
        state_dir: Some(dir.clone()),
        nic_cpus: BTreeMap::from([(PF.to_string(), vec![1])]),
        avoid: Vec::new(),
        steering: false,
        policy: PolicyConfig::default(),
        software: Some(config),
        config_path: None,
    });
    r.prime().unwrap();
    let report = r.tick(1000, 1.0).unwrap();

    // The vPort's queues, and only they, carry its name.
    let vport_of: BTreeMap<u32, Option<String>> = report
        .queues
        .iter()
        .map(|q| (q.irq, q.vport.clone()))
        .collect();
    assert_eq!(vport_of[&32].as_deref(), Some("vm1"), "{report:#?}");
    assert_eq!(vport_of[&33].as_deref(), Some("vm1"), "{report:#?}");
    for (irq, v) in &vport_of {
        if ![32, 33].contains(irq) {
            assert_eq!(v, &None, "IRQ {irq} is not vm1's: {report:#?}");
        }
    }
    // Moved into their sets at once, idle as they are: the vPort's CPU 2 wins over the PF
    // group's --nic-cpus 1 for the VF's queues; the PF's own queues go to CPU 1.
    let moved: BTreeMap<u32, (u32, &str)> = report
        .moves
        .iter()
        .map(|m| {
            assert!(m.errno.is_none(), "{m:?}");
            (m.mv.irq, (m.mv.to, m.mv.reason.as_str()))
        })
        .collect();
    assert_eq!(moved.get(&32), Some(&(2, "cpu_set")), "{moved:?}");
    assert_eq!(moved.get(&33), Some(&(2, "cpu_set")), "{moved:?}");
    assert_eq!(moved.get(&27), Some(&(1, "cpu_set")), "{moved:?}");
    assert_eq!(moved.get(&28), Some(&(1, "cpu_set")), "{moved:?}");
    // The other PF (no set) is left alone: nothing is hot.
    assert!((36..=43).all(|i| !moved.contains_key(&i)), "{moved:?}");
    // Written through the fixture's /proc/irq files.
    assert_eq!(affinity(root.path(), 32), "2");
    assert_eq!(affinity(root.path(), 33), "2");
    assert_eq!(affinity(root.path(), 27), "1");

    // The Prometheus text: every per-queue family labels vm1's queues, and no other.
    let mut stats = Stats::default();
    stats.record(&report);
    let state = State::load(&UserFiles, &dir).unwrap();
    let text = metrics::render(&stats, &state);
    let samples = metrics::parse_samples(&text);
    for family in [
        "vportd_queue_interrupts_total",
        "vportd_queue_interrupt_rate",
        "vportd_queue_load_ratio",
    ] {
        let mut by_irq = BTreeMap::new();
        for s in samples.iter().filter(|s| s.name == family) {
            by_irq.insert(s.labels["irq"].clone(), s.labels["vport"].clone());
        }
        assert_eq!(by_irq["32"], "vm1", "{family}:\n{text}");
        assert_eq!(by_irq["33"], "vm1", "{family}:\n{text}");
        assert_eq!(by_irq["27"], "", "{family}:\n{text}");
        assert_eq!(
            by_irq.values().filter(|v| !v.is_empty()).count(),
            2,
            "{family}:\n{text}"
        );
    }
    assert!(
        text.contains("vportd_moves_total{reason=\"cpu_set\"} 4"),
        "{text}"
    );

    // Next period: inside their sets and idle, nothing moves back.
    let report = r.tick(2000, 1.0).unwrap();
    assert!(report.moves.is_empty(), "{:#?}", report.moves);
}

fn discover(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args(["discover", "--fixture", FIXTURE])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vportd discover {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `vportd discover --state-dir DIR` / `--config FILE`: the inventory plus each provisioned
/// vPort's queue set (JSON `vport_queue_sets`, text "queue sets"), its queues named by kind,
/// index and IRQ as /proc/interrupts names them; with `--config`, the vPort's own `cpus`.
/// Without either flag the inventory alone, as before.
#[test]
fn discover_shows_each_vports_queue_set_from_a_state_or_config() {
    let work = tempfile::tempdir().unwrap();
    let dir = state_dir(work.path());
    let cfg = work.path().join("host.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\n[[uplink]]\npci = \"{PF}\"\n[[vport]]\nname = \"vm1\"\nuplink = \"{PF}\"\nmac = \"02:00:00:00:01:02\"\ncpus = \"2-3\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let json = |out: std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let plain = json(discover(&["--json"]));
    assert!(plain.get("vport_queue_sets").is_none(), "{plain:#}");
    assert!(plain.get("pci_functions").is_some());

    let d = dir.to_str().unwrap();
    let v = json(discover(&["--json", "--state-dir", d]));
    assert!(
        v.get("pci_functions").is_some(),
        "the inventory is still there"
    );
    let sets = v["vport_queue_sets"].as_array().unwrap();
    assert_eq!(sets.len(), 1, "{sets:?}");
    let s = &sets[0];
    assert_eq!(s["vport"], "vm1");
    assert_eq!(s["function"], VF1);
    let queues: Vec<(String, u64, u64, String)> = s["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["kind"].as_str().unwrap().to_string(),
                q["index"].as_u64().unwrap(),
                q["irq"].as_u64().unwrap(),
                q["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        queues,
        [
            ("tx".to_string(), 0, 32, "eth3-tx-0".to_string()),
            ("rx".to_string(), 0, 33, "eth3-rx-0".to_string())
        ]
    );
    assert_eq!(s["cpus_from"], "function");

    let v = json(discover(&["--json", "--config", cfg.to_str().unwrap()]));
    let s = &v["vport_queue_sets"][0];
    assert_eq!(s["cpus"], serde_json::json!([2, 3]));
    assert_eq!(s["cpus_from"], "vport");

    let text = String::from_utf8(discover(&["--config", cfg.to_str().unwrap()]).stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("vm1"))
        .unwrap_or_else(|| panic!("no vm1 row:\n{text}"));
    for part in [VF1, "tx 0 irq 32", "rx 0 irq 33", "2-3 (its cpus)"] {
        assert!(line.contains(part), "{part:?} not in {line:?}");
    }
    assert!(text.contains("queue sets (queue index and IRQ"), "{text}");

    // A state that cannot be read is bad input: exit 2, nothing printed on stdout.
    let bad = work.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("state.json"), "{").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args(["discover", "--fixture", FIXTURE, "--state-dir"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state.json"), "{err}");
}
