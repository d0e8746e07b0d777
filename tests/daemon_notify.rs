//! `vportd daemon` speaks sd_notify(3) to a listener made here, as systemd would be for a
//! `Type=notify` unit: a unix datagram socket named by NOTIFY_SOCKET, WATCHDOG_USEC set.
//! READY=1 comes once the control socket is bound and the first reconcile is done, with a
//! STATUS= line; WATCHDOG=1 keeps coming; SIGHUP brings RELOADING=1 with MONOTONIC_USEC, a
//! reconcile of the re-read config, and READY=1; a config that no longer parses is logged
//! naming file:line and the key, and the daemon keeps running on the one it has.
//!
//! The daemon runs against this host with a config of no uplinks (its reconcile reads the
//! host and changes nothing) and a period of ten minutes (its rebalancer never ticks here).
//! Root: the reconcile reads the live host; without it the test fails loudly.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next datagram within `within`, as text.
fn next(sock: &UnixDatagram, within: Duration) -> Option<String> {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Datagrams until one has `key`, the watchdog's pings counted aside.
fn until(sock: &UnixDatagram, key: &str, pings: &mut usize) -> String {
    let start = Instant::now();
    loop {
        let left = Duration::from_secs(60).saturating_sub(start.elapsed());
        let m = next(sock, left).unwrap_or_else(|| panic!("no {key} within 60 s"));
        if m == "WATCHDOG=1" {
            *pings += 1;
        }
        if m.lines().any(|l| l.starts_with(key)) {
            return m;
        }
    }
}

fn config(state: &Path, extra: &str) -> String {
    format!("state_dir = \"{}\"\n{extra}", state.display())
}

#[test]
fn ready_status_watchdog_and_reload_reach_the_service_manager() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the daemon's reconcile reads the live host: run as root"
    );
    let t = tempfile::tempdir().unwrap();
    let notify_path = t.path().join("notify");
    let listener = UnixDatagram::bind(&notify_path).unwrap();
    let cfg = t.path().join("host.toml");
    std::fs::write(&cfg, config(&t.path().join("state"), "")).unwrap();
    let socket = t.path().join("run/vportd.sock");
    let log = t.path().join("daemon.log");
    let mut d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_vportd"))
            .args(["daemon", "--metrics", "off", "--no-uevents"])
            .args(["--period-ms", "600000"])
            .arg("--config")
            .arg(&cfg)
            .arg("--socket")
            .arg(&socket)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "400000")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut pings = 0;
    let ready = until(&listener, "READY=1", &mut pings);
    assert!(
        socket.exists(),
        "READY=1 before the control socket was bound"
    );
    assert!(
        ready.contains("STATUS=serving 0 vPorts on 0 uplinks, last reconcile ok"),
        "{ready}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("reconcile after a full re-read"), "{said}");

    // The watchdog: pings at half of WATCHDOG_USEC, from the loop.
    let start = Instant::now();
    let mut seen = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        if next(&listener, Duration::from_millis(500)).as_deref() == Some("WATCHDOG=1") {
            seen += 1;
        }
    }
    assert!(
        seen >= 4,
        "{seen} WATCHDOG=1 in 1.5 s at WATCHDOG_USEC=400000"
    );

    // A changed config: RELOADING=1 with the monotonic clock, the reconcile, READY=1.
    let state2 = t.path().join("state2");
    std::fs::write(&cfg, config(&state2, "[daemon]\nlog_level = \"debug\"\n")).unwrap();
    let pid = nix::unistd::Pid::from_raw(d.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let reloading = until(&listener, "RELOADING=1", &mut pings);
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    let ready = until(&listener, "READY=1", &mut pings);
    assert!(ready.contains("last reconcile ok"), "{ready}");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("reload: ") && said.contains("read again"),
        "{said}"
    );
    assert_eq!(
        said.matches("reconcile after a full re-read").count(),
        2,
        "the reload reconciled once: {said}"
    );
    assert!(
        state2.join("apply.lock").exists(),
        "the reconcile used the reloaded config's state_dir: {:?}",
        std::fs::read_dir(&state2).map(|d| d.count())
    );

    // A config that does not parse: said with file:line and the key, the old one kept.
    std::fs::write(&cfg, config(&state2, "[daemon]\nperod_ms = 5\n")).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    until(&listener, "RELOADING=1", &mut pings);
    let ready = until(&listener, "READY=1", &mut pings);
    assert!(ready.contains("last reconcile ok"), "{ready}");
    let said = std::fs::read_to_string(&log).unwrap();
    let line = said
        .lines()
        .find(|l| l.contains("is not used, the daemon keeps the config it has"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        line.contains("host.toml:3:1: [daemon]: unknown key perod_ms"),
        "{line}"
    );
    assert!(said.contains("did you mean period_ms?"), "{said}");
    assert!(
        d.0.try_wait().unwrap().is_none(),
        "the daemon stopped: {said}"
    );

    // SIGTERM: STOPPING=1 and a clean exit.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    until(&listener, "STOPPING=1", &mut pings);
    let status = d.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// Under systemd, stderr is the journal's stream (JOURNAL_STREAM names its device and
/// inode): every line carries its `<N>` priority, so `journalctl -p warning` finds the
/// warnings. Elsewhere the lines are as they always were.
#[test]
fn lines_carry_their_priority_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("host.toml");
    std::fs::write(&cfg, "[daemon]\nperiod = 5\n").unwrap();
    let run = |journal: bool| {
        let path = t.path().join(format!("err-{journal}"));
        let file = std::fs::File::create(&path).unwrap();
        let meta = file.metadata().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vportd"));
        cmd.args(["daemon", "--metrics", "off", "--socket", "off"])
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(file);
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        } else {
            cmd.env_remove("JOURNAL_STREAM");
        }
        let status = cmd.status().unwrap();
        let mut text = String::new();
        std::fs::File::open(&path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        (status.code(), text)
    };
    let (code, plain) = run(false);
    assert_eq!(code, Some(2), "bad config is exit 2: {plain}");
    assert!(plain.starts_with("vportd: "), "{plain}");
    assert!(plain.contains("unknown key period"), "{plain}");
    let (code, journal) = run(true);
    assert_eq!(code, Some(2));
    assert!(
        journal.lines().all(|l| l.starts_with("<3>")),
        "every line of the failure at error priority: {journal}"
    );
    assert!(journal.contains("unknown key period"), "{journal}");
}

/// `--log-level` on any subcommand: below the level nothing is said, at it the line is.
#[test]
fn log_level_filters_the_lines() {
    let t = tempfile::tempdir().unwrap();
    let run = |level: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_vportd"))
            .args(["hotplug", "--systemd-unit", "eth9", "--log-level", level])
            .arg("--socket")
            .arg(t.path().join("none.sock"))
            .arg("--config")
            .arg(t.path().join("none.toml"))
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(
        run("info").contains("eth9: no daemon and no"),
        "{}",
        run("info")
    );
    assert_eq!(run("warn"), "");
}

/// `vportd hotplug` under udev: stderr goes nowhere, so each record also goes to the
/// journal's socket in the native protocol, with its priority and identifier (here a
/// socket of the test's own in the journal's place).
#[test]
fn hotplug_writes_to_the_journal_socket() {
    let t = tempfile::tempdir().unwrap();
    let journal = t.path().join("journal.socket");
    let sock = UnixDatagram::bind(&journal).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args(["hotplug", "--systemd-unit", "eth7"])
        .arg("--socket")
        .arg(t.path().join("none.sock"))
        .arg("--config")
        .arg(t.path().join("none.toml"))
        .env("VPORTD_JOURNAL_SOCKET", &journal)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert!(out.status.success());
    let record = next(&sock, Duration::from_secs(5)).expect("a record on the journal socket");
    let fields: Vec<&str> = record.lines().collect();
    assert!(fields.contains(&"PRIORITY=6"), "{record}");
    assert!(fields.contains(&"SYSLOG_IDENTIFIER=vportd"), "{record}");
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("MESSAGE=eth7: no daemon and no")),
        "{record}"
    );
    // And on stderr as ever, for a person running it by hand.
    assert!(String::from_utf8_lossy(&out.stderr).contains("vportd: eth7: no daemon and no"));
}
