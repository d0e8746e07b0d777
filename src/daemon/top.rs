//! `vportd top`: a live view of CPUs, queues and moves, read from the daemon's
//! metrics endpoint (so it needs no privileges and shows what the daemon sees).
//! Plain ANSI redraw; `q` then Enter, or Ctrl-C, quits.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::daemon::metrics::{SampleLine, parse_samples};

/// Renders one screen from the metrics text.
pub fn screen(text: &str) -> String {
    let samples = parse_samples(text);
    let get = |name: &'static str| samples.iter().filter(move |s| s.name == name);
    let mut out = String::new();
    let ticks = get("vportd_ticks_total")
        .next()
        .map(|s| s.value)
        .unwrap_or(0.0);
    let tick = get("vportd_last_tick_duration_seconds")
        .next()
        .map(|s| s.value)
        .unwrap_or(0.0);
    let ext = get("vportd_external_changes_total")
        .next()
        .map(|s| s.value)
        .unwrap_or(0.0);
    let moves: Vec<String> = get("vportd_moves_total")
        .map(|s| {
            format!(
                "{}={}",
                s.labels.get("reason").cloned().unwrap_or_default(),
                s.value
            )
        })
        .collect();
    let errors: Vec<String> = get("vportd_actuation_errors_total")
        .map(|s| {
            format!(
                "{}={}",
                s.labels.get("errno").cloned().unwrap_or_default(),
                s.value
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "vportd top   ticks {ticks}   last tick {:.2} ms   moves {}   errors {}   external changes {ext}",
        tick * 1000.0,
        moves.join(" "),
        if errors.is_empty() {
            "-".into()
        } else {
            errors.join(" ")
        },
    );
    cpu_rows(&mut out, &samples);
    queue_rows(&mut out, &samples);
    out
}

/// The series `name` of `samples`.
fn series<'a>(samples: &'a [SampleLine], name: &'a str) -> impl Iterator<Item = &'a SampleLine> {
    samples.iter().filter(move |s| s.name == name)
}

/// One row per CPU: busy and interrupt share, and a bar of the busy share.
fn cpu_rows(out: &mut String, samples: &[SampleLine]) {
    let get = |name| series(samples, name);
    let _ = writeln!(out, "\nCPU   busy   irq   bar");
    let irq: BTreeMap<String, f64> = get("vportd_cpu_irq_ratio")
        .map(|s| (s.labels.get("cpu").cloned().unwrap_or_default(), s.value))
        .collect();
    let mut cpus: Vec<&SampleLine> = get("vportd_cpu_busy_ratio").collect();
    cpus.sort_by_key(|s| s.labels.get("cpu").and_then(|c| c.parse::<u32>().ok()));
    for s in cpus {
        let cpu = s.labels.get("cpu").cloned().unwrap_or_default();
        let bar = "#".repeat((s.value * 20.0).round().clamp(0.0, 20.0) as usize);
        let _ = writeln!(
            out,
            "{cpu:>3}  {:>4.0}%  {:>3.0}%  {bar}",
            s.value * 100.0,
            irq.get(&cpu).copied().unwrap_or(0.0) * 100.0
        );
    }
}

/// The 24 busiest queues: IRQ, name, NIC, CPU, interrupts per second and load.
fn queue_rows(out: &mut String, samples: &[SampleLine]) {
    let get = |name| series(samples, name);
    let _ = writeln!(
        out,
        "\n IRQ  name                 nic            cpu   intr/s    load"
    );
    let rate: BTreeMap<String, f64> = get("vportd_queue_interrupt_rate")
        .map(|s| (s.labels.get("irq").cloned().unwrap_or_default(), s.value))
        .collect();
    let mut queues: Vec<&SampleLine> = get("vportd_queue_load_ratio").collect();
    queues.sort_by(|a, b| b.value.total_cmp(&a.value));
    for s in queues.iter().take(24) {
        let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:>4}  {:<20} {:<14} {:>3} {:>8.0} {:>6.1}%",
            l("irq"),
            l("name"),
            l("nic"),
            l("cpu"),
            rate.get(&l("irq")).copied().unwrap_or(0.0),
            s.value * 100.0
        );
    }
}

/// Clears the terminal and homes the cursor.
pub const CLEAR: &str = "\x1b[2J\x1b[H";

/// `vportd top` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TopArgs {
    /// The daemon's metrics endpoint.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9477")]
    pub metrics: std::net::SocketAddr,
    /// Redraw interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Print one screen without clearing the terminal, and exit.
    #[arg(long)]
    pub once: bool,
}

/// Runs `vportd top` until `q` (then Enter) or Ctrl-C.
pub fn main(a: TopArgs) -> Result<(), (u8, String)> {
    use std::io::Write;
    let fetch = || crate::host::http::get(a.metrics, "/metrics").map_err(|e| (1u8, e.to_string()));
    if a.once {
        print!("{}", screen(&fetch()?));
        return Ok(());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            if line.trim() == "q" {
                let _ = tx.send(());
                return;
            }
            line.clear();
        }
    });
    loop {
        let text = fetch()?;
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{CLEAR}{}\n(q + Enter to quit)\n", screen(&text));
        let _ = out.flush();
        drop(out);
        if rx
            .recv_timeout(std::time::Duration::from_millis(a.interval_ms))
            .is_ok()
        {
            return Ok(());
        }
    }
}
