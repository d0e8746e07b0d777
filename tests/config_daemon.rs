//! The host config's `[daemon]` table: `vportd daemon`'s settings, each key checked with
//! file:line:col, unknown keys refused with a did-you-mean, and the daemon's flags winning
//! over the table.

use std::path::Path;
use std::process::Command;

use vportd::provision::config::{ConfigError, parse};

fn problems(text: &str) -> Vec<String> {
    match parse(Path::new("host.toml"), text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(ConfigError::Invalid(list)) => list.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_key_is_read() {
    let c = parse(
        Path::new("host.toml"),
        r#"
[daemon]
period_ms = 500
metrics = "off"
socket = "/run/vportd/other.sock"
socket_group = "vportd"
uevents = false
nic_cpus = { "0000:01:00.0" = "2-3,6" }
avoid_cpus = "0-1"
steering = true
upper = 0.9
lower = 0.2
log_level = "debug"
"#,
    )
    .unwrap();
    let d = &c.daemon;
    assert_eq!(d.period_ms, Some(500));
    assert_eq!(d.metrics, Some(None));
    assert_eq!(d.socket.as_deref(), Some("/run/vportd/other.sock"));
    assert_eq!(d.socket_group.as_deref(), Some("vportd"));
    assert_eq!(d.uevents, Some(false));
    assert_eq!(d.nic_cpus["0000:01:00.0"], vec![2, 3, 6]);
    assert_eq!(d.avoid_cpus, Some(vec![0, 1]));
    assert_eq!(d.steering, Some(true));
    assert_eq!((d.upper, d.lower), (Some(0.9), Some(0.2)));
    assert_eq!(d.log_level.as_deref(), Some("debug"));
    assert_eq!(d.at.as_ref().map(|a| a.line), Some(2));

    let none = parse(Path::new("host.toml"), "").unwrap();
    assert!(none.daemon.is_empty());
}

#[test]
fn bad_keys_and_values_are_named_with_their_line() {
    let got = problems(
        r#"[daemon]
perod_ms = 500
period_ms = 5
metrics = "localhost"
socket = "vportd.sock"
nic_cpus = { "eth0" = "2" , "0000:01:00.0" = "x" }
avoid_cpus = "3-1"
upper = 0.3
lower = 0.5
log_level = "loud"
steering = "yes"
"#,
    );
    let want = [
        (
            "host.toml:2:1:",
            "[daemon]: unknown key perod_ms",
            "did you mean period_ms?",
        ),
        ("host.toml:3:", "period_ms 5 is outside 10..600000", ""),
        (
            "host.toml:4:",
            "metrics \"localhost\" is not an address",
            "",
        ),
        (
            "host.toml:5:",
            "socket \"vportd.sock\" is not an absolute path",
            "",
        ),
        ("host.toml:6:", "\"eth0\" is not a PCI address", ""),
        ("host.toml:6:", "nic_cpus 0000:01:00.0", ""),
        ("host.toml:7:", "avoid_cpus", ""),
        ("host.toml:9:", "lower 0.5 is not below upper 0.3", ""),
        ("host.toml:10:", "log_level \"loud\" is not one of", ""),
        ("host.toml:11:", "steering: expected true or false", ""),
    ];
    for (at, what, hint) in want {
        assert!(
            got.iter()
                .any(|p| p.starts_with(at) && p.contains(what) && p.contains(hint)),
            "no {at} {what} {hint} in:\n{}",
            got.join("\n")
        );
    }
    assert_eq!(got.len(), want.len(), "{}", got.join("\n"));

    let got = problems("[[daemon]]\nperiod_ms = 500\n");
    assert!(got[0].contains("expected a [daemon] table"), "{got:?}");
}

/// The daemon takes the table, and a flag wins over it: `--once` prints the tick, whose
/// period is the table's unless `--period-ms` says otherwise; a bad table is exit 2.
#[test]
fn the_daemon_reads_the_table_and_flags_win() {
    let t = tempfile::tempdir().unwrap();
    // The captured igb guest, with the /proc/stat a sample needs (the capture has none).
    let fixture = t.path().join("root");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guest-82576-7vfs"))
        .arg(&fixture)
        .status()
        .unwrap();
    assert!(ok.success());
    let mut stat = String::from("cpu  400 0 400 4000 0 0 0 0 0 0\n");
    for c in 0..4 {
        stat += &format!("cpu{c} 100 0 100 1000 0 0 0 0 0 0\n");
    }
    std::fs::write(fixture.join("proc/stat"), stat).unwrap();
    let cfg = t.path().join("host.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\n[daemon]\nperiod_ms = 40\nupper = 0.95\nlower = 0.9\n",
            t.path().display()
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vportd"))
            .args(["daemon", "--once", "--metrics", "off"])
            .arg("--root")
            .arg(&fixture)
            .arg("--config")
            .arg(&cfg)
            .args(extra)
            .output()
            .unwrap()
    };
    let budget = |extra: &[&str]| {
        let out = run(extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tick: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        tick["budget_seconds"].as_f64().unwrap()
    };
    // The tick's budget is a fixed share of the period: the table's 40 ms, then the flag's.
    let (table, flag) = (budget(&[]), budget(&["--period-ms", "400"]));
    assert!(
        table > 0.0 && (flag / table - 10.0).abs() < 1e-6,
        "{table} {flag}"
    );

    // A flag wins: --lower 0.96 against the table's upper 0.95 is refused, naming both.
    let out = run(&["--lower", "0.96"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--lower 0.96 and --upper 0.95"), "{err}");

    std::fs::write(&cfg, "[daemon]\nperiod_ms = \"fast\"\n").unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host.toml:2:13: [daemon]: period_ms: expected a whole number"),
        "{err}"
    );
}
