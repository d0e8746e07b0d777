//! The SR-IOV rig: a QEMU guest with emulated Intel 82576 NICs, driven from Rust tests.
//!
//! No machine here has an SR-IOV NIC, but QEMU's `igb` device runs the real `igb` and `igbvf`
//! drivers of a real kernel: real VFs, real VF netlink, real per-queue MSI-X interrupts. This
//! module boots such a guest (q35, TCG, N PFs on one QEMU hub, each behind its own
//! pcie-root-port), runs shell scenarios in it and hands their results back to the test.
//!
//! How the pieces talk:
//! - The initramfs is two concatenated cpio archives: a *base* (busybox, the oracles `ip` and
//!   `ethtool`, iperf3, udevadm, their libraries and the kernel modules), cached on disk keyed
//!   by its inputs because it rarely changes; and an *overlay* built at every boot with the
//!   freshly built vportd, /init and whatever files the test adds. The kernel unpacks both.
//! - The kernel console (ttyS0) goes to a log file, printed when something goes wrong.
//! - A second serial port (ttyS1) on QEMU's stdin/stdout is the control channel: one line
//!   `RUN <id>` per scenario, answered by `DONE <id> <status>`. Nothing else writes there, so
//!   kernel messages never interleave with the protocol.
//! - A host directory shared over virtio-9p carries the scenario scripts in and their stdout,
//!   stderr and result files (`$OUT/...`) out: no encoding, no size limit.
//! - QMP, QEMU's JSON monitor on a unix socket, hot-plugs and unplugs NICs.
//!
//! Everything it needs is installed by tests/vm/setup; [`rig_or_skip`] decides what a test does
//! when that has not been run.

use std::collections::{BTreeMap, HashMap};
use std::env;
use std::fmt;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What to tell a person whose machine lacks the rig.
fn setup_hint() -> &'static str {
    if env_flag("CI") {
        "run tests/vm/setup (as root; it installs QEMU from bookworm-backports and caches a \
         guest kernel) before the tests"
    } else {
        "run tests/vm/setup (as root; it installs QEMU from bookworm-backports and caches a \
         guest kernel), or set VPORTD_SKIP_VM=1 to skip the VM tests on this machine"
    }
}

/// Bumped whenever the layout of the base archive changes, so that stale caches are rebuilt.
const BASE_FORMAT: u32 = 1;

/// Kernel modules every guest loads at boot: the 82576 PF and VF drivers, the 9p share that
/// carries results, and what traffic scenarios need (veth, VLANs).
const BASE_MODULES: &[&str] = &["igb", "igbvf", "9p", "9pnet_virtio", "veth", "8021q"];

/// Host programs copied into every guest, with their shared libraries.
const BASE_PROGRAMS: &[&str] = &[
    "/usr/bin/busybox",
    "/usr/sbin/ip",
    "/usr/sbin/ethtool",
    "/usr/bin/iperf3",
    "/usr/bin/udevadm",
];

const INIT: &str = include_str!("guest/init");
const RIG_SH: &str = include_str!("guest/rig.sh");
const LAB_SH: &str = include_str!("guest/lab.sh");

/// The login shell's profile in the lab. /init is a shell script, not busybox's init, so the
/// plain `poweroff` (which signals init) would do nothing: power off directly instead.
const PROFILE: &str = "export PS1='guest:\\w# '\n\
    . /etc/rig.sh\n\
    poweroff() { sync; /usr/bin/busybox poweroff -f; }\n\
    reboot() { poweroff; }\n";

/// An error of the rig, with the guest's serial log when there is one.
pub struct RigError {
    message: String,
    log: Option<String>,
}

impl RigError {
    fn new(message: impl Into<String>) -> RigError {
        RigError {
            message: message.into(),
            log: None,
        }
    }

    fn io(what: &str, path: &Path, err: std::io::Error) -> RigError {
        RigError::new(format!("could not {what} {}: {err}", path.display()))
    }
}

impl fmt::Display for RigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(log) = &self.log {
            write!(
                f,
                "\n----- guest serial log -----\n{log}\n----- end of guest serial log -----"
            )?;
        }
        Ok(())
    }
}

/// Tests print a returned error with `{:?}`: make that the readable form, log included.
impl fmt::Debug for RigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for RigError {}

pub type Result<T, E = RigError> = std::result::Result<T, E>;

/// Where tests/vm/setup put the guest kernel, as recorded in its rig.env.
#[derive(Debug, Clone)]
pub struct RigEnv {
    pub kernel_version: String,
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
    pub cache: PathBuf,
}

impl RigEnv {
    /// Finds the installed rig, or says what is missing.
    pub fn locate() -> Result<RigEnv> {
        let cache = env::var_os("VPORTD_RIG_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/vportd-rig"));
        let env_file = cache.join("rig.env");
        let text = fs::read_to_string(&env_file).map_err(|err| {
            RigError::new(format!(
                "The SR-IOV rig is not installed ({} cannot be read: {err}); {}.",
                env_file.display(),
                setup_hint()
            ))
        })?;
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .collect();
        let var = |name: &str| {
            vars.get(name).map(|v| v.to_string()).ok_or_else(|| {
                RigError::new(format!(
                    "{} does not set {name}; {}.",
                    env_file.display(),
                    setup_hint()
                ))
            })
        };
        let rig = RigEnv {
            kernel_version: var("VPORTD_RIG_KERNEL_VERSION")?,
            vmlinuz: PathBuf::from(var("VPORTD_RIG_VMLINUZ")?),
            modules: PathBuf::from(var("VPORTD_RIG_MODULES")?),
            cache,
        };
        let mut needed: Vec<PathBuf> = vec![rig.vmlinuz.clone(), rig.modules.join("modules.dep")];
        needed.extend(BASE_PROGRAMS.iter().map(PathBuf::from));
        needed.push(PathBuf::from("/usr/bin/cpio"));
        needed.push(PathBuf::from("/usr/bin/xz"));
        if let Some(missing) = needed.iter().find(|path| !path.exists()) {
            return Err(RigError::new(format!(
                "The SR-IOV rig is incomplete: {} is missing; {}.",
                missing.display(),
                setup_hint()
            )));
        }
        let help = Command::new("qemu-system-x86_64")
            .args(["-device", "help"])
            .output()
            .map_err(|err| {
                RigError::new(format!(
                    "qemu-system-x86_64 cannot be run ({err}); {}.",
                    setup_hint()
                ))
            })?;
        if !String::from_utf8_lossy(&help.stdout).contains("\"igb\"") {
            return Err(RigError::new(format!(
                "qemu-system-x86_64 has no igb device (it needs QEMU 8.0 or later, from \
                 bookworm-backports); {}.",
                setup_hint()
            )));
        }
        Ok(rig)
    }
}

fn env_flag(name: &str) -> bool {
    env::var_os(name).is_some_and(|value| !value.is_empty())
}

/// The rig for a test that needs it: `None` means skip the test.
///
/// A missing rig fails the test, saying how to install it, because a skipped test proves
/// nothing and would hide a broken CI machine. A person may skip the VM tests with
/// VPORTD_SKIP_VM=1; under CI (CI set) that variable is ignored, and the tests run.
pub fn rig_or_skip(test: &str) -> Option<&'static RigEnv> {
    static RIG: OnceLock<Result<RigEnv, String>> = OnceLock::new();
    if env::var("VPORTD_SKIP_VM").is_ok_and(|value| value == "1") {
        if env_flag("CI") {
            eprintln!("{test}: VPORTD_SKIP_VM=1 is ignored, because CI is set: CI runs every test");
        } else {
            eprintln!("{test}: skipped, because VPORTD_SKIP_VM=1");
            return None;
        }
    }
    match RIG.get_or_init(|| RigEnv::locate().map_err(|err| err.to_string())) {
        Ok(rig) => Some(rig),
        Err(message) => panic!("{test}: {message}"),
    }
}

/// A multiplier for every timeout, for machines slower than the 2-core build machine.
fn timeout_scale() -> f64 {
    env::var("VPORTD_VM_TIMEOUT_SCALE")
        .ok()
        .and_then(|value| value.parse::<f64>().ok())
        .filter(|scale| *scale > 0.0)
        .unwrap_or(1.0)
}

fn scaled(timeout: Duration) -> Duration {
    timeout.mul_f64(timeout_scale())
}

/// TCG with one host thread for all vCPUs, unless VPORTD_VM_TCG_THREAD=multi asks for one
/// each (facts/VM-RIG.md's command line). Multi-threaded TCG on a 2-core host has aborted QEMU
/// on its own race (`iotlb_to_section: Assertion ... failed`, once in CI) and starved a vCPU's
/// timer for good (RCU stalls, twice in CI); one thread rules out both, and the guest kill
/// test took 366 s with it against 361 s with one thread per vCPU on this machine.
fn tcg_accel() -> &'static str {
    match env::var("VPORTD_VM_TCG_THREAD").as_deref() {
        Ok("multi") => "tcg,thread=multi",
        _ => "tcg,thread=single",
    }
}

/// How the guest's /init behaves (the kernel command line's `vportd.mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve the test harness on the control channel.
    Test,
    /// Leave a person at a shell on the console.
    Lab,
    /// Run the lab's scripted tour on the console, then power off.
    Tour,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Lab => "lab",
            Mode::Tour => "tour",
        }
    }
}

/// A guest to boot: how many PFs, spare ports, files and services. See [`Rig::boot`].
#[derive(Debug, Clone)]
pub struct Rig {
    pfs: usize,
    spare_ports: usize,
    cpus: u32,
    memory_mib: u32,
    modules: Vec<String>,
    files: Vec<(String, Vec<u8>, u32)>,
    udev: bool,
    udev_rules: Vec<(String, String)>,
    boot_timeout: Duration,
    /// virtio-net NICs on host TAPs: (TAP name, guest MAC).
    tap_nics: Vec<(String, String)>,
    podman: bool,
    /// Boot a root file system from a disk instead of the initramfs (debian_host.rs).
    system_disk: Option<SystemDisk>,
    /// Host programs copied into the guest with their libraries (`Rig::program`).
    programs: Vec<String>,
    /// netdevsim.ko (built by tests/vm/setup) and the devlink tool, see [`Rig::netdevsim`].
    netdevsim: bool,
    /// An emulated IOMMU, and two NUMA nodes with each PF on an expander bridge of its own
    /// node: see [`Rig::iommu_numa`].
    iommu_numa: bool,
}

impl Default for Rig {
    fn default() -> Rig {
        Rig::new()
    }
}

impl Rig {
    /// One igb PF, 4 vCPUs, 1 GiB: the shape of facts/VM-RIG.md.
    pub fn new() -> Rig {
        Rig {
            pfs: 1,
            spare_ports: 0,
            cpus: 4,
            memory_mib: 1024,
            modules: Vec::new(),
            files: Vec::new(),
            udev: false,
            udev_rules: Vec::new(),
            boot_timeout: Duration::from_secs(90),
            tap_nics: Vec::new(),
            podman: false,
            system_disk: None,
            programs: Vec::new(),
            netdevsim: false,
            iommu_numa: false,
        }
    }

    /// An emulated Intel IOMMU (`intel_iommu=on`, interrupt remapping, so each VF gets an
    /// IOMMU group and can be bound to vfio-pci, whose modules are loaded) and two NUMA nodes
    /// (CPUs 0..n/2 and memory half on node 0, the rest on node 1). PF i sits on a
    /// `pxb-pcie` expander bridge with `numa_node = i % 2` (a root port of pcie.0 reports
    /// node -1), at [`numa_pf_bdf`]`(i)`. Flags from facts/VM-RIG.md.
    pub fn iommu_numa(mut self) -> Rig {
        self.iommu_numa = true;
        for m in [
            "irqbypass",
            "vfio",
            "vfio_iommu_type1",
            "vfio-pci-core",
            "vfio-pci",
        ] {
            self.modules.push(m.to_string());
        }
        self
    }

    /// Number of 82576 PFs, all on one QEMU hub (so they hear each other), each behind its own
    /// pcie-root-port (SR-IOV needs PCI Express). PF i is at 0000:0{i+1}:00.0.
    pub fn pfs(mut self, pfs: usize) -> Rig {
        self.pfs = pfs;
        self
    }

    /// Empty pcie-root-ports that take a NIC hot-plugged with [`Guest::hotplug_igb`].
    pub fn spare_ports(mut self, ports: usize) -> Rig {
        self.spare_ports = ports;
        self
    }

    pub fn cpus(mut self, cpus: u32) -> Rig {
        self.cpus = cpus;
        self
    }

    /// A kernel module to load at boot, besides igb, igbvf, 9p, veth and 8021q.
    pub fn module(mut self, name: &str) -> Rig {
        self.modules.push(name.to_string());
        self
    }

    /// A file in the guest's filesystem, at an absolute path.
    pub fn file(mut self, guest_path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Rig {
        self.files
            .push((guest_path.to_string(), contents.into(), mode));
        self
    }

    /// Starts the real systemd-udevd at boot with the project's udev/*.rules in
    /// /etc/udev/rules.d, plus any rule added with [`Rig::udev_rule`].
    pub fn udev(mut self) -> Rig {
        self.udev = true;
        self
    }

    /// An extra udev rules file (implies [`Rig::udev`]).
    pub fn udev_rule(mut self, file_name: &str, rules: &str) -> Rig {
        self.udev = true;
        self.udev_rules
            .push((file_name.to_string(), rules.to_string()));
        self
    }

    /// A virtio-net NIC with MAC `mac` on the host's existing TAP `ifname`, as a user's VM has
    /// it (`-netdev tap,ifname=...,script=no,downscript=no`): QEMU opens the TAP by name, in
    /// the network namespace of the thread that boots the guest. Loads virtio_net. Combine
    /// with `pfs(0)` for a guest with no igb NIC.
    pub fn tap_nic(mut self, ifname: &str, mac: &str) -> Rig {
        if self.tap_nics.is_empty() {
            self.modules.push("virtio_net".to_string());
        }
        self.tap_nics.push((ifname.to_string(), mac.to_string()));
        self
    }

    /// The kernel's simulated NIC, for what igb lacks (VF min rate, link state, 802.1ad,
    /// devlink and switchdev): netdevsim.ko, which tests/vm/setup builds for exactly the
    /// guest kernel, loaded at boot after psample; and iproute2's `devlink` as an oracle.
    /// A test makes its devices (`echo "10 1" > /sys/bus/netdevsim/new_device`).
    pub fn netdevsim(mut self) -> Rig {
        if !self.netdevsim {
            self.modules.push("psample".to_string());
        }
        self.netdevsim = true;
        self
    }

    pub fn memory_mib(mut self, mib: u32) -> Rig {
        self.memory_mib = mib;
        self
    }

    /// A program of the build machine (an absolute path) at the same path in the guest, with
    /// the shared libraries `ldd` finds for it; missing here fails the boot, naming it.
    pub fn program(mut self, path: &str) -> Rig {
        self.programs.push(path.to_string());
        self
    }

    /// Podman as a CNI client in the guest (see [`add_podman`]); 1.5 GiB of memory, since
    /// podman's storage and the initramfs both live in RAM.
    pub fn podman(mut self) -> Rig {
        self.podman = true;
        self.memory_mib = self.memory_mib.max(1536);
        self
    }

    pub fn boot_timeout(mut self, timeout: Duration) -> Rig {
        self.boot_timeout = timeout;
        self
    }

    /// Boots `disk`'s root file system (systemd as PID 1) instead of the rig's initramfs; the
    /// guest may reboot (see [`SystemDisk`]).
    pub fn system_disk(mut self, disk: SystemDisk) -> Rig {
        self.system_disk = Some(disk);
        self
    }

    /// Builds the initramfs into `dir` and returns the QEMU command line that boots it.
    /// [`Rig::boot`] uses it; so does tests/vm/lab, which runs the command itself.
    pub fn prepare(&self, rig: &RigEnv, dir: &Path, mode: Mode) -> Result<Vec<String>> {
        if let Some(disk) = &self.system_disk {
            let mut args = disk.qemu_args(dir)?;
            args.extend(self.machine_args(rig, dir, mode, &disk.initrd, &disk.append));
            return Ok(args);
        }
        let base = base_archive(rig)?;
        let overlay = dir.join("overlay.cpio");
        self.build_overlay(rig, &dir.join("overlay"), &overlay, mode)?;
        let initrd = dir.join("initrd.cpio");
        concat(&[base.as_path(), overlay.as_path()], &initrd)?;

        let mut append = format!("console=ttyS0 panic=-1 vportd.mode={}", mode.name());
        if mode == Mode::Test {
            append.push_str(" quiet");
        } else {
            append.push_str(" loglevel=4");
        }
        if self.udev {
            append.push_str(" vportd.udev=1");
        }
        if self.iommu_numa {
            append.push_str(" intel_iommu=on");
        }
        let mut args = vec!["-no-reboot".to_string()];
        args.extend(self.machine_args(rig, dir, mode, &initrd, &append));
        Ok(args)
    }

    /// QEMU's machine, kernel, channels and NICs (everything but the root file system).
    fn machine_args(
        &self,
        rig: &RigEnv,
        dir: &Path,
        mode: Mode,
        initrd: &Path,
        append: &str,
    ) -> Vec<String> {
        let machine = if self.iommu_numa {
            "q35,kernel-irqchip=split"
        } else {
            "q35"
        };
        let mut args: Vec<String> = [
            "-M",
            machine,
            "-accel",
            tcg_accel(),
            "-cpu",
            "max",
            "-nodefaults",
            "-display",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
        let cpus = self.cpus.to_string();
        let memory = self.memory_mib.to_string();
        let kernel = rig.vmlinuz.display().to_string();
        let initrd = initrd.display().to_string();
        push(&["-smp", &cpus, "-m", &memory]);
        push(&["-kernel", &kernel, "-initrd", &initrd, "-append", append]);
        match mode {
            Mode::Test => {
                let console = format!("file:{}", dir.join("console.log").display());
                let share = format!(
                    "local,id=share,path={},security_model=none",
                    dir.join("share").display()
                );
                push(&["-serial", &console]);
                push(&[
                    "-chardev",
                    "stdio,id=ctl,signal=off",
                    "-serial",
                    "chardev:ctl",
                ]);
                push(&["-fsdev", &share]);
                push(&["-device", "virtio-9p-pci,fsdev=share,mount_tag=host"]);
            }
            Mode::Lab | Mode::Tour => push(&["-serial", "mon:stdio"]),
        }
        let qmp = format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display());
        push(&["-qmp", &qmp]);
        if self.iommu_numa {
            args.extend(self.iommu_numa_args());
        }
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
        for pf in (0..self.pfs).filter(|_| !self.iommu_numa) {
            push(&[
                "-netdev",
                &format!("hubport,id=pf{pf},hubid=0"),
                "-device",
                &format!("pcie-root-port,id=rp{pf},slot={}", pf + 1),
                "-device",
                &format!("igb,bus=rp{pf},netdev=pf{pf},id=pf{pf},mac={}", pf_mac(pf)),
            ]);
        }
        for (i, (ifname, mac)) in self.tap_nics.iter().enumerate() {
            push(&[
                "-netdev",
                &format!("tap,id=tap{i},ifname={ifname},script=no,downscript=no"),
                "-device",
                &format!("virtio-net-pci,netdev=tap{i},mac={mac}"),
            ]);
        }
        for port in 0..self.spare_ports {
            push(&[
                "-device",
                &format!("pcie-root-port,id=hp{port},slot={}", 100 + port),
            ]);
        }
        args
    }

    /// QEMU arguments of [`Rig::iommu_numa`]: the IOMMU first (before any PCI device), the
    /// two nodes, and each PF behind a root port on its node's expander bridge.
    fn iommu_numa_args(&self) -> Vec<String> {
        let half = self.memory_mib / 2;
        let split = self.cpus / 2;
        let mut a: Vec<String> = vec![
            "-device".into(),
            "intel-iommu,intremap=on,caching-mode=on".into(),
        ];
        for node in 0..2u32 {
            let cpus = if node == 0 {
                format!("0-{}", split - 1)
            } else {
                format!("{split}-{}", self.cpus - 1)
            };
            a.extend([
                "-object".into(),
                format!("memory-backend-ram,id=m{node},size={half}M"),
                "-numa".into(),
                format!("node,nodeid={node},memdev=m{node},cpus={cpus}"),
            ]);
        }
        for pf in 0..self.pfs {
            let bus = 64 * (pf + 1);
            a.extend([
                "-device".into(),
                format!(
                    "pxb-pcie,id=pxb{pf},bus_nr={bus},numa_node={},bus=pcie.0",
                    pf % 2
                ),
                "-device".into(),
                format!(
                    "pcie-root-port,id=rp{pf},bus=pxb{pf},chassis={},slot=1",
                    10 + pf
                ),
                "-netdev".into(),
                format!("hubport,id=pf{pf},hubid=0"),
                "-device".into(),
                format!("igb,bus=rp{pf},netdev=pf{pf},id=pf{pf},mac={}", pf_mac(pf)),
            ]);
        }
        a
    }

    /// Boots the guest and waits until it serves the control channel.
    pub fn boot(self) -> Result<Guest> {
        let rig = RigEnv::locate()?;
        let permit = GuestPermit::acquire();
        let dir = tempfile::Builder::new()
            .prefix("vportd-vm-")
            .tempdir()
            .map_err(|err| {
                RigError::new(format!("could not make a directory for the guest: {err}"))
            })?;
        let share = dir.path().join("share");
        fs::create_dir_all(share.join("jobs"))
            .map_err(|err| RigError::io("create", &share, err))?;
        let args = self.prepare(&rig, dir.path(), Mode::Test)?;

        let started = Instant::now();
        let stderr_path = dir.path().join("qemu.stderr");
        let stderr = fs::File::create(&stderr_path)
            .map_err(|err| RigError::io("create", &stderr_path, err))?;
        let mut child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|err| RigError::new(format!("could not start qemu-system-x86_64: {err}")))?;
        let stdin = child.stdin.take();
        let lines = child.stdout.take().map(|stdout| {
            let (sender, receiver) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            receiver
        });
        let (Some(stdin), Some(lines)) = (stdin, lines) else {
            return Err(RigError::new(
                "qemu-system-x86_64 started without its pipes",
            ));
        };
        let mut guest = Guest {
            child,
            stdin,
            lines,
            dir,
            next_job: 0,
            qmp: None,
            pfs: self.pfs,
            spare_ports: (0..self.spare_ports).map(|_| None).collect(),
            boot_time: Duration::ZERO,
            _permit: permit,
        };
        guest.boot_time = guest.wait_ready(started, self.boot_timeout)?;
        Ok(guest)
    }

    fn build_overlay(&self, rig: &RigEnv, root: &Path, out: &Path, mode: Mode) -> Result<()> {
        let _ = fs::remove_dir_all(root);
        merged_usr_root(root)?;
        let vportd = Path::new(env!("CARGO_BIN_EXE_vportd"));
        copy_program(root, vportd, "/usr/bin/vportd")?;
        link(root, "/usr/bin/vportd", "/usr/local/bin/vportd")?;
        write_file(root, "/init", INIT.as_bytes(), 0o755)?;
        write_file(root, "/etc/rig.sh", RIG_SH.as_bytes(), 0o644)?;
        write_file(root, "/etc/rig/lab.sh", LAB_SH.as_bytes(), 0o755)?;
        write_file(root, "/etc/profile", PROFILE.as_bytes(), 0o644)?;
        write_file(
            root,
            "/etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\n",
            0o644,
        )?;
        write_file(root, "/etc/group", b"root:x:0:\n", 0o644)?;
        if self.iommu_numa {
            // perl (Debian's essential perl-base) has ioctl(2) built in: a scenario holds a
            // VF's vfio device open through the container and group ioctls, as QEMU does.
            copy_program(root, Path::new("/usr/bin/perl"), "/usr/bin/perl")?;
        }
        if mode != Mode::Test {
            let lab_config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/lab.toml");
            copy_file(root, &lab_config, "/etc/vportd/lab.toml", 0o644)?;
            for example in repo_files("examples", "toml")? {
                let name = example.file_name().map(|n| n.to_string_lossy().to_string());
                let contents =
                    fs::read(&example).map_err(|err| RigError::io("read", &example, err))?;
                write_file(
                    root,
                    &format!("/etc/vportd/examples/{}", name.unwrap_or_default()),
                    &contents,
                    0o644,
                )?;
            }
        }
        if self.udev {
            for rules in repo_files("udev", "rules")? {
                let name = rules.file_name().map(|n| n.to_string_lossy().to_string());
                let contents = fs::read(&rules).map_err(|err| RigError::io("read", &rules, err))?;
                write_file(
                    root,
                    &format!("/etc/udev/rules.d/{}", name.unwrap_or_default()),
                    &contents,
                    0o644,
                )?;
            }
            for (name, rules) in &self.udev_rules {
                write_file(
                    root,
                    &format!("/etc/udev/rules.d/{name}"),
                    rules.as_bytes(),
                    0o644,
                )?;
            }
        }
        let modules = module_load_order(rig, self.modules.iter().map(String::as_str))?;
        for module in &modules {
            if !BASE_MODULES.contains(&module.name.as_str()) {
                unpack_module(root, module)?;
            }
        }
        let mut order: Vec<String> = module_load_order(rig, BASE_MODULES.iter().copied())?
            .into_iter()
            .map(|module| module.name)
            .collect();
        for module in modules {
            if !order.contains(&module.name) {
                order.push(module.name);
            }
        }
        if self.netdevsim {
            add_netdevsim(rig, root)?;
            order.push("netdevsim".to_string());
        }
        write_file(
            root,
            "/lib/modules/rig/load.list",
            (order.join("\n") + "\n").as_bytes(),
            0o644,
        )?;
        if self.podman {
            add_podman(root)?;
        }
        for program in &self.programs {
            let host = Path::new(program);
            if !host.exists() {
                return Err(RigError::new(format!(
                    "{program} is missing on the build machine: run scripts/setup-host"
                )));
            }
            copy_program(root, host, program)?;
        }
        for (path, contents, mode) in &self.files {
            write_file(root, path, contents, *mode)?;
        }
        pack_cpio(root, out)
    }
}

/// A root file system on a virtio-blk disk, booted instead of the rig's initramfs: a whole
/// distribution with systemd as PID 1 (tests/vm/debian_host.rs). The cached raw `image` is never
/// written: each boot gets its own qcow2 overlay of it in the guest's directory, so what a test
/// changes survives a reboot inside that test and nothing outlives it. Such a guest may reboot
/// (QEMU resets instead of exiting); its agent then says READY again ([`Guest::wait_ready`]).
#[derive(Debug, Clone)]
pub struct SystemDisk {
    pub image: PathBuf,
    /// An initramfs that loads the disk's drivers and hands over to the disk's /sbin/init.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub append: String,
    /// Files put on the 9p share (`/host` in the guest) before the boot, by name.
    pub share_files: Vec<(String, Vec<u8>)>,
}

impl SystemDisk {
    /// Makes this boot's overlay and share files; returns QEMU's arguments for the disk.
    fn qemu_args(&self, dir: &Path) -> Result<Vec<String>> {
        let overlay = dir.join("root.qcow2");
        let output = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&self.image)
            .arg(&overlay)
            .output()
            .map_err(|err| RigError::new(format!("could not run qemu-img: {err}")))?;
        if !output.status.success() {
            return Err(RigError::new(format!(
                "qemu-img could not make an overlay of {}: {}",
                self.image.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        for (name, contents) in &self.share_files {
            let path = dir.join("share").join(name);
            fs::write(&path, contents).map_err(|err| RigError::io("write", &path, err))?;
        }
        Ok(vec![
            "-drive".to_string(),
            format!(
                "file={},if=virtio,format=qcow2,cache=unsafe",
                overlay.display()
            ),
        ])
    }
}

/// Packs a minimal initramfs into `out`: busybox, `init` as /init, and `modules` (with what
/// they need, decompressed, in load order in /lib/modules/rig/load.list).
pub fn small_initramfs(rig: &RigEnv, modules: &[&str], init: &str, out: &Path) -> Result<()> {
    let root = out.with_extension("tree");
    let _ = fs::remove_dir_all(&root);
    merged_usr_root(&root)?;
    copy_file(
        &root,
        Path::new("/usr/bin/busybox"),
        "/usr/bin/busybox",
        0o755,
    )?;
    for applet in [
        "sh",
        "mount",
        "insmod",
        "switch_root",
        "sleep",
        "mkdir",
        "cat",
    ] {
        link(&root, "/usr/bin/busybox", &format!("/usr/bin/{applet}"))?;
    }
    write_file(&root, "/init", init.as_bytes(), 0o755)?;
    let order = module_load_order(rig, modules.iter().copied())?;
    for module in &order {
        unpack_module(&root, module)?;
    }
    let list: Vec<&str> = order.iter().map(|module| module.name.as_str()).collect();
    write_file(
        &root,
        "/lib/modules/rig/load.list",
        (list.join("\n") + "\n").as_bytes(),
        0o644,
    )?;
    pack_cpio(&root, out)?;
    let _ = fs::remove_dir_all(&root);
    Ok(())
}

/// netdevsim.ko from the rig's cache into the guest's module directory, and `devlink`.
fn add_netdevsim(rig: &RigEnv, root: &Path) -> Result<()> {
    let module = rig
        .cache
        .join("netdevsim")
        .join(&rig.kernel_version)
        .join("netdevsim.ko");
    if !module.exists() {
        return Err(RigError::new(format!(
            "{} is missing (netdevsim built for the guest kernel); {}.",
            module.display(),
            setup_hint()
        )));
    }
    copy_file(root, &module, "/lib/modules/rig/netdevsim.ko", 0o644)?;
    copy_program(root, Path::new("/usr/sbin/devlink"), "/usr/sbin/devlink")
}

/// PF i's MAC address: fixed, so that tests and fixtures do not depend on QEMU's defaults.
/// Where PF i of an [`Rig::iommu_numa`] guest is: behind the root port on expander bridge
/// `bus_nr = 64 (i + 1)`, so one bus below it.
pub fn numa_pf_bdf(pf: usize) -> String {
    format!("0000:{:02x}:00.0", 64 * (pf + 1) + 1)
}

pub fn pf_mac(pf: usize) -> String {
    format!("52:54:00:12:00:{:02x}", pf + 1)
}

/// At most VPORTD_VM_JOBS guests run at a time (default: 2, or 1 on a 1-core machine). On the
/// 2-core build machine two TCG guests at once finish the suite in 2/3 of the time (a guest
/// spends much of its boot on one vCPU); more only slow each other down and eat into timeouts.
struct GuestPermit {
    _slot: Option<nix::fcntl::Flock<fs::File>>,
}

static RUNNING: Mutex<usize> = Mutex::new(0);
static RUNNING_CHANGED: Condvar = Condvar::new();

impl GuestPermit {
    fn acquire() -> GuestPermit {
        let limit = env::var("VPORTD_VM_JOBS")
            .ok()
            .and_then(|jobs| jobs.parse::<usize>().ok())
            .filter(|jobs| *jobs > 0)
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get().min(2)));
        let mut running = RUNNING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *running >= limit {
            running = RUNNING_CHANGED
                .wait(running)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *running += 1;
        drop(running);
        GuestPermit {
            _slot: Self::machine_slot(limit),
        }
    }

    /// The same limit across processes: two test binaries, a bench and the lab started at once
    /// on this machine would otherwise each run their own guests and starve one another (the
    /// rebalancer's test needs an unloaded machine). Slots are flock(2)ed files, released by
    /// the kernel when the holder dies, so a killed test never leaves a slot taken.
    fn machine_slot(limit: usize) -> Option<nix::fcntl::Flock<fs::File>> {
        use nix::fcntl::{Flock, FlockArg};
        let dir = env::temp_dir();
        let mut waited = Duration::ZERO;
        loop {
            for slot in 0..limit {
                let path = dir.join(format!("vportd-guest-slot-{slot}.lock"));
                let Ok(file) = fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                else {
                    return None;
                };
                if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    return Some(lock);
                }
            }
            if waited == Duration::ZERO {
                eprintln!(
                    "rig: {limit} guest(s) already run on this machine (VPORTD_VM_JOBS); waiting for a slot"
                );
            }
            thread::sleep(Duration::from_millis(250));
            waited += Duration::from_millis(250);
        }
    }
}

impl Drop for GuestPermit {
    fn drop(&mut self) {
        let mut running = RUNNING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *running -= 1;
        RUNNING_CHANGED.notify_one();
    }
}

/// A running guest. Dropping it kills QEMU.
pub struct Guest {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    dir: tempfile::TempDir,
    next_job: u32,
    qmp: Option<Qmp>,
    pfs: usize,
    /// The device id hot-plugged into each spare root port, if any.
    spare_ports: Vec<Option<String>>,
    boot_time: Duration,
    _permit: GuestPermit,
}

/// What a scenario script left behind.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    /// Files the script wrote under `$OUT`, by path relative to it.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Where `$OUT` is on the host, while the guest runs. ([`Outcome::files`] holds only
    /// regular files; a script that leaves a tree with links had better tar it, as each file
    /// costs several 9p round trips.)
    pub files_dir: PathBuf,
    pub elapsed: Duration,
}

impl Outcome {
    /// The outcome, if the script exited 0; else a panic showing everything it printed.
    #[track_caller]
    pub fn success(self) -> Outcome {
        assert_eq!(
            self.status, 0,
            "the guest script failed with status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        );
        self
    }

    /// A file the script wrote under `$OUT`, as text.
    #[track_caller]
    pub fn text(&self, name: &str) -> String {
        match self.files.get(name) {
            Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            None => panic!(
                "the guest script wrote no $OUT/{name}; it wrote {:?}\n--- stderr ---\n{}",
                self.files.keys().collect::<Vec<_>>(),
                self.stderr
            ),
        }
    }
}

impl Guest {
    /// From QEMU's start to the guest's first READY on the control channel.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// Waits for the guest's next READY on the control channel (after a boot, or a reboot of
    /// a [`SystemDisk`] guest) and returns the time since `started`.
    pub fn wait_ready(&mut self, started: Instant, timeout: Duration) -> Result<Duration> {
        let allowed = scaled(timeout);
        let deadline = started + allowed;
        let what = format!("the boot (allowed {:.0} s)", allowed.as_secs_f64());
        loop {
            let line = self.next_line(deadline, &what)?;
            if line.starts_with("READY") {
                return Ok(started.elapsed());
            }
        }
    }

    /// Runs a busybox sh script in the guest, with /etc/rig.sh sourced (so `ip`, `ethtool` are
    /// the real ones) and `$OUT` naming a directory whose files come back in
    /// [`Outcome::files`]. A guest that does not finish in time is killed, and the error holds
    /// its serial log.
    pub fn run(&mut self, script: &str, timeout: Duration) -> Result<Outcome> {
        self.next_job += 1;
        let id = self.next_job;
        let job = self.dir.path().join("share/jobs").join(id.to_string());
        fs::create_dir_all(&job).map_err(|err| RigError::io("create", &job, err))?;
        let script_path = job.join("script.sh");
        fs::write(&script_path, script).map_err(|err| RigError::io("write", &script_path, err))?;
        let started = Instant::now();
        self.send(&format!("RUN {id}"))?;
        let allowed = scaled(timeout);
        let deadline = started + allowed;
        let what = format!("scenario {id} (allowed {:.0} s)", allowed.as_secs_f64());
        let status = loop {
            let line = self.next_line(deadline, &what)?;
            let mut words = line.split_whitespace();
            if words.next() == Some("DONE") && words.next() == Some(id.to_string().as_str()) {
                break words.next().and_then(|status| status.parse::<i32>().ok());
            }
        };
        let elapsed = started.elapsed();
        let Some(status) = status else {
            return Err(self.fail(format!(
                "the guest answered scenario {id} without an exit status"
            )));
        };
        let read = |name: &str| {
            fs::read(job.join(name))
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default()
        };
        let mut files = BTreeMap::new();
        collect_files(&job.join("files"), "", &mut files)?;
        Ok(Outcome {
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
            files,
            files_dir: job.join("files"),
            elapsed,
        })
    }

    /// Hot-plugs a new igb NIC (on the guests' hub) into a free spare root port, through QMP.
    /// Returns the PCI address the guest will give it: the root ports' buses are numbered in
    /// order, PFs' first, so spare port i is bus PFs + 1 + i.
    pub fn hotplug_igb(&mut self, id: &str) -> Result<String> {
        let Some(port) = self.spare_ports.iter().position(Option::is_none) else {
            return Err(RigError::new(format!(
                "there is no free spare root port to hot-plug {id} into; boot with \
                 Rig::spare_ports(n)"
            )));
        };
        let netdev = format!("{id}-net");
        let mac = format!("52:54:00:12:01:{:02x}", port + 1);
        let qmp = self.qmp()?;
        qmp.execute(
            "netdev_add",
            json!({"type": "hubport", "id": netdev, "hubid": 0}),
        )?;
        qmp.execute(
            "device_add",
            json!({"driver": "igb", "bus": format!("hp{port}"), "netdev": netdev, "id": id, "mac": mac}),
        )?;
        self.spare_ports[port] = Some(id.to_string());
        Ok(format!("0000:{:02x}:00.0", self.pfs + 1 + port))
    }

    /// Unplugs a hot-plugged NIC and waits for QEMU to confirm that the guest released it
    /// (the DEVICE_DELETED event: PCIe hot-unplug needs the guest's cooperation).
    pub fn unplug(&mut self, id: &str, timeout: Duration) -> Result<()> {
        let timeout = scaled(timeout);
        let qmp = self.qmp()?;
        qmp.execute("device_del", json!({"id": id}))?;
        qmp.wait_event("DEVICE_DELETED", |data| data["device"] == id, timeout)?;
        qmp.execute("netdev_del", json!({"id": format!("{id}-net")}))?;
        for port in &mut self.spare_ports {
            if port.as_deref() == Some(id) {
                *port = None;
            }
        }
        Ok(())
    }

    /// The guest's QMP monitor, connected on first use.
    pub fn qmp(&mut self) -> Result<&mut Qmp> {
        if self.qmp.is_none() {
            let qmp = Qmp::connect(&self.dir.path().join("qmp.sock"))
                .map_err(|err| self.fail(err.message))?;
            self.qmp = Some(qmp);
        }
        self.qmp
            .as_mut()
            .ok_or_else(|| RigError::new("the QMP connection vanished"))
    }

    /// The kernel console so far.
    pub fn serial_log(&self) -> String {
        fs::read(self.dir.path().join("console.log"))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Powers the guest off and waits for QEMU to exit.
    ///
    /// A power-off normally takes well under a second. On a loaded 2-core host TCG can starve a
    /// vCPU for a while (or for good: then the kernel logs an RCU stall, which `stall_retry`
    /// recognises in the log this error carries), so a slow one is given a minute, and said to
    /// be slow; the guest's own watchdog (guest/init) dumps blocked tasks and CPU backtraces
    /// to the console meanwhile, so that a real hang is explained by the failure.
    pub fn shutdown(mut self) -> Result<()> {
        self.send("POWEROFF")?;
        let started = Instant::now();
        let patient = scaled(Duration::from_secs(20));
        let limit = scaled(Duration::from_secs(60));
        let mut said = false;
        while started.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                if said {
                    eprintln!(
                        "the guest powered off after {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                return Ok(());
            }
            if !said && started.elapsed() >= patient {
                eprintln!(
                    "the guest has not powered off after {} s; waiting up to {} s",
                    patient.as_secs(),
                    limit.as_secs()
                );
                said = true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(self.fail(format!(
            "the guest did not power off within {} s",
            limit.as_secs()
        )))
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let result = self
            .stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.stdin.flush());
        result.map_err(|err| {
            self.fail(format!(
                "could not write to the guest's control channel: {err}"
            ))
        })
    }

    /// The next line on the control channel, or an error (with the serial log) when QEMU exits
    /// or the deadline passes, in which case QEMU is killed.
    fn next_line(&mut self, deadline: Instant, what: &str) -> Result<String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => Ok(line.trim_end_matches('\r').to_string()),
            Err(RecvTimeoutError::Timeout) => {
                let tasks = self.dump_tasks();
                let _ = self.child.kill();
                Err(self.fail(format!(
                    "the guest hung: {what} did not finish in time, so QEMU was killed; \
                     {tasks}"
                )))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(self.fail(format!("QEMU exited ({status}) during {what}")))
            }
        }
    }

    /// What every user-space task in the guest was doing when a scenario overran (guest/init's
    /// DUMP: state, wait channel, system call, kernel stack, open files), so that the failure
    /// says what the scenario waited on; or why there is no such list.
    fn dump_tasks(&mut self) -> String {
        if self.send("DUMP").is_err() {
            return "the guest's control channel could not be written, so there is no task list"
                .to_string();
        }
        let deadline = Instant::now() + scaled(Duration::from_secs(30));
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(wait) {
                Ok(line) if line.trim_end_matches('\r') == "DUMPED" => break,
                Ok(_) => continue,
                Err(_) => {
                    return "the guest did not answer DUMP within 30 s, so there is no task \
                            list (its kernel or init is stuck)"
                        .to_string();
                }
            }
        }
        let path = self.dir.path().join("share/jobs/dump.txt");
        match fs::read_to_string(&path) {
            Ok(text) => format!(
                "the guest's user-space tasks at that moment:\n----- tasks -----\n{}\n\
                 ----- end of tasks -----",
                text.trim_end()
            ),
            Err(err) => format!(
                "the guest's task list {} cannot be read: {err}",
                path.display()
            ),
        }
    }

    /// An error carrying the guest's serial log and QEMU's own complaints.
    fn fail(&self, message: String) -> RigError {
        let console = self.serial_log();
        let tail: Vec<&str> = console.lines().rev().take(300).collect();
        let mut log: String = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        let stderr = fs::read_to_string(self.dir.path().join("qemu.stderr")).unwrap_or_default();
        if !stderr.trim().is_empty() {
            log.push_str("\n----- QEMU's stderr -----\n");
            log.push_str(stderr.trim_end());
        }
        let mut message = message;
        if stderr.contains("iotlb_to_section") {
            message.push_str(
                " (QEMU itself crashed: a race in multi-threaded TCG; \
                 leave VPORTD_VM_TCG_THREAD unset to avoid it)",
            );
        }
        if env_flag("VPORTD_VM_KEEP") {
            log.push_str(&format!(
                "\n(guest files kept in {})",
                self.dir.path().display()
            ));
        }
        RigError {
            message,
            log: Some(log),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if env_flag("VPORTD_VM_KEEP") {
            let path = self.dir.path().to_path_buf();
            if let Ok(dir) = tempfile::Builder::new().tempdir() {
                let kept = std::mem::replace(&mut self.dir, dir);
                let _ = kept.keep();
                eprintln!("guest files kept in {}", path.display());
            }
        }
    }
}

/// A client of QEMU's JSON monitor protocol (QMP): one command at a time, events kept until
/// asked for.
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    events: Vec<Value>,
}

impl Qmp {
    fn connect(path: &Path) -> Result<Qmp> {
        let stream = UnixStream::connect(path)
            .map_err(|err| RigError::io("connect to QMP at", path, err))?;
        let reader = stream
            .try_clone()
            .map_err(|err| RigError::new(format!("could not clone the QMP socket: {err}")))?;
        let mut qmp = Qmp {
            writer: stream,
            reader: BufReader::new(reader),
            events: Vec::new(),
        };
        let greeting = qmp.read_message(Duration::from_secs(10))?;
        if greeting.get("QMP").is_none() {
            return Err(RigError::new(format!(
                "QEMU greeted QMP with {greeting} instead of its banner"
            )));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs a QMP command; QEMU's error becomes ours.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let request = json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{request}")
            .map_err(|err| RigError::new(format!("could not send {command} to QMP: {err}")))?;
        loop {
            let message = self.read_message(scaled(Duration::from_secs(30)))?;
            if message.get("event").is_some() {
                self.events.push(message);
            } else if let Some(error) = message.get("error") {
                return Err(RigError::new(format!(
                    "QEMU refused {command} {arguments}: {}",
                    error["desc"].as_str().unwrap_or("(no description)")
                )));
            } else if let Some(result) = message.get("return") {
                return Ok(result.clone());
            }
        }
    }

    /// Waits for an event named `name` whose data satisfies `matches`.
    pub fn wait_event(
        &mut self,
        name: &str,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self
                .events
                .iter()
                .position(|event| event["event"] == name && matches(&event["data"]))
            {
                return Ok(self.events.remove(at));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RigError::new(format!(
                    "QEMU sent no {name} event within {} s",
                    timeout.as_secs()
                )));
            }
            let message = self.read_message(left)?;
            if message.get("event").is_some() {
                self.events.push(message);
            }
        }
    }

    fn read_message(&mut self, timeout: Duration) -> Result<Value> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|err| RigError::new(format!("could not set a QMP read timeout: {err}")))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(RigError::new("QEMU closed the QMP connection")),
            Ok(_) => serde_json::from_str(&line).map_err(|err| {
                RigError::new(format!("QMP sent a line that is not JSON ({err}): {line}"))
            }),
            Err(err) => Err(RigError::new(format!("no answer from QMP: {err}"))),
        }
    }
}

/// A kernel module of the guest kernel, by name and file.
struct Module {
    name: String,
    path: PathBuf,
}

/// The given modules and everything they depend on, dependencies first, from modules.dep.
fn module_load_order<'a>(
    rig: &RigEnv,
    wanted: impl Iterator<Item = &'a str>,
) -> Result<Vec<Module>> {
    let dep_file = rig.modules.join("modules.dep");
    let text = fs::read_to_string(&dep_file).map_err(|err| RigError::io("read", &dep_file, err))?;
    let name_of = |path: &str| {
        let file = path.rsplit('/').next().unwrap_or(path);
        file.split('.').next().unwrap_or(file).replace('-', "_")
    };
    let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in text.lines() {
        let Some((module, needs)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            name_of(module),
            (
                module.to_string(),
                needs.split_whitespace().map(name_of).collect(),
            ),
        );
    }
    fn visit(
        name: &str,
        deps: &HashMap<String, (String, Vec<String>)>,
        rig: &RigEnv,
        order: &mut Vec<Module>,
    ) -> Result<()> {
        if order.iter().any(|module| module.name == name) {
            return Ok(());
        }
        let Some((path, needs)) = deps.get(name) else {
            return Err(RigError::new(format!(
                "the guest kernel {} has no module named {name}",
                rig.kernel_version
            )));
        };
        for need in needs {
            visit(need, deps, rig, order)?;
        }
        order.push(Module {
            name: name.to_string(),
            path: rig.modules.join(path),
        });
        Ok(())
    }
    let mut order = Vec::new();
    for name in wanted {
        visit(&name.replace('-', "_"), &deps, rig, &mut order)?;
    }
    Ok(order)
}

/// Decompresses a module into the guest's /lib/modules/rig/NAME.ko (busybox insmod reads
/// only plain .ko files).
fn unpack_module(root: &Path, module: &Module) -> Result<()> {
    let dest = root.join(format!("lib/modules/rig/{}.ko", module.name));
    create_parent(&dest)?;
    let out = fs::File::create(&dest).map_err(|err| RigError::io("create", &dest, err))?;
    let status = if module.path.extension().is_some_and(|ext| ext == "xz") {
        Command::new("xz")
            .arg("-dc")
            .arg(&module.path)
            .stdout(out)
            .status()
            .map_err(|err| RigError::new(format!("could not run xz: {err}")))?
    } else {
        fs::copy(&module.path, &dest).map_err(|err| RigError::io("copy", &module.path, err))?;
        return Ok(());
    };
    if !status.success() {
        return Err(RigError::new(format!(
            "xz could not decompress {} ({status})",
            module.path.display()
        )));
    }
    Ok(())
}

/// The cached base archive for this kernel and these host programs, built if missing.
///
/// Its name holds a hash of everything that goes in (kernel version, module list, each program
/// and library by path, size and modification time), so an upgraded busybox or kernel makes a
/// new one. Built once per test process; other processes building the same one at the same
/// time are harmless, as each renames a finished file into place.
fn base_archive(rig: &RigEnv) -> Result<PathBuf> {
    static BASE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BASE.get_or_init(|| build_base(rig).map_err(|err| err.to_string()))
        .clone()
        .map_err(RigError::new)
}

fn build_base(rig: &RigEnv) -> Result<PathBuf> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for program in BASE_PROGRAMS {
        files.push((program.to_string(), PathBuf::from(program)));
        for lib in shared_libraries(Path::new(program))? {
            files.push((lib.display().to_string(), lib));
        }
    }
    let modules = module_load_order(rig, BASE_MODULES.iter().copied())?;
    let mut hasher = DefaultHasher::new();
    BASE_FORMAT.hash(&mut hasher);
    rig.kernel_version.hash(&mut hasher);
    for (guest, host) in &files {
        guest.hash(&mut hasher);
        let meta = fs::metadata(host).map_err(|err| RigError::io("read", host, err))?;
        (meta.len(), meta.mtime(), meta.mtime_nsec()).hash(&mut hasher);
    }
    for module in &modules {
        module.name.hash(&mut hasher);
    }
    let key = format!("{:016x}", hasher.finish());

    let dir = cache_dir(rig)?;
    let archive = dir.join(format!("base-{}-{key}.cpio", rig.kernel_version));
    if archive.exists() {
        // Mark it used, so that no other process prunes it as stale.
        if let Ok(file) = fs::File::options().append(true).open(&archive) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        return Ok(archive);
    }
    let staging = dir.join(format!("staging-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    merged_usr_root(&staging)?;
    for (guest, host) in &files {
        copy_file(&staging, host, guest, 0o755)?;
    }
    link(
        &staging,
        "/usr/bin/udevadm",
        "/usr/lib/systemd/systemd-udevd",
    )?;
    let applets = Command::new("/usr/bin/busybox")
        .arg("--list-full")
        .output()
        .map_err(|err| RigError::new(format!("could not list busybox's applets: {err}")))?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        let guest = format!("/{applet}");
        // Real programs win over applets of the same name (ip), in the filesystem at least.
        if fs::symlink_metadata(staging.join(resolve_merged(&guest))).is_err() {
            link(&staging, "/usr/bin/busybox", &guest)?;
        }
    }
    for module in &modules {
        unpack_module(&staging, module)?;
    }
    let partial = dir.join(format!("partial-{key}-{}", std::process::id()));
    pack_cpio(&staging, &partial)?;
    fs::rename(&partial, &archive)
        .map_err(|err| RigError::io("rename into place", &archive, err))?;
    let _ = fs::remove_dir_all(&staging);
    prune_old_bases(&dir);
    Ok(archive)
}

/// Removes base archives (and leftovers of interrupted builds) nobody has used for a day. Not newer ones: another test process (a
/// second clone, another engineer's run) may be booting from one right now.
fn prune_old_bases(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let day = Duration::from_secs(24 * 3600);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let old = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > day));
        if !old {
            continue;
        }
        if name.starts_with("base-") || name.starts_with("partial-") {
            let _ = fs::remove_file(entry.path());
        } else if name.starts_with("staging-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The rig cache's initramfs directory, or one under the target directory when the cache is
/// not writable (a person running the tests without root).
fn cache_dir(rig: &RigEnv) -> Result<PathBuf> {
    let preferred = rig.cache.join("initramfs");
    if fs::create_dir_all(&preferred).is_ok() && tempfile::tempfile_in(&preferred).is_ok() {
        return Ok(preferred);
    }
    let fallback = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vportd-rig");
    fs::create_dir_all(&fallback).map_err(|err| RigError::io("create", &fallback, err))?;
    Ok(fallback)
}

/// The shared libraries a dynamically linked program loads, as `ldd` resolves them here,
/// the dynamic loader included.
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|err| RigError::new(format!("could not run ldd: {err}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("not a dynamic executable") || !output.status.success() {
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|path| path.starts_with('/')) {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Debian 12's merged /usr: /bin, /sbin, /lib and /lib64 are links into /usr, so a library
/// `ldd` names as /lib/... lands where the dynamic loader looks.
fn merged_usr_root(root: &Path) -> Result<()> {
    for dir in [
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "usr/local/bin",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "etc",
        "root",
        "host",
    ] {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(|err| RigError::io("create", &path, err))?;
    }
    for top in ["bin", "sbin", "lib", "lib64"] {
        let path = root.join(top);
        if fs::symlink_metadata(&path).is_err() {
            symlink(format!("usr/{top}"), &path).map_err(|err| RigError::io("link", &path, err))?;
        }
    }
    Ok(())
}

/// The /usr path of a guest path under the merged layout: /bin/x is /usr/bin/x.
fn resolve_merged(guest: &str) -> String {
    let relative = guest.trim_start_matches('/');
    for top in ["bin/", "sbin/", "lib/", "lib64/"] {
        if relative.starts_with(top) {
            return format!("usr/{relative}");
        }
    }
    relative.to_string()
}

/// Copies a host program and its shared libraries into the guest tree.
fn copy_program(root: &Path, host: &Path, guest: &str) -> Result<()> {
    copy_file(root, host, guest, 0o755)?;
    for lib in shared_libraries(host)? {
        copy_file(root, &lib, &lib.display().to_string(), 0o755)?;
    }
    Ok(())
}

fn copy_file(root: &Path, host: &Path, guest: &str, mode: u32) -> Result<()> {
    let contents = fs::read(host).map_err(|err| RigError::io("read", host, err))?;
    write_file(root, guest, &contents, mode)
}

fn write_file(root: &Path, guest: &str, contents: &[u8], mode: u32) -> Result<()> {
    let dest = root.join(resolve_merged(guest));
    create_parent(&dest)?;
    // Never write through a link: it may point at busybox.
    let _ = fs::remove_file(&dest);
    fs::write(&dest, contents).map_err(|err| RigError::io("write", &dest, err))?;
    fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
        .map_err(|err| RigError::io("set the mode of", &dest, err))
}

/// A symbolic link at `guest` to the absolute guest path `target`.
fn link(root: &Path, target: &str, guest: &str) -> Result<()> {
    let dest = root.join(resolve_merged(guest));
    create_parent(&dest)?;
    let _ = fs::remove_file(&dest);
    symlink(target, &dest).map_err(|err| RigError::io("link", &dest, err))
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) => {
            fs::create_dir_all(parent).map_err(|err| RigError::io("create", parent, err))
        }
        None => Ok(()),
    }
}

/// The repository's DIR/*.EXT files, sorted; none if DIR does not exist.
fn repo_files(dir: &str, ext: &str) -> Result<Vec<PathBuf>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = fs::read_dir(&path) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == ext) && path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Packs a directory tree into a newc cpio archive owned by root, as the kernel wants.
fn pack_cpio(root: &Path, out: &Path) -> Result<()> {
    let mut names = Vec::new();
    list_tree(root, Path::new(""), &mut names)?;
    let out_file = fs::File::create(out).map_err(|err| RigError::io("create", out, err))?;
    let mut cpio = Command::new("cpio")
        .args(["--quiet", "-o", "-H", "newc", "-R", "0:0", "--null"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(out_file)
        .spawn()
        .map_err(|err| RigError::new(format!("could not run cpio: {err}")))?;
    let mut list = Vec::new();
    for name in names {
        list.extend_from_slice(name.as_os_str().as_encoded_bytes());
        list.push(0);
    }
    if let Some(mut stdin) = cpio.stdin.take() {
        stdin
            .write_all(&list)
            .map_err(|err| RigError::new(format!("could not feed cpio: {err}")))?;
    }
    let status = cpio
        .wait()
        .map_err(|err| RigError::new(format!("cpio did not finish: {err}")))?;
    if !status.success() {
        return Err(RigError::new(format!(
            "cpio failed ({status}) packing {}",
            root.display()
        )));
    }
    Ok(())
}

/// Every path under `dir`, parents before children, links not followed.
fn list_tree(root: &Path, relative: &Path, names: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(relative);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(|err| RigError::io("list", &dir, err))?
        .flatten()
        .collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = relative.join(entry.file_name());
        names.push(path.clone());
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            list_tree(root, &path, names)?;
        }
    }
    Ok(())
}

fn concat(parts: &[&Path], out: &Path) -> Result<()> {
    let mut file = fs::File::create(out).map_err(|err| RigError::io("create", out, err))?;
    for part in parts {
        let mut input = fs::File::open(part).map_err(|err| RigError::io("open", part, err))?;
        std::io::copy(&mut input, &mut file).map_err(|err| RigError::io("copy", part, err))?;
    }
    Ok(())
}

/// Reads back the files a scenario left under `$OUT`.
fn collect_files(dir: &Path, prefix: &str, files: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let kind = entry
            .file_type()
            .map_err(|err| RigError::io("inspect", &entry.path(), err))?;
        if kind.is_dir() {
            collect_files(&entry.path(), &format!("{name}/"), files)?;
        } else if kind.is_file() {
            let bytes =
                fs::read(entry.path()).map_err(|err| RigError::io("read", &entry.path(), err))?;
            files.insert(name, bytes);
        }
    }
    Ok(())
}

/// The CNI plugins of Debian's containernetworking-plugins a guest with podman gets (static
/// Go programs).
const PODMAN_CNI_PLUGINS: &[&str] = &["host-device", "host-local", "bridge", "loopback"];

/// What podman 4.3 needs to run a container in this initramfs guest (../shared/facts/
/// CONSUMERS.md, "Podman inside the SR-IOV guest"): podman, conmon and crun with their
/// libraries, the CNI plugins in /usr/lib/cni (and vportd linked there as a plugin), a
/// containers.conf for the CNI backend, crun on the guest's pure cgroup v2 and no
/// pivot_root (EINVAL on an initramfs root), vfs storage in /run (tmpfs), and
/// /etc/rig/podman.sh, whose `podman_setup` mounts cgroup2 and /dev/shm and builds the
/// busybox root file system, and whose `podman_run NETWORK SCRIPT` runs one container.
fn add_podman(root: &Path) -> Result<()> {
    for program in ["/usr/bin/podman", "/usr/bin/conmon", "/usr/bin/crun"] {
        let host = Path::new(program);
        if !host.exists() {
            return Err(RigError::new(format!(
                "{program} is missing on the build machine: run scripts/setup-host (podman, conmon, crun)"
            )));
        }
        copy_program(root, host, program)?;
    }
    for plugin in PODMAN_CNI_PLUGINS {
        let host = Path::new("/usr/lib/cni").join(plugin);
        if !host.exists() {
            return Err(RigError::new(format!(
                "{} is missing on the build machine: run scripts/setup-host (containernetworking-plugins)",
                host.display()
            )));
        }
        copy_program(root, &host, &format!("/usr/lib/cni/{plugin}"))?;
    }
    link(root, "/usr/bin/vportd", "/usr/lib/cni/vportd")?;
    write_file(
        root,
        "/etc/containers/containers.conf",
        GUEST_CONTAINERS_CONF.as_bytes(),
        0o644,
    )?;
    write_file(
        root,
        "/etc/containers/storage.conf",
        GUEST_STORAGE_CONF.as_bytes(),
        0o644,
    )?;
    write_file(root, "/etc/hosts", b"127.0.0.1 localhost\n", 0o644)?;
    write_file(root, "/etc/resolv.conf", b"", 0o644)?;
    write_file(
        root,
        "/etc/rig/podman.sh",
        GUEST_PODMAN_SH.as_bytes(),
        0o644,
    )
}

const GUEST_CONTAINERS_CONF: &str = "[containers]\n\
    default_ulimits = []\n\
    \n\
    [network]\n\
    network_backend = \"cni\"\n\
    cni_plugin_dirs = [\"/usr/lib/cni\"]\n\
    network_config_dir = \"/etc/cni/net.d\"\n\
    \n\
    [engine]\n\
    cgroup_manager = \"cgroupfs\"\n\
    events_logger = \"file\"\n\
    runtime = \"crun\"\n\
    no_pivot_root = true\n\
    conmon_path = [\"/usr/bin/conmon\"]\n\
    \n\
    [engine.runtimes]\n\
    crun = [\"/usr/bin/crun\"]\n";

const GUEST_STORAGE_CONF: &str = "[storage]\n\
    driver = \"vfs\"\n\
    graphroot = \"/run/containers/storage\"\n\
    runroot = \"/run/containers/run\"\n";

const GUEST_PODMAN_SH: &str = include_str!("guest/podman.sh");
