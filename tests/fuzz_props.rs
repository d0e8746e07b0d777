//! The stable fuzz driver: every target of `vportd::fuzzing` fed arbitrary bytes and
//! mutations of its checked-in seeds (fuzz/seeds/<target>/, built from real fixtures), plus
//! every input a fuzzer ever crashed on (fuzz/regressions/<target>/), which must now pass.
//!
//! `cargo test` runs a modest number of cases per target (VPORTD_FUZZ_CASES, default 256).
//! `scripts/fuzz` uses this driver when cargo-fuzz cannot run, and sets VPORTD_FUZZ_SECS to
//! keep generating cases for that many seconds per target.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target)
}

/// The files of fuzz/<kind>/<target>, sorted by name; none when the directory is absent.
fn files(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir(kind, target)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = rd
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("a seed file is readable"),
            )
        })
        .collect();
    out.sort();
    out
}

/// One edit of a seed, the way mutating fuzzers edit: positions and lengths are taken
/// modulo the input's length when applied.
#[derive(Debug, Clone)]
enum Edit {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    /// Replaces the tail from `at` with the tail of another seed from `from`.
    Splice {
        seed: usize,
        at: usize,
        from: usize,
    },
}

/// Bytes that matter to our formats, so inserts hit separators more often than chance.
const INTERESTING: &[u8] = b"\0\n\r =,-:.@/\"[]{}#'\\0123456789abcdefxX\xff\x7f";

/// Whole tokens worth trying anywhere: extreme numbers, keys of our formats.
const TOKENS: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "4294967295",
    "4294967296",
    "65535",
    "65536",
    "-1",
    "0x",
    "nan",
    "inf",
    "1e999",
    "\\u0000",
    "ACTION=",
    "DEVPATH=/devices/",
    "SUBSYSTEM=pci",
    "PCI_SLOT_NAME=0000:01:00.0",
    "IFINDEX=0",
    "\"v\":1",
    "\"op\":\"reconcile\"",
    "[[vport]]\n",
    "[[uplink]]\n",
    "CPU0 ",
    "cpu0 ",
    ":",
];

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![any::<u8>(), proptest::sample::select(INTERESTING)];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        (any::<usize>(), byte.clone()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        (any::<usize>(), proptest::collection::vec(byte, 1..8))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (any::<usize>(), proptest::sample::select(TOKENS)).prop_map(|(at, t)| Edit::Insert {
            at,
            bytes: t.as_bytes().to_vec()
        }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Duplicate { at, len }),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(seed, at, from)| Edit::Splice { seed, at, from }),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit], seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    for e in edits {
        let n = data.len();
        let at = |p: usize| if n == 0 { 0 } else { p % (n + 1) };
        match e {
            Edit::Flip { at: p, bit } if n > 0 => data[p % n] ^= 1 << bit,
            Edit::Set { at: p, byte } if n > 0 => data[p % n] = *byte,
            Edit::Insert { at: p, bytes } => {
                let p = at(*p);
                data.splice(p..p, bytes.iter().copied());
            }
            Edit::Delete { at: p, len } => {
                let p = at(*p);
                let end = (p + len).min(n);
                data.drain(p..end);
            }
            Edit::Duplicate { at: p, len } => {
                let p = at(*p);
                let end = (p + len).min(n);
                let piece = data[p..end].to_vec();
                data.splice(end..end, piece);
            }
            Edit::Splice { seed, at: p, from } if !seeds.is_empty() => {
                let other = &seeds[seed % seeds.len()].1;
                let p = at(*p);
                let from = from % (other.len() + 1);
                data.truncate(p);
                data.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    data
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
    )
}

/// Runs `target` over its regressions, its seeds, then generated inputs (arbitrary bytes,
/// arbitrary text, and edited seeds): VPORTD_FUZZ_CASES cases, repeated with fresh random
/// streams until VPORTD_FUZZ_SECS seconds have passed when that is set.
fn drive(name: &str) {
    let target = vportd::fuzzing::target(name).expect("a known target");
    for (file, bytes) in files("regressions", name) {
        let r = std::panic::catch_unwind(|| target(&bytes));
        assert!(
            r.is_ok(),
            "fuzz/regressions/{name}/{file} crashes the {name} target again"
        );
    }
    let seeds = files("seeds", name);
    assert!(
        !seeds.is_empty(),
        "fuzz/seeds/{name}/ holds no seeds: every target starts from real inputs"
    );
    for (_, bytes) in &seeds {
        target(bytes);
    }
    let cases = env_u64("VPORTD_FUZZ_CASES").unwrap_or(256) as u32;
    let budget = env_u64("VPORTD_FUZZ_SECS").map(Duration::from_secs);
    let seeded = {
        let seeds = seeds.clone();
        (0..seeds.len(), proptest::collection::vec(edit(), 1..12))
            .prop_map(move |(i, edits)| apply(seeds[i].1.clone(), &edits, &seeds))
    };
    let strategy = prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..512),
        1 => "\\PC{0,300}".prop_map(String::into_bytes),
        6 => seeded,
    ];
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&strategy, |data| {
            target(&data);
            Ok::<(), TestCaseError>(())
        });
        if let Err(e) = result {
            panic!(
                "the {name} target failed: {e}\n\
                 save the minimal input above as fuzz/regressions/{name}/<short-name> and fix the code"
            );
        }
        total += u64::from(cases);
        match budget {
            Some(b) if started.elapsed() < b => continue,
            _ => break,
        }
    }
    if budget.is_some() {
        eprintln!(
            "fuzz {name}: proptest engine, {total} generated inputs + {} seeds in {:.1} s",
            seeds.len(),
            started.elapsed().as_secs_f64()
        );
    }
}

macro_rules! targets {
    ($($t:ident),* $(,)?) => {
        $( #[test] fn $t() { drive(stringify!($t)) } )*

        /// Every target of the library has a test here (and a cargo-fuzz target in fuzz/).
        #[test]
        fn every_target_is_driven() {
            let here = [$(stringify!($t)),*];
            for (name, _) in vportd::fuzzing::TARGETS {
                assert!(here.contains(name), "no driver test for target {name}");
                let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("fuzz/fuzz_targets")
                    .join(format!("{name}.rs"));
                assert!(bin.is_file(), "no cargo-fuzz target {}", bin.display());
            }
            assert_eq!(here.len(), vportd::fuzzing::TARGETS.len());
        }
    };
}

targets!(
    config,
    hwprofile,
    cpulist,
    hex_mask,
    proc_interrupts,
    proc_stat,
    uevent,
    udev_env,
    control_request,
    control_response,
    frame,
    pci_ids,
);
