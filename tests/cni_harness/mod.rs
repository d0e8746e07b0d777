//! What the CNI tests need to run podman as a real CNI client on this machine, with no
//! image and no registry (../shared/facts/CONSUMERS.md): a busybox root file system, a
//! private containers.conf (CNI backend, runc, cgroupfs, our own network and plugin
//! folders), podman's storage in a temporary folder, and a private network namespace that
//! podman and its plugins run in, so a bridge or veth a plugin makes never meets the
//! machine's own NIC. Used by tests/cni_*.rs.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where Debian's containernetworking-plugins put the plugins.
pub const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

/// The programs the podman tests run. Missing ones fail the test (CI never skips); a
/// person may set VPORTD_SKIP_PODMAN=1 to skip on purpose, which CI ignores.
pub fn require_podman(test: &str) -> bool {
    let missing: Vec<&str> = [
        "/usr/bin/podman",
        "/usr/sbin/runc",
        "/bin/busybox",
        "/usr/bin/nsenter",
    ]
    .into_iter()
    .chain([
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/host-device",
    ])
    .filter(|p| !Path::new(p).exists())
    .collect();
    if missing.is_empty() {
        return true;
    }
    let asked = std::env::var("VPORTD_SKIP_PODMAN").as_deref() == Ok("1");
    if asked && std::env::var_os("CI").is_none() {
        eprintln!(
            "SKIPPED {test}: {} missing (VPORTD_SKIP_PODMAN=1)",
            missing.join(", ")
        );
        return false;
    }
    panic!(
        "{test} needs podman, runc, busybox-static and containernetworking-plugins: {} missing; run scripts/setup-host (or set VPORTD_SKIP_PODMAN=1 to skip on purpose)",
        missing.join(", ")
    );
}

/// A root file system of a static busybox and its applet links, and the empty folders a
/// runtime mounts over: what `podman run --rootfs DIR` needs, no image pulled.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for sub in ["bin", "proc", "sys", "dev", "etc", "tmp", "run"] {
        fs::create_dir_all(root.join(sub)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("a static busybox at /bin/busybox (busybox-static)");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    root
}

/// The containers.conf of ../shared/facts/CONSUMERS.md: CNI networks from `net_dir`,
/// plugins from `plugin_dirs`, runc (crun refuses this machine's hybrid cgroups),
/// cgroupfs (no systemd), events to a file.
pub fn containers_conf(net_dir: &Path, plugin_dirs: &[&Path]) -> String {
    let dirs: Vec<String> = plugin_dirs
        .iter()
        .map(|d| format!("{:?}", d.display().to_string()))
        .collect();
    format!(
        "[containers]\ndefault_ulimits = []\n\n[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [{}]\nnetwork_config_dir = {:?}\n\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n",
        dirs.join(", "),
        net_dir.display().to_string()
    )
}

/// Podman with its own configuration, storage and network namespace.
pub struct Podman {
    pub dir: tempfile::TempDir,
    pub rootfs: PathBuf,
    pub net_dir: PathBuf,
    /// The network namespace podman and its plugins run in (`/run/netns/NAME`).
    pub netns: String,
    conf: PathBuf,
}

impl Podman {
    /// Plugins are looked up in `plugin_dirs`, in order.
    pub fn new(plugin_dirs: &[&Path]) -> Podman {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::tempdir().unwrap();
        let rootfs = busybox_rootfs(dir.path());
        let net_dir = dir.path().join("net.d");
        fs::create_dir_all(&net_dir).unwrap();
        let conf = dir.path().join("containers.conf");
        fs::write(&conf, containers_conf(&net_dir, plugin_dirs)).unwrap();
        let netns = format!(
            "vpcni{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run_ok("ip", &["netns", "add", &netns]);
        run_ok("ip", &["-n", &netns, "link", "set", "lo", "up"]);
        Podman {
            dir,
            rootfs,
            net_dir,
            netns,
            conf,
        }
    }

    /// Writes `NAME.conflist`: the network `name` for `--network`.
    pub fn add_network(&self, name: &str, conflist: &serde_json::Value) {
        fs::write(
            self.net_dir.join(format!("{name}.conflist")),
            serde_json::to_string_pretty(conflist).unwrap(),
        )
        .unwrap();
    }

    /// A scratch folder inside the test's own (host-local's dataDir, for one).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `podman run --rm --network NET --rootfs DIR /bin/sh -c SCRIPT`, inside the private
    /// namespace (entered with nsenter, which keeps /sys and its cgroup mounts, where
    /// `ip netns exec` would mount a new sysfs and runc would find no cgroups). Answers
    /// the output and how long the run took.
    pub fn run(&self, network: &str, extra: &[&str], script: &str) -> (Output, Duration) {
        self.run_with_env(network, extra, script, &[])
    }

    /// [`Podman::run`] with more variables in podman's environment, which it passes on to
    /// the plugins it runs (`VPORTD_SOCKET`, for one).
    pub fn run_with_env(
        &self,
        network: &str,
        extra: &[&str],
        script: &str,
        env: &[(&str, &str)],
    ) -> (Output, Duration) {
        let netns_path = format!("--net=/run/netns/{}", self.netns);
        let root = self.path("storage");
        let runroot = self.path("run");
        let rootfs = self.rootfs.display().to_string();
        let mut args: Vec<&str> = vec![
            &netns_path,
            "podman",
            "--root",
            root.to_str().unwrap(),
            "--runroot",
            runroot.to_str().unwrap(),
            "--storage-driver",
            "vfs",
            "run",
            "--rm",
            "--ulimit",
            "nproc=1000:1000",
            "--ulimit",
            "nofile=1000:1000",
            "--network",
            network,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--rootfs", &rootfs, "/bin/sh", "-c", script]);
        let start = Instant::now();
        let out = Command::new("nsenter")
            .args(&args)
            .env("CONTAINERS_CONF", &self.conf)
            .envs(env.iter().copied())
            .output()
            .expect("nsenter runs");
        (out, start.elapsed())
    }

    /// `ip -n NETNS ARGS...`: the namespace's view, for assertions.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.netns.as_str()];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Both streams of a run, for an assertion's message.
pub fn shown(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
