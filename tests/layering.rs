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
            "provision::store",
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

/// Every crate path named outside comments, with its line number: `crate::a::b`, each
/// member of a `crate::{a, b::{c, d}}` group (nested, over several lines), and a
/// `super::` chain that climbs out of the file's layer to the crate root (`module` is the
/// file's module path, e.g. `["provision", "plan", "steering"]`), judged as the crate path
/// it names.
fn crate_paths(text: &str, module: &[&str]) -> Vec<(usize, String)> {
    // Comments out, line breaks kept so offsets map back to lines.
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(code.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_of = |at: usize| line_starts.partition_point(|&start| start <= at);
    let mut found = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let before = code[..at].chars().next_back();
        let starts_word = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        let root_len = if !starts_word {
            None
        } else if rest.starts_with("crate::") {
            Some("crate::".len())
        } else if rest.starts_with("super::") {
            escaping_supers(rest, module)
        } else {
            None
        };
        match root_len {
            Some(len) => {
                let line = line_of(at);
                let mut paths = Vec::new();
                let used = expand("", &rest[len..], &mut paths);
                found.extend(paths.into_iter().map(|p| (line, p)));
                at += len + used.max(1);
            }
            None => at += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    found
}

/// When `rest` starts with a `super::` chain that reaches the crate root from `module`,
/// the length of that chain.
fn escaping_supers(rest: &str, module: &[&str]) -> Option<usize> {
    let mut n = 0;
    let mut len = 0;
    while rest[len..].starts_with("super::") {
        n += 1;
        len += "super::".len();
    }
    (n > 0 && n >= module.len()).then_some(len)
}

/// Reads one path or `{...}` group at the start of `s`, with `prefix` before it; pushes
/// every full path; returns how many bytes it read.
fn expand(prefix: &str, s: &str, out: &mut Vec<String>) -> usize {
    let head: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let joined = format!("{prefix}{head}");
    let rest = &s[head.len()..];
    if (head.ends_with("::") || head.is_empty())
        && let Some(group) = rest.strip_prefix('{')
    {
        {
            let mut read = head.len() + 1;
            let mut inner = group;
            loop {
                let skip = inner.len() - inner.trim_start_matches([' ', '\n', ',']).len();
                inner = &inner[skip..];
                read += skip;
                if inner.is_empty() {
                    return read;
                }
                if inner.starts_with('}') {
                    return read + 1;
                }
                let used = expand(&joined, inner, out);
                // `self` in a group names the prefix itself.
                if let Some(last) = out.last_mut()
                    && last.ends_with("::self")
                {
                    *last = last.trim_end_matches("::self").to_string();
                }
                // Skip an `as name` rename.
                inner = &inner[used..];
                read += used;
                let rename = inner.trim_start();
                if let Some(r) = rename.strip_prefix("as ") {
                    let name_len = r
                        .trim_start()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .count();
                    let skip = inner.len() - r.trim_start().len() + name_len;
                    inner = &inner[skip..];
                    read += skip;
                }
            }
        }
    }
    let path = joined.trim_end_matches(':').to_string();
    if !path.is_empty() {
        out.push(path);
    }
    head.len()
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
        let module: Vec<&str> = rel
            .trim_end_matches(".rs")
            .split('/')
            .filter(|part| *part != "mod")
            .collect();
        for (line, path) in crate_paths(&text, &module) {
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
    // No exceptions: the list of violations the redesign had yet to remove
    // (tests/layering_baseline.txt) ended empty and is gone, so a new one fails here.
    assert!(
        problems.is_empty(),
        "{} layering violations:\n{}",
        problems.len(),
        problems.join("\n"),
    );
}

#[test]
fn the_checker_sees_paths_groups_and_skips_comments() {
    let text = "use crate::host::fs;\n// crate::daemon::x\nlet a = crate::{model::mac::Mac, switch::io};\nnot_crate::x";
    assert_eq!(
        crate_paths(text, &["provision", "plan"]),
        vec![
            (1, "host::fs".to_string()),
            (3, "model::mac::Mac".to_string()),
            (3, "switch::io".to_string()),
        ]
    );
    // Groups over several lines, nested, with `self` and renames.
    let text = "use crate::{\n    host::{self, fs::KernelFs as Fs},\n    model::mac::Mac,\n};";
    assert_eq!(
        crate_paths(text, &["provision"]),
        vec![
            (1, "host".to_string()),
            (1, "host::fs::KernelFs".to_string()),
            (1, "model::mac::Mac".to_string()),
        ]
    );
    // `super::` that climbs to the crate root is a crate path; inside the layer it is not.
    let text = "use super::super::host::fs;\nuse super::steering;";
    assert_eq!(
        crate_paths(text, &["provision", "plan"]),
        vec![(1, "host::fs".to_string())]
    );
    assert_eq!(
        crate_paths("use super::host;", &["provision"]),
        vec![(1, "host".to_string())]
    );
    assert!(allowed(
        "provision::ops::SriovOps",
        "host",
        &["provision::ops"]
    ));
    assert!(!allowed("provision::plan", "host", &["provision::ops"]));
    assert!(!allowed("hostile", "host", &[]));
}
