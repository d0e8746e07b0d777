//! `vportd profiles` as a user runs it: the real binary, real files, exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn vportd(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vportd"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("vportd runs")
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_passes_on_the_shipped_profiles() {
    let out = vportd(&["profiles", "--check", "hwprofiles"], manifest_dir());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = std::fs::read_dir(manifest_dir().join("hwprofiles"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    assert!(
        stdout.starts_with(&format!("ok: {count} profiles")),
        "{stdout}"
    );
}

#[test]
fn check_fails_with_exit_2_and_file_line_on_a_broken_copy() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(manifest_dir().join("hwprofiles")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let broken = dir.path().join("igb-82576.toml");
    let text = std::fs::read_to_string(&broken).unwrap();
    assert!(text.contains("max_vfs = 7\n"));
    std::fs::write(
        &broken,
        text.replace("max_vfs = 7\n", "max_vfs = \"seven\"\n"),
    )
    .unwrap();
    let line = text.lines().position(|l| l == "max_vfs = 7").unwrap() + 1;

    let out = vportd(
        &["profiles", "--check", dir.path().to_str().unwrap()],
        manifest_dir(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let expected = format!("{}:{line}:", broken.display());
    assert!(stderr.contains(&expected), "want {expected} in: {stderr}");
    assert!(
        stderr.contains("field capabilities.sriov.max_vfs"),
        "{stderr}"
    );
}

#[test]
fn built_in_profiles_list_from_any_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let out = vportd(&["profiles"], elsewhere.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.starts_with("NAME"), "{stdout}");
    assert!(
        stdout.contains("igb-82576") && stdout.contains("8086:10c9"),
        "{stdout}"
    );

    let out = vportd(&["profiles", "--json"], elsewhere.path());
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let igb = json
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "igb-82576")
        .expect("igb-82576 listed");
    assert_eq!(igb["capabilities"]["sriov"]["max_vfs"], 7);
    assert_eq!(igb["match"]["pf_devices"][0], "10c9");
}
