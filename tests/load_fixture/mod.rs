//! A synthetic big host for the rebalancer under load: `nics` PCI network functions with
//! `queues` MSI-X queue interrupts each (80 x 125 = 10,000 IRQs by default), on `cpus` CPUs in
//! two NUMA nodes with SMT pairs, written as the /proc and /sys files the daemon reads
//! (/proc/interrupts with one count column per CPU, /proc/irq/N/*, /proc/stat, msi_irqs,
//! numa_node, node cpulists, thread siblings). Shared by tests/daemon_load.rs and
//! examples/tick_bench.rs (`#[path]`-included), so the test and the benchmark run the same
//! tree.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// The shape of the host.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub nics: u32,
    pub queues: u32,
    pub cpus: u32,
}

impl Shape {
    /// 10,000 queue IRQs on 128 CPUs.
    pub const BIG: Shape = Shape {
        nics: 80,
        queues: 125,
        cpus: 128,
    };

    pub fn irqs(&self) -> u32 {
        self.nics * self.queues
    }

    fn irq(&self, nic: u32, q: u32) -> u32 {
        1000 + nic * self.queues + q
    }

    fn node_of_nic(&self, nic: u32) -> u32 {
        nic % 2
    }

    /// CPU i's sibling is i + cpus/4 within its node (node 0: 0..cpus/2).
    fn siblings(&self, cpu: u32) -> (u32, u32) {
        let half = self.cpus / 2;
        let quarter = half / 2;
        let node_base = (cpu / half) * half;
        let core = (cpu - node_base) % quarter;
        (node_base + core, node_base + core + quarter)
    }

    /// Where the driver put queue q of a NIC: spread over its node's CPUs, except the hot
    /// queues, which start piled on four CPUs of their node.
    fn home(&self, nic: u32, q: u32) -> u32 {
        let half = self.cpus / 2;
        let base = self.node_of_nic(nic) * half;
        if self.is_hot(nic, q) {
            base + q % 4
        } else {
            base + (q + nic) % half
        }
    }

    /// The loaded queues: the first 8 of every 7th NIC (96 in all).
    pub fn is_hot(&self, nic: u32, q: u32) -> bool {
        nic.is_multiple_of(7) && q < 8
    }
}

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// Writes the tree under `root` (sysfs, /proc/irq) and the counters of step 0.
pub fn build(root: &Path, shape: Shape) {
    let half = shape.cpus / 2;
    write(
        root,
        "/sys/devices/system/cpu/online",
        &format!("0-{}\n", shape.cpus - 1),
    );
    for node in 0..2 {
        write(
            root,
            &format!("/sys/devices/system/node/node{node}/cpulist"),
            &format!("{}-{}\n", node * half, node * half + half - 1),
        );
    }
    write(root, "/sys/devices/system/node/online", "0-1\n");
    for cpu in 0..shape.cpus {
        let (a, b) = shape.siblings(cpu);
        write(
            root,
            &format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"),
            &format!("{a},{b}\n"),
        );
    }
    fs::create_dir_all(root.join("sys/class/net")).unwrap();
    for nic in 0..shape.nics {
        let bdf = format!("0000:{:02x}:00.0", nic + 1);
        let base = format!("/sys/bus/pci/devices/{bdf}");
        write(root, &format!("{base}/class"), "0x020000\n");
        write(root, &format!("{base}/vendor"), "0x8086\n");
        write(root, &format!("{base}/device"), "0x1572\n");
        write(
            root,
            &format!("{base}/numa_node"),
            &format!("{}\n", shape.node_of_nic(nic)),
        );
        let node = shape.node_of_nic(nic);
        write(
            root,
            &format!("{base}/local_cpulist"),
            &format!("{}-{}\n", node * half, node * half + half - 1),
        );
        for q in 0..shape.queues {
            let irq = shape.irq(nic, q);
            write(root, &format!("{base}/msi_irqs/{irq}"), "msix\n");
            let home = shape.home(nic, q);
            write(
                root,
                &format!("/proc/irq/{irq}/smp_affinity_list"),
                &format!("{home}\n"),
            );
            write(
                root,
                &format!("/proc/irq/{irq}/effective_affinity_list"),
                &format!("{home}\n"),
            );
        }
    }
    write_counters(root, shape, 0);
}

/// Rewrites /proc/interrupts and /proc/stat as they read after `step` seconds: each hot queue
/// interrupts 20,000 times a second on its current CPU (read from effective_affinity_list, so
/// moves the daemon made are followed) and costs that CPU 8 % in softirq; everything else
/// idles. The hot queues start 12 to a CPU (96 % busy): spreading them cools every CPU.
pub fn write_counters(root: &Path, shape: Shape, step: u64) {
    let n = shape.cpus as usize;
    let mut hot_on = vec![0u64; n];
    let mut out = String::with_capacity(shape.irqs() as usize * (n * 11 + 64));
    out.push_str("      ");
    for c in 0..n {
        let _ = write!(out, "      CPU{c:<4}");
    }
    out.push('\n');
    let mut counts = vec![0u64; n];
    for nic in 0..shape.nics {
        let bdf = format!("0000:{:02x}:00.0", nic + 1);
        for q in 0..shape.queues {
            let irq = shape.irq(nic, q);
            let eff =
                fs::read_to_string(root.join(format!("proc/irq/{irq}/effective_affinity_list")))
                    .ok()
                    .and_then(|t| t.trim().split([',', '-']).next()?.parse::<usize>().ok())
                    .unwrap_or(0)
                    .min(n - 1);
            counts.iter_mut().for_each(|c| *c = 0);
            counts[eff] = 10 + u64::from(q);
            if shape.is_hot(nic, q) {
                counts[eff] += 20_000 * step;
                hot_on[eff] += 1;
            }
            let _ = write!(out, "{irq:>5}:");
            for c in &counts {
                let _ = write!(out, " {c:>10}");
            }
            let _ = writeln!(
                out,
                "  IR-PCI-MSIX-{bdf} {}-edge      nic{nic}-TxRx-{q}",
                524288 + q
            );
        }
    }
    let _ = writeln!(out, " NMI:{}   Non-maskable interrupts", " 0".repeat(n));
    write(root, "/proc/interrupts", &out);
    let mut stat = String::from("cpu  0 0 0 0 0 0 0 0 0 0\n");
    for (cpu, hot) in hot_on.iter().enumerate() {
        let soft = (8 * hot).min(95);
        let busy = soft + 3;
        let _ = writeln!(
            stat,
            "cpu{cpu} {} 0 0 {} 0 0 {} 0 0 0",
            (busy - soft) * step,
            (100 - busy) * step + 1000,
            soft * step
        );
    }
    stat.push_str("intr 0\nctxt 0\n");
    write(root, "/proc/stat", &stat);
}

/// What the kernel does after a successful smp_affinity_list write: the interrupt's
/// effective affinity follows. (A fixture's files do not, so the test plays the kernel.)
pub fn kernel_follows(root: &Path, moves: &[(u32, u32)]) {
    for (irq, cpu) in moves {
        write(
            root,
            &format!("/proc/irq/{irq}/effective_affinity_list"),
            &format!("{cpu}\n"),
        );
    }
}

/// The daemon's configuration for the fixture: 1 s period, no endpoint, defaults otherwise.
pub fn daemon_config(root: &Path) -> vportd::daemon::DaemonConfig {
    vportd::daemon::DaemonConfig {
        root: root.to_path_buf(),
        period: std::time::Duration::from_secs(1),
        metrics: None,
        once: false,
        state_dir: None,
        nic_cpus: Default::default(),
        avoid: Vec::new(),
        steering: false,
        policy: Default::default(),
        software: None,
        config_path: None,
    }
}

/// The NUMA node of the NIC at `bdf` (`0000:NN:00.0`, NIC NN-1) and of `cpu`.
pub fn nodes(shape: Shape, bdf: &str, cpu: u32) -> (u32, u32) {
    let nic = u32::from_str_radix(&bdf[5..7], 16).unwrap() - 1;
    (shape.node_of_nic(nic), cpu / (shape.cpus / 2))
}
