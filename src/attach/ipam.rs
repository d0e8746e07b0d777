//! Delegating addresses to an IPAM plugin, as the spec asks: the plugin named by
//! `ipam.type` is looked up in CNI_PATH and run with this call's own environment and the
//! same network config on stdin; its result (ADD) or error comes back as data. The one
//! part of `attach` that runs another program; what it reads is checked in
//! [`cni::result`](super::cni::result).

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Output, Stdio};

use super::cni::env::{Command, Env};
use super::cni::{CniError, CniResult};

/// Runs the IPAM plugin `plugin` for `env`'s verb with `stdin` (the network config as the
/// runtime sent it). ADD answers its result; the other verbs answer nothing on success.
pub fn delegate(plugin: &str, env: &Env, stdin: &[u8]) -> Result<Option<CniResult>, CniError> {
    let (path, child) = spawn_first(plugin, env)?;
    let out = feed(&path, child, stdin)?;
    if !out.status.success() {
        return Err(failure(plugin, &out));
    }
    if env.command != Command::Add {
        return Ok(None);
    }
    CniResult::parse(
        &out.stdout,
        &format!("the answer of the IPAM plugin {plugin:?}"),
    )
    .map(Some)
}

/// Starts the first `plugin` of CNI_PATH's folders, in their order, that the kernel will
/// execute: a folder without it (ENOENT) or with a file that is not executable (EACCES)
/// is passed over, as a shell's PATH search does. Trying beats checking first: the check
/// and the exec could disagree.
fn spawn_first(plugin: &str, env: &Env) -> Result<(PathBuf, Child), CniError> {
    for dir in &env.path {
        let path = dir.join(plugin);
        let mut cmd = Process::new(&path);
        // The spec's variables are exactly this call's: one this call lacks (DEL's
        // netns) must not leak in from the plugin's own environment.
        for var in [
            "CNI_CONTAINERID",
            "CNI_IFNAME",
            "CNI_NETNS",
            "CNI_ARGS",
            "CNI_PATH",
        ] {
            cmd.env_remove(var);
        }
        let spawned = cmd
            .envs(env.vars())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => return Ok((path, child)),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) => {}
            Err(e) => {
                return Err(CniError::Io {
                    what: format!("cannot start the IPAM plugin {}: {e}", path.display()),
                });
            }
        }
    }
    let shown: Vec<String> = env.path.iter().map(|d| d.display().to_string()).collect();
    Err(CniError::Io {
        what: format!(
            "the IPAM plugin {plugin:?} is in none of CNI_PATH's folders ({}); install it (Debian: containernetworking-plugins) or fix ipam.type",
            if shown.is_empty() {
                "CNI_PATH is empty".to_string()
            } else {
                shown.join(", ")
            }
        ),
    })
}

/// Writes the config to the plugin and collects its answer.
fn feed(path: &Path, mut child: Child, stdin: &[u8]) -> Result<Output, CniError> {
    let io = |what: &str, e: std::io::Error| CniError::Io {
        what: format!("{what} the IPAM plugin {}: {e}", path.display()),
    };
    let mut input = child.stdin.take().expect("stdin is piped");
    // Written from a second thread: a plugin that answers before reading all its input
    // must not deadlock against a full pipe.
    let (written, out) = std::thread::scope(|s| {
        let writer = s.spawn(move || input.write_all(stdin));
        let out = child.wait_with_output();
        (
            writer.join().expect("the writer thread does not panic"),
            out,
        )
    });
    let out = out.map_err(|e| io("cannot wait for", e))?;
    // A plugin that exits without reading its config gets EPIPE: its exit says more.
    if let Err(e) = written
        && out.status.success()
        && e.kind() != ErrorKind::BrokenPipe
    {
        return Err(io("cannot write the config to", e));
    }
    Ok(out)
}

/// A failed plugin's own error JSON when it wrote one, else its exit and stderr.
fn failure(plugin: &str, out: &Output) -> CniError {
    #[derive(serde::Deserialize)]
    struct Wire {
        code: u32,
        msg: String,
        #[serde(default)]
        details: String,
    }
    match serde_json::from_slice::<Wire>(&out.stdout) {
        Ok(w) => CniError::Delegated {
            plugin: plugin.to_string(),
            code: w.code,
            msg: w.msg,
            details: w.details,
        },
        Err(_) => CniError::Io {
            what: format!(
                "the IPAM plugin {plugin:?} failed ({}) without an error JSON: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// A fake IPAM plugin: records its environment and stdin, answers as told.
    fn fake_plugin(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        fs::write(
            &path,
            format!(
                "#!/bin/sh\nenv | grep '^CNI_' | sort > \"$0.env\"\ncat > \"$0.stdin\"\n{body}\n"
            ),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn env_for(command: &str, dirs: &[&Path]) -> Env {
        let path: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        let vars = [
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", "c1".into()),
            ("CNI_IFNAME", "eth0".into()),
            ("CNI_NETNS", "/run/netns/c1".into()),
            ("CNI_PATH", path.join(":")),
        ];
        Env::parse(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap()
    }

    const CONFIG: &[u8] =
        br#"{"cniVersion":"1.0.0","name":"n","type":"vportd","switch":"s","ipam":{"type":"fake"}}"#;

    #[test]
    fn add_runs_the_plugin_with_our_env_and_config_and_reads_its_result() {
        let empty = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        fake_plugin(
            dir.path(),
            "fake",
            r#"echo '{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.5/24","gateway":"10.9.0.1"}]}'"#,
        );
        // Not executable: skipped.
        fs::write(empty.path().join("fake"), "x").unwrap();
        let env = env_for("ADD", &[empty.path(), dir.path()]);
        let result = delegate("fake", &env, CONFIG).unwrap().unwrap();
        assert_eq!(result.ips[0].address, "10.9.0.5/24");
        assert_eq!(fs::read(dir.path().join("fake.stdin")).unwrap(), CONFIG);
        let seen = fs::read_to_string(dir.path().join("fake.env")).unwrap();
        assert_eq!(
            seen,
            format!(
                "CNI_ARGS=\nCNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_IFNAME=eth0\nCNI_NETNS=/run/netns/c1\nCNI_PATH={}:{}\n",
                empty.path().display(),
                dir.path().display()
            )
        );
    }

    #[test]
    fn del_answers_nothing_and_errors_come_back_with_their_code() {
        let dir = tempfile::tempdir().unwrap();
        fake_plugin(dir.path(), "fake", "exit 0");
        assert_eq!(
            delegate("fake", &env_for("DEL", &[dir.path()]), CONFIG).unwrap(),
            None
        );

        fake_plugin(
            dir.path(),
            "fake",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"range is full","details":"10.9.0.0/30"}'; exit 1"#,
        );
        let err = delegate("fake", &env_for("ADD", &[dir.path()]), CONFIG).unwrap_err();
        assert_eq!(
            err.to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":11,"msg":"range is full","details":"10.9.0.0/30"}"#
        );

        fake_plugin(dir.path(), "fake", "echo oops >&2; exit 3");
        let err = delegate("fake", &env_for("ADD", &[dir.path()]), CONFIG).unwrap_err();
        assert_eq!(err.code(), 5);
        assert_eq!(
            err.to_string(),
            "the IPAM plugin \"fake\" failed (exit status: 3) without an error JSON: oops"
        );

        fake_plugin(dir.path(), "fake", "echo '{\"ips\":[{\"address\":\"x\"}]}'");
        let err = delegate("fake", &env_for("ADD", &[dir.path()]), CONFIG).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the answer of the IPAM plugin \"fake\" cannot be read: missing field `cniVersion`"
        );
    }

    #[test]
    fn a_plugin_missing_from_cni_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = delegate("nope", &env_for("ADD", &[dir.path()]), CONFIG).unwrap_err();
        assert_eq!(err.code(), 5);
        assert_eq!(
            err.to_string(),
            format!(
                "the IPAM plugin \"nope\" is in none of CNI_PATH's folders ({}); install it (Debian: containernetworking-plugins) or fix ipam.type",
                dir.path().display()
            )
        );
    }
}
