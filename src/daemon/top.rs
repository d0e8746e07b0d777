//! `vportd top`: a live view of CPUs, queues and moves, read from the daemon's
//! metrics endpoint (so it needs no privileges and shows what the daemon sees).
//! On a terminal: the alternate screen, sized to the terminal (redrawn when it is
//! resized), and `q` quits at once; the terminal is given back as it was on every way out
//! (q, Ctrl-C, SIGTERM, SIGHUP, a failed fetch, a panic). When stdout is no terminal: a
//! plain-text screen per refresh, without escape codes, for logs and pipes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::daemon::metrics::{SampleLine, parse_samples};

/// Renders one screen from the metrics text, with the 24 busiest queues.
pub fn screen(text: &str) -> String {
    screen_with(text, 24)
}

/// Renders one screen from the metrics text, with at most `queues` queues.
fn screen_with(text: &str, queues: usize) -> String {
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
    queue_rows(&mut out, &samples, queues);
    out
}

/// A screen cut to a terminal of `rows` x `cols`: the first `rows - 1` lines (the last
/// row is the key help), each at most `cols` characters.
pub fn fit(screen: &str, rows: u16, cols: u16) -> String {
    let mut out = String::new();
    for line in screen.lines().take(usize::from(rows.saturating_sub(1))) {
        out.extend(line.chars().take(usize::from(cols)));
        // Output processing stays on in key mode: the terminal makes this \r\n.
        out.push('\n');
    }
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

/// The `limit` busiest queues: IRQ, name, NIC, CPU, interrupts per second and load.
fn queue_rows(out: &mut String, samples: &[SampleLine], limit: usize) {
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
    for s in queues.iter().take(limit) {
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

/// The alternate screen on, cursor hidden; and the way back.
const ENTER: &str = "\x1b[?1049h\x1b[?25l";
const LEAVE: &str = "\x1b[?25h\x1b[?1049l";
/// Cursor home, then the screen below it cleared after drawing (`CLEAR_BELOW`).
const HOME: &str = "\x1b[H";
const CLEAR_BELOW: &str = "\x1b[J";

/// `vportd top` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TopArgs {
    /// The daemon's metrics endpoint.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9477")]
    pub metrics: std::net::SocketAddr,
    /// Redraw interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=3_600_000))]
    pub interval_ms: u64,
    /// Print one screen as plain text and exit.
    #[arg(long)]
    pub once: bool,
}

/// Runs `vportd top`: one screen with `--once`, plain screens when stdout is no
/// terminal, else the full-screen view until `q`, Ctrl-C, SIGTERM or SIGHUP.
pub fn main(a: TopArgs) -> Result<(), (u8, String)> {
    use crate::host::terminal;
    let fetch = || crate::host::http::get(a.metrics, "/metrics").map_err(|e| (1u8, e.to_string()));
    if a.once {
        print!("{}", screen(&fetch()?));
        return Ok(());
    }
    terminal::catch_signals().map_err(|e| (1u8, format!("cannot catch signals: {e}")))?;
    if !terminal::is_tty(std::io::stdout()) {
        return plain(&a, &fetch);
    }
    full_screen(&a, &fetch)
}

type Fetch<'a> = &'a dyn Fn() -> Result<String, (u8, String)>;

/// A plain screen per refresh, a blank line between them, until a quitting signal or
/// until the reader goes away.
fn plain(a: &TopArgs, fetch: Fetch) -> Result<(), (u8, String)> {
    use std::io::Write;
    loop {
        let text = fetch()?;
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{}", screen(&text))
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(());
        }
        drop(out);
        if wait(a.interval_ms, None) {
            return Ok(());
        }
    }
}

/// Waits `ms`, in slices so that a signal is seen at once; with `keys`, stdin's keys are
/// read meanwhile. True when it is time to quit (a signal, or `q`, `Q`, Ctrl-C as a key);
/// it returns early, false, when the terminal was resized.
fn wait(ms: u64, keys: Option<&mut bool>) -> bool {
    use crate::host::terminal;
    let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    let mut keys = keys;
    loop {
        if terminal::quit_asked() {
            return true;
        }
        if terminal::resized() {
            return false;
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let slice = left.min(std::time::Duration::from_millis(100)).as_millis() as u16;
        match keys.as_deref_mut() {
            // `open`: stdin still gives keys.
            Some(open) if *open => match terminal::keys_within(slice) {
                Some(k) if k.iter().any(|b| matches!(b, b'q' | b'Q' | 3)) => return true,
                Some(_) => {}
                None => *open = false,
            },
            _ => std::thread::sleep(std::time::Duration::from_millis(u64::from(slice))),
        }
    }
}

/// The alternate screen, redrawn every interval and on resize, keys read one at a time.
fn full_screen(a: &TopArgs, fetch: Fetch) -> Result<(), (u8, String)> {
    use crate::host::terminal;
    use std::io::Write;
    // Key mode when stdin is the terminal; else only signals quit.
    let keys = terminal::is_tty(std::io::stdin())
        .then(terminal::KeyMode::enter)
        .transpose()
        .map_err(|e| (1u8, format!("cannot set the terminal's mode: {e}")))?;
    let _screen = AltScreen::enter();
    let mut open = keys.is_some();
    loop {
        let text = fetch()?;
        let (rows, cols) = terminal::size(std::io::stdout()).unwrap_or((24, 80));
        let body = fit(&screen_with(&text, usize::from(rows)), rows, cols);
        let help: String = "q quits".chars().take(usize::from(cols)).collect();
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{HOME}{body}{help}{CLEAR_BELOW}");
        let _ = out.flush();
        drop(out);
        if wait(a.interval_ms, keys.is_some().then_some(&mut open)) {
            return Ok(());
        }
    }
}

/// The alternate screen, left when dropped (after a panic too).
struct AltScreen;

impl AltScreen {
    fn enter() -> Self {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{ENTER}");
        let _ = out.flush();
        AltScreen
    }
}

impl Drop for AltScreen {
    fn drop(&mut self) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{LEAVE}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn a_screen_is_cut_to_the_terminal_leaving_the_last_row_for_help() {
        let screen = "0123456789\nabc\nline three\nline four\n";
        assert_eq!(fit(screen, 3, 4), "0123\nabc\n");
        assert_eq!(fit(screen, 1, 80), "");
        assert_eq!(fit("é€ü\n", 2, 2), "é€\n", "cut by characters, not bytes");
    }
}
