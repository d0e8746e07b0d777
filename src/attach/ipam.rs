//! Delegating addresses to an IPAM plugin, as the spec asks: the plugin named by
//! `ipam.type` is looked up in CNI_PATH and run with this call's own environment and the
//! same network config on stdin; its result (ADD) or error comes back as data. The one
//! part of `attach` that runs another program; what it reads is checked in
//! [`cni::result`](super::cni::result).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use super::cni::env::{Command, Env};
use super::cni::{CniError, CniResult};

/// The first executable file named `plugin` in CNI_PATH's folders, in their order.
pub fn find_plugin(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    for dir in dirs {
        let candidate = dir.join(plugin);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
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

/// Runs the IPAM plugin `plugin` for `env`'s verb with `stdin` (the network config as the
/// runtime sent it). ADD answers its result; the other verbs answer nothing on success.
pub fn delegate(plugin: &str, env: &Env, stdin: &[u8]) -> Result<Option<CniResult>, CniError> {
    let path = find_plugin(plugin, &env.path)?;
    let out = run(&path, env, stdin)?;
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

fn run(path: &Path, env: &Env, stdin: &[u8]) -> Result<std::process::Output, CniError> {
    let io = |what: &str, e: std::io::Error| CniError::Io {
        what: format!("{what} the IPAM plugin {}: {e}", path.display()),
    };
    let mut cmd = Process::new(path);
    // The spec's variables are exactly this call's: one this call lacks (DEL's netns)
    // must not leak in from the plugin's own environment.
    for var in [
        "CNI_CONTAINERID",
        "CNI_IFNAME",
        "CNI_NETNS",
        "CNI_ARGS",
        "CNI_PATH",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .envs(env.vars())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io("cannot start", e))?;
    let mut input = child.stdin.take().expect("stdin is piped");
    // Written from a second thread: a plugin that answers before reading all its input
    // must not deadlock against a full pipe.
    let written = std::thread::scope(|s| {
        let writer = s.spawn(move || input.write_all(stdin));
        let out = child.wait_with_output();
        (
            writer.join().expect("the writer thread does not panic"),
            out,
        )
    });
    let out = written.1.map_err(|e| io("cannot wait for", e))?;
    // A plugin that exits without reading its config gets EPIPE: its exit says more.
    if let Err(e) = written.0
        && out.status.success()
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(io("cannot write the config to", e));
    }
    Ok(out)
}

/// A failed plugin's own error JSON when it wrote one, else its exit and stderr.
fn failure(plugin: &str, out: &std::process::Output) -> CniError {
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
