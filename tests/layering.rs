//! The layers of ARCHITECTURE.md, checked: every `crate::` path in `src/` is read (comments
//! left out) and judged by the layer of the file it is in. A path a layer may not name
//! fails the test with the file, the line and the rule, so the picture in ARCHITECTURE.md
//! cannot drift from the code unnoticed.

use std::fs;
use std::path::{Path, PathBuf};

/// The top-level folders of `src/` and what each may name besides itself. `host` is the
/// kernel layer: it may name the model and the traits (and their data) it implements for
/// the layers above, nothing else of theirs.
const RULES: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("facts", &["model", "host"]),
    ("provision", &["model", "facts::parse"]),
    ("switch", &["model"]),
    (
        "host",
        &[
            "model",
            "provision::ops",
            "switch::io",
            "switch::flowcache",
            "switch::PortId",
            "switch::packet",
        ],
    ),
    ("rebalance", &["model", "facts", "host", "provision::state"]),
    // Connecting a NIC to a vPort. Today pure: the CNI protocol (attach/cni/) and the IPAM
    // delegation name only the model. Its runtime half (moving netdevs between namespaces,
    // pools, the daemon's attach handler) may later name facts, host, provision, softpath
    // and switch, never daemon or cli; attach/cni/ stays data and decisions (model only).
    ("attach", &["model"]),
    (
        "softpath",
        &["model", "facts", "host", "provision", "switch"],
    ),
    (
        "daemon",
        &[
            "model",
            "facts",
            "host",
            "provision",
            "rebalance",
            "softpath",
            "switch",
            "attach",
        ],
    ),
    (
        "cli",
        &[
            "model",
            "facts",
            "host",
            "provision",
            "rebalance",
            "softpath",
            "switch",
            "daemon",
            "attach",
        ],
    ),
];

/// Files inside a layer held to a stricter rule: the rebalancer's policy is pure.
const PURE_FILES: &[(&str, &[&str])] = &[
    ("facts/parse.rs", &["model"]),
    ("rebalance/policy.rs", &["model", "rebalance::sample"]),
    ("rebalance/cpusets.rs", &["model", "facts::parse"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::a::b::c` path named outside comments, with its line number; a
/// `crate::{a, b::c}` group counts as each of its members.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for member in inner.split(',') {
                    let member = member.trim();
                    if !member.is_empty() {
                        found.push((n + 1, path_of(member)));
                    }
                }
            } else {
                found.push((n + 1, path_of(rest)));
            }
        }
    }
    found
}

fn path_of(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect::<String>()
        .trim_end_matches(':')
        .to_string()
}

fn allowed(path: &str, own: &str, allow: &[&str]) -> bool {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}::"));
    under(own) || allow.iter().any(|a| under(a))
}

#[test]
fn every_layer_names_only_what_it_may() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let Some((layer, _)) = rel.split_once('/') else {
            continue; // lib.rs, main.rs and fuzzing.rs sit above every layer
        };
        let Some((_, allow)) = RULES.iter().find(|(l, _)| *l == layer) else {
            problems.push(format!(
                "src/{rel}: the folder '{layer}' is not a layer of ARCHITECTURE.md; add it to RULES in tests/layering.rs with what it may name"
            ));
            continue;
        };
        let strict = PURE_FILES.iter().find(|(f, _)| *f == rel);
        let text = fs::read_to_string(file).unwrap();
        for (line, path) in crate_paths(&text) {
            let ok = match strict {
                Some((_, pure)) => allowed(&path, "\u{0}", pure) || path == layer,
                None => allowed(&path, layer, allow),
            };
            if !ok {
                problems.push(format!(
                    "src/{rel}:{line}: '{layer}' may not name crate::{path}"
                ));
            }
        }
    }
    // Violations that the redesign has not removed yet are listed, one per line, in
    // tests/layering_baseline.txt (file and rule, no line): a new one fails, and so does a listed one that is gone
    // (the list only shrinks). The list ends empty.
    let baseline_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/layering_baseline.txt");
    let baseline: Vec<String> = fs::read_to_string(&baseline_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    // Compared without line numbers, so an edit above a listed line does not move it.
    let key = |p: &str| -> String {
        match p.split_once(": ") {
            Some((at, rule)) => format!("{}: {rule}", at.split(':').next().unwrap_or(at)),
            None => p.to_string(),
        }
    };
    let keys: Vec<String> = problems.iter().map(|p| key(p)).collect();
    let new: Vec<&String> = problems
        .iter()
        .filter(|p| !baseline.contains(&key(p)))
        .collect();
    let gone: Vec<&String> = baseline.iter().filter(|b| !keys.contains(b)).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "{} new layering violations:\n{}\n{} listed in tests/layering_baseline.txt that no longer occur (delete those lines):\n{}",
        new.len(),
        new.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        gone.len(),
        gone.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

#[test]
fn the_checker_sees_paths_groups_and_skips_comments() {
    let text = "use crate::host::fs;\n// crate::daemon::x\nlet a = crate::{model::mac::Mac, switch::io};\nnot_crate::x";
    assert_eq!(
        crate_paths(text),
        vec![
            (1, "host::fs".to_string()),
            (3, "model::mac::Mac".to_string()),
            (3, "switch::io".to_string()),
        ]
    );
    assert!(allowed(
        "provision::ops::SriovOps",
        "host",
        &["provision::ops"]
    ));
    assert!(!allowed("provision::plan", "host", &["provision::ops"]));
    assert!(!allowed("hostile", "host", &[]));
}
