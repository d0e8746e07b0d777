//! The Debian package as an operator gets it: scripts/package builds it from this checkout
//! (reusing the release build), and this checks its file list, its symlinks, its control
//! fields, that the binary inside is a PIE, and that lintian reports no error. Also that
//! THIRD-PARTY-NOTICES matches Cargo.lock.
//!
//! Needs dpkg-deb, lintian, readelf and python3 (scripts/setup-host installs them); a
//! missing tool fails the test. A person (never CI) may set VPORTD_SKIP_PACKAGE=1 to skip.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// False when a person asked to skip; panics when a tool is missing.
fn tools_present(test: &str) -> bool {
    if std::env::var("VPORTD_SKIP_PACKAGE").as_deref() == Ok("1")
        && std::env::var_os("CI").is_none()
    {
        eprintln!("SKIPPED {test}: VPORTD_SKIP_PACKAGE=1");
        return false;
    }
    for tool in ["dpkg-deb", "lintian", "readelf", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{test} needs {tool}: run scripts/setup-host (Debian packages dpkg-dev, lintian, binutils, python3)"
        );
    }
    true
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package: the one scripts/test built with scripts/package for this run (VPORTD_DEB,
/// so that this test and the Debian guest test check the same .deb and CI builds it once),
/// else built here by scripts/package.
fn package() -> PathBuf {
    if let Some(deb) = std::env::var_os("VPORTD_DEB") {
        let deb = PathBuf::from(deb);
        assert!(deb.is_file(), "VPORTD_DEB={deb:?} is not a file");
        return deb;
    }
    let out = run(Command::new(repo().join("scripts/package")).current_dir(repo()));
    let deb = PathBuf::from(
        out.lines()
            .last()
            .expect("scripts/package prints the .deb path"),
    );
    assert!(
        deb.is_file() && deb.extension().is_some_and(|e| e == "deb"),
        "{deb:?}"
    );
    deb
}

/// The paths (without the leading `.`) and, for symlinks, their targets.
fn contents(deb: &Path) -> Vec<(String, Option<String>)> {
    run(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(|l| {
            let path = l.split_once("./").expect("a tar listing line").1;
            match path.split_once(" -> ") {
                Some((p, t)) => (format!("/{p}"), Some(t.to_string())),
                None => (format!("/{path}"), None),
            }
        })
        .collect()
}

/// The man pages `vportd generate man` writes (the CLI's visible subcommands), as packaged.
fn expected_man_pages() -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    run(Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args(["generate", "man"])
        .arg(dir.path()));
    std::fs::read_dir(dir.path())
        .expect("the man pages")
        .map(|e| {
            let name = e.expect("entry").file_name().into_string().expect("UTF-8");
            format!("/usr/share/man/man8/{name}.gz")
        })
        .collect()
}

#[test]
fn the_debian_package_has_its_files_and_passes_lintian() {
    if !tools_present("the_debian_package_has_its_files_and_passes_lintian") {
        return;
    }
    let deb = package();
    let listed = contents(&deb);
    let paths: BTreeSet<String> = listed.iter().map(|(p, _)| p.clone()).collect();

    let man = expected_man_pages();
    assert!(
        man.contains("/usr/share/man/man8/vportd.8.gz") && man.len() > 5,
        "{man:?}"
    );
    assert!(
        !man.iter()
            .any(|m| m.contains("generate") || m.contains("simulate")),
        "hidden subcommands get no page: {man:?}"
    );
    let docs: BTreeSet<String> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("/usr/share/doc/vportd/{n}"))
        .collect();
    let mut expected: BTreeSet<String> = [
        "/usr/bin/vportd",
        "/usr/lib/cni/vportd",
        "/opt/cni/bin/vportd",
        "/usr/lib/systemd/system/vportd.service",
        "/usr/lib/systemd/system/vportd-hotplug@.service",
        "/usr/lib/udev/rules.d/90-vportd.rules",
        "/usr/lib/vportd/irqbalance-policy",
        "/usr/share/bash-completion/completions/vportd",
        "/usr/share/zsh/vendor-completions/_vportd",
        "/usr/share/fish/vendor_completions.d/vportd.fish",
        "/usr/share/doc/vportd/README.md",
        "/usr/share/doc/vportd/SECURITY.md",
        "/usr/share/doc/vportd/examples/host.toml",
        "/usr/share/doc/vportd/THIRD-PARTY-NOTICES",
        "/usr/share/doc/vportd/copyright",
        "/usr/share/doc/vportd/changelog.Debian.gz",
        "/usr/share/lintian/overrides/vportd",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    expected.extend(man);
    expected.extend(docs);
    assert_eq!(
        paths.difference(&expected).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "files nobody expects"
    );
    assert_eq!(
        expected.difference(&paths).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "files missing"
    );

    // The CNI plugin is the daemon's binary: main.rs answers as a plugin under CNI_COMMAND.
    let link = |p: &str| {
        listed
            .iter()
            .find(|(q, _)| q == p)
            .and_then(|(_, t)| t.clone())
    };
    assert_eq!(
        link("/usr/lib/cni/vportd").as_deref(),
        Some("../../bin/vportd")
    );
    assert_eq!(
        link("/opt/cni/bin/vportd").as_deref(),
        Some("/usr/bin/vportd")
    );
    assert_eq!(link("/usr/bin/vportd"), None, "the binary itself is a file");

    let field = |name: &str| {
        run(Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&deb)
            .arg(name))
    };
    assert_eq!(field("Package").trim(), "vportd");
    assert_eq!(
        field("Version").trim(),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        field("Depends").contains("libc6"),
        "shared library dependencies found"
    );

    // The packaged binary is position-independent.
    let root = tempfile::tempdir().expect("tempdir");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path()));
    let header = run(Command::new("readelf")
        .arg("-h")
        .arg(root.path().join("usr/bin/vportd")));
    assert!(header.contains("DYN"), "not a PIE:\n{header}");
    let copyright = std::fs::read_to_string(root.path().join("usr/share/doc/vportd/copyright"))
        .expect("the copyright file");
    assert!(
        copyright.starts_with(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
        ) && copyright.contains("License: MIT or Apache-2.0"),
        "{copyright}"
    );

    // No error; warnings are listed (and justified) in the report that introduced this test.
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--display-info"])
        .arg(&deb)
        .output()
        .expect("lintian runs");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian:\n{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "lintian failed:\n{report}");
    assert!(!report.lines().any(|l| l.starts_with("E:")), "{report}");
}

#[test]
fn third_party_notices_match_cargo_lock() {
    if !tools_present("third_party_notices_match_cargo_lock") {
        return;
    }
    run(Command::new(repo().join("scripts/third-party-notices"))
        .arg("--check")
        .current_dir(repo()));
}
