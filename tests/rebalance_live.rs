//! The running daemon (not `--once`) on a copy of the 82576 guest fixture, fed synthetic
//! counters by a writer thread, observed through its own metrics endpoint:
//! - `GET /metrics` carries every documented family (per-queue interrupts, per-CPU load, moves
//!   by reason, actuation errors by errno, external changes, tick duration, vPort state), and
//!   `vportd top --once` renders from it;
//! - the daemon re-learns its topology between ticks when IRQs are re-created (`ethtool -L`)
//!   and when a CPU goes offline.
//!
//! No root needed: everything lives under `--root DIR`. Waits are bounded and only wait for
//! the daemon; figures are counted in the daemon's own ticks, not in wall time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod common;

use vportd::daemon::metrics::{SampleLine, parse_samples, sample_value as value};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/guest-82576-7vfs"
);
const ETH1: &str = "sys/devices/pci0000:00/0000:00:03.0/0000:02:00.0";

/// Synthetic load: interrupts per millisecond by IRQ, all counted on `cpu`.
#[derive(Debug, Clone)]
struct Load {
    cpu: usize,
    per_ms: BTreeMap<u32, u64>,
    /// Busy and softirq shares of `cpu` (percent); the others are 5 % busy.
    busy: u64,
    soft: u64,
}

/// What the writer thread renders: the IRQ lines (irq -> name) and the online CPUs.
#[derive(Debug, Clone)]
struct Shape {
    irqs: BTreeMap<u32, String>,
    online: Vec<usize>,
    load: Load,
}

struct Rig {
    dir: tempfile::TempDir,
    shape: Arc<Mutex<Shape>>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    daemon: Option<Child>,
    addr: SocketAddr,
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().unwrap()
}

/// Replaces a file in one rename, so the daemon never reads it half-written.
fn put(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-rebalance-live");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// /proc/interrupts and /proc/stat after `ms` milliseconds: the base counts of the
/// fixture, plus the load's interrupts on its CPU. Offline CPUs have no column or line.
fn render(root: &Path, base: &BTreeMap<u32, Vec<u64>>, shape: &Shape, ms: u64) {
    let mut out = String::from("       ");
    for c in &shape.online {
        out += &format!("    CPU{c:<5}");
    }
    out += "\n";
    for (irq, name) in &shape.irqs {
        let mut c = base.get(irq).cloned().unwrap_or_default();
        c.resize(4, 0);
        if let Some(n) = shape.load.per_ms.get(irq) {
            c[shape.load.cpu] += n * ms;
        }
        out += &format!("{irq:>4}:");
        for cpu in &shape.online {
            out += &format!(" {:>10}", c[*cpu]);
        }
        out += &format!("  PCI-MSIX-0000:00:00.0 {irq}-edge {name}\n");
    }
    put(&root.join("proc/interrupts"), &out);
    // USER_HZ ticks: 100 a second.
    let ticks = ms / 10;
    let mut stat = String::from("cpu 0 0 0 0 0 0 0 0 0 0\n");
    for &cpu in &shape.online {
        let (busy, soft) = if cpu == shape.load.cpu {
            (shape.load.busy, shape.load.soft)
        } else {
            (5, 0)
        };
        stat += &format!(
            "cpu{cpu} {} 0 0 {} 0 0 {} 0 0 0\n",
            (busy - soft) * ticks / 100,
            (100 - busy) * ticks / 100 + 1000,
            soft * ticks / 100
        );
    }
    put(&root.join("proc/stat"), &stat);
}

impl Rig {
    /// A fixture copy whose counters a thread keeps rewriting from `load`.
    fn new(load: Load, prepare: impl FnOnce(&Path)) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("cp")
            .args(["-a", &format!("{FIXTURE}/."), dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(ok.success());
        prepare(dir.path());
        let text = std::fs::read_to_string(format!("{FIXTURE}/proc/interrupts")).unwrap();
        let lines = vportd::facts::parse::interrupts(&text).unwrap();
        let base: BTreeMap<u32, Vec<u64>> =
            lines.iter().map(|(i, l)| (*i, l.per_cpu.clone())).collect();
        let shape = Arc::new(Mutex::new(Shape {
            irqs: lines.iter().map(|(i, l)| (*i, l.name.clone())).collect(),
            online: vec![0, 1, 2, 3],
            load,
        }));
        render(dir.path(), &base, &shape.lock().unwrap(), 0);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (root, shape, stop) = (dir.path().to_path_buf(), shape.clone(), stop.clone());
            let started = Instant::now();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ms = started.elapsed().as_millis() as u64;
                    render(&root, &base, &shape.lock().unwrap(), ms);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Rig {
            dir,
            shape,
            stop,
            writer: Some(writer),
            daemon: None,
            addr: free_port(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn start(&mut self, extra: &[&str]) {
        let child = Command::new(env!("CARGO_BIN_EXE_vportd"))
            .args([
                "daemon",
                "--period-ms",
                "400",
                "--socket",
                "off",
                "--no-uevents",
            ])
            .arg("--metrics")
            .arg(self.addr.to_string())
            .arg("--root")
            .arg(self.root())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the daemon starts");
        self.daemon = Some(child);
        self.wait("the metrics endpoint to answer with a tick", |s| {
            value(s, "vportd_ticks_total", &[]).is_some_and(|t| t >= 1.0)
        });
    }

    fn metrics(&self) -> Option<String> {
        vportd::host::http::get(self.addr, "/metrics").ok()
    }

    /// Polls the endpoint until `ok` holds (at most 60 s: a loaded CI machine), and
    /// returns that text. A daemon that died fails the test with its stderr.
    fn wait(&mut self, what: &str, ok: impl Fn(&[SampleLine]) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(text) = self.metrics()
                && ok(&parse_samples(&text))
            {
                return text;
            }
            if let Some(status) = self.daemon.as_mut().and_then(|d| d.try_wait().unwrap()) {
                panic!(
                    "the daemon exited ({status}) waiting for {what}:\n{}",
                    self.stop()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "waited 60 s for {what}; last metrics:\n{}\n--- daemon ---\n{}",
                    self.metrics().unwrap_or_default(),
                    self.stop()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ticks(&self) -> u64 {
        self.metrics()
            .and_then(|t| value(&parse_samples(&t), "vportd_ticks_total", &[]))
            .unwrap_or(0.0) as u64
    }

    /// Stops the daemon (SIGTERM: it must exit 0) and returns its stderr.
    fn stop(&mut self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let Some(d) = self.daemon.take() else {
            return String::new();
        };
        let _ = Command::new("kill")
            .args(["-TERM", &d.id().to_string()])
            .status();
        let out = d.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "the daemon failed on SIGTERM: {err}");
        err
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn label_set(samples: &[SampleLine], name: &str, label: &str) -> BTreeSet<String> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter_map(|s| s.labels.get(label).cloned())
        .collect()
}

const CONFIG: &str = r#"state_dir = "STATE"

[[uplink]]
pci = "0000:ff:1f.7"

# The fixture's two PFs, by the MACs their netdevs have under --root: with a config the
# daemon balances only the config's uplinks. MACs rather than PCI addresses, since the
# control plane reconciles against the live host, where these MACs (the rig guest's eth0 and
# eth1) name nothing.
[[uplink]]
mac = "52:54:00:12:00:01"

[[uplink]]
mac = "52:54:00:12:00:02"

[[vport]]
name = "vm-a"
uplink = "0000:ff:1f.7"
mac = "02:00:00:00:01:01"

[[vport]]
name = "vm-b"
uplink = "0000:ff:1f.7"
mac = "02:00:00:00:01:02"
"#;

const STATE: &str = r#"{"version": 1, "vports": {
  "vm-a": {"uplink": "0000:ff:1f.7", "path": {"kind": "vf", "index": 0}, "reason": "",
           "vf_bdf": "0000:01:10.0", "applied": null, "health": "provisioned"},
  "vm-b": {"uplink": "0000:ff:1f.7", "path": {"kind": "vf", "index": 1}, "reason": "",
           "vf_bdf": "0000:01:10.2", "applied": null, "health": "lost"}}}"#;

/// Three hot queues on CPU 1 (90 % in softirq): IRQ 27 is the biggest (it stays, the
/// anchor), 28 is the first to leave but its affinity file is gone (ENOENT, an actuation
/// error), so 36 leaves next. IRQ 37 is then moved by "another writer".
#[test]
fn metrics_endpoint_serves_every_family_and_top_renders_it() {
    let load = Load {
        cpu: 1,
        per_ms: BTreeMap::from([(27, 50), (28, 30), (36, 20)]),
        busy: 95,
        soft: 90,
    };
    let mut rig = Rig::new(load, |root| {
        for irq in [27, 28, 36] {
            let d = root.join(format!("proc/irq/{irq}"));
            std::fs::write(d.join("smp_affinity_list"), "1\n").unwrap();
            std::fs::write(d.join("effective_affinity_list"), "1\n").unwrap();
        }
        std::fs::remove_file(root.join("proc/irq/28/smp_affinity_list")).unwrap();
        // An irqbalance without vportd's policy script, in the root's own /proc.
        std::fs::create_dir_all(root.join("proc/4242")).unwrap();
        std::fs::write(root.join("proc/4242/comm"), "irqbalance\n").unwrap();
        std::fs::write(
            root.join("proc/4242/cmdline"),
            "/usr/sbin/irqbalance\0--foreground\0",
        )
        .unwrap();
    });
    let state_dir = rig.root().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    std::fs::write(state_dir.join("state.json"), STATE).unwrap();
    let config: PathBuf = rig.root().join("host.toml");
    std::fs::write(
        &config,
        CONFIG.replace("STATE", state_dir.to_str().unwrap()),
    )
    .unwrap();
    rig.start(&["--config", config.to_str().unwrap()]);

    rig.wait("a spread move and an ENOENT", |s| {
        value(s, "vportd_moves_total", &[("reason", "spread")]).is_some_and(|v| v >= 1.0)
            && value(s, "vportd_actuation_errors_total", &[("errno", "ENOENT")])
                .is_some_and(|v| v >= 1.0)
    });
    let was = std::fs::read_to_string(rig.root().join("proc/irq/37/smp_affinity_list")).unwrap();
    assert_ne!(was.trim(), "3");
    put(&rig.root().join("proc/irq/37/smp_affinity_list"), "3\n");
    let text = rig.wait("the other writer to be counted", |s| {
        value(s, "vportd_external_changes_total", &[]).is_some_and(|v| v >= 1.0)
    });
    let s = parse_samples(&text);

    // Every documented family, with the values this load must give.
    for family in [
        "vportd_ticks_total",
        "vportd_last_tick_duration_seconds",
        "vportd_build_info",
        "vportd_yielded_irqs",
        "vportd_moves_total",
        "vportd_actuation_errors_total",
        "vportd_external_changes_total",
        "vportd_cpu_busy_ratio",
        "vportd_cpu_irq_ratio",
        "vportd_cpu_load_estimate_ratio",
        "vportd_queue_interrupts_total",
        "vportd_queue_interrupt_rate",
        "vportd_queue_load_ratio",
        "vportd_load_accounting",
        "vportd_vport_info",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no {family}:\n{text}"
        );
        assert!(
            s.iter().any(|l| l.name == family),
            "{family} has no sample:\n{text}"
        );
    }
    for reason in ["spread", "coalesce", "numa"] {
        assert!(value(&s, "vportd_moves_total", &[("reason", reason)]).is_some());
    }
    let busy1 = value(&s, "vportd_cpu_busy_ratio", &[("cpu", "1")]).unwrap();
    assert!((0.8..=1.0).contains(&busy1), "CPU 1 busy {busy1}:\n{text}");
    assert!(value(&s, "vportd_cpu_irq_ratio", &[("cpu", "1")]).unwrap() > 0.5);
    let rate27 = value(&s, "vportd_queue_interrupt_rate", &[("irq", "27")]).unwrap();
    assert!(
        (35_000.0..=65_000.0).contains(&rate27),
        "IRQ 27 at {rate27}/s, fed 50,000/s:\n{text}"
    );
    let q27 = s
        .iter()
        .find(|l| l.name == "vportd_queue_interrupts_total" && l.labels["irq"] == "27")
        .unwrap();
    assert_eq!(q27.labels["name"], "eth0-TxRx-0");
    assert_eq!(q27.labels["nic"], "0000:01:00.0");
    assert_eq!(q27.labels["cpu"], "1");
    assert!(q27.value > 1000.0);
    assert!(value(&s, "vportd_queue_load_ratio", &[("irq", "27")]).unwrap() > 0.3);
    assert_eq!(
        value(&s, "vportd_load_accounting", &[("mode", "irq_time")]),
        Some(1.0)
    );
    assert!(value(&s, "vportd_last_tick_duration_seconds", &[]).unwrap() > 0.0);
    // The tick histogram: every tick in the +Inf bucket, its count the ticks, a sum.
    assert!(
        text.contains("# TYPE vportd_tick_duration_seconds histogram"),
        "{text}"
    );
    let count = value(&s, "vportd_tick_duration_seconds_count", &[]).unwrap();
    assert!(count >= 2.0, "{text}");
    assert_eq!(
        value(&s, "vportd_tick_duration_seconds_bucket", &[("le", "+Inf")]),
        Some(count),
        "{text}"
    );
    assert!(value(&s, "vportd_tick_duration_seconds_sum", &[]).unwrap() > 0.0);
    assert!(value(&s, "vportd_ticks_total", &[]).unwrap() >= 2.0);
    // The control plane reconciles the config against the live host (it does not follow
    // --root), so the uplink is one no host has, and vm-a may be found lost by then.
    for vport in ["vm-a", "vm-b"] {
        let info = s
            .iter()
            .find(|l| l.name == "vportd_vport_info" && l.labels["vport"] == vport)
            .unwrap_or_else(|| panic!("no vportd_vport_info for {vport}:\n{text}"));
        assert_eq!(info.labels["uplink"], "0000:ff:1f.7", "{text}");
        assert_eq!(info.labels["path"], "vf", "{text}");
        assert!(
            ["provisioned", "lost"].contains(&info.labels["health"].as_str()),
            "{text}"
        );
        assert_eq!(info.value, 1.0);
    }
    assert_eq!(
        value(
            &s,
            "vportd_vport_info",
            &[("vport", "vm-b"), ("health", "lost")]
        ),
        Some(1.0),
        "{text}"
    );
    // The irqbalance of the root's /proc, and the IRQ yielded to the other writer.
    assert_eq!(
        value(&s, "vportd_irqbalance_running", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&s, "vportd_irqbalance_without_policy", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value(&s, "vportd_yielded_irqs", &[]), Some(1.0), "{text}");
    assert_eq!(
        value(
            &s,
            "vportd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{text}"
    );
    // Prometheus's own linter passes the daemon's real output.
    if let Some(problems) = common::promtool_check(&text) {
        panic!("{problems}\n{text}");
    }
    // What the metrics say was done, was done: IRQ 36 left CPU 1; 37 kept the other
    // writer's CPU.
    let to = std::fs::read_to_string(rig.root().join("proc/irq/36/smp_affinity_list")).unwrap();
    assert_ne!(to.trim(), "1");
    let kept = std::fs::read_to_string(rig.root().join("proc/irq/37/smp_affinity_list")).unwrap();
    assert_eq!(kept.trim(), "3");

    // `vportd top --once` renders the same endpoint.
    let top = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args(["top", "--once", "--metrics", &rig.addr.to_string()])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    assert!(screen.starts_with("vportd top   ticks "), "{screen}");
    assert!(screen.contains("spread="), "{screen}");
    assert!(screen.contains("ENOENT="), "{screen}");
    assert!(screen.contains("external changes 1"), "{screen}");
    let cpu1 = screen
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("no CPU 1 row:\n{screen}"));
    assert!(cpu1.contains("####"), "{screen}");
    // The hottest queue first.
    let first_queue = screen
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("IRQ"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        first_queue.trim_start().starts_with("27 ") && first_queue.contains("eth0-TxRx-0"),
        "{screen}"
    );

    let log = rig.stop();
    assert!(
        log.contains("IRQ 37 (eth1-rx-1) was moved by another writer from CPUs 0-3 to 3"),
        "{log}"
    );
    assert!(
        log.contains("vportd: irqbalance is running (pid 4242) without vportd's policy script"),
        "{log}"
    );
    assert!(log.contains("IRQ 28"), "{log}");
}

/// `ethtool -L` between two ticks (eth1's 8 queue IRQs 36-43 replaced by 2 new ones, 70
/// and 71), then CPU 3 going offline: the daemon re-learns NICs and CPUs in the next
/// period, never moves anything to the offline CPU, and keeps running.
#[test]
fn daemon_relearns_irqs_and_cpus_between_ticks() {
    let load = Load {
        cpu: 1,
        per_ms: BTreeMap::from([(27, 50), (28, 30)]),
        busy: 95,
        soft: 90,
    };
    let mut rig = Rig::new(load, |root| {
        for irq in [27, 28] {
            let d = root.join(format!("proc/irq/{irq}"));
            std::fs::write(d.join("smp_affinity_list"), "1\n").unwrap();
            std::fs::write(d.join("effective_affinity_list"), "1\n").unwrap();
        }
    });
    rig.start(&[]);
    let queues = |s: &[SampleLine]| label_set(s, "vportd_queue_interrupts_total", "irq");
    let text = rig.wait("eth1's queues", |s| queues(s).contains("36"));
    let before = queues(&parse_samples(&text));
    for irq in 36..=43 {
        assert!(before.contains(&irq.to_string()), "{before:?}");
    }

    // ethtool -L eth1 combined 2: the driver frees its vectors and requests new ones.
    let msi = rig.root().join(ETH1).join("msi_irqs");
    let t0 = rig.ticks();
    {
        let mut shape = rig.shape.lock().unwrap();
        for irq in 36..=43 {
            shape.irqs.remove(&irq);
            std::fs::remove_file(msi.join(irq.to_string())).unwrap();
            std::fs::remove_dir_all(rig.root().join(format!("proc/irq/{irq}"))).unwrap();
        }
        for (irq, q) in [(70u32, 0), (71, 1)] {
            shape.irqs.insert(irq, format!("eth1-TxRx-{q}"));
            std::fs::write(msi.join(irq.to_string()), "msix\n").unwrap();
            let d = rig.root().join(format!("proc/irq/{irq}"));
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("smp_affinity_list"), "0-3\n").unwrap();
            std::fs::write(d.join("effective_affinity_list"), format!("{}\n", 2 + q)).unwrap();
        }
        // Counts of the new vectors start at zero.
        shape.load.per_ms.insert(70, 1);
    }
    let text = rig.wait("the re-created IRQs", |s| {
        let q = queues(s);
        q.contains("70") && q.contains("71") && !q.contains("36")
    });
    let t1 = value(&parse_samples(&text), "vportd_ticks_total", &[]).unwrap() as u64;
    let after = queues(&parse_samples(&text));
    assert!(
        (36..=43).all(|i| !after.contains(&i.to_string())),
        "{after:?}"
    );
    let s = parse_samples(&text);
    let q70 = s
        .iter()
        .find(|l| l.name == "vportd_queue_interrupts_total" && l.labels["irq"] == "70")
        .unwrap();
    assert_eq!(q70.labels["name"], "eth1-TxRx-0");
    assert_eq!(q70.labels["nic"], "0000:02:00.0");
    assert!(
        t1 - t0 <= 2,
        "re-learned the IRQs {} ticks after the change",
        t1 - t0
    );

    // CPU 3 goes offline: its column and /proc/stat line go, and the kernel moves
    // IRQ 71 (effective on 3) to CPU 0.
    let t0 = rig.ticks();
    {
        let mut shape = rig.shape.lock().unwrap();
        put(&rig.root().join("sys/devices/system/cpu/online"), "0-2\n");
        put(
            &rig.root().join("proc/irq/71/effective_affinity_list"),
            "0\n",
        );
        shape.online = vec![0, 1, 2];
    }
    let text = rig.wait("CPU 3 gone", |s| {
        let cpus = label_set(s, "vportd_cpu_busy_ratio", "cpu");
        !cpus.is_empty() && !cpus.contains("3")
    });
    let t1 = value(&parse_samples(&text), "vportd_ticks_total", &[]).unwrap() as u64;
    assert!(
        t1 - t0 <= 2,
        "re-learned the CPUs {} ticks after the change",
        t1 - t0
    );
    // A few more periods under load: still alive, nothing sent to CPU 3.
    let t = t1;
    rig.wait("three more ticks", |s| {
        value(s, "vportd_ticks_total", &[]).is_some_and(|v| v as u64 >= t + 3)
    });
    let log = rig.stop();
    assert!(
        !log.contains("to CPU 3:"),
        "a move to the offline CPU:\n{log}"
    );
    assert!(!log.contains("skipped"), "{log}");
}
