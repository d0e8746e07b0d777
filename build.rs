//! Embeds every hwprofiles/*.toml in the binary: `vportd` must know its NIC families wherever it
//! runs (a VM guest has no checkout), and adding a profile must need no code change.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("hwprofiles");
    // A directory here makes cargo rerun when any file in it changes, is added or removed.
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("hwprofiles/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    let mut out = String::from("&[\n");
    for path in &paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 file name");
        let abs = path.to_str().expect("UTF-8 path");
        out += &format!("    ({name:?}, include_str!({abs:?})),\n");
    }
    out += "]\n";
    let target = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("builtin_profiles.rs");
    fs::write(&target, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display()));
    // The compiler's version for the `vportd_build_info` metric (cargo names the rustc).
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    if let Ok(out) = std::process::Command::new(rustc).arg("--version").output()
        && out.status.success()
    {
        let version = String::from_utf8_lossy(&out.stdout);
        println!("cargo::rustc-env=VPORTD_RUSTC_VERSION={}", version.trim());
    }
}
