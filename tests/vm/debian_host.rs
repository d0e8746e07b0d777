//! vportd installed the way an operator installs it, on a real Debian 12 host: a bookworm root
//! made by debootstrap (tests/vm/setup, cached beside the rig) booted in the SR-IOV guest with
//! systemd as PID 1, udev, irqbalance and the emulated igb NICs. The package goes in with
//! `dpkg -i`, the unit is enabled, the host reboots, and then: the VFs are provisioned at boot,
//! before network management; `systemctl status`, `reload` and `journalctl -p warning` show
//! what an operator expects; a NIC hot-added through QEMU's monitor is handled through udev
//! and systemd; irqbalance runs beside vportd without the two fighting over interrupts.
//!
//! The guest boots the rig's kernel with a small initramfs (guest/debian-initrd-init) that
//! mounts the image's root from virtio-blk, through a qcow2 overlay per test (rig.rs's
//! [`SystemDisk`]). The image's vportd-rig-agent.service runs guest/debian-agent.sh from the
//! 9p share: the same control channel as the initramfs guests.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::rig::{Guest, Rig, RigEnv, SystemDisk, rig_or_skip, small_initramfs};

const INITRD_INIT: &str = include_str!("guest/debian-initrd-init");
const AGENT: &str = include_str!("guest/debian-agent.sh");
const RIG_SH: &str = include_str!("guest/rig.sh");
const STEPS: &str = include_str!("scenarios/debian_host.sh");

/// What the initramfs loads to mount the root disk (ext4 checksums need crc32c first).
const ROOT_MODULES: &[&str] = &["virtio_blk", "crc32c_generic", "ext4"];

/// The host's config: two vPorts with rates on the first PF (one asks for a VF link state igb
/// cannot give, marked optional: a warning), and one on a NIC that is hot-added later (absent
/// at boot: a warning too).
const CONFIG: &str = r#"state_dir = "/var/lib/vportd"

[[uplink]]
pci = "0000:01:00.0"

[[uplink]]
pci = "0000:03:00.0"

[[vport]]
name = "vm-a"
uplink = "0000:01:00.0"
mac = "02:00:00:00:01:01"
vlan = 100
max_tx_rate_mbps = 200

[[vport]]
name = "vm-b"
uplink = "0000:01:00.0"
mac = "02:00:00:00:01:02"
max_tx_rate_mbps = 300
link_state = "enable"
optional = ["link_state"]

[[vport]]
name = "hot-a"
uplink = "0000:03:00.0"
mac = "02:00:00:00:03:01"
max_tx_rate_mbps = 100
"#;

/// The operator's edit that `systemctl reload` must apply: vm-a's rate from 200 to 400.
fn edited_config() -> String {
    CONFIG.replacen("max_tx_rate_mbps = 200", "max_tx_rate_mbps = 400", 1)
}

/// The cached Debian image tests/vm/setup built, from its debian.env; a panic naming the fix
/// when there is none.
fn debian_image(rig: &RigEnv) -> PathBuf {
    let env_file = rig.cache.join("debian.env");
    let text = fs::read_to_string(&env_file).unwrap_or_else(|err| {
        panic!(
            "the Debian host image is not built ({} cannot be read: {err}); run tests/vm/setup",
            env_file.display()
        )
    });
    let image = text
        .lines()
        .find_map(|line| line.strip_prefix("VPORTD_RIG_DEBIAN_IMAGE="))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{} names no image; run tests/vm/setup", env_file.display()));
    let kernel_line = format!("VPORTD_RIG_DEBIAN_KERNEL={}", rig.kernel_version);
    assert!(
        text.lines().any(|line| line == kernel_line),
        "the Debian image {} was built for another kernel than the rig's {}; run tests/vm/setup",
        image.display(),
        rig.kernel_version
    );
    assert!(
        image.exists(),
        "{} is missing; run tests/vm/setup",
        image.display()
    );
    image
}

/// The initramfs that mounts the root disk, cached in the target directory by the kernel and
/// the init script it holds (built once; other processes building it at the same time each
/// rename a finished file into place).
fn root_initrd(rig: &RigEnv) -> PathBuf {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD
        .get_or_init(|| {
            let mut hasher = DefaultHasher::new();
            (INITRD_INIT, ROOT_MODULES, &rig.kernel_version).hash(&mut hasher);
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
            let name = format!("debian-initrd-{:016x}", hasher.finish());
            let out = dir.join(format!("{name}.cpio"));
            if !out.exists() {
                let partial = dir.join(format!("{name}-{}.partial", std::process::id()));
                small_initramfs(rig, ROOT_MODULES, INITRD_INIT, &partial)
                    .expect("the system disk's initramfs builds");
                fs::rename(&partial, &out).expect("the initramfs is renamed into place");
            }
            out
        })
        .clone()
}

/// A guest that boots the Debian image with `pfs` igb PFs, one spare root port for a hot-add,
/// and `share` files on /host beside the agent.
pub fn debian_rig(rig: &RigEnv, pfs: usize, share: Vec<(String, Vec<u8>)>) -> Rig {
    let mut share_files = vec![
        ("agent.sh".to_string(), AGENT.as_bytes().to_vec()),
        ("rig.sh".to_string(), RIG_SH.as_bytes().to_vec()),
    ];
    share_files.extend(share);
    let disk = SystemDisk {
        image: debian_image(rig),
        initrd: root_initrd(rig),
        append: "console=ttyS0 root=/dev/vda rw panic=-1 loglevel=4 vportd.mode=debian".to_string(),
        share_files,
    };
    Rig::new()
        .pfs(pfs)
        .spare_ports(1)
        .boot_timeout(Duration::from_secs(240))
        .system_disk(disk)
}

/// The package under test: the .deb scripts/test built with scripts/package for this run
/// (VPORTD_DEB: CI makes one release build, for tests/package.rs and this test), else one
/// built here by scripts/package (a release build, reused when up to date, and cargo-deb).
fn package() -> PathBuf {
    if let Some(deb) = std::env::var_os("VPORTD_DEB") {
        let deb = PathBuf::from(deb);
        assert!(deb.is_file(), "VPORTD_DEB={deb:?} is not a file");
        return deb;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("scripts/package"))
        .current_dir(repo)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/package runs");
    assert!(out.status.success(), "scripts/package failed");
    let deb = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("scripts/package prints the .deb's path")
            .trim(),
    );
    assert!(deb.is_file(), "scripts/package named {deb:?}, not a file");
    deb
}

/// One check of the scenario: its name, whether it held, and what was seen when it did not.
struct Checks {
    test: &'static str,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, seen: impl FnOnce() -> String) {
        eprintln!("{}: {} {name}", self.test, if ok { "PASS" } else { "FAIL" });
        if !ok {
            self.failed.push(format!("{name}:\n{}", seen()));
        }
    }

    /// Fails the test with every check that did not hold, not only the first.
    fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} check(s) failed:\n\n{}",
            self.failed.len(),
            self.failed.join("\n\n")
        );
    }
}

/// Runs a step of scenarios/debian_host.sh and says how long it took.
fn step(guest: &mut Guest, name: &str, timeout: Duration) -> crate::rig::Outcome {
    crate::run(guest, name, &format!("{STEPS}\nstep_{name}\n"), timeout)
}

/// A file the step wrote under $OUT, or nothing: a check on a missing file fails with what
/// was there, instead of ending the scenario before the other checks.
fn text(o: &crate::rig::Outcome, name: &str) -> String {
    o.files
        .get(name)
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default()
}

/// A VF of the PF in `ip -d -j link show` with this MAC: its max rate and VLAN.
fn vf_with_mac(ip_json: &str, mac: &str) -> Option<(u64, u64)> {
    let links: Value = serde_json::from_str(ip_json).ok()?;
    let vfs = links[0]["vfinfo_list"].as_array()?;
    let vf = vfs.iter().find(|vf| vf["address"] == mac)?;
    let rate = vf["rate"]["max_tx"].as_u64().unwrap_or(0);
    let vlan = vf["vlan_list"][0]["vlan"].as_u64().unwrap_or(0);
    Some((rate, vlan))
}

/// `systemctl show` lines "UNIT Property=VALUE" as a number.
fn unit_time(times: &str, unit: &str, property: &str) -> u64 {
    let prefix = format!("{unit} {property}=");
    times
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether any interrupt's affinity went back to an earlier value (A, B, A): a ping-pong.
fn ping_pongs(samples: &str) -> Vec<String> {
    let mut by_irq: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for line in samples.lines() {
        let mut words = line.split_whitespace();
        let (Some(_), Some(irq), Some(cpus)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let seen = by_irq.entry(irq).or_default();
        if seen.last() != Some(&cpus) {
            seen.push(cpus);
        }
    }
    by_irq
        .into_iter()
        .filter(|(_, values)| {
            let mut distinct = values.clone();
            distinct.sort();
            distinct.dedup();
            distinct.len() < values.len()
        })
        .map(|(irq, values)| format!("IRQ {irq}: {}", values.join(" -> ")))
        .collect()
}

#[test]
fn debian_host_package_boot_reload_hotplug_irqbalance() {
    crate::stall_retry(
        "debian_host_package_boot_reload_hotplug_irqbalance",
        debian_host_once,
    );
}

fn debian_host_once() {
    let test = "debian_host_package_boot_reload_hotplug_irqbalance";
    let Some(rig) = rig_or_skip(test) else { return };
    let started = Instant::now();
    let deb = package();
    let share = vec![
        ("vportd.deb".to_string(), fs::read(&deb).unwrap()),
        ("host.toml".to_string(), CONFIG.as_bytes().to_vec()),
        ("host-edited.toml".to_string(), edited_config().into_bytes()),
        ("busybox".to_string(), fs::read("/usr/bin/busybox").unwrap()),
    ];
    eprintln!(
        "{test}: package built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut guest = crate::boot(test, debian_rig(rig, 2, share));
    let mut checks = Checks {
        test: "debian_host",
        failed: Vec::new(),
    };

    // Install: dpkg -i, the config, systemctl enable. Nothing provisioned yet.
    let o = step(&mut guest, "install", Duration::from_secs(180)).success();
    eprintln!(
        "{test}: Debian {} with {} as PID 1 on {}; installed in {:.1} s",
        text(&o, "debian_version").trim(),
        text(&o, "pid1").trim(),
        text(&o, "uname").trim(),
        o.elapsed.as_secs_f64()
    );
    assert_eq!(text(&o, "pid1").trim(), "/usr/lib/systemd/systemd");
    assert_eq!(text(&o, "uname").trim(), rig.kernel_version);
    assert_eq!(text(&o, "dpkg.rc").trim(), "0", "{}", text(&o, "dpkg.out"));
    assert_eq!(
        text(&o, "enable.rc").trim(),
        "0",
        "{}",
        text(&o, "enable.out")
    );
    assert_eq!(
        vf_with_mac(&text(&o, "before.ip.json"), "02:00:00:00:01:01"),
        None
    );
    let props = text(&o, "unit.props");
    checks.check(
        "unit: Wants= and Before= network-pre.target",
        props
            .lines()
            .any(|l| l.starts_with("Wants=") && l.contains("network-pre.target"))
            && props
                .lines()
                .any(|l| l.starts_with("Before=") && l.contains("network-pre.target")),
        || props.clone(),
    );

    // Reboot: the unit provisions the VFs at boot.
    step(&mut guest, "reboot", Duration::from_secs(60)).success();
    let rebooted = Instant::now();
    let took = guest
        .wait_ready(rebooted, Duration::from_secs(240))
        .expect("the Debian host comes back after the reboot");
    eprintln!("{test}: rebooted in {:.1} s", took.as_secs_f64());
    let o = step(&mut guest, "booted", Duration::from_secs(180));
    check_boot(&mut checks, &o);

    // Hot-add through QMP: udev (the package's rules) and the daemon provision its vPort.
    let bdf = guest
        .hotplug_igb("hot0")
        .expect("QEMU hot-plugs an igb NIC");
    assert_eq!(bdf, "0000:03:00.0");
    let o = step(&mut guest, "hotadd", Duration::from_secs(180));
    eprintln!(
        "{test}: hot-add -> VF provisioned in {} ms of guest time",
        text(&o, "hotadd_ms").trim()
    );
    let journal = text(&o, "hotadd.journal");
    checks.check(
        "hot-add: the hot NIC's VF carries its vPort's MAC and rate",
        text(&o, "hotadd.rc").trim() == "0"
            && vf_with_mac(&text(&o, "hotadd.ip.json"), "02:00:00:00:03:01").map(|v| v.0)
                == Some(100),
        || format!("{}\n{journal}", text(&o, "hotadd.ip.json")),
    );
    checks.check(
        "hot-add: the daemon (still active) logged the hot NIC's reconcile",
        text(&o, "hotadd.active").trim() == "active" && journal.contains("0000:03:00.0"),
        || journal.clone(),
    );

    // Reload: an edited config applied by `systemctl reload`, without a restart.
    let o = step(&mut guest, "reload", Duration::from_secs(120));
    check_reload(&mut checks, &o);

    // irqbalance beside vportd.
    let o = step(&mut guest, "irqbalance", Duration::from_secs(180));
    check_irqbalance(&mut checks, &o);

    eprintln!(
        "{test}: whole scenario {:.1} s (boot {:.1} s, reboot {:.1} s)",
        started.elapsed().as_secs_f64(),
        guest.boot_time().as_secs_f64(),
        took.as_secs_f64()
    );
    guest.shutdown().expect("the guest powers off");
    checks.finish();
}

fn check_boot(checks: &mut Checks, o: &crate::rig::Outcome) {
    let journal = text(o, "journal.all");
    checks.check(
        "boot: vportd.service is active",
        text(o, "active").trim() == "active",
        || format!("{}\n{journal}\n{}", text(o, "active"), text(o, "failed")),
    );
    let provisioned = |ip: &str| {
        vf_with_mac(ip, "02:00:00:00:01:01") == Some((200, 100))
            && vf_with_mac(ip, "02:00:00:00:01:02") == Some((300, 0))
    };
    let probe = text(o, "probe.ip.json");
    checks.check(
        "boot: the VFs carry their MACs, VLAN and rates before network-pre.target",
        provisioned(&probe),
        || format!("{probe}\n{journal}"),
    );
    let ip = text(o, "boot.ip.json");
    checks.check(
        "boot: the VFs carry their MACs, VLAN and rates once booted (ip -d link show)",
        provisioned(&ip),
        || format!("{ip}\n{journal}"),
    );
    checks.check(
        "boot: vportd status finds no drift",
        text(o, "status.rc").trim() == "0",
        || format!("{}{}", text(o, "status.json"), text(o, "status.err")),
    );
    let times = text(o, "times");
    let vportd_up = unit_time(&times, "vportd.service", "ActiveEnterTimestampMonotonic");
    let pre = unit_time(
        &times,
        "network-pre.target",
        "ActiveEnterTimestampMonotonic",
    );
    let networkd = unit_time(
        &times,
        "systemd-networkd.service",
        "InactiveExitTimestampMonotonic",
    );
    checks.check(
        "boot: vportd active before network-pre.target, before systemd-networkd starts",
        vportd_up > 0 && pre >= vportd_up && networkd >= pre,
        || times.clone(),
    );
    let show = text(o, "show");
    let status = text(o, "systemctl.status");
    checks.check(
        "boot: Type=notify, and systemctl status shows a STATUS= line",
        show.lines().any(|l| l == "Type=notify")
            && show
                .lines()
                .any(|l| l.starts_with("StatusText=") && l.len() > 11)
            && status
                .lines()
                .any(|l| l.trim_start().starts_with("Status: \"")),
        || format!("{show}\n{status}"),
    );
    let warnings = text(o, "journal.warning");
    checks.check(
        "boot: journalctl -u vportd -p warning shows the absent uplink's warning",
        warnings.contains("0000:03:00.0") && warnings.contains("not here"),
        || format!("-p warning:\n{warnings}\nall priorities:\n{journal}"),
    );
}

fn check_reload(checks: &mut Checks, o: &crate::rig::Outcome) {
    let journal = text(o, "reload.journal");
    checks.check(
        "reload: systemctl reload vportd applies the edited rate, no restart",
        text(o, "reload.rc").trim() == "0"
            && vf_with_mac(&text(o, "reload.ip.json"), "02:00:00:00:01:01").map(|v| v.0)
                == Some(400)
            && text(o, "reload.active").trim() == "active"
            && text(o, "reload.show").contains("NRestarts=0"),
        || {
            format!(
                "{}{}\n{}\n{journal}",
                text(o, "reload.out"),
                text(o, "reload.show"),
                text(o, "reload.ip.json")
            )
        },
    );
}

fn check_irqbalance(checks: &mut Checks, o: &crate::rig::Outcome) {
    checks.check(
        "irqbalance: enabled and running on the host",
        text(o, "irqbalance.active").trim() == "active",
        || text(o, "irqbalance.active"),
    );
    let samples = text(o, "affinity");
    let pongs = ping_pongs(&samples);
    checks.check(
        "irqbalance: no queue interrupt of the PF ping-pongs over 30 s",
        !text(o, "irqs").trim().is_empty() && pongs.is_empty(),
        || format!("{pongs:?}\n{samples}"),
    );
    let metrics = text(o, "irqbalance.metrics");
    let status = text(o, "ctl.status");
    checks.check(
        "irqbalance: vportd's metrics and status say irqbalance runs, with the policy script",
        metrics.lines().any(|l| l == "vportd_irqbalance_running 1")
            && metrics
                .lines()
                .any(|l| l == "vportd_irqbalance_without_policy 0")
            && status.contains("irqbalance: running (pid"),
        || format!("{metrics}\n{status}\n{}", text(o, "irq.journal")),
    );
    checks.check(
        "irqbalance: the recipe is in place (irqbalance runs with vportd's policy script)",
        text(o, "irqbalance.settings").contains("--policyscript=/usr/lib/vportd/irqbalance-policy"),
        || {
            format!(
                "{}\n{}",
                text(o, "irqbalance.settings"),
                text(o, "irqbalance.journal")
            )
        },
    );
}
