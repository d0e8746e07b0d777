//! Running tests/vm/scenarios/irq_compare.sh: Debian's irqbalance put into the guest from the
//! rig's cache (tests/vm/setup unpacks it there), and the figures of each run read back.
//! Shared by tests/vm/irq_compare.rs and benches/irq_compare.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::irq_stats::{self, Figures, RunInput};
use crate::rig::{Outcome, Rig, RigEnv};

/// The guest script.
pub const SCRIPT: &str = include_str!("scenarios/irq_compare.sh");

/// `rig` with /usr/sbin/irqbalance and the shared libraries it loads, as `ldd` resolves them
/// with the unpacked packages' library directories first.
pub fn with_irqbalance(mut rig: Rig, env: &RigEnv) -> Rig {
    let root = env.cache.join("irqbalance/root");
    let binary = root.join("usr/sbin/irqbalance");
    assert!(
        binary.exists(),
        "{} is missing: run tests/vm/setup, which unpacks Debian's irqbalance there",
        binary.display()
    );
    let libs = format!(
        "{}:{}",
        root.join("usr/lib/x86_64-linux-gnu").display(),
        root.join("lib/x86_64-linux-gnu").display()
    );
    let out = Command::new("ldd")
        .arg(&binary)
        .env("LD_LIBRARY_PATH", &libs)
        .output()
        .expect("ldd runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("not found"),
        "ldd {}: {text}",
        binary.display()
    );
    let mut files: Vec<(String, PathBuf)> = vec![("/usr/sbin/irqbalance".into(), binary.clone())];
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(host) = path.filter(|p| p.starts_with('/')).map(PathBuf::from) else {
            continue;
        };
        let guest = host
            .strip_prefix(&root)
            .map(|p| Path::new("/").join(p))
            .unwrap_or_else(|_| host.clone());
        files.push((guest.display().to_string(), host));
    }
    for (guest, host) in files {
        let bytes =
            std::fs::read(&host).unwrap_or_else(|e| panic!("reading {}: {e}", host.display()));
        rig = rig.file(&guest, bytes, 0o755);
    }
    rig
}

/// The script with its variables set in front.
pub fn script(vars: &[(&str, &str)]) -> String {
    let mut s: String = vars.iter().map(|(k, v)| format!("{k}=\"{v}\"\n")).collect();
    s.push_str(SCRIPT);
    s
}

/// The figures of every run the script made, in order.
pub fn figures(o: &Outcome) -> Vec<Figures> {
    let runs: usize = o.text("runs").trim().parse().expect("a count of runs");
    (1..=runs)
        .map(|n| {
            let who = o.text(&format!("run.{n}")).trim().to_string();
            let samples = irq_stats::parse_samples(&o.text(&format!("samples.{n}")));
            let marks = irq_stats::marks(&o.text(&format!("marks.{n}")));
            let iperf: serde_json::Value =
                serde_json::from_str(&o.text(&format!("iperf3.{n}.json"))).expect("iperf3 JSON");
            let mark = |m: &str| {
                *marks
                    .get(m)
                    .unwrap_or_else(|| panic!("run {n}: no mark {m}"))
            };
            irq_stats::figures(&RunInput {
                who: &who,
                samples: &samples,
                hot_start: mark("hot_start"),
                hot_stop: mark("hot_stop"),
                bytes: iperf["end"]["sum_received"]["bytes"]
                    .as_u64()
                    .unwrap_or_default(),
                retransmits: iperf["end"]["sum_sent"]["retransmits"]
                    .as_u64()
                    .unwrap_or_default(),
                link_before: &o.text(&format!("link.{n}.before")),
                link_after: &o.text(&format!("link.{n}.after")),
                softnet_before: &o.text(&format!("softnet.{n}.before")),
                softnet_after: &o.text(&format!("softnet.{n}.after")),
            })
        })
        .collect()
}

/// This machine's load average, as /proc/loadavg has it (1, 5 and 15 minutes).
pub fn host_loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
