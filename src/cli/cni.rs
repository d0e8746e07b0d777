//! `vportd` as a CNI plugin. Installed as `/opt/cni/bin/vportd` (and `/usr/lib/cni/vportd`,
//! where Debian's runtimes look), the same binary answers a runtime's call: the runtime
//! runs it with no arguments, `CNI_COMMAND` and the other variables set and the network
//! config on stdin, and reads the result or error JSON from stdout.
//!
//! Plugin or command line is decided by the environment and the arguments, not by the
//! file name: runtimes run a plugin by the `type` of its config, through links and copies
//! with any name, but always set `CNI_COMMAND` and never pass an argument, while every
//! use of the command line names a subcommand. So `CNI_COMMAND` and no argument is a CNI
//! call; `vportd status` in a shell that happens to export `CNI_COMMAND` is not.
//!
//! The daemon owns every allocation (its journal is the one record), so the plugin is a
//! thin client of the control socket (the network config's `socket`, else `VPORTD_SOCKET`,
//! else `/run/vportd/vportd.sock`; a runtime's cleanup process, which sends DEL, may not have the
//! environment ADD had, so the config's is the one to rely on): it
//! forwards each verb (`daemon::cni` does the work), runs the IPAM plugin of `ipam.type`
//! from CNI_PATH on ADD, DEL and CHECK, and prints the result or error JSON. Without a
//! daemon, ADD, DEL, CHECK and GC answer code 11 (try again later) and STATUS code 50.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::time::Duration;

use crate::attach::cni::config::{UplinkRef, error_version};
use crate::attach::cni::env::Attachment;
use crate::attach::cni::result::{CniResult, Interface};
use crate::attach::cni::{self, CniError, Command, Env, NetConf};
use crate::attach::ipam;
use crate::daemon::protocol::{
    self, CniAttached, CniCall, CniKey, CniTarget, MacSource, Request, Response,
};
use crate::host::ipconf::{self, IpRoute};
use crate::host::netns::Netns;
use crate::host::unix_socket;
use crate::model::pool::VfAttributes;

/// How long an ADD may take in the daemon: a VF's driver resets when its PF sets the MAC.
const REPLY_WITHIN: Duration = Duration::from_secs(60);

/// The most a network config may hold; a runtime's are a few KiB.
const MAX_STDIN: u64 = 1 << 20;

/// Whether this process was started by a runtime as a CNI plugin.
pub fn invoked_as_plugin() -> bool {
    std::env::var_os("CNI_COMMAND").is_some() && std::env::args_os().len() == 1
}

/// The plugin's entry point: reads the call, answers it on stdout, exits 0 or 1.
pub fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(MAX_STDIN + 1)
        .read_to_end(&mut stdin);
    let socket = std::env::var_os("VPORTD_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(unix_socket::DEFAULT_PATH));
    let outcome = match read {
        Err(e) => Err(CniError::Io {
            what: format!("cannot read the network config from stdin: {e}"),
        }),
        Ok(n) if n as u64 > MAX_STDIN => Err(CniError::Io {
            what: format!("the network config on stdin is over {MAX_STDIN} bytes"),
        }),
        Ok(_) => call(&stdin, |k| std::env::var(k).ok(), &socket),
    };
    let (text, code) = match outcome {
        Ok(answer) => (answer.unwrap_or_default(), ExitCode::SUCCESS),
        Err(e) => (e.to_json(error_version(&stdin)), ExitCode::from(1)),
    };
    let mut out = std::io::stdout().lock();
    if !text.is_empty() {
        let _ = out
            .write_all(text.as_bytes())
            .and_then(|_| out.write_all(b"\n"));
    }
    let _ = out.flush();
    code
}

/// One call with its inputs handed in: stdin, the environment lookup, the daemon's socket.
/// Answers what goes to stdout on success (nothing for DEL, CHECK, STATUS and GC).
pub fn call(
    stdin: &[u8],
    get: impl Fn(&str) -> Option<String>,
    socket: &Path,
) -> Result<Option<String>, CniError> {
    let env = Env::parse(get)?;
    if env.command == Command::Version {
        let asked = serde_json::from_slice::<serde_json::Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string));
        return Ok(Some(cni::version_answer(asked.as_deref())));
    }
    let conf = NetConf::parse(stdin, env.command)?;
    let socket = conf.socket.as_deref().unwrap_or(socket);
    let target = target(&conf.target);
    match env.command {
        Command::Add => add(stdin, &env, &conf, target, socket).map(Some),
        Command::Del => {
            let freed = ask(
                socket,
                Request::CniDel {
                    call: forward(&env, &conf, target),
                },
            );
            // Addresses go back even when the daemon could not free the VF (it retries).
            let ipam = match &conf.ipam {
                Some(plugin) => ipam::delegate(plugin, &env, stdin).map(|_| ()),
                None => Ok(()),
            };
            freed.and(ipam).map(|_| None)
        }
        Command::Check => {
            ask(
                socket,
                Request::CniCheck {
                    call: forward(&env, &conf, target),
                },
            )?;
            if let Some(plugin) = &conf.ipam {
                ipam::delegate(plugin, &env, stdin)?;
            }
            Ok(None)
        }
        Command::Gc => {
            let valid = conf
                .valid_attachments
                .iter()
                .flatten()
                .map(|a| CniKey {
                    container_id: a.container_id.clone(),
                    ifname: a.ifname.clone(),
                })
                .collect();
            let network = conf.name.clone();
            ask(socket, Request::CniGc { network, valid }).map(|_| None)
        }
        Command::Status => {
            let network = conf.name.clone();
            match ask(socket, Request::CniStatus { network, target }) {
                Err(CniError::TryAgainLater { why }) => Err(CniError::NotAvailable { why }),
                other => other.map(|_| None),
            }
        }
        Command::Version => unreachable!("answered above"),
    }
}

/// ADD: the daemon attaches, then IPAM gives addresses; an IPAM failure undoes the attach.
fn add(
    stdin: &[u8],
    env: &Env,
    conf: &NetConf,
    target: CniTarget,
    socket: &Path,
) -> Result<String, CniError> {
    let call = forward(env, conf, target);
    let attached =
        ask(socket, Request::CniAdd { call: call.clone() })?.ok_or_else(|| CniError::Io {
            what: "the daemon answered ADD without the interface it made".into(),
        })?;
    let ipam = match &conf.ipam {
        Some(plugin) => match ipam::delegate(plugin, env, stdin)
            .and_then(|r| addresses_inside(&attached, r.as_ref()).map(|_| r))
        {
            Ok(r) => r,
            Err(e) => {
                let _ = ask(socket, Request::CniDel { call });
                let _ = ipam::delegate(plugin, &as_del(env), stdin);
                return Err(e);
            }
        },
        None => None,
    };
    // A veth's host end first, as the spec's plugins list it; the sandbox's after.
    let mut ifaces: Vec<Interface> = attached
        .host
        .iter()
        .map(|h| Interface {
            name: h.name.clone(),
            mac: Some(h.mac.to_string()),
            mtu: attached.mtu,
            ..Interface::default()
        })
        .collect();
    ifaces.push(Interface {
        name: attached.ifname,
        mac: Some(attached.mac.to_string()),
        mtu: attached.mtu,
        sandbox: Some(attached.sandbox),
        socket_path: None,
        pci_id: attached.pci_id,
    });
    Ok(CniResult::for_interfaces(conf.cni_version, ifaces, ipam, conf.dns.clone()).to_json())
}

/// The same call as a DEL: IPAM's addresses go back when an ADD is undone.
fn as_del(env: &Env) -> Env {
    Env {
        command: Command::Del,
        ..env.clone()
    }
}

/// IPAM's addresses on the attachment's link, and its routes through it: the runtime
/// configures nothing itself.
fn addresses_inside(attached: &CniAttached, r: Option<&CniResult>) -> Result<(), CniError> {
    let (Some(r), Some(ifindex)) = (r, attached.ifindex) else {
        return Ok(());
    };
    let addrs: Vec<(std::net::IpAddr, u8)> = r
        .ips
        .iter()
        .filter_map(|ip| cni::result::parse_cidr(&ip.address))
        .collect();
    let routes: Vec<IpRoute> = r
        .routes
        .iter()
        .filter_map(|rt| {
            let (dst, prefix) = cni::result::parse_cidr(&rt.dst)?;
            let gw = rt.gw.as_ref().and_then(|g| g.parse().ok());
            Some(IpRoute { dst, prefix, gw })
        })
        .collect();
    let failed = |e: String| CniError::Io {
        what: format!(
            "cannot put IPAM's addresses on {} in {}: {e}",
            attached.ifname, attached.sandbox
        ),
    };
    let ns = Netns::open(&attached.sandbox).map_err(|e| failed(e.to_string()))?;
    ipconf::configure(&ns, ifindex, &addrs, &routes).map_err(|e| failed(e.to_string()))
}

fn target(t: &cni::Target) -> CniTarget {
    match t {
        cni::Target::Pool(p) => CniTarget::Pool(p.clone()),
        cni::Target::Switch(s) => CniTarget::Switch(s.clone()),
        cni::Target::Uplink(UplinkRef::Pci(p)) => CniTarget::Uplink(p.clone()),
        cni::Target::Uplink(UplinkRef::Mac(m)) => CniTarget::Uplink(m.to_string()),
    }
}

/// ADD, DEL or CHECK as the daemon takes it.
fn forward(env: &Env, conf: &NetConf, target: CniTarget) -> CniCall {
    let a = env.attachment.clone().unwrap_or(Attachment {
        container_id: String::new(),
        ifname: String::new(),
    });
    let mac_from = match (conf.runtime_mac, env.mac) {
        (Some(_), _) => MacSource::Runtime,
        (None, Some(_)) => MacSource::Args,
        (None, None) => MacSource::Derived,
    };
    let at = &conf.attrs;
    CniCall {
        key: CniKey {
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
        },
        network: conf.name.clone(),
        netns: env.netns.as_ref().map(|p| p.display().to_string()),
        target,
        mac: conf.mac_for(&a, env.mac),
        mac_from,
        attrs: VfAttributes {
            vlan: at.vlan,
            qos: at.qos,
            max_tx_rate_mbps: at.max_tx_rate_mbps,
            min_tx_rate_mbps: at.min_tx_rate_mbps,
            spoofchk: at.spoofchk,
            trust: at.trust,
            mtu: at.mtu,
        },
    }
}

/// One request to the daemon: its ADD answer, nothing for the other verbs, or its CNI error.
/// A daemon that does not answer is code 11 (try again later).
fn ask(socket: &Path, req: Request) -> Result<Option<CniAttached>, CniError> {
    let bytes = unix_socket::request(
        socket,
        &protocol::encode_request(&req),
        Duration::from_secs(2),
        REPLY_WITHIN,
        protocol::MAX_RESPONSE_LEN,
    )
    .map_err(|e| CniError::TryAgainLater {
        why: format!(
            "no vportd daemon answers on {} ({e}); it owns every attachment: start it with `vportd daemon --config HOST.toml`",
            socket.display()
        ),
    })?;
    let unreadable = |why: String| CniError::Io {
        what: format!("the daemon's answer is unreadable: {why}"),
    };
    match protocol::decode_response(&bytes).map_err(|e| unreadable(e.to_string()))? {
        Response::CniDone { attached } => Ok(attached),
        Response::CniError { code, msg, details } => Err(CniError::Delegated {
            plugin: "vportd daemon".into(),
            code,
            msg,
            details,
        }),
        Response::Error { message, .. } => Err(CniError::TryAgainLater {
            why: format!("the vportd daemon on {} says: {message}", socket.display()),
        }),
        other => Err(unreadable(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const CONF: &[u8] = br#"{"cniVersion":"1.0.0","name":"n","type":"vportd","switch":"sw0"}"#;

    #[test]
    fn version_answers_without_a_daemon() {
        let answer = call(
            br#"{"cniVersion":"1.0.0"}"#,
            env(&[("CNI_COMMAND", "VERSION")]),
            Path::new("/nonexistent"),
        );
        assert_eq!(
            answer.unwrap().unwrap(),
            r#"{"cniVersion":"1.0.0","supportedVersions":["1.0.0","1.1.0"]}"#
        );
    }

    #[test]
    fn without_a_daemon_add_says_try_again_and_status_not_available() {
        let sock = Path::new("/nonexistent/vportd.sock");
        let add = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/run/netns/c1"),
        ];
        let err = call(CONF, env(&add), sock).unwrap_err();
        assert_eq!(err.code(), 11);
        assert!(
            err.to_string()
                .starts_with("no vportd daemon answers on /nonexistent/vportd.sock ("),
            "{err}"
        );
        let err = call(CONF, env(&[("CNI_COMMAND", "STATUS")]), sock).unwrap_err();
        assert_eq!(err.code(), 50);
        // A bad config is reported before the daemon is asked.
        let err = call(b"{}", env(&add), sock).unwrap_err();
        assert_eq!(err.code(), 7);
    }
}
