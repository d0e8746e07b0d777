//! The environment a runtime calls a CNI plugin with, read through a lookup function so
//! that the rules (which variable each verb needs, what a container id and an interface
//! name may be) are tested without touching the process's own environment.

use std::path::PathBuf;

use super::error::CniError;
use crate::model::mac::Mac;

/// The verb in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// Whether the verb is about one container's interface (and so needs its id and name).
    pub fn names_an_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// One container's interface on a network: the spec's key for anything a plugin keeps,
/// together with the network's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// A call's environment, checked for its verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    /// Set for ADD, DEL and CHECK.
    pub attachment: Option<Attachment>,
    /// The container's network namespace: required by ADD and CHECK; DEL may lack it
    /// (the namespace may already be gone) and must still clean up.
    pub netns: Option<PathBuf>,
    /// `CNI_ARGS`, in order.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`, split at ':' (empty parts dropped).
    pub path: Vec<PathBuf>,
    /// `CNI_ARGS`' `MAC`: how podman 4.3 passes `--mac-address` (even to a plugin that
    /// declares the `mac` capability), checked as a container's MAC.
    pub mac: Option<Mac>,
}

/// `CNI_ARGS` keys vportd knows: the convention's escape hatch, the container's MAC, and
/// what kubelet passes.
const KNOWN_ARGS: [&str; 6] = [
    "IgnoreUnknown",
    "MAC",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

impl Env {
    /// Reads and checks the variables `command` needs; `get` is the environment lookup.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some("VERSION") => Command::Version,
            Some(other) => {
                return Err(bad(
                    "CNI_COMMAND",
                    format!("is {other:?}, not one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
                ));
            }
            None => return Err(bad("CNI_COMMAND", "is not set")),
        };
        let nonempty = |var: &'static str| get(var).filter(|v| !v.is_empty());
        let attachment = if command.names_an_attachment() {
            let container_id = nonempty("CNI_CONTAINERID").ok_or_else(|| {
                bad(
                    "CNI_CONTAINERID",
                    format!("is required by {}", command.as_str()),
                )
            })?;
            check_container_id(&container_id)?;
            let ifname = nonempty("CNI_IFNAME")
                .ok_or_else(|| bad("CNI_IFNAME", format!("is required by {}", command.as_str())))?;
            check_ifname(&ifname)?;
            Some(Attachment {
                container_id,
                ifname,
            })
        } else {
            None
        };
        let netns = nonempty("CNI_NETNS").map(PathBuf::from);
        if matches!(command, Command::Add | Command::Check) && netns.is_none() {
            return Err(bad(
                "CNI_NETNS",
                format!("is required by {}", command.as_str()),
            ));
        }
        let path: Vec<PathBuf> = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        if command == Command::Gc && path.is_empty() {
            return Err(bad("CNI_PATH", "is required by GC"));
        }
        // CNI_ARGS belongs to the verbs about one container; the others ignore it (podman
        // fills every variable with placeholders for VERSION).
        let args = if command.names_an_attachment() {
            parse_args(&get("CNI_ARGS").unwrap_or_default())?
        } else {
            Vec::new()
        };
        let mac = match args.iter().find(|(k, _)| k == "MAC") {
            Some((_, v)) => Some(container_mac(v)?),
            None => None,
        };
        Ok(Env {
            command,
            attachment,
            netns,
            args,
            path,
            mac,
        })
    }

    /// The value of a `CNI_ARGS` key.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The variables a delegated plugin (IPAM) is called with: this call's own, unchanged.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![("CNI_COMMAND", self.command.as_str().to_string())];
        if let Some(a) = &self.attachment {
            vars.push(("CNI_CONTAINERID", a.container_id.clone()));
            vars.push(("CNI_IFNAME", a.ifname.clone()));
        }
        if let Some(n) = &self.netns {
            vars.push(("CNI_NETNS", n.to_string_lossy().into_owned()));
        }
        let args: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vars.push(("CNI_ARGS", args.join(";")));
        let path: Vec<String> = self
            .path
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        vars.push(("CNI_PATH", path.join(":")));
        vars
    }
}

fn bad(var: &'static str, problem: impl Into<String>) -> CniError {
    CniError::BadEnv {
        var,
        problem: problem.into(),
    }
}

/// A container's own MAC: unicast and not all zero.
fn container_mac(text: &str) -> Result<Mac, CniError> {
    match text.parse::<Mac>() {
        Ok(m) if !m.is_multicast() && !m.is_zero() => Ok(m),
        Ok(m) => Err(bad(
            "CNI_ARGS",
            format!("holds MAC={m}, which is not a unicast address a container can have"),
        )),
        Err(()) => Err(bad(
            "CNI_ARGS",
            format!("holds MAC={text:?}, which is not six hex bytes with colons"),
        )),
    }
}

/// The spec: an alphanumeric first, then alphanumerics, '_', '.' or '-'.
fn check_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        Ok(())
    } else {
        Err(bad(
            "CNI_CONTAINERID",
            format!(
                "{id:?} must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"
            ),
        ))
    }
}

/// Linux's rules for an interface name: 1 to 15 bytes, not "." or "..", no '/', ':' or
/// white space.
fn check_ifname(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(bad(
            "CNI_IFNAME",
            format!(
                "{name:?} is not an interface name: 1 to 15 bytes, not \".\" or \"..\", without '/', ':' or spaces"
            ),
        ))
    }
}

/// `K=V;K=V`. Keys vportd does not know are refused unless `IgnoreUnknown` is 1 or true
/// (the CNI conventions), so a misspelt key is not silently dropped.
fn parse_args(text: &str) -> Result<Vec<(String, String)>, CniError> {
    let mut args = Vec::new();
    for pair in text.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(bad(
                "CNI_ARGS",
                format!("holds {pair:?}, which is not KEY=VALUE"),
            ));
        };
        if k.is_empty() {
            return Err(bad("CNI_ARGS", format!("holds {pair:?}, which has no key")));
        }
        args.push((k.to_string(), v.to_string()));
    }
    let ignore = args
        .iter()
        .any(|(k, v)| k == "IgnoreUnknown" && (v == "1" || v.eq_ignore_ascii_case("true")));
    if !ignore && let Some((k, v)) = args.iter().find(|(k, _)| !KNOWN_ARGS.contains(&k.as_str())) {
        return Err(CniError::UnsupportedField {
            field: format!("CNI_ARGS key {k}"),
            value: v.clone(),
        });
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Env, CniError> {
        Env::parse(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c0ffee.1_a-b"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
        ("CNI_ARGS", "IgnoreUnknown=1;FOO=bar;MAC=02:aa:bb:cc:dd:01"),
    ];

    #[test]
    fn a_full_add_environment_is_read() {
        let env = parse(ADD).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(
            env.attachment,
            Some(Attachment {
                container_id: "c0ffee.1_a-b".into(),
                ifname: "eth0".into()
            })
        );
        assert_eq!(env.netns, Some(PathBuf::from("/run/netns/x")));
        assert_eq!(
            env.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(env.arg("FOO"), Some("bar"));
        assert_eq!(env.mac, Some("02:aa:bb:cc:dd:01".parse().unwrap()));
        assert_eq!(
            env.vars(),
            vec![
                ("CNI_COMMAND", "ADD".to_string()),
                ("CNI_CONTAINERID", "c0ffee.1_a-b".into()),
                ("CNI_IFNAME", "eth0".into()),
                ("CNI_NETNS", "/run/netns/x".into()),
                (
                    "CNI_ARGS",
                    "IgnoreUnknown=1;FOO=bar;MAC=02:aa:bb:cc:dd:01".into()
                ),
                ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni".into()),
            ]
        );
    }

    #[test]
    fn verbs_without_a_container_need_no_container_variables() {
        for (verb, command) in [("STATUS", Command::Status), ("VERSION", Command::Version)] {
            let env = parse(&[("CNI_COMMAND", verb)]).unwrap();
            assert_eq!((env.command, env.attachment), (command, None));
        }
        let env = parse(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")]).unwrap();
        assert_eq!(env.command, Command::Gc);
        let env = parse(&[("CNI_COMMAND", "VERSION"), ("CNI_ARGS", "junk;FOO=1")]).unwrap();
        assert_eq!(env.args, vec![]);
        // DEL without a namespace: the container may be gone already.
        let env = parse(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(env.netns, None);
    }

    /// Each bad environment and the exact error JSON it gets.
    #[test]
    fn bad_environments_get_code_4_or_2_naming_the_variable() {
        let with = |over: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
            let mut v: Vec<_> = ADD
                .iter()
                .filter(|(k, _)| !over.iter().any(|(o, _)| o == k))
                .copied()
                .collect();
            v.extend(over.iter().filter(|(_, val)| *val != "<unset>"));
            v
        };
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("CNI_COMMAND", "<unset>")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_COMMAND is not set"}"#,
            ),
            (
                &[("CNI_COMMAND", "add")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_COMMAND is \"add\", not one of ADD, DEL, CHECK, STATUS, GC, VERSION"}"#,
            ),
            (
                &[("CNI_CONTAINERID", "<unset>")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_CONTAINERID is required by ADD"}"#,
            ),
            (
                &[("CNI_CONTAINERID", "-abc")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_CONTAINERID \"-abc\" must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"}"#,
            ),
            (
                &[("CNI_CONTAINERID", "a/b")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_CONTAINERID \"a/b\" must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"}"#,
            ),
            (
                &[("CNI_IFNAME", "<unset>")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_IFNAME is required by ADD"}"#,
            ),
            (
                &[("CNI_IFNAME", "a-name-too-long0")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_IFNAME \"a-name-too-long0\" is not an interface name: 1 to 15 bytes, not \".\" or \"..\", without '/', ':' or spaces"}"#,
            ),
            (
                &[("CNI_IFNAME", "..")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_IFNAME \"..\" is not an interface name: 1 to 15 bytes, not \".\" or \"..\", without '/', ':' or spaces"}"#,
            ),
            (
                &[("CNI_IFNAME", "eth 0")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_IFNAME \"eth 0\" is not an interface name: 1 to 15 bytes, not \".\" or \"..\", without '/', ':' or spaces"}"#,
            ),
            (
                &[("CNI_NETNS", "<unset>")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_NETNS is required by ADD"}"#,
            ),
            (
                &[("CNI_ARGS", "IgnoreUnknown=1;junk")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_ARGS holds \"junk\", which is not KEY=VALUE"}"#,
            ),
            (
                &[("CNI_ARGS", "MAC=01:00:5e:00:00:01")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_ARGS holds MAC=01:00:5e:00:00:01, which is not a unicast address a container can have"}"#,
            ),
            (
                &[("CNI_ARGS", "MAC=00:00:00:00:00:00")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_ARGS holds MAC=00:00:00:00:00:00, which is not a unicast address a container can have"}"#,
            ),
            (
                &[("CNI_ARGS", "MAC=0:1:2:3:4:5")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_ARGS holds MAC=\"0:1:2:3:4:5\", which is not six hex bytes with colons"}"#,
            ),
            (
                &[("CNI_ARGS", "=x")],
                r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_ARGS holds \"=x\", which has no key"}"#,
            ),
            (
                &[("CNI_ARGS", "K8S_POD_NAME=p;FOO=bar")],
                r#"{"cniVersion":"1.1.0","code":2,"msg":"CNI_ARGS key FOO \"bar\" is not supported","details":"CNI_ARGS keys vportd does not know are refused unless CNI_ARGS holds IgnoreUnknown=1"}"#,
            ),
        ];
        for (over, want) in cases {
            let err = parse(&with(over)).expect_err(&format!("{over:?} must fail"));
            assert_eq!(&err.to_json("1.1.0"), want, "{over:?}");
        }
        let gc = parse(&[("CNI_COMMAND", "GC")]).unwrap_err();
        assert_eq!(
            gc.to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_PATH is required by GC"}"#
        );
    }
}
