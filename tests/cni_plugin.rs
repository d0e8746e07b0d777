//! The vportd binary called as a CNI plugin, the way the spec says a runtime calls one
//! (variables and stdin in, JSON out), for the verbs Debian 12's runtimes never send
//! (STATUS, GC) as well as the others; and the IPAM delegation against Debian's real
//! `host-local`.

mod cni_harness;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use vportd::attach::cni::{Env, NetConf};
use vportd::attach::ipam;

/// A CNI environment: variable names and values.
type Vars<'a> = &'a [(&'a str, &'a str)];

/// Runs `vportd` with no argument, `vars` as its CNI environment and `stdin`.
fn plugin(vars: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .env_clear()
        .env("VPORTD_SOCKET", "/nonexistent/vportd.sock")
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

const CONF: &str = r#"{"cniVersion":"1.1.0","name":"sw","type":"vportd","switch":"sw0"}"#;

const ADD: &[(&str, &str)] = &[
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "c1"),
    ("CNI_IFNAME", "eth0"),
    ("CNI_NETNS", "/run/netns/c1"),
    ("CNI_PATH", "/usr/lib/cni"),
];

#[test]
fn version_is_answered_and_exits_0() {
    let out = plugin(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        r#"{"cniVersion":"1.0.0","supportedVersions":["1.0.0","1.1.0"]}"#
    );
}

#[test]
fn errors_are_cni_json_on_stdout_with_a_nonzero_exit() {
    let cases: &[(Vars, &str, &str)] = &[
        (
            ADD,
            r#"{"cniVersion":"1.0.0","name":"n","type":"vportd","switch":"s","vlan":5000}"#,
            r#"{"cniVersion":"1.0.0","code":7,"msg":"network config key \"vlan\": 5000 is outside 1 to 4094","details":"802.1Q VLAN ids are 1 to 4094 (0 and 4095 are reserved); omit vlan for untagged traffic"}"#,
        ),
        (
            ADD,
            r#"{"cniVersion":"0.4.0","name":"n","type":"vportd","switch":"s"}"#,
            r#"{"cniVersion":"1.1.0","code":1,"msg":"cniVersion \"0.4.0\" is not supported; this plugin speaks 1.0.0 and 1.1.0","details":"set \"cniVersion\": \"1.0.0\" or \"1.1.0\" in the network config"}"#,
        ),
        (
            &[("CNI_COMMAND", "ADD")],
            CONF,
            r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_CONTAINERID is required by ADD"}"#,
        ),
        (
            ADD,
            "not json",
            r#"{"cniVersion":"1.1.0","code":6,"msg":"the network config on stdin cannot be read: expected ident at line 1 column 2"}"#,
        ),
    ];
    for (vars, stdin, want) in cases {
        let out = plugin(vars, stdin);
        assert_eq!(out.status.code(), Some(1), "{stdin}");
        assert_eq!(&stdout(&out), want, "{stdin}");
    }
}

#[test]
fn without_the_daemon_add_del_check_gc_say_try_again_and_status_50() {
    let del = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
    ];
    let check_conf = r#"{"cniVersion":"1.1.0","name":"sw","type":"vportd","switch":"sw0","prevResult":{"cniVersion":"1.1.0"}}"#;
    let check = [
        ("CNI_COMMAND", "CHECK"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", "/run/netns/c1"),
    ];
    let gc_conf = r#"{"cniVersion":"1.1.0","name":"sw","type":"vportd","switch":"sw0","cni.dev/valid-attachments":[]}"#;
    let gc = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")];
    for (vars, stdin, code) in [
        (ADD, CONF, 11),
        (&del[..], CONF, 11),
        (&check[..], check_conf, 11),
        (&gc[..], gc_conf, 11),
        (&[("CNI_COMMAND", "STATUS")][..], CONF, 50),
    ] {
        let out = plugin(vars, stdin);
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{vars:?}: {e}: {}", stdout(&out)));
        assert_eq!(answer["code"], code, "{vars:?}");
        assert_eq!(answer["cniVersion"], "1.1.0");
        assert!(
            answer["msg"]
                .as_str()
                .unwrap()
                .starts_with("no vportd daemon answers on /nonexistent/vportd.sock"),
            "{answer}"
        );
        assert_eq!(out.status.code(), Some(1));
    }
}

#[test]
fn cni_command_in_the_environment_does_not_take_over_the_command_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_vportd"))
        .arg("--version")
        .env("CNI_COMMAND", "ADD")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("vportd "), "{}", stdout(&out));
}

/// Debian's host-local, called through the delegation the plugin uses: ADD hands out an
/// address from the range, DEL gives it back, a second DEL is fine.
#[test]
fn ipam_is_delegated_to_debians_host_local() {
    if !cni_harness::require_podman("ipam_is_delegated_to_debians_host_local") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("leases");
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "ipamtest", "type": "vportd", "switch": "sw0",
        "ipam": {"type": "host-local", "dataDir": data,
                 "ranges": [[{"subnet": "10.232.9.0/29", "gateway": "10.232.9.1"}]],
                 "routes": [{"dst": "10.232.0.0/16"}]}
    })
    .to_string();
    let vars = |command: &str| -> Env {
        let v: Vec<(&str, String)> = vec![
            ("CNI_COMMAND", command.into()),
            ("CNI_CONTAINERID", "ipam-c1".into()),
            ("CNI_IFNAME", "eth0".into()),
            ("CNI_NETNS", "/run/netns/none".into()),
            ("CNI_PATH", "/nonexistent:/usr/lib/cni".into()),
        ];
        Env::parse(|k| v.iter().find(|(n, _)| *n == k).map(|(_, x)| x.clone())).unwrap()
    };
    let add = vars("ADD");
    let net = NetConf::parse(conf.as_bytes(), add.command).unwrap();
    let plugin = net.ipam.as_deref().unwrap();
    let got = ipam::delegate(plugin, &add, conf.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(got.ips.len(), 1, "{got:?}");
    assert_eq!(got.ips[0].address, "10.232.9.2/29");
    assert_eq!(got.ips[0].gateway.as_deref(), Some("10.232.9.1"));
    assert_eq!(got.routes[0].dst, "10.232.0.0/16");
    let lease: PathBuf = data.join("ipamtest/10.232.9.2");
    assert!(lease.exists(), "host-local recorded no lease");
    for _ in 0..2 {
        assert_eq!(
            ipam::delegate(plugin, &vars("DEL"), conf.as_bytes()).unwrap(),
            None
        );
        assert!(!lease.exists(), "DEL left the lease");
    }
}

/// What podman 4.3 (Debian 12) sends, as recorded from a real `podman run --network vp
/// --mac-address ...` on this machine: VERSION with placeholder variables, then ADD with
/// libcni's config (the plugin's keys, name and cniVersion injected, no runtimeConfig even
/// though the plugin declares the mac capability) and the MAC in CNI_ARGS.
#[test]
fn podmans_own_calls_are_understood() {
    let version = plugin(
        &[
            ("CNI_COMMAND", "VERSION"),
            ("CNI_CONTAINERID", ""),
            ("CNI_NETNS", "dummy"),
            ("CNI_IFNAME", "dummy"),
            ("CNI_PATH", "dummy"),
            ("CNI_ARGS", ""),
        ],
        r#"{"cniVersion":"1.0.0"}"#,
    );
    assert_eq!(
        stdout(&version),
        r#"{"cniVersion":"1.0.0","supportedVersions":["1.0.0","1.1.0"]}"#
    );
    let add_conf = r#"{"capabilities":{"mac":true},"cniVersion":"1.0.0","ipam":{"dataDir":"/tmp/ipam","ranges":[[{"subnet":"10.233.0.0/24"}]],"type":"host-local"},"name":"vp","switch":"sw0","type":"vportd"}"#;
    let env = [
        ("CNI_COMMAND", "ADD"),
        (
            "CNI_CONTAINERID",
            "65545e8ec5c5006ec6d1ed3b6985f332f15c3e73ae3c140f35a68e6b10e06c29",
        ),
        (
            "CNI_NETNS",
            "/run/netns/netns-d606413e-7ed1-d11e-50da-9597ab31392a",
        ),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/tmp/plugins:/usr/lib/cni"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=magical_gauss;MAC=02:aa:bb:cc:dd:01",
        ),
    ];
    // Read without complaint up to the daemon, which is not there.
    let add = plugin(&env, add_conf);
    let answer: serde_json::Value = serde_json::from_slice(&add.stdout).unwrap();
    assert_eq!(answer["code"], 11, "{answer}");
    let vars = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let parsed = Env::parse(vars).unwrap();
    let conf = NetConf::parse(add_conf.as_bytes(), parsed.command).unwrap();
    let mac = conf.mac_for(parsed.attachment.as_ref().unwrap(), parsed.mac);
    assert_eq!(mac.to_string(), "02:aa:bb:cc:dd:01");
}
