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
//! thin client of the control socket (`VPORTD_SOCKET`, default `/run/vportd.sock`). The
//! daemon's side of the protocol is not there yet: until it is, ADD, DEL, CHECK and GC
//! answer code 11 (try again later) and STATUS code 50, naming the reason.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::attach::cni::config::error_version;
use crate::attach::cni::{self, CniError, Command, Env, NetConf};
use crate::host::unix_socket;

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
    let _conf = NetConf::parse(stdin, env.command)?;
    let why = daemon_unable(socket);
    match env.command {
        Command::Status => Err(CniError::NotAvailable { why }),
        _ => Err(CniError::TryAgainLater { why }),
    }
}

/// Why the daemon cannot take the call now.
fn daemon_unable(socket: &Path) -> String {
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => format!(
            "the vportd daemon on {} does not serve CNI attachments yet",
            socket.display()
        ),
        Err(e) => format!(
            "no vportd daemon answers on {} ({e}); it owns every attachment: start it with `vportd daemon`",
            socket.display()
        ),
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
