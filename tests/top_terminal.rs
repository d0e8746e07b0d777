//! `vportd top` on and off a terminal, against a stand-in metrics endpoint (40 queues, 4
//! CPUs):
//! - stdout a pipe: plain screens, one per refresh, without one escape code; `--once` too;
//! - a pseudo-terminal (openpty) of 12 x 50: the alternate screen, key-at-a-time mode while
//!   it runs, the screen cut to the terminal, redrawn larger at once on a resize (SIGWINCH),
//!   `q` quitting without Enter; and the terminal's settings given back as they were after
//!   q, after SIGTERM, and after a fetch that fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};
use nix::sys::signal::{Signal, kill};
use nix::sys::termios::{LocalFlags, tcgetattr};
use nix::unistd::Pid;

const ENTER: &str = "\x1b[?1049h";
const LEAVE: &str = "\x1b[?1049l";

/// The metrics text: 4 CPUs, 40 queues with distinct loads.
fn metrics_text() -> String {
    let mut t = String::from("vportd_ticks_total 7\nvportd_last_tick_duration_seconds 0.002\n");
    for cpu in 0..4 {
        t += &format!("vportd_cpu_busy_ratio{{cpu=\"{cpu}\"}} 0.{cpu}5\n");
        t += &format!("vportd_cpu_irq_ratio{{cpu=\"{cpu}\"}} 0.0{cpu}\n");
    }
    for q in 0..40 {
        let labels = format!(
            "irq=\"{}\",name=\"eth0-TxRx-{q}\",nic=\"0000:01:00.0\",vport=\"\",cpu=\"{}\"",
            100 + q,
            q % 4
        );
        t += &format!("vportd_queue_load_ratio{{{labels}}} 0.{:02}\n", 99 - q);
        t += &format!("vportd_queue_interrupt_rate{{{labels}}} {}\n", 1000 * q);
    }
    t
}

/// Serves `metrics_text` to every request, for the life of the test process.
fn endpoint() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            // The whole request first: closing with some of it unread would reset the
            // connection under the client's writes.
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let body = metrics_text();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// An address nothing listens on.
fn dead_endpoint() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn top(addr: SocketAddr, interval_ms: u64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vportd"));
    c.args([
        "top",
        "--metrics",
        &addr.to_string(),
        "--interval-ms",
        &interval_ms.to_string(),
    ]);
    c
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vportd top did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn off_a_terminal_top_prints_plain_screens() {
    let addr = endpoint();
    let once = top(addr, 1000).arg("--once").output().unwrap();
    let text = String::from_utf8_lossy(&once.stdout);
    assert!(once.status.success(), "{text}");
    assert!(!text.contains('\x1b'), "escape codes in --once: {text:?}");
    assert!(text.contains("eth0-TxRx-0"), "{text}");

    let mut child = top(addr, 100).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while String::from_utf8_lossy(&got)
        .matches("vportd top   ticks")
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "no three screens: {got:?}");
        let mut buf = [0u8; 4096];
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "top ended early");
        got.extend_from_slice(&buf[..n]);
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let st = wait_exit(&mut child, Duration::from_secs(5));
    assert!(st.success(), "SIGTERM is a clean way out: {st}");
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains('\x1b'), "escape codes on a pipe: {text:?}");
    let first = text.split("vportd top   ticks").nth(1).unwrap();
    let queues = first.lines().filter(|l| l.contains("eth0-TxRx-")).count();
    assert_eq!(queues, 24, "the 24 busiest queues:\n{first}");
}

/// A pseudo-terminal of `rows` x `cols`, its master read into a buffer by a thread.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn new(rows: u16, cols: u16) -> Pty {
        let ws = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let p = openpty(Some(&ws), None).expect("openpty");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = std::fs::File::from(p.master.try_clone().unwrap());
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master: p.master,
            slave: p.slave,
            seen,
        }
    }

    fn spawn(&self, mut cmd: Command) -> Child {
        let io = || Stdio::from(self.slave.try_clone().unwrap());
        cmd.stdin(io()).stdout(io()).stderr(io()).spawn().unwrap()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits (at most 20 s) until the output holds `what` `n` times.
    fn wait_for(&self, what: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.text();
            if t.matches(what).count() >= n {
                return t;
            }
            assert!(Instant::now() < deadline, "never {n} x {what:?} in {t:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn line_mode(&self) -> bool {
        let t = tcgetattr(self.slave.as_fd()).unwrap();
        t.local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    }

    fn resize(&self, rows: u16, cols: u16) {
        use std::os::fd::AsRawFd;
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from `ws`, alive for the call; the master
        // descriptor is open.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0);
    }
}

/// The lines drawn by the last redraw (after the last cursor home), without escapes.
fn last_screen(text: &str) -> Vec<String> {
    let last = text.rsplit("\x1b[H").next().unwrap();
    let last = last.split("\x1b[J").next().unwrap();
    last.split("\r\n").map(str::to_string).collect()
}

#[test]
fn on_a_terminal_top_fits_the_screen_quits_on_q_and_restores_the_terminal() {
    let addr = endpoint();
    let pty = Pty::new(12, 50);
    assert!(pty.line_mode(), "a fresh pty is in line mode");
    let mut child = pty.spawn(top(addr, 5000));
    let t = pty.wait_for("q quits", 1);
    assert!(t.contains(ENTER), "the alternate screen: {t:?}");
    assert!(!pty.line_mode(), "key-at-a-time while top runs");
    let screen = last_screen(&t);
    assert!(
        screen.len() <= 12,
        "{} lines on 12 rows: {screen:#?}",
        screen.len()
    );
    for l in &screen {
        assert!(l.chars().count() <= 50, "{l:?} wider than 50 columns");
    }
    let small = screen.iter().filter(|l| l.contains("eth0-TxRx-")).count();
    assert!(small > 0, "{screen:#?}");

    // Larger, and said by SIGWINCH: redrawn at once (the interval is 5 s).
    pty.resize(30, 100);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGWINCH).unwrap();
    let asked = Instant::now();
    let t = pty.wait_for("q quits", 2);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "redrawn on the resize"
    );
    let screen = last_screen(&t);
    let large = screen.iter().filter(|l| l.contains("eth0-TxRx-")).count();
    assert!(
        screen.len() <= 30 && large > small,
        "{small} then {large}: {screen:#?}"
    );
    assert!(screen.iter().any(|l| l.chars().count() > 50), "{screen:#?}");

    // q alone, no Enter.
    nix::unistd::write(pty.master.as_fd(), b"q").unwrap();
    let st = wait_exit(&mut child, Duration::from_secs(3));
    assert!(st.success(), "{st}: {}", pty.text());
    assert!(pty.line_mode(), "the terminal's settings are back");
    std::thread::sleep(Duration::from_millis(100));
    assert!(pty.text().contains(LEAVE), "the alternate screen is left");
}

#[test]
fn sigterm_and_a_failed_fetch_give_the_terminal_back() {
    let addr = endpoint();
    let pty = Pty::new(24, 80);
    let mut child = pty.spawn(top(addr, 5000));
    pty.wait_for("q quits", 1);
    assert!(!pty.line_mode());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let st = wait_exit(&mut child, Duration::from_secs(3));
    assert!(st.success(), "{st}");
    assert!(pty.line_mode(), "restored after SIGTERM");

    let pty = Pty::new(24, 80);
    let mut child = pty.spawn(top(dead_endpoint(), 5000));
    let st = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(st.code(), Some(1), "{}", pty.text());
    assert!(pty.line_mode(), "restored after a failed fetch");
    std::thread::sleep(Duration::from_millis(100));
    let t = pty.text();
    assert!(
        t.contains(ENTER) && t.contains(LEAVE) && t.contains("vportd: "),
        "{t:?}"
    );
}
