//! The bad-input catalogue: every bad input tried here, and exactly what vportd answers (the
//! error text and the exit code), written to docs/bad-input.md. The test regenerates the
//! catalogue and fails when it differs from the checked-in file; `VPORTD_BLESS=1 cargo test
//! --test bad_input` rewrites the file after a deliberate change.
//!
//! Besides the text, each case checks what the standards ask of bad input: an exit code of 2
//! (bad input) from the CLI, a message that is not empty, and nothing changed: `vportd apply`
//! with a bad config creates no state directory and no file (nor touches /var/lib/vportd);
//! `vportd hotplug` with a refused event neither connects to a daemon nor applies a config.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One entry of the catalogue.
struct Entry {
    what: String,
    input: String,
    /// Exit code of the CLI, or None where the answer is not a process exit (a control
    /// socket response, a kernel-text parser's error).
    exit: Option<i32>,
    answer: String,
}

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .replace('\0', "\\0")
        .trim_end()
        .to_string()
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("vportd runs");
    (
        out.status.code().expect("vportd exits, not killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
    )
}

fn vportd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vportd"))
}

/// Every file under `dir`, for "nothing was created".
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        out.push(e.path());
        if e.path().is_dir() {
            out.extend(tree(&e.path()));
        }
    }
    out.sort();
    out
}

const STATE: &str = "state_dir = \"/tmp/vportd-bad-input-state\"\n";

fn vport(extra: &str) -> String {
    format!(
        "[[uplink]]\npci = \"0000:01:00.0\"\n\n[[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:01\"\n{extra}"
    )
}

fn config_cases() -> Vec<(&'static str, Vec<u8>)> {
    let s = |t: String| (STATE.to_string() + &t).into_bytes();
    vec![
        ("TOML syntax error", s("[[vport]\nname = \"vm1\"\n".into())),
        (
            "unknown top-level key",
            b"stat_dir = \"/var/lib/vportd\"\n".to_vec(),
        ),
        (
            "relative state_dir",
            b"state_dir = \"var/lib/vportd\"\n".to_vec(),
        ),
        ("unknown key in [[vport]]", s(vport("vlna = 100\n"))),
        (
            "bad [daemon] settings",
            s("[daemon]\nperiod_sm = 500\nmetrics = \"localhost\"\nlog_level = \"loud\"\n".into()),
        ),
        ("VLAN out of range", s(vport("vlan = 5000\n"))),
        ("QoS without VLAN and above 7", s(vport("qos = 9\n"))),
        (
            "multicast MAC",
            s(vport("").replace("02:00:00:00:01:01", "03:00:00:00:01:01")),
        ),
        (
            "malformed MAC",
            s(vport("").replace("02:00:00:00:01:01", "02:00:00:00:01")),
        ),
        (
            "malformed PCI address",
            s(vport("").replace("pci = \"0000:01:00.0\"", "pci = \"0000:01:0g.0\"")),
        ),
        (
            "vPort on an undeclared uplink",
            s(vport("").replace("uplink = \"0000:01:00.0\"", "uplink = \"0000:09:00.0\"")),
        ),
        (
            "duplicate vPort name and MAC",
            s(vport("")
                + "\n[[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:01\"\n"),
        ),
        (
            "min rate above max rate",
            s(vport("max_tx_rate_mbps = 100\nmin_tx_rate_mbps = 200\n")),
        ),
        ("unknown link_state", s(vport("link_state = \"up\"\n"))),
        ("wrong type", s(vport("spoofchk = \"yes\"\n"))),
        (
            "uplink named two ways",
            s("[[uplink]]\npci = \"0000:01:00.0\"\nifname = \"eth0\"\n".into()),
        ),
        (
            "switch_vf outside num_vfs",
            s("[[uplink]]\npci = \"0000:01:00.0\"\nnum_vfs = 2\nswitch_vf = 2\n".into()),
        ),
        (
            "bring_up not a boolean",
            s("[[uplink]]\npci = \"0000:01:00.0\"\nbring_up = \"no\"\n".into()),
        ),
        (
            "vPort on a switch and an uplink, on an undeclared switch, veth without netns",
            s("[[uplink]]\npci = \"0000:01:00.0\"\n[[switch]]\nname = \"lab\"\nhost_netdev = \"vp-lab\"\n\
               [[vport]]\nname = \"a\"\nswitch = \"lab\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:00:01\"\n\
               [[vport]]\nname = \"b\"\nswitch = \"lan\"\nmac = \"02:00:00:00:00:02\"\n\
               [[vport]]\nname = \"c\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:00:03\"\nattach = \"veth\"\n"
                .into()),
        ),
        (
            "pool on an undeclared uplink, with vfio-pci",
            s("[[uplink]]\npci = \"0000:01:00.0\"\n\n[[pool]]\nname = \"ctr\"\nuplink = \"0000:02:00.0\"\ncount = 2\ndriver = \"vfio-pci\"\n".into()),
        ),
        (
            "pools larger than num_vfs",
            s("[[uplink]]\npci = \"0000:01:00.0\"\nnum_vfs = 2\n\n[[pool]]\nname = \"ctr\"\nuplink = \"0000:01:00.0\"\ncount = 3\n".into()),
        ),
        ("not UTF-8", b"state_dir = \"/tmp/\xff\xfe\"\n".to_vec()),
    ]
}

fn config_section(out: &mut Vec<Entry>) {
    let var_lib = std::fs::metadata("/var/lib/vportd")
        .ok()
        .map(|m| m.modified().ok());
    for (what, text) in config_cases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.toml"), &text).unwrap();
        let (code, stdout, stderr) =
            run(vportd().current_dir(dir.path()).args(["plan", "bad.toml"]));
        assert_eq!(code, 2, "config {what}: plan exits 2\n{stderr}");
        assert!(stdout.is_empty(), "config {what}: plan printed {stdout}");
        assert!(
            stderr.contains("bad.toml"),
            "config {what}: the message names the file"
        );
        // apply changes nothing: same answer, no state directory, no new file.
        let (acode, _, astderr) = run(vportd().current_dir(dir.path()).args(["apply", "bad.toml"]));
        assert_eq!(
            (acode, &astderr),
            (2, &stderr),
            "config {what}: apply answers as plan"
        );
        assert_eq!(
            tree(dir.path()),
            [dir.path().join("bad.toml")],
            "config {what}: apply created files"
        );
        assert!(
            !Path::new("/tmp/vportd-bad-input-state").exists(),
            "config {what}: state dir made"
        );
        out.push(Entry {
            what: format!("config: {what}"),
            input: shown(&text),
            exit: Some(code),
            answer: stderr,
        });
    }
    let (code, _, stderr) = run(vportd().args(["plan", "/nonexistent/host.toml"]));
    assert_eq!(code, 2);
    out.push(Entry {
        what: "config: a file that does not exist".into(),
        input: "vportd plan /nonexistent/host.toml".into(),
        exit: Some(code),
        answer: stderr,
    });
    assert_eq!(
        std::fs::metadata("/var/lib/vportd")
            .ok()
            .map(|m| m.modified().ok()),
        var_lib,
        "bad configs touched /var/lib/vportd"
    );
}

fn profile_section(out: &mut Vec<Entry>) {
    let good = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/hwprofiles/igb-82576.toml"
    ))
    .unwrap();
    let cases: Vec<(&str, &str, String)> = vec![
        ("not TOML", "broken.toml", "family = \n".into()),
        (
            "unknown field",
            "typo.toml",
            good.replacen("family", "famly", 1),
        ),
        (
            "missing [match]",
            "nomatch.toml",
            good.replace("[match]", "[matches]"),
        ),
        ("bad file name", "Bad_Name.toml", good.clone()),
        (
            "vendor id not hex",
            "vendor.toml",
            good.replacen("vendor = \"8086\"", "vendor = \"intel\"", 1),
        ),
    ];
    for (what, file, text) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), &text).unwrap();
        let (code, _, stderr) = run(vportd()
            .current_dir(dir.path())
            .args(["profiles", "--check", "."]));
        assert_eq!(code, 2, "profile {what}: exit 2\n{stderr}");
        assert!(
            stderr.contains(file),
            "profile {what}: names the file: {stderr}"
        );
        out.push(Entry {
            what: format!("hwprofile: {what}"),
            input: format!("{file} (a copy of hwprofiles/igb-82576.toml, edited)"),
            exit: Some(code),
            answer: stderr,
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(vportd()
        .current_dir(dir.path())
        .args(["profiles", "--check", "."]));
    assert_eq!(code, 2);
    out.push(Entry {
        what: "hwprofile: a directory without profiles".into(),
        input: "vportd profiles --check . (an empty directory)".into(),
        exit: Some(code),
        answer: stderr,
    });
}

fn cli_section(out: &mut Vec<Entry>) {
    let cases: &[&[&str]] = &[
        &["frobnicate"],
        &["plan"],
        &["apply", "host.toml", "--dry-rn"],
        &["discover", "--root", "/x", "--fixture", "/y"],
        &["daemon", "--period-ms", "5"],
        &["daemon", "--metrics", "everywhere"],
        &["daemon", "--nic-cpus", "0000:01:00.0"],
        &["daemon", "--nic-cpus", "0000:01:00.0=7-2"],
        &["daemon", "--avoid-cpus", "0-99999"],
        &["daemon", "--lower", "0.9", "--upper", "0.5"],
        &[
            "ctl",
            "--socket",
            "/nonexistent.sock",
            "reconcile",
            "01:00.0",
        ],
        &["ctl", "--socket", "/nonexistent.sock", "rebalance", "maybe"],
    ];
    for args in cases {
        let (code, _, stderr) = run(vportd().args(*args));
        assert_eq!(code, 2, "vportd {args:?}: exit 2\n{stderr}");
        out.push(Entry {
            what: format!("command line: vportd {}", args.join(" ")),
            input: format!("vportd {}", args.join(" ")),
            exit: Some(code),
            answer: stderr,
        });
    }
}

fn hotplug_section(out: &mut Vec<Entry>) {
    let pci = [
        ("ACTION", "add"),
        ("SUBSYSTEM", "pci"),
        ("DEVPATH", "/devices/pci0000:00/0000:00:02.0/0000:01:00.0"),
        ("PCI_SLOT_NAME", "0000:01:00.0"),
    ];
    let with = |key: &'static str, value: &'static str| -> Vec<(&'static str, String)> {
        let mut env: Vec<(&str, String)> = pci
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        if !value.is_empty() {
            env.push((key, value.to_string()));
        }
        env
    };
    let long = "a".repeat(600);
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no ACTION", with("ACTION", "")),
        (
            "an ACTION the kernel never sends",
            with("ACTION", "explode"),
        ),
        (
            "DEVPATH climbing out with ..",
            with("DEVPATH", "/devices/pci0000:00/../../etc/0000:01:00.0"),
        ),
        (
            "DEVPATH outside /devices",
            with("DEVPATH", "/sys/bus/pci/devices/0000:01:00.0"),
        ),
        (
            "PCI_SLOT_NAME naming another device",
            with("PCI_SLOT_NAME", "0000:02:00.0"),
        ),
        (
            "PCI_SLOT_NAME not a PCI address",
            with("PCI_SLOT_NAME", "0000:01:00.9"),
        ),
        ("a value with a space", with("DRIVER", "igb vf")),
        ("a driver name with a slash", with("DRIVER", "../igb")),
        ("a SEQNUM that is not a number", with("SEQNUM", "12ab")),
        (
            "a net event with IFINDEX 0",
            vec![
                ("ACTION", "add".into()),
                ("SUBSYSTEM", "net".into()),
                (
                    "DEVPATH",
                    "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/net/eth1".into(),
                ),
                ("INTERFACE", "eth1".into()),
                ("IFINDEX", "0".into()),
            ],
        ),
        (
            "an interface name longer than IFNAMSIZ",
            vec![
                ("ACTION", "add".into()),
                ("SUBSYSTEM", "net".into()),
                (
                    "DEVPATH",
                    "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/net/eth1".into(),
                ),
                ("INTERFACE", "averyveryverylongname".into()),
                ("IFINDEX", "4".into()),
            ],
        ),
        ("a value longer than any real one", {
            let mut e = with("DRIVER", "");
            e.push(("DRIVER", long.clone()));
            e
        }),
    ];
    for (what, env) in cases {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("vportd.sock");
        let config = dir.path().join("host.toml");
        // A config that would be applied if the event got through: it must not be read.
        std::fs::write(&config, "this is not TOML [[[").unwrap();
        let mut cmd = vportd();
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .args([
                "hotplug",
                "--socket",
                sock.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ]);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let (code, _, stderr) = run(&mut cmd);
        assert_eq!(code, 2, "hotplug {what}: exit 2\n{stderr}");
        assert!(
            stderr.contains("refusing the udev event"),
            "hotplug {what}: {stderr}"
        );
        assert!(
            !stderr.contains("host.toml"),
            "hotplug {what}: the config was read"
        );
        assert_eq!(
            tree(dir.path()),
            std::slice::from_ref(&config),
            "hotplug {what}: files appeared"
        );
        let input = env
            .iter()
            .map(|(k, v)| {
                let v = if v.len() > 100 {
                    format!("{}... ({} bytes)", &v[..8], v.len())
                } else {
                    v.clone()
                };
                format!("{k}={v}")
            })
            .collect::<Vec<_>>()
            .join("\n");
        out.push(Entry {
            what: format!("udev environment: {what}"),
            input,
            exit: Some(code),
            answer: stderr,
        });
    }
}

fn control_section(out: &mut Vec<Entry>) {
    use vportd::daemon::protocol;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"status please\n".to_vec()),
        ("not an object", b"[1,2,3]\n".to_vec()),
        ("no version", b"{\"op\":\"status\"}\n".to_vec()),
        ("another version", b"{\"v\":2,\"op\":\"status\"}\n".to_vec()),
        ("version not a number", b"{\"v\":\"1\",\"op\":\"status\"}\n".to_vec()),
        ("unknown operation", b"{\"v\":1,\"op\":\"reboot\"}\n".to_vec()),
        ("unknown field", b"{\"v\":1,\"op\":\"status\",\"verbose\":true}\n".to_vec()),
        ("two lines", b"{\"v\":1,\n\"op\":\"status\"}\n".to_vec()),
        (
            "reconcile with a bad PCI address",
            b"{\"v\":1,\"op\":\"reconcile\",\"device\":{\"action\":\"add\",\"subsystem\":\"pci\",\"pci\":\"0000:01:00.9\"}}\n".to_vec(),
        ),
        (
            "reconcile with a hostile interface name",
            b"{\"v\":1,\"op\":\"reconcile\",\"device\":{\"action\":\"add\",\"subsystem\":\"net\",\"pci\":\"0000:01:00.0\",\"interface\":\"../../x\"}}\n".to_vec(),
        ),
        ("longer than 16 KiB", {
            let mut v = b"{\"v\":1,\"op\":\"status\",\"pad\":\"".to_vec();
            v.extend(std::iter::repeat_n(b'x', vportd::host::unix_socket::MAX_REQUEST_LEN));
            v.extend(b"\"}\n");
            v
        }),
    ];
    for (what, line) in cases {
        let e = protocol::decode_request(&line).expect_err(what);
        let resp = protocol::encode_response(&protocol::refusal(&e));
        let input = if line.len() > 200 {
            format!("{}... ({} bytes)", shown(&line[..40]), line.len())
        } else {
            shown(&line)
        };
        out.push(Entry {
            what: format!("control socket request: {what}"),
            input,
            exit: None,
            answer: shown(&resp),
        });
    }
}

fn kernel_text_section(out: &mut Vec<Entry>) {
    use vportd::daemon::events;
    use vportd::facts::parse;
    let mut add = |what: &str, input: &[u8], answer: String| {
        assert!(!answer.trim().is_empty());
        out.push(Entry {
            what: format!("kernel text: {what}"),
            input: shown(input),
            exit: None,
            answer,
        });
    };
    for t in ["0-3,x", "7-2", "0-70000", "0-7:2/4"] {
        add(
            "cpulist",
            t.as_bytes(),
            parse::cpulist(t).unwrap_err().to_string(),
        );
    }
    for t in ["", "ff,zz", "123456789", &"0,".repeat(3000)] {
        let shown_t = if t.len() > 40 {
            "0,0,0,... (3,000 words)"
        } else {
            t
        };
        add(
            "hex mask",
            shown_t.as_bytes(),
            parse::hex_mask(t).unwrap_err().to_string(),
        );
    }
    let intr =
        "           CPU0       CPU1\n  1:  5  6  IO-APIC 1-edge i8042\nthis line has no colon\n";
    add(
        "/proc/interrupts",
        intr.as_bytes(),
        parse::interrupts(intr).unwrap_err().to_string(),
    );
    for t in ["cpu0 1 2 x 4\n", "cpuX 1 2 3\n"] {
        add(
            "/proc/stat",
            t.as_bytes(),
            parse::proc_stat(t).unwrap_err().to_string(),
        );
    }
    for m in [
        &b"libudev\0\xfe\xed\xca\xfe"[..],
        b"garbage\0A=b\0",
        b"add@/devices/x\0ACTION\0",
        b"add@/devices/x\0ACTION=add\0ACTION=remove\0",
        b"add@/devices/x\0lower=case\0",
    ] {
        add(
            "uevent message",
            m,
            events::parse_uevent(m).unwrap_err().to_string(),
        );
    }
}

fn render(entries: &[Entry]) -> String {
    let mut s = String::from(
        "# Bad input: what each gets\n\n\
         Generated by `tests/bad_input.rs` from the inputs it tries; the test fails when this \
         file differs from what vportd answers today. Regenerate after a deliberate change with \
         `VPORTD_BLESS=1 cargo test --test bad_input`.\n\n\
         Exit codes: 2 is bad input (nothing was changed), 1 a runtime failure. Control-socket \
         requests get an error response line (the connection then closes); kernel text that \
         does not parse is an error of the reading module, which the daemon reports and \
         retries next period.\n\n\
         What \"changes nothing\" means, and where it is checked:\n\
         - config: `vportd plan` and `vportd apply` on each bad config exit 2 with the same text \
         and create no file and no state directory (this test); the planner and apply never run \
         on a rejected config, and a plan blocked later touches nothing \
         (`tests/provision_sim.rs`, \"a blocked plan touches nothing\").\n\
         - udev environment: `vportd hotplug` refuses the event before connecting to the \
         daemon or reading the config (this test: a config that does not parse is never read).\n\
         - control socket: a refused request is answered and never queued \
         (`src/daemon/handlers.rs` decodes before acting; `tests/control_socket.rs`).\n\
         - kernel text and uevents: pure parsers; the fuzz targets (`src/fuzzing.rs`) check \
         that no input panics and every error says where and what.\n",
    );
    let mut section = String::new();
    for e in entries {
        let sec = e.what.split(':').next().unwrap_or_default().to_string();
        if sec != section {
            let _ = write!(s, "\n## {sec}\n");
            section = sec;
        }
        let title = e.what.split_once(": ").map_or(e.what.as_str(), |(_, t)| t);
        let _ = write!(s, "\n### {title}\n\n```text\n{}\n```\n\n", e.input);
        match e.exit {
            Some(c) => {
                let _ = writeln!(s, "exit {c}, stderr:\n");
            }
            None => {
                let _ = writeln!(s, "answer:\n");
            }
        }
        let _ = writeln!(s, "```text\n{}\n```", e.answer);
    }
    s
}

#[test]
fn catalogue_matches_docs() {
    let mut entries = Vec::new();
    config_section(&mut entries);
    profile_section(&mut entries);
    cli_section(&mut entries);
    hotplug_section(&mut entries);
    control_section(&mut entries);
    kernel_text_section(&mut entries);
    for e in &entries {
        assert!(!e.answer.trim().is_empty(), "{}: an empty answer", e.what);
    }
    let text = render(&entries);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bad-input.md");
    if std::env::var("VPORTD_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    if old != text {
        let first = old
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(old.lines().count().min(text.lines().count()));
        panic!(
            "docs/bad-input.md is not what vportd answers today (first difference at line {}):\n  file: {:?}\n  now:  {:?}\nIf the change is deliberate: VPORTD_BLESS=1 cargo test --test bad_input",
            first + 1,
            old.lines().nth(first).unwrap_or("<end>"),
            text.lines().nth(first).unwrap_or("<end>")
        );
    }
}

/// A config that parses but names an uplink this host lacks (0000:7f:1f.7: no build machine
/// has one) is bad input too: `vportd apply` exits 2 without creating its state directory.
/// (It used to take the apply lock first, which made the directory and `apply.lock`.) Not in
/// the catalogue: the message lists this host's own NICs.
#[test]
fn apply_with_an_absent_uplink_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"0000:7f:1f.7\"\n\n[[vport]]\nname = \"vm1\"\nuplink = \"0000:7f:1f.7\"\nmac = \"02:00:00:00:01:01\"\n",
        state.display()
    );
    std::fs::write(dir.path().join("host.toml"), cfg).unwrap();
    let (code, _, stderr) = run(vportd()
        .current_dir(dir.path())
        .args(["apply", "host.toml"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("host.toml:2:1") && stderr.contains("0000:7f:1f.7"),
        "{stderr}"
    );
    assert!(!state.exists(), "apply created {}", state.display());
}
