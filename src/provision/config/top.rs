//! The top level of the file: TOML syntax, `state_dir`, and which keys hold the tables.

use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::DEFAULT_STATE_DIR;
use super::checker::Checker;
use super::keys::TOP_KEYS;

/// The top level, its tables not yet read.
pub(super) struct Top<'i> {
    pub(super) state_dir: PathBuf,
    pub(super) uplinks: Vec<Spanned<DeTable<'i>>>,
    pub(super) vports: Vec<Spanned<DeTable<'i>>>,
    pub(super) switches: Vec<Spanned<DeTable<'i>>>,
    pub(super) pools: Vec<Spanned<DeTable<'i>>>,
    pub(super) daemon: super::daemon::DaemonSettings,
}

/// The top level of `text`; None when it is not TOML at all (after reporting where).
pub(super) fn top<'i>(ck: &mut Checker<'_>, text: &'i str) -> Option<Top<'i>> {
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().lines().next().unwrap_or("").to_string();
            ck.report(
                &span,
                format!("not valid TOML: {message}"),
                "fix the TOML at that spot (strings need double quotes, tables [[double brackets]]); examples/host.toml shows the layout",
            );
            return None;
        }
    };
    let mut top = Top {
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        uplinks: Vec::new(),
        vports: Vec::new(),
        switches: Vec::new(),
        pools: Vec::new(),
        daemon: Default::default(),
    };
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "state_dir" => {
                if let Some(dir) = state_dir(ck, value) {
                    top.state_dir = dir;
                }
            }
            "uplink" => top.uplinks = ck.tables(key, value),
            "vport" => top.vports = ck.tables(key, value),
            "switch" => top.switches = ck.tables(key, value),
            "pool" => top.pools = ck.tables(key, value),
            "daemon" => top.daemon = super::daemon::daemon(ck, key, value),
            other => ck.unknown_key(key.span(), "config", other, "the top level", TOP_KEYS),
        }
    }
    Some(top)
}

/// An absolute directory: apply, hotplug and the daemon run from different directories.
fn state_dir(ck: &mut Checker<'_>, value: &Spanned<DeValue<'_>>) -> Option<PathBuf> {
    match value.get_ref().as_str() {
        Some(dir) if dir.starts_with('/') => Some(PathBuf::from(dir)),
        Some(dir) => {
            ck.report(
                &value.span(),
                format!("state_dir {dir:?} is not an absolute path"),
                "apply, hotplug and the daemon run from different directories: give a path starting with /",
            );
            None
        }
        None => {
            ck.report(
                &value.span(),
                format!(
                    "state_dir: expected a string in quotes, found {}",
                    value.get_ref().type_str()
                ),
                "state_dir takes an absolute directory path, e.g. \"/var/lib/vportd\"",
            );
            None
        }
    }
}
