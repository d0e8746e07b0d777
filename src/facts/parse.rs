//! Parsers for the kernel's text formats: cpulists, hex CPU masks, /proc/interrupts,
//! and interrupt names. Pure functions over strings, so every one of them is fuzzed
//! and property-tested without a kernel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Errors from parsing kernel text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A cpulist such as `0-3,8` had a malformed element.
    #[error("\"{text}\" is not a CPU list: {why}")]
    CpuList { text: String, why: &'static str },
    /// A hex mask such as `ff,00000001` had a malformed word.
    #[error("\"{text}\" is not a hexadecimal CPU mask: {why}")]
    HexMask { text: String, why: &'static str },
    /// A line of /proc/interrupts did not have the expected shape.
    #[error("line {line} of /proc/interrupts is malformed: {why}")]
    Interrupts { line: usize, why: &'static str },
    /// A `cpuN` line of /proc/stat did not have the expected shape.
    #[error("line {line} of /proc/stat is malformed: {why}")]
    Stat { line: usize, why: &'static str },
}

/// The largest CPU number accepted; a guard against `0-4294967295` allocating forever.
pub const MAX_CPU: u32 = 65_535;

/// Parses a cpulist as sysfs and procfs print it (`0-3,8,10-11`, or empty) into
/// sorted CPUs. The kernel's input-only `used/group` stride form is refused.
pub fn cpulist(text: &str) -> Result<Vec<u32>, ParseError> {
    let err = |why| ParseError::CpuList {
        text: text.to_string(),
        why,
    };
    let mut cpus = Vec::new();
    let t = text.trim();
    if t.is_empty() {
        return Ok(cpus);
    }
    for part in t.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.parse::<u32>().map_err(|_| err("bad range start"))?,
                b.parse::<u32>().map_err(|_| err("bad range end"))?,
            ),
            None => {
                let n = part.parse::<u32>().map_err(|_| err("not a number"))?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(err("range runs backwards"));
        }
        if hi > MAX_CPU {
            return Err(err("CPU number too large"));
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Formats CPUs as the kernel's compact cpulist (`0-3,8`).
pub fn format_cpulist(cpus: &[u32]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// Parses a hex CPU mask as in `smp_affinity` or `rps_cpus` (`ff,00000001`: 32-bit
/// words, most significant first) into sorted CPUs.
pub fn hex_mask(text: &str) -> Result<Vec<u32>, ParseError> {
    let err = |why| ParseError::HexMask {
        text: text.to_string(),
        why,
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(err("empty"));
    }
    let words: Vec<&str> = t.split(',').collect();
    if words.len() > (MAX_CPU as usize + 1) / 32 {
        return Err(err("too many words"));
    }
    let mut cpus = Vec::new();
    for (i, w) in words.iter().rev().enumerate() {
        if w.is_empty() || w.len() > 8 {
            return Err(err("each word must be 1 to 8 hex digits"));
        }
        let v = u32::from_str_radix(w, 16).map_err(|_| err("not hexadecimal"))?;
        for bit in 0..32 {
            if v & (1 << bit) != 0 {
                cpus.push(i as u32 * 32 + bit);
            }
        }
    }
    cpus.sort_unstable();
    Ok(cpus)
}

/// Formats CPUs as a hex mask in the kernel's comma-separated 32-bit words.
pub fn format_hex_mask(cpus: &[u32]) -> String {
    let max = cpus.iter().copied().max().unwrap_or(0);
    let nwords = (max / 32 + 1) as usize;
    let mut words = vec![0u32; nwords];
    for &c in cpus {
        words[(c / 32) as usize] |= 1 << (c % 32);
    }
    words
        .iter()
        .rev()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                format!("{w:x}")
            } else {
                format!("{w:08x}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One numbered line of /proc/interrupts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptLine {
    pub irq: u32,
    /// Count per CPU column, in header order.
    pub per_cpu: Vec<u64>,
    /// The action names (what drivers passed to request_irq), e.g. `eth0-rx-0`.
    pub name: String,
}

impl InterruptLine {
    /// Saturating: a sum of counters near u64::MAX (hostile or corrupt text) must not panic.
    pub fn total(&self) -> u64 {
        self.per_cpu.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// Parses /proc/interrupts, keeping the numbered IRQs (not NMI, LOC, ...).
pub fn interrupts(text: &str) -> Result<BTreeMap<u32, InterruptLine>, ParseError> {
    let mut lines = text.lines().enumerate();
    let ncpu = match lines.next() {
        Some((_, header)) => header.split_whitespace().count(),
        None => return Ok(BTreeMap::new()),
    };
    let mut out = BTreeMap::new();
    for (i, line) in lines {
        let lineno = i + 1;
        let Some((label, rest)) = line.split_once(':') else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(ParseError::Interrupts {
                line: lineno,
                why: "no colon after the IRQ label",
            });
        };
        let Ok(irq) = label.trim().parse::<u32>() else {
            continue; // NMI, LOC, ERR, MIS and friends
        };
        let (per_cpu, after) = counts(rest, ncpu);
        // The remainder is "<chip> <hwirq> <type> <actions>"; the action names are
        // the last whitespace-separated field(s) after the chip columns.
        let tail: Vec<&str> = after.split_whitespace().collect();
        let name = action_names(&tail);
        out.insert(irq, InterruptLine { irq, per_cpu, name });
    }
    Ok(out)
}

/// Up to `ncpu` count columns from the start of `rest`, and what follows them. A field that
/// is not a count ends the columns and is dropped (some chips print fewer columns for IRQs
/// that never fired). A big host's /proc/interrupts is megabytes of these (10,000 IRQs on
/// 128 CPUs: 14.7 MB, read every period), so ASCII lines, which is what the kernel writes,
/// are scanned byte by byte; anything else goes through `str` (same result, slower).
fn counts(rest: &str, ncpu: usize) -> (Vec<u64>, &str) {
    let mut per_cpu = Vec::with_capacity(ncpu);
    if !rest.is_ascii() {
        let mut fields = rest.split_whitespace();
        for _ in 0..ncpu {
            match fields.next().map(str::parse::<u64>) {
                Some(Ok(n)) => per_cpu.push(n),
                _ => break,
            }
        }
        // What split_whitespace has not reached yet, re-split by the caller alike.
        let left: Vec<&str> = fields.collect();
        let after = match left.first() {
            Some(first) => {
                let at = first.as_ptr() as usize - rest.as_ptr() as usize;
                &rest[at..]
            }
            None => "",
        };
        return (per_cpu, after);
    }
    // char::is_whitespace on ASCII: u8::is_ascii_whitespace plus the vertical tab.
    let space = |c: u8| c.is_ascii_whitespace() || c == 0x0b;
    let b = rest.as_bytes();
    let mut pos = 0;
    for _ in 0..ncpu {
        while pos < b.len() && space(b[pos]) {
            pos += 1;
        }
        if pos == b.len() {
            break;
        }
        let start = pos;
        while pos < b.len() && !space(b[pos]) {
            pos += 1;
        }
        match ascii_u64(&b[start..pos]) {
            Some(n) => per_cpu.push(n),
            None => break,
        }
    }
    (per_cpu, &rest[pos..])
}

/// `str::parse::<u64>` on ASCII bytes: an optional '+', then at least one digit, no
/// overflow.
fn ascii_u64(field: &[u8]) -> Option<u64> {
    let digits = field.strip_prefix(b"+").unwrap_or(field);
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// The CPU of each count column of /proc/interrupts, from its header (`CPU0 CPU2`:
/// only online CPUs get a column, so column i is not always CPU i).
pub fn interrupt_columns(text: &str) -> Vec<u32> {
    text.lines()
        .next()
        .map(|h| {
            h.split_whitespace()
                .filter_map(|f| f.strip_prefix("CPU")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Picks the action names out of the fields after the counts. The chip part has
/// two or three columns (`PCI-MSIX-0000:00:03.0 1-edge`, `IR-PCI-MSI 524288-edge`,
/// `IO-APIC 2-edge`); what follows the `-edge`/`-level`/`-fasteoi` column is the name.
fn action_names(tail: &[&str]) -> String {
    let trigger = tail.iter().position(|f| {
        f.ends_with("-edge") || f.ends_with("-level") || f.ends_with("-fasteoi") || *f == "edge"
    });
    match trigger {
        Some(p) => tail[p + 1..].join(" "),
        None if tail.len() > 2 => tail[2..].join(" "),
        None => String::new(),
    }
}

use crate::model::inventory::{QueueKind, QueueRef};

/// Reads the queue from an interrupt's action name, across the drivers' naming
/// schemes: `eth0-rx-0`, `eth0-TxRx-3`, `i40e-eth0-TxRx-1`, `virtio2-input.0`,
/// `virtio2-output.1`, `mlx5_comp4@pci:0000:81:00.0`. None for misc/config vectors.
pub fn queue_of_irq_name(name: &str) -> Option<QueueRef> {
    let lower = name.to_ascii_lowercase();
    let lower = lower.split('@').next().unwrap_or("");
    // Split on separators and look at the last two tokens: "<kind> <n>".
    let tokens: Vec<&str> = lower
        .split(['-', '.', '_'])
        .filter(|t| !t.is_empty())
        .collect();
    let (last, before) = match tokens.as_slice() {
        [.., b, l] => (*l, Some(*b)),
        [l] => (*l, None),
        [] => return None,
    };
    if let Ok(index) = last.parse::<u32>() {
        let kind = match before? {
            "rx" | "input" => QueueKind::Rx,
            "tx" | "output" => QueueKind::Tx,
            "txrx" | "combined" => QueueKind::Combined,
            _ => return None,
        };
        return Some(QueueRef { kind, index });
    }
    // mlx5 glues the number to the word: "mlx5_comp4".
    let digits = last.trim_start_matches(|c: char| !c.is_ascii_digit());
    let word = &last[..last.len() - digits.len()];
    if word == "comp" && !digits.is_empty() {
        return Some(QueueRef {
            kind: QueueKind::Combined,
            index: digits.parse().ok()?,
        });
    }
    None
}

/// One CPU's line of /proc/stat, in clock ticks (USER_HZ) since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// Every tick the CPU spent, busy or not (guest time is already inside user).
    /// Saturating, like every sum here: absurd counters (fuzzed text) must not panic.
    pub fn total(&self) -> u64 {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Ticks spent doing something (iowait counts as idle: the CPU was free).
    pub fn busy(&self) -> u64 {
        self.total()
            .saturating_sub(self.idle)
            .saturating_sub(self.iowait)
    }

    /// Ticks spent in hard and soft interrupt context, where queue work runs.
    pub fn irq_time(&self) -> u64 {
        self.irq.saturating_add(self.softirq)
    }
}

/// Parses the per-CPU lines (`cpuN ...`) of /proc/stat, keyed by CPU number. The
/// aggregate `cpu` line and everything else are skipped; missing trailing columns
/// (old kernels) read as 0.
pub fn proc_stat(text: &str) -> Result<BTreeMap<u32, CpuTimes>, ParseError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let Some(label) = fields.next() else { continue };
        let Some(cpu) = label.strip_prefix("cpu").filter(|n| !n.is_empty()) else {
            continue;
        };
        let cpu: u32 = cpu.parse().map_err(|_| ParseError::Stat {
            line: i + 1,
            why: "the CPU number is not a number",
        })?;
        let mut v = [0u64; 8];
        for (slot, f) in v.iter_mut().zip(fields) {
            *slot = f.parse().map_err(|_| ParseError::Stat {
                line: i + 1,
                why: "a time column is not a number",
            })?;
        }
        out.insert(
            cpu,
            CpuTimes {
                user: v[0],
                nice: v[1],
                system: v[2],
                idle: v[3],
                iowait: v[4],
                irq: v[5],
                softirq: v[6],
                steal: v[7],
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod counts_equivalence {
    use proptest::prelude::*;

    /// The old per-field parse, kept as the oracle for the byte scanner.
    fn slow(rest: &str, ncpu: usize) -> (Vec<u64>, Vec<&str>) {
        let mut fields = rest.split_whitespace();
        let mut per_cpu = Vec::new();
        for _ in 0..ncpu {
            match fields.next().map(str::parse::<u64>) {
                Some(Ok(n)) => per_cpu.push(n),
                _ => break,
            }
        }
        (per_cpu, fields.collect())
    }

    fn fast(rest: &str, ncpu: usize) -> (Vec<u64>, Vec<&str>) {
        let (c, after) = super::counts(rest, ncpu);
        (c, after.split_whitespace().collect())
    }

    proptest! {
        #[test]
        fn scanner_agrees_with_split_whitespace(
            rest in r"[ 0-9+\t\x0B\x0Ca-zA-Z:.\-\x{A0}\x{85}]{0,60}",
            ncpu in 0usize..6,
        ) {
            prop_assert_eq!(fast(&rest, ncpu), slow(&rest, ncpu));
        }
    }

    #[test]
    fn kernel_lines_and_edges() {
        for (rest, ncpu) in [
            ("  12  0   PCI-MSIX-0000:01:00.0 1-edge eth0-TxRx-0", 2),
            ("  12  PCI-MSIX-0000:01:00.0 1-edge eth0", 2),
            ("18446744073709551615 18446744073709551616 x", 2),
            ("+5 ++5 x", 2),
            ("", 3),
            ("1 2 3", 3),
        ] {
            assert_eq!(fast(rest, ncpu), slow(rest, ncpu), "{rest:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpulists() {
        assert_eq!(cpulist("0-3,8").unwrap(), vec![0, 1, 2, 3, 8]);
        assert_eq!(cpulist("").unwrap(), Vec::<u32>::new());
        assert!(cpulist("0-7:2/4").is_err());
        assert!(cpulist("3-1").is_err());
        assert!(cpulist("a").is_err());
        assert!(cpulist("0-4294967295").is_err());
        assert_eq!(format_cpulist(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
    }

    #[test]
    fn hex_masks() {
        assert_eq!(hex_mask("f").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(hex_mask("1,00000001").unwrap(), vec![0, 32]);
        assert_eq!(hex_mask("00000000").unwrap(), Vec::<u32>::new());
        assert!(hex_mask("xyz").is_err());
        assert!(hex_mask("").is_err());
        assert_eq!(format_hex_mask(&[0, 32]), "1,00000001");
        assert_eq!(format_hex_mask(&[]), "0");
    }

    #[test]
    fn proc_interrupts_names_and_counts() {
        let text = "           CPU0       CPU1       \n  \
 38:          0       1577 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0\n  \
 39:       1359          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0\n  \
 44:          5          7  IR-PCI-MSI 524288-edge      eth0-TxRx-0\n\
NMI:          0          0   Non-maskable interrupts\n";
        let m = interrupts(text).unwrap();
        assert_eq!(m[&38].name, "virtio2-input.0");
        assert_eq!(m[&38].total(), 1577);
        assert_eq!(m[&44].name, "eth0-TxRx-0");
        assert_eq!(m.len(), 3);
        assert_eq!(interrupt_columns("   CPU0   CPU2\n"), vec![0, 2]);
    }

    #[test]
    fn proc_stat_per_cpu_lines() {
        let text =
            "cpu  10 0 5 100 1 2 3 0 0 0\ncpu0 4 0 2 50 1 1 2 0 0 0\ncpu1 6 0 3 50\nintr 1 2\n";
        let m = proc_stat(text).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[&0].irq_time(), 3);
        assert_eq!(m[&0].busy(), 9);
        assert_eq!(m[&1].total(), 59);
        assert!(proc_stat("cpuX 1 2").is_err());
    }

    #[test]
    fn queue_names() {
        let q = |n| queue_of_irq_name(n);
        assert_eq!(
            q("eth0-rx-0"),
            Some(QueueRef {
                kind: QueueKind::Rx,
                index: 0
            })
        );
        assert_eq!(
            q("eth0-tx-7"),
            Some(QueueRef {
                kind: QueueKind::Tx,
                index: 7
            })
        );
        assert_eq!(
            q("i40e-eth0-TxRx-3"),
            Some(QueueRef {
                kind: QueueKind::Combined,
                index: 3
            })
        );
        assert_eq!(
            q("virtio2-input.0"),
            Some(QueueRef {
                kind: QueueKind::Rx,
                index: 0
            })
        );
        assert_eq!(
            q("virtio2-output.1"),
            Some(QueueRef {
                kind: QueueKind::Tx,
                index: 1
            })
        );
        assert_eq!(
            q("mlx5_comp4@pci:0000:81:00.0"),
            Some(QueueRef {
                kind: QueueKind::Combined,
                index: 4
            })
        );
        assert_eq!(q("virtio2-config"), None);
        assert_eq!(q("eth0"), None);
        assert_eq!(q(""), None);
    }

    proptest! {
        #[test]
        fn cpulist_round_trips(cpus in proptest::collection::btree_set(0u32..4096, 0..64)) {
            let v: Vec<u32> = cpus.into_iter().collect();
            prop_assert_eq!(cpulist(&format_cpulist(&v)).unwrap(), v);
        }

        #[test]
        fn hex_mask_round_trips(cpus in proptest::collection::btree_set(0u32..1024, 0..64)) {
            let v: Vec<u32> = cpus.into_iter().collect();
            prop_assert_eq!(hex_mask(&format_hex_mask(&v)).unwrap(), v);
        }

        #[test]
        fn parsers_never_panic(s in ".{0,200}") {
            let _ = cpulist(&s);
            let _ = hex_mask(&s);
            let _ = interrupts(&s);
            let _ = queue_of_irq_name(&s);
            let _ = proc_stat(&s);
        }
    }
}
